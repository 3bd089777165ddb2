"""The Parquet archive and the Parquet export, read back by readers nobody here wrote: pyarrow and DuckDB.
The S3 case writes to a real S3-compatible server (s3s-fs, built by scripts/test.sh; its path in
TRIBUTARY_S3S_FS) and reads back through pyarrow's own S3 client.

| case | expected |
|---|---|
| two owners publish SenML JSON and CBOR over two days | files under owner=NAME/date=YYYY-MM-DD; pyarrow and DuckDB read each owner's measurements exactly as the API returns them |
| export?format=parquet | one Parquet file that pyarrow and DuckDB read as the API's measurements |
| kill -9 of the node while devices publish, restart | every acknowledged measurement in the archive (duplicates counted, none lost) |
| archive on s3://bucket/prefix | the same files through the S3 API; while the S3 server is down the node keeps ingesting and writes the backlog when it is back |
| wrong S3 credentials | one clear warning at start naming the archive; ingest goes on |
"""

from __future__ import annotations

import io
import json
import os
import threading
import time
import urllib.parse
from pathlib import Path

import cbor2
import duckdb
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.fs as pafs
import pyarrow.parquet as pq
import pytest

from api_client import api, call, device_client, login, people
from conftest import Broker, free_port
from process import ManagedProcess

pytestmark = pytest.mark.tributary_only("the archive is tributary's own")

T0 = 1_790_000_000  # seconds: 2026-09-21T14:13:20Z
DAY = 86_400
WAIT_S = 45
# Short batches, so the tests need not wait for the 60 s default.
FAST = {"archive": {"max_age_secs": 0.3}}


def wait_for_rows(read, want: int, what: str) -> pa.Table:
    """`read()` (a table, or None while nothing is there) until it has `want` rows; bounded."""
    deadline = time.monotonic() + WAIT_S
    table = None
    while time.monotonic() < deadline:
        try:
            table = read()
        except (OSError, pa.ArrowInvalid):  # a directory appears between listing and reading
            table = None
        if table is not None and table.num_rows >= want:
            return table
        time.sleep(0.2)
    raise AssertionError(f"{what}: {0 if table is None else table.num_rows} of {want} rows within {WAIT_S}s")


def local_archive(broker) -> pa.Table | None:
    root = broker.data_dir / "archive"
    if not any(root.rglob("*.parquet")):
        return None
    return ds.dataset(root, format="parquet", partitioning="hive").to_table()


def api_points(broker, token: str) -> list[dict]:
    query = urllib.parse.urlencode({"from": (T0 - DAY) * 1000, "to": (T0 + 3 * DAY) * 1000, "limit": 10000})
    status, points = api(broker, "GET", f"/api/v1/measurements?{query}", token)
    assert status == 200, points
    return points


def api_tuples(points: list[dict]) -> list[tuple]:
    return sorted(((p["name"], p.get("unit"), p["time_ms"], p.get("avg"), p.get("text"), p.get("bool"))
                   for p in points), key=repr)


def table_tuples(table: pa.Table) -> list[tuple]:
    """The same shape from an archive or export table (time as milliseconds since the epoch)."""
    rows = table.select(["name", "unit", "time", "value", "text", "bool"]).to_pylist()
    return sorted(((r["name"], r["unit"], int(r["time"].timestamp() * 1000), r["value"], r["text"], r["bool"])
                   for r in rows), key=repr)


def publish_two_days(broker, world: dict) -> dict:
    """Each owner's device publishes a JSON pack on day one and a CBOR pack on day two; returns the
    number of measurements per owner."""
    counts = {}
    for i, (owner, (_, _, device, token)) in enumerate(world.items()):
        dev = device_client(broker, device, token)
        dev.publish(f"tributary/v1/{device}/senml", json.dumps([
            {"bn": f"{device}/", "bt": T0, "n": "hr", "u": "beat/min", "v": 60 + i},
            {"n": "hr", "t": 1, "v": 61 + i},
            {"n": "label", "t": 2, "vs": f"walking-{owner}"}]).encode(), qos=1)
        dev.publish(f"tributary/v1/{device}/senml-cbor", cbor2.dumps([
            {-2: f"{device}/", -3: T0 + DAY, 0: "steps", 1: "count", 2: 100 + i},
            {0: "moving", 6: 1, 4: True}]), qos=1)
        dev.close()
        counts[owner] = 5
    return counts


