"""The account admin CLI (`tributary owner|device|service|admin ...`) and logins with the credentials it
prints."""

from __future__ import annotations

import re
import subprocess
import time

from clients import V5, Client, unique
from conftest import tributary_bin


def run_admin(broker, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    """`tributary ARGS --data-dir <the broker's>`, whatever its exit status."""
    return subprocess.run([tributary_bin(), *args, "--data-dir", str(broker.data_dir)], capture_output=True,
                          text=True, timeout=60, input=stdin)


def admin(broker, *args: str, stdin: str | None = None) -> str:
    out = run_admin(broker, *args, stdin=stdin)
    assert out.returncode == 0, f"tributary {' '.join(args)} failed: {out.stderr}"
    return out.stdout + out.stderr


def add_owner(broker, name: str) -> str:
    text = admin(broker, "owner", "add", name)
    match = re.search(r"password \(shown once\): (\S+)", text)
    assert match, f"no password in: {text}"
    return match.group(1)


def add_device(broker, owner: str, device: str) -> str:
    text = admin(broker, "device", "add", "--owner", owner, device)
    match = re.search(r"token \(shown once\): (\S+)", text)
    assert match, f"no token in: {text}"
    return match.group(1)


def add_service(broker, name: str, *grants: str) -> str:
    """`tributary service add NAME --grant G ...`; returns the token it prints once."""
    text = admin(broker, "service", "add", name, *(arg for g in grants for arg in ("--grant", g)))
    match = re.search(r"token \(shown once\): (\S+)", text)
    assert match, f"no token in: {text}"
    return match.group(1)


def add_admin(broker, name: str) -> str:
    """`tributary admin add NAME`; returns the generated password it prints once."""
    text = admin(broker, "admin", "add", name)
    match = re.search(r"password \(shown once\): (\S+)", text)
    assert match, f"no password in: {text}"
    return match.group(1)


def login(broker, user: str, secret: str, version: int = V5, expect_success: bool = True) -> Client:
    client = Client(broker, version, client_id=unique(user))
    client.c.username_pw_set(user, secret)
    ack = client.connect(expect_success=expect_success)
    client.connack = ack
    return client


def login_when_known(broker, user: str, secret: str, version: int = V5, timeout: float = 10.0) -> Client:
    """Log in, retrying while the broker has not yet reloaded accounts.json (it does once a second)."""
    deadline = time.monotonic() + timeout
    while True:
        client = login(broker, user, secret, version, expect_success=False)
        if client.connack.reason_code == 0:
            return client
        client.close()
        assert time.monotonic() < deadline, f"{user} not accepted: {client.connack}"
        time.sleep(0.2)
