"""Services and admins (docs/accounts.md, docs/topics.md), with paho-mqtt and the admin CLI.

The accounts are created with `tributary owner|device|service|admin add` while the broker runs,
as an operator would; the broker picks them up within about a second.

| case | expected |
|---|---|
| a `read` service subscribes `tributary/v1/+/...` | SUBACK granted; without any owner's consent receives nothing |
| a service without `read` subscribes | SUBACK 0x87 |
| a `command` service publishes a command | PUBACK 0x00; the device receives it |
| a service or admin publishes to a device's data topic | PUBACK 0x87 (5.0), nothing delivered |
| an admin subscribes `tributary/v1/#` | SUBACK granted; receives data and commands |
| wrong service token | CONNACK 0x86 |
| a service is revoked | DISCONNECT 0x98 within about 2 s; CONNACK 0x87 afterwards |
| unknown grant, name of another kind | the command fails naming the fault, exit status 1 or 2 |
"""

from __future__ import annotations

import time

import pytest

from accounts_cli import add_admin, add_device, add_owner, add_service, admin, login, login_when_known, run_admin
from clients import Client, unique

pytestmark = pytest.mark.tributary_only("accounts and the topic ACL are tributary's own")


@pytest.fixture
def world(broker):
    """Owners ann and bob with one device each, services `reader` (read), `commander` (command)
    and `bridge` (both), admin `ops`; names suffixed so that they are unique in the run."""
    sfx = unique("").replace("-", "")[-6:]
    n = {key: f"{key}{sfx}" for key in ("ann", "bob", "a1", "b1", "reader", "commander", "bridge", "ops")}
    secrets = {
        n["ann"]: add_owner(broker, n["ann"]),
        n["bob"]: add_owner(broker, n["bob"]),
    }
    secrets[n["a1"]] = add_device(broker, n["ann"], n["a1"])
    secrets[n["b1"]] = add_device(broker, n["bob"], n["b1"])
    secrets[n["reader"]] = add_service(broker, n["reader"], "read")
    secrets[n["commander"]] = add_service(broker, n["commander"], "command")
    secrets[n["bridge"]] = add_service(broker, n["bridge"], "read", "command")
    secrets[n["ops"]] = add_admin(broker, n["ops"])
    clients: list[Client] = []

    def connect(key: str) -> Client:
        client = login_when_known(broker, n[key], secrets[n[key]])
        clients.append(client)
        return client

    yield n, secrets, connect
    for c in clients:
        c.close()


def test_a_read_service_without_consent_receives_no_owners_data(world):
    # Since consent (docs/consent.md): `read` lets a service subscribe across devices, but it
    # receives only what owners consented to; tests/integration/test_consent.py covers that.
    n, _, connect = world
    reader = connect("reader")
    assert reader.subscribe([("tributary/v1/+/senml", 1)]) == [1]
    ann = connect("ann")
    assert ann.subscribe([(f"tributary/v1/{n['a1']}/#", 1)]) == [1]
    a1, b1 = connect("a1"), connect("b1")
    assert a1.publish_answer(f"tributary/v1/{n['a1']}/senml", b'[{"n":"steps","v":1}]')[0] == 0
    assert b1.publish_answer(f"tributary/v1/{n['b1']}/senml", b'[{"n":"steps","v":2}]')[0] == 0
    assert [m.payload for m in ann.wait_messages(1)] == [b'[{"n":"steps","v":1}]']
    time.sleep(1.0)
    assert reader.messages() == []


def test_a_service_without_read_may_not_subscribe(world):
    n, _, connect = world
    commander = connect("commander")
    assert commander.subscribe([("tributary/v1/+/senml", 1)]) == [0x87]
    assert commander.subscribe([(f"tributary/v1/{n['a1']}/#", 1)]) == [0x87]
    assert commander.subscribe([("$share/g/tributary/v1/#", 1)]) == [0x87]
    reader = connect("reader")
    assert reader.subscribe([("#", 1)]) == [0x87], "beyond tributary/v1/ even with read"


def test_a_command_service_commands_a_device(world):
    n, _, connect = world
    a1 = connect("a1")
    assert a1.subscribe([(f"tributary/v1/{n['a1']}/commands/#", 1)]) == [1]
    commander = connect("commander")
    assert commander.publish_answer(f"tributary/v1/{n['a1']}/commands/led", b"on")[0] == 0
    got = a1.wait_messages(1)
    assert [(m.topic, m.payload) for m in got] == [(f"tributary/v1/{n['a1']}/commands/led", b"on")]
    assert commander.publish_answer("tributary/v1/nosuchdevice/commands/led", b"on")[0] == 0x87
    reader = connect("reader")
    assert reader.publish_answer(f"tributary/v1/{n['a1']}/commands/led", b"off")[0] == 0x87, \
        "read does not grant command"


