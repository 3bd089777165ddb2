#!/usr/bin/env python3
"""The owner dashboard's budgets, in Debian's Chromium (headless, Playwright) against `tributary serve`.

Starts the release binary on free loopback ports in a temp dir (SQLite store, every default), signs
an owner up, and measures, each against its bar:

1. First-load JavaScript: the module script and modulepreload links of index.html, gzip -9 in
   Python, summed (bar: 250 KB, 1 KB = 1,000 bytes); beside it what Chromium transferred for them
   on a first load (Resource Timing), the server gzipping as the browser asks.
2. Explore over DAYS days of RATE Hz heart rate (2,592,000 points by default), seeded through MQTT
   by one device (SenML packs of one hour of data, QoS 1, each PUBACK awaited), until
   /api/v1/summary counts them all. Then, signed in through the page's form (cookie session):
   navigation start → `[data-testid=explore-chart][data-state=ready]` for the whole range, 5 loads
   (bar: 1,000 ms); a drag-select zoom to 1/30 of the range, mouse-up → the next ready draw, 5
   zooms at different places (bar: 300 ms); and the server's time for the bucketed
   /api/v1/measurements requests the page made (Resource Timing, and the same query from Python,
   also at a whole-minute bucket, which the store answers from its per-minute rollup). A 'ready'
   only counts once the page's last /measurements request has been answered: after a zoom the
   chart first redraws the old data at the new range and says 'ready' for that too (printed).
3. Live: 50 single values 200 ms apart; SSE event arrival (a wrapped EventSource) → the value in
   `[data-testid=live-value-DEVICE-hr]` plus the next animation frame, p50/p99/max (bar: 250 ms);
   PUBACK (Python) → drawn beside it.
4. Ten 50 Hz streams on /live for 10 s (10 devices, a pack of 10 samples every 200 ms each): long
   tasks (PerformanceObserver 'longtask'; bar: none, i.e. no task over 50 ms), animation frames per
   second, and that all ten series were drawn with their last value.

Every timestamp of (2)-(4) is taken inside the page with performance.now() by a script installed
before the app's own (add_init_script).

    .venv/bin/python scripts/bench_dashboard.py [--days 30] [--rate 1] [--quick] [--keep-dir]
"""

from __future__ import annotations

import argparse
import gzip
import json
import math
import re
import shutil
import signal
import statistics
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from html.parser import HTMLParser
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "integration"))

from clients import V5, Client  # noqa: E402
from conftest import Broker, wait_for  # noqa: E402
# Chromium as the browser test starts it, and its drag across Explore's chart.
from test_dashboard import CHROMIUM, CHROMIUM_ARGS, drag_zoom  # noqa: E402

DAY_S = 86_400
DAY_MS = DAY_S * 1000
# docs/configuration.md `[limits] max_packet_size` (default, the config this script runs) and
# docs/senml.md (a pack is at most 1 MiB and 10,000 records).
MAX_PACKET = 1_048_576
SENML_MAX_BYTES = 1_048_576
SENML_MAX_RECORDS = 10_000
PACKET_OVERHEAD = 64  # fixed header, topic length, packet id, 5.0 properties (generous)

BAR_JS_BYTES = 250_000
BAR_LOAD_MS = 1_000
BAR_ZOOM_MS = 300
BAR_LIVE_MS = 250
BAR_LONGTASK_MS = 50