def test_archive_is_partitioned_by_owner_and_day_and_read_by_pyarrow_and_duckdb(tmp_path, figures):
    broker = Broker(tmp_path, FAST).start()
    try:
        world = people(broker, "ann", "bob")
        counts = publish_two_days(broker, world)
        table = wait_for_rows(lambda: local_archive(broker), sum(counts.values()), "local archive")
        assert table.num_rows == sum(counts.values())
        root = broker.data_dir / "archive"
        for owner, (name, password, _, _) in world.items():
            token = login(broker, name, password)
            expected = api_tuples(api_points(broker, token))
            assert len(expected) == counts[owner]
            mine = table.filter(pa.compute.equal(table["owner"], name))
            assert table_tuples(mine) == expected, owner
            days = sorted(p.name for p in (root / f"owner={name}").iterdir())
            assert days == ["date=2026-09-21", "date=2026-09-22"], days
            # DuckDB, over the same files with its own Parquet reader.
            per_day = duckdb.sql(
                f"select date::varchar, count(*), sum(value) from read_parquet('{root}/**/*.parquet', "
                f"hive_partitioning = true) where owner = '{name}' group by all order by 1").fetchall()
            i = list(world).index(owner)
            assert per_day == [("2026-09-21", 3, float(121 + 2 * i)), ("2026-09-22", 2, float(100 + i))], per_day
        files = sorted(root.rglob("*.parquet"))
        assert not list(root.rglob(".*")), "temporary files left behind"
        figures(f"archive: 10 measurements of 2 owners over 2 days -> {len(files)} Parquet files, "
                "read back by pyarrow and DuckDB equal to the API")
    finally:
        broker.close()


def test_parquet_export_reads_back_as_the_apis_measurements(tmp_path):
    broker = Broker(tmp_path, {"archive": {"enabled": False}}).start()
    try:
        world = people(broker, "cat")
        name, password, device, token = world["cat"]
        dev = device_client(broker, device, token)
        for n in range(3):
            dev.publish(f"tributary/v1/{device}/senml", json.dumps(
                [{"bn": f"{device}/", "bt": T0 + 10 * n, "n": "temp", "u": "Cel", "v": 20.5 + n},
                 {"n": "door", "vb": n % 2 == 0}, {"n": "note", "vs": f"n{n}"}]).encode(), qos=1)
        dev.close()
        api_token = login(broker, name, password)
        deadline = time.monotonic() + WAIT_S
        while len(points := api_points(broker, api_token)) < 9 and time.monotonic() < deadline:
            time.sleep(0.2)
        status, body, content_type = call(broker, "GET", "/api/v1/export?format=parquet", api_token)
        assert (status, content_type) == (200, "application/vnd.apache.parquet"), body[:200]
        table = pq.read_table(io.BytesIO(body))
        assert table_tuples(table) == api_tuples(points)
        exported = table  # DuckDB queries the Arrow table in place
        assert duckdb.sql("select count(*), max(value) from exported").fetchall() == [(9, 22.5)]
        assert not (broker.data_dir / "archive").exists(), "archive off writes nothing"
    finally:
        broker.close()


def publish_numbered(broker, device: str, token: str, numbers, acked: set):
    """Publishes one measurement per number at QoS 1, recording each acknowledged one; stops at the
    first that is not acknowledged (the node went away)."""
    dev = device_client(broker, device, token)
    try:
        for n in numbers:
            info = dev.c.publish(f"tributary/v1/{device}/senml",
                                 json.dumps([{"n": "seq", "t": T0 + n, "v": n}]).encode(), qos=1)
            info.wait_for_publish(timeout=10)
            if not info.is_published():
                return
            acked.add(n)
    except (RuntimeError, ValueError):  # paho: the connection is gone
        return
    finally:
        dev.close()


def distinct_values(table: pa.Table | None) -> int:
    return 0 if table is None else len(set(table.column("value").to_pylist()))


def test_every_acknowledged_measurement_is_archived_across_kill_9(tmp_path, figures):
    broker = Broker(tmp_path, {"archive": {"max_age_secs": 0.2, "max_rows": 500}}).start()
    try:
        _, _, device, token = people(broker, "dan")["dan"]
        total, acked = 3_000, set()
        sender = threading.Thread(target=publish_numbered, args=(broker, device, token, range(total), acked))
        sender.start()
        deadline = time.monotonic() + WAIT_S
        while len(acked) < total // 3 and time.monotonic() < deadline and sender.is_alive():
            time.sleep(0.01)
        broker.kill()
        killed_at = len(acked)
        sender.join(timeout=30)
        assert not sender.is_alive()
        broker.start()
        publish_numbered(broker, device, token, [n for n in range(total) if n not in acked], acked)
        assert len(acked) == total
        deadline = time.monotonic() + WAIT_S
        while distinct_values(table := local_archive(broker)) < total and time.monotonic() < deadline:
            time.sleep(0.2)
        found = distinct_values(table)
        assert found == total, f"{total - found} acknowledged measurements missing from the archive"
        assert set(table.column("value").to_pylist()) == {float(n) for n in range(total)}
        duplicated = table.num_rows - found
        figures(f"archive across kill -9 at {killed_at} acknowledged: published {total}, acknowledged {total}, "
                f"archived {found}, lost 0, duplicated rows {duplicated}")
    finally:
        broker.close()


S3_KEY, S3_SECRET = "tributary-test", "tributary-test-secret"


