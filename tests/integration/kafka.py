"""Kafka brokers for the Kafka tests, and helpers to read what landed.

Two engines (docs/testing.md, "The engines"):

* **Apache Kafka 4.1.1**, the reference: ``ApacheKafka`` is one KRaft node (broker and controller
  in one JVM), ``KafkaCluster`` three of them (replication factor 3, ``min.insync.replicas=2``).
  ``scripts/provision.sh`` puts its jars from Maven Central into ``/opt/apache-kafka-4.1.1/libs``.
  Each node gets free ports, a data directory of its own (formatted with ``StorageTool format``
  on its first start; a restart keeps it) and a bounded heap. A start waits for the port, then for
  a Metadata answer that lists the node. Topics are not created on first use
  (``auto.create.topics.enable=false``): Tributary creates its own, the tests create theirs
  (``create_topic``).
* **tansu 0.6.0** (``Tansu``), a Kafka-protocol broker written in Rust with sqlite storage: the
  second engine, kept for one smoke test that Tributary works with a broker that is not Apache
  Kafka. Its limits:

  - no topic auto-creation: every test creates its topics (``Tansu.create_topic``);
  - 0.6.0 lacks an index on the ``header`` table, without which fetching records that carry
    headers stalls the broker: ``Tansu.start`` creates it once the schema exists;
  - the sqlite path is relative to the working directory, so each broker gets its own directory;
  - a consumer group member that dies without leaving (kill -9) is expired after its session
    timeout, but the survivors are handed their old assignment again in the old generation: the
    dead member's partitions stay unread until the group changes again. Apache Kafka reassigns
    them.

Both are one broker (or cluster) per test run or module: tests use unique topic and group names
(``unique_name``). The independent client is confluent-kafka (the PyPI wheel bundles a current
librdkafka).

Environment: ``APACHE_KAFKA_HOME`` — where Apache Kafka's ``libs/`` is (default
``/opt/apache-kafka-4.1.1``); ``JAVA_HOME`` — the Java runtime (default: ``java`` on ``PATH``);
``TANSU_BIN`` — the tansu binary (default ``/opt/tansu-0.6.0/bin/tansu``).
"""

from __future__ import annotations

import base64
import os
import shutil
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


# -- Apache Kafka ----------------------------------------------------------------

DEFAULT_KAFKA_HOME = "/opt/apache-kafka-4.1.1"
# A JVM on two shared cores starts a KRaft node in 5-10 s, three of them at once in 15-30 s.
KAFKA_START_DEADLINE_S = 120.0
# SIGTERM: a controlled shutdown, a few seconds for one node.
KAFKA_STOP_DEADLINE_S = 60.0
KAFKA_JVM_OPTS = ["-Xms128m", "-Xmx512m", "-XX:+UseG1GC", "-Djava.awt.headless=true"]

# Every node: the tests' settings (docs/testing.md, "Apache Kafka 4.1.1").
KAFKA_TEST_SETTINGS = {
    "auto.create.topics.enable": "false",
    "group.initial.rebalance.delay.ms": "0",
    "num.partitions": "1",
    # Fewer partitions than the default 50 make the first consumer group's start faster.
    "offsets.topic.num.partitions": "10",
    "transaction.state.log.num.partitions": "10",
    # A dead broker is fenced (its partitions get new leaders) after 6 s instead of 9 s.
    "broker.heartbeat.interval.ms": "1000",
    "broker.session.timeout.ms": "6000",
    "log.dirs": None,  # set per node
}
# One node: everything has one replica.
SINGLE_NODE_SETTINGS = {
    "default.replication.factor": "1",
    "min.insync.replicas": "1",
    "offsets.topic.replication.factor": "1",
    "transaction.state.log.replication.factor": "1",
    "transaction.state.log.min.isr": "1",
    "share.coordinator.state.topic.replication.factor": "1",
    "share.coordinator.state.topic.min.isr": "1",
}
# Three nodes: three replicas, two of which must have a write (with acks=all) before it is acknowledged.
CLUSTER_SETTINGS = {
    "default.replication.factor": "3",
    "min.insync.replicas": "2",
    "offsets.topic.replication.factor": "3",
    "transaction.state.log.replication.factor": "3",
    "transaction.state.log.min.isr": "2",
    "share.coordinator.state.topic.replication.factor": "3",
    "share.coordinator.state.topic.min.isr": "2",
}