# Installed before the app's scripts on every document of the benchmark's context.
INSTRUMENT_JS = r"""
(() => {
  const B = window.__bench = {
    states: [], mouseups: [], fetches: [], longtasks: [], events: [], values: [],
    frames: [], framesOn: false, parseEvents: true,
  };
  try {
    new PerformanceObserver((list) => {
      for (const e of list.getEntries()) B.longtasks.push({start: e.startTime, duration: e.duration, name: e.name});
    }).observe({type: 'longtask', buffered: true});
  } catch (e) { B.longtaskError = String(e); }
  window.addEventListener('mouseup', () => B.mouseups.push(performance.now()), true);
  const origFetch = window.fetch;
  window.fetch = function (input, init) {
    const url = typeof input === 'string' ? input : (input && input.url) || String(input);
    if (!url.includes('/api/v1/measurements')) return origFetch.apply(this, arguments);
    const rec = {url, start: performance.now(), end: null, status: null, error: null};
    B.fetches.push(rec);
    return origFetch.apply(this, arguments).then(
      (r) => { rec.end = performance.now(); rec.status = r.status; return r; },
      (e) => { rec.end = performance.now(); rec.error = String((e && e.name) || e); throw e; });
  };
  const ES = window.EventSource;
  if (ES) {
    window.EventSource = class extends ES {
      constructor(url, init) {
        super(url, init);
        // Registered before the page sets onmessage, so it runs first for each event.
        this.addEventListener('message', (e) => {
          const t = performance.now();
          if (!B.parseEvents) { B.events.push({t}); return; }
          let device = null, received = null, v = null;
          try {
            const ev = JSON.parse(e.data);
            device = ev.device; received = ev.received_ms;
            const p = JSON.parse(ev.payload);
            const last = p[p.length - 1];
            v = last && last.v;
          } catch (_) {}
          B.events.push({t, id: e.lastEventId, device, received, v});
        });
      }
    };
  }
  const onMutations = (mutations) => {
    const now = performance.now();
    const batch = [];
    // The value an attribute had right after mutation i: the next record's old value for the
    // same element and attribute, else the value now (records of one batch share `now`).
    const after = (i) => {
      const m = mutations[i];
      for (let k = i + 1; k < mutations.length; k++) {
        const n = mutations[k];
        if (n.type === 'attributes' && n.target === m.target && n.attributeName === m.attributeName) return n.oldValue;
      }
      return m.target.getAttribute(m.attributeName);
    };
    const seen = (el, v) => batch.push({t: now, key: el.getAttribute('data-testid'), v});
    mutations.forEach((m, i) => {
      if (m.type === 'attributes') {
        const el = m.target;
        const tid = el.getAttribute && el.getAttribute('data-testid');
        if (m.attributeName === 'data-state' && tid === 'explore-chart') {
          B.states.push([now, after(i), el.getAttribute('data-points')]);
        } else if (m.attributeName === 'data-value' && tid && tid.startsWith('live-value-')) {
          seen(el, after(i));
        }
      } else {
        for (const n of m.addedNodes) {
          if (n.nodeType !== 1) continue;
          const sel = '[data-testid^="live-value-"]';
          const els = n.matches(sel) ? [n] : n.querySelectorAll(sel);
          for (const el of els) if (el.hasAttribute('data-value')) seen(el, el.getAttribute('data-value'));
        }
      }
    });
    if (batch.length) {
      for (const b of batch) B.values.push(b);
      // The charts draw per frame: a value counts as drawn at the next animation frame.
      requestAnimationFrame(() => { const d = performance.now(); for (const b of batch) b.drawn = d; });
    }
  };
  new MutationObserver(onMutations).observe(document, {
    subtree: true, childList: true, attributes: true, attributeOldValue: true,
    attributeFilter: ['data-state', 'data-value']});
  B.startFrames = () => {
    B.frames = []; B.framesOn = true;
    const f = (ts) => { if (!B.framesOn) return; B.frames.push(ts); requestAnimationFrame(f); };
    requestAnimationFrame(f);
  };
  B.stopFrames = () => { B.framesOn = false; return B.frames.length; };
})();
"""

# The explore chart's first 'ready' draw of the data asked for since `since` (ms, page clock): every
# /measurements request started since then has ended, one answered, and the chart said 'ready' after
# that answer arrived. (A 'ready' before it is a redraw of the previous data: see the docs.)
READY_AFTER_JS = """(since) => {
  const B = window.__bench;
  const fetches = B.fetches.filter(f => f.start >= since);
  if (!fetches.length || fetches.some(f => f.end === null)) return null;
  const answered = fetches.filter(f => !f.error);
  if (!answered.length) return null;
  const end = answered[answered.length - 1].end;
  const early = B.states.filter(([t, s]) => t >= since && t < end && s === 'ready').length;
  for (const [t, s, p] of B.states) {
    if (t >= end && s === 'ready') return {t, points: Number(p), earlyReady: early};
  }
  return null;
}"""

RESOURCES_JS = """(part) => performance.getEntriesByType('resource').filter(e => e.name.includes(part)).map(e => ({
  name: e.name, start: e.startTime, requestStart: e.requestStart, responseStart: e.responseStart,
  responseEnd: e.responseEnd, transferSize: e.transferSize, encodedBodySize: e.encodedBodySize,
  decodedBodySize: e.decodedBodySize, initiatorType: e.initiatorType}))"""


class Stop(Exception):
    """A bound was reached: the message says which and what was measured until then."""


# -- small helpers -------------------------------------------------------------------------------


def http(url: str, method: str = "GET", token: str | None = None, body: dict | None = None,
         headers: dict | None = None, timeout: float = 120) -> tuple[int, bytes, object]:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method=method)
    if data is not None:
        request.add_header("Content-Type", "application/json")
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    for k, v in (headers or {}).items():
        request.add_header(k, v)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, response.read(), response.headers
    except urllib.error.HTTPError as e:
        return e.code, e.read(), e.headers


def api(broker, method: str, path: str, token: str | None = None, body: dict | None = None):
    status, raw, _ = http(broker.http_url + path, method, token, body)
    try:
        return status, json.loads(raw)
    except ValueError:
        return status, raw.decode(errors="replace")


def metrics(broker) -> dict[str, float]:
    _, raw, _ = http(broker.http_url + "/metrics", timeout=10)
    return {m.group(1): float(m.group(2)) for m in re.finditer(r"^(\w+) ([0-9.e+-]+)$", raw.decode(), re.M)}


def pct(values: list[float], p: float) -> float:
    """Nearest-rank percentile."""
    s = sorted(values)
    return s[max(0, min(len(s) - 1, math.ceil(p / 100 * len(s)) - 1))]


def wait_until(predicate, timeout: float, what: str, interval: float = 0.1):
    """conftest.wait_for, failing with this script's own error."""
    try:
        return wait_for(predicate, timeout, interval, what)
    except AssertionError as e:
        raise Stop(str(e)) from None


