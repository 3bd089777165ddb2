"""`/metrics` of `tributary serve` read by the real Prometheus text parser (prometheus_client):
a device publishes SenML at QoS 1 with paho-mqtt while its owner is subscribed, and the figures
the broker, the log and the pipeline report must match what happened.

| case | expected |
|---|---|
| a publishing burst | `*_per_second` gauges of messages in, out and store rows above 0 while it lasts, 0 after |
| N messages of 2 SenML records each, one subscriber | received and sent totals >= N; the append histogram counts >= N publishes, its cumulative buckets never decrease and end in `+Inf` == `_count`; store rows written == 2N; pipeline lag back to 0 |
"""

from __future__ import annotations

import json
import time
import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families

from accounts_cli import add_device, add_owner, login_when_known
from clients import V5, Client, unique
from conftest import wait_for

pytestmark = pytest.mark.tributary_only("the HTTP API's /metrics is tributary's own")

T0 = 1_790_000_000  # seconds; the measurements' base time
MIN_MESSAGES = 200
BURST_S = 30


class Scrape:
    """One parsed `/metrics`: family types, unlabelled sample values, a histogram's buckets."""

    def __init__(self, broker):
        with urllib.request.urlopen(broker.http_url + "/metrics", timeout=10) as response:
            assert response.headers["Content-Type"].startswith("text/plain; version=0.0.4")
            text = response.read().decode()
        self.text = text
        self.families = {f.name: f for f in text_string_to_metric_families(text)}
        self.values = {s.name: s.value for f in self.families.values() for s in f.samples if not s.labels}

    def __getitem__(self, name: str) -> float:
        assert name in self.values, f"{name} missing from /metrics:\n{self.text}"
        return self.values[name]

    def type_of(self, family: str) -> str:
        assert family in self.families, f"{family} missing from /metrics:\n{self.text}"
        return self.families[family].type

    def buckets(self, family: str) -> list[tuple[float, float]]:
        return [(float(s.labels["le"]), s.value) for s in self.families[family].samples
                if s.name == family + "_bucket"]


def senml(device: str, i: int) -> bytes:
    return json.dumps([{"bn": f"{device}/", "bt": T0 + i, "n": "hr", "u": "beat/min", "v": 60 + i % 40},
                       {"n": "steps", "u": "count", "v": i}]).encode()


def test_metrics_count_messages_appends_rows_and_lag(broker):
    suffix = unique("").replace("-", "")[-6:]
    owner, device = f"met{suffix}", f"metdev{suffix}"
    password = add_owner(broker, owner)
    token = add_device(broker, owner, device)
    publisher = login_when_known(broker, device, token)
    subscriber = Client(broker, V5)
    subscriber.c.username_pw_set(owner, password)
    subscriber.connect()
    topic = f"tributary/v1/{device}/senml"
    subscriber.subscribe([(topic, 1)])

    # A burst: publish until each per-second gauge was seen above 0 (and at least MIN_MESSAGES).
    rates = {"tributary_mqtt_messages_received_per_second": 0.0,
             "tributary_mqtt_messages_sent_per_second": 0.0,
             "tributary_store_rows_written_per_second": 0.0}
    sent = 0
    deadline = time.monotonic() + BURST_S
    while sent < MIN_MESSAGES or min(rates.values()) <= 0:
        assert time.monotonic() < deadline, f"per-second gauges during {sent} publishes: {rates}"
        publisher.publish(topic, senml(device, sent), qos=1)
        sent += 1
        if sent % 25 == 0:
            scrape = Scrape(broker)
            for name in rates:
                rates[name] = max(rates[name], scrape[name])
    publisher.close()
    subscriber.wait_messages(sent, timeout=30, topic=topic)

    def settled():
        s = Scrape(broker)
        done = (s["tributary_store_rows_written_total"] >= 2 * sent
                and s["tributary_pipeline_consumer_lag"] == 0
                and s["tributary_mqtt_messages_sent_total"] >= sent)
        return s if done else None

    scrape = wait_for(settled, timeout=30, interval=0.2, what="the pipeline to store every row and catch up")
    assert scrape.type_of("tributary_mqtt_messages_received") == "counter"
    assert scrape["tributary_mqtt_messages_received_total"] >= sent
    assert scrape["tributary_mqtt_messages_sent_total"] >= sent
    # Exactly the rows of this test: each message is one SenML pack of two records.
    assert scrape["tributary_store_rows_written_total"] == 2 * sent
    assert scrape.type_of("tributary_store_rows_written") == "counter"
    assert scrape["tributary_pipeline_records_total"] >= sent
    assert scrape["tributary_pipeline_dead_letters_total"] == 0
    assert scrape.type_of("tributary_pipeline_consumer_lag") == "gauge"

    assert scrape.type_of("tributary_log_append_seconds") == "histogram"
    buckets = scrape.buckets("tributary_log_append_seconds")
    bounds = [le for le, _ in buckets]
    counts = [count for _, count in buckets]
    assert bounds == sorted(bounds) and bounds[-1] == float("inf"), bounds
    assert all(a <= b for a, b in zip(counts, counts[1:])), f"buckets not cumulative: {buckets}"
    assert counts[-1] == scrape["tributary_log_append_seconds_count"]
    assert scrape["tributary_log_append_seconds_count"] >= sent
    assert scrape["tributary_log_append_seconds_sum"] > 0
    # A fsync'd append on a local disk takes well under 10 s: nothing lands in +Inf alone.
    assert counts[-2] == counts[-1], buckets

    # Once the burst is over, the per-second gauges fall back to 0.
    wait_for(lambda: Scrape(broker)["tributary_mqtt_messages_received_per_second"] == 0,
             timeout=10, interval=0.2, what="received per second back to 0 after the burst")
    subscriber.close()
