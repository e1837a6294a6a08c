"""The burst encoder (``encode_readings``, cached prefixes and field templates) writes exactly
the lines of the careful per-reading encoder (``encode_reading``) and counts the same drops."""

from __future__ import annotations

import math

from hypothesis import given, settings
from hypothesis import strategies as st

from device_profiles.loader import load_profiles
from device_profiles.messages import Reading
from device_profiles.site import DeviceConfig, SiteConfig, TsdbConfig
from edge.outputs.tsdb import InfluxTelemetryWriter

PROFILES = load_profiles()
SITE = SiteConfig(
    site_id="estate-a",
    tsdb=TsdbConfig(url="http://tsdb.invalid:8428"),
    devices=[
        DeviceConfig(id="lift-1", kind="elevator", building="Tower 1", floor=3),
        DeviceConfig(id="meter-7", kind="smart_meter", building="B,2", floor=7),
        DeviceConfig(id="pump-1", kind="water_pump", building="B1"),
        DeviceConfig(id="gate-1", kind="access_gate", building="B=1"),
    ],
)
DEVICES = {"lift-1": "elevator", "meter-7": "smart_meter", "pump-1": "water_pump",
           "gate-1": "access_gate"}


class NullSink:
    def send(self, body: bytes, lines: int) -> None:
        pass

    def close(self) -> None:
        pass


def writer() -> InfluxTelemetryWriter:
    assert SITE.tsdb is not None
    return InfluxTelemetryWriter(SITE.tsdb, SITE, PROFILES, sink=NullSink())


VALUE = st.one_of(
    st.floats(min_value=-1e6, max_value=1e6),
    st.floats(),  # NaN, infinities, huge values
    st.integers(-10, 10), st.booleans(), st.sampled_from([0.5, 1.5, 2.5, -0.0, 1e16, 1e-7]),
    st.sampled_from([2**63, -(2**70)]),  # large ints (the contract is floats; ints work)
)


@st.composite
def readings(draw: st.DrawFn) -> Reading:
    device = draw(st.sampled_from([*sorted(DEVICES), "ghost"]))
    kind = DEVICES.get(device, "water_pump")
    if draw(st.sampled_from([False] * 9 + [True])):
        kind = draw(st.sampled_from(["water_pump", "elevator", "teapot"]))
    names = sorted(PROFILES[kind].fields) if kind in PROFILES else ["x"]
    chosen = draw(st.permutations(names)) if draw(st.booleans()) else draw(
        st.lists(st.sampled_from([*names, "unknown"]), max_size=8, unique=True)
    )
    plain = st.floats(min_value=-1e6, max_value=1e6)
    values = {
        name: draw(VALUE if draw(st.sampled_from([False] * 4 + [True])) else plain)
        for name in chosen
    }
    ts = draw(st.one_of(
        st.floats(min_value=0, max_value=4e9), st.sampled_from([-1.0, math.nan, math.inf, 0.0])
    ))
    return Reading("estate-a", kind, device, ts, values)


@settings(max_examples=400, deadline=None)
@given(st.lists(readings(), max_size=30))
def test_the_burst_encoder_writes_the_careful_encoders_lines(burst: list[Reading]) -> None:
    fast, careful = writer(), writer()
    lines, kept = fast.encode_readings(burst)
    expected = [(careful.encode_reading(r), r) for r in burst]
    assert lines == [line for line, _ in expected if line is not None]
    assert [id(r) for r in kept] == [id(r) for _, r in expected if _ is not None]
    assert fast.stats() == careful.stats()
    again, _ = fast.encode_readings(burst)  # from the caches this time
    assert again == lines


def test_a_field_name_with_a_percent_sign_is_not_a_format() -> None:
    profiles = {k: p.model_copy() for k, p in PROFILES.items()}
    pump = profiles["water_pump"]
    spec = pump.fields["current_a"]
    profiles["water_pump"] = pump.model_copy(update={"fields": {"load_%": spec}})
    assert SITE.tsdb is not None
    w = InfluxTelemetryWriter(SITE.tsdb, SITE, profiles, sink=NullSink())
    r = Reading("estate-a", "water_pump", "pump-1", 1.5, {"load_%": 2.5})
    assert w.encode_readings([r])[0] == [w.encode_reading(r)]
    assert w.encode_readings([r])[0] == [
        "water_pump,building=B1,device=pump-1,site=estate-a load_%=2.5 1500"
    ]