def device_client(broker, device: str, token: str, max_inflight: int | None = None) -> Client:
    """A paho 5.0 client of the device, once the broker has read the new account (within a second)."""
    def connected():
        client = Client(broker, V5, max_inflight=max_inflight)
        client.c.username_pw_set(device, token)
        if client.connect(expect_success=False).reason_code == 0:
            return client
        client.close()
        return None

    return wait_until(connected, 15, f"device {device} accepted", interval=0.2)


def add_device(broker, token: str, name: str) -> tuple[str, str]:
    status, body = api(broker, "POST", "/api/v1/devices", token, {"name": name})
    if status != 201:
        raise Stop(f"adding device {name}: {status} {body}")
    return body["id"], body["token"]


class Scripts(HTMLParser):
    """The scripts index.html makes the browser load at once: module scripts and modulepreloads."""

    def __init__(self):
        super().__init__()
        self.urls: list[str] = []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "script" and a.get("src"):
            self.urls.append(a["src"])
        elif tag == "link" and "modulepreload" in (a.get("rel") or "").split() and a.get("href"):
            self.urls.append(a["href"])


# -- 1. first-load JavaScript --------------------------------------------------------------------


def first_load_js(broker, browser) -> dict:
    _, index, _ = http(broker.http_url + "/", headers={"Accept-Encoding": "identity"})
    parser = Scripts()
    parser.feed(index.decode())
    files = []
    for src in parser.urls:
        url = urllib.parse.urljoin(broker.http_url + "/", src)
        status, raw, _ = http(url, headers={"Accept-Encoding": "identity"})
        if status != 200:
            raise Stop(f"{src}: {status}")
        _, served, headers = http(url, headers={"Accept-Encoding": "gzip"})
        files.append({"src": src, "raw": len(raw), "gzip9": len(gzip.compress(raw, compresslevel=9, mtime=0)),
                      "served": len(served), "encoding": headers.get("Content-Encoding", "identity")})
    context = browser.new_context(base_url=broker.http_url, viewport={"width": 1280, "height": 800})
    try:
        page = context.new_page()
        page.set_default_timeout(30_000)
        page.goto("/")
        page.get_by_role("heading", name="Sign in").wait_for()
        page.wait_for_load_state("networkidle")
        loaded = [e for e in page.evaluate(RESOURCES_JS, "/") if e["name"].split("?")[0].endswith(".js")]
    finally:
        context.close()
    return {"files": files, "chromium": loaded}


# -- 2. seeding ----------------------------------------------------------------------------------


def hour_packs(start_s: int, hours: int, rate: float, topic: str):
    """SenML JSON packs, one hour of `rate` Hz heart rate each (split when a pack would pass the
    broker's packet limit or SenML's record limit), times relative to each pack's bt."""
    per_hour = round(3600 * rate)
    step = 1 / rate
    limit = min(SENML_MAX_BYTES, MAX_PACKET - PACKET_OVERHEAD - len(topic.encode()))

    def pack(base_s: float, first: int, count: int) -> bytes:
        records = []
        for i in range(first, first + count):
            rel = (i - first) * step
            t = int(rel) if float(rel).is_integer() else round(rel, 6)
            tau = base_s + rel - start_s
            v = round(60 + 20 * math.sin(tau / 900) + 3 * math.sin(tau / 37), 1)
            if i == first:
                records.append(f'{{"bn":"","bt":{base_s},"bu":"beat/min","n":"hr","t":{t},"v":{v}}}')
            else:
                records.append(f'{{"n":"hr","t":{t},"v":{v}}}')
        return ("[" + ",".join(records) + "]").encode()

    for h in range(hours):
        hour_base = start_s + h * 3600
        parts = max(1, math.ceil(per_hour / SENML_MAX_RECORDS))
        for _ in range(64):  # bounded: more parts until every one fits
            size = math.ceil(per_hour / parts)
            chunks = [(k * size, min(size, per_hour - k * size)) for k in range(parts) if k * size < per_hour]
            payloads = [pack(hour_base + first * step, first, count) for first, count in chunks]
            if all(len(p) <= limit for p in payloads):
                break
            parts *= 2
        else:
            raise Stop("could not split an hour of data under the packet limit")
        for (first, count), p in zip(chunks, payloads):
            yield count, p


