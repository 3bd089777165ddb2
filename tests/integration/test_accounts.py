"""Owners, devices and the topic ACL (docs/topics.md), with paho-mqtt and the admin CLI.

The accounts are created with `tributary owner add` / `tributary device add` while the broker
runs (the broker reloads accounts.json within about a second), exactly as an operator would.

| case | expected |
|---|---|
| a device publishes to its own data topic | PUBACK 0x00, its owner's subscription receives it |
| a device publishes to another device's topic (same owner or not) | PUBACK 0x87 (5.0) / connection closed (3.1.1) |
| a device subscribes outside its commands topic | SUBACK 0x87 (5.0) / 0x80 (3.1.1) |
| an owner subscribes to another owner's device, or with a wildcard over devices | SUBACK 0x87 |
| an owner commands its own device / another owner's | the device receives it / PUBACK 0x87 |
| wrong token, unknown device | CONNACK 0x86 (5.0) / 4 (3.1.1) |
| revoked device | CONNACK 0x87 (5.0) / 5 (3.1.1); a connected one gets DISCONNECT 0x98 |
"""

from __future__ import annotations

import pytest

from accounts_cli import add_device, add_owner, admin, login, login_when_known
from clients import V311, V5, Client, unique

pytestmark = pytest.mark.tributary_only("accounts and the topic ACL are tributary's own")

@pytest.fixture
def world(broker):
    """Two owners with two devices each, logged in over MQTT 5.0."""
    suffix = unique("").replace("-", "")[-6:]
    names = {"ann": f"ann{suffix}", "bob": f"bob{suffix}"}
    secrets = {}
    for owner in names.values():
        secrets[owner] = add_owner(broker, owner)
    for owner_key, owner in names.items():
        for n in (1, 2):
            device = f"{owner_key}{n}{suffix}"
            secrets[device] = add_device(broker, owner, device)
    clients = []

    def connect(name: str, version: int = V5) -> Client:
        client = login_when_known(broker, name, secrets[name], version)
        clients.append(client)
        return client

    yield names, suffix, secrets, connect
    for c in clients:
        c.close()


def test_each_owner_sees_only_its_own_devices(world):
    names, sfx, _, connect = world
    ann, bob = names["ann"], names["bob"]
    a1, a2, b1 = f"ann1{sfx}", f"ann2{sfx}", f"bob1{sfx}"
    ann_app, bob_app = connect(ann), connect(bob)
    assert ann_app.subscribe([(f"tributary/v1/{a1}/#", 1), (f"tributary/v1/{a2}/#", 1)]) == [1, 1]
    assert ann_app.subscribe([(f"tributary/v1/{b1}/#", 1)]) == [0x87], "another owner's device"
    assert ann_app.subscribe([("tributary/v1/+/senml", 1)]) == [0x87], "a wildcard over devices"
    assert ann_app.subscribe([("#", 1)]) == [0x87]
    assert bob_app.subscribe([(f"tributary/v1/{b1}/#", 1)]) == [1]

    dev_a1, dev_b1 = connect(a1), connect(b1)
    assert dev_a1.publish_answer(f"tributary/v1/{a1}/senml", b"a1-data")[0] == 0
    assert dev_b1.publish_answer(f"tributary/v1/{b1}/senml", b"b1-data")[0] == 0
    got = ann_app.wait_messages(1, topic=f"tributary/v1/{a1}/senml")
    assert [m.payload for m in got] == [b"a1-data"]
    assert [m.payload for m in bob_app.wait_messages(1)] == [b"b1-data"]
    # Cross-device and cross-owner publishes are refused and stored nowhere.
    assert dev_a1.publish_answer(f"tributary/v1/{a2}/senml", b"forged")[0] == 0x87, "sibling device"
    assert dev_a1.publish_answer(f"tributary/v1/{b1}/senml", b"forged")[0] == 0x87, "other owner's device"
    assert dev_a1.publish_answer(f"tributary/v1/{a1}/commands/x", b"forged")[0] == 0x87, "own commands"
    assert dev_a1.subscribe([(f"tributary/v1/{a1}/#", 1)]) == [0x87]
    assert dev_a1.subscribe([(f"tributary/v1/{b1}/commands/#", 1)]) == [0x87]
    # A marker shows the forged messages did not arrive before it.
    assert dev_a1.publish_answer(f"tributary/v1/{a1}/senml", b"marker")[0] == 0
    ann_app.wait_messages(2, topic=f"tributary/v1/{a1}/senml")
    assert all(m.payload != b"forged" for m in ann_app.messages() + bob_app.messages())


def test_an_owner_commands_its_own_devices_only(world):
    names, sfx, _, connect = world
    a1, b1 = f"ann1{sfx}", f"bob1{sfx}"
    dev_a1 = connect(a1)
    assert dev_a1.subscribe([(f"tributary/v1/{a1}/commands/#", 1)]) == [1]
    ann_app = connect(names["ann"])
    assert ann_app.publish_answer(f"tributary/v1/{a1}/commands/reboot", b"now")[0] == 0
    assert [m.payload for m in dev_a1.wait_messages(1)] == [b"now"]
    assert ann_app.publish_answer(f"tributary/v1/{b1}/commands/reboot", b"now")[0] == 0x87
    assert ann_app.publish_answer(f"tributary/v1/{a1}/senml", b"forged data")[0] == 0x87


def test_v311_device_is_closed_on_a_forbidden_publish(world):
    _, sfx, _, connect = world
    a1, b1 = f"ann1{sfx}", f"bob1{sfx}"
    dev = connect(a1, V311)
    assert dev.subscribe([(f"tributary/v1/{b1}/commands/#", 1)]) == [0x80]
    dev.publish(f"tributary/v1/{b1}/senml", b"forged", qos=1, wait=False)
    dev.wait_disconnected()


# paho reports a 3.1.1 CONNACK return code as the matching 5.0 reason code (4 -> 0x86, 5 -> 0x87).
@pytest.mark.parametrize("version,bad,revoked", [(V5, 0x86, 0x87), (V311, 0x86, 0x87)])
def test_bad_and_revoked_credentials_are_refused(world, broker, version, bad, revoked):
    names, sfx, secrets, connect = world
    a2 = f"ann2{sfx}"
    connect(a2, version).close()  # known to the broker now
    wrong = login(broker, a2, "not-the-token", version, expect_success=False)
    assert wrong.connack.reason_code == bad
    wrong.close()
    unknown = login(broker, f"nobody{sfx}", "x", version, expect_success=False)
    assert unknown.connack.reason_code == bad
    unknown.close()
    live = connect(a2, version)
    admin(broker, "device", "revoke", a2)
    reason = live.wait_disconnected(timeout=10)
    if version == V5:
        assert reason == 0x98, f"expected DISCONNECT 0x98 Administrative action, got {reason}"
    again = login(broker, a2, secrets[a2], version, expect_success=False)
    assert again.connack.reason_code == revoked
    again.close()
    log = broker.log_tail()
    assert secrets[a2] not in log and "not-the-token" not in log, "a secret reached the log"
