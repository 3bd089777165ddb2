"""Limits from the `[limits]` and `[log]` config tables, each with its client-visible answer.

| limit | exceeded by | expected answer |
|---|---|---|
| limits.max_connections = 3 | a 4th connection | CONNACK 0x89 Server busy (5.0) / return code 3 (3.1.1), then close |
| limits.connect_timeout_ms = 300 | silence, or half a CONNECT | the connection is closed within a second or two |
| log.max_bytes, with an offline persistent session behind | more publishes | every publish acknowledged; the session loses its own oldest messages and gets the newest on return; `tributary_mqtt_session_records_skipped_total` counts them |
| log.max_bytes, with a consumer such as the pipeline behind | more publishes | 5.0: PUBACK 0x97 Quota exceeded; 3.1.1: closed without PUBACK (crates/broker/tests/full_log.rs) |
| limits.max_packet_size, limits.receive_maximum | (announced) | CONNACK properties 0x27 and 0x21 carry the configured values |
"""

from __future__ import annotations

import struct
import time
import urllib.request

import pytest

from conftest import wait_for
from mqttraw import (CONNACK, PUBACK, V311, V5, Closed, RawClient, connack_properties, connect,
                     packet, publish, subscribe)

pytestmark = pytest.mark.tributary_only("exercises tributary's own config keys and log limits")


def raw(broker, timeout=5.0) -> RawClient:
    return RawClient(broker.host, broker.port, timeout=timeout)


@pytest.mark.broker_config({"limits": {"max_connections": 3}})
@pytest.mark.parametrize("version,busy", [(V5, 0x89), (V311, 3)])
def test_connection_beyond_max_connections_is_refused_busy(broker, version, busy):
    held = []

    def connects(client_id: str):
        # The fixture's readiness probe may still hold a slot for a moment
        # (until the broker sees it close), so a refusal here is retried.
        c = raw(broker)
        c.send(connect(V5, client_id))
        if c.read_packet().reason_code(V5) == 0:
            held.append(c)
            return True
        c.close()
        return False

    try:
        for i in range(3):
            wait_for(lambda: connects(f"held-{i}"), timeout=5, interval=0.1, what=f"connection {i} accepted")
        extra = raw(broker)
        extra.send(connect(version, "extra"))
        answer = extra.read_packet()
        assert answer.type == CONNACK and answer.reason_code(version) == busy, answer
        _, closed = extra.read_until_closed(timeout=5)
        assert closed
        # A freed slot is usable again.
        held.pop().close()

        def fourth_connects():
            c = raw(broker)
            c.send(connect(V5, "later"))
            ok = c.read_packet().reason_code(V5) == 0
            if ok:
                held.append(c)
            else:
                c.close()
            return ok

        wait_for(fourth_connects, timeout=5, interval=0.1, what="a connection after one closed")
    finally:
        for c in held:
            c.close()


@pytest.mark.broker_config({"limits": {"connect_timeout_ms": 300}})
@pytest.mark.parametrize("first_bytes", [b"", connect(V5, "half")[:7]], ids=["silent", "half-connect"])
def test_connection_without_connect_is_closed_after_the_timeout(broker, first_bytes):
    c = raw(broker)
    started = time.monotonic()
    if first_bytes:
        c.send(first_bytes)
    packets, closed = c.read_until_closed(timeout=5)
    elapsed = time.monotonic() - started
    c.close()
    assert closed and not packets, packets
    assert 0.2 <= elapsed < 3.0, f"closed after {elapsed:.2f}s"


@pytest.mark.broker_config({"limits": {"max_packet_size": 4096, "receive_maximum": 17}})
def test_connack_announces_the_configured_limits(broker):
    with raw(broker) as c:
        props = connack_properties(c.connect(V5, "limits"))
    assert props[0x27] == 4096
    assert props[0x21] == 17


def persistent_session_holding_the_log(broker, client_id: str):
    """A 3.1.1 session with clean session off, subscribed to '#', then offline: its cursor in the log."""
    with raw(broker) as c:
        c.connect(V311, client_id, flags=0x00)
        c.send(subscribe([("#", 1)], version=V311))
        assert c.read_packet().type == 9  # SUBACK
        c.send(packet(0xE0, b""))  # DISCONNECT


def payload_of(i: int) -> bytes:
    """1 KiB that starts with its number (8 digits)."""
    return f"{i:08d}".encode() + bytes(1016)


def fill_until_refused(broker, version: int, limit: int = 400, topic: str = "fill/x", payload=payload_of):
    """Publish 1 KiB QoS 1 messages one at a time until one is not acknowledged with success.

    Returns (acknowledged packet ids, the refusing packet or None, connection closed)."""
    acked = []
    c = raw(broker)
    c.connect(version, f"filler-{version}")
    try:
        for pid in range(1, limit + 1):
            c.send(publish(topic, payload(pid - 1), qos=1, packet_id=pid, version=version))
            try:
                p = c.read_packet(timeout=5)
            except Closed:
                return acked, None, True
            assert p.type == PUBACK, p
            reason = p.body[2] if len(p.body) > 2 else 0
            if reason != 0:
                return acked, p, False
            acked.append(pid)
        return acked, None, False
    finally:
        c.close()


LOG_FULL = {"log": {"segment_bytes": 8192, "max_bytes": 32768, "max_age_secs": 0}}


def metric(broker, name: str) -> float:
    with urllib.request.urlopen(broker.http_url + "/metrics", timeout=10) as response:
        for line in response.read().decode().splitlines():
            if line.startswith(name + " "):
                return float(line.split()[1])
    return 0.0


def skipped_by_sessions(broker) -> float:
    return metric(broker, "tributary_mqtt_session_records_skipped_total")


@pytest.mark.broker_config(LOG_FULL)
@pytest.mark.parametrize("version", [V5, V311], ids=["v5", "v311"])
def test_offline_session_behind_retention_loses_its_oldest_not_other_publishers(broker, version):
    """A persistent session away while the log turns over does not stop anyone else's publishes:
    past log.max_bytes its own oldest messages are deleted, and it gets the newest on return."""
    holder = f"away-{version}"
    persistent_session_holding_the_log(broker, holder)
    acked, refusal, closed = fill_until_refused(broker, version, limit=200)
    assert refusal is None and not closed, f"refused after {len(acked)} publishes"
    assert len(acked) == 200
    with raw(broker) as c:
        c.connect(V311, holder, flags=0x00)
        payloads = []
        while True:
            try:
                p = c.read_packet(timeout=2)
            except TimeoutError:
                break
            if p.type == 3:  # PUBLISH, QoS 1: topic, packet id, payload
                tlen = struct.unpack("!H", p.body[:2])[0]
                c.send(packet(0x40, p.body[2 + tlen:4 + tlen]))  # PUBACK
                payloads.append(p.body[4 + tlen:])
        c.send(packet(0xE0, b""))
    # What the log still holds (about max_bytes of 1 KiB messages), the newest last, in order.
    assert 10 <= len(payloads) < 200, len(payloads)
    assert payloads[-1] == payload_of(199)
    numbers = [int(p[:8]) for p in payloads]
    assert numbers == list(range(numbers[0], 200)), numbers[:5]
    wait_for(lambda: skipped_by_sessions(broker) >= numbers[0], timeout=5, interval=0.2,
             what="the skipped records in /metrics")
