"""Broker fixtures for the real-client integration tests.

The fixtures start a real broker process on a free loopback port with its own
data directory, and can stop it (SIGTERM), kill it (SIGKILL) and restart it on
the same port and data directory.

Environment:

* ``TRIBUTARY_BIN`` — the ``tributary`` binary, for the broker and the account commands
  (default ``<repo>/target/release/tributary``; with ``CARGO_TARGET_DIR`` set, point it there).
* ``TRIBUTARY_TEST_AGAINST=mosquitto`` — start ``mosquitto -c <generated conf>``
  instead, so the test bodies can be checked against a known-good broker.
  Tests that need tributary-only behaviour are skipped there with a reason
  (``@pytest.mark.tributary_only("why")``), and so are tests where mosquitto 2.0 is known to
  deviate (``@pytest.mark.mosquitto_deviates("how")``).
* ``TRIBUTARY_TEST_RUN_DEVIATIONS=1`` — under mosquitto, run the ``mosquitto_deviates`` tests anyway
  (to re-check that the deviation is still there).

The broker's stderr goes to ``<tmp>/broker.log`` (appended across restarts) and
is attached to the report of a failing test as a section "broker log".
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import time
from pathlib import Path

import pytest

from process import LOG_TAIL_BYTES, ManagedProcess

REPO = Path(__file__).resolve().parents[2]
AGAINST = os.environ.get("TRIBUTARY_TEST_AGAINST", "tributary").strip().lower() or "tributary"
# Nodes that share a store must share the master key that wraps the owners' data keys
# (docs/erasure.md): every process the tests start gets this one, a test key and no secret.
os.environ.setdefault("TRIBUTARY_MASTER_KEY", "7e" * 32)
if AGAINST not in ("tributary", "mosquitto"):
    raise pytest.UsageError(f"TRIBUTARY_TEST_AGAINST must be tributary or mosquitto, not {AGAINST!r}")

START_DEADLINE_S = 20.0
STOP_DEADLINE_S = 20.0

# Brokers alive in this process, so a failing test's report can carry their logs.
_LIVE_BROKERS: list["Broker"] = []


def free_port() -> int:
    """A loopback port that was free a moment ago (the kernel picked it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(predicate, timeout: float, interval: float = 0.02, what: str = "condition"):
    """Poll `predicate` until it returns a truthy value or `timeout` passes.

    Returns the truthy value; raises AssertionError naming `what` on timeout.
    """
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout:.1f}s waiting for {what}")
        time.sleep(interval)


def _toml_value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return str(v)
    return '"' + str(v).replace("\\", "\\\\").replace('"', '\\"') + '"'


def render_toml(config: dict) -> str:
    """Render a two-level dict (top-level keys and [tables]) as TOML."""
    lines = []
    for key, value in config.items():
        if not isinstance(value, dict):
            lines.append(f"{key} = {_toml_value(value)}")
    for key, value in config.items():
        if isinstance(value, dict):
            lines.append(f"[{key}]")
            for k, v in value.items():
                lines.append(f"{k} = {_toml_value(v)}")
    return "\n".join(lines) + "\n"


def tributary_bin() -> str:
    """The `tributary` binary under test: ``TRIBUTARY_BIN``, else the release build in the repo."""
    binary = os.environ.get("TRIBUTARY_BIN") or str(REPO / "target" / "release" / "tributary")
    if not Path(binary).exists():
        pytest.fail(f"tributary binary {binary} not found: run `cargo build --release -p tributary-cli` "
                    f"or set TRIBUTARY_BIN", pytrace=False)
    return binary


