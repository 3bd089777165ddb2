"""Erasure that reaches every copy (docs/erasure.md), on the release binary.

| case | expected |
|---|---|
| Kafka as the log and the behaviour model on; owner A with 10,000 measurements (100 SenML packs of 100), motion the model labels, and a retained message; owner B with 500; both stored and archived; A erases the account | A's login and old token are refused; the store has no row of A, measurement or activity segment (SQLite read directly); no archive file holds A (pyarrow); A's retained message is cleared (a tombstone in the cluster's retained table); A's Kafka records are sealed (magic `\\0TRS`), hold no known value in the clear, and cannot be opened: the wrapped key is destroyed; B's records open with the master key and B's wrapped key (what an authorised consumer does); `tributary reprocess` from the start of the topics stores nothing of A; B's rows are unchanged (API and store checksum) |
| embedded log; one owner, two devices, each with a retained message; device erasure, then a time range | a device's own empty retained message clears its retained message (payloads sealed); the device's rows leave the API and the archive, the other device's stay, and so do their retained messages (also after a restart); the owner's persistent session, away meanwhile, catches up from the log with the other device's packs and none of the erased one's; the range's rows leave; `reprocess` brings none back |
| bad input | another owner's device: 404; an inverted range, an empty request, an unknown field, a wrong account confirmation: 400; all problem+json; nothing erased |

Figures: time to erase the account (API call), rows and activity segments erased, archive files
deleted. The Kafka test needs the trained behaviour model (TRIBUTARY_HAR_MODEL, which
scripts/test.sh sets).
"""

from __future__ import annotations

import json
import os
import sqlite3
import struct
import time
import urllib.parse

import pyarrow.dataset as ds
import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from api_client import api, call, login, people
from clients import V5, Client
from conftest import Broker, unique_topic, wait_for
from kafka import read_all
from test_activity import require, synthetic_pack, timeline
from test_reprocess import reprocess, summary

pytestmark = pytest.mark.tributary_only("erasure is tributary's own")

T0 = 1_790_000_000  # seconds
PACK = 100  # SenML records per message
MARKER = "erasuremarker"  # a measurement name that must never be found in the clear
MAGIC = b"\x00TRS"
FAST_ARCHIVE = {"max_age_secs": 0.3}
WAIT_S = 90
# Motion for the behaviour model: 6 one-second packs (50 samples at 50 Hz of 6 channels: 300
# measurements a pack, which the archive keeps and the store does not), far from the SenML packs'
# times.
MOTION_PACKS = 6
MOTION_T0 = T0 + 200_000


def publish_packs(broker, device: str, token: str, packs: int, start: int = 0):
    """`packs` SenML packs of PACK records each, QoS 1, each acknowledged."""
    client = wait_for(lambda: _connected(broker, device, token), timeout=10, interval=0.2,
                      what=f"device {device} accepted")
    topic = f"tributary/v1/{device}/senml"
    try:
        for p in range(start, start + packs):
            base = T0 + p * PACK
            pack = [{"bn": f"{device}/", "bt": base, "n": MARKER, "u": "beat/min", "v": 60}]
            pack += [{"n": MARKER, "u": "beat/min", "t": i, "v": 60 + i % 50} for i in range(1, PACK)]
            client.publish(topic, json.dumps(pack).encode(), qos=1)
    finally:
        client.close()


def publish_motion(broker, device: str, token: str):
    """MOTION_PACKS packs of motion the behaviour model labels, QoS 1, each acknowledged."""
    client = wait_for(lambda: _connected(broker, device, token), timeout=10, interval=0.2,
                      what=f"device {device} accepted")
    try:
        for p in range(MOTION_PACKS):
            client.publish(f"tributary/v1/{device}/senml", synthetic_pack(MOTION_T0 + p), qos=1)
    finally:
        client.close()


def _connected(broker, device, token):
    client = Client(broker, V5)
    client.c.username_pw_set(device, token)
    if client.connect(expect_success=False).reason_code == 0:
        return client
    client.close()
    return None


def owner_session(broker, owner: str, password: str, client_id: str) -> Client:
    """The owner's persistent MQTT session `client_id`, connected."""
    client = Client(broker, V5, client_id, clean=False, session_expiry=600)
    client.c.username_pw_set(owner, password)
    client.connect()
    return client


def points(broker, token: str) -> list[dict]:
    query = urllib.parse.urlencode({"from": (T0 - 60) * 1000, "to": (T0 + 100_000) * 1000, "limit": 10000})
    status, body = api(broker, "GET", f"/api/v1/measurements?{query}", token)
    assert status == 200, body
    return body


def wait_points(broker, token: str, want: int) -> list[dict]:
    def enough():
        got = points(broker, token)
        return got if len(got) >= want else None

    return wait_for(enough, timeout=WAIT_S, interval=0.3, what=f"{want} measurements stored")


