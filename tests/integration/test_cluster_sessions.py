"""Sessions are cluster-wide: three `tributary serve` nodes on one Kafka (the run's `kafka` fixture)
share the session directory, a compacted topic (docs/cluster.md, "Sessions across nodes").

| case | expected |
|---|---|
| a paho 5.0 client id connects to A, then the same client id to B, then to C | the older connection gets DISCONNECT 0x8E (session taken over) each time, from its own node |
| a persistent subscriber (5.0, session expiry 300 s, QoS 1) moves A → B → C → A while a publisher on A sends numbered QoS 1 messages; it is away for a while between moves; its last node is killed with SIGKILL | it receives every acknowledged number (lost = 0); duplicates are counted |
| a 3.1.1 persistent subscriber (clean session 0) moves A → B with messages published while it was away | it keeps its subscription (session present) and receives every acknowledged message |
| a 5.0 client with a will delayed 2 s vanishes from A and connects to B within the delay; then vanishes from B | no will while it is back; then exactly one will (from B) |
| clients with wills on A (5.0, 3.1.1, one delayed 3 s that comes back on B at once, one that DISCONNECTs first); A is killed with SIGKILL | watchers on B and C each get the 5.0 and 3.1.1 wills once (a live node took them up), neither of the others |
| retained messages published on A (one replaced, one cleared); a new node D starts | a subscriber on D gets the latest retained message of each topic that has one |
| a persistent subscriber leaves A; messages are published; a new node D starts and the subscriber comes back on D | D copied Kafka from where the session needed it: every message arrives |
| a 5.0 client's QoS 2 publish is answered with PUBREC on A; the client connects to B and resends it | B answers PUBREC again and stores nothing more; PUBREL gets PUBCOMP Success; one message arrives |
| a 5.0 persistent QoS 2 subscriber on A gets two messages, releases the first (PUBREC, PUBREL) and leaves the second unanswered; it connects to B | B sends PUBREL for the first and the second again with DUP and its packet id; nothing else |

Figures: published / acknowledged / received / lost / duplicated for the moving subscriber.
"""

from __future__ import annotations

import threading
import time

import pytest

import mqttraw
from clients import V5, V311, Client, unique
from conftest import Broker, unique_topic, wait_for
from numbered import Publisher

pytestmark = pytest.mark.tributary_only("the session directory is tributary's own, on Kafka")

PARTITIONS = 3
MESSAGES = 3000
RATE = 500  # messages per second: the run lasts about 6 s, so the moves happen while it publishes
MOVES_AT = (0.2, 0.45, 0.7)  # of the acknowledged messages, when the subscriber moves
AWAY_S = 0.5
RECEIVED_WITHIN_S = 60
SESSION_TAKEN_OVER = 0x8E


@pytest.fixture
def cluster_config(kafka):
    """The nodes' config: the run's Kafka, one unique default topic."""
    topic = unique_topic("cluster")
    return {"kafka": {"url": f"kafka://{kafka.bootstrap}", "default_topic": topic,
                      "partitions": PARTITIONS}}


@pytest.fixture
def nodes(tmp_path, cluster_config):
    """Three nodes; stopped at the end."""
    started = []
    try:
        for name in "abc":
            started.append(Broker(tmp_path / name, cluster_config).start())
        yield started
    finally:
        for node in started:
            node.close()


def test_a_connect_on_another_node_takes_the_session_over(nodes):
    a, b, c = nodes
    client_id = unique("roam")
    first = Client(a, V5, client_id)
    first.connect()
    second = Client(b, V5, client_id)
    second.connect()
    assert first.wait_disconnected(timeout=10) == SESSION_TAKEN_OVER
    third = Client(c, V5, client_id)
    third.connect()
    assert second.wait_disconnected(timeout=10) == SESSION_TAKEN_OVER
    # The newest connection is not disturbed by the older ones' ends.
    time.sleep(0.5)
    assert not third.s.disconnected
    third.disconnect()


