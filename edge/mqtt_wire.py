"""MQTT 3.1.1 and 5 packets, as bytes: what the agent's receive path sends and parses.

The agent only subscribes: it sends CONNECT, SUBSCRIBE, PUBACK, PINGREQ and DISCONNECT and
parses CONNACK, SUBACK, PUBLISH, PINGRESP and a server DISCONNECT. Everything here is a pure
function of bytes, so it is tested without a broker. :class:`PacketReader` is the hot path:
it cuts every complete packet out of what the socket gave in one pass, without a per-byte
read or a properties object per message, and yields PUBLISH packets as plain tuples.

Packets larger than ``max_packet`` are not buffered whole: the reader keeps the first
``keep_bytes`` of the payload and discards the rest as it streams by, so a hostile 100 MB
message costs ``keep_bytes`` of memory and still reaches validation (which rejects it as too
large) and is still acknowledged.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final, NamedTuple

CONNECT: Final = 1
CONNACK: Final = 2
PUBLISH: Final = 3
PUBACK: Final = 4
SUBSCRIBE: Final = 8
SUBACK: Final = 9
PINGREQ: Final = 12
PINGRESP: Final = 13
DISCONNECT: Final = 14

PINGREQ_PACKET: Final = b"\xc0\x00"
DISCONNECT_PACKET: Final = b"\xe0\x00"
"""Normal disconnection, in both versions (MQTT 5: reason 0, no properties)."""

V311: Final = 4
V5: Final = 5

_PROP_SESSION_EXPIRY: Final = 0x11
_PROP_SERVER_KEEP_ALIVE: Final = 0x13
_PROP_RECEIVE_MAXIMUM: Final = 0x21

CONNACK_V311_REASONS: Final = {
    1: "unacceptable protocol version",
    2: "client identifier rejected",
    3: "server unavailable",
    4: "bad user name or password",
    5: "not authorized",
}
CONNACK_V5_REASONS: Final = {
    0x80: "unspecified error",
    0x81: "malformed packet",
    0x82: "protocol error",
    0x84: "unsupported protocol version",
    0x85: "client identifier not valid",
    0x86: "bad user name or password",
    0x87: "not authorized",
    0x88: "server unavailable",
    0x89: "server busy",
    0x8A: "banned",
    0x8C: "bad authentication method",
    0x95: "packet too large",
    0x97: "quota exceeded",
    0x9F: "connection rate exceeded",
}


class ProtocolError(Exception):
    """The broker sent something that is not MQTT: the connection must be dropped."""


def varint(n: int) -> bytes:
    """MQTT's variable byte integer (remaining length, property lengths)."""
    if not 0 <= n <= 268_435_455:
        raise ValueError(f"{n} does not fit an MQTT variable byte integer")
    out = bytearray()
    while True:
        byte, n = n % 128, n // 128
        out.append(byte | 0x80 if n else byte)
        if not n:
            return bytes(out)


def _utf8(text: str) -> bytes:
    raw = text.encode("utf-8")
    if len(raw) > 65535:
        raise ValueError("an MQTT string is at most 65,535 bytes")
    return struct.pack(">H", len(raw)) + raw


def _binary(raw: bytes) -> bytes:
    if len(raw) > 65535:
        raise ValueError("MQTT binary data is at most 65,535 bytes")
    return struct.pack(">H", len(raw)) + raw


def _packet(first: int, body: bytes) -> bytes:
    return bytes((first,)) + varint(len(body)) + body


