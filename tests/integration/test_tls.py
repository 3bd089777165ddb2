"""MQTT over TLS with clients nobody here wrote: mosquitto_pub/sub (--cafile, --cert/--key) and paho-mqtt.

| case | expected |
|---|---|
| TLS 1.2 and TLS 1.3 handshakes | both negotiated, CONNACK 0 over each |
| owner subscribes and device publishes with tokens, mosquitto clients over TLS | message arrives |
| paho 3.1.1 and 5.0 over TLS | round trip |
| device authenticated by its client certificate (no token) | publishes its own data; the owner receives it |
| the certificate's device publishing to another device's topic | PUBACK 0x87: identity is the certificate's |
| plaintext MQTT on the TLS port | handshake refused, one log line, no secret in it |
| client certificate from an untrusted CA | handshake refused (UnknownIssuer), one log line |
| certificate naming an unknown / revoked device, or a user name other than its device | CONNACK 0x86 / 0x87 / 0x86 |
| wrong token over TLS | CONNACK 0x86 |
| `--tls-require-client-cert`: a client without a certificate | handshake refused |
| PROXY v2 header before TLS on a listener with `proxy_protocol` | the client's address from the header is logged |
"""

from __future__ import annotations

import socket
import ssl
import struct
import subprocess
import time

import pytest

from accounts_cli import add_device, add_owner, admin, login_when_known
from clients import V311, V5, Client, unique
from conftest import free_port, start_secure_broker, wait_for

pytestmark = pytest.mark.tributary_only("TLS listeners and client certificates are tributary's own setup")

# MQTT 3.1.1 CONNECT, clean session, keep-alive 60, client id "tls-raw".
RAW_CONNECT = bytes([0x10, 0x13, 0x00, 0x04]) + b"MQTT" + bytes([0x04, 0x02, 0x00, 0x3C, 0x00, 0x07]) + b"tls-raw"


def log_lines_after(broker, mark: int, needle: str) -> list[str]:
    return [line for line in broker.log_tail(100_000).splitlines()[mark:] if needle in line]


def log_mark(broker) -> int:
    return len(broker.log_tail(100_000).splitlines())


