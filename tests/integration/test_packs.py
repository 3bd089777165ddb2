"""Pooled packs (docs/packs.md) end to end: devices publish heart rate over MQTT (paho-mqtt), owners
opt in through the HTTP API with signed receipts (verified with jwcrypto against the server's JWKS),
a buyer service asks for releases, and each owner reads their earnings and audit log.

| case | expected |
|---|---|
| 9 participants | 409, the reason names 9 and the 10 needed; nothing charged |
| 10 participants | 201: 10 participants, one figure set per day, the noise's parameters (sensitivity = per-day bound × days, ε shares summing to the pack's ε) |
| an owner whose ceiling is below the pack's ε | left out of the release; charged and paid nothing |
| an owner who withdrew | left out of every later release; the withdrawal's receipt verifies |
| each participant | one ledger entry per release they were in (ε and price), an audit entry naming the buyer |
| a pack for a cohort | refused to an owner whose shared profile does not match, accepted once it does |
| bad definitions, a service without `packs`, another buyer's pack | 400 naming the field, 403, 404 |
| the takeout of an owner who joined and withdrew | both receipts (verified), the ledger, the audit entries |
"""

from __future__ import annotations

import base64
import io
import json
import time
import urllib.error
import urllib.parse
import urllib.request
import zipfile

import pytest
from jwcrypto import jwk, jws

from accounts_cli import add_service
from api_client import api, call, device_client, login, people
from conftest import wait_for

pytestmark = pytest.mark.tributary_only("packs are tributary's own")

DAY_S = 86_400
FIRST_DAY = "2026-11-01"
DAYS = 3
T0 = 1_793_491_200  # 2026-11-01T00:00:00Z, seconds


def service_call(broker, method: str, path: str, name: str, token: str, body: dict | None = None):
    """(status, parsed JSON) of one call authenticated as a service (HTTP Basic)."""
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(broker.http_url + path, data=data, method=method)
    if data is not None:
        request.add_header("Content-Type", "application/json")
    request.add_header("Authorization", "Basic " + base64.b64encode(f"{name}:{token}".encode()).decode())
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, json.loads(response.read() or b"null")
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"null")


def definition(**changes) -> dict:
    body = {
        "title": "Resting heart rate",
        "measurement": "heart_rate",
        "purpose": "dpv:ResearchAndDevelopment",
        "from": FIRST_DAY,
        "to": "2026-11-03",
        "lower": 40,
        "upper": 200,
        "epsilon": 1.0,
        "aggregates": {"count": True, "mean": True, "histogram": [40, 60, 80, 100, 200], "percentiles": [50]},
        "min_participants": 10,
        "price_cents": 250,
        "currency": "EUR",
    }
    body.update(changes)
    return body


def verify(broker, receipt: str) -> dict:
    """The receipt's payload, verified against the server's published key (raises when it fails)."""
    status, keys = api(broker, "GET", "/api/v1/consent/jwks.json")
    assert status == 200, keys
    token = jws.JWS()
    token.deserialize(receipt)
    token.verify(jwk.JWKSet.from_json(json.dumps(keys)).get_key(token.jose_header["kid"]), alg="EdDSA")
    return json.loads(token.payload)


@pytest.fixture
def pool(broker):
    """12 owners, each with a device that published one heart rate a day for 3 days (60 + i), logged in;
    and a buyer service `lab…` granted packs."""
    names = [f"p{i}" for i in range(12)]
    world = people(broker, *names)
    for i, key in enumerate(names):
        _, _, device, token = world[key]
        dev = device_client(broker, device, token)
        # One record a day, an hour into it: t is relative to bt.
        pack = [{"bn": f"{device}/", "bt": T0 + 3600, "n": "heart_rate", "u": "beat/min", "v": 60 + i}] + [
            {"n": "heart_rate", "t": d * DAY_S, "v": 60 + i} for d in range(1, DAYS)]
        dev.publish(f"tributary/v1/{device}/senml", json.dumps(pack).encode(), qos=1)
        dev.close()
    tokens = {key: login(broker, world[key][0], world[key][1]) for key in names}
    query = urllib.parse.urlencode({"from": T0 * 1000, "to": (T0 + DAYS * DAY_S) * 1000, "limit": 100})

    def stored(key):
        status, points = api(broker, "GET", f"/api/v1/measurements?{query}", tokens[key])
        return status == 200 and len(points) == DAYS

    for key in names:
        wait_for(lambda key=key: stored(key), 30, 0.1, f"{key}'s heart rates stored")
    lab = f"lab{world['p0'][0][-6:]}"
    lab_token = add_service(broker, lab, "packs")
    known(broker, lab, lab_token)
    return world, tokens, lab, lab_token


def known(broker, service: str, token: str):
    """Waits until the node has reloaded the accounts file with `service` in it."""
    wait_for(lambda: service_call(broker, "GET", "/api/v1/service/packs", service, token)[0] != 401, 10, 0.1,
             f"service {service} known")


