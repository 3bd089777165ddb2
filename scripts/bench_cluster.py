#!/usr/bin/env python3
"""Cluster on Kafka: QoS 1 throughput on the embedded log beside 1-3 nodes on Apache Kafka behind HAProxy.

One run, side by side (docs/benchmarks.md, "Cluster on Kafka"):

  a  one node on its embedded log, clients connected directly
  b  one node on Apache Kafka, clients through HAProxy
  c  two nodes on that Kafka behind HAProxy (leastconn): publishers and subscribers spread over them
  d  three nodes likewise

Every scenario runs the same `tributary bench pub`: --publishers x --messages x --size B at QoS 1, and
--subscribers subscribers on `bench/#` that each receive every message. With several nodes a
subscriber on one node receives what was published on another through Kafka (every node tails the
Kafka topic into its local log). The figures: publishes acknowledged per second, messages delivered
per second (summed over subscribers), publish->PUBACK p50/p99, and the ratio to (a).

Apache Kafka 4.1.1 is one KRaft node (broker and controller in one JVM, heap bounded to 512 MiB),
started once by the script as tests/integration/kafka.py starts it; each scenario run gets a Kafka
topic and consumer group prefix of its own. HAProxy 2.6 runs with the configuration of
docs/cluster.md (unprivileged, as `nobody` when run as root) and the nodes join it by themselves
through its runtime API (`[cluster]`). Nodes are started fresh for every run.

While the bench runs the script reads the CPU time of every process (Kafka's JVM, each node,
HAProxy, the bench) from /proc, and each node's /metrics afterwards for
`tributary_log_append_seconds` (publish handed to the log -> durable, or acknowledged by Kafka):
what limits a scenario. The table goes to stdout, every raw JSON line to stderr.

    .venv/bin/python scripts/bench_cluster.py [--runs 2] [--scenarios abcd] [--messages 150000] [--inflight 64]
                                              [--warmups 1]

It needs confluent-kafka (in the tests' .venv) to see when Kafka is ready, Java 17 and Apache
Kafka's jars under --kafka-home (scripts/provision.sh), and haproxy on PATH. A run cut short by
--seconds is marked [time_limit] in the per-run line; its "lost" then counts the messages still
on their way when it stopped.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "integration"))
import kafka as kafka_helpers  # noqa: E402  (tests/integration/kafka.py)
from conftest import render_toml  # noqa: E402  (the tests' config writer)
from test_cluster import Haproxy  # noqa: E402  (HAProxy with docs/cluster.md's configuration)

BACKEND = "mqtt_nodes"
# The Apache Kafka node of this run (kafka.ApacheKafka), when a scenario needs one.
KAFKA = None
TICKS = os.sysconf("SC_CLK_TCK")
SCENARIOS = {
    "a": ("one node, embedded log, direct", 0),
    "b": ("one node on Kafka, via HAProxy", 1),
    "c": ("two nodes on Kafka, via HAProxy", 2),
    "d": ("three nodes on Kafka, via HAProxy", 3),
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise RuntimeError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(0.1)


def cpu_seconds(pid: int) -> float:
    """utime + stime of the process (all its threads), in seconds; 0 once it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / TICKS


def thread_cpu(pid: int) -> dict[str, float]:
    """CPU seconds per thread name of the process (threads of one name summed)."""
    by_name: dict[str, float] = {}
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            head, tail = (task / "stat").read_text().rsplit(")", 1)
        except OSError:
            continue
        name, fields = head.split("(", 1)[1], tail.split()
        by_name[name] = by_name.get(name, 0.0) + (int(fields[11]) + int(fields[12])) / TICKS
    return by_name


def busiest(before: dict[str, float], after: dict[str, float], wall: float, n: int = 4) -> list:
    """The `n` thread names that used the most CPU between two `thread_cpu` readings, in cores."""
    used = {k: v - before.get(k, 0.0) for k, v in after.items()}
    return [(k, round(v / wall, 2)) for k, v in sorted(used.items(), key=lambda kv: -kv[1])[:n] if v > 0]


