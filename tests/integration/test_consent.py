"""Consent, receipts and the audit log (docs/consent.md), with paho-mqtt, the HTTP API and jwcrypto.

Two owners (ann, bob) with one device each; services with `read` made with the admin CLI.

| case | expected |
|---|---|
| a service without consent subscribes `tributary/v1/#` and reads the API | nothing by MQTT; 403 by the API |
| ann grants `heart_rate`, bob refuses | the service gets ann's heart_rate only: a mixed pack cut to it, steps-only, raw and bob's data withheld; the API answers heart_rate of ann only; both reads in ann's audit log, none in bob's |
| ann revokes while her device publishes every 20 ms | the live subscription's last delivery comes < 1 s after the revoke |
| receipts | verify with jwcrypto against the published JWKS (OKP/Ed25519); a changed payload or signature fails; the download is the same JWS |
| bad input | unknown purpose, empty types, unknown request id, a service deciding, an owner revoking another's consent: problem+json 400/404/403 |
"""

from __future__ import annotations

import base64
import json
import threading
import time
import urllib.error
import urllib.request

import pytest
from jwcrypto import jwk, jws

from accounts_cli import add_service, login_when_known
from api_client import api, call, login, people

pytestmark = pytest.mark.tributary_only("consent is tributary's own")

PROBLEM = "application/problem+json"


def service_call(broker, name: str, token: str, method: str, path: str, body: dict | None = None):
    """(status, parsed JSON or text, content type) of one API call as a service (HTTP Basic)."""
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(broker.http_url + path, data=data, method=method)
    if data is not None:
        request.add_header("Content-Type", "application/json")
    basic = base64.b64encode(f"{name}:{token}".encode()).decode()
    request.add_header("Authorization", f"Basic {basic}")
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            status, raw, ctype = response.status, response.read(), response.headers.get("Content-Type", "")
    except urllib.error.HTTPError as e:
        status, raw, ctype = e.code, e.read(), e.headers.get("Content-Type", "")
    try:
        return status, json.loads(raw), ctype
    except ValueError:
        return status, raw.decode(), ctype


def pack(*records: tuple[str, float]) -> bytes:
    return json.dumps([{"n": name, "v": value} for name, value in records]).encode()


@pytest.fixture
def world(broker):
    w = people(broker, "ann", "bob")
    suffix = w["ann"][0][len("ann"):]
    study = f"study{suffix}"
    study_token = add_service(broker, study, "read")
    clients = []

    def mqtt(user: str, secret: str, **kw):
        client = login_when_known(broker, user, secret)
        clients.append(client)
        return client

    tokens = {who: login(broker, w[who][0], w[who][1]) for who in ("ann", "bob")}
    yield w, (study, study_token), tokens, mqtt
    for c in clients:
        c.close()


def ask(broker, svc, owner: str, types: list[str], purpose: str = "dpv:ResearchAndDevelopment"):
    status, body, _ = service_call(broker, *svc, "POST", "/api/v1/service/consents", {
        "owner": owner, "types": types, "purpose": purpose, "retention_days": 30,
        "third_parties": ["Example Lab"],
    })
    assert status == 201, body
    assert body["status"] == "pending" and body["types"] == sorted(types)
    return body["id"]


def decide(broker, token: str, consent_id: str, decision: str) -> dict:
    status, body = api(broker, "POST", f"/api/v1/consents/{consent_id}/{decision}", token)
    assert status == 200, body
    return body


def wait_until(what: str, check, timeout: float = 5.0, every: float = 0.05):
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(every)


def delivered_once_granted(a1, topic: str, study_client, timeout: float = 3.0) -> float:
    """Publishes a heart_rate probe every 100 ms until the service receives one; returns how long."""
    start = time.monotonic()
    while not study_client.messages():
        assert time.monotonic() - start < timeout, "the grant never reached the broker"
        a1.publish_answer(topic, pack(("heart_rate", 1)))
        time.sleep(0.1)
    return time.monotonic() - start


