"""The fast validator answers every message exactly as the original did.

The oracle is the original validator, kept verbatim in ``tests/validate_reference.py``. Random
messages (topics of the site's devices and garbage; payloads with the profiles' field names,
meta keys, numbers of every size and form, wrong types, raw bytes) must get the same result
from both: the same reading (values of the same type and representation), status change or
device event, or a rejection with the same reason and the same detail. The JSON parser
(orjson with the standard library as fallback) must return exactly what ``json.loads`` does.
"""

from __future__ import annotations

import json
import math
from dataclasses import astuple
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from device_profiles.loader import load_profiles
from device_profiles.messages import Reading
from device_profiles.schema import FieldSpec
from device_profiles.site import DeviceConfig
from edge.validate import Validator, loads_json
from tests import validate_reference as ref
from tests.servers_edge import make_site

PROFILES = load_profiles()
SITE = make_site(
    "s1",
    devices=[
        DeviceConfig(id="pump-1", kind="water_pump"),
        DeviceConfig(id="elev-1", kind="elevator"),
        DeviceConfig(id="gate-1", kind="access_gate"),
        DeviceConfig(id="meter-1", kind="smart_meter"),
        DeviceConfig(id="cam-1", kind="camera"),
    ],
)
FAST = Validator(SITE, PROFILES, max_payload=600, clock=lambda: 123.0)
REFERENCE = ref.Validator(SITE, PROFILES, max_payload=600, clock=lambda: 123.0)
DEVICES = {"pump-1": "water_pump", "elev-1": "elevator", "gate-1": "access_gate",
           "meter-1": "smart_meter", "cam-1": "camera"}
FIELD_NAMES = sorted({name for p in PROFILES.values() for name in p.fields})
NATIVE_TYPES = sorted({native for p in PROFILES.values() for native in p.device_events})


def canonical(result: object) -> tuple[Any, ...]:
    """A comparable form of either validator's answer (the two define their own classes)."""
    if isinstance(result, Reading):
        values = tuple((k, type(v).__name__, repr(v)) for k, v in result.values.items())
        return ("reading", result.site_id, result.kind, result.device_id, repr(result.ts), values)
    name = type(result).__name__
    if name == "Rejection":
        return ("rejection", result.reason.value, result.detail)  # type: ignore[attr-defined]
    fields = astuple(result)  # type: ignore[call-overload]
    return (name, *(repr(f) for f in fields))


def same_answer(topic: str, payload: bytes) -> None:
    fast = canonical(FAST.validate(topic, payload))
    slow = canonical(REFERENCE.validate(topic, payload))
    assert fast == slow, (topic, payload)


# JSON number literals of every form, including integers beyond 64 bits and doubles
NUMBER_TEXT = st.from_regex(
    r"\A-?(0|[1-9][0-9]{0,24})(\.[0-9]{1,22})?([eE][+-]?[0-9]{1,3})?\Z", fullmatch=True
)
SCALAR = st.one_of(
    st.floats(allow_nan=False), st.integers(), st.integers(min_value=-(2**70), max_value=2**70),
    st.booleans(), st.none(), st.text(max_size=8), st.sampled_from([0, 1, 0.0, 1.0, -0.0, 2]),
    st.lists(st.integers(min_value=2**60, max_value=2**66), max_size=2),
)
KEY = st.one_of(
    st.sampled_from(FIELD_NAMES), st.sampled_from(["ts", "site_id", "kind", "device_id", "seq",
                                                   "type", "state", "status"]),
    st.text(max_size=6),
)


ONE_IN_5 = st.sampled_from([False] * 4 + [True])
ONE_IN_10 = st.sampled_from([False] * 9 + [True])
ONE_IN_20 = st.sampled_from([False] * 19 + [True])


def good_value(spec: FieldSpec) -> st.SearchStrategy[str]:
    if spec.type == "bool":
        return st.sampled_from(["true", "false", "0", "1"])
    if spec.type == "int":
        return st.integers(int(spec.min), int(spec.max)).map(str)
    return st.floats(spec.min, spec.max).map(repr)


def hostile_value(spec: FieldSpec) -> st.SearchStrategy[str]:
    near = st.floats(min_value=spec.min - 1, max_value=spec.max + 1)
    return st.one_of(near.map(repr), NUMBER_TEXT, SCALAR.map(json.dumps))