# log4j2 (bound to Kafka's SLF4J by log4j-slf4j-impl): warnings and errors into the node's log.
LOG4J2_PROPERTIES = """\
status = error
appender.out.type = Console
appender.out.name = OUT
appender.out.layout.type = PatternLayout
appender.out.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = WARN
rootLogger.appenderRef.out.ref = OUT
"""


def kafka_home() -> Path:
    """Where Apache Kafka's jars are (``libs/``): ``APACHE_KAFKA_HOME``, else what provision.sh installs."""
    return Path(os.environ.get("APACHE_KAFKA_HOME") or DEFAULT_KAFKA_HOME)


def kafka_missing() -> str | None:
    """Why Apache Kafka cannot be started here (None: it can)."""
    libs = kafka_home() / "libs"
    if not list(libs.glob("kafka_2.13-*.jar")):
        return (f"Apache Kafka not found in {libs}: run scripts/provision.sh (it installs Apache Kafka "
                f"4.1.1 there) or set APACHE_KAFKA_HOME")
    if not Path(java_bin()).exists() and shutil.which(java_bin()) is None:
        return "no Java runtime: Apache Kafka needs Java 17 (scripts/provision.sh installs it)"
    return None


def java_bin() -> str:
    home = os.environ.get("JAVA_HOME")
    if home and (Path(home) / "bin" / "java").exists():
        return str(Path(home) / "bin" / "java")
    return shutil.which("java") or "java"


def new_cluster_id() -> str:
    """A KRaft cluster id: 16 random bytes, URL-safe base64 without padding (what
    ``StorageTool random-uuid`` prints, without starting a JVM). Like Kafka's own, never one that
    starts with "-": `StorageTool format -t -x…` reads it as an option and fails (1 id in 64)."""
    for _ in range(1000):  # 1 id in 64 is drawn again
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not cluster_id.startswith("-"):
            return cluster_id
    raise AssertionError("no KRaft cluster id without a leading '-' in 1000 draws")


def metadata(bootstrap: str, timeout: float = 5.0):
    """One Metadata answer (confluent-kafka ClusterMetadata) from `bootstrap`."""
    from confluent_kafka.admin import AdminClient

    return AdminClient({"bootstrap.servers": bootstrap}).list_topics(timeout=timeout)


def wait_topic(bootstrap: str, name: str, partitions: int, timeout: float = 30.0, replicas: int | None = None):
    """Wait until Metadata lists `name` with `partitions` partitions, each with a leader (and, with
    `replicas`, that many in sync)."""
    from confluent_kafka.admin import AdminClient

    admin = AdminClient({"bootstrap.servers": bootstrap})
    deadline = time.monotonic() + timeout
    last = None
    while True:
        try:
            md = admin.list_topics(topic=name, timeout=5)
            t = md.topics.get(name)
            last = t
            if t is not None and t.error is None and len(t.partitions) == partitions \
                    and all(p.leader >= 0 for p in t.partitions.values()) \
                    and (replicas is None or all(len(p.isrs) >= replicas for p in t.partitions.values())):
                return
        except Exception as e:  # noqa: BLE001 - retried until the deadline, then reported
            last = e
        if time.monotonic() >= deadline:
            raise AssertionError(f"topic {name} with {partitions} partitions not in metadata "
                                 f"after {timeout}s (last: {last!r})")
        time.sleep(0.1)


def create_topic(bootstrap: str, name: str, partitions: int = 1, replication_factor: int = -1,
                 config: dict | None = None, timeout: float = 30.0) -> str:
    """CreateTopics through the AdminClient (replication factor -1: the broker's default), then wait
    until Metadata lists every partition with a leader. Returns `name`."""
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient({"bootstrap.servers": bootstrap})
    futures = admin.create_topics([NewTopic(name, partitions, replication_factor, config=config or {})],
                                  operation_timeout=timeout, request_timeout=timeout)
    futures[name].result(timeout)
    wait_topic(bootstrap, name, partitions, timeout)
    return name