def test_without_consent_a_service_gets_nothing(world, broker):
    w, svc, tokens, mqtt = world
    (ann, _, a1_name, a1_token), (bob, _, b1_name, b1_token) = w["ann"], w["bob"]
    study = mqtt(*svc)
    assert study.subscribe([("tributary/v1/#", 1)]) == [1], "read still lets it subscribe"
    owner = mqtt(ann, w["ann"][1])
    assert owner.subscribe([(f"tributary/v1/{a1_name}/#", 1)]) == [1]
    a1, b1 = mqtt(a1_name, a1_token), mqtt(b1_name, b1_token)
    assert a1.publish_answer(f"tributary/v1/{a1_name}/senml", pack(("heart_rate", 70), ("steps", 5)))[0] == 0
    assert b1.publish_answer(f"tributary/v1/{b1_name}/senml", pack(("heart_rate", 80)))[0] == 0
    assert a1.publish_answer(f"tributary/v1/{a1_name}/raw", b"not senml")[0] == 0
    # The owner's own subscription shows the messages went through the broker.
    owner.wait_messages(2)
    time.sleep(1.0)
    assert study.messages() == [], "a service without consent received data"
    now = int(time.time() * 1000)
    status, body, ctype = service_call(
        broker, *svc, "GET", f"/api/v1/service/measurements?owner={ann}&from={now - 3600_000}&to={now + 60_000}")
    assert status == 403 and ctype == PROBLEM, (status, body)
    assert "no live consent" in body["detail"]


def test_consent_delivers_exactly_the_consented_types_and_is_audited(world, broker):
    w, svc, tokens, mqtt = world
    (ann, _, a1_name, a1_token), (bob, _, b1_name, b1_token) = w["ann"], w["bob"]
    ann_consent = ask(broker, svc, ann, ["heart_rate"])
    bob_consent = ask(broker, svc, bob, ["heart_rate"])
    study = mqtt(*svc)
    assert study.subscribe([("tributary/v1/+/senml", 1)]) == [1]
    a1, b1 = mqtt(a1_name, a1_token), mqtt(b1_name, b1_token)

    granted = decide(broker, tokens["ann"], ann_consent, "grant")
    assert granted["status"] == "granted" and [r["status"] for r in granted["receipts"]] == ["granted"]
    refused = decide(broker, tokens["bob"], bob_consent, "refuse")
    assert refused["status"] == "refused"
    took = delivered_once_granted(a1, f"tributary/v1/{a1_name}/senml", study)
    print(f"grant reached the live subscription in {took:.2f} s")
    study.s.messages.clear()

    topic_a, topic_b = f"tributary/v1/{a1_name}/senml", f"tributary/v1/{b1_name}/senml"
    assert a1.publish_answer(topic_a, pack(("heart_rate", 71), ("steps", 12)))[0] == 0  # mixed: cut
    assert a1.publish_answer(topic_a, pack(("steps", 13)))[0] == 0                      # withheld
    assert b1.publish_answer(topic_b, pack(("heart_rate", 90)))[0] == 0                 # bob refused
    assert a1.publish_answer(f"tributary/v1/{a1_name}/raw", b"raw")[0] == 0             # not subscribed anyway
    assert a1.publish_answer(topic_a, pack(("heart_rate", 72)))[0] == 0                 # whole
    got = study.wait_messages(2)
    time.sleep(0.5)
    got = study.messages()
    assert [m.topic for m in got] == [topic_a, topic_a], [(m.topic, m.payload) for m in got]
    cut = json.loads(got[0].payload)
    assert [(r["n"], r["v"]) for r in cut] == [("heart_rate", 71)], cut
    assert [(r["n"], r["v"]) for r in json.loads(got[1].payload)] == [("heart_rate", 72)]

    # The API: heart_rate of ann only, once the pipeline stored it.
    now = int(time.time() * 1000)
    span = f"from={now - 3600_000}&to={now + 60_000}"

    def points():
        status, body, _ = service_call(broker, *svc, "GET", f"/api/v1/service/measurements?owner={ann}&{span}")
        assert status == 200, body
        return body if any(p["avg"] == 72 for p in body) else None

    body = wait_until("ann's stored heart_rate", points)
    assert {p["name"] for p in body} == {"heart_rate"}, body
    status, body, ctype = service_call(
        broker, *svc, "GET", f"/api/v1/service/measurements?owner={ann}&{span}&names=steps")
    assert status == 400 and ctype == PROBLEM and "not among the consented types" in body["detail"], body
    status, body, _ = service_call(broker, *svc, "GET", f"/api/v1/service/measurements?owner={bob}&{span}")
    assert status == 403, body

    # Both reads in ann's audit log (MQTT counts are written about once a second), none in bob's.
    def audit_of(who):
        status, body = api(broker, "GET", "/api/v1/audit?limit=100", tokens[who])
        assert status == 200, body
        return body["entries"]

    def both_channels():
        entries = audit_of("ann")
        channels = {e["channel"] for e in entries if e["actor"] == svc[0]}
        return entries if channels == {"mqtt", "api"} else None

    entries = wait_until("ann's audit entries", both_channels, timeout=5)
    mqtt_count = sum(e["count"] for e in entries if e["channel"] == "mqtt")
    assert mqtt_count >= 3, entries  # the probe(s), the cut pack, the whole pack
    assert all(e["consent_id"] == ann_consent and e["actor_kind"] == "service" for e in entries), entries
    assert all(e["device"] == a1_name for e in entries if e["channel"] == "mqtt"), entries
    assert audit_of("bob") == []

    # The service sees where its requests stand.
    status, body, _ = service_call(broker, *svc, "GET", "/api/v1/service/consents")
    assert status == 200
    assert {c["id"]: c["status"] for c in body["consents"]} == {ann_consent: "granted", bob_consent: "refused"}


