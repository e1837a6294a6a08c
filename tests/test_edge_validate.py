"""Validation of raw MQTT messages: every reason, and the good paths."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from device_profiles.loader import load_profiles
from device_profiles.messages import Reading
from edge.topics import parse_topic, site_subscription
from edge.validate import NativeEvent, Reason, Rejection, StatusChange, Validator
from tests.servers_edge import make_site, pump_payload

PROFILES = load_profiles()
STATELESS = Validator(make_site("s1"), PROFILES, max_payload=4096, clock=lambda: 123.0)


@pytest.fixture
def validator() -> Validator:
    return Validator(make_site("s1"), PROFILES, max_payload=4096, clock=lambda: 123.0)


def reason(result: object) -> Reason:
    assert isinstance(result, Rejection), result
    return result.reason


def test_good_telemetry_becomes_a_reading(validator: Validator) -> None:
    result = validator.validate("gh/s1/water_pump/pump-1/telemetry", pump_payload(1000.5))
    assert isinstance(result, Reading)
    assert result.device_id == "pump-1" and result.ts == 1000.5
    assert result.values["current_a"] == 3.0


def test_bool_and_int_fields_are_typed(validator: Validator) -> None:
    body = {"ts": 5, "door_open": True, "passages": 3, "grants": 3.0, "denials": 0}
    result = validator.validate("gh/s1/access_gate/gate-1/telemetry", json.dumps(body).encode())
    assert isinstance(result, Reading)
    assert result.values == {"door_open": 1.0, "passages": 3.0, "grants": 3.0, "denials": 0.0}


PT = "gh/s1/water_pump/pump-1/telemetry"
GE = "gh/s1/access_gate/gate-1/event"


@pytest.mark.parametrize(
    ("topic", "payload", "expected"),
    [
        ("gh/s1/water_pump/pump-1", b"{}", Reason.BAD_TOPIC),
        ("gh/s1//pump-1/telemetry", b"{}", Reason.BAD_TOPIC),
        ("gh/s1/water_pump/pump-1/bogus", b"{}", Reason.BAD_TOPIC),
        ("xx/s1/water_pump/pump-1/telemetry", b"{}", Reason.BAD_TOPIC),
        ("gh/s2/water_pump/pump-1/telemetry", b"{}", Reason.UNKNOWN_SITE),
        ("gh/s1/water_pump/pump-9/telemetry", b"{}", Reason.UNKNOWN_DEVICE),
        ("gh/s1/elevator/pump-1/telemetry", b"{}", Reason.KIND_MISMATCH),
        ("gh/s1/water_pump/pump-1/telemetry", b"x" * 5000, Reason.TOO_LARGE),
        ("gh/s1/water_pump/pump-1/telemetry", b"{not json", Reason.BAD_JSON),
        ("gh/s1/water_pump/pump-1/telemetry", b"\xff\xfe", Reason.BAD_JSON),
        ("gh/s1/water_pump/pump-1/telemetry", b'{"ts": NaN}', Reason.BAD_JSON),
        ("gh/s1/water_pump/pump-1/telemetry", b"[1, 2]", Reason.NOT_AN_OBJECT),
        ("gh/s1/water_pump/pump-1/telemetry", b'{"current_a": 1}', Reason.MISSING_TS),
        ("gh/s1/water_pump/pump-1/telemetry", b'{"ts": "now"}', Reason.BAD_TS),
        ("gh/s1/water_pump/pump-1/telemetry", b'{"ts": -5}', Reason.BAD_TS),
        ("gh/s1/water_pump/pump-1/telemetry", b'{"ts": 1e300}', Reason.BAD_TS),
        ("gh/s1/water_pump/pump-1/telemetry", b'{"ts": 5, "current_a": 1}', Reason.MISSING_FIELD),
        ("gh/s1/water_pump/pump-1/telemetry", pump_payload(5, rpm=3), Reason.UNKNOWN_FIELD),
        ("gh/s1/water_pump/pump-1/telemetry", b'{"ts": 5, "accel1_rms": "1"}', Reason.WRONG_TYPE),
        (PT, pump_payload(5, current_a=99), Reason.OUT_OF_VALID_RANGE),
        (PT, b'{"ts": 5, "accel1_rms": 1e999}', Reason.OUT_OF_VALID_RANGE),
        ("gh/s1/access_gate/gate-1/telemetry", b'{"ts": 5, "door_open": 2}', Reason.WRONG_TYPE),
        ("gh/s1/access_gate/gate-1/telemetry", b'{"ts": 5, "passages": 1.5}', Reason.WRONG_TYPE),
        ("gh/s1/water_pump/pump-1/status", b"maybe", Reason.BAD_STATUS),
        (GE, b'{"ts": 5, "type": "explode"}', Reason.UNKNOWN_NATIVE_EVENT),
        ("gh/s1/access_gate/gate-1/event", b'{"ts": 5, "type": 3}', Reason.WRONG_TYPE),
        ("gh/s1/water_pump/pump-1/telemetry", pump_payload(5)[:-1] + b', "device_id": "pump-2"}',
         Reason.FOREIGN_PREFIX),
    ],
)
def test_each_bad_message_has_its_reason(
    validator: Validator, topic: str, payload: bytes, expected: Reason
) -> None:
    assert reason(validator.validate(topic, payload)) == expected


def test_status_plain_and_json(validator: Validator) -> None:
    plain = validator.validate("gh/s1/elevator/elev-1/status", b"offline")
    assert plain == StatusChange("s1", "elevator", "elev-1", 123.0, False)
    js = validator.validate("gh/s1/elevator/elev-1/status", b'{"status": "online", "ts": 7}')
    assert js == StatusChange("s1", "elevator", "elev-1", 7.0, True)


def test_native_event_maps_through_the_profile(validator: Validator) -> None:
    result = validator.validate(
        "gh/s1/access_gate/gate-1/event", b'{"ts": 50.5, "type": "forced_open", "door": "north"}'
    )
    assert isinstance(result, NativeEvent)
    assert result.event_type == "gate.forced_open" and result.state == "raised"
    assert result.evidence == {"door": "north"}


def test_a_validator_needs_every_kind_profile() -> None:
    with pytest.raises(ValueError, match="no profile for kind"):
        Validator(make_site("s1"), {"water_pump": PROFILES["water_pump"]})


def test_topics() -> None:
    assert parse_topic("gh/a/b/c/event") is not None
    assert parse_topic("gh/a/b/+/event") is None
    assert site_subscription("a") == "gh/a/+/+/+"
    assert site_subscription("a", "g") == "$share/g/gh/a/+/+/+"


@settings(max_examples=300, deadline=None)
@given(
    topic=st.one_of(
        st.text(max_size=80),
        st.sampled_from(["gh/s1/water_pump/pump-1/", "gh/s1/access_gate/gate-1/"]).flatmap(
            lambda p: st.sampled_from(["telemetry", "status", "event"]).map(lambda c: p + c)
        ),
    ),
    payload=st.one_of(
        st.binary(max_size=300),
        st.recursive(
            st.none() | st.booleans() | st.floats(allow_nan=False) | st.integers() | st.text(),
            lambda kids: st.lists(kids) | st.dictionaries(st.text(max_size=12), kids),
            max_leaves=20,
        ).map(lambda v: json.dumps(v).encode()),
    ),
)
def test_validate_never_raises(topic: str, payload: bytes) -> None:
    result = STATELESS.validate(topic, payload)
    assert isinstance(result, Reading | StatusChange | NativeEvent | Rejection)
