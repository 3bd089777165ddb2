"""MQTT 5.0 features with the mosquitto command-line clients (mosquitto_pub / mosquitto_sub -V mqttv5).

mosquitto_sub prints each message as one line, fields separated by U+001F (never in our data):
topic, retain flag, content type (%C), user properties (%P, "k:v" space-separated), response
topic (%R), correlation data (%D), payload format indicator (%F), message expiry interval (%E),
subscription identifier (%S), payload (%p, last). `-d` prints "Subscribed (mid: ...)" once the
SUBACK is in, so tests publish only after that (no sleeps).

Not covered here because mosquitto_sub 2.0.11 has no option for them: No Local and Retain
Handling (test_mqtt5.py covers both with paho).
"""

from __future__ import annotations

import shutil
import subprocess
import time
from dataclasses import dataclass

import pytest

from clients import let_time_pass, session_expired, unique
from mosquitto_sub import MosquittoSub

SEP = "\x1f"
FIELDS = ["topic", "retain", "content_type", "user_properties", "response_topic", "correlation_data",
          "payload_format", "expiry", "subscription_id", "payload"]
FORMAT = "MSG" + SEP + SEP.join(["%t", "%r", "%C", "%P", "%R", "%D", "%F", "%E", "%S", "%p"])

pytestmark = pytest.mark.skipif(shutil.which("mosquitto_sub") is None, reason="mosquitto-clients not installed")


@dataclass
class Msg:
    topic: str
    retain: bool
    content_type: str
    user_properties: str
    response_topic: str
    correlation_data: str
    payload_format: str
    expiry: str
    subscription_id: str
    payload: str


class Sub(MosquittoSub):
    """mosquitto_sub -V mqttv5 printing the FORMAT lines."""

    def __init__(self, broker, topics: list[str], *, qos: int = 1, count: int | None = None, wait_s: int = 15,
                 extra: list[str] | None = None):
        super().__init__(broker, protocol="mqttv5", topics=topics, qos=qos, fmt=FORMAT, count=count,
                         wait_s=wait_s, extra=extra)

    def wait_messages(self, n: int, timeout: float = 10) -> list[Msg]:
        self.wait_until(lambda: len(self._parse(self.lines)) >= n, timeout, f"{n} message(s)")
        return self.messages()

    def messages(self) -> list[Msg]:
        return self._parse(self.message_lines("MSG" + SEP))

    @staticmethod
    def _parse(lines: list[str]) -> list[Msg]:
        out = []
        for l in list(lines):
            if l.startswith("MSG" + SEP):
                values = l.split(SEP, len(FIELDS))[1:]
                values[1] = values[1] == "1"
                out.append(Msg(*values))
        return out

    def finish(self, timeout: float = 20) -> list[Msg]:
        """Wait for exit (after -C, -E or -W); return the messages."""
        self.wait_exit(timeout)
        return self.messages()


@pytest.fixture
def subs(broker):
    made: list[Sub] = []

    def make(*a, **kw) -> Sub:
        s = Sub(broker, *a, **kw)
        made.append(s)
        return s

    yield make
    for s in made:
        s.kill()


def pub(broker, topic: str, messages: list[str], *, qos: int = 1, retain: bool = False,
        props: list[tuple[str, ...]] = (), check: bool = True, timeout: float = 20) -> subprocess.CompletedProcess:
    """mosquitto_pub -V mqttv5; several messages go over one connection (-l, one per stdin line).
    props: ("message-expiry-interval", "60"), ("user-property", "k", "v"), ... for `-D publish`."""
    cmd = ["mosquitto_pub", "-h", broker.host, "-p", str(broker.port), "-V", "mqttv5", "-q", str(qos),
           "-t", topic, "-d"]
    if retain:
        cmd.append("-r")
    for p in props:
        cmd += ["-D", "publish", *p]
    stdin = None
    if len(messages) == 1:
        cmd += ["-m", messages[0]]
    else:
        cmd.append("-l")
        stdin = "".join(m + "\n" for m in messages)
    r = subprocess.run(cmd, input=stdin, capture_output=True, text=True, timeout=timeout)
    if check:
        assert r.returncode == 0, f"{' '.join(cmd)} failed ({r.returncode}): {r.stdout}{r.stderr}"
    return r


def test_message_properties_pass_through(broker, subs):
    topic = unique("m5cli/props")
    s = subs([topic], count=1)
    s.wait_subscribed()
    pub(broker, topic, ["héllo"], props=[("user-property", "k1", "v1"), ("user-property", "k2", "v 2"),
                                         ("user-property", "k1", "again"), ("content-type", "text/plain"),
                                         ("response-topic", "replies/x"), ("correlation-data", "corr-7"),
                                         ("payload-format-indicator", "1")])
    [m] = s.finish()
    assert (m.topic, m.payload) == (topic, "héllo")
    assert m.user_properties == "k1:v1 k2:v 2 k1:again"
    assert (m.content_type, m.response_topic, m.correlation_data, m.payload_format) == \
        ("text/plain", "replies/x", "corr-7", "1")


