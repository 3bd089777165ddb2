"""Thin, bounded wrappers over paho-mqtt 2.x (CallbackAPIVersion.VERSION2) for the tests.

Every wait takes a timeout and fails the test with a message naming what it waited for.
The wrapper never reconnects by itself (reconnect_on_failure=False): a test that wants a
reconnect makes a new `Client` with the same client id, so what happens is explicit.
"""

from __future__ import annotations

import threading
import time
import uuid
from dataclasses import dataclass, field

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

V311 = mqtt.MQTTv311
V5 = mqtt.MQTTv5
VERSIONS = [V311, V5]

DEFAULT_TIMEOUT = 10.0


def version_name(v: int) -> str:
    return "v5" if v == V5 else "v311"


def make_properties(packet_type: int, values: dict | None) -> Properties | None:
    """paho Properties for `packet_type` (PacketTypes.X) from {"PropertyName": value}; None if no values.
    A list value for UserProperty adds every (key, value) pair, in order."""
    if not values:
        return None
    props = Properties(packet_type)
    for name, value in values.items():
        setattr(props, name, value)
    return props


def let_time_pass(since: float, seconds: float):
    """The condition is the clock: wait until `seconds` have passed since the monotonic time `since`."""
    remaining = since + seconds - time.monotonic()
    if remaining > 0:
        time.sleep(remaining)


def session_expired(broker, client_id: str, since: float, expiry: int):
    """Wait until the broker has expired an offline session. Tributary logs "session expired" with the
    client id (checked once per second); for mosquitto the clock is the only signal."""
    if broker.kind == "tributary":
        deadline = time.monotonic() + expiry + 5
        while not any("session expired" in line and client_id in line for line in broker.log_tail().splitlines()):
            assert time.monotonic() < deadline, f"session {client_id} not expired within {expiry + 5}s"
            time.sleep(0.05)
    else:
        let_time_pass(since, expiry + 1.5)


def unique(prefix: str) -> str:
    """A topic or client id part unlikely to collide with anything else in the run."""
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


@dataclass
class Received:
    topic: str
    payload: bytes
    qos: int
    retain: bool
    properties: object = None


@dataclass
class ConnAck:
    session_present: bool
    reason_code: int
    properties: object = None


@dataclass
class _State:
    cond: threading.Condition = field(default_factory=threading.Condition)
    connack: ConnAck | None = None
    disconnected: bool = False
    disconnect_reason: int | None = None
    disconnect_properties: object = None
    messages: list[Received] = field(default_factory=list)
    subacks: dict[int, list[int]] = field(default_factory=dict)
    unsubacks: set[int] = field(default_factory=set)
    # mid -> reason code (0 = success) of PUBACK/PUBCOMP (or "written" for QoS 0)
    acks: dict[int, int] = field(default_factory=dict)
    # mid -> properties of the PUBACK/PUBCOMP (5.0; None when there were none)
    ack_properties: dict[int, object] = field(default_factory=dict)