class Roamer:
    """One persistent subscriber session (one client id) that moves between nodes; every message
    it is sent lands in `received` (a number may come twice)."""

    def __init__(self, topic: str, version: int):
        self.topic = topic
        self.version = version
        self.client_id = unique("roamer")
        self.received: list[int] = []
        self.lock = threading.Lock()
        self.client: Client | None = None

    def _on_message(self, message):
        with self.lock:
            self.received.append(int(message.payload[:8]))

    def connect(self, node: Broker, first: bool = False) -> bool:
        """Connects to `node`; returns CONNACK's session present."""
        expiry = 300 if self.version == V5 else None
        # 5.0: a fresh persistent session (clean start, expiry > 0); 3.1.1: clean session 0 always.
        clean = first and self.version == V5
        self.client = Client(node, self.version, self.client_id, clean=clean, session_expiry=expiry,
                             on_message=self._on_message)
        ack = self.client.connect()
        if first:
            assert self.client.subscribe([(self.topic, 1)]) == [1]
        return ack.session_present

    def leave(self):
        """A clean disconnect (the session stays, being persistent)."""
        if self.client and not self.client.s.disconnected:
            self.client.disconnect()
        self.client = None

    def numbers(self) -> list[int]:
        with self.lock:
            return list(self.received)


@pytest.mark.timeout(240)
def test_a_persistent_subscriber_moved_across_three_nodes_gets_every_acknowledged_message(nodes, figures):
    a, b, c = nodes
    topic = unique("roam") + "/n"
    roamer = Roamer(topic, V5)
    roamer.connect(a, first=True)
    acked: set[int] = set()
    publisher = Publisher(a, unique("pub"), acked, topic, version=V5)
    publisher.connect()
    deadline = time.monotonic() + 150

    def publish_all():
        t0 = time.monotonic()
        for n in range(MESSAGES):
            pause = t0 + n / RATE - time.monotonic()
            if pause > 0:
                time.sleep(pause)
            if not publisher.publish(n, deadline):
                return
        publisher.wait_drained(deadline)

    sender = threading.Thread(target=publish_all, daemon=True)
    sender.start()
    path = []
    for at, node in zip(MOVES_AT, (b, c, None)):
        wait_for(lambda: len(acked) >= MESSAGES * at, timeout=120, interval=0.05,
                 what=f"{at:.0%} of the messages acknowledged")
        if node is None:
            # The subscriber's node dies; the client comes back through another one.
            c.kill()
            roamer.client.wait_disconnected(timeout=10)
            node, how = a, "SIGKILL of C"
        else:
            roamer.leave()
            how = "disconnect"
        time.sleep(AWAY_S)
        present = roamer.connect(node)
        assert present, f"the session was not present on {node!r} after {how}"
        path.append(f"{how} at {len(acked)} -> {node.workdir.name}")
    sender.join(max(0.0, deadline - time.monotonic()))
    assert len(acked) == MESSAGES, f"only {len(acked)} of {MESSAGES} acknowledged"
    try:
        wait_for(lambda: acked <= set(roamer.numbers()), timeout=RECEIVED_WITHIN_S, interval=0.2,
                 what="every acknowledged number at the subscriber")
    finally:
        got = roamer.numbers()
        lost = sorted(acked - set(got))
        figures(f"persistent subscriber moved A->B->C->A ({'; '.join(path)}): published={publisher.attempts} "
                f"acknowledged={len(acked)} received={len(got)} lost={len(lost)} "
                f"duplicated={len(got) - len(set(got))}")
    assert not lost, f"lost {len(lost)}: first {lost[:10]}"
    roamer.leave()
    publisher.close()


def test_a_311_persistent_session_keeps_its_subscription_and_messages_on_another_node(nodes):
    a, b, _ = nodes
    topic = unique("roam311") + "/n"
    roamer = Roamer(topic, V311)
    roamer.connect(a, first=True)
    # A clean session 0 first connection to create the persistent session.
    roamer.leave()
    assert roamer.connect(a) is True
    publisher = Client(a, V311)
    publisher.connect()
    publisher.publish(topic, b"%08d" % 1, qos=1)
    wait_for(lambda: roamer.numbers() == [1], timeout=10, what="message 1 on A")
    roamer.leave()
    for n in range(2, 12):
        publisher.publish(topic, b"%08d" % n, qos=1)
    assert roamer.connect(b) is True, "session present on B"
    wait_for(lambda: set(range(1, 12)) <= set(roamer.numbers()), timeout=15,
             what="the messages published while away, on B")
    publisher.publish(topic, b"%08d" % 12, qos=1)
    wait_for(lambda: 12 in roamer.numbers(), timeout=10, what="a new message on B")
    roamer.leave()
    publisher.disconnect()


