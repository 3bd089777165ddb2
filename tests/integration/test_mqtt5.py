"""MQTT 5.0 features, each end to end: paho-mqtt 2.x's MQTT 5 client where it can say it, a raw
socket (mqttraw) where the test must see or send exact bytes.

Features: topic aliases both ways, message expiry, Receive Maximum both ways, Maximum Packet Size
both ways, message properties and request/response, payload format check, subscription
identifiers, subscription options (No Local, Retain As Published, Retain Handling), shared
subscriptions, will delay, session expiry, server keep alive, assigned client identifier,
reason strings / Request Problem Information, CONNACK properties.

Time: the tests about expiry intervals and delays are about the clock, so they let a bounded amount
of time pass (`let_time_pass`, always from a recorded start, never more than interval + ~1 s).
A "not delivered" check is never a bare wait: a marker message is published after the thing that
must not arrive, and the subscriber's first message must be the marker (delivery is in order).

Every reason code the broker sends, and the test that checks it:

=========  ====  ==========================================  ==============================================
packet     code  meaning (trigger)                           test
=========  ====  ==========================================  ==============================================
CONNACK    0x00  success                                     test_connack_success
CONNACK    0x84  unsupported protocol version (level 6):     test_connack_unsupported_protocol_version
                 answered in the 3.1.1 form ``20 02 00 01``
CONNACK    0x85  client id not valid (3.1.1: empty id        test_connack_client_identifier_not_valid
                 without clean session, return code 2)
CONNACK    0x87  not authorized (anonymous access off)       test_connack_not_authorized_without_anonymous
CONNACK    0x89  server busy (limits.max_connections)        test_limits.py::
                                                             test_connection_beyond_max_connections_is_refused_busy
SUBACK     0x00  granted QoS 0                               test_suback_granted_qos
SUBACK     0x01  granted QoS 1                               test_suback_granted_qos
SUBACK     0x02  granted QoS 2                               test_suback_granted_qos
SUBACK     0x8F  topic filter invalid (also ``$share//a``,   test_suback_topic_filter_invalid
                 ``$share/g/`` ...)
UNSUBACK   0x00  success                                     test_unsuback_success_and_no_subscription_existed
UNSUBACK   0x11  no subscription existed                     test_unsuback_success_and_no_subscription_existed
PUBACK     0x00  success                                     test_puback_and_pubrec_success
PUBREC     0x00  success                                     test_puback_and_pubrec_success
PUBACK     0x97  quota exceeded (log full)                   test_limits.py::
                                                             test_full_log_refuses_v5_publishes_with_quota_exceeded_and_loses_nothing
PUBACK     0x99  payload format invalid                      test_payload_format_invalid_is_refused
PUBREC     0x99  payload format invalid                      test_payload_format_invalid_is_refused
PUBACK     0x80  unspecified error: only when the log fails  (not triggerable from a client; not tested)
PUBREC     0x80  with an error other than "full" (disk I/O)
PUBCOMP    0x92  packet identifier not found (PUBREL for     test_pubrel_for_unknown_id_gets_pubcomp_0x92
                 an unknown id)
PUBREL     0x92  packet identifier not found (PUBREC for     test_pubrec_for_unknown_id_gets_pubrel_0x92
                 an unknown id)
DISCONNECT 0x81  malformed packet                            test_disconnect_malformed_packet
DISCONNECT 0x82  protocol error (second CONNECT; also:       test_disconnect_protocol_error_second_connect,
                 unknown topic alias, No Local on a shared   test_unknown_topic_alias_is_protocol_error,
                 subscription, expiry set at DISCONNECT)     test_no_local_on_shared_subscription_is_protocol_error,
                                                             test_disconnect_setting_expiry_after_connect_had_zero
DISCONNECT 0x8B  server shutting down (SIGTERM)              test_disconnect_server_shutting_down
DISCONNECT 0x8D  keep alive timeout                          test_disconnect_keep_alive_timeout
DISCONNECT 0x8E  session taken over                          test_disconnect_session_taken_over
DISCONNECT 0x90  topic name invalid (wildcard in PUBLISH)    test_disconnect_topic_name_invalid
DISCONNECT 0x93  receive maximum exceeded                    test_receive_maximum_exceeded_in_one_write,
                                                             test_qos2_awaiting_pubrel_counts_towards_receive_maximum
DISCONNECT 0x94  topic alias invalid (0, > maximum)          test_topic_alias_zero_is_invalid,
                                                             test_topic_alias_above_maximum_is_invalid
DISCONNECT 0x95  packet too large                            test_packet_above_maximum_packet_size_is_refused
DISCONNECT 0x99  payload format invalid (QoS 0)              test_payload_format_invalid_qos0_disconnects
=========  ====  ==========================================  ==============================================
"""

from __future__ import annotations

import time

import pytest
from paho.mqtt.subscribeoptions import SubscribeOptions

import mqttraw
from clients import V5, V311, let_time_pass, session_expired, unique
from conftest import Broker, wait_for
from mqttraw import (CONNACK, DISCONNECT, PUBACK, PUBCOMP, PUBLISH, PUBREC, PUBREL, SUBACK, UNSUBACK,
                     Closed, RawClient, ack, connack_properties, connect, decode_properties,
                     disconnect_properties, parse_ack, parse_publish, parse_suback, properties, publish,
                     subscribe, unsubscribe)

# Property identifiers (5.0 §2.2.2.2).
PAYLOAD_FORMAT_INDICATOR = 0x01
MESSAGE_EXPIRY_INTERVAL = 0x02
SESSION_EXPIRY_INTERVAL = 0x11
SERVER_KEEP_ALIVE = 0x13
REQUEST_PROBLEM_INFORMATION = 0x17
REASON_STRING = 0x1F
RECEIVE_MAXIMUM = 0x21
TOPIC_ALIAS_MAXIMUM = 0x22
TOPIC_ALIAS = 0x23
RETAIN_AVAILABLE = 0x25
MAXIMUM_PACKET_SIZE = 0x27
WILDCARD_SUBSCRIPTION_AVAILABLE = 0x28
SUBSCRIPTION_IDENTIFIER_AVAILABLE = 0x29
SHARED_SUBSCRIPTION_AVAILABLE = 0x2A

# Reason codes (5.0 §2.4).
PACKET_ID_NOT_FOUND = 0x92
MALFORMED = 0x81
PROTOCOL_ERROR = 0x82
SERVER_SHUTTING_DOWN = 0x8B
KEEP_ALIVE_TIMEOUT = 0x8D
SESSION_TAKEN_OVER = 0x8E
TOPIC_FILTER_INVALID = 0x8F
TOPIC_NAME_INVALID = 0x90
RECEIVE_MAXIMUM_EXCEEDED = 0x93
TOPIC_ALIAS_INVALID = 0x94
PACKET_TOO_LARGE = 0x95
PAYLOAD_FORMAT_INVALID = 0x99
NO_SUBSCRIPTION_EXISTED = 0x11

ANSWER_TIMEOUT = 5.0
NOT_UTF8 = b"\xff\xfe not utf-8 \xc3\x28"

# Subscription option bits (5.0 §3.8.3.1).
NO_LOCAL = 0x04


# -- helpers -----------------------------------------------------------------------------------------