def join(broker, token: str, pack_id: str):
    return api(broker, "POST", f"/api/v1/packs/{pack_id}/join", token)


def test_a_pack_is_released_from_ten_participants_with_its_noise_and_ledgers(broker, pool):
    world, tokens, lab, lab_token = pool
    status, pack = service_call(broker, "POST", "/api/v1/service/packs", lab, lab_token, definition())
    assert status == 201, pack
    pid = pack["id"]
    assert pack["from"] == FIRST_DAY and pack["to"] == "2026-11-03" and pack["epsilon"] == 1.0

    # Nine join, each with a receipt signed by the installation.
    for i in range(9):
        status, answer = join(broker, tokens[f"p{i}"], pid)
        assert status == 201, answer
        claims = verify(broker, answer["receipt"])
        assert claims["piiPrincipalId"] == world[f"p{i}"][0]
        assert claims["services"][0]["service"] == lab
        assert claims["services"][0]["purposes"][0]["piiCategory"] == ["heart_rate"]
    status, again = join(broker, tokens["p0"], pid)
    assert status == 409, again

    status, refused = service_call(broker, "POST", f"/api/v1/service/packs/{pid}/releases", lab, lab_token)
    assert status == 409, refused
    assert "9 participants" in refused["detail"] and "at least 10" in refused["detail"], refused
    status, ledger = api(broker, "GET", "/api/v1/packs/earnings", tokens["p0"])
    assert status == 200 and ledger["entries"] == [], ledger

    # The tenth: released.
    assert join(broker, tokens["p9"], pid)[0] == 201
    started = time.monotonic()
    status, release = service_call(broker, "POST", f"/api/v1/service/packs/{pid}/releases", lab, lab_token)
    elapsed = time.monotonic() - started
    assert status == 201, release
    print(f"release of 10 participants × {DAYS} days: {elapsed * 1000:.0f} ms")
    assert release["participants"] == 10 and release["seq"] == 1
    assert [d["day"] for d in release["days"]] == ["2026-11-01", "2026-11-02", "2026-11-03"]
    noise = release["noise"]
    assert set(noise) == {"count", "sum", "histogram"}
    assert noise["count"]["sensitivity"] == 1 * DAYS
    assert noise["sum"]["sensitivity"] == 200 * DAYS
    assert noise["histogram"]["sensitivity"] == 2 * DAYS
    assert sum(n["epsilon"] for n in noise.values()) <= 1.0 + 1e-9
    for n in noise.values():
        assert n["mechanism"] == "laplace" and n["scale"] >= n["sensitivity"] / (1.0 / 3)
    for day in release["days"]:
        assert 40 <= day["mean"] <= 200 and len(day["histogram"]) == 4 and "p50" in day["percentiles"]
    body = json.dumps(release)
    assert not any(world[k][0] in body for k in world), "a release names no participant"

    for i in range(10):
        status, ledger = api(broker, "GET", "/api/v1/packs/earnings", tokens[f"p{i}"])
        assert status == 200, ledger
        assert [(e["pack"], e["seq"], e["epsilon"], e["amount_cents"]) for e in ledger["entries"]] == [(pid, 1, 1.0, 250)]
        assert ledger["totals_cents"] == {"EUR": 250}
    status, audit = api(broker, "GET", "/api/v1/audit", tokens["p3"])
    assert status == 200, audit
    entries = audit["entries"] if isinstance(audit, dict) else audit
    pack_entries = [e for e in entries if e.get("channel") == "pack"]
    assert len(pack_entries) == 1 and pack_entries[0]["actor"] == lab, entries
    assert pack_entries[0]["count"] == DAYS, pack_entries  # the days p3's data was in the release

    # An owner whose ceiling is below ε joins: left out, charged nothing.
    status, settings = api(broker, "PUT", "/api/v1/packs/settings", tokens["p10"], {"budget_ceiling": 0.5})
    assert status == 200 and settings["left"] == 0.5, settings
    assert join(broker, tokens["p10"], pid)[0] == 201
    status, release = service_call(broker, "POST", f"/api/v1/service/packs/{pid}/releases", lab, lab_token)
    assert status == 201 and release["participants"] == 10 and release["seq"] == 2, release
    assert api(broker, "GET", "/api/v1/packs/earnings", tokens["p10"])[1]["entries"] == []
    status, settings = api(broker, "GET", "/api/v1/packs/settings", tokens["p1"])
    assert settings["spent"] == 2.0 and settings["left"] == 8.0, settings

    # p0 withdraws: nine with budget left → refused; p11 joins → released without p0.
    status, answer = api(broker, "POST", f"/api/v1/packs/{pid}/withdraw", tokens["p0"])
    assert status == 200, answer
    assert verify(broker, answer["receipt"])["tributary:status"] == "revoked"
    status, refused = service_call(broker, "POST", f"/api/v1/service/packs/{pid}/releases", lab, lab_token)
    assert status == 409 and "9 participants" in refused["detail"] and "1 more" in refused["detail"], refused
    assert join(broker, tokens["p11"], pid)[0] == 201
    status, release = service_call(broker, "POST", f"/api/v1/service/packs/{pid}/releases", lab, lab_token)
    assert status == 201 and release["participants"] == 10 and release["seq"] == 3, release
    assert [e["seq"] for e in api(broker, "GET", "/api/v1/packs/earnings", tokens["p0"])[1]["entries"]] == [2, 1]
    assert [e["seq"] for e in api(broker, "GET", "/api/v1/packs/earnings", tokens["p11"])[1]["entries"]] == [3]

    status, releases = service_call(broker, "GET", f"/api/v1/service/packs/{pid}/releases", lab, lab_token)
    assert status == 200 and [r["seq"] for r in releases] == [1, 2, 3], releases
    status, packs = service_call(broker, "GET", "/api/v1/service/packs", lab, lab_token)
    assert status == 200 and packs[0]["participants"] == 11 and packs[0]["releases"] == 3, packs

    # p0's takeout holds both receipts, the ledger and the audit entries of the releases it was in.
    status, raw, kind = call(broker, "GET", "/api/v1/takeout", tokens["p0"])
    assert status == 200 and kind.startswith("application/zip"), (status, kind)
    with zipfile.ZipFile(io.BytesIO(raw)) as z:
        names = set(z.namelist())
        assert {"consents.json", "audit.json", "packs.json"} <= names, names
        assert verify(broker, z.read(f"receipts/pack-{pid}-joined.jws").decode())["tributary:status"] == "granted"
        assert verify(broker, z.read(f"receipts/pack-{pid}-withdrawn.jws").decode())["tributary:status"] == "revoked"
        kept = json.loads(z.read("packs.json"))
        assert [e["seq"] for e in kept["ledger"]] == [2, 1] and kept["participations"][0]["status"] == "withdrawn"
        assert len([e for e in json.loads(z.read("audit.json")) if e["channel"] == "pack"]) == 2
        assert json.loads(z.read("consents.json")) == []


