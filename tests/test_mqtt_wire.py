"""The agent's MQTT packets, byte for byte, without a broker (the broker tests are in
test_edge_mqtt.py and test_edge_security.py)."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edge.mqtt_wire import (
    CONNACK,
    PINGRESP,
    SUBACK,
    V5,
    V311,
    InboundMessage,
    PacketReader,
    ProtocolError,
    connect_packet,
    parse_connack,
    parse_suback,
    puback_packets,
    subscribe_packet,
    varint,
)


def publish(topic: str, payload: bytes, *, qos: int = 1, pid: int = 7, version: int = V5,
            props: bytes = b"") -> bytes:
    raw = topic.encode()
    body = struct.pack(">H", len(raw)) + raw
    if qos:
        body += struct.pack(">H", pid)
    if version == V5:
        body += varint(len(props)) + props
    body += payload
    return bytes((0x30 | (qos << 1),)) + varint(len(body)) + body


class Controls:
    def __init__(self) -> None:
        self.seen: list[tuple[int, int, bytes]] = []

    def __call__(self, kind: int, flags: int, body: bytes) -> None:
        self.seen.append((kind, flags, body))


@pytest.mark.parametrize(
    ("n", "encoded"),
    [(0, b"\x00"), (127, b"\x7f"), (128, b"\x80\x01"), (16_383, b"\xff\x7f"),
     (16_384, b"\x80\x80\x01"), (268_435_455, b"\xff\xff\xff\x7f")],
)
def test_variable_byte_integers_match_the_spec_examples(n: int, encoded: bytes) -> None:
    assert varint(n) == encoded


def test_varint_refuses_what_does_not_fit() -> None:
    with pytest.raises(ValueError):
        varint(268_435_456)


def test_connect_v5_carries_session_expiry_receive_maximum_and_credentials() -> None:
    packet = connect_packet(
        "edge-1", version=V5, keepalive=30, username="edge", password="s3cret",
        session_expiry=86400, receive_maximum=10_000,
    )
    assert packet[0] == 0x10
    body = packet[2:]
    assert packet[1] == len(body)
    assert body[:7] == b"\x00\x04MQTT\x05"
    assert body[7] == 0xC0  # username + password, clean start off
    assert body[8:10] == b"\x00\x1e"
    assert body[10:19] == b"\x08\x11\x00\x01\x51\x80\x21\x27\x10"
    assert body[19:] == b"\x00\x06edge-1\x00\x04edge\x00\x06s3cret"


def test_connect_v311_has_no_properties_and_keeps_the_session() -> None:
    packet = connect_packet("c", version=V311, keepalive=60)
    assert packet == b"\x10\x0d\x00\x04MQTT\x04\x00\x00\x3c\x00\x01c"


def test_subscribe_and_puback_bytes() -> None:
    assert subscribe_packet(1, "gh/s/+/+/+", 1, version=V5) == (
        b"\x82\x10\x00\x01\x00\x00\x0agh/s/+/+/+\x01"
    )
    assert subscribe_packet(2, "a", 0, version=V311) == b"\x82\x06\x00\x02\x00\x01a\x00"
    assert puback_packets([1, 0x1234, 65535]) == (
        b"\x40\x02\x00\x01" b"\x40\x02\x12\x34" b"\x40\x02\xff\xff"
    )


def test_connack_results_and_properties() -> None:
    ok = parse_connack(b"\x01\x00\x00", V5)
    assert ok.session_present and not ok.refused
    refused = parse_connack(b"\x00\x87\x00", V5)
    assert refused.refused and "not authorized" in refused.describe(V5)
    assert "bad user name" in parse_connack(b"\x00\x04", V311).describe(V311)
    # server keep alive 0x13 = 20 s, receive maximum 0x21 = 100, a reason string 0x1f
    props = b"\x13\x00\x14\x21\x00\x64\x1f\x00\x02hi"
    got = parse_connack(b"\x00\x00" + varint(len(props)) + props, V5)
    assert (got.server_keepalive, got.receive_maximum) == (20, 100)
    with pytest.raises(ProtocolError):
        parse_connack(b"\x00", V5)
    with pytest.raises(ProtocolError):
        parse_connack(b"\x00\x00\x03\x7e\x00\x00", V5)  # unknown property


def test_suback_reason_codes() -> None:
    assert parse_suback(b"\x00\x01\x00\x01", V5) == (1, [1])
    assert parse_suback(b"\x00\x02\x80", V311) == (2, [0x80])


def test_reader_cuts_publishes_and_routes_control_packets_in_order() -> None:
    controls = Controls()
    reader = PacketReader(V5, controls)
    stream = (
        b"\x20\x03\x00\x00\x00"  # CONNACK
        + publish("gh/s/pump/p1/telemetry", b'{"a":1}', pid=1)
        + publish("gh/s/pump/p2/telemetry", b"x" * 300, pid=2, props=b"\x01\x01")
        + publish("gh/s/gate/g1/status", b"online", qos=0)
        + b"\x90\x04\x00\x01\x00\x01"  # SUBACK
        + b"\xd0\x00"  # PINGRESP
    )
    got = reader.feed(stream, received=5.0)
    assert got == [
        InboundMessage("gh/s/pump/p1/telemetry", b'{"a":1}', 1, 1, 0, 5.0),
        InboundMessage("gh/s/pump/p2/telemetry", b"x" * 300, 2, 1, 0, 5.0),
        InboundMessage("gh/s/gate/g1/status", b"online", 0, 0, 0, 5.0),
    ]
    assert [k for k, _, _ in controls.seen] == [CONNACK, SUBACK, PINGRESP]
    assert reader.buffered == 0


def test_v311_publish_has_no_properties() -> None:
    reader = PacketReader(V311, Controls())
    got = reader.feed(publish("t/1", b"\x00\x01", pid=9, version=V311))
    assert got == [InboundMessage("t/1", b"\x00\x01", 9, 1)]


def test_a_connack_changes_the_generation_of_the_messages_after_it() -> None:
    reader: PacketReader

    def on_control(kind: int, flags: int, body: bytes) -> None:
        if kind == CONNACK:
            reader.generation += 1

    reader = PacketReader(V5, on_control)
    got = reader.feed(publish("a", b"1") + b"\x20\x03\x00\x00\x00" + publish("b", b"2"))
    assert [(m.topic, m.generation) for m in got] == [("a", 0), ("b", 1)]


@settings(max_examples=200, deadline=None)
@given(
    payloads=st.lists(st.binary(max_size=400), min_size=1, max_size=12),
    cuts=st.lists(st.integers(min_value=1, max_value=500), max_size=30),
)
def test_any_split_of_the_stream_gives_the_same_messages(
    payloads: list[bytes], cuts: list[int]
) -> None:
    stream = b"".join(
        publish(f"gh/s/k/d{i}/telemetry", p, pid=i + 1, qos=i % 2) for i, p in enumerate(payloads)
    )
    expected = PacketReader(V5, Controls()).feed(stream)
    reader = PacketReader(V5, Controls())
    got: list[InboundMessage] = []
    pos = 0
    for cut in cuts:
        got += reader.feed(stream[pos:pos + cut])
        pos += cut
    got += reader.feed(stream[pos:])
    assert got == expected
    assert [m.payload for m in got] == payloads
    assert reader.buffered == 0


def test_an_oversized_message_is_cut_to_its_head_and_still_delivered_and_counted() -> None:
    reader = PacketReader(V5, Controls(), max_packet=10_000, keep_bytes=1_000)
    big = publish("gh/s/pump/p1/telemetry", b"{" + b"9" * 50_000, pid=3)
    after = publish("gh/s/pump/p1/telemetry", b"{}", pid=4)
    got: list[InboundMessage] = []
    stream = big + after
    for i in range(0, len(stream), 4096):
        got += reader.feed(stream[i:i + 4096])
        assert reader.buffered <= 10_000  # never holds the whole message
    assert [(m.mid, len(m.payload)) for m in got] == [(3, 1_000), (4, 2)]
    assert reader.oversized == 1


def test_an_oversized_message_already_whole_in_one_read_is_cut_too() -> None:
    reader = PacketReader(V5, Controls(), max_packet=100, keep_bytes=10)
    got = reader.feed(publish("t", b"z" * 500))
    assert [len(m.payload) for m in got] == [10]


@pytest.mark.parametrize(
    "garbage",
    [
        b"\x30\xff\xff\xff\xff\x01",  # remaining length of five bytes
        b"\x30\x01\x00",  # PUBLISH shorter than its topic length
        b"\x32\x05\x00\x09abc",  # topic longer than the packet
        b"\x36\x04\x00\x01a\x00",  # QoS 3
    ],
)
def test_malformed_packets_are_protocol_errors(garbage: bytes) -> None:
    reader = PacketReader(V5, Controls())
    with pytest.raises(ProtocolError):
        reader.feed(garbage + publish("t", b"next"))


def test_a_topic_that_is_not_utf8_is_named_so() -> None:
    body = b"\x00\x02\xff\xfe" + b"\x00\x01" + b"\x00" + b"x"
    got = PacketReader(V5, Controls()).feed(b"\x32" + varint(len(body)) + body)
    assert got[0].topic == "<topic is not UTF-8>" and got[0].payload == b"x"
