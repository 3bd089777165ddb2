"""Sign-up, login and logout over real HTTP against `tributary serve`: sign-up turned off by config, the
login throttle after wrong passwords, logout.

| case | expected |
|---|---|
| `[http] signup = false`, POST /api/v1/signup | 403 problem+json naming `tributary owner add`; nothing created |
| 5 wrong passwords for one name, then the right one | 401 ×5, then 429 problem+json (its Retry-After is checked by the API's unit tests); one log line for the lock, no password in the log |
| logout | 204; the token then gets 401 |
"""

from __future__ import annotations

import json

import pytest

from accounts_cli import add_owner
from api_client import api, call, login
from conftest import Broker

pytestmark = pytest.mark.tributary_only("the HTTP API is tributary's own")


def test_signup_off_login_throttle_and_logout(tmp_path):
    broker = Broker(tmp_path, {"http": {"signup": False}}).start()
    try:
        status, body = api(broker, "POST", "/api/v1/signup", body={"name": "cat", "password": "correct horse"})
        assert status == 403 and "tributary owner add" in body["detail"], body
        status, _ = api(broker, "POST", "/api/v1/login", body={"name": "cat", "password": "correct horse"})
        assert status == 401, "sign-up created nothing"

        password = add_owner(broker, "ann")
        for _ in range(5):
            status, body = api(broker, "POST", "/api/v1/login", body={"name": "ann", "password": "guess"})
            assert status == 401, body
        status, raw, content_type = call(broker, "POST", "/api/v1/login",
                                         body={"name": "ann", "password": password})
        assert (status, content_type) == (429, "application/problem+json"), raw
        assert "too many failed logins" in json.loads(raw)["detail"]
        log = broker.log_tail()
        assert log.count("name locked") == 1 and "guess" not in log and password not in log

        # Another owner is not affected; their token ends with logout.
        bob_password = add_owner(broker, "bob")
        token = login(broker, "bob", bob_password)
        assert api(broker, "GET", "/api/v1/devices", token)[0] == 200
        status, _, _ = call(broker, "POST", "/api/v1/logout", token)
        assert status == 204
        status, body = api(broker, "GET", "/api/v1/devices", token)
        assert status == 401 and "log in again" in body["detail"], body
    finally:
        broker.close()
