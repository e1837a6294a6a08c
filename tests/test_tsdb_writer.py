"""Unit tests of the telemetry writer's line protocol, chunking and failure contract.

The HTTP side is replaced by a recording sink passed through the constructor; the real
database round trip is in ``test_tsdb_roundtrip.py``.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from device_profiles.loader import load_profiles
from device_profiles.messages import Event, Forecast, Reading
from device_profiles.site import DeviceConfig, SiteConfig, TsdbConfig
from edge.outputs.tsdb import (
    InfluxTelemetryWriter,
    TsdbBodyTooLarge,
    TsdbRejected,
    TsdbUnavailable,
    escape_key,
    resolve_token,
)

PROFILES = load_profiles()


class RecordingSink:
    """Keeps every body; ``fail(n_call)`` may return an exception to raise for that call."""

    def __init__(self, fail: Callable[[int, int], Exception | None] | None = None) -> None:
        self.bodies: list[list[str]] = []
        self.calls = 0
        self.closed = False
        self._fail = fail

    def send(self, body: bytes, lines: int) -> None:
        self.calls += 1
        if self._fail is not None:
            exc = self._fail(self.calls, lines)
            if exc is not None:
                raise exc
        decoded = body.decode().split("\n")
        assert len(decoded) == lines
        self.bodies.append(decoded)

    def close(self) -> None:
        self.closed = True

    @property
    def lines(self) -> list[str]:
        return [line for body in self.bodies for line in body]


def site(**tsdb: object) -> SiteConfig:
    return SiteConfig(
        site_id="estate-a",
        tsdb=TsdbConfig.model_validate({"url": "http://tsdb.invalid:8428", **tsdb}),
        devices=[
            DeviceConfig(id="lift-1", kind="elevator", building="Tower 1", floor=3),
            DeviceConfig(id="meter-7", kind="smart_meter", building="B,2", floor=7),
            DeviceConfig(id="pump-1", kind="water_pump", building="B1"),
        ],
    )


def writer(sink: RecordingSink, **tsdb: object) -> InfluxTelemetryWriter:
    s = site(**tsdb)
    assert s.tsdb is not None
    return InfluxTelemetryWriter(s.tsdb, s, PROFILES, sink=sink)


def meter(ts: float, kw: float = 1.5) -> Reading:
    return Reading("estate-a", "smart_meter", "meter-7", ts, {"power_kw": kw, "energy_kwh": 10.0})


def test_one_measurement_per_kind_with_site_building_device_and_floor_tags() -> None:
    sink = RecordingSink()
    w = writer(sink)
    w.write([meter(1_700_000_000.25)])
    assert sink.lines == [
        "smart_meter,building=B\\,2,device=meter-7,floor=7,site=estate-a "
        "power_kw=1.5,energy_kwh=10.0 1700000000250"
    ]


def test_field_types_follow_the_profile_and_an_elevator_floor_stays_a_field() -> None:
    sink = RecordingSink()
    w = writer(sink)
    w.write(
        [
            Reading(
                "estate-a",
                "elevator",
                "lift-1",
                10.0,
                {"floor": 4.0, "moving": 1.0, "door_open": 0.0, "load_kg": 75.5, "trips": 2.0},
            )
        ]
    )
    assert sink.lines == [
        "elevator,building=Tower\\ 1,device=lift-1,site=estate-a "
        "floor=4i,moving=true,door_open=false,load_kg=75.5,trips=2i 10000"
    ]


def test_unknown_fields_and_non_finite_values_are_dropped_and_counted() -> None:
    sink = RecordingSink()
    w = writer(sink)
    w.write(
        [
            Reading(
                "estate-a",
                "smart_meter",
                "meter-7",
                5.0,
                {"power_kw": float("nan"), "energy_kwh": 3.0, "bogus": 1.0},
            )
        ]
    )
    assert sink.lines == [
        "smart_meter,building=B\\,2,device=meter-7,floor=7,site=estate-a energy_kwh=3.0 5000"
    ]
    assert w.stats()["fields_dropped_unknown"] == 1
    assert w.stats()["fields_dropped_not_finite"] == 1


def test_a_value_that_is_not_a_number_is_dropped_and_counted() -> None:
    sink = RecordingSink()
    w = writer(sink)
    values: dict[str, Any] = {"power_kw": "high", "energy_kwh": True}
    w.write([Reading("estate-a", "smart_meter", "meter-7", 5.0, values)])
    assert sink.lines == [
        "smart_meter,building=B\\,2,device=meter-7,floor=7,site=estate-a energy_kwh=1.0 5000"
    ]
    assert w.stats()["fields_dropped_not_finite"] == 1


def test_bad_readings_are_counted_rejections_not_crashes() -> None:
    sink = RecordingSink()
    w = writer(sink)
    w.write(
        [
            Reading("estate-a", "toaster", "t-1", 1.0, {"heat": 1.0}),
            Reading("estate-a", "smart_meter", "meter-7", float("inf"), {"power_kw": 1.0}),
            Reading("estate-a", "smart_meter", "meter-7", 1.0, {"bogus": 1.0}),
            meter(2.0),
        ]
    )
    assert len(sink.lines) == 1
    stats = w.stats()
    assert stats["rejected_unknown_kind"] == 1
    assert stats["rejected_bad_timestamp"] == 1
    assert stats["rejected_no_fields"] == 1
    assert stats["lines_written"] == 1


def test_a_device_missing_from_the_site_file_is_written_without_building() -> None:
    sink = RecordingSink()
    w = writer(sink)
    w.write([Reading("estate-a", "water_pump", "pump-99", 1.0, {"current_a": 2.0})])
    assert sink.lines == ["water_pump,device=pump-99,site=estate-a current_a=2.0 1000"]
    assert w.stats()["unknown_device"] == 1


def test_readings_go_out_in_chunks_of_batch_size() -> None:
    sink = RecordingSink()
    w = writer(sink, batch_size=3)
    w.write([meter(float(i)) for i in range(7)])
    assert [len(b) for b in sink.bodies] == [3, 3, 1]
    assert w.stats()["requests"] == 3
    assert w.stats()["lines_written"] == 7


def test_an_outage_raises_with_exactly_the_readings_not_stored() -> None:
    sink = RecordingSink(fail=lambda call, _: TsdbUnavailable("down") if call == 2 else None)
    w = writer(sink, batch_size=3)
    readings = [meter(float(i)) for i in range(7)]
    with pytest.raises(TsdbUnavailable) as info:
        w.write(readings)
    assert info.value.unwritten == tuple(readings[3:])
    assert len(sink.lines) == 3
    assert w.stats()["write_failures"] == 1
    # The runner replays the spool once the database is back: nothing lost, nothing twice.
    w.write(list(info.value.unwritten))
    assert [line.rsplit(" ", 1)[1] for line in sink.lines] == [str(i * 1000) for i in range(7)]


def test_unwritten_skips_readings_that_were_rejected_before_sending() -> None:
    sink = RecordingSink(fail=lambda call, _: TsdbUnavailable("down"))
    w = writer(sink, batch_size=2)
    good = [meter(1.0), meter(2.0)]
    with pytest.raises(TsdbUnavailable) as info:
        w.write([Reading("estate-a", "toaster", "t", 1.0, {"x": 1.0}), *good])
    assert info.value.unwritten == tuple(good)


def test_a_refused_chunk_is_counted_and_dropped_so_it_cannot_poison_the_spool() -> None:
    sink = RecordingSink(fail=lambda call, _: TsdbRejected("bad") if call == 1 else None)
    w = writer(sink, batch_size=2)
    w.write([meter(float(i)) for i in range(4)])
    assert len(sink.lines) == 2
    assert w.stats()["lines_rejected_by_database"] == 2


def test_a_body_too_large_is_split_until_it_fits() -> None:
    sink = RecordingSink(fail=lambda _, lines: TsdbBodyTooLarge("413") if lines > 2 else None)
    w = writer(sink, batch_size=8)
    w.write([meter(float(i)) for i in range(8)])
    assert [len(b) for b in sink.bodies] == [2, 2, 2, 2]
    assert w.stats()["lines_written"] == 8


def test_events_land_in_edge_events_with_forecast_and_score() -> None:
    sink = RecordingSink()
    w = writer(sink)
    event = Event(
        event_id="abcdef0123456789",
        site_id="estate-a",
        gateway_id="gw-1",
        device_id="pump-1",
        kind="water_pump",
        type="pump.bearing_wear",
        severity="warning",
        state="raised",
        ts=100.0,
        evidence={"score": 0.7, "threshold": 0.5, "flag": True},
        forecast=Forecast(field="accel1_rms", limit=0.5, hours_to_limit=36.5),
    )
    w.write_events([event])
    assert sink.lines == [
        "edge_events,building=B1,device=pump-1,kind=water_pump,severity=warning,"
        "site=estate-a,state=raised,type=pump.bearing_wear "
        "count=1i,score=0.7,threshold=0.5,forecast_hours=36.5 100000"
    ]


def test_escaping_covers_line_protocol_specials() -> None:
    assert escape_key("a b,c=d\\e\nf") == "a\\ b\\,c\\=d\\\\e\\ f"


def test_from_site_builds_nothing_without_a_tsdb_section() -> None:
    assert InfluxTelemetryWriter.from_site(SiteConfig(site_id="x"), PROFILES) is None


def test_close_releases_the_sink() -> None:
    sink = RecordingSink()
    with writer(sink):
        pass
    assert sink.closed


def test_token_comes_from_file_then_config_then_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GATEHOUSE_TSDB_TOKEN", "from-env")
    assert resolve_token(TsdbConfig(url="http://x")) == "from-env"
    assert resolve_token(TsdbConfig(url="http://x", token="inline")) == "inline"
    token_file = tmp_path / "token"
    token_file.write_text("from-file\n")
    config = TsdbConfig(url="http://x", token="inline", token_file=str(token_file))
    assert resolve_token(config) == "from-file"
