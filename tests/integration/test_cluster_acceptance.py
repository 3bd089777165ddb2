"""The 2016 design's acceptance test, on the cluster: HAProxy 2.6 in front of nodes on a three-broker
Apache Kafka (replication factor 3, min.insync.replicas 2) and one PostgreSQL store
(docs/cluster.md, docs/kafka.md).

| step | what happens |
|---|---|
| start | two nodes (n1, n2) join HAProxy by themselves; 10 devices (2 owners) publish 1,000 SenML messages of 100 B each at QoS 1 through HAProxy with their credentials; 10 persistent-session subscribers (the owners, MQTT 5.0, session expiry 600 s) each follow one device through HAProxy |
| 25 % acknowledged | a third node (n3) starts, joins HAProxy by itself and takes new connections |
| 50 % | n1 leaves with SIGTERM: drain, its clients get 0x9C and reconnect through HAProxy |
| 75 % | n2 is killed with SIGKILL: its clients lose their connections and reconnect through HAProxy |
| end | published / acknowledged / stored in PostgreSQL / archived / delivered to each persistent subscriber / lost / duplicated: lost = 0 everywhere; the time from a client's disconnect to its CONNACK on another node (p50, p99); connections per node over time (HAProxy's `show stat`) |
"""

from __future__ import annotations

import json
import shutil
import threading
import time

import paho.mqtt.client as mqtt
import pyarrow.dataset as ds
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from accounts_cli import add_device, add_owner
from conftest import Broker, unique_topic, wait_for
from postgres import psql
from test_cluster import Haproxy

pytestmark = pytest.mark.tributary_only("the cluster is tributary's")

DEVICES_PER_OWNER = 5
MESSAGES = 1000
SIZE = 100
RATE = 25  # messages per second per device: the run lasts about 40 s
WINDOW = 50  # QoS 1 publishes in flight per device
PARTITIONS = 6
T0 = 1_790_000_000  # SenML base time of message 0 (seconds)
DRAIN_SECS = 3
RECONNECT_PAUSE_S = 0.1
CONNECT_TIMEOUT_S = 10  # a session taken over from a killed node waits up to 3 s for its last state
RUN_DEADLINE_S = 180


def senml(device: str, n: int) -> bytes:
    """Message `n` of `device`: one SenML record, padded with JSON whitespace to `SIZE` bytes."""
    body = json.dumps([{"bn": f"{device}/", "bt": T0 + n, "n": "seq", "v": n}]).encode()
    assert len(body) <= SIZE, body
    return body.ljust(SIZE)


class Mqtt:
    """One paho 5.0 connection attempt through HAProxy; its events in a condition."""

    def __init__(self, port: int, client_id: str, user: str, secret: str, persistent: bool):
        self.cond = threading.Condition()
        self.connack: int | None = None
        self.present = False
        self.gone = False
        self.reason: int | None = None
        self.c = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2, client_id=client_id,
                             protocol=mqtt.MQTTv5, reconnect_on_failure=False)
        self.c.username_pw_set(user, secret)
        self.c.max_inflight_messages_set(WINDOW)
        self.c.on_connect = self._on_connect
        self.c.on_disconnect = self._on_disconnect
        props = Properties(PacketTypes.CONNECT)
        if persistent:
            props.SessionExpiryInterval = 600
        self.port, self.props, self.persistent = port, props, persistent

    def _on_connect(self, client, userdata, flags, reason_code, properties):
        with self.cond:
            self.connack = reason_code.value
            self.present = bool(flags.session_present)
            self.cond.notify_all()

    def _on_disconnect(self, client, userdata, flags, reason_code, properties):
        with self.cond:
            self.gone = True
            self.reason = reason_code.value if reason_code is not None else None
            self.cond.notify_all()

    def open(self) -> bool:
        """Connects; True once CONNACK 0 came within the timeout."""
        try:
            self.c.connect("127.0.0.1", self.port, keepalive=10, clean_start=not self.persistent,
                           properties=self.props)
        except OSError:
            return False
        self.c.loop_start()
        with self.cond:
            self.cond.wait_for(lambda: self.connack is not None or self.gone, CONNECT_TIMEOUT_S)
            ok = self.connack == 0 and not self.gone
        if not ok:
            self.close()
        return ok

    def close(self):
        self.c.loop_stop()
        try:
            self.c.disconnect()
        except Exception:  # noqa: BLE001  (already gone)
            pass
        sock = self.c.socket()
        if sock is not None:
            sock.close()


