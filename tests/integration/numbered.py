"""Publishing numbered messages with a bounded window and recording which ones were acknowledged:
the publisher of the durability tests (kill -9, Kafka faults).

A number counts as acknowledged only when its PUBACK reports success (a 5.0 PUBACK with a reason
code of 0x80 or more, such as 0x97 when Kafka did not take it in time, leaves it unacknowledged,
to be sent again).
"""

from __future__ import annotations

import threading
import time

from clients import V311, Client

WINDOW = 1000  # our own bound on unacknowledged publishes; paho's packet ids wrap at 65535


def payload(n: int) -> bytes:
    return b"%08d" % n


class Publisher:
    """A paho connection publishing numbers with a bounded window, recording acknowledged numbers."""

    def __init__(self, broker, client_id: str, acked: set[int], topic: str, version: int = V311,
                 credentials: tuple[str, str] | None = None, size: int = 8):
        self.acked = acked
        self.topic = topic
        self.size = size
        self.lock = threading.Condition()
        self.pending: dict[int, int] = {}  # mid -> number
        self.early: dict[int, bool] = {}  # mid -> success, acked before publish() returned the mid to us
        self.refused = 0
        self.attempts = 0
        self.c = Client(broker, version, client_id, max_inflight=WINDOW)
        if credentials:
            self.c.c.username_pw_set(*credentials)
        self.c.c.on_publish = self._on_publish

    def _on_publish(self, client, userdata, mid, reason_code, properties):
        # Runs on paho's thread while paho holds its own lock: take only ours, never call paho.
        ok = reason_code is None or reason_code.value < 0x80
        with self.lock:
            n = self.pending.pop(mid, None)
            if n is None:
                self.early[mid] = ok
            elif ok:
                self.acked.add(n)
            else:
                self.refused += 1
            self.lock.notify_all()

    def connect(self):
        self.c.connect()

    def message(self, n: int) -> bytes:
        """The payload of number `n`: the number, padded to `size` bytes."""
        return payload(n).ljust(self.size, b".")

    def publish(self, n: int, deadline: float) -> bool:
        """Publish one number once there is room in the window; False if the connection is gone."""
        with self.lock:
            while len(self.pending) >= WINDOW:
                if not self.c.c.is_connected() or time.monotonic() > deadline:
                    return False
                self.lock.wait(0.05)
        info = self.c.c.publish(self.topic, self.message(n), qos=1)
        self.attempts += 1
        with self.lock:
            if info.mid in self.early:
                if self.early.pop(info.mid):
                    self.acked.add(n)
                else:
                    self.refused += 1
            else:
                self.pending[info.mid] = n
        return info.rc == 0

    def wait_drained(self, deadline: float) -> None:
        with self.lock:
            while self.pending and time.monotonic() < deadline and self.c.c.is_connected():
                self.lock.wait(0.1)

    def close(self):
        self.c.close()
