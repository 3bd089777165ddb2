"""MQTT over WebSocket and secure WebSocket with paho-mqtt (transport="websockets") and MQTT.js in node.

| case | expected |
|---|---|
| paho 3.1.1 / 5.0 over ws:// and wss:// on /mqtt | round trip, QoS 1, a 200 KB message intact |
| MQTT.js (npm `mqtt`) over ws:// and wss:// | 100 of 100 QoS 1 messages acknowledged and received |
| device token over wss:// | authenticated like any listener; the owner receives the device's data |
| a path other than /mqtt | HTTP 404, one log line |
| no `mqtt` subprotocol offered | HTTP 400, one log line |
| a text frame instead of binary (5.0 §6) | connection closed |
"""

from __future__ import annotations

import base64
import json
import os
import socket
import subprocess

import pytest

from accounts_cli import add_device, add_owner, login_when_known
from clients import V311, V5, Client, unique
from conftest import REPO, wait_for

pytestmark = pytest.mark.tributary_only("WebSocket listeners are tributary's own setup")

JS_DIR = REPO / "tests" / "integration" / "js"


def endpoints(broker):
    """(name, port, tls options) of the two WebSocket listeners."""
    return [("ws", broker.ws_port, None), ("wss", broker.wss_port, {"ca_certs": str(broker.pki.ca_cert)})]


@pytest.mark.parametrize("version", [V311, V5], ids=["v311", "v5"])
@pytest.mark.parametrize("kind", ["ws", "wss"])
def test_paho_round_trip(secure_broker, kind, version):
    _, port, tls = next(e for e in endpoints(secure_broker) if e[0] == kind)
    topic = unique(f"ws/{kind}")
    sub = Client(secure_broker, version, port=port, websocket=True, tls=tls)
    pub = Client(secure_broker, version, port=port, websocket=True, tls=tls)
    sub.connect()
    pub.connect()
    try:
        assert sub.subscribe([(topic, 1)]) == [1]
        big = os.urandom(200_000)
        for i in range(50):
            pub.publish(topic, f"m{i}".encode(), qos=1)
        pub.publish(topic, big, qos=1)
        got = sub.wait_messages(51)
        assert [m.payload for m in got[:50]] == [f"m{i}".encode() for i in range(50)]
        assert got[50].payload == big, "a message larger than a WebSocket frame buffer arrives whole"
    finally:
        sub.close()
        pub.close()


def run_mqttjs(url: str, *args: str) -> dict:
    out = subprocess.run(["node", str(JS_DIR / "roundtrip.js"), url, *args], capture_output=True, text=True,
                         timeout=30, cwd=JS_DIR)
    assert out.stdout.strip(), f"MQTT.js printed nothing: {out.stderr}"
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("protocol", ["4", "5"], ids=["v311", "v5"])
@pytest.mark.parametrize("kind", ["ws", "wss"])
def test_mqttjs_round_trip(secure_broker, kind, protocol, figures):
    port = secure_broker.ws_port if kind == "ws" else secure_broker.wss_port
    # The server certificate names localhost (and 127.0.0.1), which node checks.
    url = f"{kind}://localhost:{port}/mqtt"
    args = ["--count", "100", "--protocol", protocol]
    if kind == "wss":
        args += ["--ca", str(secure_broker.pki.ca_cert)]
    report = run_mqttjs(url, *args)
    assert report.get("error") is None, report
    assert report["subscribed"] == [1]
    assert (report["published"], report["acknowledged"], report["received"]) == (100, 100, 100), report
    figures(f"MQTT.js {kind} v{protocol}: published=100 acknowledged={report['acknowledged']} "
            f"received={report['received']}")


def test_device_token_over_secure_websocket(secure_broker):
    suffix = unique("").replace("-", "")[-6:]
    owner, device = f"wsann{suffix}", f"wsdev{suffix}"
    owner_secret = add_owner(secure_broker, owner)
    token = add_device(secure_broker, owner, device)
    login_when_known(secure_broker, device, token).close()
    topic = f"tributary/v1/{device}/senml"
    report_app = Client(secure_broker, V5, port=secure_broker.wss_port, websocket=True,
                        tls={"ca_certs": str(secure_broker.pki.ca_cert)})
    report_app.c.username_pw_set(owner, owner_secret)
    report_app.connect()
    try:
        assert report_app.subscribe([(topic, 1)]) == [1]
        report = run_mqttjs(f"wss://localhost:{secure_broker.wss_port}/mqtt", "--ca", str(secure_broker.pki.ca_cert),
                            "--username", device, "--password", token, "--topic", topic, "--count", "1",
                            "--publish-only", "1")
        assert report.get("error") is None and report["acknowledged"] == 1, report
        assert report_app.wait_messages(1)[0].payload == b"message-0"
    finally:
        report_app.close()


def http_upgrade(port: int, path: str, protocol: str | None) -> tuple[socket.socket, bytes]:
    """Sends a WebSocket upgrade request and returns the socket and the response head."""
    key = base64.b64encode(os.urandom(16)).decode()
    lines = [f"GET {path} HTTP/1.1", f"Host: 127.0.0.1:{port}", "Upgrade: websocket", "Connection: Upgrade",
             f"Sec-WebSocket-Key: {key}", "Sec-WebSocket-Version: 13"]
    if protocol:
        lines.append(f"Sec-WebSocket-Protocol: {protocol}")
    sock = socket.create_connection(("127.0.0.1", port), timeout=5)
    sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = sock.recv(4096)
        if not chunk:
            break
        head += chunk
    return sock, head


def log_count(broker, needle: str) -> int:
    return sum(needle in line for line in broker.log_tail(100_000).splitlines())


@pytest.mark.parametrize("path,protocol,status,reason", [
    ("/", "mqtt", b"404", "is not /mqtt"),
    ("/mqtt", None, b"400", "no WebSocket subprotocol mqtt offered"),
    ("/mqtt", "chat", b"400", "no WebSocket subprotocol mqtt offered"),
], ids=["wrong-path", "no-subprotocol", "other-subprotocol"])
def test_bad_upgrades_are_refused(secure_broker, path, protocol, status, reason):
    before = log_count(secure_broker, reason)
    sock, head = http_upgrade(secure_broker.ws_port, path, protocol)
    sock.close()
    assert head.split(b" ")[1] == status, head
    wait_for(lambda: log_count(secure_broker, reason) == before + 1, 5, what=f"one log line: {reason}")


def test_text_frame_closes_the_connection(secure_broker):
    sock, head = http_upgrade(secure_broker.ws_port, "/mqtt", "mqtt")
    try:
        assert head.startswith(b"HTTP/1.1 101"), head
        assert b"sec-websocket-protocol: mqtt" in head.lower()
        payload, mask = b"hello", os.urandom(4)
        frame = bytes([0x81, 0x80 | len(payload)]) + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        sock.sendall(frame)
        data = b""
        while True:
            chunk = sock.recv(4096)
            if not chunk:
                break
            data += chunk
        # Closed: at most a WebSocket Close frame (opcode 0x8) came before the end of the stream.
        assert data == b"" or data[0] & 0x0F == 0x8, data
    finally:
        sock.close()
