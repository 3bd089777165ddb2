"""`tributary reprocess`: the whole log read again into the store, with `serve` stopped — on the
embedded log and on Kafka (`--log kafka://`, the run's Apache Kafka node), into SQLite.

| case | expected |
|---|---|
| owner signed up through the API, a device added through the API, paho publishes SenML (and one malformed message, one that is no SenML); serve stopped; `reprocess` | exit 0; 0 measurements new, all already stored; count and checksum before == after |
| the store file deleted; `reprocess` | every measurement new; count and checksum equal to the original store's; serve started again, the API returns the same measurements |
| `reprocess` while serve runs on the embedded log | exit 1, "in use", within seconds |
| `reprocess` on a data dir without a log; with a store URL that cannot be | exit 1, the message names what is wrong |
"""

from __future__ import annotations

import json
import re
import subprocess
import time
from pathlib import Path

import pytest

from clients import V5, Client, unique
from conftest import Broker, tributary_bin, unique_topic, wait_for
from test_measurements import T0, api, as_tuples, login, measurements

pytestmark = pytest.mark.tributary_only("reprocess, the pipeline and the store are tributary's own")

MESSAGES = 40
RECORDS_PER_MESSAGE = 3
REPROCESS_TIMEOUT_S = 60

SUMMARY = re.compile(
    r"measurements new:\s+(?P<new>\d+).*?measurements already stored:\s+(?P<old>\d+).*?"
    r"dead letters:\s+(?P<dead>\d+).*?store before:\s+(?P<before_n>\d+) rows, checksum (?P<before_c>[0-9a-f]+)"
    r".*?store after:\s+(?P<after_n>\d+) rows, checksum (?P<after_c>[0-9a-f]+)", re.S)


def reprocess(*args: str) -> subprocess.CompletedProcess:
    """`tributary reprocess ARGS`, whatever its exit status."""
    return subprocess.run([tributary_bin(), "reprocess", *args], capture_output=True, text=True,
                          timeout=REPROCESS_TIMEOUT_S, stdin=subprocess.DEVNULL)


def summary(out: subprocess.CompletedProcess) -> dict:
    assert out.returncode == 0, f"reprocess failed ({out.returncode}):\n{out.stdout}\n{out.stderr}"
    match = SUMMARY.search(out.stdout)
    assert match, f"no summary in:\n{out.stdout}\n{out.stderr}"
    return {k: (v if k.endswith("_c") else int(v)) for k, v in match.groupdict().items()}


def sign_up_with_device(broker) -> tuple[str, str, str, str]:
    """An owner signed up through the API with a device added through the API:
    (owner, password, device, device token)."""
    suffix = unique("").replace("-", "")[-8:]
    owner, password, device = f"rp{suffix}", f"pw-{suffix}-secret", f"rpdev{suffix}"
    status, body = api(broker, "POST", "/api/v1/signup", body={"name": owner, "password": password})
    assert status == 201, body
    token = login(broker, owner, password)
    status, body = api(broker, "POST", "/api/v1/devices", token, body={"name": device})
    assert status == 201, body
    # The owner names the device; its MQTT user name is the id the server made.
    assert body["name"] == device and body["id"] != device, body
    return owner, password, body["id"], body["token"]


def publish_senml(broker, device: str, token: str):
    """MESSAGES SenML packs of RECORDS_PER_MESSAGE records, one malformed pack, one raw message."""
    def connected():
        client = Client(broker, V5)
        client.c.username_pw_set(device, token)
        ack = client.connect(expect_success=False)
        if ack.reason_code == 0:
            return client
        client.close()  # the broker reloads accounts.json once a second
        return None

    client = wait_for(connected, timeout=10, interval=0.2, what=f"device {device} accepted")
    topic = f"tributary/v1/{device}/senml"
    for i in range(MESSAGES):
        pack = [{"bn": f"{device}/", "bt": T0 + i, "n": "hr", "u": "beat/min", "v": 60 + i},
                {"n": "temp", "u": "Cel", "v": 20 + i / 4},
                {"n": "label", "vs": f"m{i}"}]
        client.publish(topic, json.dumps(pack).encode(), qos=1)
    client.publish(topic, b"{not json", qos=1)
    client.publish(f"tributary/v1/{device}/raw", b"61", qos=1)
    client.close()