def store_rows(broker, owner: str, table: str = "measurements") -> int:
    with sqlite3.connect(f"file:{broker.data_dir / 'store.sqlite'}?mode=ro", uri=True) as db:
        return db.execute(f"select count(*) from {table} where owner = ?", (owner,)).fetchone()[0]


def retain(broker, device: str, token: str, topic: str, payload: bytes):
    """One retained message of `device`, acknowledged."""
    client = wait_for(lambda: _connected(broker, device, token), timeout=10, interval=0.2,
                      what=f"device {device} accepted")
    try:
        client.publish(topic, payload, qos=1, retain=True)
    finally:
        client.close()


def retained_for(broker, owner: str, password: str, *topics: str) -> dict[str, bytes]:
    """The retained messages a new subscription of the owner's to `topics` gets, by topic."""
    client = _connected(broker, owner, password)
    assert client is not None, "the owner's MQTT login was refused"
    try:
        assert client.subscribe([(t, 1) for t in topics]) == [1] * len(topics)
        time.sleep(0.5)  # retained messages come right after the SUBACK
        return {m.topic: m.payload for m in client.messages() if m.retain}
    finally:
        client.close()


def archive_rows(broker) -> dict[str, int]:
    """Rows per owner in the local archive, read with pyarrow."""
    root = broker.data_dir / "archive"
    if not any(root.rglob("*.parquet")):
        return {}
    table = ds.dataset(root, format="parquet", partitioning="hive").to_table()
    counts: dict[str, int] = {}
    for owner in table.column("owner").to_pylist():
        counts[str(owner)] = counts.get(str(owner), 0) + 1
    return counts


def wait_archived(broker, owner: str, want: int):
    wait_for(lambda: archive_rows(broker).get(owner, 0) >= want, timeout=WAIT_S, interval=0.3,
             what=f"{want} rows of {owner} archived")


def problem(status_body, status: int, contains: str):
    code, raw, content_type = status_body
    assert code == status, raw
    assert content_type.startswith("application/problem+json"), content_type
    body = json.loads(raw)
    assert contains in body["detail"], body
    return body


def open_sealed(master_hex: str, wrapped: bytes, key_id: int, owner: str, sealed: bytes) -> bytes:
    """What an authorised Kafka consumer does (docs/kafka.md): unwrap the owner's data key with
    the master key, then open the payload. Raises when either does not authenticate."""
    master = AESGCM(bytes.fromhex(master_hex.strip()))
    aad = b"tributary-owner-key/1" + struct.pack("<Q", key_id) + owner.encode()
    assert wrapped[0] == 1
    data_key = master.decrypt(wrapped[1:13], wrapped[13:], aad)
    assert sealed[:4] == MAGIC and sealed[4] == 1
    assert struct.unpack("<Q", sealed[5:13])[0] == key_id
    return AESGCM(data_key).decrypt(sealed[13:25], sealed[25:], sealed[:25] + owner.encode())


def owner_key(broker, owner: str) -> tuple[int, bytes | None]:
    with sqlite3.connect(f"file:{broker.data_dir / 'store.sqlite'}?mode=ro", uri=True) as db:
        key_id, wrapped = db.execute("select key_id, wrapped from owner_keys where owner = ?", (owner,)).fetchone()
    return key_id & 0xFFFF_FFFF_FFFF_FFFF, wrapped


