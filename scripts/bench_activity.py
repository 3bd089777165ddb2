#!/usr/bin/env python3
"""The pipeline's measurements/s with the behaviour model on and off, on the same log.

Fills a node's embedded log once: DEVICES devices of one owner each publish PACKS SenML JSON motion
packs (one second at 50 Hz: 50 samples x 6 channels = 300 measurements) at QoS 1. Then, for each
run, copies the data dir, forgets every consumer's offset and the store (so every sink starts from
the first record), starts `tributary serve` on the copy and times how long its sinks take to catch
up: the store pipeline (raw motion stored: `[model] store_motion = true`, so both runs store the
same rows) and, with the model on, the activity sink until every window is classified. The archive
is off in both. Runs alternate off/on ROUNDS times (the machine is shared: compare the ratio).
Also prints the node's CPU seconds per 100,000 measurements.

    .venv/bin/python scripts/bench_activity.py --model DIR [--devices 10] [--packs 120] [--rounds 2]
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "integration"))

from clients import V311, Client  # noqa: E402
from conftest import Broker  # noqa: E402

T0 = int(time.time()) - 86_400
CHANNELS = [("acc_x", "m/s2"), ("acc_y", "m/s2"), ("acc_z", "m/s2"),
            ("gyr_x", "rad/s"), ("gyr_y", "rad/s"), ("gyr_z", "rad/s")]


def cli(data_dir: Path, *args: str) -> str:
    out = subprocess.run([str(REPO / "target/release/tributary"), *args, "--data-dir", str(data_dir)],
                         capture_output=True, text=True, timeout=60, check=True)
    return out.stdout


def pack(second: int) -> bytes:
    records = [{"bt": T0 + second}]
    for i in range(50):
        for k, (name, unit) in enumerate(CHANNELS):
            value = (9.81 if name == "acc_z" else 0.0) + 0.4 * (((i + 3 * k + second) % 7) - 3)
            records.append({"n": name, "u": unit, "t": round(i * 0.02, 2), "v": value})
    return json.dumps(records, separators=(",", ":")).encode()


def metrics(broker) -> dict[str, float]:
    with urllib.request.urlopen(broker.http_url + "/metrics", timeout=10) as response:
        text = response.read().decode()
    return {m.group(1): float(m.group(2)) for m in re.finditer(r"^(\w+) ([0-9.e+-]+)$", text, re.M)}


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / 100.0  # utime + stime, in clock ticks


def fill(work: Path, devices: int, packs: int) -> Path:
    broker = Broker(work / "fill", {"model": {"enabled": False}, "archive": {"enabled": False}}).start()
    try:
        cli(broker.data_dir, "owner", "add", "bench")
        tokens = {f"mdev{d}": re.search(r"token \(shown once\): (\S+)",
                                        cli(broker.data_dir, "device", "add", "--owner", "bench", f"mdev{d}")).group(1)
                  for d in range(devices)}
        time.sleep(1.5)  # the broker reloads accounts.json once a second
        payloads = [pack(s) for s in range(packs)]
        for name, token in tokens.items():
            client = Client(broker, V311)
            client.c.username_pw_set(name, token)
            client.connect()
            mids = [client.publish(f"tributary/v1/{name}/senml", p, qos=1, wait=False) for p in payloads]
            client.wait(lambda s: all(m in s.acks for m in mids), 300, f"PUBACKs of {name}")
            client.close()
        return broker.data_dir
    finally:
        broker.close()


def run(work: Path, filled: Path, model: str | None, records: int, windows: int, label: str) -> tuple[float, float]:
    copy = work / f"run-{label}"
    shutil.rmtree(copy, ignore_errors=True)
    shutil.copytree(filled.parent, copy)
    data = copy / "data"
    (data / "log" / "consumers.journal").unlink(missing_ok=True)
    for suffix in ("", "-wal", "-shm"):
        (data / f"store.sqlite{suffix}").unlink(missing_ok=True)
    config = {"archive": {"enabled": False},
              "model": {"path": model, "store_motion": True} if model else {"enabled": False, "store_motion": True}}
    broker = Broker(copy, config)
    broker.data_dir = data
    broker.start()
    try:
        start = time.monotonic()
        cpu0 = cpu_seconds(broker.proc.pid)
        while True:
            m = metrics(broker)
            done = m.get("tributary_pipeline_records_total", 0) >= records
            if model:
                done = done and m.get("tributary_activity_windows_total", 0) >= windows
            if done:
                break
            if time.monotonic() - start > 900:
                raise SystemExit(f"{label}: not caught up after 900 s: {m}")
            time.sleep(0.05)
        return time.monotonic() - start, cpu_seconds(broker.proc.pid) - cpu0
    finally:
        broker.close()


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", required=True, help="directory of model.safetensors + model.json")
    p.add_argument("--devices", type=int, default=10)
    p.add_argument("--packs", type=int, default=120, help="per device (one second of motion each)")
    p.add_argument("--rounds", type=int, default=2)
    args = p.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-activity-"))
    try:
        filled = fill(work, args.devices, args.packs)
        records = args.devices * args.packs
        measurements = records * 300
        windows = args.devices * ((args.packs * 50 - 128) // 64 + 1)
        print(f"log: {records} motion packs of {args.devices} devices = {measurements:,} measurements, "
              f"{windows:,} windows")
        results: dict[str, list[tuple[float, float]]] = {"off": [], "on": []}
        for r in range(args.rounds):
            for label, model in (("off", None), ("on", args.model)):
                elapsed, cpu = run(work, filled, model, records, windows, f"{label}{r}")
                results[label].append((elapsed, cpu))
                print(f"round {r + 1} model {label:>3}: caught up in {elapsed:.2f} s = "
                      f"{measurements / elapsed:,.0f} measurements/s, CPU {cpu:.2f} s "
                      f"({100_000 * cpu / measurements:.2f} s per 100k measurements)")
        best = {k: min(e for e, _ in v) for k, v in results.items()}
        print(f"best of {args.rounds}: off {measurements / best['off']:,.0f} measurements/s, "
              f"on {measurements / best['on']:,.0f} measurements/s (on/off = {best['off'] / best['on']:.2f})")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
