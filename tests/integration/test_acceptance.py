"""The 2016 acceptance scenario, on one broker: every acknowledged message ends up delivered and kept.

10 publisher clients (paho, one thread each, MQTT 3.1.1 as the 2016 devices spoke) each send 1,000
messages of 100 bytes at QoS 1, all at once. Then:

* all 10,000 are acknowledged (PUBACK seen by the publisher);
* a subscriber on `#` (QoS 1, connected throughout) receives all 10,000;
* "still there after a restart": a second subscriber with a persistent session (clean session off,
  QoS 1, subscribed to `#` before the publishing started, then disconnected) connects after a
  graceful broker restart and receives all 10,000.
"""

from __future__ import annotations

import threading
import time

import pytest

from clients import V311, Client, unique

PUBLISHERS = 10
PER_PUBLISHER = 1_000
SIZE = 100
TOTAL = PUBLISHERS * PER_PUBLISHER


def payload(publisher: int, n: int) -> bytes:
    """100 bytes that name their sender and sequence number, so every message is distinct."""
    head = f"p{publisher:02d}-{n:05d}-".encode()
    return head + b"." * (SIZE - len(head))


def distinct_count(client: Client) -> int:
    with client.s.cond:
        return len({m.payload for m in client.s.messages})


def wait_distinct(client: Client, n: int, timeout: float) -> int:
    """Poll (4×/s, bounded) until the client has n distinct payloads; return how many it has."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if len(client.s.messages) >= n and distinct_count(client) >= n:
            break
        time.sleep(0.25)
    return distinct_count(client)


@pytest.mark.timeout(300)
def test_ten_publishers_ten_thousand_messages_survive_restart(broker, figures):
    run = unique("acc")
    live = Client(broker, V311, f"{run}-live")
    durable_id = f"{run}-durable"
    durable = Client(broker, V311, durable_id, clean=False)
    made = [live, durable]
    try:
        live.connect()
        assert live.subscribe([("#", 1)]) == [1]
        durable.connect()
        assert durable.subscribe([("#", 1)]) == [1]
        durable.disconnect()

        acked = [0] * PUBLISHERS
        errors: list[str] = []
        start = threading.Barrier(PUBLISHERS)

        def publish_all(i: int):
            c = Client(broker, V311, f"{run}-pub{i:02d}", max_inflight=100)
            made.append(c)
            try:
                c.connect()
                start.wait(timeout=30)
                for n in range(PER_PUBLISHER):
                    c.publish(f"acc/device{i:02d}/hr", payload(i, n), qos=1, wait=False)
                c.wait(lambda s: len(s.acks) >= PER_PUBLISHER, 120, f"{PER_PUBLISHER} PUBACKs")
                acked[i] = sum(1 for rc in c.s.acks.values() if rc < 0x80)
                c.disconnect()
            except BaseException as e:  # reported by the main thread
                errors.append(f"publisher {i}: {e!r}")

        t0 = time.monotonic()
        threads = [threading.Thread(target=publish_all, args=(i,), daemon=True) for i in range(PUBLISHERS)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=180)
        publish_s = time.monotonic() - t0
        assert not any(t.is_alive() for t in threads), "a publisher thread did not finish within 180 s"
        assert errors == []

        live_got = wait_distinct(live, TOTAL, 60)
        live_total = len(live.s.messages)

        broker.restart(graceful=True)
        again = Client(broker, V311, durable_id, clean=False)
        made.append(again)
        ack = again.connect()
        durable_got = wait_distinct(again, TOTAL, 120)

        figures(f"acknowledged={sum(acked)}/{TOTAL} in {publish_s:.1f}s; "
                f"live subscriber received={live_got} distinct ({live_total} total); "
                f"persistent subscriber after restart received={durable_got} distinct "
                f"({len(again.s.messages)} total, session_present={ack.session_present})")
        assert sum(acked) == TOTAL
        assert live_got == TOTAL
        assert ack.session_present, "the persistent session did not survive the graceful restart"
        assert durable_got == TOTAL
        expected = {payload(i, n) for i in range(PUBLISHERS) for n in range(PER_PUBLISHER)}
        assert {m.payload for m in again.messages()} == expected
        assert {m.qos for m in again.messages()} == {1}
    finally:
        for c in made:
            c.close()