class S3Server(ManagedProcess):
    """s3s-fs: an S3-compatible server (S3 REST API, SigV4) that keeps buckets as directories of `root`."""

    name = "s3s-fs"

    def __init__(self, workdir: Path, binary: str):
        workdir.mkdir(parents=True, exist_ok=True)
        super().__init__(workdir / "s3s-fs.log")
        self.binary, self.workdir = binary, workdir
        self.root = workdir / "s3"
        self.root.mkdir(exist_ok=True)
        self.port = free_port()

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> "S3Server":
        self._spawn([self.binary, "--host", "127.0.0.1", "--port", str(self.port), "--access-key", S3_KEY,
                     "--secret-key", S3_SECRET, str(self.root)], cwd=self.workdir)
        self.wait_accepting("127.0.0.1", self.port, time.monotonic() + 20)
        return self

    def filesystem(self) -> pafs.S3FileSystem:
        """pyarrow's own S3 client (the AWS SDK for C++) on this server."""
        return pafs.S3FileSystem(access_key=S3_KEY, secret_key=S3_SECRET, region="us-east-1",
                                 endpoint_override=f"127.0.0.1:{self.port}", scheme="http")


@pytest.fixture
def s3(tmp_path):
    binary = os.environ.get("TRIBUTARY_S3S_FS", "/opt/s3s-fs-0.14.1/bin/s3s-fs")
    if not Path(binary).exists():
        pytest.skip(f"no S3-compatible server at {binary} (scripts/test.sh builds s3s-fs and sets TRIBUTARY_S3S_FS)")
    server = S3Server(tmp_path / "s3server", binary).start()
    (server.root / "lake").mkdir()  # a bucket
    try:
        yield server
    finally:
        server.close()


def s3_config(s3: S3Server) -> dict:
    return {"archive": {"url": "s3://lake/tributary", "endpoint": s3.endpoint, "allow_http": True,
                        "region": "us-east-1", "max_age_secs": 0.3}}


def wait_for_log(broker, text: str) -> str:
    deadline = time.monotonic() + WAIT_S
    while text not in (log := broker.log_tail()):
        assert time.monotonic() < deadline, f"{text!r} not in the log:\n{log}"
        time.sleep(0.1)
    return log


def test_archive_on_s3_compatible_storage_rides_out_an_outage(tmp_path, s3, monkeypatch, figures):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", S3_KEY)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", S3_SECRET)
    broker = Broker(tmp_path / "node", s3_config(s3)).start()
    try:
        world = people(broker, "eve", "fay")
        counts = publish_two_days(broker, world)
        filesystem = s3.filesystem()

        def read():
            # The listing names the files (s3s-fs answers a HEAD on a "directory" key with an error, so the
            # dataset is given files, not the prefix).
            listed = filesystem.get_file_info(pafs.FileSelector("lake/tributary", recursive=True,
                                                                allow_not_found=True))
            paths = [f.path for f in listed if f.type == pafs.FileType.File and f.path.endswith(".parquet")]
            if not paths:
                return None
            return ds.dataset(paths, filesystem=filesystem, format="parquet", partition_base_dir="lake/tributary",
                              partitioning=ds.partitioning(flavor="hive")).to_table()

        table = wait_for_rows(read, sum(counts.values()), "S3 archive")
        for owner, (name, password, _, _) in world.items():
            token = login(broker, name, password)
            mine = table.filter(pa.compute.equal(table["owner"], name))
            assert table_tuples(mine) == api_tuples(api_points(broker, token)), owner
        assert "archive ready" in broker.log_tail()

        # The object storage goes away: publishes are still acknowledged (ingest does not depend on
        # the archive), the sink says it retries, and writes the backlog once the server is back.
        s3.stop()
        _, _, device, token = world["eve"]
        acked = set()
        publish_numbered(broker, device, token, range(20), acked)
        assert len(acked) == 20
        wait_for_log(broker, "archive: write failed; retrying")
        s3.start()
        table = wait_for_rows(read, sum(counts.values()) + 20, "S3 archive after the outage")
        snapshot = table  # DuckDB reads the Arrow table pyarrow fetched over S3
        assert duckdb.sql("select count(distinct value) from snapshot where name = 'seq'").fetchall() == [(20,)]
        figures(f"S3 archive (s3s-fs): {table.num_rows} measurements read back over S3 by pyarrow and DuckDB; "
                "20 published during an S3 outage archived after it")
    finally:
        broker.close()


def test_wrong_s3_credentials_are_one_clear_warning_and_ingest_goes_on(tmp_path, s3, monkeypatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", S3_KEY)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "not-the-secret")
    broker = Broker(tmp_path / "node", s3_config(s3)).start()
    try:
        log = wait_for_log(broker, "archive unreachable")
        line = next(line for line in log.splitlines() if "archive unreachable" in line)
        assert "s3://lake/tributary" in line and "not-the-secret" not in log, line
        _, _, device, token = people(broker, "gus")["gus"]
        acked = set()
        publish_numbered(broker, device, token, range(5), acked)
        assert len(acked) == 5
    finally:
        broker.close()
