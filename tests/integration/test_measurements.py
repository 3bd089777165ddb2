"""From MQTT to the HTTP API: devices publish SenML (JSON and CBOR) with paho-mqtt, the pipeline stores
the measurements, and each owner reads back only their own through the API — the same test body on
the SQLite store and on PostgreSQL (a real PostgreSQL 15 started by scripts/test.sh, which exports
TRIBUTARY_TEST_POSTGRES; each test makes a database of its own).

| case | expected |
|---|---|
| two owners, a device each, SenML JSON and CBOR | each owner's measurements with the right names, units, values and times; never the other's |
| a malformed SenML corpus between valid messages | one dead letter per bad message with its reason; the valid messages after it are stored |
| export (SenML JSON) re-published by another owner's device | the same measurements (names, units, values, times) |
"""

from __future__ import annotations

import json
import time
import urllib.parse

import cbor2
import pytest

from api_client import api, device_client, login, people
from conftest import Broker
from postgres import create_database

pytestmark = pytest.mark.tributary_only("the pipeline, store and HTTP API are tributary's own")

T0 = 1_790_000_000  # seconds; the measurements' base time
WAIT_S = 30


def measurements(broker, token: str, want: int | None = None) -> list[dict]:
    """The owner's raw measurements around T0, waiting (bounded) until `want` arrived."""
    query = urllib.parse.urlencode({"from": (T0 - 60) * 1000, "to": (T0 + 3600) * 1000, "limit": 10000})
    deadline = time.monotonic() + WAIT_S
    while True:
        status, points = api(broker, "GET", f"/api/v1/measurements?{query}", token)
        assert status == 200, points
        if want is None or len(points) >= want or time.monotonic() > deadline:
            return points
        time.sleep(0.2)


def by_repr(items) -> list:
    """Sorted, None and values of mixed types included."""
    return sorted(items, key=repr)


def as_tuples(points: list[dict]) -> list[tuple]:
    return by_repr((p["name"], p.get("unit"), p["time_ms"], p.get("avg"), p.get("text"), p.get("bool"))
                   for p in points)


@pytest.fixture(params=["sqlite", "postgres"])
def store_broker(request, tmp_path):
    """A broker whose store is SQLite (the default) or a fresh PostgreSQL database."""
    config = None
    if request.param == "postgres":
        config = {"store": {"url": create_database("tributary_e2e")}}
    b = Broker(tmp_path, config).start()
    try:
        yield b
    finally:
        b.close()


def test_each_owner_reads_their_own_senml_json_and_cbor(store_broker, figures):
    broker = store_broker
    world = people(broker, "ann", "bob")
    sent = {}
    for i, (owner, (name, password, device, token)) in enumerate(world.items()):
        dev = device_client(broker, device, token)
        base = 60 + 10 * i
        json_pack = [{"bn": f"{device}/", "bt": T0, "n": "hr", "u": "beat/min", "v": base},
                     {"n": "hr", "t": 1, "v": base + 1},
                     {"n": "label", "t": 2, "vs": f"walking-{owner}"}]
        cbor_pack = [{-2: f"{device}/", -3: T0 + 10, 0: "steps", 1: "count", 2: 100 + i},
                     {0: "moving", 6: 1, 4: True}]
        dev.publish(f"tributary/v1/{device}/senml", json.dumps(json_pack).encode(), qos=1)
        # "senml+cbor" cannot be a topic level ('+' is a wildcard): the suffix is senml-cbor.
        dev.publish(f"tributary/v1/{device}/senml-cbor", cbor2.dumps(cbor_pack), qos=1)
        dev.close()
        sent[owner] = by_repr([
            (f"{device}/hr", "beat/min", T0 * 1000, float(base), None, None),
            # `u` is the record's own unit, not a base unit (that is `bu`): the second has none.
            (f"{device}/hr", None, (T0 + 1) * 1000, float(base + 1), None, None),
            (f"{device}/label", None, (T0 + 2) * 1000, None, f"walking-{owner}", None),
            (f"{device}/steps", "count", (T0 + 10) * 1000, float(100 + i), None, None),
            (f"{device}/moving", None, (T0 + 11) * 1000, None, None, True),
        ])
    for owner, (name, password, device, _) in world.items():
        token = login(broker, name, password)
        got = as_tuples(measurements(broker, token, want=5))
        assert got == sent[owner], f"{owner} on {broker.config or 'sqlite'}"
    # Bucketed: one minute holds both heart-rate values of ann.
    ann_name, ann_password, ann_device, _ = world["ann"]
    token = login(broker, ann_name, ann_password)
    query = urllib.parse.urlencode({"from": T0 * 1000 - 40_000, "to": T0 * 1000 + 20_000,
                                    "names": f"{ann_device}/hr", "bucket": 60_000})
    status, buckets = api(broker, "GET", f"/api/v1/measurements?{query}", token)
    assert status == 200 and [(b["count"], b["min"], b["max"]) for b in buckets] == [(2, 60.0, 61.0)], buckets
    figures(f"SenML JSON + CBOR, two owners, {'postgres' if broker.config else 'sqlite'}: "
            f"5 + 5 measurements, each owner sees only their own")


