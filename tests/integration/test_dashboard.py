"""The owner's dashboard end to end, in Debian's Chromium (headless) driven by Playwright, against
the release binary, which embeds the dashboard (web/dist) and serves it on its HTTP listener.

One person signs up, adds a device, and a paho client publishes SenML with the token the page
showed: the value appears on Live within a second of its PUBACK; Explore shows 30 days of history
and zooms into one hour; the CSV export the page downloads equals the API's, and so does the CSV in the takeout its "Download all my data" link downloads; the revoked device is
refused and the page says so. A second person sees nothing of the first's. On Your rights an owner
grants a service's request, downloads its receipt, revokes it, sees the service's read in the audit
log, joins a pack, erases a device's data and deletes the account. Every page is
photographed at 1280x800 and 390x844 (light and dark) into target/dashboard-screenshots/ (or
$TRIBUTARY_SCREENSHOTS), and axe-core (web/node_modules, pinned by web/package-lock.json) reports no
violation on any of them."""

from __future__ import annotations

import json
import math
import os
import re
import time
import urllib.parse
import zipfile
from pathlib import Path

import pytest

from api_client import api, call
from clients import V5, Client, unique
from conftest import AGAINST, REPO, wait_for

pytestmark = [
    pytest.mark.skipif(AGAINST != "tributary", reason="the dashboard is tributary's"),
    pytest.mark.timeout(420),
]

CHROMIUM = "/usr/bin/chromium"
AXE = REPO / "web" / "node_modules" / "axe-core" / "axe.min.js"
SHOTS = Path(os.environ.get("TRIBUTARY_SCREENSHOTS") or REPO / "target" / "dashboard-screenshots")
# What the machine's closed network needs (no background connections, no GPU, no sandbox as root).
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
VIEWPORTS = [(1280, 800), (390, 844)]
# axe-core's rules for WCAG 2.0/2.1 A and AA, and its best practices.
AXE_TAGS = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "best-practice"]
DAY_MS = 86_400_000
HOUR_MS = 3_600_000
HISTORY_DAYS = 30


@pytest.fixture(scope="module")
def chromium():
    from playwright.sync_api import sync_playwright

    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: scripts/provision.sh installs Debian's chromium", pytrace=False)
    if not AXE.exists():
        pytest.fail(f"{AXE} is missing: npm ci --prefix web (scripts/provision.sh does it)", pytrace=False)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


def new_page(browser, broker):
    # bypass_csp: axe is injected as an inline script, which the dashboard's CSP forbids.
    context = browser.new_context(base_url=broker.http_url, viewport={"width": 1280, "height": 800},
                                  bypass_csp=True, accept_downloads=True)
    page = context.new_page()
    page.set_default_timeout(15_000)
    return page


def check_page(page, name: str, ready: str | None = None):
    """Screenshots of the page at both sizes in light and dark, and axe-core on each: no violation."""
    SHOTS.mkdir(parents=True, exist_ok=True)
    problems = []
    for scheme in ("light", "dark"):
        page.emulate_media(color_scheme=scheme)
        for width, height in VIEWPORTS:
            page.set_viewport_size({"width": width, "height": height})
            if ready:
                page.locator(ready).first.wait_for()
            page.wait_for_timeout(150)  # one resize and repaint of the charts
            page.screenshot(path=str(SHOTS / f"{name}-{width}x{height}-{scheme}.png"), full_page=True)
            if not page.evaluate("typeof window.axe !== 'undefined'"):
                page.add_script_tag(path=str(AXE))
            violations = page.evaluate(
                "async (tags) => (await axe.run(document, {runOnly: {type: 'tag', values: tags}}))"
                ".violations.map(v => ({id: v.id, impact: v.impact, help: v.help,"
                " nodes: v.nodes.slice(0, 3).map(n => n.target.join(' '))}))",
                AXE_TAGS)
            problems += [dict(v, page=name, size=f"{width}x{height}", scheme=scheme) for v in violations]
    page.emulate_media(color_scheme="light")
    page.set_viewport_size({"width": 1280, "height": 800})
    assert problems == [], json.dumps(problems, indent=1)