class Broker(ManagedProcess):
    """One broker under test: a process bound to 127.0.0.1:`port` with `data_dir`."""

    stop_deadline_s = STOP_DEADLINE_S

    def __init__(self, workdir: Path, config: dict | None = None, extra_args: list[str] | None = None):
        super().__init__(workdir / "broker.log")
        self.kind = self.name = AGAINST
        self.host = "127.0.0.1"
        self.port = free_port()
        # The HTTP API (tributary only): `http_url`.
        self.http_port = free_port()
        self.workdir = workdir
        self.data_dir = workdir / "data"
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.config = config or {}
        # More `tributary serve` flags (other listeners, certificates).
        self.extra_args = list(extra_args or [])

    # -- command lines -------------------------------------------------------

    @property
    def http_url(self) -> str:
        return f"http://{self.host}:{self.http_port}"

    def _tributary_cmd(self) -> list[str]:
        cmd = [tributary_bin(), "serve", "--mqtt", f"{self.host}:{self.port}",
               "--http", f"{self.host}:{self.http_port}",
               "--data-dir", str(self.data_dir), "--allow-anonymous"]
        if self.config:
            cfg = self.workdir / "tributary.toml"
            cfg.write_text(render_toml(self.config))
            cmd += ["--config", str(cfg)]
        return cmd + self.extra_args

    def _mosquitto_cmd(self) -> list[str]:
        binary = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
        lines = [
            f"listener {self.port} {self.host}",
            "allow_anonymous true",
            "persistence true",
            f"persistence_location {self.data_dir}/",
            "max_queued_messages 0",
            "set_tcp_nodelay true",
            "log_dest stderr",
            "log_type error",
            "log_type warning",
            "log_type notice",
            "log_type information",
            "connection_messages true",
            # As root mosquitto would drop to user `mosquitto`, who cannot write the tmp dir.
            "user root",
        ]
        limits = self.config.get("limits", {})
        if "max_packet_size" in limits:
            lines.append(f"max_packet_size {limits['max_packet_size']}")
        if "max_connections" in limits:
            lines.append(f"max_connections {limits['max_connections']}")
        cfg = self.workdir / "mosquitto.conf"
        cfg.write_text("\n".join(lines) + "\n")
        return [binary, "-c", str(cfg)]

    # -- lifecycle -----------------------------------------------------------

    def start(self) -> "Broker":
        # A port free when picked can be taken by another process before the broker binds it (the
        # kernel hands out the same ephemeral ports); a first start then tries new ports, at most
        # twice more. A restart keeps its ports: the tests reconnect to them.
        first_start = self.starts == 0
        for attempt in range(3):
            cmd = self._tributary_cmd() if self.kind == "tributary" else self._mosquitto_cmd()
            self._spawn(cmd, cwd=self.workdir, env={"RUST_BACKTRACE": os.environ.get("RUST_BACKTRACE", "1")})
            if self not in _LIVE_BROKERS:
                _LIVE_BROKERS.append(self)
            try:
                self.wait_accepting(self.host, self.port, time.monotonic() + START_DEADLINE_S)
                return self
            except AssertionError as e:
                taken = "Address already in use" in str(e)
                if not (first_start and taken and attempt < 2) or self.proc.poll() is None:
                    raise
                self._log_file.write(b"=== a port was taken meanwhile: starting again on new ports\n")
                self._log_file.close()
                self._log_file = None
                moved = {self.port: free_port(), self.http_port: free_port()}
                self.port, self.http_port = moved[self.port], moved[self.http_port]
                # The config may name the broker's own address (a cluster node advertises it).
                self.config = _with_ports_moved(self.config, self.host, moved)
        raise AssertionError("unreachable")

    def close(self):
        """Teardown: stop whatever is still running, without asserting anything."""
        super().close()
        if self in _LIVE_BROKERS:
            _LIVE_BROKERS.remove(self)

    def __repr__(self):
        return f"<{self.kind} {self.host}:{self.port} data={self.data_dir}>"


def _with_ports_moved(value, host: str, moved: dict[int, int]):
    """`value` (a config of dicts, lists and scalars) with every "HOST:OLD" in its strings made
    "HOST:NEW" for each OLD -> NEW in `moved`."""
    if isinstance(value, dict):
        return {k: _with_ports_moved(v, host, moved) for k, v in value.items()}
    if isinstance(value, list):
        return [_with_ports_moved(v, host, moved) for v in value]
    if isinstance(value, str):
        pattern = re.compile(rf"{re.escape(host)}:(\d+)(?!\d)")
        return pattern.sub(lambda m: f"{host}:{moved.get(int(m.group(1)), int(m.group(1)))}", value)
    return value


