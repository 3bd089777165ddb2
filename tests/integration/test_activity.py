"""The behaviour model live: the held-out subjects of UCI HAPT replayed through MQTT as nine devices
of nine owners, classified by the pipeline's activity sink, read back through the API.

scripts/test.sh fetches the data (scripts/har_dataset.py) and trains the model once (cached outside
the work tree); it exports TRIBUTARY_HAR_CSV and TRIBUTARY_HAR_MODEL.

| case | expected |
|---|---|
| nine subjects replayed with paho (QoS 1, one SenML pack per second of samples, faster than real time) | the stored labels equal the offline evaluation's smoothed labels for >= 99.5 % of the windows, with the same accuracy; each owner's timeline holds only their own device |
| one more stretch, pack by pack | each window's label is in the API soon after the PUBACK of the pack that ends it (figures: p50, max) |
| a 25 Hz pack, a wrong unit, a missing axis, an out-of-order pack | one dead letter each, with the reason; no label written from them |
| the owner switches the model off | no new segment for that owner's later motion |
"""

from __future__ import annotations

import csv
import json
import os
import statistics
import subprocess
import time
import urllib.parse
from collections import defaultdict

import cbor2
import pytest

from api_client import api, device_client, login, people
from conftest import Broker, tributary_bin

pytestmark = pytest.mark.tributary_only("the behaviour model is tributary's own")

TEST_SUBJECTS = (2, 4, 9, 10, 12, 13, 18, 20, 24)
G = 9.80665
SAMPLE_S = 0.02
WINDOW, STEP = 128, 64
CHANNELS = [("acc_x", "m/s2"), ("acc_y", "m/s2"), ("acc_z", "m/s2"),
            ("gyr_x", "rad/s"), ("gyr_y", "rad/s"), ("gyr_z", "rad/s")]
# Replayed times start two days ago (SenML times may not be more than 24 h ahead of reception);
# each labelled run gets its own stretch with 10 s of silence after it, so live windows never
# span two runs, as the offline protocol's do not.
T_BASE = int(time.time()) - 2 * 86_400
GAP_S = 10
WAIT_S = 240


def require(name: str) -> str:
    value = os.environ.get(name)
    if not value:
        pytest.fail(f"{name} is not set: scripts/test.sh fetches the data set and trains the model", pytrace=False)
    return value


def held_out_runs(csv_path: str) -> dict[int, list[dict]]:
    """The held-out subjects' labelled runs, cut as the Rust model cuts them (har.rs): maximal runs
    of consecutive samples with one basic label (1-6) in one recording."""
    runs: dict[int, list[dict]] = defaultdict(list)
    previous = None
    with open(csv_path, newline="") as f:
        reader = csv.reader(f)
        next(reader)
        for row in reader:
            subject, experiment, sample, label = int(row[0]), int(row[1]), int(row[2]), int(row[9])
            key = (subject, experiment, label, sample)
            continues = previous is not None and previous[:3] == key[:3] and previous[3] + 1 == sample
            previous = key
            if subject not in TEST_SUBJECTS or not 1 <= label <= 6:
                continue
            values = [float(v) * G for v in row[3:6]] + [float(v) for v in row[6:9]]
            mine = runs[subject]
            if continues and mine:
                mine[-1]["samples"].append(values)
            else:
                mine.append({"experiment": experiment, "first": sample, "samples": [values]})
    return runs


def place(runs: list[dict], base: float) -> float:
    """Gives each run its start time; returns the time after the last."""
    t = base
    for run in runs:
        run["start_s"] = t
        t += len(run["samples"]) * SAMPLE_S + GAP_S
    return t


def packs(run: dict, per_pack: int = 50):
    """(first sample index, SenML JSON) for each second of the run."""
    samples = run["samples"]
    for first in range(0, len(samples), per_pack):
        bt = round(run["start_s"] + first * SAMPLE_S, 3)
        records = [{"bt": bt}]
        for i, values in enumerate(samples[first:first + per_pack]):
            for (name, unit), v in zip(CHANNELS, values):
                records.append({"n": name, "u": unit, "t": round(i * SAMPLE_S, 3), "v": round(v, 6)})
        yield first, json.dumps(records, separators=(",", ":")).encode()


def timeline(broker, token: str, from_s: float, to_s: float) -> list[dict]:
    query = urllib.parse.urlencode({"from": int(from_s * 1000), "to": int(to_s * 1000), "limit": 10000})
    status, body = api(broker, "GET", f"/api/v1/activity?{query}", token)
    assert status == 200, body
    assert not body["truncated"], "more segments than one page"
    return body["segments"]


def label_at(segments: list[dict], t_ms: int) -> str | None:
    for s in segments:
        if s["start_ms"] <= t_ms < s["end_ms"]:
            return s["activity"]
    return None


