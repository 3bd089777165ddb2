"""Persistent sessions with real clients, beyond the basics in test_paho.py and test_mosquitto_clients.py."""

from __future__ import annotations

import subprocess

from clients import unique


def test_resubscribing_persistent_session_gets_every_queued_message(broker):
    """Regression: mosquitto_sub -c subscribes again on every connect; that
    SUBSCRIBE must not drop the messages queued for the session (3.8.4: the
    flow of publications must not be interrupted). It once cut delivery off
    after the first 256 messages."""
    host, port = broker.host, str(broker.port)
    client_id = unique("resub")
    topic = f"{unique('q')}/x"
    sub = ["mosquitto_sub", "-h", host, "-p", port, "-c", "-i", client_id, "-t", topic, "-q", "1"]
    subprocess.run(sub + ["-W", "1"], capture_output=True, timeout=10)
    lines = "\n".join(str(i) for i in range(1000)) + "\n"
    subprocess.run(["mosquitto_pub", "-h", host, "-p", port, "-t", topic, "-q", "1", "-l"],
                   input=lines.encode(), check=True, timeout=60)
    got = subprocess.run(sub + ["-C", "1000", "-W", "20"], capture_output=True, timeout=30)
    received = got.stdout.decode().split()
    assert sorted(set(received), key=int) == [str(i) for i in range(1000)], f"received {len(received)}"