def test_a_new_node_has_what_a_returning_session_needs(tmp_path, nodes, cluster_config):
    a, b, _ = nodes
    topic = unique("roamnew") + "/n"
    roamer = Roamer(topic, V5)
    roamer.connect(a, first=True)
    roamer.leave()
    publisher = Client(b, V5)
    publisher.connect()
    for n in range(200):
        publisher.publish(topic, b"%08d" % n, qos=1, wait=n == 199)
    d = Broker(tmp_path / "d", cluster_config).start()
    try:
        assert roamer.connect(d) is True, "session present on the new node"
        wait_for(lambda: set(range(200)) <= set(roamer.numbers()), timeout=20,
                 what="the messages published before the new node started, on it")
        assert "copying Kafka from where the directory's persistent sessions need it" in d.log_tail(1 << 20)
        roamer.leave()
    finally:
        publisher.disconnect()
        d.close()


def watching(node, topic: str) -> Client:
    """A 5.0 client on `node` subscribed to `topic` at QoS 1."""
    watcher = Client(node, V5)
    watcher.connect()
    watcher.subscribe([(topic, 1)])
    return watcher


def with_delayed_will(node, topic: str, payload: bytes, delay: int, expiry: int) -> Client:
    """A connected persistent 5.0 client on `node` whose will waits `delay` seconds."""
    client = Client(node, V5, unique("delayed"), clean=False, session_expiry=expiry,
                    will=(topic, payload, 1), will_properties={"WillDelayInterval": delay})
    client.connect()
    return client


def test_a_delayed_will_is_not_sent_when_the_client_comes_back_on_another_node(nodes):
    a, b, c = nodes
    topic = unique("clusterwill")
    watcher = watching(c, topic)
    willing = with_delayed_will(a, topic, b"gone", delay=2, expiry=30)
    willing.drop()
    back = Client(b, V5, willing.client_id, clean=False, session_expiry=30,
                  will=(topic, b"gone", 1), will_properties={"WillDelayInterval": 2})
    assert back.connect().session_present
    time.sleep(3.5)
    assert watcher.messages(topic) == [], "the will waiting on A was cancelled by the connection on B"
    # Without a new connection the delayed will comes once, from the node that held the connection.
    back.drop()
    [m] = watcher.wait_messages(1, timeout=8, topic=topic)
    assert m.payload == b"gone"
    time.sleep(1)
    assert len(watcher.messages(topic)) == 1
    watcher.disconnect()


@pytest.mark.timeout(90)
def test_the_wills_of_a_killed_nodes_clients_are_published_once(nodes):
    a, b, c = nodes
    topic = unique("orphanwill")
    watchers = []
    for node in (b, c):
        watcher = Client(node, V5)
        watcher.connect()
        watcher.subscribe([(topic, 1)])
        watchers.append(watcher)
    willing = [Client(a, version, will=(topic, payload, 1))
               for version, payload in ((V5, b"gone 5.0"), (V311, b"gone 3.1.1"))]
    delayed = Client(a, V5, unique("delayed"), clean=False, session_expiry=60,
                     will=(topic, b"delayed", 1), will_properties={"WillDelayInterval": 3})
    polite = Client(a, V5, will=(topic, b"polite", 1))
    for client in willing + [delayed, polite]:
        client.connect()
    polite.disconnect()
    time.sleep(1)  # paho returns once DISCONNECT is sent; A settles that will when it reads it
    a.kill()
    back = Client(b, V5, delayed.client_id, clean=False, session_expiry=60)
    assert back.connect().session_present
    # A node is taken for dead 6 s after its last beat; the lowest-named live node then settles
    # and publishes what it left.
    expected = sorted([b"gone 5.0", b"gone 3.1.1"])
    for watcher in watchers:
        watcher.wait_messages(2, timeout=30, topic=topic)
    time.sleep(3)
    for watcher in watchers:
        assert sorted(m.payload for m in watcher.messages(topic)) == expected, \
            "each will once, and none of a client that came back or said DISCONNECT"
    assert sum("publishing the will of a connection on a dead node" in node.log_tail(1 << 20)
               for node in (b, c)) == 1, "one node took the wills up"
    back.disconnect()
    for watcher in watchers:
        watcher.disconnect()
    for client in willing + [delayed]:
        client.close()


