"""Tributary on a three-broker Apache Kafka cluster (`kafka_cluster`: each node broker and controller,
replication factor 3, min.insync.replicas 2), one broker SIGKILLed mid-run.

| case | expected |
|---|---|
| one node, `--log kafka://` with all three bootstrap addresses; the topic it creates | replication factor 3 (the brokers' default), `min.insync.replicas=2` |
| 4 numbered QoS 1 publishers × 2,500; the leader of partition 0 SIGKILLed once 40 % are acknowledged | publishing goes on and every number is acknowledged; a subscriber on the node receives all 10,000 through Kafka, some after the kill; read back with confluent-kafka: lost = 0, nothing unexpected |
| the killed broker started again | it rejoins: every partition has 3 replicas in sync again |

Figures: published / acknowledged / found / lost / duplicated, which broker was killed when, how long
publishing took after the kill, what the subscriber received.
"""

from __future__ import annotations

import re
import threading
import time

import pytest

from clients import V5, Client, unique
from conftest import Broker, unique_topic, wait_for
from kafka import loss_report, read_all
from numbered import Publisher

pytestmark = pytest.mark.tributary_only("Kafka as the log is tributary's own")

PUBLISHERS = 4
PER_PUBLISHER = 2_500
N_TOTAL = PUBLISHERS * PER_PUBLISHER
PARTITIONS = 3
KILL_AT = 0.4
DEADLINE_S = 240
ROUTER_ASSIGNED = re.compile(r"kafka partitions assigned group=\"?tributary-router-[^\" ]*\"? partitions=(\S*)")


def publish_until_acked(broker, acked: set[int], numbers: range, topic: str, client_id: str, deadline: float,
                        stats: dict) -> None:
    """Send every number of `numbers` not yet acknowledged, on a new connection after any loss of
    the last, until all are acknowledged or the deadline passes. Runs in its own thread."""
    while not all(n in acked for n in numbers) and time.monotonic() < deadline:
        p = Publisher(broker, client_id, acked, topic)
        try:
            p.c.connect(expect_success=False)
            if p.c.s.connack is None or p.c.s.connack.reason_code != 0:
                time.sleep(0.2)
                continue
            for n in numbers:
                if n not in acked and not p.publish(n, deadline):
                    break
            p.wait_drained(deadline)
        except Exception:  # noqa: BLE001 - the connection went away under us: connect again
            time.sleep(0.2)
        finally:
            with stats["lock"]:
                stats["attempts"] += p.attempts
                stats["connections"] += 1
            p.close()


def partition_leaders(bootstrap: str, topic: str) -> dict[int, tuple[int, int, int]]:
    """partition -> (leader, replicas, replicas in sync), from a fresh Metadata answer."""
    from confluent_kafka.admin import AdminClient

    md = AdminClient({"bootstrap.servers": bootstrap}).list_topics(topic=topic, timeout=10)
    return {p.id: (p.leader, len(p.replicas), len(p.isrs)) for p in md.topics[topic].partitions.values()}


def topic_config(bootstrap: str, topic: str, key: str) -> str:
    from confluent_kafka.admin import AdminClient, ConfigResource

    admin = AdminClient({"bootstrap.servers": bootstrap})  # kept alive until the answer is in
    resource = ConfigResource(ConfigResource.Type.TOPIC, topic)
    return admin.describe_configs([resource])[resource].result(30)[key].value


def router_partitions(node: Broker, topic: str) -> set[str]:
    """The partitions of `topic` in the node's latest router assignment (its log line)."""
    lines = ROUTER_ASSIGNED.findall(node.log_tail(1 << 20))
    return {p for p in lines[-1].split(",") if p.startswith(topic + "/")} if lines else set()


def distinct_numbers(sub: Client) -> set[int]:
    return {int(m.payload[:8]) for m in list(sub.s.messages) if m.payload[:8].isdigit()}