def test_cohorts_bad_definitions_and_strangers_are_refused(broker, pool):
    world, tokens, lab, lab_token = pool
    status, pack = service_call(broker, "POST", "/api/v1/service/packs", lab, lab_token,
                                definition(cohort={"age_band": "30-39"}))
    assert status == 201, pack
    status, answer = join(broker, tokens["p0"], pack["id"])
    assert status == 409 and "cohort" in answer["detail"], answer
    status, _ = api(broker, "PUT", "/api/v1/packs/settings", tokens["p0"], {"budget_ceiling": 10, "age_band": "30-39"})
    assert status == 200
    assert join(broker, tokens["p0"], pack["id"])[0] == 201
    status, offers = api(broker, "GET", "/api/v1/packs", tokens["p0"])
    assert status == 200 and offers[0]["id"] == pack["id"] and offers[0]["status"] == "joined", offers
    assert offers[0]["fits_cohort"] is True

    for bad, field in [
        (definition(epsilon=0), "epsilon"),
        (definition(min_participants=5), "min_participants"),
        (definition(to="2026-10-01"), "to"),
        (definition(purpose="dpv:Whatever"), "purpose"),
        (definition(currency="euro"), "currency"),
        (definition(**{"from": "2026-02-30"}), "from"),
        (definition(aggregates={"percentiles": [50]}), "histogram"),
    ]:
        status, problem = service_call(broker, "POST", "/api/v1/service/packs", lab, lab_token, bad)
        assert status == 400 and field in problem["detail"], (field, problem)
        assert problem.get("type") or problem.get("title"), problem
    status, problem = service_call(broker, "POST", "/api/v1/service/packs", lab, lab_token,
                                   {**definition(), "surprise": 1})
    assert status in (400, 422) and "surprise" in json.dumps(problem), problem

    reader = lab.replace("lab", "rdr")
    reader_token = add_service(broker, reader, "read")
    known(broker, reader, reader_token)
    status, problem = service_call(broker, "POST", "/api/v1/service/packs", reader, reader_token, definition())
    assert status == 403 and "packs" in problem["detail"], problem
    other = lab.replace("lab", "oth")
    other_token = add_service(broker, other, "packs")
    known(broker, other, other_token)
    status, problem = service_call(broker, "POST", f"/api/v1/service/packs/{pack['id']}/releases", other, other_token)
    assert status == 404, problem
    status, problem = service_call(broker, "GET", "/api/v1/service/packs", lab, "wrong-token")
    assert status == 401, problem
    status, problem = api(broker, "POST", "/api/v1/packs/pk-nope/join", tokens["p1"])
    assert status == 404, problem