@pytest.mark.timeout(90)
def test_a_will_waiting_out_its_delay_on_a_killed_node_is_published_by_another(nodes, figures):
    a, b, c = nodes
    topic = unique("delayedorphan")
    watcher = watching(b, topic)
    delayed = with_delayed_will(a, topic, b"late", delay=12, expiry=120)
    delayed.drop()
    dropped_at = time.monotonic()
    time.sleep(5)  # A now waits out the delay of the will, and noted when the connection ended
    a.kill()
    # A is found dead about 6 s after the kill (11 s after the drop); the delay counts from
    # the drop, so the will comes at about 12 s, not 5 s later (from A's last beat).
    [m] = watcher.wait_messages(1, timeout=30, topic=topic)
    published_after = time.monotonic() - dropped_at
    assert m.payload == b"late"
    assert published_after >= 11.5, f"published {published_after:.1f} s after the drop, before its delay"
    figures(f"a 12 s delayed will, its node killed 5 s into it: published {published_after:.1f} s after the drop")
    assert published_after <= 15.5, f"published {published_after:.1f} s after the drop: its delay did not count from the drop"
    time.sleep(2)
    assert len(watcher.messages(topic)) == 1, "published once"
    watcher.disconnect()


@pytest.mark.timeout(120)
def test_a_will_taken_up_and_not_yet_due_is_given_back_by_a_node_that_stops(nodes):
    a, b, c = nodes
    topic = unique("handback")
    watchers = {node: watching(node, topic) for node in (b, c)}
    delayed = with_delayed_will(a, topic, b"late", delay=20, expiry=120)
    a.kill()
    killed_at = time.monotonic()
    # The lowest-named live node takes the will up about 6 s after the kill; it is due 20 s
    # after A's last beat. That node stops before then and gives the will back.
    took_up = "took up the will of a connection on a dead node"
    wait_for(lambda: any(took_up in node.log_tail(1 << 20) for node in (b, c)), timeout=30,
             interval=0.5, what="a node to take the will up")
    taker, other = (b, c) if took_up in b.log_tail(1 << 20) else (c, b)
    taker.stop()
    assert "gave back the will of a connection on a dead node" in taker.log_tail(1 << 20)
    [m] = watchers[other].wait_messages(1, timeout=40, topic=topic)
    published_after = time.monotonic() - killed_at
    assert m.payload == b"late"
    assert published_after >= 18, f"published {published_after:.1f} s after the kill, before its delay"
    time.sleep(2)
    assert len(watchers[other].messages(topic)) == 1, "published once"
    assert "publishing the will of a connection on a dead node" in other.log_tail(1 << 20)
    watchers[other].disconnect()
    delayed.close()


def test_a_new_node_starts_with_what_was_retained(tmp_path, nodes, cluster_config):
    a, b, _ = nodes
    base = unique("clusterretained")
    publisher = Client(a, V5)
    publisher.connect()
    publisher.publish(f"{base}/kept", b"old", qos=1, retain=True)
    publisher.publish(f"{base}/kept", b"new", qos=1, retain=True)
    publisher.publish(f"{base}/cleared", b"x", qos=1, retain=True)
    publisher.publish(f"{base}/cleared", b"", qos=1, retain=True)
    publisher.disconnect()
    d = Broker(tmp_path / "d", cluster_config).start()
    try:
        watcher = Client(d, V5)
        watcher.connect()
        watcher.subscribe([(f"{base}/#", 1)])
        [m] = watcher.wait_messages(1, timeout=10)
        assert (m.topic, m.payload, m.retain) == (f"{base}/kept", b"new", True)
        time.sleep(0.5)
        assert len(watcher.messages()) == 1, [x.topic for x in watcher.messages()]
        watcher.disconnect()
    finally:
        d.close()