@pytest.mark.timeout(300)
def test_account_erasure_on_kafka_reaches_store_archive_and_log(tmp_path, kafka, figures):
    topic = unique_topic("erasure")
    config = {"kafka": {"url": f"kafka://{kafka.bootstrap}", "default_topic": topic, "partitions": 2},
              "archive": FAST_ARCHIVE, "model": {"path": require("TRIBUTARY_HAR_MODEL")}}
    broker = Broker(tmp_path, config).start()
    try:
        world = people(broker, "era", "erb")
        a_owner, a_password, a_device, a_token = world["era"]
        b_owner, b_password, b_device, b_token = world["erb"]
        publish_packs(broker, a_device, a_token, 100)  # 10,000 measurements
        publish_packs(broker, b_device, b_token, 5)  # 500
        publish_motion(broker, a_device, a_token)
        status_topic = f"tributary/v1/{a_device}/status"
        retain(broker, a_device, a_token, status_topic, b"online")
        a_api = login(broker, a_owner, a_password)
        b_api = login(broker, b_owner, b_password)
        assert len(wait_points(broker, a_api, 100 * PACK)) == 100 * PACK
        wait_for(lambda: timeline(broker, a_api, MOTION_T0 - 10, MOTION_T0 + 60), timeout=WAIT_S,
                 interval=0.3, what="A's motion labelled")
        segments_before = store_rows(broker, a_owner, "activity_segments")
        assert retained_for(broker, a_owner, a_password, status_topic) == {status_topic: b"online"}
        b_before = sorted(json.dumps(p, sort_keys=True) for p in wait_points(broker, b_api, 5 * PACK))
        wait_archived(broker, a_owner, 100 * PACK + MOTION_PACKS * 300)
        wait_archived(broker, b_owner, 5 * PACK)
        b_key_id, b_wrapped = owner_key(broker, b_owner)
        master = os.environ.get("TRIBUTARY_MASTER_KEY") or (broker.data_dir / "master.key").read_text()

        t0 = time.monotonic()
        status, erased = api(broker, "DELETE", "/api/v1/account", a_api, body={"confirm": a_owner})
        took = time.monotonic() - t0
        assert status == 200, erased
        # Raw motion goes to the archive only when the model is on ([model] store_motion).
        assert erased["measurements"] == 100 * PACK, erased
        assert erased["activity_segments"] == segments_before > 0, erased
        assert erased["retained"] == 1, erased

        # The API: A's token and A's login are refused; B is as before.
        assert api(broker, "GET", "/api/v1/summary", a_api)[0] == 401
        assert api(broker, "POST", "/api/v1/login", body={"name": a_owner, "password": a_password})[0] == 401
        assert sorted(json.dumps(p, sort_keys=True) for p in points(broker, b_api)) == b_before
        assert store_rows(broker, a_owner) == 0
        assert store_rows(broker, a_owner, "activity_segments") == 0
        # The archive: no file holds A.
        assert a_owner not in archive_rows(broker)
        assert not (broker.data_dir / "archive" / f"owner={a_owner}").exists()
        assert archive_rows(broker)[b_owner] == 5 * PACK
        # The key is destroyed.
        a_key_id, a_wrapped = owner_key(broker, a_owner)
        assert a_wrapped is None

        # Kafka keeps A's records: sealed, no known value in the clear, and nothing opens them.
        # A's: the SenML packs, the motion, the retained message and the erasure's clearing of it.
        a_records = 100 + MOTION_PACKS + 2
        records = read_all(kafka.bootstrap, topic, expected=a_records + 5, timeout=60)
        by_owner = {}
        for r in records:
            by_owner.setdefault(r.headers.get("tributary.owner", b"").decode(), []).append(r)
        assert len(by_owner[a_owner]) == a_records and len(by_owner[b_owner]) == 5
        clearings = [r for r in records if not r.value]
        assert len(clearings) == 1, "one empty record: the clearing of A's retained message"
        for r in records:
            if r.value:
                assert r.value[:4] == MAGIC, r.value[:40]
                assert MARKER.encode() not in r.value and a_device.encode() not in r.value
        # The cluster's retained table ends A's retained message with a tombstone.
        table = [r for r in read_all(kafka.bootstrap, "tributary.retained", timeout=30)
                 if r.key == status_topic.encode()]
        assert table and table[-1].value is None, table
        # B's open with the master key and B's wrapped key: what an authorised consumer does.
        plain = open_sealed(master, b_wrapped, b_key_id, b_owner, by_owner[b_owner][0].value)
        assert MARKER.encode() in plain
        # A's cannot: its wrapped key is gone, and B's key does not open them.
        with pytest.raises(Exception):
            open_sealed(master, b_wrapped, b_key_id, a_owner, by_owner[a_owner][0].value)

        # reprocess from the start of the topics stores nothing of A.
        broker.stop()
        out = summary(reprocess("--data-dir", str(broker.data_dir), "--log", f"kafka://{kafka.bootstrap}",
                                "--config", str(tmp_path / "tributary.toml")))
        assert out["new"] == 0, out
        assert (out["before_n"], out["before_c"]) == (out["after_n"], out["after_c"]), out
        assert out["after_n"] == 5 * PACK
        assert store_rows(broker, a_owner) == 0
        assert store_rows(broker, a_owner, "activity_segments") == 0
        figures(f"account erasure on Kafka: {erased['measurements']} rows, "
                f"{erased['activity_segments']} activity segments, {erased['retained']} retained message, "
                f"{erased['archive']['files_deleted']} archive files, erase call {took * 1000:.0f} ms "
                f"(server {erased['elapsed_ms']} ms); {len(by_owner[a_owner]) - 1} Kafka records of A sealed, "
                f"unreadable, and 1 clearing its retained message; reprocess: 0 new, B's {out['after_n']} rows and checksum unchanged")
    finally:
        broker.stop()


