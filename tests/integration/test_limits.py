"""Limits from the `[limits]` and `[log]` config tables, each with its client-visible answer.

| limit | exceeded by | expected answer |
|---|---|---|
| limits.max_connections = 3 | a 4th connection | CONNACK 0x89 Server busy (5.0) / return code 3 (3.1.1), then close |
| limits.connect_timeout_ms = 300 | silence, or half a CONNECT | the connection is closed within a second or two |
| log.max_bytes, with an offline persistent session holding the log | more publishes | 5.0: PUBACK 0x97 Quota exceeded; 3.1.1: closed without PUBACK. Nothing acknowledged is lost |
| limits.max_packet_size, limits.receive_maximum | (announced) | CONNACK properties 0x27 and 0x21 carry the configured values |
"""

from __future__ import annotations

import struct
import time

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
    """A 3.1.1 session with clean session off, subscribed to '#', then offline: its cursor holds the log."""
    with raw(broker) as c:
        c.connect(V311, client_id, flags=0x00)
        c.send(subscribe([("#", 1)], version=V311))
        assert c.read_packet().type == 9  # SUBACK
        c.send(packet(0xE0, b""))  # DISCONNECT


def fill_until_refused(broker, version: int, limit: int = 400):
    """Publish 1 KiB QoS 1 messages one at a time until one is not acknowledged with success.

    Returns (acknowledged packet ids, the refusing packet or None, connection closed)."""
    acked = []
    c = raw(broker)
    c.connect(version, f"filler-{version}")
    try:
        for pid in range(1, limit + 1):
            c.send(publish("fill/x", bytes(1024), qos=1, packet_id=pid, version=version))
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


@pytest.mark.broker_config(LOG_FULL)
def test_full_log_refuses_v5_publishes_with_quota_exceeded_and_loses_nothing(broker):
    persistent_session_holding_the_log(broker, "holder")
    acked, refusal, closed = fill_until_refused(broker, V5)
    assert not closed
    assert refusal is not None, f"{len(acked)} publishes acknowledged without reaching the log limit"
    assert refusal.body[2] == 0x97, refusal
    assert len(acked) >= 10
    # The holder comes back and receives every acknowledged message; then the log has room again.
    with raw(broker) as c:
        c.connect(V311, "holder", flags=0x00)
        received = 0
        deadline = time.monotonic() + 20
        while received < len(acked) and time.monotonic() < deadline:
            p = c.read_packet(timeout=5)
            if p.type == 3:  # PUBLISH, QoS 1: topic, packet id, payload
                tlen = struct.unpack("!H", p.body[:2])[0]
                pid = p.body[2 + tlen:4 + tlen]
                c.send(packet(0x40, pid))  # PUBACK
                received += 1
        assert received == len(acked)
        c.send(packet(0xE0, b""))

    def accepted_again():
        more, refusal, _ = fill_until_refused(broker, V5, limit=1)
        return bool(more)

    wait_for(accepted_again, timeout=15, interval=0.5, what="publishes accepted once the session caught up")


@pytest.mark.broker_config(LOG_FULL)
def test_full_log_disconnects_v311_publishers_without_ack(broker):
    persistent_session_holding_the_log(broker, "holder311")
    acked, refusal, closed = fill_until_refused(broker, V311)
    assert refusal is None
    assert closed, f"{len(acked)} publishes acknowledged and the connection is still open"
    assert len(acked) >= 10


