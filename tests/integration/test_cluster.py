"""Nodes join and leave a real HAProxy 2.6 backend by themselves, through its runtime API
(docs/cluster.md; the HAProxy configuration is read from that file).

| case | expected |
|---|---|
| two nodes with `[cluster]` start | both add themselves: `show stat` lists them UP; clients through HAProxy reach both |
| SIGTERM one node while paho 5.0 publishers are connected through HAProxy | its clients get DISCONNECT 0x9C, spread over `drain_secs`, reconnect through HAProxy to the other node; the server is gone from `show stat`; every PUBACKed message is in one of the two logs |
| SIGKILL one node | HAProxy marks it DOWN within 3 s, new connections go to the other; restarted, it replaces its stale entry and is UP again |

HAProxy runs unprivileged (as `nobody` when the tests run as root), as in production.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from clients import V5, Client
from conftest import REPO, Broker, free_port, wait_for

pytestmark = pytest.mark.tributary_only("joining HAProxy through its runtime API is tributary's")

USE_ANOTHER_SERVER = 0x9C
BACKEND = "mqtt_nodes"
DRAIN_SECS = 4


def doc_haproxy_config(port: int, socket_path: Path) -> str:
    """The first configuration block under "## HAProxy configuration" of docs/cluster.md, on a test
    port and socket."""
    doc = (REPO / "docs" / "cluster.md").read_text()
    section = doc.split("## HAProxy configuration", 1)[1]
    block = section.split("```text\n", 1)[1].split("```", 1)[0]
    assert "stats socket /run/haproxy/admin.sock" in block and "bind :1883" in block, block
    return (block.replace("/run/haproxy/admin.sock", str(socket_path))
            .replace("bind :1883", f"bind 127.0.0.1:{port}"))


class Haproxy:
    """HAProxy with the documented configuration, and its runtime API."""

    def __init__(self):
        # Not under pytest's tmp dir: its parents are private to root, and HAProxy runs as nobody.
        self.dir = Path(tempfile.mkdtemp(prefix="tributary-haproxy-"))
        self.dir.chmod(0o755)
        run = self.dir / "run"
        run.mkdir()
        self.socket = run / "admin.sock"
        self.port = free_port()
        self.cfg = self.dir / "haproxy.cfg"
        self.cfg.write_text(doc_haproxy_config(self.port, self.socket))
        self.cfg.chmod(0o644)
        self.log_path = self.dir / "haproxy.log"
        binary = shutil.which("haproxy") or "/usr/sbin/haproxy"
        subprocess.run([binary, "-c", "-f", str(self.cfg)], check=True, capture_output=True, timeout=10)
        cmd = [binary, "-db", "-f", str(self.cfg)]
        if os.geteuid() == 0:
            shutil.chown(run, "nobody", "nogroup")
            cmd = ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", *cmd]
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(cmd, stdout=self._log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                     start_new_session=True)
        wait_for(self._accepting, timeout=10, what="haproxy to accept on its frontend and runtime API")

    def _accepting(self) -> bool:
        assert self.proc.poll() is None, self.log_path.read_text()
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                pass
            self.command("show info")
            return True
        except OSError:
            return False

    def command(self, line: str) -> str:
        with socket.socket(socket.AF_UNIX) as s:
            s.settimeout(5)
            s.connect(str(self.socket))
            s.sendall(line.encode() + b"\n")
            chunks = []
            while chunk := s.recv(65536):
                chunks.append(chunk)
        return b"".join(chunks).decode()

    def servers(self) -> dict[str, dict]:
        """The backend's servers from `show stat`: name -> {status, scur, addr}."""
        lines = self.command("show stat").splitlines()
        header = lines[0].lstrip("# ").split(",")
        rows = [dict(zip(header, line.split(","))) for line in lines[1:] if line]
        return {r["svname"]: {"status": r["status"], "scur": int(r["scur"] or 0), "addr": r["addr"]}
                for r in rows if r["pxname"] == BACKEND and r["svname"] not in ("BACKEND", "FRONTEND")}

    def close(self):
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self._log.close()
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture
def haproxy():
    h = Haproxy()
    try:
        yield h
    finally:
        h.close()