class Node:
    """One `tributary serve` with a data directory of its own; on Kafka and in HAProxy's backend when
    given them."""

    def __init__(self, binary: str, workdir: Path, kafka: str | None = None, topic: str | None = None,
                 haproxy: Haproxy | None = None):
        self.workdir = workdir
        workdir.mkdir(parents=True)
        self.port, self.http_port = free_port(), free_port()
        config = {
            # Every client comes from 127.0.0.1: no per-source connection rate.
            "limits": {"max_connections": 20000, "max_connections_per_sec_per_source": 0},
        }
        if kafka:
            # A topic and group names of its own for every run: nodes of a former run leave nothing
            # behind that this one reads.
            config["kafka"] = {"url": f"kafka://{kafka}", "default_topic": topic, "group_prefix": topic}
        if haproxy:
            config["mqtt"] = {"proxy_protocol": True}
            config["cluster"] = {"haproxy_api": str(haproxy.socket), "advertise": f"127.0.0.1:{self.port}",
                                 "drain_secs": 1}
        (workdir / "tributary.toml").write_text(render_toml(config))
        cmd = [binary, "serve", "--mqtt", f"127.0.0.1:{self.port}", "--http", f"127.0.0.1:{self.http_port}",
               "--data-dir", str(workdir / "data"), "--allow-anonymous", "--config", str(workdir / "tributary.toml")]
        self.log = open(workdir / "node.log", "wb")
        self.proc = subprocess.Popen(cmd, stdout=self.log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                     cwd=workdir, start_new_session=True)

    @property
    def server_name(self) -> str:
        return "tributary-" + (self.workdir / "data" / "node_id").read_text().strip()

    def accepting(self) -> bool:
        if self.proc.poll() is not None:
            raise RuntimeError(f"node exited: {(self.workdir / 'node.log').read_text()[-3000:]}")
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                return True
        except OSError:
            return False

    def metrics(self) -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.http_port}/metrics", timeout=5) as r:
            return r.read().decode()

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()


def append_histogram(text: str) -> dict:
    """`tributary_log_append_seconds` from one /metrics text: cumulative buckets, sum, count."""
    buckets, total, count = {}, 0.0, 0
    for line in text.splitlines():
        if line.startswith("tributary_log_append_seconds_bucket"):
            le = re.search(r'le="([^"]+)"', line)[1]
            buckets[float("inf") if le == "+Inf" else float(le)] = float(line.split()[-1])
        elif line.startswith("tributary_log_append_seconds_sum"):
            total = float(line.split()[-1])
        elif line.startswith("tributary_log_append_seconds_count"):
            count = int(float(line.split()[-1]))
    return {"buckets": buckets, "sum": total, "count": count}


def merged_append(histograms: list[dict]) -> dict:
    """Mean and bucket-bound p50/p99 over the appends of every node, in milliseconds."""
    count = sum(h["count"] for h in histograms)
    if not count:
        return {}
    buckets: dict[float, float] = {}
    for h in histograms:
        for le, n in h["buckets"].items():
            buckets[le] = buckets.get(le, 0) + n

    def quantile(q):
        for le in sorted(buckets):
            if buckets[le] >= q * count:
                return le * 1000
        return None

    return {"appends": count, "mean_ms": sum(h["sum"] for h in histograms) / count * 1000,
            "p50_le_ms": quantile(0.5), "p99_le_ms": quantile(0.99)}


