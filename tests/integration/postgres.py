"""Fresh databases on the run's PostgreSQL (``TRIBUTARY_TEST_POSTGRES``, which scripts/test.sh starts
and sets; docs/testing.md) for the tests of the PostgreSQL store, and psql to look inside them."""

from __future__ import annotations

import os
import subprocess
import uuid

import pytest

SKIP_REASON = "TRIBUTARY_TEST_POSTGRES is not set (scripts/test.sh starts a PostgreSQL and sets it)"


def base_url() -> str:
    """The run's PostgreSQL, or a skip of the calling test when there is none."""
    base = os.environ.get("TRIBUTARY_TEST_POSTGRES")
    if not base:
        pytest.skip(SKIP_REASON)
    return base


def psql(url: str, sql: str) -> str:
    """`sql` run by psql on `url`; its output without alignment, trimmed."""
    out = subprocess.run(["psql", url, "-tAq", "-c", sql], capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


def create_database(prefix: str) -> str:
    """A new, empty database named `prefix` plus a random part; its URL."""
    base = base_url()
    database = f"{prefix}_{uuid.uuid4().hex[:10]}"
    psql(base, f"create database {database}")
    return base.rsplit("/", 1)[0] + f"/{database}"


def drop_database(url: str):
    """Drops the database of `url`, connections and all (nothing is asserted: teardown)."""
    base = base_url()
    database = url.rsplit("/", 1)[1]
    subprocess.run(["psql", base, "-q", "-c", f"drop database if exists {database} with (force)"],
                   capture_output=True, timeout=30)