class Client:
    """A client that keeps a connection through HAProxy: when it is lost (or the node says 0x9C), it
    connects again and records how long that took and why it was lost."""

    def __init__(self, port: int, client_id: str, user: str, secret: str, persistent: bool, deadline: float):
        self.port, self.client_id, self.user, self.secret = port, client_id, user, secret
        self.persistent, self.deadline = persistent, deadline
        self.conn: Mqtt | None = None
        self.reconnects: list[tuple[float, int | None]] = []  # (seconds, the reason it was lost)
        self.not_present = 0  # reconnections of a persistent session that found no session

    def attach(self, conn: Mqtt):
        """Hook for subclasses: set callbacks on a new connection before it opens."""

    def connect(self, lost_at: float | None = None, reason: int | None = None):
        while time.monotonic() < self.deadline:
            conn = Mqtt(self.port, self.client_id, self.user, self.secret, self.persistent)
            self.attach(conn)
            if conn.open():
                self.conn = conn
                if lost_at is not None:
                    self.reconnects.append((time.monotonic() - lost_at, reason))
                    if self.persistent and not conn.present:
                        self.not_present += 1
                return
            time.sleep(RECONNECT_PAUSE_S)
        raise AssertionError(f"{self.client_id}: no connection through HAProxy before the deadline")

    def ensure(self) -> bool:
        """Reconnects if the connection was lost; True when it was."""
        conn = self.conn
        if conn is not None and not conn.gone:
            return False
        lost_at, reason = time.monotonic(), conn.reason if conn else None
        if conn is not None:
            conn.close()
        self.connect(lost_at, reason)
        return True


class Device(Client):
    """Publishes numbers 0..MESSAGES-1 at RATE, at most WINDOW unacknowledged; on a lost connection it
    connects again and publishes every unacknowledged number again."""

    def __init__(self, port: int, device: str, token: str, deadline: float):
        super().__init__(port, f"{device}-pub", device, token, persistent=False, deadline=deadline)
        self.device = device
        self.topic = f"tributary/v1/{device}/senml"
        self.lock = threading.Condition()
        self.acked: set[int] = set()
        self.pending: dict[int, int] = {}  # mid -> number, on the current connection
        self.early: dict[int, bool] = {}  # mid -> success, acknowledged before publish() returned
        self.attempts = 0

    def attach(self, conn: Mqtt):
        conn.c.on_publish = self._on_publish
        with self.lock:
            self.pending = {}
            self.early = {}

    def _on_publish(self, client, userdata, mid, reason_code, properties):
        # Runs on paho's thread while paho holds its own lock: take only ours, never call paho.
        ok = reason_code is None or reason_code.value < 0x80
        with self.lock:
            n = self.pending.pop(mid, None)
            if n is None:
                self.early[mid] = ok  # acknowledged before publish() returned its mid
            elif ok:
                self.acked.add(n)
            self.lock.notify_all()

    def _send(self, n: int):
        with self.lock:
            while len(self.pending) >= WINDOW and not self.conn.gone:
                self.lock.wait(0.05)
        # Outside our lock: paho's thread takes it in `_on_publish` while holding paho's.
        info = self.conn.c.publish(self.topic, senml(self.device, n), qos=1)
        self.attempts += 1
        if info.rc != mqtt.MQTT_ERR_SUCCESS:
            return
        with self.lock:
            if info.mid in self.early:
                if self.early.pop(info.mid):
                    self.acked.add(n)
            else:
                self.pending[info.mid] = n

    def run(self):
        self.connect()
        t0 = time.monotonic()
        for n in range(MESSAGES):
            pause = t0 + n / RATE - time.monotonic()
            if pause > 0:
                time.sleep(pause)
            if self.ensure():
                self.resend(n)
            self._send(n)
        # Until every number is acknowledged (connections may still be lost).
        while time.monotonic() < self.deadline:
            with self.lock:
                self.lock.wait_for(lambda: len(self.acked) == MESSAGES or self.conn.gone, 1.0)
                if len(self.acked) == MESSAGES:
                    break
            if self.ensure():
                self.resend(MESSAGES)
        self.conn.close()

    def resend(self, upto: int):
        for n in range(upto):
            if n not in self.acked:
                self._send(n)


