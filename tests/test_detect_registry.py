"""One generic test that runs every registered detector through the same checks."""

from __future__ import annotations

import random

import pytest

from device_profiles.loader import load_profiles
from device_profiles.messages import Reading
from device_profiles.schema import DetectorSpec, DeviceProfile
from device_profiles.site import DeviceConfig
from edge.detectors import DetectorConfigError, Finding, build_monitors, registered
from edge.detectors.chain import DetectorChain

PROFILES = load_profiles()


GENERIC_ONLY = {
    "gaussian": DetectorSpec(name="gaussian", event="pump.anomaly", params={"warmup": 100}),
    "zscore": DetectorSpec(name="zscore", event="pump.anomaly", fields=("pressure_bar",)),
}
"""Registered detectors no shipped profile lists, checked on the pump profile."""


def uses() -> list[tuple[str, str]]:
    """(detector name, kind) for every detector every shipped profile lists, and the
    generic ones."""
    listed = [(d.name, kind) for kind, p in PROFILES.items() for d in p.detectors]
    return listed + [(name, "water_pump") for name in GENERIC_ONLY]


def only(profile: DeviceProfile, name: str) -> DeviceProfile:
    if name in GENERIC_ONLY:
        return profile.model_copy(update={"detectors": (GENERIC_ONLY[name],)})
    return profile.model_copy(
        update={"detectors": tuple(d for d in profile.detectors if d.name == name)}
    )


def normal_readings(profile: DeviceProfile, n: int, seed: int = 1) -> list[Reading]:
    """Plausible in-band readings: each field near the middle of its normal band."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        values: dict[str, float] = {}
        for name, f in profile.fields.items():
            lo = f.warn_low if f.warn_low is not None else f.min
            hi = f.warn_high if f.warn_high is not None else min(f.max, lo + 100)
            mid = (lo + hi) / 2
            if f.type == "bool":
                values[name] = float(rng.random() < 0.5)
            elif f.type == "int":
                values[name] = float(round(mid))
            else:
                values[name] = mid + rng.gauss(0, (hi - lo) / 50)
        out.append(Reading("s", profile.kind, "d1", 1_700_000_000.0 + i * profile.sampling_period,
                           values))
    return out


def test_every_detector_the_profiles_list_is_registered() -> None:
    names = set(registered())
    for name, kind in uses():
        assert name in names, f"{kind} lists unregistered detector {name}"


def test_every_registered_detector_goes_through_the_contract_test() -> None:
    assert set(registered()) == {name for name, _ in uses()}


@pytest.mark.parametrize(("name", "kind"), uses())
def test_detector_contract(name: str, kind: str) -> None:
    """Builds, rejects unknown params, survives missing optional fields, and gives the same
    findings (same episode starts) when the same data is replayed."""
    profile = only(PROFILES[kind], name)
    device = DeviceConfig(id="d1", kind=kind, params={"common_area": True})
    spec = profile.detectors[0]
    bad = spec.model_copy(update={"params": {**spec.params, "no_such_param": 1}})
    with pytest.raises(DetectorConfigError, match="no_such_param"):
        build_monitors(profile.model_copy(update={"detectors": (bad,)}), device)

    readings = normal_readings(profile, 600)
    sparse = [
        Reading(r.site_id, r.kind, r.device_id, r.ts + 600 * profile.sampling_period,
                {k: v for k, v in r.values.items() if k in profile.required})
        for r in readings[:50]
    ]

    def replay() -> list[Finding]:
        (monitor,) = build_monitors(profile, device)
        found: list[Finding] = []
        for r in readings + sparse:
            found += monitor.observe(r)
        found += monitor.tick(sparse[-1].ts + 10 * profile.offline_after)
        found += monitor.on_status(sparse[-1].ts + 11 * profile.offline_after, False)
        return found

    first, second = replay(), replay()
    assert first == second
    for f in first:
        assert f.event_type in profile.events, f"{name} raised undeclared {f.event_type}"
        assert f.state in ("raised", "cleared")


@pytest.mark.parametrize("kind", sorted(PROFILES))
def test_full_chain_runs_on_normal_data(kind: str) -> None:
    profile = PROFILES[kind]
    chain = DetectorChain.for_device(profile, DeviceConfig(id="d1", kind=kind))
    for r in normal_readings(profile, 200):
        for f in chain.observe(r):
            assert f.event_type in profile.events


def test_unknown_detector_fails_naming_it() -> None:
    profile = PROFILES["camera"].model_copy(
        update={"detectors": (DetectorSpec(name="no_such_detector"),)}
    )
    with pytest.raises(DetectorConfigError, match="no_such_detector"):
        build_monitors(profile, DeviceConfig(id="c1", kind="camera"))


def test_bad_param_type_fails_naming_detector_and_param() -> None:
    profile = PROFILES["water_pump"]
    spec = DetectorSpec(name="trend", event="pump.bearing_wear", fields=("accel1_rms",),
                        params={"window": "long"})
    with pytest.raises(DetectorConfigError, match="window"):
        build_monitors(profile.model_copy(update={"detectors": (spec,)}),
                       DeviceConfig(id="p1", kind="water_pump"))
