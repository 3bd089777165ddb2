"""mosquitto_sub as a test peer: a process whose output is read line by line in a thread.

It runs with `-d`, so "Subscribed (mid: ...)" (or "received SUBACK") says when the subscription is
in place and tests need no sleeps, and with a `-F` format whose lines start with "MSG", which the
test files parse into messages their own way.
"""

from __future__ import annotations

import subprocess
import threading
import time

SUB_READY = ("Subscribed (mid:", "received SUBACK")


class MosquittoSub:
    """A running mosquitto_sub; subclasses turn its "MSG" lines into messages."""

    def __init__(self, broker, *, protocol: str, topics: list[str], qos: int, fmt: str, count: int | None,
                 wait_s: int, extra: list[str] | None):
        # stdbuf: mosquitto_sub block-buffers stdout into a pipe; we need each line as it happens.
        cmd = ["stdbuf", "-oL", "mosquitto_sub", "-h", broker.host, "-p", str(broker.port),
               "-V", protocol, "-q", str(qos), "-d", "-F", fmt, "-W", str(wait_s)]
        for t in topics:
            cmd += ["-t", t]
        if count is not None:
            cmd += ["-C", str(count)]
        cmd += extra or []
        self.cmd = cmd
        self.lines: list[str] = []
        self.cond = threading.Condition()
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, text=True, errors="replace")
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self):
        for line in self.proc.stdout:
            with self.cond:
                self.lines.append(line.rstrip("\n"))
                self.cond.notify_all()
        with self.cond:
            self.cond.notify_all()

    def wait_until(self, predicate, timeout: float, what: str):
        """Wait until `predicate()` holds (called with the lines lock held), bounded by `timeout`."""
        deadline = time.monotonic() + timeout
        with self.cond:
            while not predicate():
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError(f"timed out waiting for {what}; mosquitto_sub said:\n" + "\n".join(self.lines))
                if self.proc.poll() is not None and not self.reader.is_alive():
                    raise AssertionError(f"mosquitto_sub exited ({self.proc.returncode}) before {what}:\n"
                                         + "\n".join(self.lines))
                self.cond.wait(min(remaining, 0.2))

    def wait_subscribed(self, timeout: float = 10):
        self.wait_until(lambda: any(any(s in l for s in SUB_READY) for l in self.lines), timeout, "SUBACK")

    def message_lines(self, prefix: str) -> list[str]:
        with self.cond:
            return [l for l in self.lines if l.startswith(prefix)]

    def wait_exit(self, timeout: float = 20):
        """Wait for exit (after -C count, -E or -W)."""
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError("mosquitto_sub did not exit:\n" + "\n".join(self.lines))
        self.reader.join(timeout=5)

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=5)
