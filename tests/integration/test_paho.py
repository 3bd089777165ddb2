"""The broker with paho-mqtt 2.x clients, MQTT 3.1.1 and 5.0 (plus a raw socket where paho won't go)."""

from __future__ import annotations

import time

import pytest

import mqttraw
from clients import V5, V311, VERSIONS, unique, version_name

ids = version_name

# Property identifiers (MQTT 5.0 section 2.2.2.2).
ASSIGNED_CLIENT_IDENTIFIER = 0x12

# v5 reason codes used below.
SESSION_TAKEN_OVER = 0x8E
KEEP_ALIVE_TIMEOUT = 0x8D
DISCONNECT_WITH_WILL = 0x04


def settle(client, seconds: float = 0.3):
    """Let late duplicates arrive after the last expected message (a bounded, short window)."""
    time.sleep(seconds)
    return client.messages()


@pytest.mark.parametrize("sub_qos", [0, 1, 2])
@pytest.mark.parametrize("pub_qos", [0, 1, 2])
@pytest.mark.parametrize("version", VERSIONS, ids=ids)
def test_qos_both_directions(clients, version, pub_qos, sub_qos):
    """Publisher→broker at pub_qos, broker→subscriber at min(pub_qos, sub_qos); payload byte-exact."""
    topic = unique("qos")
    sub = clients(version)
    assert sub.subscribe([(topic, sub_qos)]) == [sub_qos]
    publisher = clients(version)
    payloads = [bytes([i]) * (i + 1) + b"\x00\xff" for i in range(5)]
    for p in payloads:
        publisher.publish(topic, p, qos=pub_qos)
    got = sub.wait_messages(len(payloads))
    assert [m.payload for m in got] == payloads
    assert {m.qos for m in got} == {min(pub_qos, sub_qos)}
    assert len(settle(sub)) == len(payloads)


@pytest.mark.parametrize("version", VERSIONS, ids=ids)
def test_retained(clients, version):
    topic = unique("retained")
    publisher = clients(version)
    publisher.publish(topic, b"first", qos=1, retain=True)
    publisher.publish(topic, b"latest", qos=1, retain=True)

    late = clients(version)
    late.subscribe([(topic, 1)])
    [m] = late.wait_messages(1)
    assert (m.payload, m.retain, m.qos) == (b"latest", True, 1)

    # A live message to an existing subscriber carries retain=0 even when published with retain.
    publisher.publish(topic, b"newer", qos=1, retain=True)
    got = late.wait_messages(2)
    assert (got[1].payload, got[1].retain) == (b"newer", False)

    publisher.publish(topic, b"", qos=1, retain=True)  # clears the retained message
    marker = unique("marker")
    later = clients(version)
    later.subscribe([(topic, 1)])
    publisher.publish(topic, marker.encode(), qos=1)
    first = later.wait_messages(1)[0]
    assert first.payload == marker.encode(), f"retained message not cleared: got {first}"


@pytest.mark.parametrize("version", VERSIONS, ids=ids)
def test_retained_survives_restart(broker, clients, version):
    topic = unique("retained-restart")
    publisher = clients(version)
    publisher.publish(topic, b"durable", qos=1, retain=True)
    publisher.disconnect()
    broker.restart(graceful=True)
    late = clients(version)
    late.subscribe([(topic, 0)])
    [m] = late.wait_messages(1)
    assert (m.payload, m.retain) == (b"durable", True)


@pytest.mark.parametrize("version", VERSIONS, ids=ids)
def test_will_when_socket_dropped(clients, version):
    """The will goes out when the client vanishes without DISCONNECT; not after a clean DISCONNECT."""
    will_topic = unique("will")
    watcher = clients(version)
    watcher.subscribe([(will_topic, 1)])

    polite = clients(version, will=(will_topic, b"polite", 1))
    polite.disconnect()
    rude = clients(version, will=(will_topic, b"dropped", 1))
    rude.drop()
    got = watcher.wait_messages(1)
    assert [(m.payload, m.qos) for m in got] == [(b"dropped", 1)]
    assert [m.payload for m in settle(watcher)] == [b"dropped"], "clean DISCONNECT must discard the will"


def test_will_on_disconnect_with_will_message_v5(clients):
    """v5 DISCONNECT with reason 0x04 (Disconnect with Will Message) still publishes the will."""
    will_topic = unique("will04")
    watcher = clients(V5)
    watcher.subscribe([(will_topic, 1)])
    leaver = clients(V5, will=(will_topic, b"asked-for", 1))
    leaver.disconnect(reason_code=DISCONNECT_WITH_WILL)
    [m] = watcher.wait_messages(1)
    assert m.payload == b"asked-for"


def persistent(clients, version, client_id, connect=True):
    """A client whose session outlives the connection (3.1.1 clean_session=0; 5.0 clean_start=0 + expiry)."""
    return clients(version, client_id, clean=False, session_expiry=3600 if version == V5 else None,
                   connect=connect)


