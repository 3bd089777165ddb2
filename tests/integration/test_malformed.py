"""Bad input gets a clear answer and harms nothing else (docs/architecture.md, principle 6).

Each case opens a raw socket, sends hand-built bytes and checks the spec's answer, while a
well-behaved paho client (3.1.1, QoS 1) keeps publishing to a topic it subscribes to in a background
thread. After every case that client must have received more messages, and at the end every number
it saw acknowledged must have come back to it.

The broker runs with ``[limits] max_packet_size = 1024``.

==========================  =======  =========================================================
case                        version  expected answer
==========================  =======  =========================================================
bad remaining length        5.0      DISCONNECT 0x81 Malformed Packet, then close
(5 length bytes)            3.1.1    close, no reply
invalid UTF-8 in a topic    5.0      DISCONNECT 0x81, then close
                            3.1.1    close, no reply
U+0000 in a topic           5.0      DISCONNECT 0x81, then close
                            3.1.1    close, no reply
reserved flags              5.0      DISCONNECT 0x81, then close
(SUBSCRIBE flags 0000)      3.1.1    close, no reply
PUBLISH with QoS 3          5.0      DISCONNECT 0x81, then close
                            3.1.1    close, no reply
oversize packet             5.0      DISCONNECT 0x95 Packet Too Large, then close
(> max_packet_size)         3.1.1    close, no reply
second CONNECT              5.0      DISCONNECT 0x82 Protocol Error, then close
                            3.1.1    close, no reply
packet id 0                 5.0      DISCONNECT 0x82, then close
(PUBLISH QoS 1, SUBSCRIBE)  3.1.1    close, no reply
wildcard in PUBLISH topic   5.0      DISCONNECT 0x90 Topic Name Invalid, then close
(``a/+``, ``a/#``)          3.1.1    close, no reply
invalid SUBSCRIBE filters   5.0      SUBACK [0x8F, 0x8F, 0x01]: 0x8F Topic Filter Invalid for
(``a/#/b``, ``a+``, and              each bad filter, QoS 1 granted for the good one; the
a valid ``ok/...``)                  connection stays usable (PINGREQ answered, the valid
                                     subscription receives)
                            3.1.1    SUBACK [0x80, 0x80, 0x01], connection stays usable
PUBLISH / PINGREQ before    -        close without CONNACK (nothing at all is sent back)
CONNECT
protocol level 3 or 6       -        CONNACK ``20 02 00 01`` (3.1.1 form, 0x01 unacceptable
(name "MQTT")                        protocol version), then close
malformed CONNECT           5.0      CONNACK with a failure reason code (0x81, or 0x85 for a bad
(reserved flag bit set;              client id), then close — or just close: both accepted
invalid UTF-8 client id)    3.1.1    close without CONNACK (reserved bit) / CONNACK 0x02 or
                                     close (bad client id)
==========================  =======  =========================================================
"""

from __future__ import annotations

import threading
import time
import uuid

import pytest

import mqttraw
from mqttraw import V5, V311, RawClient
from clients import Client, V311 as PAHO_V311

MAX_PACKET_SIZE = 1024
BROKER_CONFIG = {"limits": {"max_packet_size": MAX_PACKET_SIZE}}

MALFORMED = 0x81
PROTOCOL_ERROR = 0x82
TOPIC_NAME_INVALID = 0x90
PACKET_TOO_LARGE = 0x95
TOPIC_FILTER_INVALID = 0x8F
CLIENT_ID_NOT_VALID = 0x85

ANSWER_TIMEOUT = 5.0


# -- the bystander ---------------------------------------------------------------------------------


class Bystander:
    """A well-behaved client publishing QoS 1 numbers to its own topic and receiving them."""

    def __init__(self, broker):
        self.topic = f"bystander/{uuid.uuid4().hex[:8]}"
        self.acked: set[int] = set()
        self.received: set[int] = set()
        self.errors: list[str] = []
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.c = Client(broker, PAHO_V311, f"bystander-{uuid.uuid4().hex[:6]}",
                        on_message=self._on_message)
        self.c.connect()
        assert self.c.subscribe([(self.topic, 1)]) == [1]
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _on_message(self, m):
        with self.lock:
            self.received.add(int(m.payload))

    def _run(self):
        n = 0
        deadline = time.monotonic() + 600  # bounded even if the module hangs
        while not self.stop.is_set() and time.monotonic() < deadline:
            try:
                self.c.publish(self.topic, str(n).encode(), qos=1, timeout=5)
                with self.lock:
                    self.acked.add(n)
            except AssertionError as e:
                self.errors.append(f"publish {n}: {e}")
                return
            n += 1
            self.stop.wait(0.02)

    def received_count(self) -> int:
        with self.lock:
            return len(self.received)

    def wait_more_than(self, count: int, timeout: float = 5.0):
        deadline = time.monotonic() + timeout
        while self.received_count() <= count:
            assert not self.errors, f"bystander failed: {self.errors}"
            assert not self.c.s.disconnected, "bystander was disconnected"
            assert time.monotonic() < deadline, f"bystander received nothing new in {timeout}s"
            time.sleep(0.02)

    def close(self):
        self.stop.set()
        self.thread.join(timeout=10)
        self.c.close()


