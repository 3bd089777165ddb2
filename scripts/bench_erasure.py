#!/usr/bin/env python3
"""What sealing payloads costs (docs/erasure.md): `tributary serve` with `[erasure] encrypt` on and
off, in one run, alternating, each started fresh.

The load is an owner's own data, so every message is sealed on the way in and opened for the
subscriber: `tributary bench pub` with the owner's credentials, publishing to one of the owner's
device's command topics (an owner's command carries the owner, so it is personal and sealed) and
one subscriber of the owner on them. QoS 1 (acknowledged = durable: fsync'd group commit).

    python3 scripts/bench_erasure.py [--runs 3] [--clients 4] [--messages 250000] [--size 100]
    python3 scripts/bench_erasure.py --callgrind [--tributary BIN]

Prints one line per run and a Markdown table of the medians (msg/s end to end, the server's CPU
per message, publish->PUBACK p50 and p99) and of each pair's on/off ratios. The server's CPU (user
plus system, from /proc/PID/stat, read before and after the load) is what sealing adds and is
steadier than msg/s on a shared machine, where another process's burst moves the rate.

With --callgrind the server runs under valgrind's callgrind, which counts the instructions it
executes: the same count for the same binary and load whatever else the machine does, where
times here swing by a third. Each setting runs a small and a large load in a fresh server
(counters zeroed once it listens, read when the load is done); the difference over the
difference in messages is the server's instructions per message, free of start-up and logins.
"""

from __future__ import annotations

import argparse
import json
import os
import re
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


class Node:
    def __init__(self, binary: str, encrypt: bool, wrapper: tuple[str, ...] = ()):
        self.binary, self.encrypt, self.wrapper = binary, encrypt, wrapper

    def __enter__(self):
        self.dir = tempfile.TemporaryDirectory(prefix="bench-erasure-")
        work = Path(self.dir.name)
        data = work / "data"
        config = work / "tributary.toml"
        config.write_text(f"[erasure]\nencrypt = {'true' if self.encrypt else 'false'}\n"
                          "[archive]\nenabled = false\n"
                          # The per-client rate limits would measure themselves, not sealing.
                          "[limits]\nmax_messages_per_sec = 0\nmax_bytes_per_sec = 0\n")
        admin = lambda *a: subprocess.run([self.binary, *a, "--data-dir", str(data)], capture_output=True,  # noqa: E731
                                          text=True, check=True, timeout=60)
        out = admin("owner", "add", "benchowner")
        self.password = re.search(r"password \(shown once\): (\S+)", out.stdout + out.stderr).group(1)
        admin("device", "add", "--owner", "benchowner", "benchdev")
        self.port = free_port()
        self.log = open(work / "serve.log", "wb")
        self.proc = subprocess.Popen([*self.wrapper, self.binary, "serve", "--config", str(config), "--data-dir", str(data),
                                      "--mqtt", f"127.0.0.1:{self.port}", "--http", f"127.0.0.1:{free_port()}"],
                                     stdout=self.log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                     start_new_session=True)
        deadline = time.monotonic() + (300 if self.wrapper else 30)
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError((work / "serve.log").read_text()[-2000:])
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return self
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("serve did not listen")

    def __exit__(self, *exc):
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()
        self.dir.cleanup()


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time of process `pid`, in seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def load(binary: str, node: Node, messages: int, args) -> tuple[str, dict]:
    """The owner's publishers and subscriber against `node`: bench pub's JSON line, parsed."""
    cmd = [binary, "bench", "pub", "--port", str(node.port), "--clients", str(args.clients),
           "--messages", str(messages), "--size", str(args.size), "--qos", "1", "--subscribers", "1",
           "--username", "benchowner", "--password", node.password,
           "--topic", "tributary/v1/benchdev/commands/{client}", "--filter", "tributary/v1/benchdev/commands/#",
           "--json", "--time-limit", "240"]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    line = out.stdout.strip().splitlines()[-1] if out.stdout.strip() else "{}"
    return line, json.loads(line)


def run(binary: str, encrypt: bool, args) -> dict:
    with Node(binary, encrypt) as node:
        cpu_before = cpu_seconds(node.proc.pid)
        line, result = load(binary, node, args.messages, args)
        if result.get("received"):
            result["cpu_us_per_msg"] = 1e6 * (cpu_seconds(node.proc.pid) - cpu_before) / result["received"]
        print(f"encrypt={'on' if encrypt else 'off'}: {line}", file=sys.stderr, flush=True)
        return result


