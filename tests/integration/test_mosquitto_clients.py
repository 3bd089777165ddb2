"""The broker with the mosquitto command-line clients (mosquitto_pub / mosquitto_sub), MQTT 3.1.1 and 5.0.

mosquitto_sub runs with `-d` (debug lines start with "Client ..." and "Subscribed (mid: ...)") and a
format `-F` whose lines start with "MSG|", so the test knows when the subscription is in place
(no sleeps) and can read each message's QoS, retain flag, topic and payload.
"""

from __future__ import annotations

import shutil
import signal
import subprocess

import pytest

from clients import unique
from mosquitto_sub import MosquittoSub

PROTOCOLS = ["mqttv311", "mqttv5"]
MSG_FORMAT = "MSG|%q|%r|%t|%p"

pytestmark = pytest.mark.skipif(shutil.which("mosquitto_sub") is None, reason="mosquitto-clients not installed")


class Sub(MosquittoSub):
    """mosquitto_sub printing "MSG|qos|retain|topic|payload" lines."""

    def __init__(self, broker, protocol: str, topics: list[str], qos: int = 0, count: int | None = None,
                 wait_s: int = 10, extra: list[str] | None = None):
        super().__init__(broker, protocol=protocol, topics=topics, qos=qos, fmt=MSG_FORMAT, count=count,
                         wait_s=wait_s, extra=extra)

    def wait_line(self, predicate, timeout: float, what: str):
        self.wait_until(lambda: any(predicate(l) for l in self.lines), timeout, what)

    def finish(self, timeout: float = 20) -> list[tuple[int, bool, str, str]]:
        """Wait for exit (after -C count or -W); return [(qos, retain, topic, payload)]."""
        self.wait_exit(timeout)
        return self.messages()

    def messages(self):
        out = []
        for l in self.message_lines("MSG|"):
            _, q, r, t, p = l.split("|", 4)
            out.append((int(q), r == "1", t, p))
        return out


@pytest.fixture
def subs():
    made: list[Sub] = []

    def make(*a, **kw) -> Sub:
        s = Sub(*a, **kw)
        made.append(s)
        return s

    yield make
    for s in made:
        s.kill()


def pub(broker, protocol: str, topic: str, *, messages: list[str] | None = None, qos: int = 0,
        retain: bool = False, null: bool = False, extra: list[str] | None = None, timeout: float = 20):
    """Run mosquitto_pub; several messages go over one connection with -l (one per stdin line)."""
    cmd = ["mosquitto_pub", "-h", broker.host, "-p", str(broker.port), "-V", protocol, "-q", str(qos),
           "-t", topic]
    if retain:
        cmd.append("-r")
    if null:
        cmd.append("-n")
        stdin = None
    elif messages is not None and len(messages) == 1:
        cmd += ["-m", messages[0]]
        stdin = None
    else:
        cmd.append("-l")
        stdin = "".join(m + "\n" for m in messages or [])
    cmd += extra or []
    r = subprocess.run(cmd, input=stdin, capture_output=True, text=True, timeout=timeout)
    assert r.returncode == 0, f"{' '.join(cmd)} failed ({r.returncode}): {r.stdout}{r.stderr}"


@pytest.mark.parametrize("qos", [0, 1, 2])
@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_sub_receives_what_pub_sends(broker, subs, protocol, qos):
    """10 messages over one mosquitto_pub connection arrive in order, at the QoS they were sent with."""
    topic = unique("cli/data")
    sent = [f"m{i}-{protocol}-q{qos}" for i in range(10)]
    s = subs(broker, protocol, [topic], qos=qos, count=len(sent))
    s.wait_subscribed()
    pub(broker, protocol, topic, messages=sent, qos=qos)
    got = s.finish()
    assert [m[3] for m in got] == sent
    assert {m[0] for m in got} == {qos}
    assert not any(m[1] for m in got), "live messages must not carry the retain flag"
    assert s.proc.returncode == 0


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_retained_message_and_clearing_it(broker, subs, protocol):
    """A later subscriber gets the retained message (retain flag set); an empty retained payload clears it."""
    topic = unique("cli/retained")
    pub(broker, protocol, topic, messages=["kept"], qos=1, retain=True)

    s = subs(broker, protocol, [topic], qos=1, count=1)
    got = s.finish()
    assert got == [(1, True, topic, "kept")]

    pub(broker, protocol, topic, null=True, qos=1, retain=True)
    # A new subscriber must see no retained message: the first thing it gets is our live marker.
    s = subs(broker, protocol, [topic], qos=1, count=1)
    s.wait_subscribed()
    pub(broker, protocol, topic, messages=["live-marker"], qos=1)
    got = s.finish()
    assert got == [(1, False, topic, "live-marker")]


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_retained_survives_restart(broker, subs, protocol):
    topic = unique("cli/retained-restart")
    pub(broker, protocol, topic, messages=["still here"], qos=1, retain=True)
    broker.restart(graceful=True)
    s = subs(broker, protocol, [topic], qos=1, count=1)
    assert s.finish() == [(1, True, topic, "still here")]


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_will_sent_when_client_is_killed(broker, subs, protocol):
    """A mosquitto_sub with a will is SIGKILLed: the broker sees the socket drop and publishes the will."""
    will_topic = unique("cli/will")
    watcher = subs(broker, protocol, [will_topic], qos=1, count=1)
    watcher.wait_subscribed()
    willer = subs(broker, protocol, [unique("cli/unused")], qos=0, wait_s=60,
                  extra=["--will-topic", will_topic, "--will-payload", "gone", "--will-qos", "1"])
    willer.wait_subscribed()
    willer.proc.send_signal(signal.SIGKILL)
    willer.proc.wait(timeout=5)
    assert watcher.finish() == [(1, False, will_topic, "gone")]


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_persistent_session_across_restart(broker, subs, protocol):
    """`-c -i ID -q 1`: subscribe, leave; messages published meanwhile; broker restarted; reconnect gets them."""
    topic = unique("cli/persist")
    cid = unique("persist")
    first = subs(broker, protocol, [topic], qos=1, extra=["-c", "-i", cid, "-E"])
    assert first.finish() == []
    assert first.proc.returncode == 0, "\n".join(first.lines)

    sent = [f"while-away-{i}" for i in range(20)]
    pub(broker, protocol, topic, messages=sent, qos=1)
    broker.restart(graceful=True)

    again = subs(broker, protocol, [topic], qos=1, count=len(sent), extra=["-c", "-i", cid])
    got = again.finish()
    assert [m[3] for m in got] == sent
    assert {m[0] for m in got} == {1}