@pytest.mark.timeout(180)
def test_device_and_range_erasure_and_bad_input(tmp_path, figures):
    broker = Broker(tmp_path, {"archive": FAST_ARCHIVE}).start()
    try:
        world = people(broker, "erc", "erd")
        owner, password, device, token = world["erc"]
        other_owner, other_password, other_device, _ = world["erd"]
        token_api = login(broker, owner, password)
        # A second device of the same owner, added through the API.
        status, added = api(broker, "POST", "/api/v1/devices", token_api, body={"name": "second"})
        assert status == 201, added
        second, second_token = added["id"], added["token"]
        # The owner's persistent session, away while the devices publish and
        # one of them is erased: it comes back to the other's packs only.
        first_senml, second_senml = (f"tributary/v1/{d}/senml" for d in (device, second))
        reader = owner_session(broker, owner, password, "erc-reader")
        # The broker learns of the device just added within a second or so.
        wait_for(lambda: reader.subscribe([(first_senml, 1), (second_senml, 1)]) == [1, 1],
                 timeout=10, interval=0.2, what="the owner may subscribe to the new device")
        reader.disconnect()
        publish_packs(broker, device, token, 4)  # T0 .. T0+400 s
        publish_packs(broker, second, second_token, 4)
        first_status, second_status = (f"tributary/v1/{d}/status" for d in (device, second))
        retain(broker, device, token, first_status, b"first")
        retain(broker, second, second_token, second_status, b"second")
        assert len(wait_points(broker, token_api, 8 * PACK)) == 8 * PACK
        wait_archived(broker, owner, 8 * PACK)
        assert retained_for(broker, owner, password, first_status, second_status) == {
            first_status: b"first", second_status: b"second"}
        # A device clears its own retained message with an empty one, sealing on or off.
        note = f"tributary/v1/{device}/note"
        retain(broker, device, token, note, b"x")
        retain(broker, device, token, note, b"")
        assert retained_for(broker, owner, password, note) == {}

        # Bad input: clear problem+json, nothing erased.
        other_api = login(broker, other_owner, other_password)
        problem(call(broker, "POST", "/api/v1/erasures", token_api, {"device": other_device}), 404, "no device")
        problem(call(broker, "POST", "/api/v1/erasures", token_api,
                     {"from_ms": (T0 + 10) * 1000, "to_ms": T0 * 1000}), 400, "must be before")
        problem(call(broker, "POST", "/api/v1/erasures", token_api, {}), 400, "name a device")
        problem(call(broker, "POST", "/api/v1/erasures", token_api, {"devices": device}), 400, "unknown field")
        problem(call(broker, "DELETE", "/api/v1/account", other_api, {"confirm": owner}), 400, "confirm")
        assert len(points(broker, token_api)) == 8 * PACK
        assert api(broker, "GET", "/api/v1/summary", other_api)[0] == 200

        # The second device, all of its time.
        status, erased = api(broker, "POST", "/api/v1/erasures", token_api, body={"device": second})
        assert status == 200, erased
        assert erased["measurements"] == 4 * PACK and erased["archive"]["rows"] == 4 * PACK, erased
        assert erased["retained"] == 1, erased
        left = points(broker, token_api)
        assert len(left) == 4 * PACK and {p["device"] for p in left} == {device}
        assert archive_rows(broker)[owner] == 4 * PACK
        assert retained_for(broker, owner, password, first_status, second_status) == {first_status: b"first"}
        # Every node reads the store's erasures once a second; then the session
        # catching up from the log is not sent the erased device's packs.
        time.sleep(2.5)
        reader = owner_session(broker, owner, password, "erc-reader")
        assert reader.wait_messages(4, topic=first_senml, timeout=WAIT_S)
        time.sleep(1)
        assert reader.messages(second_senml) == [], "an erased device's packs are not delivered again"
        reader.close()

        # A time range: the first device's second pack.
        status, erased = api(broker, "POST", "/api/v1/erasures", token_api,
                             body={"from_ms": (T0 + PACK) * 1000, "to_ms": (T0 + 2 * PACK) * 1000})
        assert status == 200, erased
        assert erased["measurements"] == PACK, erased
        assert erased["retained"] == 0, "the retained message was received outside the range"
        assert len(points(broker, token_api)) == 3 * PACK
        assert archive_rows(broker)[owner] == 3 * PACK

        # The clearing is durable: after a restart the erased device's retained message stays gone.
        broker.stop()
        broker.start()
        assert retained_for(broker, owner, password, first_status, second_status) == {first_status: b"first"}

        # Nothing comes back from the log.
        broker.stop()
        out = summary(reprocess("--data-dir", str(broker.data_dir)))
        assert out["new"] == 0, out
        assert store_rows(broker, owner) == 3 * PACK
        figures(f"device erasure: {4 * PACK} rows (store and archive), 1 retained message, "
                f"0 of its 4 packs delivered to a session catching up; "
                f"range erasure: {PACK} rows; "
                f"reprocess afterwards: 0 new")
    finally:
        broker.stop()