MALFORMED = [
    (b"{not json", "json"),
    (b"[]", "empty"),
    (json.dumps([{"n": "hr", "u": "furlong", "v": 1}]).encode(), "unit"),
    (json.dumps([{"n": "", "v": 1}]).encode(), "name"),
    (json.dumps([{"n": "hr"}]).encode(), "value"),
    (json.dumps([{"n": "hr", "v": 1, "t": -1e12}]).encode(), "time"),
    (json.dumps([{"n": "hr", "v": 1, "bad_": 1}]).encode(), "bad_"),
]


def test_malformed_senml_becomes_dead_letters_and_valid_messages_go_on(store_broker):
    broker = store_broker
    world = people(broker, "cat")
    name, password, device, token = world["cat"]
    dev = device_client(broker, device, token)
    topic = f"tributary/v1/{device}/senml"
    for payload, _ in MALFORMED:
        dev.publish(topic, payload, qos=1)
    dev.publish(topic, json.dumps([{"n": "after", "t": T0, "v": 7}]).encode(), qos=1)
    dev.close()
    api_token = login(broker, name, password)
    points = measurements(broker, api_token, want=1)
    assert [(p["name"], p["avg"]) for p in points] == [("after", 7.0)]
    status, letters = api(broker, "GET", "/api/v1/dead-letters?limit=100", api_token)
    assert status == 200 and len(letters) == len(MALFORMED), letters
    for letter in letters:
        assert letter["reason"] and letter["device"] == device and letter["topic"] == topic, letter


def test_exported_senml_republished_gives_the_same_measurements(store_broker):
    broker = store_broker
    world = people(broker, "dan", "eve")
    dan, eve = world["dan"], world["eve"]
    dev = device_client(broker, dan[2], dan[3])
    dev.publish(f"tributary/v1/{dan[2]}/senml", json.dumps(
        [{"bn": "room/", "bt": T0, "n": "temp", "u": "Cel", "v": 21.5}, {"n": "temp", "t": 60, "v": 21.75},
         {"n": "door", "t": 61, "vb": False}, {"n": "note", "t": 62, "vs": "ok"}]).encode(), qos=1)
    dev.close()
    dan_token = login(broker, dan[0], dan[1])
    original = measurements(broker, dan_token, want=4)
    status, exported = api(broker, "GET", "/api/v1/export?format=senml", dan_token)
    assert status == 200 and len(exported) == 4, exported
    # Eve's device publishes Dan's export: the same measurements, under Eve.
    dev = device_client(broker, eve[2], eve[3])
    dev.publish(f"tributary/v1/{eve[2]}/senml", json.dumps(exported).encode(), qos=1)
    dev.close()
    eve_token = login(broker, eve[0], eve[1])
    again = measurements(broker, eve_token, want=4)
    assert as_tuples(again) == as_tuples(original)
