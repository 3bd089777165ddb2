#!/usr/bin/env python3
"""Measurements per second from MQTT publish to queryable in the store.

Starts `tributary serve` (SQLite store by default, or `--store postgres://...` on an empty database),
makes an owner and DEVICES devices, and has each device publish MESSAGES SenML JSON packs of RECORDS
measurements at QoS 1 (paho-mqtt, one thread per device). Then polls the HTTP API until the owner's
measurements are all there and prints publish time, time until queryable and measurements/s.

The publishers (Python) are slower than the pipeline, so the figure above is a floor. To measure the
pipeline alone, the node is then stopped and `tributary reprocess` reads the same log again: once into
the full store (every measurement already stored: decode + idempotency check) and, on SQLite, once
into an emptied store (decode + insert); it prints measurements/s itself.

    .venv/bin/python scripts/bench_pipeline.py [--devices 4] [--messages 2500] [--records 10] [--store URL]
        [--empty-store URL]
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "integration"))

from clients import V311, Client  # noqa: E402
from conftest import Broker  # noqa: E402
from numbered import Publisher  # noqa: E402

T0 = 1_790_000_000


def cli(broker, *args: str) -> str:
    out = subprocess.run([str(REPO / "target/release/tributary"), *args, "--data-dir", str(broker.data_dir)],
                         capture_output=True, text=True, timeout=60, check=True)
    return out.stdout


def api(broker, path: str, token: str | None = None, body: dict | None = None):
    request = urllib.request.Request(broker.http_url + path, data=json.dumps(body).encode() if body else None,
                                     method="POST" if body else "GET")
    request.add_header("Content-Type", "application/json")
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--devices", type=int, default=4)
    p.add_argument("--messages", type=int, default=2500, help="per device")
    p.add_argument("--records", type=int, default=10, help="SenML records per message")
    p.add_argument("--store", default=None, help="store URL (default: SQLite in the data dir)")
    p.add_argument("--empty-store", default=None,
                   help="with a PostgreSQL --store: an empty database to reprocess into (SQLite: the file is deleted)")
    args = p.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-pipeline-"))
    broker = Broker(work, {"store": {"url": args.store}} if args.store else None).start()
    try:
        password = re.search(r"password \(shown once\): (\S+)", cli(broker, "owner", "add", "bench")).group(1)
        devices = {}
        for i in range(args.devices):
            name = f"bdev{i}"
            devices[name] = re.search(r"token \(shown once\): (\S+)",
                                      cli(broker, "device", "add", "--owner", "bench", name)).group(1)
        time.sleep(1.5)  # the broker reloads accounts.json once a second
        total = args.devices * args.messages * args.records
        acked: set[int] = set()
        publishers = []
        for i, (name, token) in enumerate(devices.items()):
            pub = Publisher(broker, f"bench-{name}", acked, f"tributary/v1/{name}/senml", V311, credentials=(name, token))
            packs = []
            for m in range(args.messages):
                seq = i * args.messages + m
                base = T0 + seq * args.records
                packs.append(json.dumps([{"bn": f"{name}/", "bt": base, "n": "hr", "u": "beat/min", "v": 60 + r % 40,
                                          "t": r} if r == 0 else {"n": "hr", "t": r, "v": 60 + r % 40}
                                         for r in range(args.records)]).encode())
            pub.message = lambda n, packs=packs, offset=i * args.messages: packs[n - offset]
            pub.connect()
            publishers.append(pub)
        deadline = time.monotonic() + 600
        t0 = time.monotonic()
        threads = [threading.Thread(target=lambda p=p, i=i: [p.publish(i * args.messages + m, deadline)
                                                                 for m in range(args.messages)])
                   for i, p in enumerate(publishers)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        for pub in publishers:
            pub.wait_drained(deadline)
        published_s = time.monotonic() - t0
        token = api(broker, "/api/v1/login", body={"name": "bench", "password": password})["token"]
        end = (T0 + args.devices * args.messages * args.records + 10) * 1000
        query = urllib.parse.urlencode({"from": T0 * 1000, "to": end, "bucket": 86_400_000})
        count = 0
        while time.monotonic() < deadline:
            count = sum(p["count"] for p in api(broker, f"/api/v1/measurements?{query}", token))
            if count >= total:
                break
            time.sleep(0.05)
        queryable_s = time.monotonic() - t0
        print(f"store={args.store or 'sqlite'} devices={args.devices} messages={args.devices * args.messages} "
              f"(acknowledged {len(acked)}) measurements={total} (queryable {count}): published in {published_s:.1f}s, "
              f"all queryable after {queryable_s:.1f}s = {count / queryable_s:,.0f} measurements/s")
        for pub in publishers:
            pub.close()
        broker.stop()
        reprocess(broker, args.store, "into the full store")
        if not args.store:
            for suffix in ("", "-wal", "-shm"):
                (broker.data_dir / f"store.sqlite{suffix}").unlink(missing_ok=True)
            reprocess(broker, None, "into an emptied store")
        elif args.empty_store:
            reprocess(broker, args.empty_store, "into an empty database")
    finally:
        broker.close()


def reprocess(broker, store: str | None, what: str):
    """`tributary reprocess` over the node's log; prints its figures."""
    cmd = [str(REPO / "target/release/tributary"), "reprocess", "--data-dir", str(broker.data_dir)]
    if store:
        cmd += ["--store", store]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=900, check=True).stdout
    first = out.splitlines()[0]
    rate = re.search(r"\(([\d.]+) measurements/s", out).group(1)
    new = re.search(r"measurements new:\s+(\d+)", out).group(1)
    old = re.search(r"measurements already stored:\s+(\d+)", out).group(1)
    print(f"reprocess {what}: {first}; new {new}, already stored {old} = {float(rate):,.0f} measurements/s")


if __name__ == "__main__":
    main()
