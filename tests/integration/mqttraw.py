"""Hand-built MQTT packets over a plain socket, for the cases no well-behaved client will send.

Every builder returns bytes; the byte layout follows MQTT 3.1.1 (OASIS, 2014) and 5.0 (OASIS, 2019)
section 2 (fixed header) and section 3 (each packet). Nothing here validates: that is the point.
"""

from __future__ import annotations

import socket
import struct
import time
from dataclasses import dataclass

V311 = 4
V5 = 5

# Packet types (high nibble of the first byte).
CONNECT, CONNACK, PUBLISH, PUBACK, PUBREC, PUBREL, PUBCOMP = 1, 2, 3, 4, 5, 6, 7
SUBSCRIBE, SUBACK, UNSUBSCRIBE, UNSUBACK, PINGREQ, PINGRESP, DISCONNECT, AUTH = 8, 9, 10, 11, 12, 13, 14, 15


def varint(n: int) -> bytes:
    """Variable Byte Integer (spec 1.5.5 / 2.2.3): 7 bits per byte, high bit = more bytes follow."""
    out = bytearray()
    while True:
        byte, n = n % 128, n // 128
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def read_varint(data: bytes) -> tuple[int, int]:
    """Decode a Variable Byte Integer at the start of `data`: (value, bytes used)."""
    value, mult = 0, 1
    for i, b in enumerate(data[:4]):
        value += (b & 0x7F) * mult
        mult *= 128
        if not b & 0x80:
            return value, i + 1
    raise ValueError(f"bad variable byte integer in {data[:5].hex()}")


def mqtt_str(s: str | bytes) -> bytes:
    """UTF-8 string (spec 1.5.3 / 1.5.4): 2-byte big-endian length, then the bytes as given."""
    b = s.encode() if isinstance(s, str) else s
    return struct.pack("!H", len(b)) + b


def packet(first_byte: int, body: bytes) -> bytes:
    """Fixed header (type << 4 | flags, remaining length) + body."""
    return bytes([first_byte]) + varint(len(body)) + body


def connect(version: int = V5, client_id: str | bytes = "raw", *, flags: int = 0x02, keepalive: int = 60,
            props: bytes = b"", name: bytes = b"MQTT") -> bytes:
    """CONNECT: protocol name, level, connect flags (0x02 = clean session/start), keep-alive, [props], id."""
    body = mqtt_str(name) + bytes([version, flags]) + struct.pack("!H", keepalive)
    if version == V5:
        body += varint(len(props)) + props
    body += mqtt_str(client_id)
    return packet(CONNECT << 4, body)


def publish(topic: str | bytes, payload: bytes = b"x", *, qos: int = 0, packet_id: int = 1, version: int = V5,
            retain: bool = False, first_byte: int | None = None, props: bytes = b"") -> bytes:
    """PUBLISH: topic, packet id when QoS > 0, [props], payload. `first_byte` overrides type/flags.

    `props` are encoded 5.0 properties without their length (see `properties`)."""
    fb = first_byte if first_byte is not None else (PUBLISH << 4) | (qos << 1) | int(retain)
    body = mqtt_str(topic)
    if (fb >> 1) & 0x03:
        body += struct.pack("!H", packet_id)
    if version == V5:
        body += varint(len(props)) + props
    return packet(fb, body + payload)


def subscribe(filters: list[tuple[str | bytes, int]], *, packet_id: int = 1, version: int = V5,
              first_byte: int = 0x82, props: bytes = b"") -> bytes:
    """SUBSCRIBE (fixed-header flags MUST be 0b0010): packet id, [props], (filter, options)*.

    Options byte (5.0 §3.8.3.1): bits 0-1 QoS, bit 2 No Local, bit 3 Retain As Published,
    bits 4-5 Retain Handling."""
    body = struct.pack("!H", packet_id)
    if version == V5:
        body += varint(len(props)) + props
    for f, opts in filters:
        body += mqtt_str(f) + bytes([opts])
    return packet(first_byte, body)