def test_a_qos2_publish_awaiting_pubrel_is_stored_once_when_its_session_moves(nodes):
    a, b, _ = nodes
    topic = unique("q2move")
    watcher = Client(b, V5, unique("q2watch"))
    watcher.connect()
    watcher.subscribe([(topic, 2)])
    client_id = unique("q2mover")
    expiry = mqttraw.properties((0x11, 300))  # Session Expiry Interval
    publish = dict(qos=2, packet_id=9)
    with mqttraw.RawClient(a.host, a.port, timeout=10) as on_a:
        on_a.connect(V5, client_id, flags=0x00, props=expiry)
        on_a.send(mqttraw.publish(topic, b"once", **publish))
        assert mqttraw.parse_ack(on_a.read_packet())[:2] == (9, 0)
        with mqttraw.RawClient(b.host, b.port, timeout=10) as on_b:
            connack = on_b.connect(V5, client_id, flags=0x00, props=expiry)
            assert connack.body[0] & 0x01, "session present on B"
            dup = (mqttraw.PUBLISH << 4) | 0x08 | (2 << 1)
            on_b.send(mqttraw.publish(topic, b"once", first_byte=dup, **publish))
            rec = on_b.read_packet()
            assert (rec.type, mqttraw.parse_ack(rec)[:2]) == (mqttraw.PUBREC, (9, 0))
            on_b.send(mqttraw.ack(mqttraw.PUBREL, 9))
            comp = on_b.read_packet()
            assert (comp.type, mqttraw.parse_ack(comp)[:2]) == (mqttraw.PUBCOMP, (9, 0))
    [m] = watcher.wait_messages(1, timeout=10)
    assert m.payload == b"once"
    time.sleep(1.0)
    assert len(watcher.messages(topic)) == 1, "the resend on B was stored again"
    watcher.disconnect()


def test_qos2_deliveries_in_flight_move_with_the_session(nodes):
    a, b, _ = nodes
    topic = unique("q2out")
    client_id = unique("q2sub")
    expiry = mqttraw.properties((0x11, 300))  # Session Expiry Interval
    publisher = Client(a, V5, unique("q2pub"))
    publisher.connect()
    with mqttraw.RawClient(a.host, a.port, timeout=10) as on_a:
        on_a.connect(V5, client_id, flags=0x00, props=expiry)
        on_a.send(mqttraw.subscribe([(topic, 2)]))
        assert on_a.read_packet().type == mqttraw.SUBACK
        for payload in (b"first", b"second"):
            publisher.publish(topic, payload, qos=2)
        first, second = (mqttraw.parse_publish(on_a.read_packet()) for _ in range(2))
        assert (first.payload, second.payload) == (b"first", b"second")
        on_a.send(mqttraw.ack(mqttraw.PUBREC, first.packet_id))
        rel = on_a.read_packet()
        assert (rel.type, mqttraw.parse_ack(rel)[0]) == (mqttraw.PUBREL, first.packet_id)
        with mqttraw.RawClient(b.host, b.port, timeout=10) as on_b:
            connack = on_b.connect(V5, client_id, flags=0x00, props=expiry)
            assert connack.body[0] & 0x01, "session present on B"
            rel = on_b.read_packet()
            assert (rel.type, mqttraw.parse_ack(rel)[0]) == (mqttraw.PUBREL, first.packet_id)
            again = mqttraw.parse_publish(on_b.read_packet())
            assert (again.payload, again.packet_id, again.dup) == (b"second", second.packet_id, True)
            on_b.send(mqttraw.ack(mqttraw.PUBCOMP, first.packet_id))
            on_b.send(mqttraw.ack(mqttraw.PUBREC, again.packet_id))
            rel = on_b.read_packet()
            assert (rel.type, mqttraw.parse_ack(rel)[0]) == (mqttraw.PUBREL, again.packet_id)
            on_b.send(mqttraw.ack(mqttraw.PUBCOMP, again.packet_id))
            with pytest.raises(TimeoutError):
                extra = on_b.read_packet(timeout=1.0)
                pytest.fail(f"nothing more is owed, got {extra!r}")
    publisher.disconnect()