class Node(Broker):
    """A node with `[cluster]` pointing at `haproxy`, PROXY v2 on its MQTT listener, and a WebSocket
    listener without PROXY for the tests' direct subscribers."""

    def __init__(self, workdir: Path, haproxy: Haproxy):
        workdir.mkdir()
        self.ws_port = free_port()
        super().__init__(workdir, extra_args=["--mqtt-ws", f"127.0.0.1:{self.ws_port}"])
        self.config = {
            "mqtt": {"proxy_protocol": True},
            "cluster": {"haproxy_api": str(haproxy.socket), "advertise": f"127.0.0.1:{self.port}",
                        "drain_secs": DRAIN_SECS},
        }

    @property
    def server_name(self) -> str:
        return "tributary-" + (self.data_dir / "node_id").read_text().strip()


@pytest.fixture
def nodes(tmp_path, haproxy):
    started = [Node(tmp_path / name, haproxy) for name in ("a", "b")]
    try:
        for node in started:
            node.start()
        wait_for(lambda: all(haproxy.servers().get(n.server_name, {}).get("status") == "UP" for n in started),
                 timeout=15, what=f"both nodes UP in haproxy: {haproxy.servers()}")
        yield started
    finally:
        for node in started:
            node.close()


def through(haproxy: Haproxy) -> SimpleNamespace:
    """What clients.Client needs to connect through HAProxy."""
    return SimpleNamespace(host="127.0.0.1", port=haproxy.port, kind="tributary")


def test_nodes_join_by_themselves_and_serve_through_haproxy(haproxy, nodes):
    servers = haproxy.servers()
    assert {n.server_name for n in nodes} == set(servers), servers
    for node in nodes:
        assert servers[node.server_name]["addr"] == f"127.0.0.1:{node.port}"
        assert "joined the haproxy backend" in node.log_tail()
    show = haproxy.command(f"show servers state {BACKEND}")
    assert all(n.server_name in show for n in nodes), show

    clients = [Client(through(haproxy), V5) for _ in range(4)]
    try:
        for c in clients:
            c.connect()
            c.publish("cluster/t", b"x", qos=1)  # PUBACK 0, or the helper fails
        # leastconn spreads them: each node serves two, as its log and HAProxy's count say.
        servers = haproxy.servers()
        assert all(servers[n.server_name]["scur"] == 2 for n in nodes), servers
        for node in nodes:
            served = [c.client_id for c in clients if f"anon:{c.client_id}" in node.log_tail()]
            assert len(served) == 2, (node, served)
    finally:
        for c in clients:
            c.close()


class Publisher:
    """A paho 5.0 client through HAProxy that publishes numbered QoS 1 messages, reconnects by itself
    (paho's loop) and records every PUBACK, DISCONNECT reason and CONNACK."""

    def __init__(self, haproxy: Haproxy, index: int, topic: str):
        self.index = index
        self.topic = topic
        self.lock = threading.Lock()
        self.acked: set[str] = set()
        self.pending: dict[int, str] = {}
        self.early: dict[int, bool] = {}
        self.disconnects: list[tuple[float, int | None]] = []
        self.connacks = 0
        self.c = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2, client_id=f"pub-{index}",
                             protocol=mqtt.MQTTv5)
        self.c.reconnect_delay_set(min_delay=0.1, max_delay=0.5)
        self.c.on_connect = self._on_connect
        self.c.on_disconnect = self._on_disconnect
        self.c.on_publish = self._on_publish
        self.c.connect("127.0.0.1", haproxy.port, keepalive=30)
        self.c.loop_start()
        wait_for(lambda: self.connacks, timeout=10, what=f"pub-{index} CONNACK")
        self.sent = 0
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _on_connect(self, client, userdata, flags, reason_code, properties):
        with self.lock:
            self.connacks += 1

    def _on_disconnect(self, client, userdata, flags, reason_code, properties):
        with self.lock:
            self.disconnects.append((time.monotonic(), reason_code.value if reason_code is not None else None))

    def _on_publish(self, client, userdata, mid, reason_code, properties):
        # Called under paho's own lock: never call into paho while holding self.lock.
        ok = reason_code is None or reason_code.value < 0x80
        with self.lock:
            payload = self.pending.pop(mid, None)
            if payload is None:
                self.early[mid] = ok  # answered before _run recorded it
            elif ok:
                self.acked.add(payload)

    def _run(self):
        while not self._stop.is_set():
            payload = f"p{self.index}-{self.sent}"
            info = self.c.publish(self.topic, payload, qos=1)
            # Queued by paho whether connected or not (MQTT_ERR_NO_CONN); sent again once connected.
            assert info.rc in (mqtt.MQTT_ERR_SUCCESS, mqtt.MQTT_ERR_NO_CONN), info.rc
            with self.lock:
                if info.mid in self.early:
                    if self.early.pop(info.mid):
                        self.acked.add(payload)
                else:
                    self.pending[info.mid] = payload
            self.sent += 1
            time.sleep(0.01)

    def start(self):
        self.thread.start()

    def stop(self):
        self._stop.set()
        self.thread.join(timeout=5)

    def wait_all_acked(self, timeout: float):
        wait_for(lambda: not self.pending, timeout=timeout,
                 what=f"pub-{self.index}: PUBACK for {len(self.pending)} messages")

    def close(self):
        self.c.disconnect()
        self.c.loop_stop()