def unsubscribe(filters: list[str | bytes], *, packet_id: int = 1, version: int = V5) -> bytes:
    """UNSUBSCRIBE (fixed-header flags 0b0010): packet id, [props], filter*."""
    body = struct.pack("!H", packet_id)
    if version == V5:
        body += b"\x00"
    for f in filters:
        body += mqtt_str(f)
    return packet(0xA2, body)


def ack(packet_type: int, packet_id: int, reason: int | None = None, props: bytes = b"") -> bytes:
    """PUBACK/PUBREC/PUBREL/PUBCOMP: packet id, then (5.0) an optional reason code and properties.
    PUBREL's fixed-header flags are 0b0010."""
    body = struct.pack("!H", packet_id)
    if reason is not None or props:
        body += bytes([reason or 0])
        if props:
            body += varint(len(props)) + props
    flags = 0x02 if packet_type == PUBREL else 0x00
    return packet((packet_type << 4) | flags, body)


def disconnect(reason: int | None = None, props: bytes = b"") -> bytes:
    """DISCONNECT; 5.0 with an optional reason code and properties (none at all = 3.1.1 form / 0x00)."""
    body = b""
    if reason is not None or props:
        body += bytes([reason or 0])
        if props:
            body += varint(len(props)) + props
    return packet(DISCONNECT << 4, body)


# -- 5.0 properties (§2.2.2.2): identifier -> type --------------------------------------------------

PROP_BYTE = {0x01, 0x17, 0x19, 0x24, 0x25, 0x28, 0x29, 0x2A}
PROP_U16 = {0x13, 0x21, 0x22, 0x23}
PROP_U32 = {0x02, 0x11, 0x18, 0x27}
PROP_VARINT = {0x0B}
PROP_STR = {0x03, 0x08, 0x12, 0x15, 0x1A, 0x1C, 0x1F}
PROP_BIN = {0x09, 0x16}
PROP_PAIR = {0x26}
# May appear more than once; decoded as lists.
PROP_REPEATABLE = {0x0B, 0x26}


def properties(*items: tuple[int, object]) -> bytes:
    """Encode 5.0 properties (without the length prefix): properties((0x22, 10), (0x26, ("k", "v")))."""
    out = b""
    for pid, value in items:
        out += bytes([pid])
        if pid in PROP_BYTE:
            out += bytes([value])
        elif pid in PROP_U16:
            out += struct.pack("!H", value)
        elif pid in PROP_U32:
            out += struct.pack("!I", value)
        elif pid in PROP_VARINT:
            out += varint(value)
        elif pid in PROP_STR or pid in PROP_BIN:
            out += mqtt_str(value)
        elif pid in PROP_PAIR:
            out += mqtt_str(value[0]) + mqtt_str(value[1])
        else:
            raise ValueError(f"unknown property 0x{pid:02x}")
    return out


def decode_properties(data: bytes) -> tuple[dict[int, object], int]:
    """Decode a property length + properties at the start of `data`: ({id: value}, bytes used).

    Strings and binary data stay bytes; user properties (0x26) are a list of (key, value) and
    subscription identifiers (0x0B) a list of ints, in wire order."""
    length, used = read_varint(data)
    i, end = used, used + length
    if end > len(data):
        raise ValueError(f"property length {length} beyond the packet: {data.hex(' ')}")
    props: dict[int, object] = {}
    while i < end:
        pid = data[i]
        i += 1
        if pid in PROP_BYTE:
            value, i = data[i], i + 1
        elif pid in PROP_U16:
            value, i = struct.unpack("!H", data[i:i + 2])[0], i + 2
        elif pid in PROP_U32:
            value, i = struct.unpack("!I", data[i:i + 4])[0], i + 4
        elif pid in PROP_VARINT:
            value, n = read_varint(data[i:])
            i += n
        elif pid in PROP_STR or pid in PROP_BIN:
            n = struct.unpack("!H", data[i:i + 2])[0]
            value, i = data[i + 2:i + 2 + n], i + 2 + n
        elif pid in PROP_PAIR:
            n = struct.unpack("!H", data[i:i + 2])[0]
            k = data[i + 2:i + 2 + n]
            i += 2 + n
            n = struct.unpack("!H", data[i:i + 2])[0]
            value = (k, data[i + 2:i + 2 + n])
            i += 2 + n
        else:
            raise ValueError(f"unknown property 0x{pid:02x} in {data.hex(' ')}")
        if pid in PROP_REPEATABLE:
            props.setdefault(pid, []).append(value)
        else:
            props[pid] = value
    return props, end


