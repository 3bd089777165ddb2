"""Login sessions kept in the store, over real HTTP against `tributary serve`: they survive a restart,
and two nodes sharing one PostgreSQL store (a real PostgreSQL: TRIBUTARY_TEST_POSTGRES, a fresh
database per test, as test_measurements.py) accept each other's sessions.

The two nodes need the same owners: each reads DATA_DIR/accounts.json, so the test copies node A's
file into node B's data directory before B starts (there is no shared-accounts setting).

| case | expected |
|---|---|
| SQLite store: bearer login, restart | the token still works |
| PostgreSQL: bearer and cookie logins on A, restart A | both still work on A, with the same CSRF token |
| the same sessions on B | work on B; B's GET /api/v1/session names the same owner and CSRF token |
| logout on B | 204; the token then gets 401 problem+json on A and on B |
| cookie logout on A (with the CSRF token) | 204; the cookie then gets 401 on B |
| a forged token, and a session whose stored expiry passed | 401 problem+json on A and on B |
"""

from __future__ import annotations

import json
import shutil
import urllib.error
import urllib.request

import pytest

from accounts_cli import add_owner
from api_client import api, call, login
from conftest import Broker, wait_for
from postgres import psql

pytestmark = pytest.mark.tributary_only("the HTTP API is tributary's own")

PROBLEM = "application/problem+json"


def http_ready(broker) -> Broker:
    wait_for(lambda: call(broker, "GET", "/healthz")[0] == 200, 20, what=f"{broker.http_url}/healthz")
    return broker


def cookie_call(broker, method: str, path: str, cookie: str | None = None, csrf: str | None = None,
                body: dict | None = None) -> tuple[int, dict | str, str, str | None]:
    """(status, JSON body, content type, Set-Cookie) of a call made as the dashboard makes it."""
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(broker.http_url + path, data=data, method=method)
    if data is not None:
        request.add_header("Content-Type", "application/json")
    if cookie:
        request.add_header("Cookie", cookie)
    if csrf:
        request.add_header("X-CSRF-Token", csrf)
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            status, raw, headers = response.status, response.read(), response.headers
    except urllib.error.HTTPError as e:
        status, raw, headers = e.code, e.read(), e.headers
    text = raw.decode()
    try:
        parsed = json.loads(text)
    except ValueError:
        parsed = text
    return status, parsed, headers.get("Content-Type", ""), headers.get("Set-Cookie")


def refused(broker, token: str):
    status, raw, content_type = call(broker, "GET", "/api/v1/devices", token)
    assert (status, content_type) == (401, PROBLEM), (broker, status, raw)
    assert "log in again" in json.loads(raw)["detail"]


def test_a_token_survives_a_restart_on_sqlite(tmp_path):
    node = http_ready(Broker(tmp_path).start())
    try:
        token = login(node, "ann", add_owner(node, "ann"))
        assert api(node, "GET", "/api/v1/devices", token)[0] == 200
        http_ready(node.restart())
        assert api(node, "GET", "/api/v1/devices", token)[0] == 200
        refused(node, "0" * 64)
    finally:
        node.close()


@pytest.mark.timeout(120)
def test_two_nodes_on_one_postgres_store_share_sessions_across_restarts(tmp_path, postgres_url):
    config = {"store": {"url": postgres_url}}
    a = http_ready(Broker(tmp_path / "a", config).start())
    b = None
    try:
        password = add_owner(a, "ann")
        shutil.copy(a.data_dir / "accounts.json", tmp_path / "accounts.json")
        b_dir = tmp_path / "b" / "data"
        b_dir.mkdir(parents=True)
        shutil.copy(tmp_path / "accounts.json", b_dir / "accounts.json")
        b = http_ready(Broker(tmp_path / "b", config).start())

        bearer = login(a, "ann", password)
        status, body, _, set_cookie = cookie_call(a, "POST", "/api/v1/login",
                                                  body={"name": "ann", "password": password, "cookie": True})
        assert status == 200 and set_cookie, body
        cookie, csrf = set_cookie.split(";")[0], body["csrf"]
        # Only hashes are stored: neither token is in the table.
        stored = psql(postgres_url, "select encode(token_hash, 'hex') from api_sessions")
        assert len(stored.split()) == 2 and bearer not in stored and cookie.split("=")[1] not in stored

        # (a) A restart keeps both sessions, and the cookie's CSRF token.
        http_ready(a.restart())
        assert api(a, "GET", "/api/v1/devices", bearer)[0] == 200
        status, body, _, _ = cookie_call(a, "GET", "/api/v1/session", cookie)
        assert (status, body["owner"], body["csrf"]) == (200, "ann", csrf), body

        # (b) Valid on B too, with the same CSRF token.
        assert api(b, "GET", "/api/v1/devices", bearer)[0] == 200
        status, body, _, _ = cookie_call(b, "GET", "/api/v1/session", cookie)
        assert (status, body["owner"], body["csrf"]) == (200, "ann", csrf), body

        # A logout on B ends the token on A at once.
        assert call(b, "POST", "/api/v1/logout", bearer)[0] == 204
        refused(a, bearer)
        refused(b, bearer)
        # The cookie session: a change on B needs the CSRF token from A; a logout on A ends it on B.
        status, body, content_type, _ = cookie_call(b, "POST", "/api/v1/logout", cookie)
        assert (status, content_type) == (403, PROBLEM), body
        status, _, _, removed = cookie_call(a, "POST", "/api/v1/logout", cookie, csrf)
        assert status == 204 and removed and "Max-Age=0" in removed
        status, body, content_type, _ = cookie_call(b, "GET", "/api/v1/session", cookie)
        assert (status, content_type) == (401, PROBLEM), body

        # (c) A forged token, and one whose stored expiry has passed, are refused on both nodes.
        for node in (a, b):
            refused(node, "f" * 64)
            refused(node, "not even hex")
        expiring = login(b, "ann", password)
        assert api(a, "GET", "/api/v1/devices", expiring)[0] == 200
        assert psql(postgres_url, "update api_sessions set expires_ms = 1 returning owner") == "ann"
        refused(a, expiring)
        refused(b, expiring)
        # The lookup that found it expired deleted it.
        assert psql(postgres_url, "select count(*) from api_sessions") == "0"
    finally:
        a.close()
        if b is not None:
            b.close()
