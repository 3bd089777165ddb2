"""PROXY protocol v2 behind a real HAProxy (Debian haproxy, `send-proxy-v2`).

| case | expected |
|---|---|
| a client through HAProxy to a listener with `mqtt.proxy_protocol` | connected; the broker logs the client's own address, not HAProxy's |
| mosquitto_pub and mosquitto_sub, both through HAProxy | the message arrives |
| a PROXY header sent to a listener without `proxy_protocol` | closed without CONNACK, one log line |
| no PROXY header on a listener with `proxy_protocol` | closed without CONNACK, one log line |
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time

import pytest

from conftest import free_port, wait_for
from mqttraw import CONNACK, V5, RawClient, connect

pytestmark = pytest.mark.tributary_only("PROXY protocol support is a tributary listener option")

PROXIED = {"mqtt": {"proxy_protocol": True}}


@pytest.fixture
def haproxy(broker, tmp_path):
    binary = shutil.which("haproxy") or "/usr/sbin/haproxy"
    port = free_port()
    cfg = tmp_path / "haproxy.cfg"
    cfg.write_text(f"""global
    log stderr format raw local0 warning
defaults
    mode tcp
    timeout connect 2s
    timeout client  1m
    timeout server  1m
frontend mqtt_in
    bind 127.0.0.1:{port}
    default_backend mqtt_nodes
backend mqtt_nodes
    server n1 127.0.0.1:{broker.port} send-proxy-v2
""")
    log = open(tmp_path / "haproxy.log", "wb")
    proc = subprocess.Popen([binary, "-db", "-f", str(cfg)], stdout=log, stderr=subprocess.STDOUT,
                            stdin=subprocess.DEVNULL, start_new_session=True)

    def accepting():
        assert proc.poll() is None, (tmp_path / "haproxy.log").read_text()
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return True
        except OSError:
            return False

    try:
        wait_for(accepting, timeout=10, what="haproxy to accept")
        yield port
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        log.close()


@pytest.mark.broker_config(PROXIED)
def test_the_broker_sees_the_client_address_through_haproxy(broker, haproxy):
    with RawClient("127.0.0.1", haproxy) as c:
        client_port = c.sock.getsockname()[1]
        c.connect(V5, "through-haproxy")
        assert c.ping()
    expected = f"client_id=anon:through-haproxy peer=127.0.0.1:{client_port}"
    wait_for(lambda: expected in broker.log_tail(), timeout=5, what=f"log line with {expected}")


@pytest.mark.broker_config(PROXIED)
def test_mosquitto_clients_through_haproxy(broker, haproxy):
    port = str(haproxy)
    sub = subprocess.Popen(["stdbuf", "-oL", "mosquitto_sub", "-h", "127.0.0.1", "-p", port, "-t", "proxy/t", "-q", "1",
                            "-C", "1", "-W", "15", "-d"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           text=True)
    deadline = time.monotonic() + 10
    lines = []
    while time.monotonic() < deadline:
        line = sub.stdout.readline()
        lines.append(line)
        if "SUBACK" in line:
            break
    assert any("SUBACK" in l for l in lines), lines
    subprocess.run(["mosquitto_pub", "-h", "127.0.0.1", "-p", port, "-t", "proxy/t", "-m", "hello", "-q", "1"],
                   check=True, timeout=15)
    out, _ = sub.communicate(timeout=20)
    assert "hello" in out


def test_a_proxy_header_is_refused_without_proxy_protocol(broker):
    header = bytes.fromhex("0d0a0d0a000d0a515549540a") + bytes([0x21, 0x11, 0, 12]) + bytes(12)
    with RawClient(broker.host, broker.port) as c:
        c.send(header + connect(V5, "sneaky"))
        packets, closed = c.read_until_closed(timeout=5)
    assert closed and not packets, packets
    wait_for(lambda: "PROXY header on a listener without proxy_protocol" in broker.log_tail(), timeout=5,
             what="the refusal's log line")


@pytest.mark.broker_config(PROXIED)
def test_a_connection_without_proxy_header_is_refused(broker):
    with RawClient(broker.host, broker.port) as c:
        c.send(connect(V5, "direct"))
        packets, closed = c.read_until_closed(timeout=5)
    assert closed and all(p.type != CONNACK for p in packets), packets
    wait_for(lambda: "listener expects a PROXY v2 header" in broker.log_tail(), timeout=5,
             what="the refusal's log line")
