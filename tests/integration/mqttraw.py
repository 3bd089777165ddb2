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
            retain: bool = False, first_byte: int | None = None) -> bytes:
    """PUBLISH: topic, packet id when QoS > 0, [props], payload. `first_byte` overrides type/flags."""
    fb = first_byte if first_byte is not None else (PUBLISH << 4) | (qos << 1) | int(retain)
    body = mqtt_str(topic)
    if (fb >> 1) & 0x03:
        body += struct.pack("!H", packet_id)
    if version == V5:
        body += b"\x00"  # property length 0
    return packet(fb, body + payload)


def subscribe(filters: list[tuple[str | bytes, int]], *, packet_id: int = 1, version: int = V5,
              first_byte: int = 0x82) -> bytes:
    """SUBSCRIBE (fixed-header flags MUST be 0b0010): packet id, [props], (filter, options)*."""
    body = struct.pack("!H", packet_id)
    if version == V5:
        body += b"\x00"
    for f, opts in filters:
        body += mqtt_str(f) + bytes([opts])
    return packet(first_byte, body)


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