@pytest.fixture(scope="module")
def bystander(module_broker):
    b = Bystander(module_broker)
    yield b
    b.close()


@pytest.fixture
def case(module_broker, bystander):
    """Runs a case between two checks that the bystander keeps receiving."""
    bystander.wait_more_than(bystander.received_count() - 1)
    before = bystander.received_count()
    yield module_broker
    bystander.wait_more_than(before)


# -- expectations ------------------------------------------------------------------------------------


def connected(broker, version: int) -> RawClient:
    raw = RawClient(broker.host, broker.port, timeout=ANSWER_TIMEOUT)
    raw.connect(version, f"bad-{uuid.uuid4().hex[:8]}")
    return raw


def expect_disconnect(raw: RawClient, reason: int):
    """v5: exactly one DISCONNECT carrying `reason`, then the socket closes."""
    packets, closed = raw.read_until_closed(ANSWER_TIMEOUT)
    got = [(hex(p.first_byte), p.reason_code(V5)) for p in packets]
    assert got == [(hex(0xE0), reason)], f"expected DISCONNECT 0x{reason:02x} then close, got {packets}"
    assert closed, "socket still open after DISCONNECT"


def expect_silent_close(raw: RawClient):
    """3.1.1 (and anything before CONNACK): the socket closes and nothing at all is sent."""
    packets, closed = raw.read_until_closed(ANSWER_TIMEOUT)
    assert packets == [], f"expected a silent close, got {packets}"
    assert closed, f"socket still open {ANSWER_TIMEOUT}s later"


def expect_answer(raw: RawClient, version: int, v5_reason: int):
    if version == V5:
        expect_disconnect(raw, v5_reason)
    else:
        expect_silent_close(raw)


VERSIONS = [pytest.param(V311, id="v311"), pytest.param(V5, id="v5")]


def deviates(reason: str):
    return pytest.mark.mosquitto_deviates(reason)


MOSQ_SILENT = "mosquitto 2.0.11 closes a 5.0 connection on this without sending DISCONNECT"


def v5_deviates(reason: str = MOSQ_SILENT):
    """Param list where only the 5.0 variant is a known mosquitto deviation."""
    return [pytest.param(V311, id="v311"), pytest.param(V5, id="v5", marks=deviates(reason))]


# -- cases after a successful CONNECT ----------------------------------------------------------------


@pytest.mark.parametrize("version", v5_deviates())
def test_bad_remaining_length(case, version):
    with connected(case, version) as raw:
        raw.send(bytes([0x30]) +  # PUBLISH, QoS 0
                 bytes([0xFF, 0xFF, 0xFF, 0xFF, 0x7F]))  # remaining length: 5 bytes (max is 4)
        expect_answer(raw, version, MALFORMED)


@pytest.mark.parametrize("version", VERSIONS)
def test_invalid_utf8_in_topic(case, version):
    with connected(case, version) as raw:
        body = (b"\x00\x03" + b"a\xffb"  # topic: length 3, 0xFF is never valid UTF-8
                + (b"\x00" if version == V5 else b"")  # v5: property length 0
                + b"x")  # payload
        raw.send(mqttraw.packet(0x30, body))  # PUBLISH, QoS 0
        expect_answer(raw, version, MALFORMED)


@pytest.mark.parametrize("version", VERSIONS)
def test_nul_character_in_topic(case, version):
    with connected(case, version) as raw:
        body = (b"\x00\x03" + b"a\x00b"  # topic: length 3, U+0000 is forbidden (MQTT-1.5.4-2)
                + (b"\x00" if version == V5 else b"")  # v5: property length 0
                + b"x")  # payload
        raw.send(mqttraw.packet(0x30, body))
        expect_answer(raw, version, MALFORMED)