# -- fixtures ----------------------------------------------------------------


def _broker_config(request) -> dict | None:
    marker = request.node.get_closest_marker("broker_config")
    return marker.args[0] if marker else None


@pytest.fixture
def broker(request, tmp_path):
    """A fresh broker per test. `@pytest.mark.broker_config({...})` passes a config file."""
    b = Broker(tmp_path, _broker_config(request))
    try:
        yield b.start()
    finally:
        b.close()


@pytest.fixture(scope="module")
def module_broker(request, tmp_path_factory):
    """One broker shared by a module's tests (the module sets `BROKER_CONFIG` if it needs one)."""
    config = getattr(request.module, "BROKER_CONFIG", None)
    b = Broker(tmp_path_factory.mktemp("broker"), config)
    try:
        yield b.start()
    finally:
        b.close()


def start_secure_broker(workdir: Path, pki, config: dict | None = None, extra_args: list[str] | None = None):
    """A broker with every listener on: plain MQTT, TLS, WebSocket and secure WebSocket (its ports
    as `tls_port`, `ws_port`, `wss_port`), the server certificate of `pki` (certs.Pki) and its CA
    for client certificates."""
    ports = {"tls_port": free_port(), "ws_port": free_port(), "wss_port": free_port()}
    args = ["--mqtt-tls", f"127.0.0.1:{ports['tls_port']}", "--mqtt-ws", f"127.0.0.1:{ports['ws_port']}",
            "--mqtt-wss", f"127.0.0.1:{ports['wss_port']}", "--tls-cert", str(pki.server_cert),
            "--tls-key", str(pki.server_key), "--tls-client-ca", str(pki.ca_cert), *(extra_args or [])]
    b = Broker(workdir, config, extra_args=args)
    for name, port in ports.items():
        setattr(b, name, port)
    b.pki = pki
    return b.start()


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    """Throwaway CA, server and client certificates (certs.Pki)."""
    from certs import Pki

    return Pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="module")
def secure_broker(tmp_path_factory, pki):
    """One broker per module with TLS, WebSocket and secure WebSocket listeners (see start_secure_broker)."""
    if AGAINST != "tributary":
        pytest.skip("the listener tests start tributary's own TLS and WebSocket listeners")
    b = start_secure_broker(tmp_path_factory.mktemp("broker"), pki)
    try:
        yield b
    finally:
        b.close()


@pytest.fixture
def clients(broker):
    """Factory of paho clients on `broker`, all closed at teardown: `clients(V5, clean=False, ...)`."""
    from clients import Clients

    factory = Clients(broker)
    try:
        yield factory
    finally:
        factory.close_all()


_FIGURES: list[tuple[str, str]] = []


@pytest.fixture
def figures(request):
    """`figures("published=...")`: a line printed now and again in the run's closing summary."""

    def record(line: str):
        print(line, flush=True)
        _FIGURES.append((request.node.nodeid, line))

    return record


def pytest_terminal_summary(terminalreporter):
    if _FIGURES:
        terminalreporter.section("figures")
        for nodeid, line in _FIGURES:
            terminalreporter.write_line(f"{nodeid}: {line}")


def pytest_configure(config):
    config.addinivalue_line("markers", "broker_config(dict): TOML config for the test's broker")
    config.addinivalue_line("markers", "tributary_only(reason): skipped when testing against mosquitto")
    config.addinivalue_line("markers", "mosquitto_deviates(reason): mosquitto 2.0 is known not to do this; "
                                       "skipped when testing against mosquitto")


def pytest_report_header(config):
    return f"broker under test: {AGAINST}"