def test_revocation_cuts_the_live_subscription_within_one_second(world, broker):
    w, svc, tokens, mqtt = world
    ann, _, a1_name, a1_token = w["ann"]
    consent = ask(broker, svc, ann, ["heart_rate"])
    arrivals: list[float] = []
    study = mqtt(*svc)
    study._user_on_message = lambda m: arrivals.append(time.monotonic())
    assert study.subscribe([(f"tributary/v1/+/senml", 0)]) == [0]
    a1 = mqtt(a1_name, a1_token)
    decide(broker, tokens["ann"], consent, "grant")
    topic = f"tributary/v1/{a1_name}/senml"
    delivered_once_granted(a1, topic, study)

    stop = threading.Event()

    def publish():
        n = 0
        while not stop.is_set():
            a1.publish(topic, pack(("heart_rate", 60 + n % 40)), qos=0)
            n += 1
            time.sleep(0.02)

    publisher = threading.Thread(target=publish, daemon=True)
    publisher.start()
    try:
        wait_until("deliveries flowing", lambda: len(arrivals) > 20)
        revoked_at = time.monotonic()
        body = decide(broker, tokens["ann"], consent, "revoke")
        answered = time.monotonic() - revoked_at
        time.sleep(2.0)
    finally:
        stop.set()
        publisher.join()
    assert body["status"] == "revoked"
    assert [r["status"] for r in body["receipts"]] == ["granted", "revoked"]
    assert any(revoked_at - 0.25 < t <= revoked_at for t in arrivals), "deliveries were flowing up to the revoke"
    last = max(arrivals) - revoked_at
    print(f"revoke answered in {answered * 1000:.0f} ms; last delivery {last * 1000:.0f} ms after the revoke")
    assert last < 1.0, f"the subscription went on for {last:.2f} s after the revoke"
    assert not [t for t in arrivals if t > revoked_at + 1.0]