def raw(broker, timeout: float = ANSWER_TIMEOUT) -> RawClient:
    return RawClient(broker.host, broker.port, timeout=timeout)


def raw_v5(broker, client_id: str | None = None, props: bytes = b"", **kw) -> tuple[RawClient, dict]:
    """A raw 5.0 connection after a successful CONNACK: (client, CONNACK properties)."""
    c = raw(broker)
    connack = c.connect(mqttraw.V5, client_id or unique("raw"), props=props, **kw)
    return c, connack_properties(connack)


def read_to_disconnect(c: RawClient, timeout: float = ANSWER_TIMEOUT) -> tuple[list, mqttraw.Packet]:
    """Read until the broker closes; the last packet must be a DISCONNECT. Returns (packets before it, it)."""
    packets, closed = c.read_until_closed(timeout)
    assert closed, f"connection still open {timeout}s later; received {packets}"
    assert packets and packets[-1].type == DISCONNECT, f"expected a DISCONNECT before the close, got {packets}"
    return packets[:-1], packets[-1]


def expect_disconnect(c: RawClient, reason: int, timeout: float = ANSWER_TIMEOUT) -> mqttraw.Packet:
    """Exactly one packet, a DISCONNECT with `reason`, then the close."""
    before, d = read_to_disconnect(c, timeout)
    assert not before, f"unexpected packets before the DISCONNECT: {before}"
    assert d.reason_code(mqttraw.V5) == reason, f"expected DISCONNECT 0x{reason:02x}, got {d!r}"
    return d


def read_publishes(c: RawClient, n: int, timeout: float = ANSWER_TIMEOUT) -> list[mqttraw.Publish]:
    """Read packets until n PUBLISHes arrived (anything else is a failure)."""
    deadline = time.monotonic() + timeout
    out = []
    while len(out) < n:
        p = c.read_packet(max(0.01, deadline - time.monotonic()))
        assert p.type == PUBLISH, f"expected PUBLISH, got {p!r}"
        out.append(parse_publish(p))
    return out


def assert_no_packet(c: RawClient, window: float = 0.5):
    """Nothing arrives within a short window (used only where no marker can follow: flow control)."""
    try:
        p = c.read_packet(window)
    except TimeoutError:
        return
    raise AssertionError(f"expected nothing within {window}s, got {p!r}")


def marker_is_first(publisher, subscriber, topic: str, already: int = 0):
    """Publish a marker to `topic` and assert it is the subscriber's next message on it (after the
    `already` earlier ones): whatever must not be delivered would have arrived before it."""
    marker = unique("marker").encode()
    publisher.publish(topic, marker, qos=1)
    got = subscriber.wait_messages(already + 1, topic=topic)
    assert [m.payload for m in got[already:]] == [marker], f"expected only the marker, got {got[already:]}"


def prop(m, name: str):
    """A paho message property, None when absent."""
    return getattr(m.properties, name, None) if m.properties is not None else None


# -- CONNACK -----------------------------------------------------------------------------------------


def test_connack_success(broker):
    with raw(broker) as c:
        c.send(connect(mqttraw.V5, unique("ok")))
        p = c.read_packet()
        assert p.type == CONNACK and p.body[:2] == b"\x00\x00", p  # session present 0, reason 0x00


def test_connack_says_features_available(broker):
    """Retain, wildcard subscriptions, subscription identifiers and shared subscriptions are available:
    CONNACK says 1, or says nothing (absent = available, 5.0 §3.2.2.3)."""
    c, props = raw_v5(broker)
    c.close()
    for pid in (RETAIN_AVAILABLE, WILDCARD_SUBSCRIPTION_AVAILABLE, SUBSCRIPTION_IDENTIFIER_AVAILABLE,
                SHARED_SUBSCRIPTION_AVAILABLE):
        assert props.get(pid, 1) == 1, f"property 0x{pid:02x} = {props.get(pid)} in {props}"
    assert props.get(TOPIC_ALIAS_MAXIMUM, 0) > 0, props


@pytest.mark.tributary_only("tributary's [limits] keys and its explicit CONNACK properties")
@pytest.mark.broker_config({"limits": {"max_packet_size": 50000, "receive_maximum": 7, "topic_alias_maximum": 9}})
def test_connack_announces_configured_limits_and_features(broker):
    c, props = raw_v5(broker)
    c.close()
    assert props[RECEIVE_MAXIMUM] == 7
    assert props[MAXIMUM_PACKET_SIZE] == 50000
    assert props[TOPIC_ALIAS_MAXIMUM] == 9
    assert props[RETAIN_AVAILABLE] == 1
    assert props[WILDCARD_SUBSCRIPTION_AVAILABLE] == 1
    assert props[SUBSCRIPTION_IDENTIFIER_AVAILABLE] == 1
    assert props[SHARED_SUBSCRIPTION_AVAILABLE] == 1
    assert SERVER_KEEP_ALIVE not in props


@pytest.mark.tributary_only("checks tributary's documented defaults")
def test_connack_announces_default_limits(broker):
    c, props = raw_v5(broker)
    c.close()
    assert (props[RECEIVE_MAXIMUM], props[TOPIC_ALIAS_MAXIMUM], props[MAXIMUM_PACKET_SIZE]) == (256, 64, 1048576)


def test_connack_unsupported_protocol_version(broker):
    """Protocol level 6: CONNACK in the 3.1.1 form, return code 0x01 (5.0 §3.1.2.2 allows 0x84 or
    this; a client of an unknown version can only read the 3.1.1 form), then close."""
    with raw(broker) as c:
        c.send(connect(6, unique("lvl6")))
        packets, closed = c.read_until_closed()
    assert closed
    assert [(p.first_byte, p.body) for p in packets] == [(0x20, b"\x00\x01")], packets


def test_connack_client_identifier_not_valid(broker):
    """3.1.1 empty client id without clean session: return code 0x02 (5.0's 0x85), then close."""
    with raw(broker) as c:
        c.send(connect(mqttraw.V311, "", flags=0x00))
        packets, closed = c.read_until_closed()
    assert closed
    assert [(p.first_byte, p.body) for p in packets] == [(0x20, b"\x00\x02")], packets


class _AnonymousOffBroker(Broker):
    """The fixture's broker without anonymous access (tributary: no --allow-anonymous; mosquitto:
    allow_anonymous false), and no accounts at all."""

    def _tributary_cmd(self):
        return [a for a in super()._tributary_cmd() if a != "--allow-anonymous"]

    def _mosquitto_cmd(self):
        cmd = super()._mosquitto_cmd()
        cfg = self.workdir / "mosquitto.conf"
        cfg.write_text(cfg.read_text().replace("allow_anonymous true", "allow_anonymous false"))
        return cmd


@pytest.mark.parametrize("version,answer", [(mqttraw.V5, 0x87), (mqttraw.V311, 0x05)], ids=["v5", "v311"])
def test_connack_not_authorized_without_anonymous(tmp_path, version, answer):
    b = _AnonymousOffBroker(tmp_path)
    try:
        b.start()
        with raw(b) as c:
            c.send(connect(version, unique("anon")))
            packets, closed = c.read_until_closed()
        assert closed
        assert len(packets) == 1 and packets[0].type == CONNACK, packets
        assert packets[0].reason_code(version) == answer, packets
    finally:
        b.close()


