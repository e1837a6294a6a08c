"""Every shipped profile loads; a broken profile fails naming the file and the field."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from device_profiles import ProfileError, load_profile, load_profiles, profile_dir
from device_profiles.durations import format_duration, parse_duration
from device_profiles.schema import KINDS
from device_profiles.site import SiteConfigError, load_site


def test_every_shipped_profile_loads() -> None:
    profiles = load_profiles()
    assert sorted(profiles) == sorted(KINDS)
    for kind, profile in profiles.items():
        assert profile.fields, kind
        assert profile.events, kind
        assert profile.sampling_period > 0
        for spec in profile.events.values():
            if spec.work_order is not None:
                assert spec.work_order.response_sla <= spec.work_order.resolve_sla


def test_pump_profile_carries_the_testbed_channels() -> None:
    pump = load_profiles()["water_pump"]
    aliases = pump.field_by_alias()
    skab = [
        "Accelerometer1RMS",
        "Accelerometer2RMS",
        "Current",
        "Pressure",
        "Temperature",
        "Thermocouple",
        "Voltage",
        "Volume Flow RateRMS",
    ]
    assert [aliases[c.lower()] for c in skab] == list(pump.fields)


def test_entrapment_has_the_shortest_elevator_sla() -> None:
    elevator = load_profiles()["elevator"]
    slas = {
        name: spec.work_order.response_sla
        for name, spec in elevator.events.items()
        if spec.work_order is not None
    }
    assert min(slas, key=lambda name: slas[name]) == "elevator.entrapment"
    assert slas["elevator.entrapment"] == 15 * 60


def _write_broken(tmp_path: Path, mutate: dict[str, object]) -> Path:
    raw = yaml.safe_load((profile_dir() / "water_pump.yaml").read_text())
    raw.update(mutate)
    path = tmp_path / "water_pump.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def test_broken_profile_names_file_and_field(tmp_path: Path) -> None:
    raw = yaml.safe_load((profile_dir() / "water_pump.yaml").read_text())
    raw["fields"]["current_a"]["max"] = "lots"
    path = tmp_path / "water_pump.yaml"
    path.write_text(yaml.safe_dump(raw))
    with pytest.raises(ProfileError) as info:
        load_profile(path)
    message = str(info.value)
    assert str(path) in message
    assert "fields.current_a.max" in message


def test_unknown_key_is_refused(tmp_path: Path) -> None:
    path = _write_broken(tmp_path, {"samplng_period": "1s"})
    with pytest.raises(ProfileError, match="samplng_period"):
        load_profile(path)


def test_detector_reading_an_undeclared_field_is_refused(tmp_path: Path) -> None:
    path = _write_broken(tmp_path, {"detectors": [{"name": "trend", "fields": ["rpm"]}]})
    with pytest.raises(ProfileError, match="unknown field 'rpm'"):
        load_profile(path)


def test_bad_sla_and_yaml_errors(tmp_path: Path) -> None:
    raw = yaml.safe_load((profile_dir() / "water_pump.yaml").read_text())
    raw["events"]["pump.leak"]["work_order"]["response_sla"] = "3d"
    path = tmp_path / "water_pump.yaml"
    path.write_text(yaml.safe_dump(raw))
    with pytest.raises(ProfileError, match="response_sla must not exceed resolve_sla"):
        load_profile(path)
    path.write_text("kind: [unclosed")
    with pytest.raises(ProfileError, match="not valid YAML"):
        load_profile(path)


def test_kind_must_match_file_name(tmp_path: Path) -> None:
    path = tmp_path / "elevator.yaml"
    path.write_text((profile_dir() / "water_pump.yaml").read_text())
    with pytest.raises(ProfileError, match="kind"):
        load_profile(path)


@pytest.mark.parametrize(
    ("text", "seconds"), [("90s", 90), ("15m", 900), ("2h", 7200), ("1d", 86400), (30, 30)]
)
def test_durations(text: str | int, seconds: float) -> None:
    assert parse_duration(text) == seconds


def test_duration_errors_and_format() -> None:
    for bad in ("soon", "-5", True, -1):
        with pytest.raises(ValueError):
            parse_duration(bad)
    assert format_duration(900) == "15m"
    assert format_duration(90) == "90s"


def test_site_config_expands_estate_and_rejects_duplicates(tmp_path: Path) -> None:
    path = tmp_path / "site.yaml"
    path.write_text(
        "site_id: s1\nestate: {buildings: 2, gates: 1}\n"
        "devices: [{id: extra-pump, kind: water_pump}]\n"
    )
    site = load_site(path)
    ids = [d.id for d in site.all_devices()]
    assert "b2-elev-2" in ids and "gate-1" in ids and "extra-pump" in ids
    path.write_text("site_id: s1\ndevices: [{id: a, kind: elevator}, {id: a, kind: camera}]\n")
    with pytest.raises(SiteConfigError, match="duplicate device ids: a"):
        load_site(path)
    path.write_text("site_id: s1\ndevices: [{id: a, kind: toaster}]\n")
    with pytest.raises(SiteConfigError, match=r"devices\.0\.kind"):
        load_site(path)


def test_estate_device_params_reach_generated_devices_and_name_unknown_ids(
    tmp_path: Path,
) -> None:
    path = tmp_path / "site.yaml"
    path.write_text(
        "site_id: s1\nestate:\n  buildings: 2\n  device_params:\n"
        "    b2-pump-1: {duty: continuous}\n    b1-meter-1: {tariff: night}\n"
    )
    devices = {d.id: d for d in load_site(path).all_devices()}
    assert devices["b2-pump-1"].params == {"duty": "continuous"}
    assert devices["b1-pump-1"].params == {}
    # merged over the layout's own params (the first meter of a building is common-area)
    assert devices["b1-meter-1"].params == {"common_area": True, "tariff": "night"}
    path.write_text("site_id: s1\nestate: {buildings: 1, device_params: {b3-pump-1: {}}}\n")
    with pytest.raises(SiteConfigError, match="b3-pump-1"):
        load_site(path)
    path.write_text("site_id: s1\nestate: {buildings: 1, device_params: {b1-pump-1: 7}}\n")
    with pytest.raises(SiteConfigError, match=r"estate\.device_params\.b1-pump-1"):
        load_site(path)