@st.composite
def messages(draw: st.DrawFn) -> tuple[str, bytes]:
    """A topic and a JSON object as text: mostly a good reading of the topic's own device
    with a few values made hostile (raw number literals of every form, wrong types, values
    out of range), sometimes extra or missing keys, another kind's fields, another topic."""
    device = draw(st.sampled_from(sorted(DEVICES)))
    channel = draw(st.sampled_from(["telemetry"] * 6 + ["event", "status"]))
    topic = f"gh/s1/{DEVICES[device]}/{device}/{channel}"
    if draw(ONE_IN_20):
        topic = draw(st.sampled_from(OTHER_TOPICS))
    if draw(ONE_IN_10):
        device = draw(st.sampled_from(sorted(DEVICES)))
    profile = PROFILES[DEVICES[device]]
    members: list[str] = []
    if not draw(ONE_IN_10):
        ts = draw(st.one_of(
            st.just("1700000000.5"), st.sampled_from(["1700000000", "5", '"now"']), NUMBER_TEXT
        ))
        members.append(f'"ts": {ts}')
    names = sorted(profile.fields)
    if draw(ONE_IN_5):
        names = draw(st.lists(st.sampled_from(names), max_size=12))
    hostile = draw(st.integers(0, 3))
    for name in names:
        spec = profile.fields[name]
        value = draw(hostile_value(spec) if draw(st.integers(0, 9)) < hostile else good_value(spec))
        members.append(f"{json.dumps(name)}: {value}")
    for key in draw(st.lists(KEY, max_size=2)) if draw(ONE_IN_5) else []:
        value = draw(st.one_of(SCALAR.map(json.dumps), st.sampled_from(
            [json.dumps(device), '"s1"', json.dumps(DEVICES[device]), '"online"',
             json.dumps(NATIVE_TYPES[0]) if NATIVE_TYPES else '"x"', '"cleared"'])))
        members.append(f"{json.dumps(key)}: {value}")
    order = draw(st.permutations(members))
    return topic, ("{" + ", ".join(order) + "}").encode()


OTHER_TOPICS = ["gh/s1/elevator/pump-1/telemetry", "gh/s2/water_pump/pump-1/telemetry",
                "gh/s1/water_pump/pump-9/telemetry", "gh/s1/water_pump/pump-1"]
TOPIC = st.one_of(
    st.tuples(st.sampled_from(sorted(DEVICES)), st.sampled_from(["telemetry", "event", "status"]))
    .map(lambda t: f"gh/s1/{DEVICES[t[0]]}/{t[0]}/{t[1]}"),
    st.sampled_from(OTHER_TOPICS),
)


@settings(max_examples=800, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(message=messages())
@example(("gh/s1/access_gate/gate-1/telemetry",
          b'{"ts": 5, "door_open": 1, "passages": 123456789012345678901234, "grants": 3.0,'
          b' "denials": 0}'))
@example(("gh/s1/access_gate/gate-1/telemetry",
          b'{"ts": 5, "door_open": 2, "passages": 1, "grants": 3.0, "denials": 0}'))
@example(("gh/s1/access_gate/gate-1/event",
          b'{"ts": 5, "type": "forced_open", "n": 18446744073709551616}'))
@example(("gh/s1/water_pump/pump-1/status", b'{"status": [18446744073709551617]}'))
@example(("gh/s1/water_pump/pump-1/telemetry", b'{"ts": 5, "current_a": 1e999}'))
@example(("gh/s1/water_pump/pump-1/telemetry", b'{"ts": 5, "current_a": 1' + b"0" * 400 + b"}"))
@example(("gh/s1/water_pump/pump-1/telemetry", b'{"ts": 5, "ts": 6, "current_a": 1}'))
def test_generated_messages_get_the_same_answer(message: tuple[str, bytes]) -> None:
    same_answer(*message)


@settings(max_examples=300, deadline=None)
@given(topic=TOPIC, payload=st.binary(max_size=120))
def test_random_bytes_get_the_same_answer(topic: str, payload: bytes) -> None:
    same_answer(topic, payload)


@pytest.mark.parametrize(
    "payload",
    [
        b"\xef\xbb\xbf{}",  # UTF-8 byte order mark: the standard library accepts it
        '{"ts": 5}'.encode("utf-16"),  # the standard library detects UTF-16
        b'{"a": "\\ud800"}',  # a lone surrogate
        b"[" * 5000 + b"]" * 5000,  # deeper than either parser goes
        b"123456789012345678901234567890",
        b'{"n": -9223372036854775809}',
        b'{"n": 1e400}',
        b'{"n": NaN}', b"Infinity", b"{} x", b"", b" ",
    ],
)
def test_loads_json_agrees_with_the_standard_library_on_edge_cases(payload: bytes) -> None:
    check_loads(payload)


@settings(max_examples=500, deadline=None)
@given(st.one_of(
    st.binary(max_size=60),
    NUMBER_TEXT.map(str.encode),
    st.recursive(SCALAR, lambda kids: st.lists(kids, max_size=4)
                 | st.dictionaries(st.text(max_size=5), kids, max_size=4), max_leaves=12)
    .map(lambda v: json.dumps(v).encode()),
))
def test_loads_json_returns_what_json_loads_returns(payload: bytes) -> None:
    check_loads(payload)


def check_loads(payload: bytes) -> None:
    try:
        expected: object = json.loads(payload, parse_constant=ref._reject_constant)
    except (ValueError, RecursionError) as exc:
        with pytest.raises((ValueError, RecursionError)) as raised:
            loads_json(payload)
        assert str(raised.value) == str(exc)
        return
    assert typed(loads_json(payload)) == typed(expected)


def typed(value: object) -> object:
    """The value with the type of every leaf, so 1 and 1.0 (or -0.0 and 0.0) differ."""
    if isinstance(value, dict):
        return ("dict", [(k, typed(v)) for k, v in value.items()])
    if isinstance(value, list):
        return ("list", [typed(v) for v in value])
    if isinstance(value, float) and math.isnan(value):
        return ("float", "nan")
    return (type(value).__name__, repr(value))
