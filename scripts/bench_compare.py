#!/usr/bin/env python3
"""Side-by-side broker benchmark: Tributary vs Mosquitto vs rumqttd, one run on one machine.

Starts each broker fresh for every run, drives it with `tributary bench`, and prints the median of
`--runs` runs per scenario as a Markdown table (and every raw JSON line on stderr). The scenarios
are those of docs/benchmarks.md:

  a  10 publishers x 1,000 x 100 B, QoS 1, one subscriber          -> msg/s end to end
  b  4 publishers x 1,000,000 x 100 B, QoS 0, no subscriber         -> msg/s
  c  4 publishers x 1,000,000 x 100 B, QoS 1, one subscriber        -> msg/s end to end, lost, peak RSS
  d  1,000 idle connections                                         -> broker memory per connection
                                                                       (RSS and anonymous RSS growth / 1,000)
  e  5,000 msg/s QoS 1 with a subscriber                            -> publish->PUBACK p50/p99
  k  Tributary alone, on its embedded log and on Kafka (a tansu 0.6.0 started per run, see
     docs/testing.md): 4 publishers x 25,000 x 100 B, QoS 1, one subscriber -> msg/s end to end, ack p50
  t  scenario c over TLS 1.3 (server certificate from a throwaway CA) -> msg/s end to end, lost;
     run `--scenarios ct` for TLS beside plaintext in one run (rumqttd is left out: its TLS
     listener needs a config of its own)

Brokers: Tributary with its defaults (fsync'd group commit: acknowledged = durable); Mosquitto 2 from
Debian with `max_queued_messages 0` and `set_tcp_nodelay true` (so it drops nothing); rumqttd from
`cargo install rumqttd` with its generated default config (in memory only). A broker whose binary
is missing is skipped with a note. Loopback only; every run bounded by the bench's time limit.

    python3 scripts/bench_compare.py [--runs 3] [--scenarios abcde] [--scale 1.0]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_kib(pid: int, field: str = "VmRSS") -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


class Broker:
    def __init__(self, name: str, binary: str):
        self.name, self.binary = name, binary
        self.proc: subprocess.Popen | None = None
        self.dir: tempfile.TemporaryDirectory | None = None
        self.port = 0
        # Set for the TLS scenario: a certs.Pki whose server certificate the broker serves.
        self.pki = None
        self.tls_port = 0
        # Set for the Kafka scenario: the bootstrap address of the Kafka broker to log to.
        self.kafka = None

    def command(self, workdir: Path) -> list[str]:
        if self.name == "tributary":
            tls = []
            if self.pki:
                tls = ["--mqtt-tls", f"127.0.0.1:{self.tls_port}", "--tls-cert", str(self.pki.server_cert),
                       "--tls-key", str(self.pki.server_key)]
            kafka = ["--log", f"kafka://{self.kafka}"] if self.kafka else []
            return [self.binary, "serve", "--mqtt", f"127.0.0.1:{self.port}", "--http", f"127.0.0.1:{free_port()}",
                    "--data-dir",
                    str(workdir / "data"), "--allow-anonymous", *tls, *kafka]
        if self.name == "mosquitto":
            conf = workdir / "mosquitto.conf"
            text = (f"listener {self.port} 127.0.0.1\nallow_anonymous true\n"
                    "max_queued_messages 0\nset_tcp_nodelay true\n")
            if self.pki:
                # As root mosquitto would drop to user `mosquitto`, who cannot read the key.
                text += (f"listener {self.tls_port} 127.0.0.1\ncertfile {self.pki.server_cert}\n"
                         f"keyfile {self.pki.server_key}\nuser root\n")
            conf.write_text(text)
            return [self.binary, "-c", str(conf)]
        generated = subprocess.run([self.binary, "generate-config"], capture_output=True, text=True,
                                   check=True).stdout
        ports = iter(free_port() for _ in range(4))
        conf = generated.replace('listen = "0.0.0.0:1883"', f'listen = "127.0.0.1:{self.port}"')
        conf = conf.replace('listen = "0.0.0.0:1884"', f'listen = "127.0.0.1:{next(ports)}"')
        conf = conf.replace('listen = "127.0.0.1:9042"', f'listen = "127.0.0.1:{next(ports)}"')
        conf = conf.replace('listen = "0.0.0.0:8083"', f'listen = "127.0.0.1:{next(ports)}"')
        conf = conf.replace('listen = "0.0.0.0:3030"', f'listen = "127.0.0.1:{next(ports)}"')
        (workdir / "rumqttd.toml").write_text(conf)
        return [self.binary, "-q", "-c", str(workdir / "rumqttd.toml")]

    def start(self):
        self.dir = tempfile.TemporaryDirectory(prefix=f"bench-{self.name}-")
        workdir = Path(self.dir.name)
        self.port = free_port()
        self.tls_port = free_port()
        log = open(workdir / "broker.log", "wb")
        self.proc = subprocess.Popen(self.command(workdir), stdout=log, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, cwd=workdir, start_new_session=True)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited: {(workdir / 'broker.log').read_text()[-2000:]}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    time.sleep(0.2)
                    return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"{self.name} did not listen on {self.port}")

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.dir:
            self.dir.cleanup()


class Tansu:
    """A throwaway tansu (Kafka-protocol broker) as docs/testing.md starts it."""

    BINARY = os.environ.get("TANSU_BIN", "/opt/tansu-0.6.0/bin/tansu")

    def __enter__(self):
        self.dir = tempfile.TemporaryDirectory(prefix="bench-tansu-")
        self.port = free_port()
        url = f"tcp://127.0.0.1:{self.port}"
        self.proc = subprocess.Popen([self.BINARY, "broker", "--listener-url", url, "--advertised-listener-url", url,
                                      "--storage-engine", "sqlite://tansu.db"], cwd=self.dir.name,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL,
                                     env={**os.environ, "RUST_LOG": "warn"}, start_new_session=True)
        deadline = time.monotonic() + 20
        while True:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    break
            except OSError:
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    raise RuntimeError("tansu did not start")
                time.sleep(0.05)
        import sqlite3

        db = sqlite3.connect(str(Path(self.dir.name) / "tansu.db"), timeout=30)
        db.execute("create index if not exists header_topition_offset on header (topition, offset_id)")
        db.commit()
        db.close()
        return f"127.0.0.1:{self.port}"

    def __exit__(self, *exc):
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.dir.cleanup()


def bench(args: list[str], port: int, time_limit: int = 240) -> dict:
    cmd = [str(BENCH), "bench", *args, "--port", str(port), "--json", "--time-limit", str(time_limit)]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=time_limit + 60)
    line = out.stdout.strip().splitlines()[-1] if out.stdout.strip() else "{}"
    print(" ".join(cmd[1:]), "->", line, file=sys.stderr, flush=True)
    return json.loads(line)


def scaled(n: int) -> int:
    return max(1, int(n * SCALE))


def run_scenario(key: str, broker: Broker, pki=None) -> dict:
    broker.pki = pki if key == "t" else None
    broker.start()
    try:
        pid = broker.proc.pid
        if key == "a":
            r = bench(["pub", "--clients", "10", "--messages", str(scaled(1000)), "--size", "100", "--qos", "1",
                       "--subscribers", "1"], broker.port)
            return {"msg/s": r.get("msg_per_s"), "lost": r.get("lost")}
        if key == "b":
            r = bench(["pub", "--clients", "4", "--messages", str(scaled(1_000_000)), "--size", "100", "--qos", "0"],
                      broker.port)
            return {"msg/s": r.get("msg_per_s")}
        if key == "c":
            r = bench(["pub", "--clients", "4", "--messages", str(scaled(1_000_000)), "--size", "100", "--qos", "1",
                       "--subscribers", "1"], broker.port)
            return {"msg/s": r.get("msg_per_s"), "lost": r.get("lost"),
                    "peak RSS MiB": round(rss_kib(pid, "VmHWM") / 1024, 1)}
        if key == "k":
            r = bench(["pub", "--clients", "4", "--messages", str(scaled(25_000)), "--size", "100", "--qos", "1",
                       "--subscribers", "1"], broker.port)
            lat = r.get("ack_latency_ms") or {}
            return {"msg/s": r.get("msg_per_s"), "lost": r.get("lost"), "ack p50 ms": lat.get("p50")}
        if key == "t":
            r = bench(["pub", "--clients", "4", "--messages", str(scaled(1_000_000)), "--size", "100", "--qos", "1",
                       "--subscribers", "1", "--tls", "--cafile", str(pki.ca_cert)], broker.tls_port)
            return {"msg/s": r.get("msg_per_s"), "lost": r.get("lost")}
        if key == "d":
            before, before_anon = rss_kib(pid), rss_kib(pid, "RssAnon")
            cmd = [str(BENCH), "bench", "conn", "--clients", "1000", "--connect-rate", "500", "--hold", "6",
                   "--port", str(broker.port), "--json", "--time-limit", "60"]
            proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
            time.sleep(5.0)  # 1,000 connections at 500/s take 2 s; then they sit idle
            during, during_anon = rss_kib(pid), rss_kib(pid, "RssAnon")
            out, _ = proc.communicate(timeout=90)
            r = json.loads(out.strip().splitlines()[-1])
            print(" ".join(cmd[1:]), "->", out.strip(), file=sys.stderr, flush=True)
            connected = r.get("connected") or 1000
            # RSS counts the binary's code paged in on first use too; anonymous RSS is the memory
            # the connections take (heap, stacks), which is what "per connection" means.
            return {"RSS bytes/conn": round((during - before) * 1024 / connected),
                    "anon RSS bytes/conn": round((during_anon - before_anon) * 1024 / connected),
                    "connected": connected}
        if key == "e":
            r = bench(["pub", "--clients", "10", "--messages", str(scaled(2500)), "--size", "100", "--qos", "1",
                       "--rate", "5000", "--subscribers", "1"], broker.port)
            lat = r.get("ack_latency_ms") or {}
            return {"ack p50 ms": lat.get("p50"), "ack p99 ms": lat.get("p99"), "lost": r.get("lost")}
        raise ValueError(key)
    finally:
        broker.stop()


def median(values):
    values = [v for v in values if isinstance(v, (int, float))]
    return statistics.median(values) if values else None


def main():
    global BENCH, SCALE
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--scenarios", default="abcde")
    p.add_argument("--scale", type=float, default=1.0, help="multiply message counts (quick trials)")
    p.add_argument("--tributary", default=str(REPO / "target/release/tributary"))
    p.add_argument("--bench", default=None,
                   help="the `tributary` binary whose `bench` drives every broker [default: --tributary]; "
                        "pin it when comparing two Tributary builds, so only the broker differs")
    p.add_argument("--mosquitto", default=shutil.which("mosquitto") or "/usr/sbin/mosquitto")
    p.add_argument("--rumqttd", default=shutil.which("rumqttd") or "/opt/rumqttd/bin/rumqttd")
    args = p.parse_args()
    BENCH, SCALE = Path(args.bench or args.tributary), args.scale
    brokers = [Broker("tributary", args.tributary), Broker("mosquitto", args.mosquitto),
               Broker("rumqttd", args.rumqttd)]
    present = [b for b in brokers if Path(b.binary).exists()]
    for b in brokers:
        if b not in present:
            print(f"note: {b.name} not found at {b.binary}; skipped", file=sys.stderr)
    pki = None
    if "t" in args.scenarios:
        sys.path.insert(0, str(REPO / "tests" / "integration"))
        from certs import Pki

        pki_dir = tempfile.TemporaryDirectory(prefix="bench-pki-")
        pki = Pki(Path(pki_dir.name))
    print(f"| scenario | broker | {'figures (median of %d runs)' % args.runs} |")
    print("|---|---|---|")
    for key in args.scenarios:
        if key == "k":
            tributary = next(b for b in present if b.name == "tributary")
            for label, on_kafka in [("tributary, embedded log", False), ("tributary, Kafka log (tansu)", True)]:
                runs = []
                for _ in range(args.runs):
                    if on_kafka:
                        with Tansu() as bootstrap:
                            tributary.kafka = bootstrap
                            runs.append(run_scenario(key, tributary))
                        tributary.kafka = None
                    else:
                        runs.append(run_scenario(key, tributary))
                print_row(key, label, runs)
            continue
        for b in present:
            if key == "t" and b.name == "rumqttd":
                continue
            runs = [run_scenario(key, b, pki) for _ in range(args.runs)]
            print_row(key, b.name, runs)


def print_row(key: str, name: str, runs: list[dict]):
    figures = {k: median([r.get(k) for r in runs]) for k in runs[0]}
    text = ", ".join(f"{k} {v:,.3f}".rstrip("0").rstrip(".") if isinstance(v, float) else f"{k} {v}"
                     for k, v in figures.items())
    print(f"| {key} | {name} | {text} |", flush=True)


BENCH = Path()
SCALE = 1.0

if __name__ == "__main__":
    main()