# -- topic aliases -----------------------------------------------------------------------------------


def test_inbound_topic_alias_resolves_to_full_topic(broker, clients):
    topic = unique("alias/in")
    sub = clients(V5)
    sub.subscribe([(topic, 1)])
    c, props = raw_v5(broker)
    with c:
        assert props.get(TOPIC_ALIAS_MAXIMUM, 0) >= 1
        c.send(publish(topic, b"first", qos=1, packet_id=1, props=properties((TOPIC_ALIAS, 1))))
        c.send(publish("", b"second", qos=1, packet_id=2, props=properties((TOPIC_ALIAS, 1))))
        c.send(publish("", b"third", qos=1, packet_id=3, props=properties((TOPIC_ALIAS, 1))))
        acks = [parse_ack(c.read_packet()) for _ in range(3)]
        assert [(pid, rc) for pid, rc, _ in acks] == [(1, 0), (2, 0), (3, 0)], acks
    got = sub.wait_messages(3)
    assert [(m.topic, m.payload) for m in got] == [(topic, b"first"), (topic, b"second"), (topic, b"third")]
    assert all(prop(m, "TopicAlias") is None for m in got), "a topic alias leaked to a subscriber"


def test_inbound_topic_alias_can_be_remapped(broker, clients):
    t1, t2 = unique("alias/a"), unique("alias/b")
    sub = clients(V5)
    sub.subscribe([(t1, 0), (t2, 0)])
    c, _ = raw_v5(broker)
    with c:
        c.send(publish(t1, b"1", qos=1, packet_id=1, props=properties((TOPIC_ALIAS, 1))))
        c.send(publish(t2, b"2", qos=1, packet_id=2, props=properties((TOPIC_ALIAS, 1))))  # remap
        c.send(publish("", b"3", qos=1, packet_id=3, props=properties((TOPIC_ALIAS, 1))))
        assert [parse_ack(c.read_packet())[:2] for _ in range(3)] == [(1, 0), (2, 0), (3, 0)]
    got = sub.wait_messages(3)
    assert [(m.topic, m.payload) for m in got] == [(t1, b"1"), (t2, b"2"), (t2, b"3")]


@pytest.mark.mosquitto_deviates("mosquitto 2.0.11 answers alias 0 with DISCONNECT 0x81 Malformed Packet")
def test_topic_alias_zero_is_invalid(broker):
    c, _ = raw_v5(broker)
    with c:
        c.send(publish(unique("alias/zero"), b"x", props=properties((TOPIC_ALIAS, 0))))
        expect_disconnect(c, TOPIC_ALIAS_INVALID)


def test_topic_alias_above_maximum_is_invalid(broker):
    """The CONNACK's Topic Alias Maximum is usable; one more is 0x94."""
    topic = unique("alias/max")
    c, props = raw_v5(broker)
    with c:
        maximum = props[TOPIC_ALIAS_MAXIMUM]
        c.send(publish(topic, b"ok", qos=1, packet_id=1, props=properties((TOPIC_ALIAS, maximum))))
        packet_id, reason, _ = parse_ack(c.read_packet())
        assert packet_id == 1 and reason < 0x80, reason  # 0x00, or 0x10 No matching subscribers
        c.send(publish(topic, b"too far", qos=1, packet_id=2, props=properties((TOPIC_ALIAS, maximum + 1))))
        expect_disconnect(c, TOPIC_ALIAS_INVALID)


@pytest.mark.tributary_only("limits.topic_alias_maximum")
@pytest.mark.broker_config({"limits": {"topic_alias_maximum": 3}})
def test_configured_topic_alias_maximum_is_enforced(broker):
    c, props = raw_v5(broker)
    with c:
        assert props[TOPIC_ALIAS_MAXIMUM] == 3
        c.send(publish(unique("alias/cfg"), b"x", props=properties((TOPIC_ALIAS, 4))))
        expect_disconnect(c, TOPIC_ALIAS_INVALID)


def test_unknown_topic_alias_is_protocol_error(broker):
    """An empty topic with an alias never set (5.0 §3.3.2.3.4): protocol error."""
    c, _ = raw_v5(broker)
    with c:
        c.send(publish("", b"x", qos=1, packet_id=1, props=properties((TOPIC_ALIAS, 2))))
        expect_disconnect(c, PROTOCOL_ERROR)


@pytest.mark.tributary_only("servers MAY send topic aliases (5.0 §3.3.2.3.4); mosquitto 2.0 never does")
def test_outbound_topic_aliases_on_the_wire(broker, clients):
    """A subscriber announcing Topic Alias Maximum 2 gets, per topic, first topic + alias, then an
    empty topic + the same alias; a third topic (no alias left) always comes with its full name."""
    t1, t2, t3 = unique("out/a"), unique("out/b"), unique("out/c")
    sub, _ = raw_v5(broker, props=properties((TOPIC_ALIAS_MAXIMUM, 2)))
    with sub:
        sub.send(subscribe([(t1, 0), (t2, 0), (t3, 0)]))
        assert parse_suback(sub.read_packet())[1] == [0, 0, 0]
        pub = clients(V5)
        order = [t1, t2, t1, t3, t2, t3, t1]
        for i, t in enumerate(order):
            pub.publish(t, str(i).encode(), qos=1)
        got = read_publishes(sub, len(order))
    aliases: dict[int, bytes] = {}
    resolved, wire = [], []
    for p in got:
        alias = p.properties.get(TOPIC_ALIAS)
        if alias is not None:
            assert 1 <= alias <= 2, f"alias {alias} above the subscriber's maximum 2"
            if p.topic:
                aliases[alias] = p.topic
            else:
                assert alias in aliases, f"alias {alias} used before it was set"
        else:
            assert p.topic, "empty topic without an alias"
        resolved.append((aliases[alias] if alias is not None and not p.topic else p.topic).decode())
        wire.append((p.topic.decode(), alias))
    assert resolved == order
    assert [p.payload for p in got] == [str(i).encode() for i in range(len(order))]
    a1, a2 = wire[0][1], wire[1][1]
    assert a1 and a2 and a1 != a2, wire
    assert wire == [(t1, a1), (t2, a2), ("", a1), (t3, None), ("", a2), (t3, None), ("", a1)], wire


def test_no_topic_aliases_to_a_client_that_allows_none(clients):
    """paho announces no Topic Alias Maximum (= 0): every message must carry its full topic."""
    topic = unique("out/paho")
    sub = clients(V5)
    sub.subscribe([(topic, 1)])
    pub = clients(V5)
    for i in range(3):
        pub.publish(topic, bytes([i]), qos=1)
    got = sub.wait_messages(3)
    assert [(m.topic, m.payload) for m in got] == [(topic, bytes([i])) for i in range(3)]
    assert [prop(m, "TopicAlias") for m in got] == [None] * 3