@pytest.mark.parametrize("version", VERSIONS)
def test_reserved_flags_in_subscribe(case, version):
    with connected(case, version) as raw:
        body = (b"\x00\x01"  # packet id 1
                + (b"\x00" if version == V5 else b"")  # v5: property length 0
                + b"\x00\x03a/b" + b"\x01")  # filter "a/b", QoS 1
        raw.send(mqttraw.packet(0x80, body))  # SUBSCRIBE with flags 0000; they MUST be 0010
        expect_answer(raw, version, MALFORMED)


@pytest.mark.parametrize("version", VERSIONS)
def test_publish_qos_3(case, version):
    with connected(case, version) as raw:
        body = (b"\x00\x03a/b"  # topic "a/b"
                + b"\x00\x01"  # packet id 1
                + (b"\x00" if version == V5 else b"")  # v5: property length 0
                + b"x")  # payload
        raw.send(mqttraw.packet(0x36, body))  # PUBLISH with QoS bits 11
        expect_answer(raw, version, MALFORMED)


@pytest.mark.parametrize("version", VERSIONS)
def test_oversize_packet(case, version):
    with connected(case, version) as raw:
        body = (b"\x00\x03a/b"  # topic "a/b"
                + (b"\x00" if version == V5 else b"")  # v5: property length 0
                + b"x" * (2 * MAX_PACKET_SIZE))  # payload: the packet is over max_packet_size
        raw.send(mqttraw.packet(0x30, body))
        expect_answer(raw, version, PACKET_TOO_LARGE)


@pytest.mark.parametrize("version", v5_deviates())
def test_second_connect(case, version):
    with connected(case, version) as raw:
        raw.send(mqttraw.connect(version, "again"))  # a well-formed CONNECT, but the second one
        expect_answer(raw, version, PROTOCOL_ERROR)


@pytest.mark.parametrize("version, kind", [
    pytest.param(V311, "publish", id="v311-publish"),
    pytest.param(V311, "subscribe", id="v311-subscribe"),
    pytest.param(V5, "publish", id="v5-publish"),
    pytest.param(V5, "subscribe", id="v5-subscribe", marks=deviates(
        "mosquitto 2.0.11 answers SUBSCRIBE with packet id 0 with DISCONNECT 0x81, not 0x82")),
])
def test_packet_id_zero(case, version, kind):
    with connected(case, version) as raw:
        props = b"\x00" if version == V5 else b""  # v5: property length 0
        if kind == "publish":
            # PUBLISH QoS 1: topic "a/b", packet id 0 (MUST be non-zero, MQTT-2.2.1-3), payload
            raw.send(mqttraw.packet(0x32, b"\x00\x03a/b" + b"\x00\x00" + props + b"x"))
        else:
            # SUBSCRIBE: packet id 0, filter "a/b" QoS 1
            raw.send(mqttraw.packet(0x82, b"\x00\x00" + props + b"\x00\x03a/b\x01"))
        expect_answer(raw, version, PROTOCOL_ERROR)


@pytest.mark.parametrize("topic", ["a/+", "a/#"])
@pytest.mark.parametrize("version", v5_deviates(
    "mosquitto 2.0.11 answers a wildcard PUBLISH topic with DISCONNECT 0x82, not 0x90"))
def test_wildcard_in_publish_topic(case, version, topic):
    with connected(case, version) as raw:
        raw.send(mqttraw.publish(topic, b"x", qos=0, version=version))
        expect_answer(raw, version, TOPIC_NAME_INVALID)


@pytest.mark.mosquitto_deviates("mosquitto 2.0.11 drops the connection on an invalid filter (3.1.1: close; "
                                "5.0: DISCONNECT 0x81) instead of a SUBACK failure code for that entry")
@pytest.mark.parametrize("version", VERSIONS)
def test_invalid_subscribe_filters_rejected_per_entry(case, version):
    ok = f"ok/{uuid.uuid4().hex[:8]}"
    with connected(case, version) as raw:
        raw.send(mqttraw.subscribe([("a/#/b", 1),  # '#' not last
                                    ("a+", 1),  # '+' not a whole level
                                    (ok, 1)],  # valid
                                   packet_id=7, version=version))
        p = raw.read_packet()
        assert p.type == mqttraw.SUBACK, p
        fail = TOPIC_FILTER_INVALID if version == V5 else 0x80
        assert p.body[:2] == b"\x00\x07", f"SUBACK for the wrong packet id: {p}"
        codes = p.body[2:]
        if version == V5:  # skip the properties: a Variable Byte Integer length, then that many bytes
            length, used = mqttraw.read_varint(codes)
            codes = codes[used + length:]
        assert list(codes) == [fail, fail, 1], p
        # Still usable: PINGREQ is answered and the valid subscription delivers.
        assert raw.ping()
        raw.send(mqttraw.publish(ok, b"still-here", qos=0, version=version))
        got = raw.read_packet()
        assert got.type == mqttraw.PUBLISH and got.body.endswith(b"still-here"), got