def test_receipts_verify_against_the_published_key(world, broker):
    w, svc, tokens, _ = world
    ann = w["ann"][0]
    consent = ask(broker, svc, ann, ["steps", "heart_rate"], purpose="dpv:AcademicResearch")
    decide(broker, tokens["ann"], consent, "grant")
    body = decide(broker, tokens["ann"], consent, "revoke")
    status, raw, ctype = call(broker, "GET", "/api/v1/consent/jwks.json")
    assert status == 200 and ctype.startswith("application/jwk-set+json"), (status, ctype)
    keys = json.loads(raw)["keys"]
    assert len(keys) == 1 and keys[0]["kty"] == "OKP" and keys[0]["crv"] == "Ed25519"
    assert "d" not in keys[0], "the private part must never be published"
    key = jwk.JWK(**keys[0])

    def verified(token: str) -> dict:
        checked = jws.JWS()
        checked.deserialize(token)
        checked.verify(key, alg="EdDSA")
        return json.loads(checked.payload)

    for receipt, status_ in zip(body["receipts"], ["granted", "revoked"]):
        claims = verified(receipt["jws"])
        for field in ("version", "jurisdiction", "consentTimestamp", "collectionMethod", "consentReceiptID",
                      "language", "piiPrincipalId", "piiControllers", "policyUrl", "services", "sensitive",
                      "spiCat"):
            assert field in claims, field
        assert claims["consentReceiptID"] == receipt["receipt_id"]
        assert claims["piiPrincipalId"] == ann
        assert claims["tributary:status"] == status_
        purpose = claims["services"][0]["purposes"][0]
        assert purpose["purpose"] == "dpv:AcademicResearch"
        assert purpose["purposeCategory"] == ["dpv:ResearchAndDevelopment"]
        assert purpose["piiCategory"] == ["heart_rate", "steps"]
        assert purpose["thirdPartyDisclosure"] is True and purpose["thirdPartyName"] == "Example Lab"
        # The download is the same JWS.
        status, raw, ctype = call(broker, "GET", f"/api/v1/consents/{consent}/receipts/{receipt['receipt_id']}",
                                  tokens["ann"])
        assert status == 200 and ctype == "application/jose" and raw.decode() == receipt["jws"]

    header, payload, signature = body["receipts"][0]["jws"].split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    claims["piiPrincipalId"] = w["bob"][0]
    forged = base64.urlsafe_b64encode(json.dumps(claims).encode()).decode().rstrip("=")
    with pytest.raises(jws.InvalidJWSSignature):
        verified(f"{header}.{forged}.{signature}")
    flipped = ("A" if signature[0] != "A" else "B") + signature[1:]
    with pytest.raises(jws.InvalidJWSSignature):
        verified(f"{header}.{payload}.{flipped}")
    assert broker.log_tail().count("BEGIN") == 0


def test_bad_input_gets_a_clear_problem(world, broker):
    w, svc, tokens, _ = world
    ann, bob = w["ann"][0], w["bob"][0]

    def problem(result, status):
        code, body, ctype = result
        assert code == status and ctype == PROBLEM, (code, body, ctype)
        return body["detail"]

    base = {"owner": ann, "types": ["heart_rate"], "purpose": "dpv:ResearchAndDevelopment", "retention_days": 30}
    assert "not a known DPV purpose" in problem(service_call(
        broker, *svc, "POST", "/api/v1/service/consents", {**base, "purpose": "dpv:Fun"}), 400)
    assert "at least one measurement type" in problem(service_call(
        broker, *svc, "POST", "/api/v1/service/consents", {**base, "types": []}), 400)
    assert "retention_days" in problem(service_call(
        broker, *svc, "POST", "/api/v1/service/consents", {**base, "retention_days": 0}), 400)
    assert "wrong service name or token" in problem(service_call(
        broker, svc[0], "nope", "POST", "/api/v1/service/consents", base), 401)

    def owner_call(method, path, token):
        status, raw, ctype = call(broker, method, path, token)
        return status, json.loads(raw), ctype

    assert "no consent request" in problem(owner_call(
        "POST", "/api/v1/consents/00000000-0000-4000-8000-000000000000/grant", tokens["ann"]), 404)
    consent = ask(broker, svc, ann, ["heart_rate"])
    # The service may not decide for the owner.
    assert "only the owner asked decides" in problem(service_call(
        broker, *svc, "POST", f"/api/v1/consents/{consent}/grant"), 403)
    # Another owner cannot see, grant or revoke it.
    assert "no consent request" in problem(owner_call("POST", f"/api/v1/consents/{consent}/grant", tokens["bob"]), 404)
    decide(broker, tokens["ann"], consent, "grant")
    assert "no consent request" in problem(owner_call("POST", f"/api/v1/consents/{consent}/revoke", tokens["bob"]), 404)
    assert "no consent request" in problem(owner_call("GET", f"/api/v1/consents/{consent}", tokens["bob"]), 404)
    # Deciding twice is a conflict, and the consent is still granted.
    assert "applies only to pending" in problem(owner_call(
        "POST", f"/api/v1/consents/{consent}/grant", tokens["ann"]), 409)
    status, body = api(broker, "GET", f"/api/v1/consents/{consent}", tokens["ann"])
    assert status == 200 and body["status"] == "granted"
    assert "unknown query parameter" in problem(owner_call("GET", "/api/v1/audit?limt=5", tokens["ann"]), 400)
    assert "limit" in problem(owner_call("GET", "/api/v1/audit?limit=100000", tokens["ann"]), 400)
    status, body = api(broker, "GET", "/api/v1/consents", tokens["bob"])
    assert status == 200 and body["consents"] == []