@pytest.mark.tributary_only("servers MAY send topic aliases; mosquitto 2.0 never does")
def test_outbound_topic_aliases_resolved_by_a_paho_subscriber(clients):
    """paho 2.2 passes aliases through without resolving them (msg.topic is "" and TopicAlias is set):
    the alias map a paho application keeps from the properties gives back every full topic."""
    topic = unique("out/paho-alias")
    aliases: dict[int, str] = {}
    resolved: list[str] = []

    def resolve(m):
        alias = prop(m, "TopicAlias")
        if alias is not None and m.topic:
            aliases[alias] = m.topic
        resolved.append(aliases[alias] if alias is not None and not m.topic else m.topic)

    sub = clients(V5, connect_properties={"TopicAliasMaximum": 5}, on_message=resolve)
    sub.subscribe([(topic, 1)])
    pub = clients(V5)
    for i in range(3):
        pub.publish(topic, bytes([i]), qos=1)
    got = sub.wait_messages(3)
    assert resolved == [topic] * 3
    assert [m.topic for m in got] == [topic, "", ""]
    assert len({prop(m, "TopicAlias") for m in got}) == 1


# -- message expiry ----------------------------------------------------------------------------------


def offline_subscriber(clients, topic: str, expiry: int = 60, qos: int = 1):
    """A persistent session subscribed to `topic`, then disconnected. Returns its client id."""
    s = clients(V5, clean=False, session_expiry=expiry)
    s.subscribe([(topic, qos)])
    s.disconnect()
    return s.client_id


def test_expired_message_is_not_delivered_to_a_returning_session(clients):
    topic = unique("expiry/offline")
    sid = offline_subscriber(clients, topic)
    pub = clients(V5)
    published = time.monotonic()
    pub.publish(topic, b"short-lived", qos=1, properties={"MessageExpiryInterval": 1})
    pub.publish(topic, b"forever", qos=1)
    let_time_pass(published, 2.2)
    back = clients(V5, sid, clean=False, session_expiry=60)
    assert back.s.connack.session_present
    got = back.wait_messages(1, topic=topic)
    assert [m.payload for m in got] == [b"forever"]
    assert prop(got[0], "MessageExpiryInterval") is None


def test_message_expiry_is_decremented_by_the_time_spent_waiting(clients):
    topic = unique("expiry/decrement")
    sid = offline_subscriber(clients, topic)
    live = clients(V5)
    live.subscribe([(topic, 1)])
    pub = clients(V5)
    published = time.monotonic()
    pub.publish(topic, b"m", qos=1, properties={"MessageExpiryInterval": 60})
    [fresh] = live.wait_messages(1)
    assert 59 <= prop(fresh, "MessageExpiryInterval") <= 60
    let_time_pass(published, 1.2)
    back = clients(V5, sid, clean=False, session_expiry=60)
    [late] = back.wait_messages(1, topic=topic)
    remaining = prop(late, "MessageExpiryInterval")
    assert remaining is not None and 50 <= remaining <= 59, remaining


def test_retained_message_expires(clients):
    topic = unique("expiry/retained")
    pub = clients(V5)
    published = time.monotonic()
    pub.publish(topic, b"stale soon", qos=1, retain=True, properties={"MessageExpiryInterval": 1})
    early = clients(V5)
    early.subscribe([(topic, 1)])
    [m] = early.wait_messages(1)
    assert (m.payload, m.retain) == (b"stale soon", True)
    assert prop(m, "MessageExpiryInterval") in (0, 1)
    let_time_pass(published, 2.2)
    late = clients(V5)
    late.subscribe([(topic, 1)])
    marker_is_first(pub, late, topic)


# -- Receive Maximum ---------------------------------------------------------------------------------


@pytest.mark.mosquitto_deviates("mosquitto 2.0.11 sends two more PUBLISHes after the first PUBACK "
                                  "with Receive Maximum 2 (3 unacknowledged)")
def test_broker_respects_the_clients_receive_maximum(broker, clients):
    """Receive Maximum 2: at most 2 unacknowledged QoS 1 PUBLISHes; each PUBACK lets one more through."""
    topic = unique("rm/out")
    sub, _ = raw_v5(broker, props=properties((RECEIVE_MAXIMUM, 2)))
    with sub:
        sub.send(subscribe([(topic, 1)]))
        assert parse_suback(sub.read_packet())[1] == [1]
        pub = clients(V5)
        for i in range(5):
            pub.publish(topic, str(i).encode(), qos=1)
        first = read_publishes(sub, 2)
        assert_no_packet(sub)
        sub.send(ack(PUBACK, first[0].packet_id))
        third = read_publishes(sub, 1)
        assert_no_packet(sub)
        rest = []
        for p in first[1:] + third:
            sub.send(ack(PUBACK, p.packet_id))
            rest += read_publishes(sub, 1) if len(first) + len(third) + len(rest) < 5 else []
        got = first + third + rest
        assert [p.payload for p in got] == [b"0", b"1", b"2", b"3", b"4"]
        assert len({p.packet_id for p in first}) == 2


@pytest.mark.mosquitto_deviates("mosquitto 2.0.11: QoS 1 publishes are all acknowledged (0x10), never 0x93; "
                                  "QoS 2: PUBRECs, then a close without DISCONNECT")
@pytest.mark.broker_config({"limits": {"receive_maximum": 5}})
@pytest.mark.parametrize("qos", [1, 2])
def test_receive_maximum_exceeded_in_one_write(broker, qos):
    """Receive Maximum + 50 QoS 1/2 publishes in ONE write: 0x93. Deterministic for tributary: its
    connection decodes every complete packet of a read before any append finishes, so they are all
    unanswered at once; for QoS 2 nothing is complete before PUBREL anyway. Publishes the broker
    accepted before the limit may be answered before the DISCONNECT."""
    topic = unique("rm/in")
    c, props = raw_v5(broker)
    with c:
        limit = props.get(RECEIVE_MAXIMUM, 65535)
        assert limit <= 100, f"Receive Maximum {limit}: too large for this test"
        burst = b"".join(publish(topic, b"x", qos=qos, packet_id=i) for i in range(1, limit + 51))
        c.send(burst)
        before, d = read_to_disconnect(c)
    assert d.reason_code(mqttraw.V5) == RECEIVE_MAXIMUM_EXCEEDED, d
    answer = PUBACK if qos == 1 else PUBREC
    assert all(p.type == answer for p in before), before
    assert len(before) <= limit, f"{len(before)} publishes answered with Receive Maximum {limit}"


@pytest.mark.mosquitto_deviates("mosquitto 2.0.11 counts QoS 2 until PUBREL (right) but answers the extra "
                                  "publish with PUBREC 0x97 Quota exceeded instead of DISCONNECT 0x93")
@pytest.mark.broker_config({"limits": {"receive_maximum": 5}})
def test_qos2_awaiting_pubrel_counts_towards_receive_maximum(broker):
    """5.0 §3.3.4: the limit counts QoS 1/2 PUBLISHes "where it has not sent a PUBACK or PUBCOMP";
    a QoS 2 publish answered with PUBREC is still in flight until PUBREL/PUBCOMP. Receive Maximum
    publishes, each PUBREC'd, never released: one more is 0x93."""
    topic = unique("rm/qos2")
    c, props = raw_v5(broker)
    with c:
        limit = props.get(RECEIVE_MAXIMUM, 65535)
        assert limit <= 100
        for i in range(1, limit + 1):
            c.send(publish(topic, b"x", qos=2, packet_id=i))
            p = c.read_packet()
            assert p.type == PUBREC and parse_ack(p)[:2] == (i, 0), p
        c.send(publish(topic, b"x", qos=2, packet_id=limit + 1))
        packets, closed = c.read_until_closed(ANSWER_TIMEOUT)
    assert closed and [(p.type, p.reason_code(mqttraw.V5)) for p in packets] == [(DISCONNECT, 0x93)], \
        f"publish {limit + 1} with {limit} QoS 2 flows unreleased: expected DISCONNECT 0x93, got {packets}"