def seed(broker, token: str, device: str, device_token: str, days: int, rate: float, timeout: float) -> dict:
    end_s = int(time.time()) // 3600 * 3600
    start_s = end_s - days * DAY_S
    hours = days * 24
    total = round(3600 * rate) * hours
    topic = f"tributary/v1/{device}/senml"
    window = 32
    client = device_client(broker, device, device_token, max_inflight=window)
    t0 = time.monotonic()
    deadline = t0 + timeout
    mids: list[int] = []
    published = packs = max_bytes = 0
    last_print = t0
    try:
        for count, payload in hour_packs(start_s, hours, rate, topic):
            # At most `window` publishes unacknowledged.
            client.wait(lambda s: len(mids) - len(s.acks) < window,
                        max(1.0, deadline - time.monotonic()), "a PUBACK (seeding window)")
            mids.append(client.publish(topic, payload, qos=1, wait=False))
            published += count
            packs += 1
            max_bytes = max(max_bytes, len(payload))
            now = time.monotonic()
            if now - last_print >= 10:
                acked = sum(1 for m in mids if m in client.s.acks)
                print(f"  seeding: {packs} packs ({acked} acknowledged), {published:,}/{total:,} points, "
                      f"{now - t0:.0f} s, {published / (now - t0):,.0f} points/s", flush=True)
                last_print = now
            if now > deadline:
                raise Stop(f"seeding: {published:,} of {total:,} points published in {now - t0:.0f} s "
                           f"({published / (now - t0):,.0f} points/s); stopped at the {timeout:.0f} s bound")
        client.wait(lambda s: all(m in s.acks for m in mids), max(1.0, deadline - time.monotonic()),
                    "every PUBACK of the seed")
        refused = [m for m in mids if client.s.acks[m] >= 0x80]
        if refused:
            raise Stop(f"seeding: {len(refused)} packs refused, e.g. 0x{client.s.acks[refused[0]]:02x}")
    finally:
        client.close()
    acked_s = time.monotonic() - t0
    print(f"  seeding: all {packs} packs acknowledged after {acked_s:.1f} s "
          f"({total / acked_s:,.0f} points/s, largest pack {max_bytes:,} B)", flush=True)

    count = 0
    last_print = time.monotonic()
    while True:
        status, summary = api(broker, "GET", "/api/v1/summary", token)
        count = next((s["count"] for s in summary if s["name"] == "hr"), 0) if status == 200 else 0
        now = time.monotonic()
        if count >= total:
            break
        if now > deadline:
            raise Stop(f"storing: {count:,} of {total:,} points stored after {now - t0:.0f} s "
                       f"({count / (now - t0):,.0f} points/s); stopped at the {timeout:.0f} s bound")
        if now - last_print >= 10:
            print(f"  storing: {count:,}/{total:,} points stored, {now - t0:.0f} s, "
                  f"{count / (now - t0):,.0f} points/s overall", flush=True)
            last_print = now
        time.sleep(2)
    stored_s = time.monotonic() - t0
    print(f"  storing: {count:,} points stored after {stored_s:.1f} s ({count / stored_s:,.0f} points/s)", flush=True)
    # Let the pipeline's other consumers (archive) finish, so they do not compete with the browser.
    wait_until(lambda: metrics(broker).get("tributary_pipeline_consumer_lag", 1) == 0, 300, "pipeline caught up", 1)
    _, dead = api(broker, "GET", "/api/v1/dead-letters?limit=10", token)
    return {"total": total, "packs": packs, "max_bytes": max_bytes, "acked_s": acked_s, "stored_s": stored_s,
            "count": count, "dead_letters": len(dead) if isinstance(dead, list) else dead,
            "start_ms": start_s * 1000, "end_ms": end_s * 1000}


# -- 2. explore ----------------------------------------------------------------------------------


def bucket_of(url: str) -> int | None:
    q = urllib.parse.parse_qs(urllib.parse.urlparse(url).query)
    return int(q["bucket"][0]) if "bucket" in q else None


def wait_ready(page, since: float, timeout_ms: int = 120_000) -> dict:
    handle = page.wait_for_function(READY_AFTER_JS, arg=since, timeout=timeout_ms, polling=50)
    return handle.json_value()


def explore_load(page, url: str, reload: bool) -> dict:
    if reload:
        page.reload(wait_until="commit")
    else:
        page.goto(url, wait_until="commit")
    ready = wait_ready(page, 0)
    page.wait_for_timeout(500)  # anything after the first ready draw (a second fetch, another draw)
    b = page.evaluate("() => ({states: window.__bench.states, fetches: window.__bench.fetches,"
                      " longtasks: window.__bench.longtasks})")
    resources = page.evaluate(RESOURCES_JS, "/api/v1/measurements")
    return {"ready_ms": ready["t"], "points": ready["points"], **b, "resources": resources}


def server_times(broker, token: str, path_and_query: str, runs: int = 3) -> list[float]:
    out = []
    for _ in range(runs):
        t0 = time.perf_counter()
        status, raw, _ = http(broker.http_url + path_and_query, token=token)
        out.append((time.perf_counter() - t0) * 1000)
        if status != 200:
            raise Stop(f"{path_and_query}: {status} {raw[:200]!r}")
    return out