def sign_up(page, name: str, password: str):
    page.goto("/")
    page.get_by_role("button", name="Create one").click()
    page.get_by_label("Name", exact=True).fill(name)
    page.get_by_label("Password", exact=True).fill(password)
    page.get_by_role("button", name="Create account").click()
    page.get_by_role("heading", name="Overview", exact=True).wait_for()


def device_client(broker, device: str, token: str) -> Client:
    """A paho 5.0 client of the device, once the broker has read the new account (within a second)."""
    def connected():
        client = Client(broker, V5)
        client.c.username_pw_set(device, token)
        if client.connect(expect_success=False).reason_code == 0:
            return client
        client.close()
        return None

    return wait_for(connected, timeout=10, interval=0.2, what=f"device {device} accepted")


def senml_history(now_ms: int) -> list[bytes]:
    """30 days of heart rate, one value a minute, one SenML pack a day (times relative to bt)."""
    packs = []
    start_s = (now_ms - HISTORY_DAYS * DAY_MS) // 1000 // 60 * 60
    for day in range(HISTORY_DAYS):
        base = start_s + day * 86_400
        records = [{"bn": "", "bt": base, "n": "hr", "u": "beat/min", "t": 0, "v": 70.0}]
        for minute in range(1, 1_440):
            value = round(70 + 15 * math.sin((day * 1_440 + minute) / 90), 1)
            records.append({"n": "hr", "u": "beat/min", "t": minute * 60, "v": value})
        packs.append(json.dumps(records).encode())
    return packs


def query_range(page) -> tuple[int, int]:
    params = urllib.parse.parse_qs(urllib.parse.urlparse(page.url).query)
    return int(params["from"][0]), int(params["to"][0])


def explore_ready(page) -> int:
    """Waits for Explore's chart to finish a draw; the points drawn."""
    chart = page.locator("[data-testid=explore-chart][data-state=ready]")
    chart.wait_for()
    return int(chart.get_attribute("data-points") or 0)


def drag_zoom(page, fraction_from: float, fraction_to: float):
    """Drags across the chart's plot area from one fraction of its width to another (uPlot's zoom)."""
    # After a change of window size, the plot follows its box on the next frames.
    page.wait_for_function(
        "() => { const o = document.querySelector('[data-testid=explore-chart] .u-over');"
        " const b = document.querySelector('[data-testid=explore-chart]');"
        " return o && o.getBoundingClientRect().width > 0.8 * b.getBoundingClientRect().width; }")
    box = page.locator("[data-testid=explore-chart] .u-over").bounding_box()
    assert box, "no plot area"
    y = box["y"] + box["height"] / 2
    page.mouse.move(box["x"] + box["width"] * fraction_from, y)
    page.mouse.down()
    page.mouse.move(box["x"] + box["width"] * (fraction_from + fraction_to) / 2, y, steps=4)
    page.mouse.move(box["x"] + box["width"] * fraction_to, y, steps=4)
    page.mouse.up()