def run_bench(args, port: int, watched: dict[str, int]) -> dict:
    """One `tributary bench pub` against `port`, with the CPU of the `watched` processes over it."""
    cmd = [args.tributary, "bench", "pub", "--port", str(port), "--clients", str(args.publishers),
           "--messages", str(args.messages), "--size", str(args.size), "--qos", "1", "--sub-qos", "1",
           "--subscribers", str(args.subscribers), "--filter", "bench/#", "--json",
           "--time-limit", str(args.seconds), "--inflight", str(args.inflight)]
    before = {name: cpu_seconds(pid) for name, pid in watched.items()}
    threads_before = {name: thread_cpu(pid) for name, pid in watched.items()}
    t0 = time.monotonic()
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        proc = subprocess.Popen(cmd, stdout=out, stderr=err, text=True)
        # wait4 gives the bench's own CPU time (its rusage) as it is reaped.
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        wall = time.monotonic() - t0
        out.seek(0)
        err.seek(0)
        out, err = out.read(), err.read()
    bench_cpu = usage.ru_utime + usage.ru_stime
    line = out.strip().splitlines()[-1] if out.strip() else "{}"
    print(" ".join(cmd[2:]), "->", line, file=sys.stderr, flush=True)
    report = json.loads(line)
    if not report:
        raise RuntimeError(f"bench printed no report: {err[-2000:]}")
    cpu = {name: cpu_seconds(pid) - before[name] for name, pid in watched.items()}
    # The busiest threads of the nodes and of Kafka: a thread near 1.0 is a serial limit.
    report["busiest_threads"] = {name: busiest(threads_before[name], thread_cpu(pid), wall)
                                 for name, pid in watched.items() if name != "haproxy"}
    cpu["bench"] = bench_cpu
    # Cores each process used over the bench's whole run (connect and drain included).
    report["cpu_cores"] = {name: round(s / wall, 2) for name, s in cpu.items()}
    report["cpu_us_per_msg"] = {name: round(s / max(1, report.get("acknowledged", 0)) * 1e6, 1)
                                for name, s in cpu.items()}
    report["wall_s"] = round(wall, 2)
    return report


def run_scenario(key: str, run: int, args, kafka_bootstrap: str | None, workroot: Path) -> dict:
    _, nodes_on_kafka = SCENARIOS[key]
    workdir = workroot / f"{key}{run}"
    haproxy = Haproxy() if nodes_on_kafka else None
    nodes: list[Node] = []
    try:
        topic = f"bench-{key}{run}-{os.getpid()}"
        count = max(1, nodes_on_kafka)
        nodes = [Node(args.tributary, workdir / f"node{i}", kafka_bootstrap if nodes_on_kafka else None, topic,
                      haproxy) for i in range(count)]
        for n in nodes:
            wait_for(n.accepting, 150, "a node to accept MQTT connections")
        if haproxy:
            wait_for(lambda: all(haproxy.servers().get(n.server_name, {}).get("status") == "UP" for n in nodes),
                     30, "every node UP in haproxy")
        port = haproxy.port if haproxy else nodes[0].port
        watched = {f"node{i}": n.proc.pid for i, n in enumerate(nodes)}
        if haproxy:
            watched["haproxy"] = haproxy.proc.pid
        if nodes_on_kafka:
            watched["kafka"] = KAFKA.proc.pid
        before = [append_histogram(n.metrics()) for n in nodes]
        report = run_bench(args, port, watched)
        time.sleep(1.5)  # the nodes refresh /metrics once a second
        after = [append_histogram(n.metrics()) for n in nodes]
        diff = [{"buckets": {le: a["buckets"].get(le, 0) - b["buckets"].get(le, 0) for le in a["buckets"]},
                 "sum": a["sum"] - b["sum"], "count": a["count"] - b["count"]} for a, b in zip(after, before)]
        report["log_append"] = merged_append(diff)
        report["scenario"] = key
        print(json.dumps({"scenario": key, "run": run, "cpu_cores": report["cpu_cores"],
                          "cpu_us_per_msg": report["cpu_us_per_msg"],
                          "log_append": report["log_append"],
                          "busiest_threads": report["busiest_threads"]}), file=sys.stderr, flush=True)
        return report
    finally:
        for n in nodes:
            n.stop()
        if haproxy:
            haproxy.close()
        shutil.rmtree(workdir, ignore_errors=True)


def med(values):
    values = [v for v in values if isinstance(v, (int, float))]
    return statistics.median(values) if values else None


def fmt(v, spec=",.0f"):
    return "—" if v is None else format(v, spec)