def pytest_runtest_setup(item):
    if AGAINST == "mosquitto":
        names = ["tributary_only"]
        if os.environ.get("TRIBUTARY_TEST_RUN_DEVIATIONS") != "1":
            names.append("mosquitto_deviates")
        for name in names:
            marker = item.get_closest_marker(name)
            if marker:
                reason = marker.args[0] if marker.args else name
                pytest.skip(f"{name.replace('_', ' ')}: {reason}")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if report.failed:
        for b in list(_LIVE_BROKERS):
            state = "running" if b.running else f"exited with {b.proc.returncode if b.proc else None}"
            report.sections.append((f"broker log ({b!r}, {state})", b.log_tail()))


# -- Kafka ---------------------------------------------------------------------
# One Apache Kafka node for the whole run (`kafka`), a three-node cluster per module that asks for
# it (`kafka_cluster`), and tansu for the smoke test on a second engine (`tansu`); see
# tests/integration/kafka.py and docs/testing.md. Tests isolate themselves with unique topic and
# group names.


def unique_topic(prefix: str) -> str:
    """A Kafka topic name no other test uses: `prefix` plus a random suffix."""
    from kafka import unique_name

    return unique_name(prefix)


class _KafkaLogOnFailure:
    """Attaches the Kafka broker's log to the report of a failing test that used `fixture`."""

    def __init__(self, engine, fixture: str):
        self.engine = engine
        self.fixture = fixture

    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_makereport(self, item, call):
        outcome = yield
        report = outcome.get_result()
        if report.failed and self.fixture in getattr(item, "fixturenames", ()):
            state = "running" if self.engine.running else "not running"
            report.sections.append((f"{self.fixture} log ({self.engine!r}, {state})", self.engine.log_tail()))


def _kafka_engine(request, engine, fixture: str):
    reporter = _KafkaLogOnFailure(engine, fixture)
    name = f"tributary-{fixture}-log"
    request.config.pluginmanager.register(reporter, name)
    try:
        yield engine.start()
    finally:
        engine.close()
        request.config.pluginmanager.unregister(reporter)


def _need_kafka():
    from kafka import kafka_missing

    if AGAINST == "mosquitto":
        pytest.skip("the Kafka tests need tributary's Kafka producer; mosquitto has none")
    missing = kafka_missing()
    if missing:
        pytest.fail(missing, pytrace=False)


@pytest.fixture(scope="session")
def kafka(request, tmp_path_factory):
    """The run's Apache Kafka node (kafka.ApacheKafka): `kafka.bootstrap`,
    `kafka.create_topic(name, partitions)`, `stop`/`start`/`restart`/`kill`."""
    from kafka import ApacheKafka

    _need_kafka()
    yield from _kafka_engine(request, ApacheKafka(tmp_path_factory.mktemp("kafka")), "kafka")


@pytest.fixture(scope="module")
def kafka_cluster(request, tmp_path_factory):
    """Three Apache Kafka nodes (kafka.KafkaCluster): replication factor 3, min.insync.replicas 2;
    `kill_node(id)`, `start_node(id)`; `bootstrap` lists all three."""
    from kafka import KafkaCluster

    _need_kafka()
    yield from _kafka_engine(request, KafkaCluster(tmp_path_factory.mktemp("kafka-cluster")), "kafka_cluster")


@pytest.fixture(scope="session")
def tansu(request, tmp_path_factory):
    """A tansu 0.6.0 broker (kafka.Tansu), the second Kafka-protocol engine (one smoke test)."""
    from kafka import Tansu, tansu_bin

    if AGAINST == "mosquitto":
        pytest.skip("the Kafka tests need tributary's Kafka producer; mosquitto has none")
    if not Path(tansu_bin()).exists():
        pytest.fail(f"tansu binary {tansu_bin()} not found: run scripts/provision.sh (it builds tansu 0.6.0 "
                    f"into /opt/tansu-0.6.0, see docs/testing.md) or set TANSU_BIN", pytrace=False)
    yield from _kafka_engine(request, Tansu(tmp_path_factory.mktemp("tansu")), "tansu")


@pytest.fixture
def postgres_url():
    """The URL of a fresh database on the run's PostgreSQL, dropped afterwards (postgres.py)."""
    from postgres import create_database, drop_database

    url = create_database("tributary_t")
    try:
        yield url
    finally:
        drop_database(url)