def connect_packet(
    client_id: str,
    *,
    version: int,
    keepalive: int,
    clean: bool = False,
    username: str | None = None,
    password: str | None = None,
    session_expiry: int = 0,
    receive_maximum: int = 65535,
) -> bytes:
    """CONNECT; MQTT 5 carries the session expiry and the receive maximum as properties."""
    if version not in (V311, V5):
        raise ValueError(f"MQTT protocol level {version} is not 4 (3.1.1) or 5")
    if not 0 <= keepalive <= 65535:
        raise ValueError("keepalive must be 0..65535 seconds")
    flags = 0x02 if clean else 0
    if username is not None:
        flags |= 0x80
        if password is not None:
            flags |= 0x40
    body = bytearray(_utf8("MQTT"))
    body += bytes((version, flags))
    body += struct.pack(">H", keepalive)
    if version == V5:
        props = bytes((_PROP_SESSION_EXPIRY,)) + struct.pack(">I", session_expiry)
        if receive_maximum != 65535:
            props += bytes((_PROP_RECEIVE_MAXIMUM,)) + struct.pack(">H", receive_maximum)
        body += varint(len(props)) + props
    body += _utf8(client_id)
    if username is not None:
        body += _utf8(username)
        if password is not None:
            body += _binary(password.encode("utf-8"))
    return _packet(CONNECT << 4, bytes(body))


def subscribe_packet(packet_id: int, topic: str, qos: int, *, version: int) -> bytes:
    """SUBSCRIBE to one filter (MQTT 5: empty properties, plain options)."""
    body = struct.pack(">H", packet_id)
    if version == V5:
        body += b"\x00"
    body += _utf8(topic) + bytes((qos,))
    return _packet((SUBSCRIBE << 4) | 0x02, body)


def puback_packets(packet_ids: list[int]) -> bytes:
    """One PUBACK per id, concatenated (each is 4 bytes: 0x40 0x02 id-hi id-lo)."""
    return struct.pack(f">{len(packet_ids)}I", *[0x40020000 | pid for pid in packet_ids])


@dataclass(frozen=True, slots=True)
class ConnAck:
    session_present: bool
    reason: int
    """0 is success; otherwise the refusal (3.1.1 return code or MQTT 5 reason code)."""
    server_keepalive: int | None = None
    receive_maximum: int | None = None

    @property
    def refused(self) -> bool:
        return self.reason != 0

    def describe(self, version: int) -> str:
        names = CONNACK_V5_REASONS if version == V5 else CONNACK_V311_REASONS
        return f"{names.get(self.reason, 'refused')} (code {self.reason:#04x})"


def _read_varint(data: bytes, pos: int) -> tuple[int, int] | None:
    """``(value, next position)``, ``None`` if incomplete; :class:`ProtocolError` if too long."""
    value = 0
    shift = 0
    end = len(data)
    while True:
        if pos >= end:
            return None
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, pos
        shift += 7
        if shift > 21:
            raise ProtocolError("remaining length longer than 4 bytes")


def parse_connack(body: bytes, version: int) -> ConnAck:
    if len(body) < 2:
        raise ProtocolError("CONNACK shorter than 2 bytes")
    session_present = bool(body[0] & 0x01)
    reason = body[1]
    keepalive: int | None = None
    receive_max: int | None = None
    if version == V5 and len(body) > 2:
        head = _read_varint(body, 2)
        if head is None:
            raise ProtocolError("CONNACK properties cut short")
        length, pos = head
        end = pos + length
        while pos < end:
            prop = body[pos]
            pos += 1
            size = _PROPERTY_SIZES.get(prop)
            if size is None:
                raise ProtocolError(f"unknown CONNACK property {prop:#x}")
            if size == -1:  # UTF-8 string or binary data: 2-byte length
                size = 2 + int.from_bytes(body[pos:pos + 2], "big")
            elif size == -2:  # string pair
                first = 2 + int.from_bytes(body[pos:pos + 2], "big")
                size = first + 2 + int.from_bytes(body[pos + first:pos + first + 2], "big")
            elif size == -3:  # variable byte integer
                got = _read_varint(body, pos)
                if got is None:
                    raise ProtocolError("CONNACK property cut short")
                size = got[1] - pos
            if prop == _PROP_SERVER_KEEP_ALIVE:
                keepalive = int.from_bytes(body[pos:pos + 2], "big")
            elif prop == _PROP_RECEIVE_MAXIMUM:
                receive_max = int.from_bytes(body[pos:pos + 2], "big")
            pos += size
        if pos != end:
            raise ProtocolError("CONNACK properties overrun their length")
    return ConnAck(session_present, reason, keepalive, receive_max)


