"""The pipeline on Kafka, shared by two nodes: two `tributary serve` on one Kafka topic with several
partitions (the run's Apache Kafka node) and one PostgreSQL store (TRIBUTARY_TEST_POSTGRES, a fresh
database per test). Their pipelines are one consumer group (`tributary-pipeline`), which shares the partitions.

| case | expected |
|---|---|
| 6 devices of 2 owners, 2 publishing SenML JSON to A, 4 to B (keys on every partition), QoS 1 | both pipelines have partitions of the topic (their "kafka partitions assigned" lines), together all of them; every acknowledged message's records stored exactly once (PostgreSQL rows, none twice) |
| node A killed (-9) while B's devices publish | after the session timeout (6 s) B's pipeline is assigned every partition; every acknowledged message stored exactly once |
| afterwards | each owner's API count is the owner's acknowledged records; B's devices' records are in every partition (read back with confluent-kafka: A had their records when it was killed); `reprocess` from Kafka adds nothing, count and checksum unchanged |

Figures: messages published / acknowledged, rows stored, duplicates, how soon after the kill the survivor
held every partition.
"""

from __future__ import annotations

import json
import re
import shutil
import threading
import time
import zlib

import pyarrow.dataset as ds
import pytest

from accounts_cli import add_device, add_owner, login_when_known
from clients import V5, unique
from conftest import Broker, unique_topic, wait_for
from kafka import read_all
from numbered import Publisher
from postgres import psql
from test_measurements import T0, api, login, measurements
from test_reprocess import reprocess, summary

pytestmark = pytest.mark.tributary_only("the pipeline, Kafka as the log and the store are tributary's own")

PARTITIONS = 4
BEFORE = 200  # messages per device while both nodes run
DURING = 300  # more messages per device of node B, node A killed (and stopped) on the way
KILL_AT = 0.4
GROUP = "tributary-pipeline"
STORED_WITHIN_S = 60
# The pipeline consumers' session.timeout.ms is 6 s: a dead member is noticed after that.
TAKEOVER_S = 15
ASSIGNED = re.compile(r"kafka partitions assigned group=\"?" + GROUP + r"\"? partitions=(\S*)")


class SenmlPublisher(Publisher):
    """numbered.Publisher whose message `n` is a SenML pack of two records at T0 + n seconds."""

    def __init__(self, broker, device: str, token: str, acked: set[int]):
        super().__init__(broker, unique(device), acked, f"tributary/v1/{device}/senml", version=V5,
                         credentials=(device, token))
        self.device = device

    def message(self, n: int) -> bytes:
        return json.dumps([{"bn": f"{self.device}/", "bt": T0 + n, "n": "seq", "v": n},
                           {"n": "twice", "v": 2 * n}]).encode()


def pipeline_partitions(node: Broker, topic: str) -> set[str] | None:
    """The partitions of `topic` in the node's latest pipeline assignment (None: never assigned)."""
    lines = ASSIGNED.findall(node.log_tail(1 << 20))
    if not lines:
        return None
    return {p for p in lines[-1].split(",") if p.startswith(topic + "/")}


def publish(publishers: list[SenmlPublisher], numbers: range, deadline: float):
    """Every number from each publisher (each in a thread), then wait for their acknowledgements."""
    def run(p):
        for n in numbers:
            if not p.publish(n, deadline):
                return
        p.wait_drained(deadline)

    threads = [threading.Thread(target=run, args=(p,), daemon=True) for p in publishers]
    for t in threads:
        t.start()
    return threads


def stored_rows(url: str) -> tuple[int, int]:
    """(rows, rows beyond the first of each device, name and time: the duplicates)."""
    rows = int(psql(url, "select count(*) from measurements"))
    distinct = int(psql(url, "select count(*) from (select distinct device, name, time_ms from measurements) d"))
    return rows, rows - distinct