def explore(page, broker, token: str, span_ms: int) -> dict:
    now_ms = int(time.time() * 1000)
    url = f"/explore?m=hr&from={now_ms - span_ms}&to={now_ms}"
    loads = []
    for i in range(5):
        r = explore_load(page, url, reload=i > 0)
        done = [f for f in r["fetches"] if f["end"] is not None and f["error"] is None]
        aborted = [f for f in r["fetches"] if f["error"]]
        res = r["resources"]
        last = res[-1] if res else None
        ttfb = (last["responseStart"] - last["requestStart"]) if last and last["requestStart"] else None
        long_in_load = [t for t in r["longtasks"] if t["start"] <= r["ready_ms"]]
        loads.append({"ready_ms": r["ready_ms"], "points": r["points"], "fetches": len(r["fetches"]),
                      "aborted": len(aborted), "buckets": [bucket_of(f["url"]) for f in r["fetches"]],
                      "fetch_ms": [round(f["end"] - f["start"]) for f in done],
                      "first_fetch_start": r["fetches"][0]["start"] if r["fetches"] else None,
                      "server_ttfb_ms": ttfb, "body_bytes": last["encodedBodySize"] if last else None,
                      "longest_task_ms": max((t["duration"] for t in long_in_load), default=0),
                      "url": (done[-1]["url"] if done else None)})
        print(f"  explore load {i + 1}: ready {r['ready_ms']:.0f} ms after navigation start, {r['points']} points, "
              f"{len(r['fetches'])} measurement requests ({len(aborted)} aborted), buckets "
              f"{loads[-1]['buckets']} ms, fetch {loads[-1]['fetch_ms']} ms, server TTFB "
              f"{ttfb if ttfb is None else round(ttfb)} ms", flush=True)
        if r["points"] <= 0:
            raise Stop("the 30-day chart drew no points")

    zooms = []
    for k, centre in enumerate((0.1, 0.3, 0.5, 0.7, 0.9)):
        page.goto(url, wait_until="commit")
        wait_ready(page, 0)
        page.wait_for_timeout(300)
        before = page.evaluate("() => [window.__bench.mouseups.length, window.__bench.fetches.length]")
        drag_zoom(page, centre - 1 / 60, centre + 1 / 60)
        page.wait_for_function("(n) => window.__bench.mouseups.length > n", arg=before[0], timeout=10_000)
        mouseup = page.evaluate("() => window.__bench.mouseups[window.__bench.mouseups.length - 1]")
        ready = wait_ready(page, mouseup)
        page.wait_for_timeout(300)
        fetches = page.evaluate("(n) => window.__bench.fetches.slice(n)", before[1])
        states = page.evaluate("() => window.__bench.states")
        first_ready = next((t for t, st, _ in states if t >= mouseup and st == "ready"), None)
        resources = [e for e in page.evaluate(RESOURCES_JS, "/api/v1/measurements") if e["start"] >= mouseup]
        q = urllib.parse.parse_qs(urllib.parse.urlparse(page.url).query)
        zoom_span = int(q["to"][0]) - int(q["from"][0])
        last = resources[-1] if resources else None
        ttfb = (last["responseStart"] - last["requestStart"]) if last and last["requestStart"] else None
        zooms.append({"ms": ready["t"] - mouseup, "points": ready["points"], "span_ms": zoom_span,
                      "stale_ready": ready["earlyReady"], "first_ready_ms": first_ready - mouseup,
                      "fetches": len(fetches), "buckets": [bucket_of(f["url"]) for f in fetches],
                      "fetch_ms": [round(f["end"] - f["start"]) for f in fetches if f["end"] and not f["error"]],
                      "server_ttfb_ms": ttfb, "url": fetches[-1]["url"] if fetches else None})
        print(f"  zoom {k + 1}: mouse-up → ready {ready['t'] - mouseup:.0f} ms, {ready['points']} points over "
              f"{zoom_span / 3.6e6:.1f} h, bucket {zooms[-1]['buckets']} ms, fetch {zooms[-1]['fetch_ms']} ms, "
              f"server TTFB {ttfb if ttfb is None else round(ttfb)} ms; {ready['earlyReady']} 'ready' before the "
              f"answer (first {first_ready - mouseup:.0f} ms after mouse-up)", flush=True)
        if ready["points"] <= 0:
            raise Stop("the zoomed chart drew no points")

    # The same queries from Python (bearer token), and the 30-day one at a whole-minute bucket
    # (docs/store.md: only those are answered from the per-minute rollup).
    load_url = next(l["url"] for l in reversed(loads) if l["url"])
    load_py = server_times(broker, token, load_url)
    bucket = bucket_of(load_url)
    minute_bucket = math.ceil(bucket / 60_000) * 60_000
    minute_url = re.sub(r"bucket=\d+", f"bucket={minute_bucket}", load_url)
    minute_py = server_times(broker, token, minute_url)
    zoom_url = zooms[-1]["url"]
    zoom_py = server_times(broker, token, zoom_url) if zoom_url else []
    print(f"  from Python: page's 30-day query (bucket {bucket} ms) {[round(x) for x in load_py]} ms; "
          f"same at bucket {minute_bucket} ms {[round(x) for x in minute_py]} ms; "
          f"a zoom's query {[round(x) for x in zoom_py]} ms", flush=True)
    return {"loads": loads, "zooms": zooms, "load_py": load_py, "minute_py": minute_py, "zoom_py": zoom_py,
            "bucket": bucket, "minute_bucket": minute_bucket}


# -- 3. one live value ---------------------------------------------------------------------------