PINGREQ_BYTES = b"\xc0\x00"


@dataclass
class Packet:
    first_byte: int
    body: bytes

    @property
    def type(self) -> int:
        return self.first_byte >> 4

    def reason_code(self, version: int) -> int | None:
        """CONNACK return/reason code or DISCONNECT reason code (0 when a v5 DISCONNECT omits it)."""
        if self.type == CONNACK:
            return self.body[1]
        if self.type == DISCONNECT:
            return self.body[0] if self.body else 0
        return None

    def __repr__(self):
        return f"Packet(0x{self.first_byte:02x}, {self.body.hex(' ')})"


class Closed(Exception):
    """The peer closed the connection (EOF or reset)."""


class RawClient:
    """A plain TCP socket speaking hand-built MQTT, with bounded reads."""

    def __init__(self, host: str, port: int, timeout: float = 5.0):
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = b""
        self.timeout = timeout

    def send(self, data: bytes) -> bool:
        """Send; False if the peer had already closed (that can be a valid answer too)."""
        try:
            self.sock.sendall(data)
            return True
        except (BrokenPipeError, ConnectionResetError):
            return False

    def _fill(self, deadline: float) -> None:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError("no data from broker before the deadline")
        self.sock.settimeout(remaining)
        try:
            chunk = self.sock.recv(65536)
        except socket.timeout:
            raise TimeoutError("no data from broker before the deadline") from None
        except ConnectionResetError:
            raise Closed("connection reset") from None
        if not chunk:
            raise Closed("eof")
        self.buf += chunk

    def read_packet(self, timeout: float | None = None) -> Packet:
        """Read one whole packet; raises Closed on EOF/reset, TimeoutError on deadline."""
        deadline = time.monotonic() + (timeout if timeout is not None else self.timeout)
        while True:
            if len(self.buf) >= 2:
                mult, length, i = 1, 0, 1
                complete = False
                while i < len(self.buf) and i <= 4:
                    b = self.buf[i]
                    length += (b & 0x7F) * mult
                    mult *= 128
                    i += 1
                    if not b & 0x80:
                        complete = True
                        break
                if complete and len(self.buf) >= i + length:
                    p = Packet(self.buf[0], self.buf[i:i + length])
                    self.buf = self.buf[i + length:]
                    return p
            self._fill(deadline)

    def read_until_closed(self, timeout: float | None = None) -> tuple[list[Packet], bool]:
        """Read packets until the peer closes. Returns (packets, closed); closed=False on timeout."""
        deadline = time.monotonic() + (timeout if timeout is not None else self.timeout)
        packets = []
        while True:
            try:
                packets.append(self.read_packet(max(0.0, deadline - time.monotonic())))
            except Closed:
                return packets, True
            except TimeoutError:
                return packets, False

    def connect(self, version: int = V5, client_id: str = "raw", **kw) -> Packet:
        """CONNECT and expect a successful CONNACK."""
        self.send(connect(version, client_id, **kw))
        p = self.read_packet()
        assert p.type == CONNACK, f"expected CONNACK, got {p!r}"
        assert p.reason_code(version) == 0, f"CONNECT refused: {p!r}"
        return p

    def ping(self, timeout: float | None = None) -> bool:
        """PINGREQ → PINGRESP round trip; True when the connection is still usable."""
        if not self.send(PINGREQ_BYTES):
            return False
        try:
            p = self.read_packet(timeout)
        except (Closed, TimeoutError):
            return False
        return p.type == PINGRESP

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def connack_properties(p: Packet) -> dict[int, object]:
    """Decode a v5 CONNACK's properties into {identifier: value} (only the types CONNACK uses)."""
    body = p.body
    length, used = read_varint(body[2:])
    i = 2 + used
    end = i + length
    props: dict[int, object] = {}
    byte_props = {0x24, 0x25, 0x28, 0x29, 0x2A, 0x01, 0x17, 0x19}
    two_props = {0x13, 0x21, 0x22}
    four_props = {0x11, 0x27}
    str_props = {0x12, 0x1A, 0x1C, 0x1F, 0x15}
    while i < end:
        pid = body[i]
        i += 1
        if pid in byte_props:
            props[pid] = body[i]
            i += 1
        elif pid in two_props:
            props[pid] = struct.unpack("!H", body[i:i + 2])[0]
            i += 2
        elif pid in four_props:
            props[pid] = struct.unpack("!I", body[i:i + 4])[0]
            i += 4
        elif pid in str_props or pid == 0x16:
            n = struct.unpack("!H", body[i:i + 2])[0]
            props[pid] = body[i + 2:i + 2 + n]
            i += 2 + n
        elif pid == 0x26:  # user property: string pair
            n = struct.unpack("!H", body[i:i + 2])[0]
            k = body[i + 2:i + 2 + n]
            i += 2 + n
            n = struct.unpack("!H", body[i:i + 2])[0]
            v = body[i + 2:i + 2 + n]
            i += 2 + n
            props.setdefault(pid, []).append((k, v))
        else:
            raise ValueError(f"unknown CONNACK property 0x{pid:02x} in {p!r}")
    return props


