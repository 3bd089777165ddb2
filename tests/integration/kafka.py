"""A real Kafka-protocol broker (tansu 0.6.0) for the Kafka tests, and helpers to read what landed.

Apache Kafka cannot run here; tansu speaks the Kafka protocol and keeps its data in sqlite
(docs/testing.md, "tansu 0.6.0 (Kafka protocol)"). Its limits shape this module:

* no topic auto-creation: every test creates its topics (``Tansu.create_topic``);
* 0.6.0 lacks an index on the ``header`` table, without which fetching records that carry
  headers stalls the broker: ``Tansu.start`` creates it once the schema exists;
* the sqlite path is relative to the working directory, so each broker gets its own directory;
* one broker per test run, unique topic and group names per test (``unique_name``);
* a consumer group member that dies without leaving (kill -9) is expired after its session timeout,
  but the survivors are handed their old assignment again in the old generation: the dead member's
  partitions stay unread until the group changes again (a member joins or leaves). Apache Kafka
  reassigns them; tests that kill a group member restart it (test_pipeline_kafka.py).

The independent client is confluent-kafka (the PyPI wheel bundles a current librdkafka; Debian's
librdkafka 2.0.2 cannot talk to tansu).

Environment: ``TANSU_BIN`` — the tansu binary (default ``/opt/tansu-0.6.0/bin/tansu``, which
``scripts/test.sh`` builds).
"""

from __future__ import annotations

import os
import socket
import sqlite3
import subprocess
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

from process import ManagedProcess

DEFAULT_TANSU_BIN = "/opt/tansu-0.6.0/bin/tansu"
START_DEADLINE_S = 30.0
STOP_DEADLINE_S = 10.0
CLI_DEADLINE_S = 30.0
DB_NAME = "tansu.db"

# The index tansu 0.6.0 is missing (docs/testing.md): fetches join `header` on (topition, offset_id).
HEADER_INDEX_SQL = "create index if not exists header_topition_offset on header (topition, offset_id)"

# Consumer settings tansu's classic consumer groups are known to work with (docs/testing.md).
CONSUMER_DEFAULTS = {
    "auto.offset.reset": "earliest",
    "session.timeout.ms": 6000,
    "heartbeat.interval.ms": 1000,
}


def tansu_bin() -> str:
    """The tansu binary: ``TANSU_BIN``, else the build under /opt that scripts/test.sh makes."""
    return os.environ.get("TANSU_BIN") or DEFAULT_TANSU_BIN


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def unique_name(prefix: str) -> str:
    """`prefix` plus a random suffix, limited to the characters Kafka allows in topic names."""
    safe = "".join(c if c.isalnum() or c in "._-" else "-" for c in prefix) or "t"
    return f"{safe}-{uuid.uuid4().hex[:12]}"