def subscriber(node: Node, client_id: str, topic: str, clean: bool) -> Client:
    """A persistent session directly on `node` (its WebSocket listener, no PROXY header)."""
    c = Client(node, V5, client_id=client_id, clean=clean, session_expiry=3600, port=node.ws_port,
               websocket=True)
    c.connect()
    if clean:
        c.subscribe([(topic, 1)])
    return c


def payloads(c: Client) -> set[str]:
    with c.s.cond:
        return {m.payload.decode() for m in c.s.messages}


def test_sigterm_drains_the_clients_to_the_other_node(haproxy, nodes):
    leaving, staying = nodes
    topic = "drain/t"
    sub_leaving = subscriber(leaving, "sub-leaving", topic, clean=True)
    sub_staying = subscriber(staying, "sub-staying", topic, clean=True)
    publishers = [Publisher(haproxy, i, topic) for i in range(6)]
    try:
        servers = haproxy.servers()
        assert servers[leaving.server_name]["scur"] == 3, servers
        for p in publishers:
            p.start()
        time.sleep(1.0)  # the condition is the clock: publishing at full speed for a while

        stopped = []
        stopping = threading.Thread(target=lambda: stopped.append(leaving.stop()))
        stopping.start()
        state = lambda: haproxy.servers().get(leaving.server_name, {}).get("status", "gone")  # noqa: E731
        wait_for(lambda: state().startswith(("DRAIN", "MAINT", "gone")), timeout=5,
                 what="the leaving node set to drain in haproxy")
        drain_state = state()
        stopping.join(timeout=DRAIN_SECS + 25)
        exit_s = leaving.last_stop_s
        assert stopped == [0], leaving.log_tail()
        assert drain_state == "DRAIN", drain_state
        assert leaving.server_name not in haproxy.servers(), haproxy.servers()
        time.sleep(1.0)  # publishing on, all through the staying node
        for p in publishers:
            p.stop()
        for p in publishers:
            p.wait_all_acked(timeout=15)

        moved = [p for p in publishers if p.disconnects]
        reasons = [r for p in moved for _, r in p.disconnects]
        assert len(moved) == 3 and reasons == [USE_ANOTHER_SERVER] * 3, [(p.index, p.disconnects) for p in publishers]
        assert all(p.connacks == 2 for p in moved), [(p.index, p.connacks) for p in moved]
        servers = haproxy.servers()
        assert servers[staying.server_name]["scur"] == 6, servers
        # Spread over the drain, not all at once: 4 connections (3 publishers, 1 subscriber), a
        # second apart with drain_secs = 4.
        times = sorted(t for p in moved for t, _ in p.disconnects)
        spread = times[-1] - times[0]
        assert spread >= 1.5, times
        assert sub_leaving.wait_disconnected(timeout=1) == USE_ANOTHER_SERVER

        acked = set().union(*(p.acked for p in publishers))
        sent = sum(p.sent for p in publishers)
        # The leaving node's log: restarted alone (no cluster), its subscriber's session resumes.
        leaving.config = {"mqtt": {"proxy_protocol": True}}
        leaving.start()
        sub_leaving.close()
        before_drain = payloads(sub_leaving)
        sub_leaving = subscriber(leaving, "sub-leaving", topic, clean=False)
        on_leaving = lambda: before_drain | payloads(sub_leaving)  # noqa: E731
        missing = lambda: acked - on_leaving() - payloads(sub_staying)  # noqa: E731
        try:
            wait_for(lambda: not missing(), timeout=15, what="every PUBACKed message in a log")
        except AssertionError:
            gone = sorted(missing(), key=lambda p: tuple(int(x) for x in p[1:].split("-")))
            raise AssertionError(f"{len(gone)} PUBACKed messages in neither log, e.g. {gone[:5]} … {gone[-5:]}; "
                                 f"{len(on_leaving())} on the leaving node, "
                                 f"{len(payloads(sub_staying))} on the staying one, {len(acked)} PUBACKed")
        print(f"\nSIGTERM to exit {exit_s:.2f}s (drain_secs={DRAIN_SECS}); DISCONNECT 0x9C to {len(moved)} "
              f"publishers + 1 subscriber, spread over {spread:.2f}s; {len(acked)} PUBACKed of {sent} sent, "
              f"all found ({len(on_leaving())} on the leaving node, {len(payloads(sub_staying))} on "
              f"the staying one)")
    finally:
        for p in publishers:
            p.stop()
            p.close()
        sub_leaving.close()
        sub_staying.close()


