"""Telemetry round trip through a real VictoriaMetrics: readings -> writer -> database -> back.

Also the outage contract as far as the writer owns it: with the database down a write raises
:class:`TsdbUnavailable` carrying the readings, and replaying them once it is back stores every
reading exactly once.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from device_profiles.loader import load_profiles
from device_profiles.messages import Event, Forecast, Reading
from device_profiles.site import DeviceConfig, SiteConfig, TsdbConfig
from edge.outputs.tsdb import InfluxTelemetryWriter, TsdbUnavailable
from tests.servers_tsdb import Series, VictoriaMetrics, victoria_metrics

pytestmark = pytest.mark.integration
PROFILES = load_profiles()


@pytest.fixture(scope="module")
def vm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[VictoriaMetrics]:
    with victoria_metrics(tmp_path_factory.mktemp("vm-roundtrip")) as server:
        yield server


def make_site(url: str) -> SiteConfig:
    return SiteConfig(
        site_id=f"rt-{uuid.uuid4().hex[:10]}",
        tsdb=TsdbConfig(url=url, batch_size=50),
        devices=[
            DeviceConfig(id="lift-1", kind="elevator", building="Tower A"),
            DeviceConfig(id="pump-1", kind="water_pump", building="B1", floor=-1),
            DeviceConfig(id="meter-1", kind="smart_meter", building="B1", floor=4),
            DeviceConfig(id="gate-1", kind="access_gate", building="estate", floor=0),
        ],
    )


def build_writer(site: SiteConfig, retries: int = 2) -> InfluxTelemetryWriter:
    assert site.tsdb is not None
    return InfluxTelemetryWriter(site.tsdb, site, PROFILES, timeout_s=5, retries=retries)


def by_name(series: list[Series]) -> dict[str, Series]:
    return {s["metric"]["__name__"]: s for s in series}


def test_readings_of_every_kind_come_back_with_their_values_and_tags(vm: VictoriaMetrics) -> None:
    site = make_site(vm.url)
    t0 = round(time.time()) - 600.0
    readings = (
        [
            Reading(
                site.site_id,
                "elevator",
                "lift-1",
                t0 + i,
                {
                    "floor": float(i % 5),
                    "at_landing": 1.0,
                    "moving": float(i % 2),
                    "door_open": 0.0,
                    "load_kg": 70.0 + i,
                    "vibration_rms": 0.125 * i,
                },
            )
            for i in range(60)
        ]
        + [
            Reading(
                site.site_id,
                "water_pump",
                "pump-1",
                t0 + i,
                {
                    "accel1_rms": 0.2 + i / 1000,
                    "accel2_rms": 0.25,
                    "current_a": 3.5,
                    "pressure_bar": 2.75,
                },
            )
            for i in range(60)
        ]
        + [
            Reading(
                site.site_id,
                "smart_meter",
                "meter-1",
                t0 + 60 * i,
                {"power_kw": 1.0 + i, "energy_kwh": 1000.0 + i},
            )
            for i in range(5)
        ]
        + [
            Reading(
                site.site_id,
                "access_gate",
                "gate-1",
                t0 + 5 * i,
                {"door_open": 1.0, "passages": 3.0, "grants": 2.0, "denials": 1.0},
            )
            for i in range(4)
        ]
    )
    with build_writer(site) as writer:
        writer.write(readings)
        assert writer.stats()["lines_written"] == len(readings)
        assert writer.stats()["requests"] == 3

    got = by_name(
        vm.wait_for(
            f'{{site="{site.site_id}"}}', lambda s: sum(len(x["values"]) for x in s) >= 60 * 6 + 10
        )
    )
    vib = got["elevator_vibration_rms"]
    assert vib["metric"] == {
        "__name__": "elevator_vibration_rms",
        "site": site.site_id,
        "building": "Tower A",
        "device": "lift-1",
    }
    assert vib["values"] == [0.125 * i for i in range(60)]
    assert vib["timestamps"] == [int((t0 + i) * 1000) for i in range(60)]
    assert got["elevator_moving"]["values"] == [float(i % 2) for i in range(60)]
    assert got["elevator_floor"]["values"] == [float(i % 5) for i in range(60)]
    pump = got["water_pump_accel1_rms"]
    assert pump["metric"]["floor"] == "-1"
    assert pump["values"] == pytest.approx([0.2 + i / 1000 for i in range(60)])
    power = got["smart_meter_power_kw"]
    assert power["metric"] == {
        "__name__": "smart_meter_power_kw",
        "site": site.site_id,
        "building": "B1",
        "device": "meter-1",
        "floor": "4",
    }
    assert power["values"] == [1.0 + i for i in range(5)]
    assert got["access_gate_denials"]["values"] == [1.0] * 4
    assert "elevator_speed_mps" not in got


def test_events_are_queryable_by_type_with_their_forecast(vm: VictoriaMetrics) -> None:
    site = make_site(vm.url)
    ts = round(time.time()) - 120.0
    event = Event(
        event_id="ev-0123456789",
        site_id=site.site_id,
        gateway_id="gw-1",
        device_id="pump-1",
        kind="water_pump",
        type="pump.bearing_wear",
        severity="warning",
        state="raised",
        ts=ts,
        evidence={"score": 0.61},
        forecast=Forecast(field="accel1_rms", limit=0.5, hours_to_limit=42.0),
    )
    with build_writer(site) as writer:
        writer.write_events([event])
    got = by_name(vm.wait_for(f'{{site="{site.site_id}"}}', lambda s: len(s) == 3))
    forecast = got["edge_events_forecast_hours"]
    assert forecast["values"] == [42.0]
    assert forecast["metric"]["type"] == "pump.bearing_wear"
    assert forecast["metric"]["building"] == "B1"
    assert got["edge_events_count"]["values"] == [1.0]
    assert got["edge_events_score"]["values"] == [0.61]


def test_database_down_then_back_loses_nothing_and_duplicates_nothing(tmp_path: Path) -> None:
    server = VictoriaMetrics(workdir=tmp_path / "vm")
    server.start()
    try:
        site = make_site(server.url)
        t0 = round(time.time()) - 300.0
        burst = [
            Reading(site.site_id, "smart_meter", "meter-1", t0 + i, {"power_kw": float(i)})
            for i in range(120)
        ]
        with build_writer(site, retries=0) as writer:
            writer.write(burst[:40])
            server.stop()
            with pytest.raises(TsdbUnavailable) as info:
                writer.write(burst[40:])
            spool = list(info.value.unwritten)
            assert spool == burst[40:]
            server.start()
            writer.write(spool)
            assert writer.stats()["write_failures"] == 1
        (series,) = server.wait_for(
            f'smart_meter_power_kw{{site="{site.site_id}"}}',
            lambda s: bool(s) and len(s[0]["values"]) >= 120,
        )
        assert series["values"] == [float(i) for i in range(120)]
    finally:
        server.stop()


def test_a_replayed_burst_leaves_one_sample_per_timestamp_with_dedup(tmp_path: Path) -> None:
    """The deployment advice in docs/telemetry.md: ``-dedup.minScrapeInterval=1ms``."""
    with victoria_metrics(tmp_path / "vm", ("-dedup.minScrapeInterval=1ms",)) as server:
        site = make_site(server.url)
        t0 = round(time.time()) - 300.0
        burst = [
            Reading(site.site_id, "smart_meter", "meter-1", t0 + i, {"power_kw": float(i)})
            for i in range(30)
        ]
        with build_writer(site) as writer:
            writer.write(burst)
            writer.write(burst)  # a runner that spooled a burst the database had stored
        (series,) = server.wait_for(
            f'smart_meter_power_kw{{site="{site.site_id}"}}',
            lambda s: bool(s) and len(s[0]["values"]) >= 30,
        )
        assert series["values"] == [float(i) for i in range(30)]