def names_on_every_partition(prefix: str) -> list[str]:
    """One device name per partition: the producer's partitioner (librdkafka's default,
    consistent_random) puts a key at crc32(key) mod partitions. The test checks where they went."""
    names = {}
    i = 0
    while len(names) < PARTITIONS and i < 10_000:
        name = f"{prefix}b{i}"
        names.setdefault(zlib.crc32(name.encode()) % PARTITIONS, name)
        i += 1
    return [names[p] for p in sorted(names)]


def check_stored_once(url: str, acked: dict[str, set[int]]):
    """Every acknowledged message's two records are stored, each once (waiting, bounded, for the
    pipelines to catch up)."""
    want = sum(2 * len(numbers) for numbers in acked.values())
    wait_for(lambda: stored_rows(url)[0] >= want, timeout=STORED_WITHIN_S, interval=0.2,
             what=f"{want} rows stored")
    time.sleep(0.5)  # a late duplicate would land now
    assert stored_rows(url) == (want, 0)
    for device, numbers in acked.items():
        got = psql(url, f"select count(distinct time_ms) from measurements "
                        f"where device = '{device}' and name = '{device}/seq'")
        assert int(got) == len(numbers), device


def publish_with_fault(publishers: list[SenmlPublisher], acked: dict[str, set[int]], numbers: range,
                       at: float, fault) -> tuple[int, float]:
    """Publish `numbers` from every publisher; call `fault()` once `at` of them were acknowledged.
    Returns (how many of them were acknowledged when the fault came, seconds from the fault until all were)."""
    deadline = time.monotonic() + 60
    count = lambda: sum(len(acked[p.device]) for p in publishers)  # noqa: E731
    start = count()
    threads = publish(publishers, numbers, deadline)
    wait_for(lambda: count() - start >= len(publishers) * len(numbers) * at, timeout=60, what="the fault point")
    at_fault = count() - start
    fault()
    t0 = time.monotonic()
    for t in threads:
        t.join(max(0.0, deadline - time.monotonic()))
    assert count() - start == len(publishers) * len(numbers), {p.device: len(acked[p.device]) for p in publishers}
    return at_fault, time.monotonic() - t0