# -- Maximum Packet Size -----------------------------------------------------------------------------


def test_message_above_the_clients_maximum_packet_size_is_not_sent_to_it(clients):
    topic = unique("mps/out")
    small = clients(V5, connect_properties={"MaximumPacketSize": 100})
    small.subscribe([(topic, 1)])
    other = clients(V5)
    other.subscribe([(topic, 1)])
    pub = clients(V5)
    pub.publish(topic, b"L" * 500, qos=1)
    pub.publish(topic, b"fits", qos=1)
    assert [m.payload for m in other.wait_messages(2)] == [b"L" * 500, b"fits"]
    assert [m.payload for m in small.wait_messages(1)] == [b"fits"]
    assert not small.s.disconnected


@pytest.mark.broker_config({"limits": {"max_packet_size": 1024}})
def test_packet_above_maximum_packet_size_is_refused(broker):
    c, props = raw_v5(broker)
    with c:
        assert props[MAXIMUM_PACKET_SIZE] == 1024
        c.send(publish(unique("mps/in"), b"ok" * 400, qos=1, packet_id=1))  # 800 bytes: fits
        packet_id, reason, _ = parse_ack(c.read_packet())
        assert packet_id == 1 and reason < 0x80, reason  # 0x00, or 0x10 No matching subscribers
        c.send(publish(unique("mps/in"), b"X" * 2000, qos=1, packet_id=2))
        expect_disconnect(c, PACKET_TOO_LARGE)


# -- message properties, request/response, payload format --------------------------------------------


MESSAGE_PROPERTIES = {
    "UserProperty": [("k1", "v1"), ("k2", "v2"), ("k1", "again"), ("ünï", "cödé")],
    "ContentType": "application/json; charset=utf-8",
    "PayloadFormatIndicator": 1,
    "ResponseTopic": "replies/here",
    "CorrelationData": b"\x00\x01corr\xff",
}


@pytest.mark.parametrize("qos", [0, 1, 2])
def test_message_properties_pass_through_unchanged(clients, qos):
    topic = unique("props")
    sub = clients(V5)
    sub.subscribe([(topic, qos)])
    pub = clients(V5)
    pub.publish(topic, '{"ok": "✓"}'.encode(), qos=qos, properties=MESSAGE_PROPERTIES)
    [m] = sub.wait_messages(1)
    assert m.payload == '{"ok": "✓"}'.encode()
    for name, value in MESSAGE_PROPERTIES.items():
        assert prop(m, name) == value, f"{name}: sent {value!r}, received {prop(m, name)!r}"


def test_request_response(clients):
    requests, replies = unique("req"), unique("reply")
    holder = {}

    def answer(m):
        holder["responder"].publish(prop(m, "ResponseTopic"), b"re:" + m.payload, qos=1, wait=False,
                                    properties={"CorrelationData": prop(m, "CorrelationData")})

    holder["responder"] = responder = clients(V5, on_message=answer)
    responder.subscribe([(requests, 1)])
    requester = clients(V5)
    requester.subscribe([(replies, 1)])
    for i in range(3):
        requester.publish(requests, f"q{i}".encode(), qos=1,
                          properties={"ResponseTopic": replies, "CorrelationData": f"id-{i}".encode()})
    got = requester.wait_messages(3)
    assert sorted((prop(m, "CorrelationData"), m.payload) for m in got) == \
        [(f"id-{i}".encode(), f"re:q{i}".encode()) for i in range(3)]


@pytest.mark.tributary_only("payload format validation is optional (5.0 §3.3.2.3.2); mosquitto 2.0 does not validate: PUBACK 0x10")
@pytest.mark.parametrize("qos", [1, 2])
def test_payload_format_invalid_is_refused(broker, clients, qos):
    """Payload Format Indicator 1 (UTF-8) with a payload that is not: PUBACK/PUBREC 0x99, not delivered;
    the connection stays usable. (Raw socket: paho 2.2 sends PUBREL even after an error PUBREC, and
    then reports the PUBCOMP's 0x92 instead of the PUBREC's code.)"""
    topic = unique("pfi")
    sub = clients(V5)
    sub.subscribe([(topic, 2)])
    answer = PUBACK if qos == 1 else PUBREC
    utf8 = properties((PAYLOAD_FORMAT_INDICATOR, 1))
    c, _ = raw_v5(broker)
    with c:
        c.send(publish(topic, NOT_UTF8, qos=qos, packet_id=3, props=utf8))
        p = c.read_packet()
        assert p.type == answer and parse_ack(p)[:2] == (3, PAYLOAD_FORMAT_INVALID), p
        c.send(publish(topic, "vålid".encode(), qos=qos, packet_id=4, props=utf8))
        p = c.read_packet()
        assert p.type == answer and parse_ack(p)[:2] == (4, 0x00), p
        if qos == 2:
            c.send(ack(PUBREL, 4))
            assert parse_ack(c.read_packet())[:2] == (4, 0x00)
    got = sub.wait_messages(1)
    assert [(m.payload, prop(m, "PayloadFormatIndicator")) for m in got] == [("vålid".encode(), 1)]
    marker_is_first(clients(V5), sub, topic, already=1)


@pytest.mark.tributary_only("payload format validation is optional (5.0 §3.3.2.3.2); mosquitto 2.0 does not validate: PUBACK 0x10")
def test_payload_format_invalid_with_paho(clients):
    """The same with paho at QoS 1: the publish's answer is 0x99."""
    topic = unique("pfi-paho")
    pub = clients(V5)
    reason, _ = pub.publish_answer(topic, NOT_UTF8, qos=1, properties={"PayloadFormatIndicator": 1})
    assert reason == PAYLOAD_FORMAT_INVALID


@pytest.mark.tributary_only("payload format validation is optional (5.0 §3.3.2.3.2); mosquitto 2.0 does not validate: PUBACK 0x10")
def test_payload_format_invalid_qos0_disconnects(broker, clients):
    topic = unique("pfi0")
    sub = clients(V5)
    sub.subscribe([(topic, 0)])
    c, _ = raw_v5(broker)
    with c:
        c.send(publish(topic, NOT_UTF8, qos=0, props=properties((PAYLOAD_FORMAT_INDICATOR, 1))))
        expect_disconnect(c, PAYLOAD_FORMAT_INVALID)
    marker_is_first(clients(V5), sub, topic)


# -- subscription identifiers ------------------------------------------------------------------------