def store_files(data_dir: Path) -> list[Path]:
    return [p for p in data_dir.glob("store.sqlite*")]


@pytest.fixture(params=["embedded", "kafka"])
def log_kind(request):
    if request.param == "kafka":
        request.getfixturevalue("kafka")
    return request.param


@pytest.mark.timeout(180)
def test_reprocess_changes_nothing_and_rebuilds_a_deleted_store(log_kind, request, tmp_path, figures):
    # Sealed payloads cannot rebuild a deleted store: the owners' wrapped keys live in the store
    # (docs/erasure.md), so this test, which deletes it, runs with sealing off.
    config, log_args = {"erasure": {"encrypt": False}}, []
    if log_kind == "kafka":
        kafka = request.getfixturevalue("kafka")
        config["kafka"] = {"url": f"kafka://{kafka.bootstrap}", "default_topic": unique_topic("reprocess"),
                           "partitions": 3}
        log_args = ["--log", f"kafka://{kafka.bootstrap}", "--config", str(tmp_path / "tributary.toml")]
    broker = Broker(tmp_path, config).start()
    try:
        owner, password, device, token = sign_up_with_device(broker)
        publish_senml(broker, device, token)
        want = MESSAGES * RECORDS_PER_MESSAGE
        api_token = login(broker, owner, password)
        original = as_tuples(measurements(broker, api_token, want=want))
        assert len(original) == want
        wait_for(lambda: len(api(broker, "GET", "/api/v1/dead-letters", api_token)[1]) == 1, timeout=30,
                 interval=0.2, what="the dead letter")
        if log_kind == "embedded":
            # serve holds the embedded log: reprocess refuses at once rather than read beside it.
            t0 = time.monotonic()
            busy = reprocess("--data-dir", str(broker.data_dir))
            assert busy.returncode == 1 and "in use" in busy.stderr, busy.stderr
            assert time.monotonic() - t0 < 10
        broker.stop()

        data = ["--data-dir", str(broker.data_dir), *log_args]
        again = summary(reprocess(*data))
        assert (again["new"], again["old"], again["dead"]) == (0, want, 1), again
        assert (again["before_n"], again["before_c"]) == (again["after_n"], again["after_c"]), again
        assert again["before_n"] == want

        for path in store_files(broker.data_dir):
            path.unlink()
        rebuilt = summary(reprocess(*data))
        assert (rebuilt["new"], rebuilt["old"], rebuilt["before_n"]) == (want, 0, 0), rebuilt
        assert (rebuilt["after_n"], rebuilt["after_c"]) == (again["after_n"], again["after_c"]), rebuilt
        figures(f"reprocess on the {log_kind} log: {want} measurements; again: 0 new, checksum unchanged "
                f"({again['after_c']}); store deleted and rebuilt: {rebuilt['new']} new, same checksum")

        broker.start()
        api_token = login(broker, owner, password)
        assert as_tuples(measurements(broker, api_token)) == original
        status, letters = api(broker, "GET", "/api/v1/dead-letters", api_token)
        assert status == 200 and len(letters) == 1, letters
    finally:
        broker.close()


def test_reprocess_without_a_log_or_with_a_bad_store_says_why(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    out = reprocess("--data-dir", str(empty))
    assert out.returncode == 1 and "no log in" in out.stderr and str(empty) in out.stderr, out.stderr
    assert not (empty / "log").exists(), "reprocess must not create a log where there was none"

    broker = Broker(tmp_path / "node").start()
    broker.stop()
    out = reprocess("--data-dir", str(broker.data_dir), "--store", "mysql://somewhere/db")
    assert out.returncode == 1 and "measurements store" in out.stderr and "mysql://" in out.stderr, out.stderr
    out = reprocess("--data-dir", str(broker.data_dir), "--log", "nats://x")
    assert out.returncode == 1 and "--log" in out.stderr, out.stderr