def test_an_owner_signs_up_adds_a_device_sees_live_and_history_exports_and_revokes(broker, chromium):
    suffix = unique("").replace("-", "")[-6:]
    ann, password = f"ann{suffix}", f"pw-{suffix}-long-enough"
    page = new_page(chromium, broker)

    # Sign-up and sign-in pages.
    page.goto("/")
    page.get_by_role("heading", name="Sign in").wait_for()
    check_page(page, "signin")
    sign_up(page, ann, password)
    check_page(page, "overview-empty")

    # By keyboard: the first Tab reaches the skip link, which moves focus into the page's content.
    page.goto("/")
    page.get_by_role("heading", name="Overview", exact=True).wait_for()
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.textContent") == "Skip to content"
    page.keyboard.press("Enter")
    assert page.evaluate("!!document.activeElement.closest('main')")

    # Add a device (by keyboard): its id and token are shown once, with snippets and a QR code.
    page.goto("/devices")
    page.get_by_label("Device name").focus()
    page.keyboard.type("watch")
    page.keyboard.press("Enter")
    token = page.get_by_test_id("new-device-token").inner_text().strip()
    device = page.get_by_test_id("new-device-id").inner_text().strip()
    assert device != "watch" and len(device) == 13, device
    assert len(token) >= 40, token
    panel = page.get_by_role("dialog")
    assert "mosquitto_pub" in panel.inner_text()
    # The QR code's library loads when the dialog opens: wait for it (bounded), do not sample once.
    panel.locator("canvas, img, svg").first.wait_for(timeout=15_000)
    check_page(page, "devices-token")
    page.keyboard.press("Escape")

    # The paho client uses exactly what the page showed.
    client = device_client(broker, device, token)
    try:
        # Live: a value appears within a second of its PUBACK.
        page.goto("/live")
        page.locator("[data-testid=live][data-conn=connected]").wait_for()
        client.publish(f"tributary/v1/{device}/senml", json.dumps([{"n": "hr", "u": "beat/min", "v": 61}]), qos=1)
        acked = time.monotonic()
        value = page.get_by_test_id(f"live-value-{device}-hr")
        value.wait_for()
        page.wait_for_function(
            "(sel) => document.querySelector(sel)?.getAttribute('data-value') === '61'",
            arg=f"[data-testid='live-value-{device}-hr']", polling="raf", timeout=5_000)
        live_latency = time.monotonic() - acked
        print(f"live: value on the page {live_latency * 1000:.0f} ms after its PUBACK")
        assert live_latency <= 1.0, f"{live_latency:.3f} s from PUBACK to the page"
        check_page(page, "live", ready="[data-testid=live][data-conn=connected]")

        # 30 days of history, one value a minute.
        now_ms = int(time.time() * 1000)
        for pack in senml_history(now_ms):
            client.publish(f"tributary/v1/{device}/senml", pack, qos=1)
    finally:
        client.close()
    token_api = api(broker, "POST", "/api/v1/login", body={"name": ann, "password": password})[1]["token"]

    def stored():
        status, summary = api(broker, "GET", "/api/v1/summary", token_api)
        return status == 200 and summary and summary[0]["count"] >= HISTORY_DAYS * 1_440 + 1

    wait_for(stored, timeout=60, interval=0.5, what="the history stored")

    page.goto("/")
    page.get_by_text("beat/min").first.wait_for()
    check_page(page, "overview")

    # Explore: 30 days, at most about two points per pixel, then a zoom into one hour.
    page.goto(f"/explore?m=hr&from={now_ms - HISTORY_DAYS * DAY_MS}&to={now_ms}")
    points = explore_ready(page)
    width = page.locator("[data-testid=explore-chart] .u-over").bounding_box()["width"]
    assert 0 < points <= 2 * width + 2, (points, width)
    check_page(page, "explore", ready="[data-testid=explore-chart][data-state=ready]")
    drag_zoom(page, 27.5 / 30, 28.5 / 30)  # about one day
    page.wait_for_function("(to) => !location.search.includes('to=' + to)", arg=str(now_ms))
    explore_ready(page)
    frm, to = query_range(page)
    assert 0.5 * DAY_MS < to - frm < 1.5 * DAY_MS, (frm, to)
    drag_zoom(page, 10 / 24, 11 / 24)  # about one hour of that day
    page.wait_for_function("(span) => { const p = new URLSearchParams(location.search);"
                           " return p.get('to') - p.get('from') < span; }", arg=2 * HOUR_MS)
    points = explore_ready(page)
    frm, to = query_range(page)
    assert 0.5 * HOUR_MS < to - frm < 1.5 * HOUR_MS, (frm, to)
    assert points >= 20, f"{points} points in one hour of one-a-minute data"

    # Data: the CSV the page downloads is the API's.
    page.goto("/data")
    with page.expect_download() as download:
        page.get_by_role("link", name="CSV").click()
    downloaded = Path(download.value.path()).read_bytes()
    status, from_api, _ = call(broker, "GET", "/api/v1/export?format=csv", token_api)
    assert status == 200
    assert downloaded == from_api, (len(downloaded), len(from_api))
    assert downloaded.count(b"\n") == HISTORY_DAYS * 1_440 + 2  # the header, the live value, the history
    # "Download all my data": the takeout, through the session cookie, holds the same CSV.
    with page.expect_download() as download:
        page.get_by_role("link", name="Download all my data (zip)").click()
    with zipfile.ZipFile(download.value.path()) as takeout:
        assert takeout.read("measurements/measurements.csv") == from_api
    check_page(page, "data")

    page.goto("/settings")
    check_page(page, "settings")

    # An expired session: what the person typed survives signing in again.
    page.goto("/devices")
    page.get_by_label("Device name").fill("bike")
    page.context.clear_cookies()
    page.get_by_role("button", name="Add", exact=True).click()
    again = page.get_by_role("dialog")
    again.get_by_role("heading", name="Your session has ended").wait_for()
    again.get_by_label("Name", exact=True).fill(ann)
    again.get_by_label("Password", exact=True).fill(password)
    again.get_by_role("button", name="Sign in", exact=True).click()
    assert page.get_by_test_id("new-device-id").inner_text().strip() != device
    assert "bike" in page.get_by_role("dialog").inner_text()
    page.keyboard.press("Escape")

    # Revoke: the device is refused from then on, and the page says so.
    card = page.get_by_role("listitem").filter(has_text=device)
    card.get_by_role("button", name="Revoke – watch").click()
    page.get_by_role("dialog").get_by_role("button", name="Revoke", exact=True).click()
    card.get_by_text("revoked").wait_for()
    check_page(page, "devices")

    def refused():
        client = Client(broker, V5)
        client.c.username_pw_set(device, token)
        code = client.connect(expect_success=False).reason_code
        client.close()
        return code >= 0x80 and code

    code = wait_for(refused, timeout=10, interval=0.2, what="the revoked device refused")
    assert code in (0x86, 0x87), hex(code)

    # The server unreachable: the page says so and carries on once it is back, still signed in
    # (login sessions are kept in the store, so they survive the restart).
    broker.stop()
    page.get_by_role("link", name="Overview", exact=True).click()
    page.get_by_text("The server cannot be reached").first.wait_for()
    broker.start()
    page.get_by_text("beat/min").first.wait_for(timeout=30_000)
    wait_for(lambda: not page.get_by_text("The server cannot be reached").first.is_visible(), timeout=30,
             interval=0.2, what="the banner gone once the server is back")
    assert not page.get_by_role("heading", name="Your session has ended").is_visible()

    # A second owner sees nothing of the first's.
    bob_page = new_page(chromium, broker)
    sign_up(bob_page, f"bob{suffix}", f"pw-{suffix}-bobs-own")
    bob_page.get_by_text("No measurements yet").wait_for()
    bob_page.goto("/devices")
    bob_page.get_by_text("No devices yet").wait_for()
    assert device not in bob_page.content()
    seen = bob_page.evaluate(
        "async ([from, to]) => { const r = await fetch(`/api/v1/measurements?from=${from}&to=${to}&names=hr`);"
        " return [r.status, await r.json()]; }", [now_ms - HISTORY_DAYS * DAY_MS, now_ms + HOUR_MS])
    assert seen == [200, []], seen
    bob_page.goto(f"/explore?m=hr&from={now_ms - DAY_MS}&to={now_ms}")
    bob_page.get_by_text("There are no measurements to explore yet").wait_for()
    bob_page.context.close()
    page.context.close()


