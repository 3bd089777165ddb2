"""`tributary bridge`: Mosquitto (the source, persistence on) → the bridge → Kafka (Apache Kafka), at least once.

Every run publishes numbered 100-byte messages with paho at QoS 1 to Mosquitto, PUBLISHERS
publishers of PER_PUBLISHER numbers each, publisher i to topic ``bridge/<run>/<i>``. Then it reads
the bridge's Kafka topic from the beginning and counts, through the ``figures`` fixture:
published, acknowledged (by Mosquitto to the publisher), found in Kafka, lost (acknowledged but not
found — must be 0), duplicated (found more than once — allowed, counted).

1. ``test_all_messages_reach_kafka_with_their_topic``: no fault; every record also carries its MQTT
   topic in the ``mqtt.topic`` header.
2. ``test_bridge_killed_mid_run``: the bridge gets SIGKILL once 40 % are acknowledged by Mosquitto,
   and is started again (same client id: the persistent session kept what arrived meanwhile).
3. ``test_source_restarted_mid_run``: Mosquitto gets SIGTERM at 40 % and starts again on the same
   port and persistence directory; publishers and the bridge reconnect.

The bridge runs from the release binary (``TRIBUTARY_BIN``); Kafka is the run's Apache Kafka
node (``kafka`` fixture). The source is Mosquitto whatever ``TRIBUTARY_TEST_AGAINST`` says.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import threading
import time
from pathlib import Path

import pytest

from conftest import Broker, tributary_bin, unique_topic, wait_for
from kafka import loss_report, read_all
from numbered import Publisher

PUBLISHERS = 10
PER_PUBLISHER = 1000
SIZE = 100
FAULT_AT = 0.4
DEADLINE_S = 240
# The source lets the bridge have this many unacknowledged QoS 1 messages (Mosquitto's default is
# 20, which makes throughput one Kafka round trip per 20 messages).
SOURCE_MAX_INFLIGHT = 1000


class Source(Broker):
    """Mosquitto as the bridge's source, persistence on (conftest's configuration: persistent
    sessions are written at shutdown, queues unbounded), always Mosquitto."""

    def __init__(self, workdir: Path):
        super().__init__(workdir)
        self.kind = "mosquitto"

    def _mosquitto_cmd(self) -> list[str]:
        cmd = super()._mosquitto_cmd()
        with open(cmd[-1], "a") as conf:
            conf.write(f"max_inflight_messages {SOURCE_MAX_INFLIGHT}\n")
        return cmd


class Bridge:
    """One `tributary bridge` process from `source` to `kafka`, writing to `topic`; its output goes
    to ``bridge.log`` in `workdir` (appended across restarts)."""

    def __init__(self, workdir: Path, source: Broker, kafka, topic: str, filters: list[str],
                 client_id: str, extra_args: list[str] | None = None):
        self.workdir = workdir
        self.log_path = workdir / "bridge.log"
        self.cmd = [tributary_bin(), "bridge", "--from", f"mqtt://{source.host}:{source.port}",
                    "--to", f"kafka://{kafka.bootstrap}", "--default-kafka-topic", topic,
                    "--client-id", client_id, "--ack-timeout-ms", "10000"]
        for f in filters:
            self.cmd += ["--topic", f]
        self.cmd += extra_args or []
        self.proc: subprocess.Popen | None = None
        self.starts = 0

    def start(self, timeout: float = 60.0) -> "Bridge":
        """Start, and wait until the source granted the subscriptions (its log says so)."""
        seen = self.log_text().count("subscribed at QoS 1")
        with open(self.log_path, "ab", buffering=0) as log:
            log.write(f"=== start #{self.starts + 1}: {' '.join(self.cmd)}\n".encode())
            env = dict(os.environ, RUST_LOG="info,rdkafka=warn")
            self.proc = subprocess.Popen(self.cmd, stdin=subprocess.DEVNULL, stdout=log,
                                         stderr=subprocess.STDOUT, env=env, start_new_session=True)
        self.starts += 1

        def subscribed():
            assert self.proc.poll() is None, f"bridge exited with {self.proc.returncode}:\n{self.log_text()[-4000:]}"
            return self.log_text().count("subscribed at QoS 1") > seen

        wait_for(subscribed, timeout, interval=0.05, what="the bridge's SUBACK")
        return self

    def kill(self):
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)

    def stop(self, timeout: float = 30.0) -> int:
        """SIGTERM and wait: the bridge drains its deliveries in flight and prints its summary."""
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=timeout)

    def close(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""


class Publishers:
    """PUBLISHERS paho publishers in threads; publisher i sends numbers i*PER_PUBLISHER.. to
    ``bridge/<run>/<i>``. A publisher whose connection dies (the source restarts) connects again
    with the same client id and resends every number of its range that has no PUBACK."""

    def __init__(self, source: Broker, run: str, deadline: float):
        self.source = source
        self.run = run
        self.deadline = deadline
        self.acked: set[int] = set()
        self.attempts = 0
        self.errors: list[str] = []
        self.lock = threading.Lock()
        self.threads = [threading.Thread(target=self._publish, args=(i,), daemon=True)
                        for i in range(PUBLISHERS)]

    def topic(self, i: int) -> str:
        return f"bridge/{self.run}/{i}"

    @property
    def published(self) -> range:
        return range(PUBLISHERS * PER_PUBLISHER)

    def start(self) -> "Publishers":
        for t in self.threads:
            t.start()
        return self

    def join(self):
        for t in self.threads:
            t.join(timeout=max(1.0, self.deadline - time.monotonic()))

    def _publish(self, i: int):
        numbers = range(i * PER_PUBLISHER, (i + 1) * PER_PUBLISHER)
        try:
            while time.monotonic() < self.deadline:
                todo = [n for n in numbers if n not in self.acked]
                if not todo:
                    return
                p = Publisher(self.source, f"{self.run}-pub-{i}", self.acked, self.topic(i), size=SIZE)
                try:
                    try:
                        p.connect()
                    except (AssertionError, OSError):
                        time.sleep(0.2)  # the source is restarting: try again
                        continue
                    for n in todo:
                        if not p.publish(n, self.deadline):
                            break
                    p.wait_drained(self.deadline)
                finally:
                    with self.lock:
                        self.attempts += p.attempts
                    p.close()
        except Exception as e:  # noqa: BLE001 - reported by the test
            self.errors.append(f"publisher {i}: {e!r}")


def run_bridge_scenario(tmp_path, kafka, figures, fault: str | None):
    run = unique_topic("run").replace(".", "-")
    topic = unique_topic("bridge")
    source = Source(tmp_path / "mosquitto")
    bridge = Bridge(tmp_path, source, kafka, topic, [f"bridge/{run}/#"], f"bridge-{run}")
    deadline = time.monotonic() + DEADLINE_S
    try:
        source.start()
        bridge.start()
        t0 = time.monotonic()
        pubs = Publishers(source, run, deadline).start()
        if fault:
            wait_for(lambda: len(pubs.acked) >= FAULT_AT * len(pubs.published), 120,
                     what=f"{FAULT_AT:.0%} acknowledged before the fault")
            at = len(pubs.acked)
            if fault == "bridge SIGKILL":
                bridge.kill()
                # Publishing goes on into the bridge's session while it is away.
                wait_for(lambda: len(pubs.acked) >= at + 1000 or len(pubs.acked) == len(pubs.published),
                         60, what="publishing while the bridge is away")
                bridge.start()
            elif fault == "source SIGTERM":
                source.stop()
                source.start()
            fault_line = f"{fault} at {at} acknowledged; "
        else:
            fault_line = ""
        pubs.join()
        publish_s = time.monotonic() - t0
        assert not pubs.errors, pubs.errors
        assert len(pubs.acked) == len(pubs.published), \
            f"Mosquitto acknowledged only {len(pubs.acked)} of {len(pubs.published)} before the deadline"

        # Everything is in the source's queue or on its way: read until Kafka has nothing new for a while
        # (longer than the bridge's longest reconnect backoff).
        records = read_all(kafka.bootstrap, topic, expected=None, timeout=150, idle=10)
        numbers, wrong_topic = [], []
        for r in records:
            n = int(r.value[:8])
            numbers.append(n)
            want = f"bridge/{run}/{n // PER_PUBLISHER}".encode()
            if r.headers.get("mqtt.topic") != want:
                wrong_topic.append((n, r.headers.get("mqtt.topic")))
        report = loss_report(pubs.published, pubs.acked, numbers)

        # A clean stop drains and prints the summary; its redeliveries are the source's DUPs.
        assert bridge.stop() == 0, bridge.log_text()[-4000:]
        redelivered = re.findall(r"received from the source\s+\d+ \((\d+) redelivered\)", bridge.log_text())
        assert redelivered, "no bridge summary"
        figures(f"{fault_line}{report.line()} records={report['found_records']} "
                f"redelivered_to_last_bridge={redelivered[-1]} publish={publish_s:.1f}s "
                f"publish_attempts={pubs.attempts} bridge_starts={bridge.starts}")
        assert report["lost"] == 0, f"lost {report['lost']}, e.g. {report['lost_ids']}"
        assert report["unexpected"] == 0, report
        assert not wrong_topic, f"records with the wrong mqtt.topic header, e.g. {wrong_topic[:5]}"
        assert all(r.value is not None and len(r.value) == SIZE for r in records)
        return report
    except BaseException:
        print(f"--- bridge log ---\n{bridge.log_text()[-8000:]}\n--- mosquitto log ---\n{source.log_tail(8000)}")
        raise
    finally:
        bridge.close()
        source.close()


@pytest.mark.timeout(300)
def test_all_messages_reach_kafka_with_their_topic(tmp_path, kafka, figures):
    report = run_bridge_scenario(tmp_path, kafka, figures, fault=None)
    assert report["found"] == PUBLISHERS * PER_PUBLISHER


@pytest.mark.timeout(300)
def test_bridge_killed_mid_run(tmp_path, kafka, figures):
    run_bridge_scenario(tmp_path, kafka, figures, fault="bridge SIGKILL")


@pytest.mark.timeout(300)
def test_source_restarted_mid_run(tmp_path, kafka, figures):
    run_bridge_scenario(tmp_path, kafka, figures, fault="source SIGTERM")


@pytest.mark.timeout(60)
def test_unreachable_source_and_bad_urls_are_explained(tmp_path, kafka):
    """Operators get the reason: a bad URL exits at once; an unreachable source is retried with the
    connect error in the log."""
    binary = tributary_bin()
    bad = subprocess.run([binary, "bridge", "--from", "tcp://127.0.0.1:1", "--topic", "a/#",
                          "--to", f"kafka://{kafka.bootstrap}"], capture_output=True, text=True, timeout=20)
    assert bad.returncode != 0
    assert "--from" in bad.stderr and "unknown scheme" in bad.stderr, bad.stderr

    from conftest import free_port

    port = free_port()  # nothing listens there
    log = tmp_path / "bridge.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen([binary, "bridge", "--from", f"mqtt://127.0.0.1:{port}", "--topic", "a/#",
                                 "--to", f"kafka://{kafka.bootstrap}", "--default-kafka-topic",
                                 unique_topic("unreachable")], stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)
    try:
        wait_for(lambda: "no connection to the source" in log.read_text(errors="replace"), 40,
                 what="the reconnect log line")
        text = log.read_text(errors="replace")
        assert f"127.0.0.1:{port}" in text and "Connection refused" in text, text
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