def offline_windows(tmp_path, csv_path: str, model: str) -> dict[tuple, tuple[str, str]]:
    """{(subject, experiment, run first sample, window index): (truth, smoothed label)} from eval-har."""
    out = tmp_path / "windows.csv"
    subprocess.run([tributary_bin(), "model", "eval-har", "--data", csv_path, "--model", model,
                    "--windows", str(out), "--json"], check=True, capture_output=True, timeout=300)
    windows = {}
    with open(out, newline="") as f:
        for row in csv.DictReader(f):
            key = (int(row["subject"]), int(row["experiment"]), int(row["run_first"]), int(row["index"]))
            windows[key] = (row["truth"], row["smoothed"])
    return windows


@pytest.mark.timeout(900)
def test_streaming_equals_offline_for_nine_owners(tmp_path, figures):
    csv_path, model = require("TRIBUTARY_HAR_CSV"), require("TRIBUTARY_HAR_MODEL")
    offline = offline_windows(tmp_path, csv_path, model)
    runs = held_out_runs(csv_path)
    assert sorted(runs) == list(TEST_SUBJECTS)
    broker = Broker(tmp_path, {"model": {"path": model}}).start()
    try:
        world = people(broker, *[f"s{s}" for s in TEST_SUBJECTS])
        ends = {}
        started = time.monotonic()
        sent = 0
        for subject in TEST_SUBJECTS:
            name, password, device, token = world[f"s{subject}"]
            ends[subject] = place(runs[subject], T_BASE)
            client = device_client(broker, device, token)
            mids = [client.publish(f"tributary/v1/{device}/senml", payload, qos=1, wait=False)
                    for run in runs[subject] for _, payload in packs(run)]
            sent += len(mids)
            client.wait(lambda s: all(m in s.acks for m in mids), WAIT_S, f"the PUBACKs of {device}")
            refused = [m for m in mids if client.s.acks[m] >= 0x80]
            assert not refused, f"{len(refused)} packs of {device} refused"
            client.close()
        replay_s = time.monotonic() - started
        agree = total = correct_live = correct_offline = 0
        missing = 0
        for subject in TEST_SUBJECTS:
            name, password, device, _ = world[f"s{subject}"]
            token = login(broker, name, password)
            expected = [(run, i) for run in runs[subject]
                        for i in range((len(run["samples"]) - WINDOW) // STEP + 1) if len(run["samples"]) >= WINDOW]
            last = expected[-1]
            last_mid_ms = int((last[0]["start_s"] + (last[1] * STEP + WINDOW / 2) * SAMPLE_S) * 1000)
            deadline = time.monotonic() + WAIT_S
            while True:
                segments = timeline(broker, token, T_BASE - 60, ends[subject] + 60)
                if label_at(segments, last_mid_ms) is not None or time.monotonic() > deadline:
                    break
                time.sleep(0.5)
            assert {s["device"] for s in segments} == {device}, "an owner sees only their own device"
            for run, i in expected:
                truth, smoothed = offline[(subject, run["experiment"], run["first"], i)]
                mid_ms = int((run["start_s"] + (i * STEP + WINDOW / 2) * SAMPLE_S) * 1000)
                live = label_at(segments, mid_ms)
                missing += live is None
                total += 1
                agree += live == smoothed
                correct_live += live == truth
                correct_offline += smoothed == truth
        assert total == len(offline), f"{total} windows replayed, {len(offline)} evaluated offline"
        agreement = agree / total
        figures(f"activity, streaming vs offline: {total} windows of 9 owners ({sent} packs replayed in "
                f"{replay_s:.0f} s), labels identical {100 * agreement:.2f} %, missing {missing}, "
                f"accuracy live {100 * correct_live / total:.2f} % vs offline (smoothed) "
                f"{100 * correct_offline / total:.2f} %")
        assert agreement >= 0.995, f"only {100 * agreement:.2f} % of the live labels equal the offline ones"
        assert abs(correct_live - correct_offline) / total <= 0.005
    finally:
        broker.close()



def synthetic_pack(start_s: float, samples: int = 50, step_s: float = SAMPLE_S, acc_unit: str = "m/s2",
                   skip: str | None = None) -> bytes:
    """A pack of gentle movement; `skip` leaves one channel out of the middle sample."""
    records = [{"bt": round(start_s, 3)}]
    for i in range(samples):
        for k, (name, unit) in enumerate(CHANNELS):
            if name == skip and i == samples // 2:
                continue
            value = (9.81 if name == "acc_z" else 0.0) + 0.3 * ((i + k) % 5 - 2)
            records.append({"n": name, "u": acc_unit if unit == "m/s2" else unit,
                            "t": round(i * step_s, 3), "v": value})
    return json.dumps(records, separators=(",", ":")).encode()


@pytest.mark.timeout(300)
def test_labels_follow_within_a_second_bad_motion_is_refused_and_an_owner_can_switch_it_off(tmp_path, figures):
    model = require("TRIBUTARY_HAR_MODEL")
    broker = Broker(tmp_path, {"model": {"path": model}}).start()
    try:
        world = people(broker, "ann", "bob")
        ann, ann_password, ann_device, ann_token = world["ann"]
        bob, bob_password, bob_device, bob_token = world["bob"]
        ann_api, bob_api = login(broker, ann, ann_password), login(broker, bob, bob_password)
        topic = f"tributary/v1/{ann_device}/senml"
        dev = device_client(broker, ann_device, ann_token)

        # Latency: one pack a second's worth of samples at a time; when a pack completes a window,
        # how long after its PUBACK the window's label is in the API.
        t0 = T_BASE + 3600
        latencies = []
        for p in range(20):
            dev.publish(topic, synthetic_pack(t0 + p), qos=1)
            acked = time.monotonic()
            samples = (p + 1) * 50
            if samples < WINDOW:
                continue
            window = (samples - WINDOW) // STEP
            if (samples - 50 - WINDOW) // STEP == window and samples - 50 >= WINDOW:
                continue  # this pack completed no window
            # The window's label speaks for its middle 64 samples: until sample 96 of it.
            end_ms = int((t0 + (window * STEP + 96) * SAMPLE_S) * 1000)
            deadline = acked + 10
            while True:
                segments = timeline(broker, ann_api, t0 - 10, t0 + 60)
                if any(s["end_ms"] >= end_ms for s in segments):
                    latencies.append(time.monotonic() - acked)
                    break
                assert time.monotonic() < deadline, f"window {window} not labelled 10 s after its PUBACK"
                time.sleep(0.01)
        latencies.sort()
        figures(f"activity: window end -> label in the API: {len(latencies)} windows, "
                f"p50 {1000 * statistics.median(latencies):.0f} ms, max {1000 * latencies[-1]:.0f} ms")
        assert latencies[-1] <= 1.0, latencies

        # Bad motion: each refused with its reason, nothing labelled from it.
        t1 = T_BASE + 7200
        bad = {
            "25 Hz": synthetic_pack(t1, samples=25, step_s=0.04),
            "wrong unit": synthetic_pack(t1 + 10, acc_unit="g"),
            "missing axis": synthetic_pack(t1 + 20, skip="gyr_y"),
        }
        for payload in bad.values():
            dev.publish(topic, payload, qos=1)
        dev.publish(topic, synthetic_pack(t1 + 40), qos=1)
        dev.publish(topic, synthetic_pack(t1 + 30), qos=1)  # before the last: out of order
        expected = ["40 ms apart", "must be in m/s2, not g", "gyr_y is missing", "out of order"]
        letters = wait_for_letters(broker, ann_api, len(expected))
        reasons = " | ".join(letter["reason"] for letter in letters)
        for phrase in expected:
            assert phrase in reasons, f"{phrase!r} not among the dead letters: {reasons}"
        assert not timeline(broker, ann_api, t1 - 5, t1 + 39), "a label written from refused motion"

        # The same motion as SenML CBOR (RFC 8428 labels: bt -3, n 0, u 1, v 2, t 6) is labelled too.
        t3 = T_BASE + 9000
        for p in range(4):
            records = json.loads(synthetic_pack(t3 + p))
            cbor = [{-3: records[0]["bt"]}] + [{0: r["n"], 1: r["u"], 2: r["v"], 6: r["t"]} for r in records[1:]]
            dev.publish(f"tributary/v1/{ann_device}/senml-cbor", cbor2.dumps(cbor), qos=1)
        deadline = time.monotonic() + 30
        while not timeline(broker, ann_api, t3 - 5, t3 + 10):
            assert time.monotonic() < deadline, "motion sent as SenML CBOR was not labelled"
            time.sleep(0.05)

        # Ann switches the model off: her later motion gets no segment; Bob's still does.
        status, body = api(broker, "PUT", "/api/v1/activity/settings", ann_api, {"enabled": False})
        assert status == 200 and body == {"enabled": False}, body
        # The activity sink reads the owners' switches again every second (docs/model.md).
        time.sleep(1.5)
        t2 = T_BASE + 10_800
        for p in range(4):
            dev.publish(topic, synthetic_pack(t2 + p), qos=1)
        bob_dev = device_client(broker, bob_device, bob_token)
        for p in range(4):
            bob_dev.publish(f"tributary/v1/{bob_device}/senml", synthetic_pack(t2 + p), qos=1)
        # The sink reads the log in order: once Bob's windows are labelled, Ann's were read.
        deadline = time.monotonic() + 30
        while not timeline(broker, bob_api, t2 - 5, t2 + 10):
            assert time.monotonic() < deadline, "bob's motion was not labelled"
            time.sleep(0.05)
        assert not timeline(broker, ann_api, t2 - 5, t2 + 10), "segments written after ann switched off"
        bob_dev.close()
        dev.close()
    finally:
        broker.close()


def wait_for_letters(broker, token: str, want: int) -> list[dict]:
    deadline = time.monotonic() + 30
    while True:
        status, letters = api(broker, "GET", "/api/v1/dead-letters?limit=100", token)
        assert status == 200, letters
        if len(letters) >= want or time.monotonic() > deadline:
            return letters
        time.sleep(0.1)
