"""Acknowledged means durable: no PUBACKed message is lost when the broker is SIGKILLed mid-stream.

Scenario (``test_no_acknowledged_message_lost_on_kill9``):

1. A subscriber with a persistent session (MQTT 3.1.1, clean session off, fixed client id, QoS 1)
   subscribes, then DISCONNECTS before any publishing: every message has to wait in its session,
   across the kill, so the whole stream is what the broker must keep.
2. A paho publisher (3.1.1, QoS 1, up to WINDOW messages in flight) sends the numbers 0..N-1 as
   payloads, recording each number whose PUBACK it saw.
3. When 40 % are acknowledged, the broker gets SIGKILL (with a window of messages in flight), and is
   started again on the same port and data directory.
4. The publisher reconnects (a new connection, same client id) and sends every number it has no
   PUBACK for, until all N are acknowledged.
5. The subscriber reconnects (same client id, clean session off) and drains until it has every
   acknowledged number or the deadline passes.

Asserts acknowledged ⊆ received (lost == 0) and received ⊆ published; duplicates are allowed (QoS 1 is
at-least-once) and counted. ``test_no_acknowledged_message_lost_on_graceful_restart`` is the same with
SIGTERM instead of SIGKILL and fewer messages; it also runs against mosquitto, which keeps its state on
disk only at shutdown and at autosave, so the SIGKILL case is tributary-only.
"""

from __future__ import annotations

import threading
import time

import pytest

from clients import V311, Client
from numbered import Publisher

TOPIC = "durability/seq"
KILL_FRACTION = 0.4
DEADLINE_S = 280
def run_scenario(broker, figures, n_total: int, graceful: bool):
    deadline = time.monotonic() + DEADLINE_S
    sub_id = f"durability-sub-{'term' if graceful else 'kill9'}"
    pub_id = f"durability-pub-{'term' if graceful else 'kill9'}"
    acked: set[int] = set()
    to_close = []
    try:
        sub = Client(broker, V311, sub_id, clean=False)
        to_close.append(sub)
        sub.connect()
        assert sub.subscribe([(TOPIC, 1)]) == [1]
        sub.disconnect()

        # Phase 1: publish until 40 % are acknowledged, then kill (or stop) the broker mid-stream.
        kill_at = int(n_total * KILL_FRACTION)
        first = Publisher(broker, pub_id, acked, TOPIC)
        to_close.append(first)
        first.connect()
        t0 = time.monotonic()
        n = 0
        while n < n_total and len(acked) < kill_at and time.monotonic() < deadline:
            if not first.publish(n, deadline):
                break
            n += 1
        assert len(acked) >= kill_at, f"only {len(acked)} acknowledged before the deadline"
        in_flight = len(first.pending)
        if graceful:
            broker.stop()
        else:
            broker.kill()
        first.close()
        acked_before = len(acked)
        broker.start()

        # Phase 2: a new connection sends every number without a PUBACK, until all are acknowledged.
        attempts = first.attempts
        for attempt in range(5):
            if len(acked) >= n_total or time.monotonic() > deadline:
                break
            second = Publisher(broker, pub_id, acked, TOPIC)
            to_close.append(second)
            second.connect()
            for m in range(n_total):
                if m in acked:
                    continue
                if not second.publish(m, deadline):
                    break
            second.wait_drained(deadline)
            attempts += second.attempts
            second.close()
        publish_s = time.monotonic() - t0

        # Drain: the persistent subscriber comes back and must get every acknowledged number.
        received: set[int] = set()
        total = [0]
        recv_lock = threading.Lock()

        def on_message(m):
            with recv_lock:
                received.add(int(m.payload))
                total[0] += 1

        back = Client(broker, V311, sub_id, clean=False, on_message=on_message)
        to_close.append(back)
        t1 = time.monotonic()
        ack = back.connect()
        # Without its session the broker has nothing queued for it: a short look is enough then.
        drain_deadline = min(deadline, time.monotonic() + (150 if ack.session_present else 5))
        while time.monotonic() < drain_deadline and not back.s.disconnected:
            with recv_lock:
                if acked <= received:
                    break
            time.sleep(0.25)
        cut_off = back.s.disconnected
        time.sleep(0.5)  # let a last burst of redeliveries land before counting duplicates
        drain_s = time.monotonic() - t1
        with recv_lock:
            got = set(received)
            total_received = total[0]

        lost = sorted(acked - got)
        unexpected = sorted(got - set(range(n_total)))
        figures(f"{'SIGTERM' if graceful else 'SIGKILL'} at {acked_before} acked ({in_flight} in flight): "
                f"published={attempts} (distinct {n_total}) acknowledged={len(acked)} "
                f"received={len(got)} (total {total_received}) lost={len(lost)} "
                f"duplicated={total_received - len(got)}; publish {publish_s:.1f}s, drain {drain_s:.1f}s, "
                f"session_present={ack.session_present}")
        assert not cut_off, (f"the subscriber's connection was closed during the drain (reason "
                             f"{back.s.disconnect_reason}); broker running: {broker.running}")
        assert len(acked) == n_total, f"publisher got only {len(acked)} PUBACKs before the deadline"
        assert ack.session_present, "the subscriber's persistent session did not survive"
        assert not lost, f"{len(lost)} acknowledged messages lost, e.g. {lost[:20]}"
        assert not unexpected, f"received numbers never published: {unexpected[:20]}"
    finally:
        for c in to_close:
            c.close()


@pytest.mark.tributary_only("mosquitto writes its state to disk only at shutdown/autosave, "
                            "so SIGKILL loses acknowledged messages by design")
@pytest.mark.timeout(330)
def test_no_acknowledged_message_lost_on_kill9(broker, figures):
    run_scenario(broker, figures, n_total=100_000, graceful=False)


@pytest.mark.timeout(330)
def test_no_acknowledged_message_lost_on_graceful_restart(broker, figures):
    run_scenario(broker, figures, n_total=20_000, graceful=True)