def instructions(binary: str, encrypt: bool, messages: int, args) -> tuple[int, int]:
    """Instructions the server executed for a load of `messages` per client, and the messages
    its subscriber received."""
    with tempfile.TemporaryDirectory(prefix="bench-erasure-cg-") as out_dir:
        out_file = Path(out_dir) / "callgrind.out"
        wrapper = ("valgrind", "--tool=callgrind", f"--callgrind-out-file={out_file}")
        with Node(binary, encrypt, wrapper) as node:
            subprocess.run(["callgrind_control", "-z", str(node.proc.pid)], capture_output=True, check=True)
            line, result = load(binary, node, messages, args)
            print(f"encrypt={'on' if encrypt else 'off'} under callgrind: {line}", file=sys.stderr, flush=True)
            subprocess.run(["callgrind_control", "-d", str(node.proc.pid)], capture_output=True, check=True)
            dumps = sorted(Path(out_dir).glob("callgrind.out.*"))
            summary = re.search(r"^summary: (\d+)$", dumps[-1].read_text(), re.M)
            return int(summary.group(1)), result.get("received") or 0


def callgrind(args) -> None:
    small, large = max(args.messages // 10, 1), args.messages
    per_message = {}
    for encrypt in (False, True):
        (i_small, n_small), (i_large, n_large) = (instructions(args.tributary, encrypt, m, args)
                                                  for m in (small, large))
        if n_large <= n_small:
            sys.exit("the subscriber received no more in the large load than in the small one")
        per_message[encrypt] = (i_large - i_small) / (n_large - n_small)
    print("| encrypt | server instructions per message |")
    print("|---|---|")
    for encrypt in (False, True):
        print(f"| {'on' if encrypt else 'off'} | {per_message[encrypt]:,.0f} |")
    print(f"\non/off: {per_message[True] / per_message[False]:.3f}")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--messages", type=int, default=250_000)
    parser.add_argument("--size", type=int, default=100)
    parser.add_argument("--tributary", default=str(REPO / "target/release/tributary"))
    parser.add_argument("--callgrind", action="store_true",
                        help="count the server's instructions per message under valgrind instead of timing "
                             "(--messages defaults to 2,500 there)")
    args = parser.parse_args()
    if args.callgrind:
        if args.messages == parser.get_default("messages"):
            args.messages = 2_500
        callgrind(args)
        return
    results = {True: [], False: []}
    for _ in range(args.runs):
        for encrypt in (False, True):
            results[encrypt].append(run(args.tributary, encrypt, args))
    print("| encrypt | msg/s (median) | every run | server CPU µs/msg (median) | every run | lost | ack p50 ms | ack p99 ms |")
    print("|---|---|---|---|---|---|---|---|")
    for encrypt in (False, True):
        rs = results[encrypt]
        rates = [r.get("msg_per_s") or 0 for r in rs]
        cpus = [r.get("cpu_us_per_msg") or 0 for r in rs]
        key = lambda name: statistics.median([(r.get("ack_latency_ms") or {}).get(name) or 0 for r in rs])  # noqa: E731
        print(f"| {'on' if encrypt else 'off'} | {statistics.median(rates):,.0f} | "
              f"{', '.join(f'{x:,.0f}' for x in rates)} | {statistics.median(cpus):.2f} | "
              f"{', '.join(f'{x:.2f}' for x in cpus)} | {sum(r.get('lost') or 0 for r in rs)} | "
              f"{key('p50'):.2f} | {key('p99'):.2f} |")
    # Each run with encryption beside the run without it just before: the machine's drift cancels.
    pairs = list(zip(results[False], results[True]))
    rate_ratios = [on["msg_per_s"] / off["msg_per_s"] for off, on in pairs if off.get("msg_per_s") and on.get("msg_per_s")]
    cpu_ratios = [on["cpu_us_per_msg"] / off["cpu_us_per_msg"] for off, on in pairs
                  if off.get("cpu_us_per_msg") and on.get("cpu_us_per_msg")]
    if rate_ratios and cpu_ratios:
        print(f"\npaired on/off: msg/s median {statistics.median(rate_ratios):.3f} "
              f"({', '.join(f'{x:.2f}' for x in rate_ratios)}); server CPU per message median "
              f"{statistics.median(cpu_ratios):.3f} ({', '.join(f'{x:.2f}' for x in cpu_ratios)})")


if __name__ == "__main__":
    main()
