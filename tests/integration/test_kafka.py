"""Tributary with Kafka as its log (`--log kafka://`), against a real Apache Kafka node (the run's
`kafka`), read back by an independent client (confluent-kafka); and one smoke test on tansu, a
second Kafka-protocol broker. The three-broker cluster is test_kafka_cluster.py.

| case | expected |
|---|---|
| 10 devices × 1,000 × 100 B, QoS 1, MQTT 5.0 with a content type | 10,000 records in Kafka, key = device, headers: topic, QoS, retain, owner, device, content type, unique message id; an MQTT subscriber receives all 10,000 through Kafka |
| Tributary SIGKILLed mid-run, restarted | every acknowledged number in Kafka (lost = 0) |
| Kafka stopped for 10 s mid-run, started again | acknowledgements wait; a 5.0 publish gets PUBACK 0x97 after `ack_timeout_ms`; 3.1.1 publishers are disconnected without acks and resend; lost = 0; the broker recovers by itself |
| (tansu 0.6.0) 1,000 × QoS 1 | all acknowledged and in Kafka with key and topic header (lost = 0); a subscriber receives all 1,000 through Kafka |

Each fault run reports published / acknowledged / found / lost / duplicated through `figures`.
"""

from __future__ import annotations

import threading
import time
import urllib.request

import pytest

from accounts_cli import add_device, add_owner, login_when_known
from clients import V5, V311, Client, unique
from conftest import Broker, unique_topic
from kafka import loss_report, read_all
from numbered import Publisher

pytestmark = pytest.mark.tributary_only("Kafka as the log is tributary's own")

ACK_TIMEOUT_MS = 4000
FAULT_AT = 0.4
DEADLINE_S = 240


def kafka_broker(tmp_path, kafka, topic: str, **extra) -> Broker:
    # These tests read Kafka's records as any consumer would and check their payloads, so the
    # payloads are left unsealed here; sealed records on Kafka are test_erasure.py's.
    config = {"kafka": {"url": f"kafka://{kafka.bootstrap}", "default_topic": topic,
                        "ack_timeout_ms": ACK_TIMEOUT_MS, "partitions": 3, **extra},
              "erasure": {"encrypt": False}}
    return Broker(tmp_path, config).start()


def kafka_reachable_metric(broker) -> str | None:
    """The value of tributary_kafka_reachable on the broker's /metrics."""
    with urllib.request.urlopen(broker.http_url + "/metrics", timeout=5) as response:
        for line in response.read().decode().splitlines():
            if line.startswith("tributary_kafka_reachable "):
                return line.split()[1].split(".")[0]
    return None


def found_numbers(records) -> list[int]:
    return [int(r.value[:8]) for r in records if r.value and r.value[:8].isdigit()]