# -- cases before or in CONNECT ----------------------------------------------------------------------


@pytest.mark.parametrize("first", ["publish", "pingreq"])
def test_packet_before_connect(case, first):
    with RawClient(case.host, case.port, timeout=ANSWER_TIMEOUT) as raw:
        if first == "publish":
            raw.send(mqttraw.packet(0x30, b"\x00\x03a/b" + b"x"))  # PUBLISH QoS 0 "a/b" (3.1.1 layout)
        else:
            raw.send(mqttraw.PINGREQ_BYTES)  # PINGREQ: C0 00
        expect_silent_close(raw)


@pytest.mark.parametrize("level", [3, 6])
def test_unsupported_protocol_level(case, level):
    with RawClient(case.host, case.port, timeout=ANSWER_TIMEOUT) as raw:
        # CONNECT: name "MQTT", level 3 or 6, flags 0x02, keep-alive 60, client id (3.1.1 layout)
        raw.send(mqttraw.packet(0x10, b"\x00\x04MQTT" + bytes([level]) + b"\x02" + b"\x00\x3c"
                                + b"\x00\x03lvl"))
        packets, closed = raw.read_until_closed(ANSWER_TIMEOUT)
        assert [(p.first_byte, p.body) for p in packets] == [(0x20, b"\x00\x01")], packets
        assert closed


@pytest.mark.parametrize("version", VERSIONS)
def test_connect_with_reserved_flag_bit(case, version):
    with RawClient(case.host, case.port, timeout=ANSWER_TIMEOUT) as raw:
        raw.send(mqttraw.connect(version, "rsv", flags=0x03))  # flags: clean start + reserved bit 0 set
        packets, closed = raw.read_until_closed(ANSWER_TIMEOUT)
        assert closed
        if version == V5:
            assert packets == [] or (len(packets) == 1 and packets[0].type == mqttraw.CONNACK
                                     and packets[0].reason_code(V5) == MALFORMED), packets
        else:
            assert packets == [], packets


@pytest.mark.parametrize("version", VERSIONS)
def test_connect_with_invalid_utf8_client_id(case, version):
    with RawClient(case.host, case.port, timeout=ANSWER_TIMEOUT) as raw:
        raw.send(mqttraw.connect(version, b"bad\xc3\x28id"))  # 0xC3 0x28: invalid 2-byte sequence
        packets, closed = raw.read_until_closed(ANSWER_TIMEOUT)
        assert closed
        allowed = {MALFORMED, CLIENT_ID_NOT_VALID} if version == V5 else {0x02}
        assert packets == [] or (len(packets) == 1 and packets[0].type == mqttraw.CONNACK
                                 and packets[0].reason_code(version) in allowed), packets


def test_connack_advertises_maximum_packet_size(case):
    """v5 CONNACK carries Maximum Packet Size (0x27) = the configured max_packet_size."""
    with RawClient(case.host, case.port, timeout=ANSWER_TIMEOUT) as raw:
        connack = raw.connect(V5, "maxpkt")
        assert mqttraw.connack_properties(connack).get(0x27) == MAX_PACKET_SIZE


# -- the bystander's verdict -------------------------------------------------------------------------


def test_bystander_lost_nothing(module_broker, bystander):
    """Last: everything the bystander had acknowledged came back to it, and it was never cut off."""
    before = bystander.received_count()
    bystander.wait_more_than(before)
    bystander.stop.set()
    bystander.thread.join(timeout=10)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        with bystander.lock:
            missing = bystander.acked - bystander.received
        if not missing:
            break
        time.sleep(0.1)
    assert not bystander.errors, bystander.errors
    assert not bystander.c.s.disconnected, "bystander was disconnected"
    assert len(bystander.acked) > 0
    assert not missing, f"acknowledged but never delivered: {sorted(missing)[:20]}"
    print(f"bystander: acknowledged={len(bystander.acked)} received={len(bystander.received)}")