# MQTT 5 property identifier -> value size in bytes (-1: 2-byte length prefixed, -2: string
# pair, -3: variable byte integer). Only what a CONNACK may carry needs to be here.
_PROPERTY_SIZES: Final = {
    0x01: 1, 0x02: 4, 0x03: -1, 0x08: -1, 0x09: -1, 0x0B: -3, 0x11: 4, 0x12: -1, 0x13: 2,
    0x15: -1, 0x16: -1, 0x17: 1, 0x18: 4, 0x19: 1, 0x1A: -1, 0x1C: -1, 0x1F: -1, 0x21: 2,
    0x22: 2, 0x23: 2, 0x24: 1, 0x25: 1, 0x26: -2, 0x27: 4, 0x28: 1, 0x29: 1, 0x2A: 1,
}


def parse_suback(body: bytes, version: int) -> tuple[int, list[int]]:
    """``(packet id, reason codes)``; a code of 0x80 or more is a refusal."""
    if len(body) < 3:
        raise ProtocolError("SUBACK shorter than 3 bytes")
    packet_id = int.from_bytes(body[:2], "big")
    pos = 2
    if version == V5:
        head = _read_varint(body, 2)
        if head is None:
            raise ProtocolError("SUBACK properties cut short")
        pos = head[1] + head[0]
    return packet_id, list(body[pos:])


class InboundMessage(NamedTuple):
    """One received PUBLISH, tagged with the connection it arrived on.

    A tuple, built once per message by :class:`PacketReader` (no second object per message).
    """

    topic: str
    payload: bytes
    mid: int
    """The packet id (0 at QoS 0)."""
    qos: int
    generation: int = 0
    """Which connection it came on: acknowledging it on a later one would be wrong."""
    received: float = 0.0
    """Wall-clock time the chunk holding it was read."""


PUBLISH_NOT_UTF8: Final = "<topic is not UTF-8>"