class Subscriber(Client):
    """An owner's persistent session following one device; keeps every number it is sent."""

    def __init__(self, port: int, owner: str, password: str, device: str, deadline: float):
        super().__init__(port, f"{device}-sub", owner, password, persistent=True, deadline=deadline)
        self.topic = f"tributary/v1/{device}/senml"
        self.lock = threading.Lock()
        self.numbers: list[int] = []

    def attach(self, conn: Mqtt):
        conn.c.on_message = self._on_message

    def _on_message(self, client, userdata, msg):
        n = json.loads(msg.payload)[0]["v"]
        with self.lock:
            self.numbers.append(int(n))

    def start(self):
        self.connect()
        info = self.conn.c.subscribe(self.topic, qos=1)
        assert info[0] == mqtt.MQTT_ERR_SUCCESS

    def received(self) -> list[int]:
        with self.lock:
            return list(self.numbers)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else 0.0


@pytest.mark.timeout(600)
def test_ten_devices_through_haproxy_while_nodes_join_leave_and_die(tmp_path, kafka_cluster, postgres_url,
                                                                    figures):
    topic = unique_topic("acceptance")
    haproxy = Haproxy()
    nodes: dict[str, Broker] = {}

    def node(name: str) -> Broker:
        n = Broker(tmp_path / name, None)
        n.config = {
            "kafka": {"url": f"kafka://{kafka_cluster.bootstrap}", "default_topic": topic,
                      "partitions": PARTITIONS},
            "store": {"url": postgres_url},
            "archive": {"max_age_secs": 0.5},
            "mqtt": {"proxy_protocol": True},
            "cluster": {"haproxy_api": str(haproxy.socket), "advertise": f"127.0.0.1:{n.port}",
                        "drain_secs": DRAIN_SECS},
        }
        nodes[name] = n
        return n

    def server_of(n: Broker) -> str:
        return "tributary-" + (n.data_dir / "node_id").read_text().strip()

    def up(n: Broker) -> bool:
        return haproxy.servers().get(server_of(n), {}).get("status") == "UP"

    try:
        n1, n2, n3 = node("n1"), node("n2"), node("n3")
        # One set of accounts on every node: made in n1's data dir, the file copied to the others.
        owners = {f"acc{o}": add_owner(n1, f"acc{o}") for o in "xy"}
        devices = {}
        for owner in owners:
            for i in range(DEVICES_PER_OWNER):
                name = f"{owner}d{i}"
                devices[name] = (owner, add_device(n1, owner, name))
        for other in (n2, n3):
            shutil.copy(n1.data_dir / "accounts.json", other.data_dir / "accounts.json")
        n1.start()
        n2.start()
        wait_for(lambda: up(n1) and up(n2), timeout=30, interval=0.2, what="n1 and n2 UP in HAProxy")

        deadline = time.monotonic() + RUN_DEADLINE_S
        failures: list[str] = []

        def guarded(work):
            def run():
                try:
                    work()
                except Exception as e:  # noqa: BLE001  (reported by the test)
                    failures.append(repr(e))
            return run

        subscribers = [Subscriber(haproxy.port, owner, owners[owner], device, deadline)
                       for device, (owner, _) in devices.items()]
        for s in subscribers:
            s.start()
        # Subscribers whose connection is lost connect again at once.
        keeping = threading.Event()

        def keep():
            while not keeping.is_set():
                for s in subscribers:
                    s.ensure()
                keeping.wait(0.05)

        keeper = threading.Thread(target=guarded(keep), daemon=True)
        keeper.start()
        publishers = [Device(haproxy.port, device, token, deadline) for device, (_, token) in devices.items()]
        threads = [threading.Thread(target=guarded(p.run), daemon=True) for p in publishers]

        # Connections per node over time, from HAProxy.
        timeline: list[tuple[float, dict[str, int]]] = []
        sampling = threading.Event()
        started = time.monotonic()

        def sample():
            while not sampling.is_set():
                try:
                    servers = haproxy.servers()
                except OSError:
                    servers = {}
                names = {server_of(n): k for k, n in nodes.items() if (n.data_dir / "node_id").exists()}
                timeline.append((time.monotonic() - started,
                                 {names.get(s, s): v["scur"] for s, v in servers.items()}))
                sampling.wait(1.0)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        for t in threads:
            t.start()
        total = len(publishers) * MESSAGES
        acked = lambda: sum(len(p.acked) for p in publishers)  # noqa: E731
        events = []

        wait_for(lambda: acked() >= total * 0.25, timeout=60, interval=0.1, what="25 % acknowledged")
        n3.start()
        wait_for(lambda: up(n3), timeout=60, interval=0.2, what="n3 UP in HAProxy")
        events.append(f"n3 joined at {acked()} acknowledged")

        wait_for(lambda: acked() >= total * 0.5, timeout=60, interval=0.1, what="50 % acknowledged")
        events.append(f"n1 SIGTERM at {acked()}")
        n1.stop()
        assert server_of(n1) not in haproxy.servers(), "n1 left the backend"

        wait_for(lambda: acked() >= total * 0.75, timeout=60, interval=0.1, what="75 % acknowledged")
        events.append(f"n2 SIGKILL at {acked()}")
        n2.kill()

        for t in threads:
            t.join(max(0.0, deadline - time.monotonic()))
        sampling.set()
        sampler.join(5)
        assert not failures, failures
        assert acked() == total, {p.device: len(p.acked) for p in publishers}

        # Every persistent subscriber gets every acknowledged message of its device.
        def delivered() -> bool:
            for s in subscribers:
                s.ensure()
            return all(set(range(MESSAGES)) <= set(s.received()) for s in subscribers)

        keeping.set()
        keeper.join(10)
        try:
            wait_for(delivered, timeout=60, interval=0.5, what="every acknowledged message at its subscriber")
        finally:
            got = [s.received() for s in subscribers]
            lost_sub = sum(len(set(range(MESSAGES)) - set(g)) for g in got)
            dup_sub = sum(len(g) - len(set(g)) for g in got)

        # Stored once in PostgreSQL (one record per message).
        def stored() -> int:
            return int(psql(postgres_url, "select count(distinct (device, time_ms)) from measurements "
                                          "where name like '%/seq'"))

        wait_for(lambda: stored() >= total, timeout=90, interval=0.5, what=f"{total} measurements stored")
        rows = int(psql(postgres_url, "select count(*) from measurements"))
        # Archived: the union of every node's archive (the killed node's unwritten batch is
        # archived again by whoever took its partitions).

        def archived() -> set[tuple[str, int]]:
            found = set()
            for n in nodes.values():
                root = n.data_dir / "archive"
                if any(root.rglob("*.parquet")):
                    table = ds.dataset(root, format="parquet", partitioning="hive").to_table(
                        columns=["device", "name", "value"])
                    found |= {(r["device"], int(r["value"])) for r in table.to_pylist()
                              if r["name"].endswith("/seq")}
            return found

        want = {(d, n) for d in devices for n in range(MESSAGES)}
        wait_for(lambda: want <= archived(), timeout=90, interval=1.0, what="every message archived")
        assert all(s.not_present == 0 for s in subscribers), [s.not_present for s in subscribers]

        moves = [r for c in [*publishers, *subscribers] for r in c.reconnects]
        seconds = [m[0] for m in moves]
        reasons = {}
        for _, reason in moves:
            reasons[reason] = reasons.get(reason, 0) + 1
        published = sum(p.attempts for p in publishers)
        per_node = "; ".join(f"{t:.0f}s {' '.join(f'{k}={v}' for k, v in sorted(c.items()))}"
                             for t, c in timeline[::3])
        figures(f"acceptance: {len(publishers)} devices x {MESSAGES} x {SIZE} B QoS 1 through HAProxy; "
                f"{'; '.join(events)}; published={published} acknowledged={acked()} stored={stored()} "
                f"(rows {rows}) archived={len(archived() & want)} delivered={sum(len(set(g)) for g in got)} "
                f"to {len(subscribers)} persistent subscribers, lost={lost_sub} duplicated={dup_sub}")
        figures(f"acceptance: {len(moves)} reconnections (reasons {reasons}): disconnect to CONNACK on another node "
                f"p50={percentile(seconds, 0.5) * 1000:.0f} ms p99={percentile(seconds, 0.99) * 1000:.0f} ms "
                f"max={max(seconds, default=0) * 1000:.0f} ms")
        figures(f"acceptance: connections per node (HAProxy scur, every 3 s): {per_node}")
        assert lost_sub == 0
    finally:
        for n in nodes.values():
            n.close()
        haproxy.close()
