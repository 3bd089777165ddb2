"""The HTTP API and MQTT device clients as the end-to-end tests use them: JSON calls, owners with a
device each (made with the admin CLI), logins."""

from __future__ import annotations

import json
import urllib.error
import urllib.request

from accounts_cli import add_device, add_owner, login_when_known
from clients import V5, Client, unique


def call(broker, method: str, path: str, token: str | None = None, body: dict | None = None) -> tuple[int, bytes, str]:
    """(status, body bytes, content type) of one API call."""
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(broker.http_url + path, data=data, method=method)
    if data is not None:
        request.add_header("Content-Type", "application/json")
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, response.read(), response.headers.get("Content-Type", "")
    except urllib.error.HTTPError as e:
        return e.code, e.read(), e.headers.get("Content-Type", "")


def api(broker, method: str, path: str, token: str | None = None, body: dict | None = None):
    """(status, parsed JSON or text) of one API call."""
    status, raw, _ = call(broker, method, path, token, body)
    text = raw.decode()
    try:
        return status, json.loads(text)
    except ValueError:
        return status, text


def login(broker, owner: str, password: str) -> str:
    status, body = api(broker, "POST", "/api/v1/login", body={"name": owner, "password": password})
    assert status == 200, body
    return body["token"]


def people(broker, *owners: str) -> dict:
    """Each owner with one device, known to the broker: {owner: (owner name, password, device, device token)}."""
    suffix = unique("").replace("-", "")[-6:]
    world = {}
    for owner in owners:
        name, device = f"{owner}{suffix}", f"{owner}dev{suffix}"
        password = add_owner(broker, name)
        token = add_device(broker, name, device)
        world[owner] = (name, password, device, token)
    last = world[owners[-1]]
    login_when_known(broker, last[2], last[3]).close()
    return world


def device_client(broker, device: str, token: str) -> Client:
    client = Client(broker, V5)
    client.c.username_pw_set(device, token)
    client.connect()
    return client