def test_sigkill_is_noticed_by_the_health_check_and_a_restart_replaces_the_entry(haproxy, nodes):
    killed, survivor = nodes
    name = killed.server_name
    killed.kill()
    t_kill = time.monotonic()
    wait_for(lambda: haproxy.servers()[name]["status"].startswith("DOWN"), timeout=5,
             what=f"haproxy to mark {name} DOWN")
    down_s = time.monotonic() - t_kill
    assert down_s < 3.0, down_s

    clients = [Client(through(haproxy), V5) for _ in range(3)]
    try:
        for c in clients:
            c.connect()
        servers = haproxy.servers()
        assert servers[survivor.server_name]["scur"] == 3 and servers[name]["scur"] == 0, servers
    finally:
        for c in clients:
            c.close()

    killed.start()
    t_restart = time.monotonic()
    wait_for(lambda: haproxy.servers().get(name, {}).get("status") == "UP", timeout=15,
             what=f"{name} UP again after the restart")
    up_s = time.monotonic() - t_restart
    assert "replacing the entry an earlier run of this node left" in killed.log_tail()
    assert list(haproxy.servers()).count(name) == 1
    print(f"\nSIGKILL to DOWN {down_s:.2f}s; restart to UP {up_s:.2f}s")


def test_a_second_signal_cuts_the_drain_short(haproxy, nodes):
    leaving, _ = nodes
    clients = [Client(through(haproxy), V5) for _ in range(6)]
    try:
        for c in clients:
            c.connect()
        t0 = time.monotonic()
        leaving.proc.send_signal(15)
        wait_for(lambda: "draining: disconnecting clients gradually" in leaving.log_tail(), timeout=5,
                 what="the drain to start")
        leaving.proc.send_signal(2)
        rc = leaving.proc.wait(timeout=DRAIN_SECS + 10)
        exit_s = time.monotonic() - t0
        assert rc == 0 and "draining: telling the remaining clients at once" in leaving.log_tail()
        assert exit_s < DRAIN_SECS - 1, exit_s
        # Its clients were all told to use another server (the rest at once), before HAProxy forgot it.
        reasons = [c.wait_disconnected(timeout=5) for c in clients if f"anon:{c.client_id}" in leaving.log_tail()]
        assert reasons == [USE_ANOTHER_SERVER] * 3, reasons
        assert leaving.server_name not in haproxy.servers(), haproxy.servers()
        print(f"\nSIGTERM then SIGINT: exit after {exit_s:.2f}s (drain_secs={DRAIN_SECS}); DISCONNECT reasons "
              f"{[hex(r) for r in reasons]}")
    finally:
        for c in clients:
            c.close()