# The page's names of the behaviour model's activities: English, French (web/src/i18n/strings.ts).
ACTIVITY_NAMES = {
    "walking": ("Walking", "Marche"),
    "walking_upstairs": ("Walking upstairs", "Montée d’escaliers"),
    "walking_downstairs": ("Walking downstairs", "Descente d’escaliers"),
    "sitting": ("Sitting", "Assis"),
    "standing": ("Standing", "Debout"),
    "laying": ("Lying down", "Allongé"),
}


def sign_in(page, name: str, password: str):
    page.goto("/")
    page.get_by_label("Name", exact=True).fill(name)
    page.get_by_label("Password", exact=True).fill(password)
    page.get_by_role("button", name="Sign in", exact=True).click()
    page.get_by_role("heading", name="Overview", exact=True).wait_for()


@pytest.mark.timeout(300)
def test_the_overview_shows_todays_activity_and_speaks_french(tmp_path, chromium):
    """With the behaviour model on, a walk replayed from UCI HAPT today appears on the Overview's
    timeline; in French the page and its numbers change language."""
    from api_client import people
    from conftest import Broker
    from test_activity import held_out_runs, packs, place, require

    csv_path, model = require("TRIBUTARY_HAR_CSV"), require("TRIBUTARY_HAR_MODEL")
    walks = [run for run in held_out_runs(csv_path)[2] if len(run["samples"]) >= 1_000]
    broker = Broker(tmp_path, {"model": {"path": model}}).start()
    try:
        name, password, device, token = people(broker, "walker")["walker"]
        # Today in UTC (the page's time zone below), at least a minute after midnight.
        now_s = time.time()
        start_s = max(now_s - 15 * 60, now_s // 86_400 * 86_400 + 60)
        runs = [max(walks, key=lambda run: len(run["samples"]))]
        place(runs, start_s)
        client = device_client(broker, device, token)
        try:
            for _, payload in packs(runs[0]):
                client.publish(f"tributary/v1/{device}/senml", payload, qos=1)
        finally:
            client.close()
        owner_token = api(broker, "POST", "/api/v1/login", body={"name": name, "password": password})[1]["token"]
        query = f"from={int(start_s * 1000) - 60_000}&to={int(now_s * 1000) + 60_000}"
        segments = wait_for(lambda: api(broker, "GET", f"/api/v1/activity?{query}", owner_token)[1]["segments"],
                            timeout=60, interval=0.5, what="activity segments stored")
        longest = max(segments, key=lambda s: s["end_ms"] - s["start_ms"])["activity"]
        english, french = ACTIVITY_NAMES[longest]

        context = chromium.new_context(base_url=broker.http_url, viewport={"width": 1280, "height": 800},
                                       bypass_csp=True, timezone_id="UTC", locale="en-GB")
        page = context.new_page()
        page.set_default_timeout(15_000)
        sign_in(page, name, password)
        timeline = page.get_by_role("img", name="Activity timeline for today, from midnight to midnight")
        timeline.wait_for()
        legend = page.get_by_role("listitem").filter(has_text=re.compile(f"^{english} — (\\d+|< 1) min$"))
        legend.first.wait_for()
        check_page(page, "overview-activity")

        page.goto("/settings")
        page.get_by_label("Language").select_option(label="Français")
        page.get_by_role("link", name="Aperçu", exact=True).click()
        page.get_by_role("heading", name="Aperçu", exact=True).wait_for()
        assert page.evaluate("document.documentElement.lang") == "fr"
        legend = page.get_by_role("listitem").filter(has_text=re.compile(f"^{french} — (\\d+|< 1) min$"))
        legend.first.wait_for()
        check_page(page, "overview-fr")
        context.close()
    finally:
        broker.close()


def _service_call(broker, name: str, token: str, method: str, path: str, body: dict | None = None):
    from test_consent import service_call

    status, answer, _ = service_call(broker, name, token, method, path, body)
    return status, answer


def test_an_owner_decides_a_consent_reads_the_audit_log_joins_a_pack_erases_and_deletes_the_account(
        broker, chromium):
    """Your rights (/rights): a service's pending request is granted in the page, its receipt
    downloaded (the API's JWS), and revoked; the service's read is in the audit table as the API
    lists it; a pack is joined and the budget and profile saved; one device's data is erased with
    the counts the API answered; the account is deleted through the typed-name dialog, the page is
    back at sign-in, and the old session is refused."""
    from accounts_cli import add_service
    from api_client import login, people

    name, password, device, device_token = people(broker, "rita")["rita"]
    suffix = name[len("rita"):]
    study, lab = f"study{suffix}", f"lab{suffix}"
    study_token = add_service(broker, study, "read")
    lab_token = add_service(broker, lab, "packs")
    owner_token = login(broker, name, password)

    # Heart rate from the device, one message retained (an erasure clears it too).
    now_ms = int(time.time() * 1000)
    topic = f"tributary/v1/{device}/senml"
    client = device_client(broker, device, device_token)
    try:
        for i in range(5):
            record = [{"n": "heart_rate", "u": "beat/min", "t": (now_ms - (10 - i) * 60_000) / 1000, "v": 60 + i}]
            client.publish(topic, json.dumps(record), qos=1)
        client.publish(topic, json.dumps([{"n": "heart_rate", "u": "beat/min", "v": 66}]), qos=1, retain=True)
    finally:
        client.close()
    span = f"from={now_ms - HOUR_MS}&to={now_ms + HOUR_MS}"
    stored = wait_for(
        lambda: (lambda r: r[1] if r[0] == 200 and len(r[1]) == 6 else None)(
            api(broker, "GET", f"/api/v1/measurements?{span}&names=heart_rate", owner_token)),
        timeout=30, interval=0.2, what="six heart rates stored")

    # The service asks (once the broker knows it), and a buyer offers two packs, one for a region.
    ask = {"owner": name, "types": ["heart_rate"], "purpose": "dpv:ResearchAndDevelopment",
           "retention_days": 30, "third_parties": ["Example Lab"]}
    consent = wait_for(lambda: (lambda r: r[1] if r[0] == 201 else None)(
        _service_call(broker, study, study_token, "POST", "/api/v1/service/consents", ask)),
        timeout=10, interval=0.2, what="the service known and its request made")
    pack = {"title": f"Resting heart rate {suffix}", "measurement": "heart_rate",
            "purpose": "dpv:ResearchAndDevelopment", "from": "2026-11-01", "to": "2026-11-03",
            "lower": 40, "upper": 200, "epsilon": 1.0, "aggregates": {"count": True, "mean": True},
            "min_participants": 10, "price_cents": 250, "currency": "EUR"}
    regional = dict(pack, title=f"Heart rate in the EU {suffix}", cohort={"region": "EU"})
    offered = []
    for body in (pack, regional):
        offered.append(wait_for(lambda body=body: (lambda r: r[1] if r[0] == 201 else None)(
            _service_call(broker, lab, lab_token, "POST", "/api/v1/service/packs", body)),
            timeout=10, interval=0.2, what="the buyer known and its pack defined"))

    page = new_page(chromium, broker)
    sign_in(page, name, password)
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Your rights").click()
    page.get_by_role("heading", name="Your rights", level=1).wait_for()
    card = page.get_by_test_id("consent").filter(has_text=study)
    card.get_by_text("Pending", exact=True).wait_for()
    text = card.inner_text()
    for expected in ("Research and development", "dpv:ResearchAndDevelopment", "heart_rate", "30 days",
                     "Example Lab"):
        assert expected in text, (expected, text)
    assert card.get_by_role("link").count() == 0, "a pending request has no receipt yet"
    check_page(page, "rights-pending", ready="[data-testid=consent]")

    # Grant: the card says so, the API agrees, and the receipt the page downloads is the API's.
    card.get_by_role("button", name=f"Grant – {study}").click()
    page.locator("[data-testid=consent][data-status=granted]").wait_for()
    status, granted = api(broker, "GET", f"/api/v1/consents/{consent['id']}", owner_token)
    assert status == 200 and granted["status"] == "granted", granted
    [receipt] = granted["receipts"]
    with page.expect_download() as download:
        card.get_by_role("link", name=re.compile(r"^Receipt: Granted, ")).click()
    assert Path(download.value.path()).read_text() == receipt["jws"]
    assert download.value.suggested_filename == f"receipt-{receipt['receipt_id']}.jws"

    # The service reads under the consent: the audit table shows what the API lists.
    status, points = _service_call(broker, study, study_token, "GET",
                                   f"/api/v1/service/measurements?owner={name}&{span}&names=heart_rate")
    assert status == 200 and len(points) == 6, points
    audit = page.get_by_role("region", name="Audit log", exact=True)
    audit.get_by_role("button", name="Refresh").click()
    rows = page.get_by_test_id("audit-entry")
    rows.first.wait_for()
    status, log = api(broker, "GET", "/api/v1/audit", owner_token)
    assert status == 200 and log["entries"], log
    assert rows.count() == len(log["entries"])
    assert [int(rows.nth(i).get_attribute("data-id")) for i in range(rows.count())] == \
        [e["id"] for e in log["entries"]]
    read = log["entries"][0]
    assert (read["actor"], read["channel"], read["count"], read["consent_id"]) == (study, "api", 6, consent["id"])
    cells = rows.first.locator("td").all_inner_texts()
    assert study in cells[1] and "API read" in cells[2] and cells[4] == "6" and cells[5] == consent["id"][:8], cells

    # Revoke: a second receipt, and the service is refused from then on.
    card.get_by_role("button", name=f"Revoke – {study}").click()
    page.locator("[data-testid=consent][data-status=revoked]").wait_for()
    assert card.get_by_role("link").count() == 2
    status, revoked = api(broker, "GET", f"/api/v1/consents/{consent['id']}", owner_token)
    assert revoked["status"] == "revoked" and [r["status"] for r in revoked["receipts"]] == ["granted", "revoked"]
    status, _ = _service_call(broker, study, study_token, "GET",
                              f"/api/v1/service/measurements?owner={name}&{span}&names=heart_rate")
    assert status == 403

    # Packs: join the open one; the regional one waits for the profile to name the region.
    open_card = page.get_by_test_id("pack").filter(has_text=pack["title"])
    open_card.get_by_role("button", name=f"Join – {pack['title']}").click()
    page.locator("[data-testid=pack][data-status=joined]").wait_for()
    offers = {p["id"]: p for p in api(broker, "GET", "/api/v1/packs", owner_token)[1]}
    assert offers[offered[0]["id"]]["status"] == "joined" and offers[offered[0]["id"]]["receipt"]
    assert "€2.50" in open_card.inner_text()
    join_regional = page.get_by_role("button", name=f"Join – {regional['title']}")
    assert join_regional.is_disabled()
    page.get_by_label("Privacy budget ceiling (ε)").fill("2.5")
    page.get_by_label("Region", exact=True).fill("EU")
    page.get_by_role("button", name="Save", exact=True).click()
    wait_for(lambda: join_regional.is_enabled(), timeout=10, interval=0.1, what="the regional pack open to join")
    status, settings = api(broker, "GET", "/api/v1/packs/settings", owner_token)
    assert (settings["budget_ceiling"], settings["region"], settings["age_band"]) == (2.5, "EU", None), settings
    page.get_by_text("No release has included you yet.").wait_for()
    check_page(page, "rights", ready="[data-testid=audit-entry]")

    # Erase one device's data: the counts the API answered, and nothing left of it.
    page.get_by_label("Device", exact=True).select_option(device)
    page.get_by_role("button", name="Erase…").click()
    dialog = page.get_by_role("dialog")
    assert device in dialog.inner_text()
    check_page(page, "rights-erase-dialog")
    dialog.get_by_role("button", name="Erase", exact=True).click()
    result = page.get_by_test_id("erase-result")
    result.wait_for()
    assert f"Measurements: {len(stored)}" in result.inner_text(), result.inner_text()
    assert "retained messages: 1" in result.inner_text(), result.inner_text()
    status, left = api(broker, "GET", f"/api/v1/measurements?{span}", owner_token)
    assert status == 200 and left == [], left

    # Delete the account: the button waits for the owner's name, then the page is back at sign-in.
    page.get_by_role("button", name="Delete my account…").click()
    dialog = page.get_by_role("dialog")
    field = dialog.get_by_label(f"Type your owner name, {name}, to confirm")
    page.wait_for_function("() => document.activeElement?.id === 'confirm-owner'")  # focus where to type
    field.fill(name + "x")
    delete = dialog.get_by_role("button", name="Delete my account", exact=True)
    assert delete.is_disabled()
    field.fill(name)
    delete.click()
    page.get_by_role("heading", name="Sign in").wait_for()
    notice = page.get_by_test_id("signin-notice").inner_text()
    assert notice.startswith("Your account was deleted. Measurements: 0; "), notice
    check_page(page, "signin-account-deleted")
    # The browser's cookie, the bearer token and the password are all refused now.
    assert page.evaluate("async () => (await fetch('/api/v1/session')).status") == 401
    assert api(broker, "GET", "/api/v1/devices", owner_token)[0] == 401
    assert api(broker, "POST", "/api/v1/login", body={"name": name, "password": password})[0] == 401
    page.context.close()