@pytest.mark.timeout(150)
def test_two_nodes_share_the_pipeline_and_a_killed_nodes_partitions_are_taken_over(
        tmp_path, kafka, postgres_url, figures):
    topic = unique_topic("pipeline")
    config = {"kafka": {"url": f"kafka://{kafka.bootstrap}", "default_topic": topic, "partitions": PARTITIONS},
              "store": {"url": postgres_url}}
    a = Broker(tmp_path / "a", config).start()
    b = Broker(tmp_path / "b", config)
    try:
        # One set of accounts on both nodes: made on A, the file copied to B before it starts.
        suffix = unique("").replace("-", "")[-6:]
        owners = {f"pk{o}{suffix}": None for o in "xy"}
        devices = {}  # device -> (owner, token); names ending in "a" publish to A, in "b…" to B
        for owner in owners:
            owners[owner] = add_owner(a, owner)
            devices[f"{owner}a"] = (owner, add_device(a, owner, f"{owner}a"))
        for i, device in enumerate(names_on_every_partition(f"pk{suffix}")):
            owner = list(owners)[i % len(owners)]
            devices[device] = (owner, add_device(a, owner, device))
        shutil.copy(a.data_dir / "accounts.json", b.data_dir / "accounts.json")
        b.start()

        def shared():
            pa, pb = pipeline_partitions(a, topic), pipeline_partitions(b, topic)
            return pa and pb and len(pa | pb) == PARTITIONS and (pa, pb)

        both = wait_for(shared, timeout=30, interval=0.2, what="both pipelines assigned partitions of the topic")
        acked = {device: set() for device in devices}
        publishers = {}
        for device, (owner, token) in devices.items():
            node = a if device.endswith("a") else b
            login_when_known(node, device, token).close()
            p = SenmlPublisher(node, device, token, acked[device])
            p.connect()
            publishers[device] = p

        # Phase 1: both nodes take publishes, both pipelines store.
        deadline = time.monotonic() + 60
        for t in publish(list(publishers.values()), range(BEFORE), deadline):
            t.join(max(0.0, deadline - time.monotonic()))
        assert all(len(s) == BEFORE for s in acked.values()), {d: len(s) for d, s in acked.items()}
        check_stored_once(postgres_url, acked)
        for device, p in publishers.items():
            if device.endswith("a"):
                p.close()

        # Phase 2: B's devices go on publishing; A is killed on the way.
        b_publishers = [p for d, p in publishers.items() if not d.endswith("a")]
        killed = []

        def kill_a():
            killed.append(time.monotonic())
            a.kill()

        acked_at_kill, _ = publish_with_fault(b_publishers, acked, range(BEFORE, BEFORE + DURING), KILL_AT, kill_a)
        killed_at = killed[0]
        every = {f"{topic}/{i}" for i in range(PARTITIONS)}
        wait_for(lambda: pipeline_partitions(b, topic) == every, timeout=TAKEOVER_S, interval=0.2,
                 what="B's pipeline assigned every partition")
        took_over_s = time.monotonic() - killed_at
        check_stored_once(postgres_url, acked)
        rows, duplicates = stored_rows(postgres_url)
        published = sum(p.attempts for p in publishers.values())
        messages = sum(len(s) for s in acked.values())
        figures(f"two nodes, {PARTITIONS} partitions, pipelines A: {sorted(both[0])}, B: {sorted(both[1])}; "
                f"A killed (-9) when B had acknowledged {acked_at_kill} of {len(b_publishers) * DURING}; "
                f"B held every partition {took_over_s:.1f}s after the kill (at most); "
                f"published={published} acknowledged={messages} rows={rows} duplicates={duplicates}")

        # The owners see exactly their own, through the surviving node's API.
        for owner, password in owners.items():
            token = login(b, owner, password)
            points = measurements(b, token)
            own = sum(2 * len(acked[d]) for d, (o, _) in devices.items() if o == owner)
            assert len(points) == own, owner

        for p in b_publishers:
            p.close()
        b.stop()
        # The fault mattered: B's devices wrote to every partition, so A's pipeline had their
        # records when it was killed (read back from Kafka by an independent client).
        records = read_all(kafka.bootstrap, topic, expected=sum(len(n) for n in acked.values()), timeout=60)
        spread = {r.partition for r in records if r.key and not r.key.decode().endswith("a")}
        assert spread == set(range(PARTITIONS)), spread
        # The archive sinks share their own group the same way: with both nodes stopped (each writes
        # what it gathered when it stops), their archives together hold every acknowledged
        # measurement. A's sink gathers for up to 60 s and was killed before writing, so what it had
        # is B's to archive; which node holds which rows is the group's choice, only the union is
        # checked.
        expected = {(d, n) for d, numbers in acked.items() for n in numbers}
        archived, per_node = set(), []
        for node in (a, b):
            root = node.data_dir / "archive"
            rows_here = ds.dataset(root, format="parquet", partitioning="hive").to_table(
                columns=["device", "name", "value"]).to_pylist() if any(root.rglob("*.parquet")) else []
            per_node.append(len(rows_here))
            archived |= {(r["device"], int(r["value"])) for r in rows_here if r["name"].endswith("/seq")}
        assert not expected - archived, f"{len(expected - archived)} acknowledged measurements not archived"
        figures(f"archives of the two nodes: A {per_node[0]} rows, B {per_node[1]} rows for {2 * len(expected)} "
                f"measurements of {len(expected)} acknowledged messages: every one archived, "
                f"{sum(per_node) - 2 * len(expected)} rows written twice (batches gathered across rebalances)")
        # Reprocessing the topic from Kafka into the same store adds nothing.
        again = summary(reprocess("--data-dir", str(b.data_dir), "--config", str(b.workdir / "tributary.toml")))
        assert (again["new"], again["after_n"], again["after_c"]) == (0, rows, again["before_c"]), again
    finally:
        a.close()
        b.close()