def test_message_expiry_interval_reaches_a_live_subscriber(broker, subs):
    topic = unique("m5cli/expiry")
    s = subs([topic], count=2)
    s.wait_subscribed()
    pub(broker, topic, ["expiring"], props=[("message-expiry-interval", "60")])
    pub(broker, topic, ["forever"])
    got = s.finish()
    assert [(m.payload, m.expiry) for m in got] in ([("expiring", "60"), ("forever", "")],
                                                    [("expiring", "59"), ("forever", "")])


def test_expired_message_not_delivered_to_a_returning_session(broker, subs):
    """`-c -x 60 -i ID -E`: subscribe and leave; a message with expiry 1 and one without are published;
    after 2 s the returning session gets only the second."""
    topic, cid = unique("m5cli/expired"), unique("m5cli-sess")
    assert subs([topic], extra=["-c", "-x", "60", "-i", cid, "-E"]).finish() == []
    published = time.monotonic()
    pub(broker, topic, ["short-lived"], props=[("message-expiry-interval", "1")])
    pub(broker, topic, ["forever"])
    let_time_pass(published, 2.2)
    got = subs([topic], count=1, extra=["-c", "-x", "60", "-i", cid]).finish()
    assert [m.payload for m in got] == ["forever"]


def test_topic_alias_from_mosquitto_pub(broker, subs):
    """mosquitto_pub with `-D publish topic-alias 1` sends the first message with topic + alias and the
    rest with an empty topic + alias; the subscriber sees the full topic every time."""
    topic = unique("m5cli/alias")
    s = subs([topic], count=3)
    s.wait_subscribed()
    r = pub(broker, topic, ["a1", "a2", "a3"], props=[("topic-alias", "1")])
    assert r.stdout.count("'(null)'") == 2, r.stdout  # two PUBLISHes went out without a topic
    got = s.finish()
    assert [(m.topic, m.payload) for m in got] == [(topic, "a1"), (topic, "a2"), (topic, "a3")]


def test_shared_subscription_with_two_mosquitto_subs(broker, subs):
    topic = unique("m5cli/shared")
    members = [subs([f"$share/g/{topic}"]) for _ in range(2)]
    for m in members:
        m.wait_subscribed()
    sent = [f"s{i}" for i in range(20)]
    pub(broker, topic, sent)
    deadline = time.monotonic() + 10
    while sum(len(m.messages()) for m in members) < len(sent):
        assert time.monotonic() < deadline, [m.lines for m in members]
        time.sleep(0.02)
    a, b = ([x.payload for x in m.messages()] for m in members)
    assert len(a) + len(b) == len(sent)
    assert set(a) | set(b) == set(sent)
    assert not set(a) & set(b)


def test_retain_as_published(broker, subs):
    topic = unique("m5cli/rap")
    rap = subs([topic], count=2, extra=["--retain-as-published"])
    plain = subs([topic], count=2)
    rap.wait_subscribed()
    plain.wait_subscribed()
    pub(broker, topic, ["kept"], retain=True)
    pub(broker, topic, ["live"])
    assert [(m.payload, m.retain) for m in rap.finish()] == [("kept", True), ("live", False)]
    assert [(m.payload, m.retain) for m in plain.finish()] == [("kept", False), ("live", False)]


def test_subscription_identifier(broker, subs):
    topic = unique("m5cli/sid")
    s = subs([topic], count=1, extra=["-D", "subscribe", "subscription-identifier", "42"])
    s.wait_subscribed()
    pub(broker, topic, ["x"])
    [m] = s.finish()
    assert m.subscription_id == "42"


def test_session_expiry_with_x(broker, subs):
    """`-c -x 60`: the session is resumed with what was published meanwhile; `-c -x 1`: gone 1 s later."""
    kept_topic, kept_id = unique("m5cli/x60"), unique("x60")
    assert subs([kept_topic], extra=["-c", "-x", "60", "-i", kept_id, "-E"]).finish() == []
    gone_topic, gone_id = unique("m5cli/x1"), unique("x1")
    assert subs([gone_topic], extra=["-c", "-x", "1", "-i", gone_id, "-E"]).finish() == []
    left = time.monotonic()
    pub(broker, kept_topic, ["while away"])
    pub(broker, gone_topic, ["for an expired session"])
    session_expired(broker, gone_id, left, 1)

    got = subs([kept_topic], count=1, extra=["-c", "-x", "60", "-i", kept_id]).finish()
    assert [m.payload for m in got] == ["while away"]
    back = subs([gone_topic], count=1, extra=["-c", "-x", "60", "-i", gone_id])
    back.wait_subscribed()
    pub(broker, gone_topic, ["marker"])
    assert [m.payload for m in back.finish()] == ["marker"]


@pytest.mark.tributary_only("payload format validation is optional; mosquitto 2.0 does not validate")
def test_invalid_utf8_with_payload_format_indicator_is_refused(broker, subs, tmp_path):
    topic = unique("m5cli/pfi")
    bad = tmp_path / "bad"
    bad.write_bytes(b"\xff\xfe")
    cmd = ["mosquitto_pub", "-h", broker.host, "-p", str(broker.port), "-V", "mqttv5", "-q", "1", "-t", topic,
           "-d", "-f", str(bad), "-D", "publish", "payload-format-indicator", "1"]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=20)
    assert "received PUBACK (Mid: 1, RC:153)" in r.stdout, r.stdout + r.stderr
    assert "Payload format invalid" in r.stdout + r.stderr