class KafkaNode(ManagedProcess):
    """One Apache Kafka KRaft node (broker and controller in one JVM) on 127.0.0.1: the client
    listener on `port`, the controller's on `controller_port`, data, configuration and log in
    `workdir`. `restart()` keeps the ports and the data."""

    name = "kafka"
    stop_deadline_s = KAFKA_STOP_DEADLINE_S

    def __init__(self, workdir: Path, node_id: int = 1, cluster_id: str | None = None,
                 port: int | None = None, controller_port: int | None = None, voters: str | None = None,
                 settings: dict | None = None):
        workdir = Path(workdir)
        workdir.mkdir(parents=True, exist_ok=True)
        super().__init__(workdir / "kafka.log")
        self.host = "127.0.0.1"
        self.node_id = node_id
        self.cluster_id = cluster_id or new_cluster_id()
        self.port = port or _free_port()
        self.controller_port = controller_port or _free_port()
        self.voters = voters or f"{node_id}@{self.host}:{self.controller_port}"
        self.workdir = workdir
        self.data_dir = workdir / "data"
        self.config_path = workdir / "server.properties"
        self.settings = {**KAFKA_TEST_SETTINGS, **SINGLE_NODE_SETTINGS, **(settings or {})}
        # Seconds the last start took until the node answered Metadata.
        self.last_start_s: float | None = None

    @property
    def bootstrap(self) -> str:
        """``bootstrap.servers`` for clients: "127.0.0.1:PORT"."""
        return f"{self.host}:{self.port}"

    def properties(self) -> dict:
        return {
            "process.roles": "broker,controller",
            "node.id": str(self.node_id),
            "controller.quorum.voters": self.voters,
            "listeners": f"PLAINTEXT://{self.host}:{self.port},CONTROLLER://{self.host}:{self.controller_port}",
            "advertised.listeners": f"PLAINTEXT://{self.host}:{self.port}",
            "controller.listener.names": "CONTROLLER",
            "inter.broker.listener.name": "PLAINTEXT",
            "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
            **self.settings,
            "log.dirs": str(self.data_dir),
        }

    def _java(self, main: str, *args: str) -> list[str]:
        return [java_bin(), *KAFKA_JVM_OPTS, f"-Dlog4j2.configurationFile={self.workdir / 'log4j2.properties'}",
                "-cp", str(kafka_home() / "libs" / "*"), main, *args]

    def _format(self):
        """`StorageTool format` on the first start (a restart keeps the formatted data)."""
        if (self.data_dir / "meta.properties").exists():
            return
        cmd = self._java("kafka.tools.StorageTool", "format", "-t", self.cluster_id, "-c", str(self.config_path))
        res = subprocess.run(cmd, capture_output=True, text=True, timeout=CLI_DEADLINE_S * 2,
                             stdin=subprocess.DEVNULL, cwd=self.workdir)
        if res.returncode != 0:
            raise AssertionError(f"`StorageTool format` failed with {res.returncode}:\n{res.stdout}{res.stderr}")

    # -- lifecycle -----------------------------------------------------------

    def launch(self):
        """Write the configuration, format the data directory if new, start the JVM; no waiting."""
        missing = kafka_missing()
        if missing:
            raise FileNotFoundError(missing)
        self.config_path.write_text("".join(f"{k}={v}\n" for k, v in self.properties().items()))
        (self.workdir / "log4j2.properties").write_text(LOG4J2_PROPERTIES)
        self._format()
        self._t0 = time.monotonic()
        self._spawn(self._java("kafka.Kafka", str(self.config_path)), cwd=self.workdir)

    def wait_ready(self, deadline: float):
        """Until the port accepts and a Metadata answer lists this node as a broker."""
        self.wait_accepting(self.host, self.port, deadline)
        last = None
        while True:
            rc = self.proc.poll()
            if rc is not None:
                raise AssertionError(f"kafka node {self.node_id} exited with status {rc} while starting:\n"
                                     f"{self.log_tail()}")
            try:
                md = metadata(self.bootstrap, timeout=max(0.5, min(5.0, deadline - time.monotonic())))
                if self.node_id in md.brokers:
                    break
                last = f"brokers {sorted(md.brokers)}"
            except Exception as e:  # noqa: BLE001 - retried until the deadline, then reported
                last = e
            if time.monotonic() >= deadline:
                raise AssertionError(f"kafka node {self.node_id} gave no Metadata answer listing itself in time "
                                     f"(last: {last!r}):\n{self.log_tail()}")
            time.sleep(0.2)
        self.last_start_s = time.monotonic() - self._t0

    def start(self) -> "KafkaNode":
        self.launch()
        self.wait_ready(time.monotonic() + KAFKA_START_DEADLINE_S)
        return self

    def __repr__(self):
        return f"<apache kafka node {self.node_id} {self.bootstrap} dir={self.workdir}>"