class Client:
    """A paho client with blocking, bounded helpers and a record of everything received."""

    def __init__(self, broker, version: int = V5, client_id: str | None = None, *, clean: bool = True,
                 session_expiry: int | None = None, will: tuple | None = None, keepalive: int = 30,
                 max_inflight: int | None = None, on_message=None, connect_properties: dict | None = None,
                 will_properties: dict | None = None, port: int | None = None, websocket: bool = False,
                 tls: dict | None = None):
        """`port`, `websocket` (path /mqtt) and `tls` (keyword arguments of paho's `tls_set`, e.g.
        {"ca_certs": ..., "certfile": ..., "keyfile": ...}) pick another listener than plain MQTT."""
        self.broker = broker
        self.port = port or broker.port
        self.version = version
        self.client_id = unique("c") if client_id is None else client_id
        self.clean = clean
        self.session_expiry = session_expiry
        self.keepalive = keepalive
        # Extra 5.0 CONNECT properties by paho name, e.g. {"TopicAliasMaximum": 10}.
        self.connect_properties = dict(connect_properties or {})
        self.s = _State()
        self._user_on_message = on_message
        kwargs = dict(callback_api_version=CallbackAPIVersion.VERSION2, client_id=self.client_id,
                      protocol=version, reconnect_on_failure=False,
                      transport="websockets" if websocket else "tcp")
        if version != V5:
            kwargs["clean_session"] = clean
        self.c = mqtt.Client(**kwargs)
        if websocket:
            self.c.ws_set_options(path="/mqtt")
        if tls is not None:
            self.c.tls_set(**tls)
        if max_inflight:
            self.c.max_inflight_messages_set(max_inflight)
        if will:
            topic, payload, qos, retain = (tuple(will) + (0, False))[:4]
            self.c.will_set(topic, payload, qos=qos, retain=retain,
                            properties=make_properties(PacketTypes.WILLMESSAGE, will_properties))
        self.c.on_connect = self._on_connect
        self.c.on_disconnect = self._on_disconnect
        self.c.on_message = self._on_message
        self.c.on_subscribe = self._on_subscribe
        self.c.on_unsubscribe = self._on_unsubscribe
        self.c.on_publish = self._on_publish

    # -- callbacks (paho's network thread) ------------------------------------

    def _on_connect(self, client, userdata, flags, reason_code, properties):
        with self.s.cond:
            self.s.connack = ConnAck(bool(flags.session_present), reason_code.value, properties)
            self.s.cond.notify_all()

    def _on_disconnect(self, client, userdata, flags, reason_code, properties):
        with self.s.cond:
            self.s.disconnected = True
            self.s.disconnect_reason = reason_code.value if reason_code is not None else None
            self.s.disconnect_properties = properties
            self.s.cond.notify_all()

    def _on_message(self, client, userdata, msg):
        r = Received(msg.topic, bytes(msg.payload), msg.qos, bool(msg.retain), getattr(msg, "properties", None))
        with self.s.cond:
            self.s.messages.append(r)
            self.s.cond.notify_all()
        if self._user_on_message:
            self._user_on_message(r)

    def _on_subscribe(self, client, userdata, mid, reason_code_list, properties):
        with self.s.cond:
            self.s.subacks[mid] = [rc.value for rc in reason_code_list]
            self.s.cond.notify_all()

    def _on_unsubscribe(self, client, userdata, mid, reason_code_list, properties):
        with self.s.cond:
            self.s.unsubacks.add(mid)
            self.s.cond.notify_all()

    def _on_publish(self, client, userdata, mid, reason_code, properties):
        with self.s.cond:
            self.s.acks[mid] = reason_code.value if reason_code is not None else 0
            self.s.ack_properties[mid] = properties
            self.s.cond.notify_all()

    # -- waiting --------------------------------------------------------------

    def wait(self, predicate, timeout: float = DEFAULT_TIMEOUT, what: str = "condition"):
        """Wait until predicate(state) is truthy; return its value. Fails the test on timeout."""
        deadline = time.monotonic() + timeout
        with self.s.cond:
            while True:
                value = predicate(self.s)
                if value:
                    return value
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError(f"{self.client_id}: timed out after {timeout:.1f}s waiting for {what}")
                self.s.cond.wait(min(remaining, 0.25))

    # -- operations -----------------------------------------------------------

    def connect(self, timeout: float = DEFAULT_TIMEOUT, expect_success: bool = True) -> ConnAck:
        kwargs = {}
        if self.version == V5:
            kwargs["clean_start"] = self.clean
            values = dict(self.connect_properties)
            if self.session_expiry is not None:
                values["SessionExpiryInterval"] = self.session_expiry
            props = make_properties(PacketTypes.CONNECT, values)
            if props is not None:
                kwargs["properties"] = props
        self.c.connect(self.broker.host, self.port, keepalive=self.keepalive, **kwargs)
        self.c.loop_start()
        ack = self.wait(lambda s: s.connack, timeout, "CONNACK")
        if expect_success:
            assert ack.reason_code == 0, f"{self.client_id}: CONNECT refused with 0x{ack.reason_code:02x}"
        return ack

    def subscribe(self, filters, timeout: float = DEFAULT_TIMEOUT, properties: dict | None = None) -> list[int]:
        """filters: [(filter, qos or paho SubscribeOptions)]; properties: 5.0 SUBSCRIBE properties by
        name (e.g. {"SubscriptionIdentifier": 1}). Returns the SUBACK codes (granted QoS or failure code)."""
        rc, mid = self.c.subscribe(list(filters), properties=make_properties(PacketTypes.SUBSCRIBE, properties))
        assert rc == mqtt.MQTT_ERR_SUCCESS, f"subscribe failed locally: {rc}"
        return self.wait(lambda s: s.subacks.get(mid), timeout, f"SUBACK for mid {mid}")

    def unsubscribe(self, topic, timeout: float = DEFAULT_TIMEOUT):
        rc, mid = self.c.unsubscribe(topic)
        assert rc == mqtt.MQTT_ERR_SUCCESS
        self.wait(lambda s: mid in s.unsubacks, timeout, f"UNSUBACK for mid {mid}")

    def publish(self, topic, payload, qos: int = 0, retain: bool = False, wait: bool = True,
                timeout: float = DEFAULT_TIMEOUT, properties: dict | None = None) -> int:
        """Publish; with wait, block until PUBACK/PUBCOMP (QoS>0) or sent (QoS 0). Returns the mid.
        properties: 5.0 PUBLISH properties by paho name, e.g. {"MessageExpiryInterval": 60}."""
        info = self.c.publish(topic, payload, qos=qos, retain=retain,
                              properties=make_properties(PacketTypes.PUBLISH, properties))
        assert info.rc == mqtt.MQTT_ERR_SUCCESS, f"publish failed locally: {info.rc}"
        if wait:
            self.wait(lambda s: info.mid in s.acks, timeout, f"ack of mid {info.mid} on {topic}")
            assert self.s.acks[info.mid] < 0x80, f"publish to {topic} refused: 0x{self.s.acks[info.mid]:02x}"
        return info.mid

    def publish_answer(self, topic, payload, qos: int = 1, properties: dict | None = None,
                       timeout: float = DEFAULT_TIMEOUT) -> tuple[int, object]:
        """Publish at QoS 1/2 and return the broker's answer, success or not: (reason code, properties)."""
        mid = self.publish(topic, payload, qos=qos, wait=False, properties=properties)
        self.wait(lambda s: mid in s.acks, timeout, f"ack of mid {mid} on {topic}")
        with self.s.cond:
            return self.s.acks[mid], self.s.ack_properties.get(mid)

    def messages(self, topic: str | None = None) -> list[Received]:
        with self.s.cond:
            return [m for m in self.s.messages if topic is None or m.topic == topic]

    def wait_messages(self, n: int, timeout: float = DEFAULT_TIMEOUT, topic: str | None = None) -> list[Received]:
        """Wait until at least n messages (on `topic`, if given) have arrived; return them all."""
        self.wait(lambda s: sum(1 for m in s.messages if topic is None or m.topic == topic) >= n,
                  timeout, f"{n} message(s){' on ' + topic if topic else ''}")
        return self.messages(topic)

    def wait_disconnected(self, timeout: float = DEFAULT_TIMEOUT) -> int | None:
        self.wait(lambda s: s.disconnected, timeout, "disconnect")
        return self.s.disconnect_reason

    def disconnect(self, reason_code: int | None = None, timeout: float = DEFAULT_TIMEOUT,
                   properties: dict | None = None):
        """A clean DISCONNECT (v5: with `reason_code`, e.g. 0x04 to send the will anyway, and
        `properties` by name, e.g. {"SessionExpiryInterval": 0})."""
        props = make_properties(PacketTypes.DISCONNECT, properties)
        if reason_code is not None or props is not None:
            from paho.mqtt.reasoncodes import ReasonCode
            self.c.disconnect(reasoncode=ReasonCode(PacketTypes.DISCONNECT, identifier=reason_code or 0),
                              properties=props)
        else:
            self.c.disconnect()
        try:
            self.wait(lambda s: s.disconnected, timeout, "own disconnect")
        finally:
            self.c.loop_stop()

    def drop(self):
        """Vanish without DISCONNECT: stop paho's thread, then close the socket under it."""
        self.c.loop_stop()
        sock = self.c.socket()
        if sock is not None:
            try:
                import socket as _socket
                sock.shutdown(_socket.SHUT_RDWR)
            except OSError:
                pass
            sock.close()

    def close(self):
        """Teardown: whatever state it is in, stop the thread and the socket."""
        try:
            if not self.s.disconnected and self.c.is_connected():
                self.c.disconnect()
        except Exception:
            pass
        self.c.loop_stop()
        sock = self.c.socket()
        if sock is not None:
            try:
                sock.close()
            except OSError:
                pass


class Clients:
    """A per-test factory that closes every client it made at teardown."""

    def __init__(self, broker):
        self.broker = broker
        self.made: list[Client] = []

    def __call__(self, version: int = V5, client_id: str | None = None, connect: bool = True, **kw) -> Client:
        c = Client(self.broker, version, client_id, **kw)
        self.made.append(c)
        if connect:
            c.connect()
        return c

    def close_all(self):
        for c in self.made:
            c.close()
