"""Abuse limits of `[limits]`, each with its client-visible result.

| limit | exceeded by | expected |
|---|---|---|
| max_subscriptions = 3 | a 4th filter | SUBACK 0x97 Quota exceeded for it (3.1.1: 0x80); the first three granted |
| max_connections_per_sec_per_source = 5 | a burst of 12 connections from 127.0.0.1 | some get CONNACK 0x9F Connection rate exceeded |
| max_messages_per_sec = 200 (authenticated clients) | a device flooding QoS 0 | the device is slowed to about the limit; a well-behaved device's throughput stays within 20 % of its unloaded rate |
"""

from __future__ import annotations

import socket
import struct
import threading
import time

import pytest

from accounts_cli import add_device, add_owner, login_when_known
from clients import V5, unique
from mqttraw import CONNACK, RawClient, connect

pytestmark = pytest.mark.tributary_only("tributary's own limits")


@pytest.mark.broker_config({"limits": {"max_subscriptions": 3}})
def test_subscriptions_beyond_the_limit_get_quota_exceeded(clients):
    c = clients(V5)
    assert c.subscribe([("a/1", 1), ("a/2", 1), ("a/3", 1), ("a/4", 1)]) == [1, 1, 1, 0x97]
    assert c.subscribe([("a/1", 0)]) == [0], "subscribing again to an existing filter is not a new one"


@pytest.mark.broker_config({"limits": {"max_connections_per_sec_per_source": 5}})
def test_connection_bursts_from_one_source_are_refused(broker):
    answers = []
    for i in range(12):
        with RawClient(broker.host, broker.port) as c:
            c.send(connect(V5, f"burst-{i}"))
            p = c.read_packet()
            assert p.type == CONNACK
            answers.append(p.reason_code(V5))
    assert answers[:5] == [0] * 5, answers
    assert 0x9F in answers, answers
    assert "over limits.max_connections_per_sec_per_source" in broker.log_tail()


def publish_bytes(topic: str, n: int) -> bytes:
    """n QoS 0 PUBLISH packets (3.1.1 framing is the same for QoS 0 without properties in 5.0 but for
    the property length byte, which we include) to `topic` with a 20-byte payload."""
    t = topic.encode()
    body = struct.pack("!H", len(t)) + t + b"\x00" + b"x" * 20
    one = bytes([0x30, len(body)]) + body
    return one * n


@pytest.mark.broker_config({"limits": {"max_messages_per_sec": 200, "max_bytes_per_sec": 0}})
def test_a_flooding_device_is_slowed_and_others_keep_their_rate(broker):
    sfx = unique("").replace("-", "")[-6:]
    owner = f"own{sfx}"
    password = add_owner(broker, owner)
    flooder, good = f"flood{sfx}", f"good{sfx}"
    flood_token, good_token = add_device(broker, owner, flooder), add_device(broker, owner, good)
    watcher = login_when_known(broker, owner, password)
    assert watcher.subscribe([(f"tributary/v1/{flooder}/#", 0), (f"tributary/v1/{good}/#", 1)]) == [0, 1]
    good_client = login_when_known(broker, good, good_token)

    def good_rate(seconds: float) -> float:
        """Publish QoS 1 at 100 msg/s (under the limit) and return the acknowledged rate."""
        start = time.monotonic()
        sent = 0
        while time.monotonic() - start < seconds:
            assert good_client.publish_answer(f"tributary/v1/{good}/senml", b"ok")[0] == 0
            sent += 1
            next_at = start + sent / 100
            time.sleep(max(0.0, next_at - time.monotonic()))
        return sent / (time.monotonic() - start)

    unloaded = good_rate(2.0)

    # The flooder: a raw 5.0 client authenticated as the device, writing as fast as the socket takes.
    flood = socket.create_connection((broker.host, broker.port))
    user, pw = flooder.encode(), flood_token.encode()
    cid = b"flooder"
    body = (b"\x00\x04MQTT\x05\xc2\x00\x3c\x00" + struct.pack("!H", len(cid)) + cid
            + struct.pack("!H", len(user)) + user + struct.pack("!H", len(pw)) + pw)
    flood.sendall(bytes([0x10, len(body)]) + body)
    connack = flood.recv(256)
    assert connack[0] == 0x20 and connack[3] == 0x00, connack  # CONNACK, reason Success
    stop = threading.Event()
    chunk = publish_bytes(f"tributary/v1/{flooder}/senml", 500)
    flood.settimeout(0.2)

    def pump():
        while not stop.is_set():
            try:
                flood.sendall(chunk)
            except (socket.timeout, OSError):
                continue

    pumper = threading.Thread(target=pump, daemon=True)
    pumper.start()
    try:
        flood_started = time.monotonic()
        loaded = good_rate(3.0)
        flood_seconds = time.monotonic() - flood_started
    finally:
        stop.set()
        pumper.join(timeout=5)
        flood.close()
    flooded = len(watcher.messages(f"tributary/v1/{flooder}/senml"))
    print(f"good device: {unloaded:.1f} msg/s unloaded, {loaded:.1f} msg/s during the flood; "
          f"flooder delivered {flooded} in {flood_seconds:.1f}s (limit 200/s + 1 s burst)")
    assert loaded >= 0.8 * unloaded, (unloaded, loaded)
    assert flooded <= 200 * (flood_seconds + 1) + 100, f"the flooder was not slowed: {flooded}"
    assert flooded >= 100 * flood_seconds, f"the flooder did not reach its limit: {flooded}"
    assert "client slowed" in broker.log_tail()