def overlapping_identified_subscriptions(clients):
    """Subscriptions base/+ (id 1), base/# (id 2), base/other (id 3); publishes base/x (matches 1, 2)
    then base/other (matches all). Returns (copies on base/x, copies on base/other)."""
    base = unique("sid")
    sub = clients(V5)
    sub.subscribe([(f"{base}/+", 1)], properties={"SubscriptionIdentifier": 1})
    sub.subscribe([(f"{base}/#", 1)], properties={"SubscriptionIdentifier": 2})
    sub.subscribe([(f"{base}/other", 1)], properties={"SubscriptionIdentifier": 3})
    pub = clients(V5)
    pub.publish(f"{base}/x", b"x", qos=1)
    pub.publish(f"{base}/other", b"other", qos=1)
    pub.publish(f"{base}/end", b"end", qos=1)
    sub.wait_messages(1, topic=f"{base}/end")  # delivered after every copy of the two others
    return sub.messages(f"{base}/x"), sub.messages(f"{base}/other")


def ids_of(copies) -> list[list[int]]:
    return [sorted(prop(m, "SubscriptionIdentifier") or []) for m in copies]


def test_subscription_identifiers_of_overlapping_subscriptions(clients):
    """5.0 §3.3.4: one copy carrying the identifiers of every matching subscription, or a copy per
    subscription carrying its own identifier; either way each identifier arrives, no foreign one."""
    on_x, on_other = overlapping_identified_subscriptions(clients)
    for copies, matching in ((on_x, [1, 2]), (on_other, [1, 2, 3])):
        ids = ids_of(copies)
        assert sorted(i for c in ids for i in c) == matching, ids
        assert len(copies) in (1, len(matching)), ids


@pytest.mark.tributary_only("one copy per message is tributary's choice; the spec also allows a copy per "
                            "subscription, which mosquitto 2.0 sends")
def test_overlapping_subscriptions_get_one_copy_with_every_identifier(clients):
    on_x, on_other = overlapping_identified_subscriptions(clients)
    assert ids_of(on_x) == [[1, 2]]
    assert ids_of(on_other) == [[1, 2, 3]]


def test_subscription_without_identifier_carries_none(clients):
    topic = unique("sid-none")
    sub = clients(V5)
    sub.subscribe([(topic, 1)])
    clients(V5).publish(topic, b"x", qos=1)
    [m] = sub.wait_messages(1)
    assert prop(m, "SubscriptionIdentifier") is None


# -- subscription options ----------------------------------------------------------------------------


def test_no_local(clients):
    topic = unique("nolocal")
    me = clients(V5)
    me.subscribe([(topic, SubscribeOptions(qos=1, noLocal=True))])
    echo = clients(V5)
    echo.subscribe([(topic, 1)])
    me.publish(topic, b"mine", qos=1)
    assert [m.payload for m in echo.wait_messages(1)] == [b"mine"]
    marker_is_first(clients(V5), me, topic)


def test_retain_as_published(clients):
    topic = unique("rap")
    rap = clients(V5)
    rap.subscribe([(topic, SubscribeOptions(qos=1, retainAsPublished=True))])
    plain = clients(V5)
    plain.subscribe([(topic, 1)])
    pub = clients(V5)
    pub.publish(topic, b"kept", qos=1, retain=True)
    pub.publish(topic, b"live", qos=1, retain=False)
    assert [(m.payload, m.retain) for m in rap.wait_messages(2)] == [(b"kept", True), (b"live", False)]
    assert [(m.payload, m.retain) for m in plain.wait_messages(2)] == [(b"kept", False), (b"live", False)]


def test_retain_handling_0_sends_retained_at_every_subscribe(clients):
    topic = unique("rh0")
    pub = clients(V5)
    pub.publish(topic, b"retained", qos=1, retain=True)
    sub = clients(V5)
    sub.subscribe([(topic, SubscribeOptions(qos=1, retainHandling=0))])
    sub.wait_messages(1)
    sub.subscribe([(topic, SubscribeOptions(qos=1, retainHandling=0))])
    got = sub.wait_messages(2)
    assert [(m.payload, m.retain) for m in got] == [(b"retained", True)] * 2


def test_retain_handling_1_sends_retained_only_for_a_new_subscription(clients):
    topic = unique("rh1")
    pub = clients(V5)
    pub.publish(topic, b"retained", qos=1, retain=True)
    sub = clients(V5)
    sub.subscribe([(topic, SubscribeOptions(qos=1, retainHandling=1))])
    assert [(m.payload, m.retain) for m in sub.wait_messages(1)] == [(b"retained", True)]
    sub.subscribe([(topic, SubscribeOptions(qos=1, retainHandling=1))])  # exists: nothing resent
    marker_is_first(pub, sub, topic, already=1)


def test_retain_handling_2_never_sends_retained(clients):
    topic = unique("rh2")
    pub = clients(V5)
    pub.publish(topic, b"retained", qos=1, retain=True)
    sub = clients(V5)
    sub.subscribe([(topic, SubscribeOptions(qos=1, retainHandling=2))])
    marker_is_first(pub, sub, topic)


# -- shared subscriptions ----------------------------------------------------------------------------


def test_shared_subscription_splits_messages(clients):
    topic = unique("shared")
    members = [clients(V5), clients(V5)]
    for m in members:
        assert m.subscribe([(f"$share/g/{topic}", 1)]) == [1]
    pub = clients(V5)
    sent = [str(i).encode() for i in range(20)]
    for p in sent:
        pub.publish(topic, p, qos=1)
    wait_for(lambda: sum(len(m.messages(topic)) for m in members) >= 20, timeout=10, what="20 shared deliveries")
    a, b = ([x.payload for x in m.messages(topic)] for m in members)
    assert len(a) + len(b) == 20, (a, b)
    assert set(a) | set(b) == set(sent)
    assert not set(a) & set(b), f"delivered to both members: {set(a) & set(b)}"
    assert a and b, f"one member got everything: {a}, {b}"


@pytest.mark.mosquitto_deviates("mosquitto 2.0.11 drops the messages in flight to a member whose session ends "
                                  "(5.0 §4.8.2: SHOULD send them to another member)")
def test_shared_subscription_redelivers_a_leaving_members_unacknowledged_messages(broker, clients):
    """A member that leaves (its session ends) with QoS 1 messages unacknowledged: the group sends
    them to another member (5.0 §4.8.2)."""
    topic = unique("shared-leave")
    share = f"$share/g/{topic}"
    quitter, _ = raw_v5(broker)
    quitter.send(subscribe([(share, 1)]))
    assert parse_suback(quitter.read_packet())[1] == [1]
    stayer = clients(V5)
    stayer.subscribe([(share, 1)])
    pub = clients(V5)
    sent = [str(i).encode() for i in range(10)]
    for p in sent:
        pub.publish(topic, p, qos=1)
    held = []
    deadline = time.monotonic() + 10
    while len(held) + len(stayer.messages(topic)) < 10:
        assert time.monotonic() < deadline, f"quitter has {held}, stayer {stayer.messages(topic)}"
        try:
            held += [p.payload for p in read_publishes(quitter, 1, timeout=0.1)]
        except TimeoutError:
            pass
    assert held, "the raw member got no message; nothing to redeliver"
    quitter.close()  # never acknowledged anything
    got = stayer.wait_messages(10, topic=topic)
    assert {m.payload for m in got} == set(sent)
    assert {m.payload for m in got} >= set(held)


@pytest.mark.mosquitto_deviates("mosquitto 2.0.11 grants it (SUBACK 0x01)")
def test_no_local_on_shared_subscription_is_protocol_error(broker):
    c, _ = raw_v5(broker)
    with c:
        c.send(subscribe([(f"$share/g/{unique('nl')}", 1 | NO_LOCAL)]))
        expect_disconnect(c, PROTOCOL_ERROR)