@pytest.mark.parametrize("restart", [False, True], ids=["disconnect", "broker-restart"])
@pytest.mark.parametrize("version", VERSIONS, ids=ids)
def test_persistent_session(broker, clients, version, restart):
    """Subscribe with a persistent session, go away, messages are queued, come back and get them all."""
    topic = unique("persist")
    cid = unique("persist")
    sub = persistent(clients, version, cid)
    assert sub.s.connack.session_present is False
    sub.subscribe([(topic, 1)])
    sub.disconnect()

    publisher = clients(version)
    sent = [f"{i}".encode() for i in range(50)]
    for p in sent:
        publisher.publish(topic, p, qos=1)
    publisher.disconnect()
    if restart:
        broker.restart(graceful=True)

    back = persistent(clients, version, cid)
    assert back.s.connack.session_present is True
    got = back.wait_messages(len(sent))
    assert [m.payload for m in got] == sent
    assert {m.qos for m in got} == {1}
    assert len(settle(back)) == len(sent)

    # The subscription is part of the session too: a new publish still reaches it.
    clients(version).publish(topic, b"after", qos=1)
    assert back.wait_messages(len(sent) + 1)[-1].payload == b"after"


@pytest.mark.parametrize("version", VERSIONS, ids=ids)
def test_clean_session_discards_old_session(clients, version):
    """Reconnecting with a clean session starts empty: no session_present, no queued messages."""
    topic = unique("clean")
    cid = unique("clean")
    sub = persistent(clients, version, cid)
    sub.subscribe([(topic, 1)])
    sub.disconnect()
    clients(version).publish(topic, b"queued", qos=1)
    fresh = clients(version, cid, clean=True)
    assert fresh.s.connack.session_present is False
    assert settle(fresh, 0.5) == []


@pytest.mark.parametrize("version", VERSIONS, ids=ids)
def test_wildcard_filters(clients, version):
    base = unique("wild")
    plus = clients(version)
    plus.subscribe([(f"{base}/+/c", 1)])
    hash_ = clients(version)
    hash_.subscribe([(f"{base}/#", 1)])
    publisher = clients(version)
    topics = [f"{base}/b/c", f"{base}/b/c/d", f"{base}/c", f"{base}//c", f"{base}"]
    for t in topics:
        publisher.publish(t, t.encode(), qos=1)
    done = f"{base}/x/c"
    publisher.publish(done, b"done", qos=1)

    # '+' matches exactly one level (an empty level too); '#' matches the parent and every level below.
    plus.wait_messages(1, topic=done)
    assert [m.topic for m in plus.messages()] == [f"{base}/b/c", f"{base}//c", done]
    hash_.wait_messages(1, topic=done)
    assert [m.topic for m in hash_.messages()] == topics + [done]


@pytest.mark.parametrize("version", VERSIONS, ids=ids)
def test_hash_does_not_match_dollar_topics(clients, version):
    """'#' and '+/...' must not match topic names starting with '$' (MQTT-4.7.2-1)."""
    everything = clients(version)
    everything.subscribe([("#", 1), ("+/dollar", 1)])
    dollar_sub = clients(version)
    dollar_topic = f"$test-{unique('x')}/dollar"
    dollar_sub.subscribe([(dollar_topic, 1)])

    publisher = clients(version)
    publisher.publish(dollar_topic, b"dollar", qos=1)
    marker = unique("marker") + "/dollar"
    publisher.publish(marker, b"marker", qos=1)

    everything.wait_messages(1, topic=marker)
    settle(everything)
    leaked = [m.topic for m in everything.messages() if m.topic.startswith("$")]
    assert leaked == [], f"'#' or '+/dollar' matched {leaked}"
    # The exact-filter subscriber shows the $ message was routed at all (so the absence above means
    # something). A broker may refuse to route client publishes to $ topics; then this check is moot.
    try:
        dollar_sub.wait_messages(1, timeout=2)
    except AssertionError:
        pytest.skip("broker did not deliver a client PUBLISH to a $-topic to an exact subscriber; "
                    "'#' not matching it proves nothing further")


@pytest.mark.mosquitto_deviates("mosquitto 2.0.11 sends one copy at the QoS of one of the matching "
                                "subscriptions, not the highest (seen: QoS 1 where 2 was granted)")