def mosquitto(tool: str, broker, *args: str, timeout: float = 10) -> subprocess.CompletedProcess:
    cmd = [tool, "-h", "127.0.0.1", "-p", str(broker.tls_port), *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def people(secure_broker):
    """One owner with two devices; the device names double as client-certificate common names."""
    suffix = unique("").replace("-", "")[-6:]
    owner, dev, other = f"tlsann{suffix}", f"tlsdev{suffix}", f"tlsother{suffix}"
    secrets = {owner: add_owner(secure_broker, owner)}
    secrets[dev] = add_device(secure_broker, owner, dev)
    secrets[other] = add_device(secure_broker, owner, other)
    login_when_known(secure_broker, dev, secrets[dev]).close()
    return owner, dev, other, secrets


@pytest.mark.parametrize("version", [ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3], ids=["tls1.2", "tls1.3"])
def test_tls_versions_negotiate_and_carry_mqtt(secure_broker, version):
    context = ssl.create_default_context(cafile=str(secure_broker.pki.ca_cert))
    context.minimum_version = context.maximum_version = version
    with socket.create_connection(("127.0.0.1", secure_broker.tls_port), timeout=5) as raw:
        with context.wrap_socket(raw, server_hostname="localhost") as tls:
            assert tls.version() == {ssl.TLSVersion.TLSv1_2: "TLSv1.2", ssl.TLSVersion.TLSv1_3: "TLSv1.3"}[version]
            tls.sendall(RAW_CONNECT)
            assert tls.recv(4) == bytes([0x20, 0x02, 0x00, 0x00]), "CONNACK accepted"


def test_mosquitto_clients_with_tokens_over_tls(secure_broker, people):
    owner, dev, _, secrets = people
    ca = str(secure_broker.pki.ca_cert)
    topic = f"tributary/v1/{dev}/senml"
    sub = subprocess.Popen(["mosquitto_sub", "-h", "127.0.0.1", "-p", str(secure_broker.tls_port), "--cafile", ca,
                            "-u", owner, "-P", secrets[owner], "-t", topic, "-q", "1", "-C", "3", "-W", "15"],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        time.sleep(0.7)
        for i in range(3):
            done = mosquitto("mosquitto_pub", secure_broker, "--cafile", ca, "-u", dev, "-P", secrets[dev],
                             "-t", topic, "-q", "1", "-m", f"tls-{i}")
            assert done.returncode == 0, done.stderr
        out, err = sub.communicate(timeout=20)
    finally:
        sub.kill()
    assert out.split() == ["tls-0", "tls-1", "tls-2"], err


@pytest.mark.parametrize("version", [V311, V5], ids=["v311", "v5"])
def test_paho_round_trip_over_tls(secure_broker, people, version):
    owner, dev, _, secrets = people
    tls = {"ca_certs": str(secure_broker.pki.ca_cert)}
    app = Client(secure_broker, version, port=secure_broker.tls_port, tls=tls)
    app.c.username_pw_set(owner, secrets[owner])
    app.connect()
    device = Client(secure_broker, version, port=secure_broker.tls_port, tls=tls)
    device.c.username_pw_set(dev, secrets[dev])
    device.connect()
    try:
        topic = f"tributary/v1/{dev}/hr"
        assert app.subscribe([(topic, 1)]) == [1]
        for i in range(20):
            device.publish(topic, f"{i}".encode(), qos=1)
        app.wait(lambda s: len(s.messages) >= 20, what="20 messages over TLS")
        assert [m.payload for m in app.s.messages] == [f"{i}".encode() for i in range(20)]
    finally:
        app.close()
        device.close()


def test_client_certificate_names_the_device(secure_broker, people):
    owner, dev, other, secrets = people
    cert, key = secure_broker.pki.client(dev)
    tls = {"ca_certs": str(secure_broker.pki.ca_cert), "certfile": str(cert), "keyfile": str(key)}
    app = Client(secure_broker, V5, port=secure_broker.tls_port, tls={"ca_certs": str(secure_broker.pki.ca_cert)})
    app.c.username_pw_set(owner, secrets[owner])
    app.connect()
    try:
        assert app.subscribe([(f"tributary/v1/{dev}/#", 1)]) == [1]
        # mosquitto_pub with --cert/--key and no user name or token at all.
        done = mosquitto("mosquitto_pub", secure_broker, "--cafile", str(secure_broker.pki.ca_cert),
                         "--cert", str(cert), "--key", str(key), "-t", f"tributary/v1/{dev}/senml",
                         "-q", "1", "-m", "by-certificate")
        assert done.returncode == 0, done.stderr
        app.wait(lambda s: s.messages, what="the certificate-authenticated publish")
        assert app.s.messages[0].payload == b"by-certificate"

        # paho with the same certificate is that device, and only that device.
        device = Client(secure_broker, V5, port=secure_broker.tls_port, tls=tls)
        device.connect()
        try:
            assert device.publish_answer(f"tributary/v1/{other}/senml", b"forged")[0] == 0x87
            assert device.publish_answer(f"tributary/v1/{dev}/senml", b"own")[0] == 0
        finally:
            device.close()
    finally:
        app.close()


def test_plaintext_on_the_tls_port_is_refused_with_one_log_line(secure_broker, people):
    _, dev, _, secrets = people
    mark = log_mark(secure_broker)
    done = mosquitto("mosquitto_pub", secure_broker, "-u", dev, "-P", secrets[dev], "-t", "x", "-m", "plain")
    assert done.returncode != 0
    lines = wait_for(lambda: log_lines_after(secure_broker, mark, "refused: TLS handshake failed"), 5,
                     what="the refusal's log line")
    assert len(lines) == 1, lines
    assert secrets[dev] not in secure_broker.log_tail(100_000), "a secret reached the log"


def test_untrusted_client_certificate_is_refused(secure_broker, people):
    _, dev, _, _ = people
    cert, key = secure_broker.pki.client(dev, trusted=False)
    mark = log_mark(secure_broker)
    done = mosquitto("mosquitto_pub", secure_broker, "--cafile", str(secure_broker.pki.ca_cert),
                     "--cert", str(cert), "--key", str(key), "-t", f"tributary/v1/{dev}/x", "-m", "rogue")
    assert done.returncode != 0
    lines = wait_for(lambda: log_lines_after(secure_broker, mark, "refused: TLS handshake failed"), 5,
                     what="the refusal's log line")
    assert len(lines) == 1 and "UnknownIssuer" in lines[0], lines


def connack_with_certificate(broker, device: str, username: str | None = None, password: str | None = None) -> int:
    cert, key = broker.pki.client(device)
    client = Client(broker, V5, port=broker.tls_port,
                    tls={"ca_certs": str(broker.pki.ca_cert), "certfile": str(cert), "keyfile": str(key)})
    if username is not None:
        client.c.username_pw_set(username, password)
    try:
        return client.connect(expect_success=False).reason_code
    finally:
        client.close()


def test_certificate_refusals(secure_broker, people):
    owner, dev, other, secrets = people
    unknown = unique("nodevice").replace("-", "")
    assert connack_with_certificate(secure_broker, unknown) == 0x86, "unknown device"
    assert connack_with_certificate(secure_broker, dev, username=other, password=secrets[other]) == 0x86, \
        "a user name that is not the certificate's device"
    assert connack_with_certificate(secure_broker, dev, username=dev) == 0, "its own name is fine"
    revoked = f"tlsrevoked{unique('').replace('-', '')[-6:]}"
    add_device(secure_broker, owner, revoked)
    login_when_known(secure_broker, dev, secrets[dev]).close()
    admin(secure_broker, "device", "revoke", revoked)
    wait_for(lambda: connack_with_certificate(secure_broker, revoked) == 0x87, 10, what="revoked device refused")


def test_wrong_token_over_tls(secure_broker, people):
    _, dev, _, _ = people
    client = Client(secure_broker, V5, port=secure_broker.tls_port, tls={"ca_certs": str(secure_broker.pki.ca_cert)})
    client.c.username_pw_set(dev, "not-the-token")
    try:
        assert client.connect(expect_success=False).reason_code == 0x86
    finally:
        client.close()


def test_required_client_certificate(tmp_path, pki):
    b = start_secure_broker(tmp_path, pki, extra_args=["--tls-require-client-cert"])
    try:
        context = ssl.create_default_context(cafile=str(pki.ca_cert))
        with socket.create_connection(("127.0.0.1", b.tls_port), timeout=5) as raw:
            with pytest.raises((ssl.SSLError, ConnectionError, OSError)):
                with context.wrap_socket(raw, server_hostname="localhost") as tls:
                    # TLS 1.3 reports the refusal of the client's (missing) certificate on first use.
                    tls.sendall(RAW_CONNECT)
                    if not tls.recv(4):
                        raise ConnectionError("closed")
        cert, key = pki.client("anyone")
        context.load_cert_chain(str(cert), str(key))
        with socket.create_connection(("127.0.0.1", b.tls_port), timeout=5) as raw:
            with context.wrap_socket(raw, server_hostname="localhost") as tls:
                tls.sendall(RAW_CONNECT)
                # The certificate is valid but names no device: refused by MQTT, not TLS.
                assert tls.recv(4) == bytes([0x20, 0x02, 0x00, 0x04])
    finally:
        b.close()


def proxy_v2_header(source: tuple[str, int], destination: tuple[str, int]) -> bytes:
    signature = b"\r\n\r\n\x00\r\nQUIT\n"
    addresses = socket.inet_aton(source[0]) + socket.inet_aton(destination[0]) + struct.pack(
        "!HH", source[1], destination[1])
    return signature + bytes([0x21, 0x11]) + struct.pack("!H", len(addresses)) + addresses


def test_proxy_header_before_tls(tmp_path, pki):
    # The listener's table turns PROXY on; --mqtt-tls (given by the fixture) overrides its address.
    config = {"mqtt.tls": {"listen": f"127.0.0.1:{free_port()}", "proxy_protocol": True}}
    b = start_secure_broker(tmp_path, pki, config=config)
    port = b.tls_port
    try:
        context = ssl.create_default_context(cafile=str(pki.ca_cert))
        with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
            raw.sendall(proxy_v2_header(("203.0.113.7", 40007), ("127.0.0.1", port)))
            with context.wrap_socket(raw, server_hostname="localhost") as tls:
                tls.sendall(RAW_CONNECT)
                assert tls.recv(4) == bytes([0x20, 0x02, 0x00, 0x00])
        wait_for(lambda: "203.0.113.7:40007" in b.log_tail(), 5, what="the proxied address in the log")
    finally:
        b.close()