def live_single(page, broker, device: str, device_token: str) -> dict:
    page.goto("/live")
    page.locator("[data-testid=live][data-conn=connected]").wait_for(timeout=30_000)
    client = device_client(broker, device, device_token)
    topic = f"tributary/v1/{device}/senml"
    acked: dict[int, float] = {}
    try:
        t_next = time.monotonic()
        for i in range(50):
            value = 100 + i
            client.publish(topic, json.dumps([{"n": "hr", "u": "beat/min", "v": value}]), qos=1, timeout=10)
            acked[value] = time.time() * 1000
            t_next += 0.2
            time.sleep(max(0.0, t_next - time.monotonic()))
    finally:
        client.close()
    key = f"live-value-{device}-hr"

    def all_drawn():
        return page.evaluate("(key) => new Set(window.__bench.values.filter(v => v.key === key && v.drawn)"
                             ".map(v => v.v)).size", key) >= 50

    try:
        wait_until(all_drawn, 10, "all 50 live values drawn", 0.2)
    except Stop as e:
        print(f"  live: {e}", flush=True)
    b = page.evaluate("() => ({events: window.__bench.events, values: window.__bench.values,"
                      " origin: performance.timeOrigin})")
    arrival = {}
    for e in b["events"]:
        if e.get("device") == device and e.get("v") is not None:
            arrival.setdefault(round(e["v"]), e["t"])
    drawn, changed = {}, {}
    for v in b["values"]:
        if v["key"] == key and v.get("drawn") is not None and v["v"] not in (None, ""):
            drawn.setdefault(round(float(v["v"])), v["drawn"])
            changed.setdefault(round(float(v["v"])), v["t"])
    event_to_drawn = [drawn[v] - arrival[v] for v in acked if v in drawn and v in arrival]
    puback_to_drawn = [b["origin"] + drawn[v] - acked[v] for v in acked if v in drawn]
    puback_to_event = [b["origin"] + arrival[v] - acked[v] for v in acked if v in arrival]
    in_dom = [changed[v] - arrival[v] for v in acked if v in changed and v in arrival]
    to_frame = [drawn[v] - changed[v] for v in acked if v in drawn]
    print(f"  live: {len(arrival)} events arrived, {len(drawn)} values drawn of 50; event → value in the DOM "
          f"p50 {pct(in_dom, 50):.0f} / max {max(in_dom):.0f} ms, DOM → next frame p50 {pct(to_frame, 50):.0f} / "
          f"max {max(to_frame):.0f} ms" if in_dom and to_frame else
          f"  live: {len(arrival)} events arrived, {len(drawn)} values drawn of 50", flush=True)
    return {"event_to_drawn": event_to_drawn, "puback_to_drawn": puback_to_drawn,
            "puback_to_event": puback_to_event, "arrived": len(arrival), "drawn": len(drawn)}


# -- 4. ten 50 Hz streams ------------------------------------------------------------------------


def ten_streams(page, broker, token: str) -> dict:
    devices = [add_device(broker, token, f"stream{k}") for k in range(10)]
    clients = [device_client(broker, d, t) for d, t in devices]
    last_value: dict[str, float] = {}
    mids: list[tuple[Client, int]] = []
    try:
        page.goto("/live")
        page.locator("[data-testid=live][data-conn=connected]").wait_for(timeout=30_000)
        page.evaluate("() => { window.__bench.parseEvents = false; }")
        page.wait_for_timeout(1000)
        page.evaluate("() => window.__bench.startFrames()")
        t_start = page.evaluate("() => performance.now()")
        t_next = time.monotonic()
        for tick in range(50):  # 10 s
            bt = round(time.time() - 0.2, 3)
            for k, ((device, _), client) in enumerate(zip(devices, clients)):
                records = []
                for j in range(10):
                    s = tick * 0.2 + j * 0.02
                    v = round(1.0 + 0.1 * k + 0.5 * math.sin(2 * math.pi * 1.2 * s), 4)
                    rec = {"n": "ppg", "t": round(j * 0.02, 2), "v": v}
                    if j == 0:
                        rec = {"bn": "", "bt": bt, "bu": "V", **rec}
                    records.append(rec)
                    last_value[device] = v
                mids.append((client, client.publish(f"tributary/v1/{device}/senml",
                                                    json.dumps(records, separators=(",", ":")), qos=1, wait=False)))
            t_next += 0.2
            time.sleep(max(0.0, t_next - time.monotonic()))
        t_sent = page.evaluate("() => performance.now()")
        for client, mid in mids:
            client.wait(lambda s, mid=mid: mid in s.acks, 30, f"PUBACK of stream mid {mid}")
        page.wait_for_timeout(1000)
        t_end = page.evaluate("() => performance.now()")
        page.evaluate("() => window.__bench.stopFrames()")
        b = page.evaluate("() => ({frames: window.__bench.frames, longtasks: window.__bench.longtasks,"
                          " events: window.__bench.events.length, values: window.__bench.values.length,"
                          " longtaskError: window.__bench.longtaskError || null})")
        shown = page.evaluate(
            "(ids) => ids.map(id => { const el = document.querySelector(`[data-testid='live-value-${id}-ppg']`);"
            " return el ? el.getAttribute('data-value') : null; })", [d for d, _ in devices])
    finally:
        for c in clients:
            c.close()
    refused = sum(1 for c, m in mids if c.s.acks.get(m, 0) >= 0x80)
    frames = [f for f in b["frames"] if t_start <= f <= t_sent]
    fps = (len(frames) - 1) / ((frames[-1] - frames[0]) / 1000) if len(frames) > 1 else 0.0
    gaps = [b2 - a for a, b2 in zip(frames, frames[1:])]
    during = [t for t in b["longtasks"] if t_start <= t["start"] <= t_end]
    drawn_ok = sum(1 for (d, _), v in zip(devices, shown) if v is not None and abs(float(v) - last_value[d]) < 1e-9)
    result = {"published": len(mids), "refused": refused, "events": b["events"], "value_updates": b["values"],
              "series_shown": sum(1 for v in shown if v is not None), "series_last_value": drawn_ok,
              "fps": fps, "max_frame_gap_ms": max(gaps, default=0), "frames": len(frames),
              "longtasks": during, "longtask_error": b["longtaskError"], "seconds": (t_sent - t_start) / 1000}
    print(f"  streams: {len(mids)} packs published ({refused} refused), {b['events']} SSE events, "
          f"{result['series_shown']}/10 series on the page ({drawn_ok} with their last value), "
          f"{len(frames)} frames in {result['seconds']:.1f} s, {len(during)} long tasks", flush=True)
    return result


