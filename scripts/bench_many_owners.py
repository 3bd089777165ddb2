#!/usr/bin/env python3
"""Many owners at once: Tributary beside Mosquitto in one run (docs/benchmarks.md, "Many owners").

Two shapes of load, each broker started fresh for every run, driven by `tributary bench`:

  pairs N   N publishers each publish to their own topic (o/{i}) at --per-second messages/s, QoS 1,
            and N subscribers each subscribe to one of them (2N connections): the real workload of
            many people with a few devices, each reading only their own data.
            -> broker CPU per message, e2e latency p50/p99, lost
  idle N    N connected subscribers whose topics are quiet (idle/{i}) while one publisher sends
            --idle-rate msg/s QoS 1, beside the same publisher with no idle subscribers.
            -> broker CPU per message with and without them

Broker CPU is read from /proc/{pid}/stat at every progress line of the bench (once a second); the
figure is CPU seconds over messages acknowledged between the first line after publishing started
and the last line before it ended, so connecting and disconnecting are left out. Mosquitto 2 from
Debian runs as bench_compare.py runs it (`max_queued_messages 0`, `set_tcp_nodelay true`).
Loopback only; every run is bounded by the bench's time limit. The open-file limit is raised to
its hard limit for the brokers and the bench (2N sockets each).

    python3 scripts/bench_many_owners.py [--pairs 5000,8000] [--idle 8000] [--runs 1]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_compare import REPO, Broker  # noqa: E402

PROGRESS = re.compile(r"sent (\d+)\s+acked (\d+)\s+received (\d+)")
TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """utime + stime of the process, in seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def bench_with_cpu(bench: Path, args: list[str], broker: Broker, time_limit: int) -> dict:
    """Runs one `tributary bench pub`, sampling the broker's CPU at each progress line."""
    cmd = [str(bench), "bench", *args, "--port", str(broker.port), "--json", "--progress",
           "--time-limit", str(time_limit)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    samples = []  # (acked, received, broker cpu seconds)
    for line in proc.stderr:
        m = PROGRESS.search(line)
        if m:
            samples.append((int(m[2]), int(m[3]), cpu_seconds(broker.proc.pid)))
    out, _ = proc.communicate(timeout=time_limit + 60)
    report = json.loads(out.strip().splitlines()[-1])
    print(" ".join(cmd[2:]), "->", json.dumps(report), file=sys.stderr, flush=True)
    total = report.get("acknowledged", 0)
    # The steady part: from the first line with something acknowledged to the
    # last line before everything was.
    steady = [s for s in samples if 0 < s[0] < total]
    if len(steady) >= 2:
        (a0, _, c0), (a1, _, c1) = steady[0], steady[-1]
        report["broker_cpu_us_per_msg"] = (c1 - c0) / max(1, a1 - a0) * 1e6
        report["broker_cpu_share"] = (c1 - c0) / max(1e-9, len(steady) - 1)  # cores, ~1 s per line
    return report


class ManyBroker(Broker):
    """A broker of bench_compare.py with room for every connection of the run: Tributary's
    `limits.max_connections` (10,000 by default) and its connection rate per source address (all
    clients come from 127.0.0.1 here) are raised; Mosquitto has neither limit by default."""

    def command(self, workdir: Path) -> list[str]:
        cmd = super().command(workdir)
        if self.name == "tributary":
            conf = workdir / "many.toml"
            conf.write_text("[limits]\nmax_connections = 20000\nmax_connections_per_sec_per_source = 0\n")
            cmd += ["--config", str(conf)]
        return cmd


def run_pairs(bench: Path, broker: Broker, n: int, per_second: float, seconds: int) -> dict:
    messages = max(2, int(per_second * seconds))
    broker.start()
    try:
        return bench_with_cpu(bench, [
            "pub", "--clients", str(n), "--subscribers", str(n), "--topic", "o/{client}",
            "--filter", "o/{client}", "--qos", "1", "--sub-qos", "1", "--size", "100",
            "--rate", str(int(n * per_second)), "--messages", str(messages),
        ], broker, time_limit=seconds * 4 + 120)
    finally:
        broker.stop()


def run_idle(bench: Path, broker: Broker, idle: int, rate: int, seconds: int) -> dict:
    """One publisher at `rate` msg/s with `idle` quiet subscribers connected (0: none)."""
    broker.start()
    holders = None
    try:
        if idle:
            holders = subprocess.Popen(
                [str(bench), "bench", "sub", "--clients", str(idle), "--filter", "idle/{client}",
                 "--port", str(broker.port), "--progress", "--time-limit", str(seconds * 4 + 120)],
                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
            for line in holders.stderr:  # wait until every idle subscriber holds its subscription
                m = re.search(r"subscribed (\d+)", line)
                if m and int(m[1]) >= idle:
                    break
        return bench_with_cpu(bench, [
            "pub", "--clients", "1", "--topic", "busy/{client}", "--qos", "1", "--size", "100",
            "--rate", str(rate), "--messages", str(rate * seconds),
        ], broker, time_limit=seconds * 4 + 60)
    finally:
        if holders:
            holders.terminate()
            holders.wait(timeout=30)
        broker.stop()


def median(runs: list[dict], key: str, sub: str | None = None):
    values = [(r.get(key) or {}).get(sub) if sub else r.get(key) for r in runs]
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def fmt(v, spec=",.1f"):
    return "—" if v is None else format(v, spec)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--pairs", default="5000,8000", help="comma-separated pair counts ('' skips)")
    p.add_argument("--per-second", type=float, default=2.0, help="messages per second per publisher")
    p.add_argument("--seconds", type=int, default=30, help="how long each pairs run publishes")
    p.add_argument("--idle", type=int, default=8000, help="idle subscribers (0 skips the idle scenario)")
    p.add_argument("--idle-rate", type=int, default=10000)
    p.add_argument("--runs", type=int, default=1)
    p.add_argument("--tributary", default=str(REPO / "target/release/tributary"))
    p.add_argument("--mosquitto", default=shutil.which("mosquitto") or "/usr/sbin/mosquitto")
    args = p.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    bench = Path(args.tributary)
    brokers = [ManyBroker("tributary", args.tributary), ManyBroker("mosquitto", args.mosquitto)]
    brokers = [b for b in brokers if Path(b.binary).exists()]

    print("| load | broker | broker CPU µs/msg | broker CPU (cores) | e2e p50 / p99 ms | ack p99 ms "
          "| msg/s | lost | dup |")
    print("|---|---|---|---|---|---|---|---|---|")
    for n in [int(x) for x in args.pairs.split(",") if x]:
        for b in brokers:
            runs = [run_pairs(bench, b, n, args.per_second, args.seconds) for _ in range(args.runs)]
            print(f"| {n:,} pairs × {args.per_second:g} msg/s | {b.name} "
                  f"| {fmt(median(runs, 'broker_cpu_us_per_msg'))} | {fmt(median(runs, 'broker_cpu_share'), '.2f')} "
                  f"| {fmt(median(runs, 'receive_latency_ms', 'p50'), '.2f')} / "
                  f"{fmt(median(runs, 'receive_latency_ms', 'p99'), '.2f')} "
                  f"| {fmt(median(runs, 'ack_latency_ms', 'p99'), '.2f')} "
                  f"| {fmt(median(runs, 'msg_per_s'), ',.0f')} | {sum(r.get('lost', 0) for r in runs)} "
                  f"| {sum(r.get('duplicated', 0) for r in runs)} |", flush=True)
    if args.idle:
        for b in brokers:
            for idle in (0, args.idle):
                runs = [run_idle(bench, b, idle, args.idle_rate, args.seconds) for _ in range(args.runs)]
                print(f"| 1 publisher × {args.idle_rate:,} msg/s, {idle:,} idle subscribers | {b.name} "
                      f"| {fmt(median(runs, 'broker_cpu_us_per_msg'))} | {fmt(median(runs, 'broker_cpu_share'), '.2f')} "
                      f"| — | {fmt(median(runs, 'ack_latency_ms', 'p99'), '.2f')} "
                      f"| {fmt(median(runs, 'msg_per_s'), ',.0f')} | {sum(r.get('lost', 0) for r in runs)} "
                      f"| {sum(r.get('duplicated', 0) for r in runs)} |", flush=True)


if __name__ == "__main__":
    main()