# -- will delay ----------------------------------------------------------------------------------------


def will_client(clients, will_topic: str, delay: int, expiry: int | None, client_id: str | None = None):
    return clients(V5, client_id, clean=False, session_expiry=expiry, will=(will_topic, b"gone", 1),
                   will_properties={"WillDelayInterval": delay})


def test_will_delay_interval(clients):
    topic = unique("will/delay")
    watcher = clients(V5)
    watcher.subscribe([(topic, 1)])
    c = will_client(clients, topic, delay=2, expiry=10)
    dropped = time.monotonic()
    c.drop()
    [m] = watcher.wait_messages(1, timeout=8)
    elapsed = time.monotonic() - dropped
    assert m.payload == b"gone"
    assert 1.5 <= elapsed <= 4.5, f"will after {elapsed:.2f}s, delay 2s"


def test_will_not_sent_when_the_client_reconnects_within_the_delay(clients):
    topic = unique("will/back")
    watcher = clients(V5)
    watcher.subscribe([(topic, 1)])
    c = will_client(clients, topic, delay=2, expiry=10)
    dropped = time.monotonic()
    c.drop()
    back = clients(V5, c.client_id, clean=False, session_expiry=10)
    assert back.s.connack.session_present
    assert time.monotonic() - dropped < 1.5, "reconnect took too long for this test"
    let_time_pass(dropped, 3.0)
    marker_is_first(clients(V5), watcher, topic)


@pytest.mark.mosquitto_deviates("mosquitto 2.0.11 waits for the will delay although the session has ended")
def test_will_with_session_expiry_zero_is_sent_at_once(clients):
    """The will is published at the latest when the session ends (5.0 §3.1.3.2.2): expiry 0 → now."""
    topic = unique("will/now")
    watcher = clients(V5)
    watcher.subscribe([(topic, 1)])
    c = will_client(clients, topic, delay=30, expiry=None)
    dropped = time.monotonic()
    c.drop()
    [m] = watcher.wait_messages(1, timeout=5)
    assert m.payload == b"gone"
    assert time.monotonic() - dropped < 1.5


# -- session expiry --------------------------------------------------------------------------------------


def test_session_expiry_zero_is_not_resumed(clients):
    c = clients(V5, clean=False, session_expiry=0)
    c.subscribe([(unique("se0"), 1)])
    c.disconnect()
    again = clients(V5, c.client_id, clean=False, session_expiry=0)
    assert again.s.connack.session_present is False


def test_session_expiry_positive_is_resumed_with_queued_messages(clients):
    topic = unique("se60")
    sid = offline_subscriber(clients, topic, expiry=60)
    clients(V5).publish(topic, b"while away", qos=1)
    back = clients(V5, sid, clean=False, session_expiry=60)
    assert back.s.connack.session_present is True
    assert [m.payload for m in back.wait_messages(1)] == [b"while away"]


def test_disconnect_with_session_expiry_zero_ends_the_session(clients):
    c = clients(V5, clean=False, session_expiry=60)
    c.subscribe([(unique("se-d0"), 1)])
    c.disconnect(properties={"SessionExpiryInterval": 0})
    again = clients(V5, c.client_id, clean=False, session_expiry=60)
    assert again.s.connack.session_present is False


def test_disconnect_setting_expiry_after_connect_had_zero(broker):
    """CONNECT without Session Expiry (0), DISCONNECT setting one: protocol error (5.0 §3.14.2.2.2)."""
    c, _ = raw_v5(broker)
    with c:
        c.send(mqttraw.disconnect(0x00, properties((SESSION_EXPIRY_INTERVAL, 30))))
        expect_disconnect(c, PROTOCOL_ERROR)


def test_session_with_expiry_one_second_is_gone_after_it(broker, clients):
    topic = unique("se1")
    sid = offline_subscriber(clients, topic, expiry=1)
    gone_since = time.monotonic()
    clients(V5).publish(topic, b"for an expired session", qos=1)
    session_expired(broker, sid, gone_since, 1)
    back = clients(V5, sid, clean=False, session_expiry=60)
    assert back.s.connack.session_present is False
    back.subscribe([(topic, 1)])
    marker_is_first(clients(V5), back, topic)


# -- server keep alive, assigned client identifier, reason strings -----------------------------------------


@pytest.mark.tributary_only("limits.max_keep_alive_secs")
@pytest.mark.broker_config({"limits": {"max_keep_alive_secs": 5}})
@pytest.mark.parametrize("asked,told", [(60, 5), (0, 5), (5, None), (3, None)])
def test_server_keep_alive_caps_the_clients(broker, asked, told):
    c, props = raw_v5(broker, keepalive=asked)
    c.close()
    assert props.get(SERVER_KEEP_ALIVE) == told, props


@pytest.mark.tributary_only("a server may always send Server Keep Alive; mosquitto 2.0 sends 65535 for keep-alive 0")
@pytest.mark.parametrize("asked", [60, 0])
def test_no_server_keep_alive_without_a_cap(broker, asked):
    c, props = raw_v5(broker, keepalive=asked)
    c.close()
    assert SERVER_KEEP_ALIVE not in props, props


def test_assigned_client_identifier_is_usable_later(clients):
    topic = unique("assigned")
    first = clients(V5, "", clean=True, session_expiry=60)
    assigned = prop(first.s.connack, "AssignedClientIdentifier")
    assert assigned, f"no Assigned Client Identifier in {first.s.connack.properties}"
    first.subscribe([(topic, 1)])
    first.disconnect()
    clients(V5).publish(topic, b"kept for you", qos=1)
    back = clients(V5, assigned, clean=False, session_expiry=60)
    assert back.s.connack.session_present is True
    assert prop(back.s.connack, "AssignedClientIdentifier") is None
    assert [m.payload for m in back.wait_messages(1)] == [b"kept for you"]


def test_two_empty_ids_get_different_identifiers(clients):
    a, b = clients(V5, ""), clients(V5, "")
    ida, idb = prop(a.s.connack, "AssignedClientIdentifier"), prop(b.s.connack, "AssignedClientIdentifier")
    assert ida and idb and ida != idb


@pytest.mark.tributary_only("reason strings are optional (5.0 §3.14.2.2.3); mosquitto 2.0 sends none")
def test_protocol_violation_disconnect_carries_a_reason_string(broker):
    c, _ = raw_v5(broker)
    with c:
        c.send(publish(unique("rs"), b"x", props=properties((TOPIC_ALIAS, 0xFFFF))))
        d = expect_disconnect(c, TOPIC_ALIAS_INVALID)
    text = disconnect_properties(d).get(REASON_STRING)
    assert text and text.decode("utf-8"), d