class Tansu(ManagedProcess):
    """One tansu broker: a process in its own session, listening on 127.0.0.1:`port`, its sqlite
    database and log in `workdir`. `restart()` keeps the port and the data."""

    name = "tansu"
    stop_deadline_s = STOP_DEADLINE_S

    def __init__(self, workdir: Path, binary: str | None = None):
        workdir = Path(workdir)
        workdir.mkdir(parents=True, exist_ok=True)
        super().__init__(workdir / "tansu.log")
        self.binary = binary or tansu_bin()
        self.host = "127.0.0.1"
        self.port = _free_port()
        self.workdir = workdir
        self.db_path = self.workdir / DB_NAME
        # Seconds the last start took until the header index existed (reported by the tests).
        self.last_start_s: float | None = None

    @property
    def bootstrap(self) -> str:
        """``bootstrap.servers`` for clients: "127.0.0.1:PORT"."""
        return f"{self.host}:{self.port}"

    @property
    def url(self) -> str:
        """The broker as tansu's own CLI names it: tcp://127.0.0.1:PORT."""
        return f"tcp://{self.host}:{self.port}"

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    # -- lifecycle -----------------------------------------------------------

    def start(self) -> "Tansu":
        assert not self.running, "tansu already running"
        if not Path(self.binary).exists():
            raise FileNotFoundError(f"tansu binary {self.binary} not found: run scripts/test.sh "
                                    f"(it builds tansu 0.6.0 into /opt/tansu-0.6.0) or set TANSU_BIN")
        cmd = [self.binary, "broker", "--listener-url", self.url, "--advertised-listener-url", self.url,
               "--storage-engine", f"sqlite://{DB_NAME}"]
        t0 = time.monotonic()
        # tansu colours its log even into a file; plain text reads better in a test report.
        self._spawn(cmd, cwd=self.workdir, env={"RUST_LOG": os.environ.get("RUST_LOG", "warn"),
                                                 "NO_COLOR": os.environ.get("NO_COLOR", "1")})
        deadline = t0 + START_DEADLINE_S
        self.wait_accepting(self.host, self.port, deadline)
        self._create_header_index(deadline)
        self.last_start_s = time.monotonic() - t0
        return self

    def _check_alive(self, what: str):
        rc = self.proc.poll()
        if rc is not None:
            raise AssertionError(f"tansu exited with status {rc} while {what}:\n{self.log_tail()}")

    def _create_header_index(self, deadline: float):
        """Create the missing header index as soon as tansu has made its schema (idempotent, so
        a restart re-runs it harmlessly)."""
        while True:
            self._check_alive("creating its schema")
            if self.db_path.exists():
                con = sqlite3.connect(self.db_path, timeout=10)
                try:
                    has_table = con.execute(
                        "select 1 from sqlite_master where type = 'table' and name = 'header'").fetchone()
                    if has_table:
                        con.execute(HEADER_INDEX_SQL)
                        con.commit()
                        return
                finally:
                    con.close()
            if time.monotonic() >= deadline:
                raise AssertionError(f"tansu made no `header` table in {self.db_path} within "
                                     f"{START_DEADLINE_S}s:\n{self.log_tail()}")
            time.sleep(0.05)

    def create_topic(self, name: str, partitions: int = 1) -> str:
        """Create `name` with tansu's CLI (tansu does not auto-create topics) and wait until the
        broker's metadata lists it with all its partitions. Returns `name`."""
        cmd = [self.binary, "topic", "create", "--broker", self.url, "--partitions", str(partitions), name]
        try:
            res = subprocess.run(cmd, capture_output=True, text=True, timeout=CLI_DEADLINE_S,
                                 stdin=subprocess.DEVNULL, cwd=self.workdir)
        except subprocess.TimeoutExpired as e:
            raise AssertionError(f"`{' '.join(cmd)}` took longer than {CLI_DEADLINE_S}s:\n{self.log_tail()}") from e
        if res.returncode != 0:
            raise AssertionError(f"`{' '.join(cmd)}` failed with {res.returncode}:\n{res.stdout}{res.stderr}\n"
                                 f"broker log:\n{self.log_tail()}")
        self.wait_topic(name, partitions)
        return name

    def wait_topic(self, name: str, partitions: int, timeout: float = 10.0):
        """Wait until Metadata lists `name` with `partitions` partitions, each with a leader."""
        from confluent_kafka.admin import AdminClient

        admin = AdminClient({"bootstrap.servers": self.bootstrap})
        deadline = time.monotonic() + timeout
        last = None
        while True:
            try:
                md = admin.list_topics(topic=name, timeout=5)
                t = md.topics.get(name)
                last = t
                if t is not None and t.error is None and len(t.partitions) == partitions \
                        and all(p.leader >= 0 for p in t.partitions.values()):
                    return
            except Exception as e:  # noqa: BLE001 - retried until the deadline, then reported
                last = e
            if time.monotonic() >= deadline:
                raise AssertionError(f"topic {name} with {partitions} partitions not in metadata "
                                     f"after {timeout}s (last: {last!r})")
            time.sleep(0.1)

    # -- diagnostics ---------------------------------------------------------

    def __repr__(self):
        return f"<tansu {self.bootstrap} dir={self.workdir}>"


# -- reading back --------------------------------------------------------------