class PacketReader:
    """Cuts packets out of a byte stream. Feed it what ``recv`` returned.

    :meth:`feed` returns the PUBLISH packets completed by the data, in order; every other
    packet goes to ``on_control(packet_type, flags, body)``. ``version`` decides whether
    PUBLISH carries properties.
    """

    def __init__(
        self,
        version: int,
        on_control: Callable[[int, int, bytes], None],
        *,
        max_packet: int = 16 * 1024 * 1024,
        keep_bytes: int = 1024 * 1024,
    ) -> None:
        if keep_bytes > max_packet:
            raise ValueError("keep_bytes must not exceed max_packet")
        self._v5 = version == V5
        self._on_control = on_control
        self._max_packet = max_packet
        self._keep = keep_bytes
        self._rest = b""
        self._skip_left = 0
        """Bytes of an oversized PUBLISH still to discard."""
        self._skipped: InboundMessage | None = None
        self.generation = 0
        """Stamped on every message; a CONNACK handler in ``on_control`` may change it, and
        the messages after it in the same chunk carry the new value."""
        self._now = 0.0
        self.oversized = 0
        """PUBLISH packets larger than ``max_packet`` (delivered cut to ``keep_bytes``)."""

    def feed(self, chunk: bytes, received: float = 0.0) -> list[InboundMessage]:
        """The PUBLISH packets ``chunk`` completes, stamped :attr:`generation` and ``received``."""
        self._now = received
        out: list[InboundMessage] = []
        if self._skip_left:
            if len(chunk) < self._skip_left:
                self._skip_left -= len(chunk)
                return out
            chunk = chunk[self._skip_left:]
            self._skip_left = 0
            assert self._skipped is not None
            out.append(self._skipped)
            self._skipped = None
        data = self._rest + chunk if self._rest else chunk
        end = len(data)
        pos = 0
        try:
            pos = self._parse(data, pos, out)
        except IndexError:
            raise ProtocolError("a packet is shorter than its own header says") from None
        if self._skip_left:
            return out
        self._rest = data[pos:] if pos < end else b""
        return out

    def _parse(self, data: bytes, pos: int, out: list[InboundMessage]) -> int:
        """Parse complete packets from ``pos``; the position of the first incomplete one."""
        end = len(data)
        v5 = self._v5
        gen = self.generation
        now = self._now
        append = out.append
        while pos + 2 <= end:
            first = data[pos]
            # remaining length, inlined for the common 1- and 2-byte cases
            byte = data[pos + 1]
            if byte < 0x80:
                length = byte
                start = pos + 2
            else:
                got = _read_varint(data, pos + 1)
                if got is None:
                    break
                length, start = got
            stop = start + length
            kind = first >> 4
            if stop > end:
                if length > self._max_packet and kind == PUBLISH:
                    pub = self._cut_oversized(data, first, start, length)
                    if pub is not None:
                        self._skipped = pub
                        self._skip_left = stop - end
                        self._rest = b""
                        return end
                break
            if kind == PUBLISH:
                if length < 2 or first & 0x06 == 0x06:
                    raise ProtocolError("PUBLISH without a topic, or with QoS 3")
                tlen = (data[start] << 8) | data[start + 1]
                p = start + 2 + tlen
                try:
                    topic = data[start + 2:p].decode("utf-8")
                except UnicodeDecodeError:
                    topic = PUBLISH_NOT_UTF8
                qos = (first >> 1) & 0x03
                if qos:
                    pid = (data[p] << 8) | data[p + 1]
                    p += 2
                else:
                    pid = 0
                if v5:
                    plen = data[p]
                    if plen < 0x80:
                        p += 1 + plen
                    else:
                        got = _read_varint(data, p)
                        if got is None:
                            raise ProtocolError("PUBLISH properties length malformed")
                        p = got[1] + got[0]
                if p > stop:
                    raise ProtocolError("PUBLISH header longer than the packet")
                if length > self._max_packet:
                    self.oversized += 1
                    stop_keep = min(stop, p + self._keep)
                    append(InboundMessage(topic, data[p:stop_keep], pid, qos, gen, now))
                else:
                    append(InboundMessage(topic, data[p:stop], pid, qos, gen, now))
            else:
                self._on_control(kind, first & 0x0F, data[start:stop])
                gen = self.generation
            pos = stop
        return pos

    def _cut_oversized(
        self, data: bytes, first: int, start: int, length: int
    ) -> InboundMessage | None:
        """Once the header and ``keep_bytes`` of an oversized PUBLISH are here, keep those and
        discard the rest as it arrives; ``None`` while they are still incomplete."""
        end = len(data)
        if start + 4 > end:
            return None
        tlen = (data[start] << 8) | data[start + 1]
        p = start + 2 + tlen
        qos = (first >> 1) & 0x03
        pid = 0
        if qos:
            if p + 2 > end:
                return None
            pid = (data[p] << 8) | data[p + 1]
            p += 2
        if self._v5:
            got = _read_varint(data, p)
            if got is None:
                return None
            p = got[1] + got[0]
        if p + self._keep > end:
            return None
        try:
            topic = data[start + 2:start + 2 + tlen].decode("utf-8")
        except UnicodeDecodeError:
            topic = PUBLISH_NOT_UTF8
        self.oversized += 1
        return InboundMessage(
            topic, data[p:p + self._keep], pid, qos, self.generation, self._now
        )

    @property
    def buffered(self) -> int:
        """Bytes of an incomplete packet held until the rest arrives."""
        return len(self._rest)