@pytest.mark.timeout(420)
def test_one_broker_of_three_killed_loses_nothing_acknowledged(tmp_path, kafka_cluster, figures):
    cluster = kafka_cluster
    topic = unique_topic("cluster")
    config = {"kafka": {"url": f"kafka://{cluster.bootstrap}", "default_topic": topic, "partitions": PARTITIONS}}
    node_started = time.monotonic()
    broker = Broker(tmp_path, config).start()
    try:
        # The topic Tributary created has the brokers' defaults: 3 replicas, min.insync.replicas 2.
        cluster.wait_topic(topic, PARTITIONS, timeout=60, replicas=3)
        assert {r for _, r, _ in partition_leaders(cluster.bootstrap, topic).values()} == {3}
        assert topic_config(cluster.bootstrap, topic, "min.insync.replicas") == "2"
        # A new node reads the topics from their end once its router group has its partitions
        # (docs/kafka.md): its subscribers get what is published from then on.
        wait_for(lambda: len(router_partitions(broker, topic)) == PARTITIONS, timeout=60, interval=0.2,
                 what="the node's router assigned every partition")
        router_s = time.monotonic() - node_started

        sub = Client(broker, V5, unique("cluster-sub"))
        sub.connect()
        assert sub.subscribe([("cluster/#", 1)]) == [1]

        acked: set[int] = set()
        stats = {"lock": threading.Lock(), "attempts": 0, "connections": 0}
        t0 = time.monotonic()
        deadline = t0 + DEADLINE_S
        threads = [threading.Thread(target=publish_until_acked, daemon=True,
                                    args=(broker, acked, range(i * PER_PUBLISHER, (i + 1) * PER_PUBLISHER),
                                          f"cluster/{i}", unique(f"cluster-pub{i}"), deadline, stats))
                   for i in range(PUBLISHERS)]
        for t in threads:
            t.start()
        wait_for(lambda: len(acked) >= N_TOTAL * KILL_AT, timeout=120, interval=0.01, what="the kill point")

        # SIGKILL the broker that leads partition 0: its partitions need a new leader.
        victim = partition_leaders(cluster.bootstrap, topic)[0][0]
        acked_at_kill, received_at_kill = len(acked), len(distinct_numbers(sub))
        killed_at = time.monotonic()
        cluster.kill_node(victim)

        for t in threads:
            t.join(max(1.0, deadline - time.monotonic()))
        all_acked_s = time.monotonic() - killed_at
        assert len(acked) == N_TOTAL, f"only {len(acked)} of {N_TOTAL} acknowledged before the deadline"
        assert broker.running, "the node exited"

        # The node carries on delivering: the subscriber gets every number through Kafka.
        wait_for(lambda: len(distinct_numbers(sub)) >= N_TOTAL, timeout=120, interval=0.5,
                 what=f"{N_TOTAL} numbers delivered to the subscriber")
        received = distinct_numbers(sub)
        assert len(received) - received_at_kill > 0

        records = read_all(cluster.bootstrap, topic, expected=None, timeout=120, idle=5)
        found = [int(r.value[:8]) for r in records if r.value and r.value[:8].isdigit()]
        report = loss_report(range(N_TOTAL), acked, found)
        figures(f"3 brokers (RF 3, min ISR 2), broker {victim} (leader of partition 0) SIGKILLed at "
                f"{acked_at_kill} acked: {report.line()}; all acknowledged {all_acked_s:.1f}s after the kill "
                f"({N_TOTAL - acked_at_kill} after it), publish {time.monotonic() - t0:.1f}s in all "
                f"(publishes sent {stats['attempts']}, connections {stats['connections']}); subscriber received "
                f"{len(received)} distinct ({len(sub.s.messages)} messages, {len(received) - received_at_kill} "
                f"after the kill)")
        assert report["lost"] == 0, f"acknowledged but not in Kafka: {report['lost_ids']}"
        assert report["unexpected"] == 0

        # The killed broker comes back and catches up: every partition has 3 replicas in sync again.
        node = cluster.start_node(victim)
        t1 = time.monotonic()
        cluster.wait_topic(topic, PARTITIONS, timeout=60, replicas=3)
        figures(f"Kafka cluster started in {cluster.last_start_s:.1f}s; the node's router had its "
                f"partitions {router_s:.1f}s after the node started; broker {victim} restarted in "
                f"{node.last_start_s:.1f}s, all replicas in sync {time.monotonic() - t1:.1f}s later")
        sub.close()
    finally:
        broker.close()
