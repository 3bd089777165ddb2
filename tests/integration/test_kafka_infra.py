"""The Kafka test harness itself: the Apache Kafka node, `read_all` and `loss_report` (kafka.py).

If these fail, a failing Kafka pipeline test says nothing about tributary.
"""

from __future__ import annotations

import time

import pytest

from conftest import unique_topic
from kafka import loss_report, new_cluster_id, read_all

RECORDS = 1_000
PARTITIONS = 3
DEVICES = 17


def _headers(i: int) -> list[tuple[str, bytes]]:
    # The shape tributary's producer will write: MQTT metadata in headers, key = device.
    return [
        ("mqtt_topic", f"tenants/acme/devices/d{i % DEVICES}/telemetry".encode()),
        ("qos", str(i % 3).encode()),
        ("retain", b"false"),
        ("owner", b"acme"),
        ("device", f"d{i % DEVICES}".encode()),
        ("content_type", b"application/json"),
        ("message_id", str(i).encode()),
    ]


def _produce(bootstrap: str, topic: str, n: int) -> set[int]:
    """Produce `n` keyed records with headers; returns the ids the broker acknowledged."""
    from confluent_kafka import Producer

    producer = Producer({"bootstrap.servers": bootstrap, "acks": "all", "enable.idempotence": True,
                         "linger.ms": 5, "compression.type": "lz4"})
    acked: set[int] = set()
    errors: list[str] = []

    def on_delivery(i: int):
        # The id comes from the closure: a delivery report's message carries no headers.
        def report(err, msg):
            if err is not None:
                errors.append(f"{i}: {err}")
            else:
                acked.add(i)
        return report

    for i in range(n):
        producer.produce(topic, key=f"d{i % DEVICES}".encode(), value=f'{{"seq":{i}}}'.encode(),
                         headers=_headers(i), on_delivery=on_delivery(i))
        producer.poll(0)
    remaining = producer.flush(30)
    assert remaining == 0, f"{remaining} records still unsent after 30s"
    assert not errors, f"delivery errors: {errors[:5]}"
    return acked


def _check_records(records, n: int):
    assert len(records) == n, f"read {len(records)} records, expected {n}"
    ids = sorted(int(r.headers["message_id"]) for r in records)
    assert ids == list(range(n))
    for r in records:
        i = int(r.headers["message_id"])
        assert r.key == f"d{i % DEVICES}".encode()
        assert r.value == f'{{"seq":{i}}}'.encode()
        assert r.header_list == _headers(i)
    # Keyed records: one device always lands in one partition, and every partition got some.
    partitions_of_key: dict[bytes, set[int]] = {}
    for r in records:
        partitions_of_key.setdefault(r.key, set()).add(r.partition)
    assert all(len(p) == 1 for p in partitions_of_key.values()), partitions_of_key
    assert {r.partition for r in records} == set(range(PARTITIONS))
    # Offsets in each partition are dense from 0: nothing skipped, nothing twice.
    for p in range(PARTITIONS):
        offsets = sorted(r.offset for r in records if r.partition == p)
        assert offsets == list(range(len(offsets))), f"partition {p} offsets {offsets[:10]}..."


@pytest.mark.timeout(120)
def test_produce_read_back_and_survive_restart(kafka, figures):
    topic = kafka.create_topic(unique_topic("infra"), partitions=PARTITIONS)

    t0 = time.monotonic()
    acked = _produce(kafka.bootstrap, topic, RECORDS)
    produce_s = time.monotonic() - t0
    assert acked == set(range(RECORDS))

    t0 = time.monotonic()
    records = read_all(kafka.bootstrap, topic, expected=RECORDS)
    read_s = time.monotonic() - t0
    _check_records(records, RECORDS)

    kafka.restart()
    stop_s, start_s = kafka.last_stop_s, kafka.last_start_s

    again = read_all(kafka.bootstrap, topic, expected=RECORDS)
    _check_records(again, RECORDS)
    assert {(r.partition, r.offset, r.key, r.value) for r in again} == \
        {(r.partition, r.offset, r.key, r.value) for r in records}

    report = loss_report(range(RECORDS), acked, [int(r.headers["message_id"]) for r in again])
    assert (report["lost"], report["duplicated"], report["unexpected"]) == (0, 0, 0)
    figures(f"apache kafka: {report.line()}; produce {produce_s:.2f}s, read {read_s:.2f}s, "
            f"restart: stop {stop_s:.2f}s + start {start_s:.2f}s")


def test_read_all_of_an_empty_topic_returns_nothing(kafka):
    topic = kafka.create_topic(unique_topic("empty"))
    t0 = time.monotonic()
    assert read_all(kafka.bootstrap, topic, timeout=20, idle=1.0) == []
    assert time.monotonic() - t0 < 20


def test_loss_report_counts_lost_duplicated_and_unexpected():
    published = [1, 2, 3, 4, 5, 6]
    acknowledged = [1, 2, 3, 4, 5]           # 6 was sent but never acknowledged
    found = [1, 2, 2, 3, 3, 3, 5, 6, 99]    # 4 lost; 2 and 3 duplicated; 6 found anyway; 99 stray
    report = loss_report(published, acknowledged, found)
    assert report == {
        "published": 6,
        "acknowledged": 5,
        "found": 6,
        "found_records": 9,
        "lost": 1,
        "duplicated": 2,
        "unexpected": 1,
        "lost_ids": [4],
    }
    assert report.line() == "published=6 acknowledged=5 found=6 lost=1 duplicated=2 unexpected=1"
    assert str(report) == report.line()


def test_loss_report_of_a_clean_run_is_all_zero():
    report = loss_report(range(100), range(100), range(100))
    assert (report["lost"], report["duplicated"], report["unexpected"]) == (0, 0, 0)
    assert report["found"] == report["published"] == 100


def test_cluster_ids_never_start_with_a_dash():
    """`StorageTool format -t -x…` reads such an id as an option and fails; 1 random id in 64 starts
    with "-", and one such draw once broke every Kafka test of a run."""
    ids = [new_cluster_id() for _ in range(6_400)]
    assert not [i for i in ids if i.startswith("-")]
    assert all(len(i) == 22 for i in ids) and len(set(ids)) == len(ids)
