#!/usr/bin/env python3
"""Throughput of `tributary bridge` from Mosquitto into Kafka (tansu), one machine.

Starts tansu (tests/integration/kafka.py), Mosquitto with persistence and `max_inflight_messages
1000`, and the bridge (release binary, `TRIBUTARY_BIN`), then for each mode publishes `--messages`
× `--size` B at QoS 1 with `tributary bench pub` (4 publishers) and waits until Kafka's end offsets
hold them all:

  live     the bridge runs while the publishers publish;
  backlog  the bridge is stopped while they publish (Mosquitto queues for its session), then
           started: how fast it drains a backlog.

Prints, per mode, the bridge's own figure from its summary (forwarded / time from the first
message received to the last one Kafka acknowledged) and the wall time until Kafka had everything.

    TRIBUTARY_BIN=target/release/tributary python3 scripts/bench_bridge.py [--messages 100000] [--size 100]
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "integration"))

from conftest import tributary_bin  # noqa: E402
from kafka import Tansu, unique_name  # noqa: E402
from test_bridge import Bridge, Source  # noqa: E402

SUMMARY = re.compile(r"forwarded to Kafka\s+(\d+) \((\d+) msg/s over ([\d.]+) s")


def kafka_count(bootstrap: str, topic: str, partitions: int = 3) -> int:
    from confluent_kafka import Consumer, TopicPartition

    c = Consumer({"bootstrap.servers": bootstrap, "group.id": unique_name("count")})
    try:
        return sum(hi - lo for lo, hi in (c.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
                                          for p in range(partitions)))
    finally:
        c.close()


def publish(source: Source, topic_prefix: str, messages: int, size: int):
    clients = 4
    out = subprocess.run([tributary_bin(), "bench", "pub", "--port", str(source.port), "--clients", str(clients),
                          "--messages", str(messages // clients), "--size", str(size), "--qos", "1",
                          "--topic", f"{topic_prefix}/{{client}}", "--json"],
                         capture_output=True, text=True, timeout=600, check=True)
    return out.stdout.strip().splitlines()[-1]


def run_mode(mode: str, workdir: Path, tansu: Tansu, messages: int, size: int) -> str:
    run = unique_name(mode)
    topic = unique_name(f"bench-{mode}")
    source = Source(workdir / run)
    bridge = Bridge(workdir / run, source, tansu, topic, [f"{run}/#"], f"bench-{run}")
    try:
        source.start()
        bridge.start()
        if mode == "backlog":
            bridge.stop()
        t0 = time.monotonic()
        publish(source, run, messages, size)
        published_s = time.monotonic() - t0
        if mode == "backlog":
            t0 = time.monotonic()
            bridge.start()
        deadline = time.monotonic() + 600
        while kafka_count(tansu.bootstrap, topic) < messages:
            if time.monotonic() > deadline:
                raise SystemExit(f"{mode}: Kafka holds only {kafka_count(tansu.bootstrap, topic)} of {messages}")
            time.sleep(0.2)
        wall_s = time.monotonic() - t0
        bridge.stop()
        summary = SUMMARY.findall(bridge.log_text())[-1]
        forwarded, rate, busy = int(summary[0]), int(summary[1]), float(summary[2])
        return (f"{mode:8} {messages} x {size} B: bridge {rate} msg/s ({forwarded} forwarded in {busy:.1f} s); "
                f"until Kafka had all {wall_s:.1f} s ({messages / wall_s:.0f} msg/s); "
                f"publishing into Mosquitto took {published_s:.1f} s")
    finally:
        bridge.close()
        source.close()


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--messages", type=int, default=100_000)
    parser.add_argument("--size", type=int, default=100)
    parser.add_argument("--modes", default="live,backlog")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-bridge-") as tmp:
        tansu = Tansu(Path(tmp) / "tansu").start()
        try:
            for mode in args.modes.split(","):
                print(run_mode(mode, Path(tmp), tansu, args.messages, args.size), flush=True)
        finally:
            tansu.close()


if __name__ == "__main__":
    main()