class ApacheKafka(KafkaNode):
    """One Apache Kafka node for a test run, with the interface of `Tansu`: `bootstrap`,
    `create_topic`, `wait_topic`, `start`, `stop`, `kill`, `restart`, `last_start_s`, `log_tail`."""

    def create_topic(self, name: str, partitions: int = 1) -> str:
        return create_topic(self.bootstrap, name, partitions)

    def wait_topic(self, name: str, partitions: int, timeout: float = 30.0):
        wait_topic(self.bootstrap, name, partitions, timeout)


class KafkaCluster:
    """`size` Apache Kafka KRaft nodes, each broker and controller (node ids 1..size, every node a
    voter), with replication factor `size` by default and ``min.insync.replicas=2``.
    `kill_node(id)` SIGKILLs one, `start_node(id)` starts it again with its data."""

    def __init__(self, workdir: Path, size: int = 3, settings: dict | None = None):
        workdir = Path(workdir)
        cluster_id = new_cluster_id()
        ports = [(_free_port(), _free_port()) for _ in range(size)]
        voters = ",".join(f"{i + 1}@127.0.0.1:{c}" for i, (_, c) in enumerate(ports))
        self.nodes = [KafkaNode(workdir / f"node{i + 1}", node_id=i + 1, cluster_id=cluster_id, port=p,
                                controller_port=c, voters=voters, settings={**CLUSTER_SETTINGS, **(settings or {})})
                      for i, (p, c) in enumerate(ports)]
        self.last_start_s: float | None = None

    @property
    def bootstrap(self) -> str:
        """Every node's address, comma-separated."""
        return ",".join(n.bootstrap for n in self.nodes)

    def node(self, node_id: int) -> KafkaNode:
        return self.nodes[node_id - 1]

    def start(self) -> "KafkaCluster":
        """Start every node at once (a quorum needs a majority of them), wait for each, then for a
        Metadata answer listing all of them."""
        t0 = time.monotonic()
        for n in self.nodes:
            n.launch()
        deadline = t0 + KAFKA_START_DEADLINE_S
        for n in self.nodes:
            n.wait_ready(deadline)
        self.wait_brokers(len(self.nodes), deadline)
        self.last_start_s = time.monotonic() - t0
        return self

    def wait_brokers(self, count: int, deadline: float):
        last = None
        while True:
            try:
                last = sorted(metadata(self.bootstrap).brokers)
                if len(last) >= count:
                    return
            except Exception as e:  # noqa: BLE001 - retried until the deadline, then reported
                last = e
            if time.monotonic() >= deadline:
                raise AssertionError(f"{count} brokers not in metadata in time (last: {last!r})")
            time.sleep(0.2)

    def kill_node(self, node_id: int) -> int:
        """SIGKILL one node: nothing flushed, no controlled shutdown."""
        return self.node(node_id).kill()

    def start_node(self, node_id: int) -> KafkaNode:
        """Start a stopped or killed node again, on its ports and with its data."""
        return self.node(node_id).start()

    def restart_node(self, node_id: int, graceful: bool = True) -> KafkaNode:
        return self.node(node_id).restart(graceful)

    def create_topic(self, name: str, partitions: int = 1, replication_factor: int = -1) -> str:
        return create_topic(self.bootstrap, name, partitions, replication_factor)

    def wait_topic(self, name: str, partitions: int, timeout: float = 30.0, replicas: int | None = None):
        wait_topic(self.bootstrap, name, partitions, timeout, replicas)

    @property
    def running(self) -> bool:
        return any(n.running for n in self.nodes)

    def log_tail(self, limit: int = 16 * 1024) -> str:
        return "\n".join(f"--- node {n.node_id} ({'running' if n.running else 'not running'}) ---\n"
                         f"{n.log_tail(limit)}" for n in self.nodes)

    def close(self):
        """Teardown: SIGKILL every node still running (its data is thrown away; a controlled
        shutdown of the last nodes would wait for a quorum that is leaving)."""
        for n in self.nodes:
            if n.running:
                try:
                    n.kill()
                except AssertionError:
                    pass
            n.close()

    def __repr__(self):
        return f"<apache kafka cluster {self.bootstrap}>"


# -- tansu ---------------------------------------------------------------------


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
        wait_topic(self.bootstrap, name, partitions, timeout)

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