# -- the run -------------------------------------------------------------------------------------


def sign_in(page, name: str, password: str):
    page.goto("/")
    page.get_by_role("heading", name="Sign in").wait_for()
    page.get_by_label("Name", exact=True).fill(name)
    page.get_by_label("Password", exact=True).fill(password)
    page.get_by_role("button", name="Sign in", exact=True).click()
    page.get_by_role("heading", name="Overview", exact=True).wait_for()


def row(rows: list, figure: str, measured: str, bar: str, ok: bool | None):
    rows.append((figure, measured, bar, "" if ok is None else ("PASS" if ok else "MISS")))


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--days", type=int, default=30, help="days of history to seed and to show in Explore")
    p.add_argument("--rate", type=float, default=1.0, help="history sample rate, Hz")
    p.add_argument("--quick", action="store_true", help="1 day of history (a smoke run)")
    p.add_argument("--keep-dir", action="store_true", help="keep the temp dir (data, broker.log)")
    p.add_argument("--seed-timeout", type=float, default=1500, help="bound on seeding + storing, s")
    args = p.parse_args()
    if args.quick:
        args.days = 1
    if args.days < 1 or not 0 < args.rate <= 1000:
        p.error("--days must be ≥ 1 and --rate in (0, 1000]")
    if not Path(CHROMIUM).exists():
        raise SystemExit(f"{CHROMIUM} is missing: scripts/provision.sh installs Debian's chromium")

    from playwright.sync_api import sync_playwright

    # SIGTERM as Ctrl-C: the finally blocks stop the server and remove the temp dir.
    def interrupted(*_):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupted)
    work = Path(tempfile.mkdtemp(prefix="bench-dashboard-"))
    broker = Broker(work)
    rows: list = []
    try:
        broker.start()
        wait_until(lambda: http(broker.http_url + "/readyz", timeout=5)[0] == 200, 30, "/readyz")
        _, info = api(broker, "GET", "/api/v1/info")
        owner, password = "bench", "bench-dashboard-password"
        status, body = api(broker, "POST", "/api/v1/signup", body={"name": owner, "password": password})
        if status != 201:
            raise Stop(f"signup: {status} {body}")
        token = api(broker, "POST", "/api/v1/login", body={"name": owner, "password": password})[1]["token"]

        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
            try:
                print(f"tributary {info.get('version')} at {broker.http_url}, Chromium {browser.version}, "
                      f"data in {work}", flush=True)

                # 1.
                js = first_load_js(broker, browser)
                gz = sum(f["gzip9"] for f in js["files"])
                for f in js["files"]:
                    print(f"  first load: {f['src']} {f['raw']:,} B, gzip -9 {f['gzip9']:,} B, served "
                          f"{f['served']:,} B ({f['encoding']})", flush=True)
                for e in js["chromium"]:
                    print(f"  Chromium loaded {e['name'].split('/')[-1]}: transferSize {e['transferSize']:,} B, "
                          f"encoded body {e['encodedBodySize']:,} B, decoded {e['decodedBodySize']:,} B", flush=True)
                row(rows, f"first-load JS, gzip -9 ({len(js['files'])} file{'s' * (len(js['files']) != 1)})",
                    f"{gz / 1000:.1f} KB", "≤ 250 KB", gz <= BAR_JS_BYTES)
                row(rows, "first-load JS as Chromium transferred it (transferSize)",
                    f"{sum(e['transferSize'] for e in js['chromium']) / 1000:.1f} KB", "", None)

                # 2.
                device, device_token = add_device(broker, token, "watch")
                total = round(3600 * args.rate) * 24 * args.days
                print(f"seeding {args.days} days of {args.rate:g} Hz heart rate = {total:,} points "
                      f"(device {device})", flush=True)
                s = seed(broker, token, device, device_token, args.days, args.rate, args.seed_timeout)
                row(rows, f"seed: {s['total']:,} points in {s['packs']} packs, all PUBACKs",
                    f"{s['acked_s']:.0f} s = {s['total'] / s['acked_s']:,.0f} points/s", "", None)
                row(rows, "seed: until /summary counts them all",
                    f"{s['stored_s']:.0f} s = {s['count'] / s['stored_s']:,.0f} points/s", "", None)

                context = browser.new_context(base_url=broker.http_url, viewport={"width": 1280, "height": 800})
                context.add_init_script(INSTRUMENT_JS)
                page = context.new_page()
                page.set_default_timeout(30_000)
                sign_in(page, owner, password)

                e = explore(page, broker, token, args.days * DAY_MS)
                loads = [l["ready_ms"] for l in e["loads"]]
                zooms = [z["ms"] for z in e["zooms"]]
                days = f"{args.days} day{'s' * (args.days != 1)}"
                row(rows, f"Explore {days}: navigation start → chart ready, median (5 loads)",
                    f"{statistics.median(loads):,.0f} ms", "≤ 1,000 ms", statistics.median(loads) <= BAR_LOAD_MS)
                row(rows, f"Explore {days}: navigation start → chart ready, max",
                    f"{max(loads):,.0f} ms", "≤ 1,000 ms", max(loads) <= BAR_LOAD_MS)
                ttfbs = [l["server_ttfb_ms"] for l in e["loads"] if l["server_ttfb_ms"] is not None]
                if ttfbs:
                    row(rows, f"  its /measurements request: server time (TTFB), median (bucket {e['bucket']:,} ms)",
                        f"{statistics.median(ttfbs):,.0f} ms", "", None)
                row(rows, "  same query from Python, median of 3",
                    f"{statistics.median(e['load_py']):,.0f} ms", "", None)
                row(rows, f"  same range at a whole-minute bucket ({e['minute_bucket']:,} ms), from Python",
                    f"{statistics.median(e['minute_py']):,.0f} ms", "", None)
                row(rows, "Explore zoom (drag-select): mouse-up → ready, median (5 zooms)",
                    f"{statistics.median(zooms):,.0f} ms", "≤ 300 ms", statistics.median(zooms) <= BAR_ZOOM_MS)
                row(rows, "Explore zoom: mouse-up → ready, max", f"{max(zooms):,.0f} ms", "≤ 300 ms",
                    max(zooms) <= BAR_ZOOM_MS)
                zt = [z["server_ttfb_ms"] for z in e["zooms"] if z["server_ttfb_ms"] is not None]
                if zt:
                    row(rows, f"  its /measurements request: server time (TTFB), median (bucket "
                              f"{e['zooms'][-1]['buckets'][-1]:,} ms)", f"{statistics.median(zt):,.0f} ms", "", None)

                # 3.
                lv = live_single(page, broker, device, device_token)
                if lv["event_to_drawn"]:
                    d = lv["event_to_drawn"]
                    row(rows, f"Live: SSE event → value drawn, p50 / p99 / max ({len(d)} of 50)",
                        f"{pct(d, 50):.0f} / {pct(d, 99):.0f} / {max(d):.0f} ms", "≤ 250 ms", max(d) <= BAR_LIVE_MS
                        and len(d) == 50)
                else:
                    row(rows, "Live: SSE event → value drawn", "nothing drawn", "≤ 250 ms", False)
                if lv["puback_to_drawn"]:
                    d = lv["puback_to_drawn"]
                    row(rows, "Live: PUBACK (Python) → value drawn, p50 / p99 / max",
                        f"{pct(d, 50):.0f} / {pct(d, 99):.0f} / {max(d):.0f} ms", "", None)
                if lv["puback_to_event"]:
                    d = lv["puback_to_event"]
                    row(rows, "  of which PUBACK → SSE event in the page, p50 / max",
                        f"{pct(d, 50):.0f} / {max(d):.0f} ms", "", None)

                # 4.
                st = ten_streams(page, broker, token)
                worst = max((t["duration"] for t in st["longtasks"]), default=0)
                over = sum(1 for t in st["longtasks"] if t["duration"] > BAR_LONGTASK_MS)
                row(rows, f"10 × 50 Hz on Live, {st['seconds']:.0f} s: tasks over 50 ms",
                    f"{over}" + (f" (longest {worst:.0f} ms)" if over else "")
                    + (f" [longtask observer: {st['longtask_error']}]" if st["longtask_error"] else ""),
                    "0", over == 0 and not st["longtask_error"])
                row(rows, "10 × 50 Hz on Live: animation frames per second (longest gap)",
                    f"{st['fps']:.1f} ({st['max_frame_gap_ms']:.0f} ms)", "", None)
                row(rows, "10 × 50 Hz on Live: series drawn with their last value",
                    f"{st['series_last_value']} of 10", "10", st["series_last_value"] == 10)
                context.close()
            finally:
                browser.close()
    except Stop as e:
        print(f"stopped: {e}", flush=True)
        sys.exit(2)
    except KeyboardInterrupt:
        print("interrupted", flush=True)
        sys.exit(130)
    finally:
        broker.close()
        if rows:
            w = max(len(r[0]) for r in rows)
            m = max(len(r[1]) for r in rows)
            print()
            print(f"{'figure':<{w}}  {'measured':>{m}}  {'bar':<10}  result")
            for figure, measured, bar, ok in rows:
                print(f"{figure:<{w}}  {measured:>{m}}  {bar:<10}  {ok}")
        if args.keep_dir:
            print(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