def test_services_and_admins_never_publish_device_data(world):
    n, _, connect = world
    ann = connect("ann")
    assert ann.subscribe([(f"tributary/v1/{n['a1']}/#", 1)]) == [1]
    for key in ("commander", "bridge", "ops"):
        client = connect(key)
        assert client.publish_answer(f"tributary/v1/{n['a1']}/senml", b"forged")[0] == 0x87, key
    # A marker from the device shows the forged messages did not arrive before it.
    a1 = connect("a1")
    assert a1.publish_answer(f"tributary/v1/{n['a1']}/senml", b"marker")[0] == 0
    got = ann.wait_messages(1)
    assert [m.payload for m in got] == [b"marker"]


def test_an_admin_reads_everything_and_commands_any_device(world):
    n, _, connect = world
    ops = connect("ops")
    assert ops.subscribe([("tributary/v1/#", 1)]) == [1]
    assert ops.subscribe([("#", 1)]) == [0x87]
    b1 = connect("b1")
    assert b1.subscribe([(f"tributary/v1/{n['b1']}/commands/#", 1)]) == [1]
    assert b1.publish_answer(f"tributary/v1/{n['b1']}/senml", b"data")[0] == 0
    assert ops.publish_answer(f"tributary/v1/{n['b1']}/commands/reboot", b"now")[0] == 0
    assert [m.payload for m in b1.wait_messages(1)] == [b"now"]
    got = ops.wait_messages(2)
    assert sorted((m.topic, m.payload) for m in got) == [
        (f"tributary/v1/{n['b1']}/commands/reboot", b"now"),
        (f"tributary/v1/{n['b1']}/senml", b"data"),
    ]


def test_wrong_token_and_revoked_service(world, broker):
    n, secrets, connect = world
    bridge = connect("bridge")  # known to the broker from here on
    wrong = login(broker, n["bridge"], "not-the-token", expect_success=False)
    assert wrong.connack.reason_code == 0x86
    wrong.close()
    other = login(broker, n["bridge"], secrets[n["reader"]], expect_success=False)
    assert other.connack.reason_code == 0x86, "another service's token"
    other.close()

    reader = connect("reader")
    admin(broker, "service", "revoke", n["bridge"])
    revoked_at = time.monotonic()
    reason = bridge.wait_disconnected(timeout=3)
    took = time.monotonic() - revoked_at
    assert reason == 0x98, f"expected DISCONNECT 0x98 Administrative action, got {reason}"
    assert took < 3, f"disconnected {took:.1f}s after the revoke"
    again = login(broker, n["bridge"], secrets[n["bridge"]], expect_success=False)
    assert again.connack.reason_code == 0x87
    again.close()
    # The other service stays connected and usable.
    assert reader.subscribe([("tributary/v1/#", 1)]) == [1]
    log = broker.log_tail()
    for secret in (secrets[n["bridge"]], "not-the-token"):
        assert secret not in log, "a secret reached the log"


def test_cli_names_the_fault(world, broker):
    n, _, _ = world
    unknown = run_admin(broker, "service", "add", unique("svc"), "--grant", "write")
    assert unknown.returncode != 0
    assert "unknown grant 'write'" in unknown.stderr, unknown.stderr
    none = run_admin(broker, "service", "add", unique("svc"))
    assert none.returncode != 0 and "--grant" in none.stderr, none.stderr
    taken = run_admin(broker, "service", "add", n["a1"], "--grant", "read")
    assert taken.returncode == 1
    assert f"cannot add service {n['a1']}: device {n['a1']} already exists" in taken.stderr, taken.stderr
    taken = run_admin(broker, "admin", "add", n["reader"])
    assert taken.returncode == 1 and f"service {n['reader']} already exists" in taken.stderr, taken.stderr
    missing = run_admin(broker, "service", "revoke", n["a1"])
    assert missing.returncode == 1 and f"no service named {n['a1']}" in missing.stderr, missing.stderr

    services = admin(broker, "service", "list")
    assert services.splitlines()[0].split() == ["SERVICE", "GRANTS", "CREATED", "REVOKED"]
    rows = {line.split()[0]: line.split() for line in services.splitlines()[1:]}
    assert rows[n["bridge"]][1] == "read,command" and rows[n["bridge"]][3] == "-"
    assert rows[n["reader"]][1] == "read"
    assert rows[n["commander"]][1] == "command"
    admins = admin(broker, "admin", "list")
    assert n["ops"] in admins and "password" not in admins and "argon2" not in admins

    chosen = admin(broker, "admin", "add", unique("root").replace("-", ""), "--password-stdin",
                   stdin="a password of my own\n")
    assert "shown once" not in chosen and "a password of my own" not in chosen