@pytest.mark.timeout(180)
def test_ten_devices_into_kafka_with_keys_and_headers(tmp_path, kafka, figures):
    topic = unique_topic("ingest")
    broker = kafka_broker(tmp_path, kafka, topic)
    try:
        suffix = unique("").replace("-", "")[-6:]
        owner = f"kann{suffix}"
        owner_secret = add_owner(broker, owner)
        devices = {f"kdev{i}{suffix}": None for i in range(10)}
        for device in devices:
            devices[device] = add_device(broker, owner, device)
        login_when_known(broker, list(devices)[-1], devices[list(devices)[-1]]).close()

        app = Client(broker, V5)
        app.c.username_pw_set(owner, owner_secret)
        app.connect()
        assert app.subscribe([(f"tributary/v1/{d}/senml", 1) for d in devices]) == [1] * 10

        acked: set[int] = set()
        publishers = []
        t0 = time.monotonic()
        deadline = t0 + 120
        for i, (device, token) in enumerate(devices.items()):
            p = Publisher(broker, unique(device), acked, f"tributary/v1/{device}/senml", version=V5,
                          credentials=(device, token), size=100,
                          properties={"ContentType": "application/senml+json"})
            p.connect()
            publishers.append(p)
        threads = [threading.Thread(target=lambda p=p, i=i: [p.publish(i * 1000 + n, deadline) for n in range(1000)])
                   for i, p in enumerate(publishers)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        for p in publishers:
            p.wait_drained(deadline)
        publish_s = time.monotonic() - t0
        assert len(acked) == 10_000, f"only {len(acked)} of 10000 acknowledged"

        records = read_all(kafka.bootstrap, topic, expected=10_000, timeout=60)
        numbers = found_numbers(records)
        report = loss_report(range(10_000), acked, numbers)
        figures(f"10 devices x 1,000 x 100 B QoS 1 into Kafka: {report.line()}; publish {publish_s:.1f}s")
        assert report["lost"] == 0 and report["found"] == 10_000, report
        ids = set()
        for r in records:
            n = int(r.value[:8])
            device = list(devices)[n // 1000]
            assert r.key == device.encode(), (n, r.key)
            h = r.headers
            assert h["mqtt.topic"] == f"tributary/v1/{device}/senml".encode()
            assert (h["mqtt.qos"], h["mqtt.retain"]) == (b"1", b"false")
            assert (h["tributary.owner"], h["tributary.device"]) == (owner.encode(), device.encode())
            assert h["content-type"] == b"application/senml+json"
            assert len(h["tributary.message-id"]) == 32
            ids.add(h["tributary.message-id"])
            assert len(r.value) == 100
        assert len(ids) == 10_000, "message ids are unique"
        # The same messages reach MQTT subscribers through Kafka and each node's local log.
        app.wait(lambda s: len({m.payload for m in s.messages}) >= 10_000, timeout=60,
                 what="10,000 messages delivered from Kafka")
        for p in publishers:
            p.close()
        app.close()
    finally:
        broker.close()


def publish_until_all_acked(broker, acked: set[int], n_total: int, topic: str, deadline: float,
                            stats: dict) -> None:
    """Connect, send every number without an acknowledgement, repeat (after a disconnect or a broker
    restart) until all are acknowledged or the deadline passes. Runs in its own thread."""
    while len(acked) < n_total and time.monotonic() < deadline:
        p = Publisher(broker, f"kafka-fault-{topic}", acked, topic)
        try:
            p.c.connect(expect_success=False)
            if p.c.s.connack is None or p.c.s.connack.reason_code != 0:
                time.sleep(0.2)
                continue
            for n in range(n_total):
                if n in acked:
                    continue
                if not p.publish(n, deadline):
                    break
            p.wait_drained(deadline)
        except Exception:  # the broker was killed or restarted under us: connect again
            time.sleep(0.2)
        finally:
            stats["attempts"] = stats.get("attempts", 0) + p.attempts
            stats["connections"] = stats.get("connections", 0) + 1
            p.close()


def run_fault(tmp_path, kafka, figures, name: str, fault, n_total: int = 20_000):
    topic = unique_topic(name)
    mqtt_topic = f"kafka/{name}"
    broker = kafka_broker(tmp_path, kafka, topic)
    try:
        acked: set[int] = set()
        stats: dict = {}
        deadline = time.monotonic() + DEADLINE_S
        worker = threading.Thread(target=publish_until_all_acked,
                                  args=(broker, acked, n_total, mqtt_topic, deadline, stats), daemon=True)
        worker.start()
        while len(acked) < n_total * FAULT_AT and time.monotonic() < deadline:
            time.sleep(0.01)
        acked_at_fault = len(acked)
        fault(broker)
        worker.join(max(1.0, deadline - time.monotonic()))
        assert len(acked) == n_total, f"only {len(acked)} of {n_total} acknowledged before the deadline"
        records = read_all(kafka.bootstrap, topic, expected=None, timeout=90, idle=5)
        report = loss_report(range(n_total), acked, found_numbers(records))
        figures(f"{name} at {acked_at_fault} acked: {report.line()} "
                f"(publishes sent {stats.get('attempts')}, connections {stats.get('connections')})")
        assert report["lost"] == 0, f"acknowledged but not in Kafka: {report['lost_ids']}"
        assert report["unexpected"] == 0
        return broker, report
    finally:
        broker.close()


@pytest.mark.timeout(300)
def test_tributary_killed_mid_run_loses_nothing_acknowledged(tmp_path, kafka, figures):
    def kill_and_restart(broker):
        broker.kill()
        broker.start()

    run_fault(tmp_path, kafka, figures, "sigkill", kill_and_restart)


@pytest.mark.timeout(300)
def test_kafka_stopped_for_ten_seconds_loses_nothing_acknowledged(tmp_path, kafka, figures):
    probe_reason = {}

    def stop_kafka(broker):
        kafka.stop()
        try:
            # A 5.0 publisher is told its message was not stored once the ack timeout passes.
            probe = Client(broker, V5)
            probe.connect()
            t0 = time.monotonic()
            probe_reason["code"], props = probe.publish_answer("kafka/probe", b"while Kafka is away",
                                                               timeout=ACK_TIMEOUT_MS / 1000 + 10)
            probe_reason["after_s"] = time.monotonic() - t0
            probe_reason["text"] = getattr(props, "ReasonString", None)
            probe.close()
            probe_reason["metric_down"] = kafka_reachable_metric(broker)
            time.sleep(max(0.0, 10 - probe_reason["after_s"]))
        finally:
            kafka.start()

    broker, _ = run_fault(tmp_path, kafka, figures, "kafka-down", stop_kafka)
    figures(f"5.0 publish during the outage: PUBACK 0x{probe_reason['code']:02x} after "
            f"{probe_reason['after_s']:.1f}s ({probe_reason['text']})")
    assert probe_reason["code"] == 0x97
    assert probe_reason["after_s"] >= ACK_TIMEOUT_MS / 1000 - 0.5
    assert probe_reason["metric_down"] == "0", "/metrics says Kafka is unreachable during the outage"


@pytest.mark.timeout(120)
def test_smoke_on_tansu_a_second_kafka_protocol_broker(tmp_path, tansu, figures):
    """The log on tansu 0.6.0, a Kafka-protocol broker that is not Apache Kafka (written in Rust,
    sqlite storage): messages are acknowledged, land with their key and headers, and reach a
    subscriber through it."""
    n_total = 1000
    topic = unique_topic("tansu")
    broker = kafka_broker(tmp_path, tansu, topic)
    try:
        sub = Client(broker, V5)
        sub.connect()
        assert sub.subscribe([("tansu/#", 1)]) == [1]
        acked: set[int] = set()
        client_id = unique("tansu-pub")
        p = Publisher(broker, client_id, acked, "tansu/smoke", version=V5)
        p.connect()
        t0 = time.monotonic()
        deadline = t0 + 60
        for n in range(n_total):
            assert p.publish(n, deadline), f"connection lost at {n}"
        p.wait_drained(deadline)
        publish_s = time.monotonic() - t0
        records = read_all(tansu.bootstrap, topic, expected=n_total, timeout=60)
        report = loss_report(range(n_total), acked, found_numbers(records))
        figures(f"tansu 0.6.0, {n_total} x QoS 1: {report.line()}; publish {publish_s:.1f}s")
        assert len(acked) == n_total and report["lost"] == 0 and report["unexpected"] == 0, report
        keys, topics = {r.key for r in records}, {r.headers.get("mqtt.topic") for r in records}
        # An anonymous client's records are keyed by its client id, marked as anonymous.
        assert (keys, topics) == ({f"anon:{client_id}".encode()}, {b"tansu/smoke"})
        sub.wait(lambda s: len({m.payload for m in s.messages}) >= n_total, timeout=60,
                 what=f"{n_total} messages delivered from tansu")
        p.close()
        sub.close()
    finally:
        broker.close()