@dataclass
class Record:
    """One Kafka record as read back: headers as a dict (a repeated header name keeps its last
    value; `header_list` keeps them all, in order)."""

    key: bytes | None
    value: bytes | None
    headers: dict[str, bytes]
    partition: int
    offset: int
    header_list: list[tuple[str, bytes | None]] = field(default_factory=list, repr=False)


def read_all(bootstrap: str, topic: str, expected: int | None = None, timeout: float = 30.0,
             idle: float = 3.0, config: dict | None = None) -> list[Record]:
    """Read `topic` from the beginning with a fresh consumer group.

    Stops when `expected` records were read, or when nothing new arrived for `idle` seconds
    after the consumer got its partitions, or after `timeout` seconds in all — whatever comes
    first; the caller checks the count. `config` overrides consumer settings.
    """
    from confluent_kafka import Consumer, KafkaError

    conf = {
        "bootstrap.servers": bootstrap,
        "group.id": unique_name("read-all"),
        "enable.auto.commit": False,
        **CONSUMER_DEFAULTS,
        **(config or {}),
    }
    consumer = Consumer(conf)
    assigned_at: list[float] = []

    def on_assign(c, partitions):
        assigned_at.append(time.monotonic())

    records: list[Record] = []
    errors: list[str] = []
    t0 = time.monotonic()
    deadline = t0 + timeout
    last_new: float | None = None
    try:
        consumer.subscribe([topic], on_assign=on_assign)
        while time.monotonic() < deadline:
            if expected is not None and len(records) >= expected:
                break
            # Idle is counted from the assignment or the last record, not from the start: joining
            # a group takes a few seconds and must not look like an empty topic.
            since = last_new or (assigned_at[0] if assigned_at else None)
            if since is not None and time.monotonic() - since >= idle:
                break
            msg = consumer.poll(min(0.5, max(0.0, deadline - time.monotonic())))
            if msg is None:
                continue
            if msg.error():
                if msg.error().code() != KafkaError._PARTITION_EOF:
                    errors.append(str(msg.error()))
                continue
            header_list = list(msg.headers() or [])
            records.append(Record(key=msg.key(), value=msg.value(),
                                  headers={k: v for k, v in header_list},
                                  partition=msg.partition(), offset=msg.offset(),
                                  header_list=header_list))
            last_new = time.monotonic()
    finally:
        consumer.close()
    if errors and expected is not None and len(records) < expected:
        raise AssertionError(f"read {len(records)} of {expected} records from {topic}; "
                             f"consumer errors: {errors[:5]}")
    return records


# -- loss accounting -----------------------------------------------------------


class LossReport(dict):
    """Counts of a delivery check (a dict, so tests can assert on keys); `line()` is its one-line
    form for the `figures` fixture."""

    def line(self) -> str:
        return ("published={published} acknowledged={acknowledged} found={found} "
                "lost={lost} duplicated={duplicated} unexpected={unexpected}").format(**self)

    def __str__(self) -> str:
        return self.line()


def loss_report(published_ids: Iterable, acknowledged_ids: Iterable, found_ids: Iterable) -> LossReport:
    """Compare what was sent with what was found.

    * published, acknowledged: distinct ids;
    * found: distinct ids found (``found_records`` counts every record, duplicates included);
    * lost: acknowledged but not found — the number an at-least-once pipeline must keep at 0;
    * duplicated: ids found more than once (allowed by at-least-once, but counted);
    * unexpected: ids found that were never published (a bug in the test or the pipeline);
    * lost_ids: up to 10 of the lost ids, sorted, to start the search with.
    """
    published = set(published_ids)
    acknowledged = set(acknowledged_ids)
    found_counts = Counter(found_ids)
    found = set(found_counts)
    lost = acknowledged - found
    return LossReport(
        published=len(published),
        acknowledged=len(acknowledged),
        found=len(found),
        found_records=sum(found_counts.values()),
        lost=len(lost),
        duplicated=sum(1 for n in found_counts.values() if n > 1),
        unexpected=len(found - published),
        lost_ids=sorted(lost, key=repr)[:10],
    )