@pytest.mark.timeout(120)
def test_a_revocation_on_one_node_cuts_a_subscription_on_another(tmp_path, postgres_url):
    """Two nodes on one PostgreSQL store: the owner grants and revokes on A; the service and the
    device are on B. Both nodes publish the same receipt key, and B's deliveries are in the audit
    log A answers."""
    import shutil

    from accounts_cli import add_device, add_owner
    from conftest import Broker, wait_for

    config = {"store": {"url": postgres_url}}
    a = Broker(tmp_path / "a", config).start()
    b = None
    clients = []
    try:
        wait_for(lambda: call(a, "GET", "/healthz")[0] == 200, 20, what="node A's API")
        password = add_owner(a, "ann")
        device_token = add_device(a, "ann", "annwatch")
        svc = ("study", add_service(a, "study", "read"))
        b_dir = tmp_path / "b" / "data"
        b_dir.mkdir(parents=True)
        shutil.copy(a.data_dir / "accounts.json", b_dir / "accounts.json")
        b = Broker(tmp_path / "b", config).start()
        wait_for(lambda: call(b, "GET", "/healthz")[0] == 200, 20, what="node B's API")

        jwks_a, jwks_b = call(a, "GET", "/api/v1/consent/jwks.json")[1], call(b, "GET", "/api/v1/consent/jwks.json")[1]
        assert json.loads(jwks_a) == json.loads(jwks_b), "one key for the installation"

        consent = ask(b, svc, "ann", ["heart_rate"])
        token = login(a, "ann", password)
        arrivals: list[float] = []
        study = login_when_known(b, *svc)
        clients.append(study)
        study._user_on_message = lambda m: arrivals.append(time.monotonic())
        assert study.subscribe([("tributary/v1/+/senml", 0)]) == [0]
        device = login_when_known(b, "annwatch", device_token)
        clients.append(device)
        decide(a, token, consent, "grant")
        topic = "tributary/v1/annwatch/senml"
        took = delivered_once_granted(device, topic, study)
        print(f"a grant on A reached B's subscription in {took:.2f} s")

        stop = threading.Event()

        def publish():
            while not stop.is_set():
                device.publish(topic, pack(("heart_rate", 64)), qos=0)
                time.sleep(0.02)

        publisher = threading.Thread(target=publish, daemon=True)
        publisher.start()
        try:
            wait_until("deliveries flowing on B", lambda: len(arrivals) > 20)
            revoked_at = time.monotonic()
            decide(a, token, consent, "revoke")
            time.sleep(2.0)
        finally:
            stop.set()
            publisher.join()
        assert any(revoked_at - 0.25 < t <= revoked_at for t in arrivals), "B was delivering up to the revoke"
        last = max(arrivals) - revoked_at
        print(f"revoked on A; B's last delivery {last * 1000:.0f} ms after")
        assert last < 1.0, f"B went on delivering for {last:.2f} s"

        def audited():
            status, body = api(a, "GET", "/api/v1/audit", token)
            assert status == 200, body
            return sum(e["count"] for e in body["entries"] if e["actor"] == "study") or None

        assert wait_until("B's deliveries in the audit log", audited) >= 20
    finally:
        for c in clients:
            c.close()
        a.close()
        if b is not None:
            b.close()