@pytest.mark.parametrize("version", VERSIONS, ids=ids)
def test_overlapping_subscriptions_delivered_once_at_highest_qos(clients, version):
    base = unique("overlap")
    sub = clients(version)
    assert sub.subscribe([(f"{base}/#", 0), (f"{base}/+", 2), (f"{base}/x", 1)]) == [0, 2, 1]
    publisher = clients(version)
    publisher.publish(f"{base}/x", b"one", qos=2)
    publisher.publish(f"{base}/y", b"two", qos=1)  # matches '#' (0) and '+' (2) → QoS 1 (publish QoS caps)
    sub.wait_messages(2)
    got = settle(sub)
    # Sorted: paho hands a QoS 2 message to the application only after PUBREL, so a QoS 1 message
    # that arrives right behind it can overtake it there.
    assert sorted((m.topic, m.payload, m.qos) for m in got) == [(f"{base}/x", b"one", 2), (f"{base}/y", b"two", 1)]


@pytest.mark.parametrize("version", VERSIONS, ids=ids)
def test_duplicate_client_id_takes_over(clients, version):
    """A second connection with the same client id closes the first; the second stays usable."""
    cid = unique("dup")
    old = clients(version, cid)
    new = clients(version, cid)
    old.wait_disconnected()
    topic = unique("takeover")
    new.subscribe([(topic, 1)])
    new.publish(topic, b"mine", qos=1)
    assert new.wait_messages(1)[0].payload == b"mine"
    assert not new.s.disconnected


@pytest.mark.mosquitto_deviates("mosquitto 2.0.11 closes the old connection without a DISCONNECT packet")
def test_takeover_v5_tells_old_connection_session_taken_over(broker):
    """v5 3.1.4: the old connection gets DISCONNECT with reason 0x8E (Session taken over), then close."""
    cid = unique("dup")
    with mqttraw.RawClient(broker.host, broker.port) as old, mqttraw.RawClient(broker.host, broker.port) as new:
        old.connect(mqttraw.V5, cid)
        new.connect(mqttraw.V5, cid)
        packets, closed = old.read_until_closed(timeout=5)
        assert closed
        assert [(p.type, p.reason_code(mqttraw.V5)) for p in packets] == [(mqttraw.DISCONNECT, SESSION_TAKEN_OVER)]
        assert new.ping()


def test_zero_length_client_id_v5_is_assigned(clients):
    c = clients(V5, "")
    props = c.s.connack.properties
    assigned = getattr(props, "AssignedClientIdentifier", None)
    assert assigned, f"no Assigned Client Identifier in CONNACK properties: {props}"


def test_zero_length_client_id_v311_clean_session_accepted(clients):
    c = clients(V311, "", clean=True)
    topic = unique("anon")
    c.subscribe([(topic, 1)])
    c.publish(topic, b"hi", qos=1)
    assert c.wait_messages(1)[0].payload == b"hi"


def test_zero_length_client_id_v311_without_clean_session_refused(broker):
    """3.1.1 [MQTT-3.1.3-8]: CONNACK return code 0x02 (Identifier rejected), then close.

    paho refuses to send this CONNECT, so a raw socket does.
    """
    with mqttraw.RawClient(broker.host, broker.port) as raw:
        # CONNECT: protocol "MQTT", level 4, flags 0x00 (clean session off), keep-alive 60, client id "".
        raw.send(mqttraw.connect(mqttraw.V311, "", flags=0x00))
        packets, closed = raw.read_until_closed(timeout=5)
    assert [(p.first_byte, p.body) for p in packets] == [(0x20, b"\x00\x02")]
    assert closed


@pytest.mark.mosquitto_deviates("mosquitto 2.0.11 checks keep-alives coarsely: a keep-alive 1 client "
                                "was closed after 5.4 s, not 1.5 s")
@pytest.mark.parametrize("version", [mqttraw.V311, mqttraw.V5], ids=["v311", "v5"])
def test_keep_alive_expiry_closes_silent_client(broker, version):
    """Keep-alive 1 s, then silence: the server closes within 1.5 × keep-alive (+ slack)."""
    with mqttraw.RawClient(broker.host, broker.port) as raw:
        raw.connect(version, unique("silent"), keepalive=1)
        start = time.monotonic()
        packets, closed = raw.read_until_closed(timeout=5)
        elapsed = time.monotonic() - start
    assert closed, "silent client was not disconnected within 5 s"
    assert 1.0 <= elapsed <= 3.0, f"closed after {elapsed:.2f}s; expected about 1.5 s"
    if version == mqttraw.V5:
        assert all(p.type == mqttraw.DISCONNECT and p.reason_code(version) == KEEP_ALIVE_TIMEOUT
                   for p in packets), packets
    else:
        assert packets == []


@pytest.mark.parametrize("version", [mqttraw.V311, mqttraw.V5], ids=["v311", "v5"])
def test_keep_alive_kept_by_pings(broker, version):
    """The same client pinging every 0.5 s stays connected past 3 keep-alive periods."""
    with mqttraw.RawClient(broker.host, broker.port) as raw:
        raw.connect(version, unique("pinger"), keepalive=1)
        for _ in range(7):
            time.sleep(0.5)
            assert raw.ping(timeout=2), "connection closed although the client kept pinging"