def main():
    global KAFKA
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--tributary", default=str(REPO / "target/release/tributary"))
    p.add_argument("--kafka-home", default=kafka_helpers.DEFAULT_KAFKA_HOME)
    p.add_argument("--seconds", type=int, default=40, help="time limit of each scenario's bench run")
    p.add_argument("--runs", type=int, default=2)
    p.add_argument("--scenarios", default="abcd")
    p.add_argument("--publishers", type=int, default=4)
    p.add_argument("--subscribers", type=int, default=3)
    p.add_argument("--messages", type=int, default=150000, help="per publisher")
    p.add_argument("--size", type=int, default=100)
    p.add_argument("--warmups", type=int, default=1,
                   help="unrecorded runs of (b) that warm Kafka's JVM up first (its JIT keeps cutting "
                        "Kafka's CPU per message over the first few runs)")
    p.add_argument("--no-warmup", dest="warmups", action="store_const", const=0, help="--warmups 0")
    p.add_argument("--inflight", type=int, default=64,
                   help="unacknowledged QoS 1 messages per publisher (the bench's window)")
    args = p.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    os.environ["APACHE_KAFKA_HOME"] = args.kafka_home
    workroot = Path(tempfile.mkdtemp(prefix="bench-cluster-"))
    workroot.chmod(0o755)
    results: dict[str, list[dict]] = {k: [] for k in args.scenarios}
    try:
        if any(SCENARIOS[k][1] for k in args.scenarios):
            KAFKA = kafka_helpers.ApacheKafka(workroot / "kafka")
            KAFKA.start()
            print(f"apache kafka ready in {KAFKA.last_start_s:.1f} s at {KAFKA.bootstrap}", file=sys.stderr)
            # A fresh JVM compiles its hot paths under load (its C2 compiler threads took a third of
            # its CPU in a first scenario, and Kafka's CPU per message kept falling over the first
            # four runs): unrecorded runs first.
            for warmup in range(args.warmups):
                print(f"warm-up run {warmup + 1} of {args.warmups} of (b), not recorded:", file=sys.stderr)
                run_scenario("b", -1 - warmup, args, KAFKA.bootstrap, workroot)
        for run in range(args.runs):
            for key in args.scenarios:
                results[key].append(run_scenario(key, run, args, KAFKA.bootstrap if KAFKA else None, workroot))
    finally:
        if KAFKA and KAFKA.running:
            KAFKA.stop()
        shutil.rmtree(workroot, ignore_errors=True)

    print(f"{args.publishers} publishers x {args.messages:,} x {args.size} B, QoS 1, {args.subscribers} subscribers "
          f"on bench/# (each receives every message); median of {args.runs} run(s)\n")
    print("| scenario | published, acked msg/s | delivered msg/s | PUBACK p50 / p99 ms | ÷ (a) | lost | "
          "log append mean ms | CPU cores: nodes / Kafka / HAProxy / bench | CPU µs per message: nodes / Kafka |")
    print("|---|---|---|---|---|---|---|---|---|")
    base = med([r["msg_per_s"] for r in results.get("a", [])])
    for key, runs in results.items():
        acked = med([r["msg_per_s"] for r in runs])
        delivered = med([r["received"] / r["elapsed_s"] for r in runs if r.get("elapsed_s")])
        lat = [r.get("ack_latency_ms") or {} for r in runs]
        ratio = f"{acked / base:.2f}" if base and acked else "—"
        append = med([(r.get("log_append") or {}).get("mean_ms") for r in runs])
        cores = [r["cpu_cores"] for r in runs]
        nodes_cpu = med([sum(v for k, v in c.items() if k.startswith("node")) for c in cores])
        cpu = " / ".join(fmt(med([c.get(name) for c in cores]), ".2f") for name in ("kafka", "haproxy", "bench"))
        print(f"| ({key}) {SCENARIOS[key][0]} | {fmt(acked)} | {fmt(delivered)} "
              f"| {fmt(med([x.get('p50') for x in lat]), '.2f')} / {fmt(med([x.get('p99') for x in lat]), '.2f')} "
              f"| {ratio} | {sum(r.get('lost', 0) for r in runs)} | {fmt(append, '.2f')} "
              f"| {fmt(nodes_cpu, '.2f')} / {cpu} "
              f"| {fmt(med([sum(v for k, v in r['cpu_us_per_msg'].items() if k.startswith('node')) for r in runs]), '.1f')}"
              f" / {fmt(med([r['cpu_us_per_msg'].get('kafka') for r in runs]), '.1f')} |")
    print("\nper run (acked msg/s): " + "; ".join(
        f"({k}) " + " · ".join(fmt(r["msg_per_s"]) + ("" if r.get("stopped") == "completed" else f" [{r.get('stopped')}]")
                              for r in runs) for k, runs in results.items()))


if __name__ == "__main__":
    main()