# -- decoding what the broker sends (5.0 unless said otherwise) -------------------------------------


@dataclass
class Publish:
    topic: bytes
    packet_id: int | None
    qos: int
    retain: bool
    dup: bool
    properties: dict
    payload: bytes


def parse_publish(p: Packet, version: int = V5) -> Publish:
    """A PUBLISH packet's fields (5.0 §3.3): topic, packet id when QoS > 0, properties, payload."""
    assert p.type == PUBLISH, f"expected PUBLISH, got {p!r}"
    qos = (p.first_byte >> 1) & 0x03
    body = p.body
    n = struct.unpack("!H", body[:2])[0]
    topic = body[2:2 + n]
    i = 2 + n
    packet_id = None
    if qos:
        packet_id = struct.unpack("!H", body[i:i + 2])[0]
        i += 2
    props: dict = {}
    if version == V5:
        props, used = decode_properties(body[i:])
        i += used
    return Publish(topic, packet_id, qos, bool(p.first_byte & 0x01), bool(p.first_byte & 0x08), props, body[i:])


def parse_ack(p: Packet) -> tuple[int, int, dict]:
    """PUBACK/PUBREC/PUBREL/PUBCOMP (5.0 §3.4-3.7): (packet id, reason code, properties).
    A remaining length of 2 means reason 0x00 and no properties."""
    packet_id = struct.unpack("!H", p.body[:2])[0]
    reason = p.body[2] if len(p.body) > 2 else 0
    props = decode_properties(p.body[3:])[0] if len(p.body) > 3 else {}
    return packet_id, reason, props


def parse_suback(p: Packet, version: int = V5) -> tuple[int, list[int]]:
    """SUBACK/UNSUBACK: (packet id, reason codes); 5.0 properties are skipped."""
    packet_id = struct.unpack("!H", p.body[:2])[0]
    i = 2
    if version == V5:
        i += decode_properties(p.body[2:])[1]
    return packet_id, list(p.body[i:])


def disconnect_properties(p: Packet) -> dict:
    """A 5.0 DISCONNECT's properties ({} when it has none)."""
    assert p.type == DISCONNECT, f"expected DISCONNECT, got {p!r}"
    return decode_properties(p.body[1:])[0] if len(p.body) > 1 else {}