@pytest.mark.parametrize("problem_info", [
    pytest.param(None, id="default", marks=pytest.mark.tributary_only(
        "reason strings are optional; mosquitto 2.0 sends none")),
    pytest.param(0, id="request-problem-information-0"),
])
@pytest.mark.tributary_only("payload format validation is optional (5.0 §3.3.2.3.2); mosquitto 2.0 does not validate: PUBACK 0x10")
def test_request_problem_information_and_puback_reason_string(broker, problem_info):
    """An error PUBACK carries a Reason String, unless CONNECT said Request Problem Information 0
    (then it MUST NOT, 5.0 §3.1.2.11.7)."""
    props = properties((REQUEST_PROBLEM_INFORMATION, problem_info)) if problem_info is not None else b""
    c, _ = raw_v5(broker, props=props)
    with c:
        c.send(publish(unique("rpi"), NOT_UTF8, qos=1, packet_id=9,
                       props=properties((PAYLOAD_FORMAT_INDICATOR, 1))))
        p = c.read_packet()
    assert p.type == PUBACK, p
    packet_id, reason, ack_props = parse_ack(p)
    assert (packet_id, reason) == (9, PAYLOAD_FORMAT_INVALID), p
    if problem_info == 0:
        assert REASON_STRING not in ack_props and 0x26 not in ack_props, p
    else:
        assert ack_props.get(REASON_STRING), p


# -- SUBACK / UNSUBACK / PUBACK / PUBREC / PUBREL / PUBCOMP reason codes -----------------------------------


def test_suback_granted_qos(broker):
    base = unique("grant")
    c, _ = raw_v5(broker)
    with c:
        c.send(subscribe([(f"{base}/0", 0), (f"{base}/1", 1), (f"{base}/2", 2), (f"{base}/+", 2)], packet_id=42))
        p = c.read_packet()
    assert p.type == SUBACK
    assert parse_suback(p) == (42, [0x00, 0x01, 0x02, 0x02])


@pytest.mark.mosquitto_deviates("mosquitto 2.0.11 disconnects (0x81) on a bad filter, and grants "
                                  "$share//a, $share/g/ and $share/g")
@pytest.mark.parametrize("bad", ["a/#/b", "a+", "$share//a", "$share/g/", "$share/g", "$share/g+/a",
                                 "$share/g#/a"])
def test_suback_topic_filter_invalid(broker, clients, bad):
    """One bad filter among good ones: 0x8F for it alone, the good one is granted and works."""
    good = unique("ok")
    c, _ = raw_v5(broker)
    with c:
        c.send(subscribe([(bad, 1), (good, 1)], packet_id=5))
        p = c.read_packet()
        assert p.type == SUBACK, p
        assert parse_suback(p) == (5, [TOPIC_FILTER_INVALID, 0x01]), p
        clients(V5).publish(good, b"works", qos=1)
        [m] = read_publishes(c, 1)
        assert (m.topic, m.payload) == (good.encode(), b"works")


def test_unsuback_success_and_no_subscription_existed(broker):
    t = unique("unsub")
    c, _ = raw_v5(broker)
    with c:
        c.send(subscribe([(t, 1)], packet_id=1))
        assert parse_suback(c.read_packet())[1] == [1]
        c.send(unsubscribe([t, unique("never")], packet_id=2))
        p = c.read_packet()
        assert p.type == UNSUBACK, p
        assert parse_suback(p) == (2, [0x00, NO_SUBSCRIPTION_EXISTED])
        c.send(unsubscribe([t], packet_id=3))  # gone now
        assert parse_suback(c.read_packet()) == (3, [NO_SUBSCRIPTION_EXISTED])


def test_puback_and_pubrec_success(broker, clients):
    topic = unique("acks")
    sub = clients(V5)
    sub.subscribe([(topic, 2)])
    c, _ = raw_v5(broker)
    with c:
        c.send(publish(topic, b"one", qos=1, packet_id=11))
        p = c.read_packet()
        assert p.type == PUBACK and parse_ack(p)[:2] == (11, 0x00), p
        c.send(publish(topic, b"two", qos=2, packet_id=12))
        p = c.read_packet()
        assert p.type == PUBREC and parse_ack(p)[:2] == (12, 0x00), p
        c.send(ack(PUBREL, 12))
        p = c.read_packet()
        assert p.type == PUBCOMP and parse_ack(p)[:2] == (12, 0x00), p
    assert [m.payload for m in sub.wait_messages(2)] == [b"one", b"two"]


@pytest.mark.mosquitto_deviates("mosquitto 2.0.11 answers with reason 0x00")
def test_pubrel_for_unknown_id_gets_pubcomp_0x92(broker):
    c, _ = raw_v5(broker)
    with c:
        c.send(ack(PUBREL, 77))
        p = c.read_packet()
        assert p.type == PUBCOMP and parse_ack(p)[:2] == (77, PACKET_ID_NOT_FOUND), p
        assert c.ping()


@pytest.mark.mosquitto_deviates("mosquitto 2.0.11 answers with reason 0x00")
def test_pubrec_for_unknown_id_gets_pubrel_0x92(broker):
    c, _ = raw_v5(broker)
    with c:
        c.send(ack(PUBREC, 78))
        p = c.read_packet()
        assert p.type == PUBREL and parse_ack(p)[:2] == (78, PACKET_ID_NOT_FOUND), p
        assert c.ping()


# -- DISCONNECT reason codes -------------------------------------------------------------------------------


def test_disconnect_malformed_packet(broker):
    """A PUBLISH whose property length runs past the end of the packet."""
    c, _ = raw_v5(broker)
    with c:
        body = mqttraw.mqtt_str("t/malformed") + bytes([0x20]) + bytes([PAYLOAD_FORMAT_INDICATOR, 1])
        c.send(mqttraw.packet(0x30, body))
        expect_disconnect(c, MALFORMED)


@pytest.mark.mosquitto_deviates("mosquitto 2.0.11 closes the connection without sending DISCONNECT")
def test_disconnect_protocol_error_second_connect(broker):
    c, _ = raw_v5(broker)
    with c:
        c.send(connect(mqttraw.V5, unique("again")))
        expect_disconnect(c, PROTOCOL_ERROR)


@pytest.mark.mosquitto_deviates("mosquitto 2.0.11 closes the connection without sending DISCONNECT")
def test_disconnect_server_shutting_down(broker):
    c, _ = raw_v5(broker)
    with c:
        broker.stop()
        expect_disconnect(c, SERVER_SHUTTING_DOWN)


@pytest.mark.mosquitto_deviates("mosquitto 2.0.11 closes the connection without sending DISCONNECT")
def test_disconnect_keep_alive_timeout(broker):
    c, _ = raw_v5(broker, keepalive=1)
    with c:
        started = time.monotonic()
        expect_disconnect(c, KEEP_ALIVE_TIMEOUT, timeout=5)
        assert 1.0 <= time.monotonic() - started <= 3.5


@pytest.mark.mosquitto_deviates("mosquitto 2.0.11 closes the connection without sending DISCONNECT")
def test_disconnect_session_taken_over(broker):
    cid = unique("twin")
    first, _ = raw_v5(broker, cid)
    with first:
        second, _ = raw_v5(broker, cid)
        with second:
            expect_disconnect(first, SESSION_TAKEN_OVER)
            assert second.ping()


@pytest.mark.mosquitto_deviates("mosquitto 2.0.11 sends 0x82 Protocol Error")
def test_disconnect_topic_name_invalid(broker):
    c, _ = raw_v5(broker)
    with c:
        c.send(publish("a/+/c", b"x"))
        expect_disconnect(c, TOPIC_NAME_INVALID)
