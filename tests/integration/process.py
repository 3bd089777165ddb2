"""A server process the tests start, signal, restart and read the log of: the base of the MQTT broker
under test (conftest.Broker) and of the Kafka brokers (kafka.KafkaNode for Apache Kafka, kafka.Tansu).

Every wait is bounded; the log file marks each start, signal and exit, so a shutdown nobody asked for
stands out in a failing test's report.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from pathlib import Path

LOG_TAIL_BYTES = 64 * 1024


class ManagedProcess:
    """Subclasses set `name`, `log_path`, `stop_deadline_s` and implement `start()` with `_spawn`."""

    name = "process"
    stop_deadline_s = 20.0

    def __init__(self, log_path: Path):
        self.log_path = Path(log_path)
        self.proc: subprocess.Popen | None = None
        self.starts = 0
        # Seconds the last stop or kill took.
        self.last_stop_s: float | None = None
        self._log_file = None

    def _spawn(self, cmd: list[str], cwd: Path, env: dict | None = None):
        """Starts `cmd` in its own session with stdout and stderr appended to the log."""
        assert not self.running, f"{self.name} already running"
        self._log_file = open(self.log_path, "ab", buffering=0)
        self._log_file.write(f"=== start #{self.starts + 1}: {' '.join(cmd)}\n".encode())
        self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=self._log_file,
                                     stderr=subprocess.STDOUT, env={**os.environ, **(env or {})},
                                     cwd=cwd, start_new_session=True)
        self.starts += 1

    def start(self):
        raise NotImplementedError

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def _signal_and_wait(self, sig: int) -> int:
        assert self.proc is not None, f"{self.name} was never started"
        t0 = time.monotonic()
        if self.proc.poll() is None:
            if self._log_file:
                self._log_file.write(f"=== fixture sends signal {int(sig)}\n".encode())
            self.proc.send_signal(sig)
        try:
            rc = self.proc.wait(timeout=self.stop_deadline_s)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=self.stop_deadline_s)
            raise AssertionError(f"{self.name} did not exit within {self.stop_deadline_s}s of signal {int(sig)}; "
                                 f"killed it:\n{self.log_tail()}")
        finally:
            self.last_stop_s = time.monotonic() - t0
            if self._log_file:
                self._log_file.write(f"=== exited with {self.proc.returncode} after signal {int(sig)}\n".encode())
                self._log_file.close()
                self._log_file = None
        return rc

    def stop(self) -> int:
        """Graceful shutdown: SIGTERM, wait for the exit (else SIGKILL and fail). Returns the exit status."""
        return self._signal_and_wait(signal.SIGTERM)

    def kill(self) -> int:
        """SIGKILL: nothing gets flushed or closed."""
        return self._signal_and_wait(signal.SIGKILL)

    def restart(self, graceful: bool = True):
        """Stop (SIGTERM) or kill (SIGKILL), then start again with the same port and data."""
        if self.running:
            self.stop() if graceful else self.kill()
        return self.start()

    def close(self):
        """Teardown: stop whatever still runs, without asserting anything."""
        if self.running:
            try:
                if self._log_file:
                    self._log_file.write(b"=== fixture teardown sends signal 15\n")
                self.proc.send_signal(signal.SIGTERM)
                self.proc.wait(timeout=self.stop_deadline_s)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=self.stop_deadline_s)
        if self._log_file:
            self._log_file.close()
            self._log_file = None

    def wait_accepting(self, host: str, port: int, deadline: float):
        """Until a TCP connection to host:port succeeds; fails (with the log) if the process exits or
        `deadline` (time.monotonic()) passes first."""
        while True:
            rc = self.proc.poll()
            if rc is not None:
                raise AssertionError(f"{self.name} exited with status {rc} while starting:\n{self.log_tail()}")
            try:
                with socket.create_connection((host, port), timeout=0.5):
                    return
            except OSError:
                pass
            if time.monotonic() >= deadline:
                raise AssertionError(f"{self.name} did not accept on {host}:{port} in time:\n{self.log_tail()}")
            time.sleep(0.02)

    def log_tail(self, limit: int = LOG_TAIL_BYTES) -> str:
        try:
            data = self.log_path.read_bytes()
        except OSError:
            return f"(no {self.name} log)"
        if len(data) > limit:
            data = b"... (log truncated) ...\n" + data[-limit:]
        return data.decode("utf-8", "replace")
