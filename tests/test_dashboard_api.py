"""The dashboard's data API (minute summaries, readings, energy, estate, alarms, evidence)
and the static files, through the HTTP API of an in-process app on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from cloud.bootstrap import provision_site
from cloud.dashboard import install
from cloud.telemetry_api import HourlyPower, energy_by_building, valid_evidence_name
from device_profiles.site import DeviceConfig
from tests.servers_cloud import T0, CloudHarness, event, harness

M0 = (T0 // 60) * 60
"""A minute start near the harness clock."""
JPEG = b"\xff\xd8\xff\xe0" + b"\x00" * 64 + b"\xff\xd9"


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.integration)])
def cloud(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[CloudHarness]:
    url = (f"sqlite:///{tmp_path}/cloud.db" if request.param == "sqlite"
           else request.getfixturevalue("pg_url"))
    with harness(url) as h:
        install(h.client.app)  # type: ignore[arg-type]
        provision_site(h.settings, "s1", "Site one", [
            DeviceConfig(id="b1-meter-1", kind="smart_meter", building="B1", floor=1),
            DeviceConfig(id="b2-meter-1", kind="smart_meter", building="B2", floor=1),
            DeviceConfig(id="b1-cam-1", kind="camera", building="B1"),
            DeviceConfig(id="gate-1", kind="access_gate", building="estate", floor=0),
        ])
        yield h


def item(device_id: str, ts: float, values: dict[str, float], **extra: Any) -> dict[str, Any]:
    return {"device_id": device_id, "kind": extra.pop("kind", "water_pump"),
            "building": "B1", "ts": ts, "values": values, **extra}


def post(cloud: CloudHarness, items: list[dict[str, Any]], site: str = "s1") -> Any:
    return cloud.client.post("/api/v1/telemetry", headers=cloud.gateway(site),
                             json={"site_id": site, "items": items})


# ----------------------------------------------------------------------------- telemetry


def test_summaries_are_stored_and_read_back_with_the_profile_limits(cloud: CloudHarness) -> None:
    minute = M0 - 600
    reply = post(cloud, [
        item("b1-pump-1", minute + 12, {"accel1_rms": 2.0}, max={"accel1_rms": 3.5},
             count=6),
        item("b1-pump-1", minute + 60, {"accel1_rms": 2.4}),
    ])
    assert reply.status_code == 200, reply.text
    assert reply.json() == {"stored": 2, "rejected": []}
    viewer = cloud.user("vic", "viewer", ["s1"])
    body = cloud.client.get("/api/v1/devices/b1-pump-1/readings", headers=viewer,
                            params={"since": minute - 60}).json()
    assert [p["ts"] for p in body["points"]] == [minute, minute + 60]
    assert body["points"][0]["mean"] == {"accel1_rms": 2.0}
    assert body["points"][0]["max"] == {"accel1_rms": 3.5}
    assert body["step"] == 60
    assert body["fields"]["accel1_rms"]["unit"] == "g"
    assert body["fields"]["accel1_rms"]["warn_high"] == 1.0


def test_a_minute_sent_twice_is_merged_by_count_not_doubled(cloud: CloudHarness) -> None:
    minute = M0 - 120
    post(cloud, [item("b1-pump-1", minute, {"accel1_rms": 1.0}, count=3)])
    post(cloud, [item("b1-pump-1", minute + 30, {"accel1_rms": 3.0},
                      max={"accel1_rms": 4.0}, count=1)])
    viewer = cloud.user("vic", "viewer", ["s1"])
    points = cloud.client.get("/api/v1/devices/b1-pump-1/readings", headers=viewer,
                              params={"since": minute - 1}).json()["points"]
    assert len(points) == 1
    assert points[0]["mean"]["accel1_rms"] == pytest.approx(1.5)
    assert points[0]["max"]["accel1_rms"] == 4.0


def test_bad_items_are_rejected_with_reasons_and_the_rest_stored(cloud: CloudHarness) -> None:
    reply = post(cloud, [
        item("no-such-device", T0, {"x": 1.0}),
        item("b1-pump-1", T0 + 3 * 86400, {"accel1_rms": 1.0}),
        item("b1-pump-1", T0, {}),
        item("b1-pump-1", T0, {"accel1_rms": 1.0}),
    ]).json()
    assert reply["stored"] == 1
    assert [(r["index"], r["reason"]) for r in reply["rejected"]] == [
        (0, "unknown device for this site"),
        (1, "timestamp more than a day in the future"),
        (2, "no values"),
    ]


def test_non_finite_numbers_are_counted_rejections_and_unknown_keys_refused(
    cloud: CloudHarness,
) -> None:
    body = ('{"site_id": "s1", "items": ['
            '{"device_id": "b1-pump-1", "kind": "water_pump", "ts": 1750000000,'
            ' "values": {"accel1_rms": NaN}},'
            '{"device_id": "b1-pump-1", "kind": "water_pump", "ts": Infinity,'
            ' "values": {"accel1_rms": 1}},'
            '{"device_id": "b1-pump-1", "kind": "water_pump", "ts": 1750000000,'
            ' "values": {"accel1_rms": 1}, "max": {"accel1_rms": 1e999}}]}')
    reply = cloud.client.post("/api/v1/telemetry", content=body, headers={
        **cloud.gateway("s1"), "Content-Type": "application/json"})
    assert reply.status_code == 200, reply.text
    assert reply.json()["stored"] == 0
    assert [r["reason"] for r in reply.json()["rejected"]] == [
        "value not a finite number", "bad timestamp", "value not a finite number"]
    reply = cloud.client.post("/api/v1/telemetry", headers=cloud.gateway("s1"), json={
        "site_id": "s1", "items": [], "extra": 1})
    assert reply.status_code == 422


def test_a_gateway_cannot_post_for_another_site(cloud: CloudHarness) -> None:
    reply = post(cloud, [item("b1-elev-1", T0, {"x": 1.0})], site="s1")
    assert reply.status_code == 200
    cross = cloud.client.post("/api/v1/telemetry", headers=cloud.gateway("s1"),
                              json={"site_id": "s2", "items": []})
    assert cross.status_code == 403
    anonymous = cloud.client.post("/api/v1/telemetry", json={"site_id": "s1", "items": []})
    assert anonymous.status_code == 401


def test_old_minutes_are_pruned_after_the_retention(
    cloud: CloudHarness, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GATEHOUSE_TELEMETRY_RETENTION", "7200")
    post(cloud, [item("b1-pump-1", M0 - 3 * 3600, {"accel1_rms": 1.0}),
                 item("b1-pump-1", M0 - 600, {"accel1_rms": 2.0})])
    viewer = cloud.user("vic", "viewer", ["s1"])
    points = cloud.client.get("/api/v1/devices/b1-pump-1/readings", headers=viewer,
                              params={"since": T0 - 86400}).json()["points"]
    assert [p["ts"] for p in points] == [M0 - 600]


def test_a_long_range_is_downsampled_to_a_bounded_number_of_points(cloud: CloudHarness) -> None:
    start = T0 - 3 * 86400
    items = [item("b1-pump-1", start + 60 * i, {"accel1_rms": float(i % 10)})
             for i in range(0, 3 * 1440, 3)]
    assert post(cloud, items).json()["stored"] == len(items)
    viewer = cloud.user("vic", "viewer", ["s1"])
    body = cloud.client.get("/api/v1/devices/b1-pump-1/readings", headers=viewer,
                            params={"since": start}).json()
    assert body["step"] > 60
    assert 0 < len(body["points"]) <= 1500


def test_readings_of_another_sites_device_are_not_found(cloud: CloudHarness) -> None:
    only_s2 = cloud.user("sam", "admin", ["s2"])
    reply = cloud.client.get("/api/v1/devices/b1-pump-1/readings", headers=only_s2)
    assert reply.status_code == 404


# ----------------------------------------------------------------------------- energy


def test_energy_baseline_is_the_same_hour_of_previous_weeks() -> None:
    h = 500_000
    rows = [
        HourlyPower("B1", "m1", h - 168, 2.0, 60), HourlyPower("B1", "m1", h - 336, 4.0, 60),
        HourlyPower("B1", "m1", h, 9.0, 60), HourlyPower("B1", "m2", h, 1.0, 30),
    ]
    [b1] = energy_by_building(rows, h, h)
    [hour] = b1.hours
    assert (hour.kwh, hour.baseline_kwh, hour.baseline) == (10.0, 3.0, "week")
    assert hour.spike is True
    assert hour.coverage == pytest.approx(90 / 120)
    assert b1.meters == 2


def test_energy_baseline_falls_back_to_days_then_history_then_none() -> None:
    h = 500_000
    day = energy_by_building([HourlyPower("B", "m", h - 24, 2.0, 60),
                              HourlyPower("B", "m", h - 48, 4.0, 60),
                              HourlyPower("B", "m", h, 3.0, 60)], h, h)[0].hours[0]
    assert (day.baseline_kwh, day.baseline, day.spike) == (3.0, "day", False)
    young = energy_by_building([HourlyPower("B", "m", h - 2, 1.0, 60),
                                HourlyPower("B", "m", h - 1, 3.0, 60),
                                HourlyPower("B", "m", h, 3.0, 60)], h - 2, h)[0].hours
    assert [(x.baseline_kwh, x.baseline) for x in young] == [
        (None, None), (1.0, "history"), (2.0, "history")]


def test_energy_endpoint_sums_meters_per_building_per_hour(cloud: CloudHarness) -> None:
    hour_start = (T0 // 3600) * 3600
    items = []
    for minute in range(0, 60, 10):
        for back in (0, 7 * 86400):
            ts = hour_start - 3600 - back + minute * 60
            power = 6.0 if back == 0 else 2.0
            items.append(item("b1-meter-1", ts, {"power_kw": power}, kind="smart_meter"))
            items.append(item("b2-meter-1", ts, {"power_kw": 1.0}, kind="smart_meter",
                              building="B2"))
    assert post(cloud, items).json()["stored"] == len(items)
    cloud.send("s1", [event(device_id="b1-meter-1", kind="smart_meter",
                            type_="meter.energy_spike", episode=hour_start - 1800)])
    viewer = cloud.user("vic", "viewer", ["s1"])
    body = cloud.client.get("/api/v1/energy", headers=viewer,
                            params={"site_id": "s1", "hours": 3}).json()
    by_building = {b["building"]: b for b in body["buildings"]}
    b1_last = next(x for x in by_building["B1"]["hours"] if x["ts"] == hour_start - 3600)
    assert (b1_last["kwh"], b1_last["baseline_kwh"], b1_last["spike"]) == (6.0, 2.0, True)
    assert by_building["B2"]["kwh_total"] == 1.0
    assert [e["device_id"] for e in body["spike_events"]] == ["b1-meter-1"]
    assert body["spike_events"][0]["building"] == "B1"
    only_s2 = cloud.user("sam", "admin", ["s2"])
    assert cloud.client.get("/api/v1/energy", headers=only_s2,
                            params={"site_id": "s1"}).status_code == 404


# ----------------------------------------------------------------------------- estate


def test_estate_shows_floors_top_down_and_device_states_from_open_orders(
    cloud: CloudHarness,
) -> None:
    cloud.send("s1", [event(type_="elevator.entrapment", severity="critical"),
                      event(device_id="b1-pump-1", kind="water_pump", type_="pump.offline")])
    post(cloud, [item("b1-meter-1", T0 - 60, {"power_kw": 1.0}, kind="smart_meter")])
    viewer = cloud.user("vic", "viewer", ["s1"])
    body = cloud.client.get("/api/v1/estate", headers=viewer, params={"site_id": "s1"}).json()
    b1 = next(b for b in body["buildings"] if b["building"] == "B1")
    assert [f["floor"] for f in b1["floors"]] == [1, -1, None]
    states = {d["device_id"]: d["state"] for b in body["buildings"]
              for f in b["floors"] for d in f["devices"]}
    assert states["b1-elev-1"] == "alarm"
    assert states["b1-pump-1"] == "offline"
    assert states["b1-meter-1"] == "ok"
    assert states["b2-meter-1"] == "no_data"
    assert body["counts"]["alarm"] == 1
    only_s2 = cloud.user("sam", "admin", ["s2"])
    assert cloud.client.get("/api/v1/estate", headers=only_s2,
                            params={"site_id": "s1"}).status_code == 404


# ----------------------------------------------------------------------------- alarms, evidence


def thrown(snapshot: str) -> Any:
    ev = event(device_id="b1-cam-1", kind="camera", type_="camera.object_thrown",
               severity="critical")
    return ev.model_copy(update={"evidence": {"floor": 7, "window_column": 3, "x": 412.5,
                                              "y": None, "snapshot": snapshot,
                                              "trajectory": [[1, 412.5, 80.0]]}})


def test_thrown_object_alarm_carries_floor_position_and_its_uploaded_image(
    cloud: CloudHarness,
) -> None:
    cloud.send("s1", [thrown("b1-cam-1/1750000000.jpg")])
    security = cloud.user("sec", "security", ["s1"])
    [before] = cloud.client.get("/api/v1/alarms", headers=security).json()
    assert (before["floor"], before["position"]) == (7, {"window_column": 3, "x": 412.5})
    assert before["snapshot"] == "b1-cam-1/1750000000.jpg"
    assert before["snapshot_url"] is None
    assert before["work_order_state"] == "open"
    up = cloud.client.post("/api/v1/evidence", headers={**cloud.gateway("s1"),
                           "Content-Type": "image/jpeg"},
                           params={"name": "b1-cam-1/1750000000.jpg"}, content=JPEG)
    assert up.status_code == 201, up.text
    [after] = cloud.client.get("/api/v1/alarms", headers=security).json()
    assert after["snapshot_url"] == "/api/v1/evidence/s1/b1-cam-1/1750000000.jpg"
    token = security["Authorization"].split()[1]
    image = cloud.client.get(after["snapshot_url"], params={"access_token": token})
    assert image.status_code == 200
    assert image.headers["content-type"] == "image/jpeg"
    assert image.content == JPEG
    only_s2 = cloud.user("sam", "admin", ["s2"])
    assert cloud.client.get(after["snapshot_url"], headers=only_s2).status_code == 404
    assert cloud.client.get("/api/v1/alarms", headers=only_s2).json() == []
    assert cloud.client.get(after["snapshot_url"]).status_code == 401


@pytest.mark.parametrize(("name", "body", "code"), [
    ("../../etc/passwd", JPEG, 422),
    ("a//b.jpg", JPEG, 422),
    ("ok.jpg", b"GIF89a....", 415),
    ("big.jpg", b"\xff\xd8\xff" + b"\x00" * (4 * 1024 * 1024), 413),
])
def test_bad_evidence_uploads_are_refused_clearly(
    cloud: CloudHarness, name: str, body: bytes, code: int
) -> None:
    reply = cloud.client.post("/api/v1/evidence", headers=cloud.gateway("s1"),
                              params={"name": name}, content=body)
    assert reply.status_code == code, reply.text


def test_evidence_names_are_relative_safe_paths() -> None:
    assert valid_evidence_name("b1-cam-1/2026-11-21T09_30_00.jpg")
    for bad in ("", "/abs.jpg", "a/../b.jpg", "a/./b", "sp ace.jpg", "x" * 201, "a\\b.jpg"):
        assert not valid_evidence_name(bad), bad


# ----------------------------------------------------------------------------- static


def test_the_shell_and_its_assets_are_served_and_nothing_outside(cloud: CloudHarness) -> None:
    shell = cloud.client.get("/")
    assert shell.status_code == 200
    assert "text/html" in shell.headers["content-type"]
    assert "script-src 'self'" in shell.headers["content-security-policy"]
    assert '<script type="module" src="/ui/app.js">' in shell.text
    js = cloud.client.get("/ui/views/board.js")
    assert js.status_code == 200 and "javascript" in js.headers["content-type"]
    for bad in ("/ui/../telemetry_api.py", "/ui/%2e%2e/telemetry_api.py", "/ui/nope.js",
                "/ui/views"):
        assert cloud.client.get(bad).status_code == 404, bad


def test_the_migration_creates_exactly_the_dashboard_tables_of_the_models(tmp_path: Path) -> None:
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext
    from sqlalchemy import create_engine

    from cloud.db import migrate
    from cloud.models import Base

    engine = create_engine(f"sqlite:///{tmp_path}/m.db")
    migrate(engine)
    mine = {"telemetry_minutes", "evidence_images"}
    with engine.connect() as conn:
        diffs = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    assert mine <= set(Base.metadata.tables)
    assert [d for d in diffs if mine & set(_tables_in(d))] == []
    engine.dispose()


def _tables_in(diff: Any) -> list[str]:
    out: list[str] = []
    for part in diff if isinstance(diff, list) else [diff]:
        for obj in part[1:] if isinstance(part, tuple) else []:
            name = getattr(obj, "name", None)
            table = getattr(obj, "table", None)
            if isinstance(obj, str):
                out.append(obj)
            elif table is not None:
                out.append(str(table.name))
            elif name is not None:
                out.append(str(name))
    return out


def test_install_is_idempotent(cloud: CloudHarness) -> None:
    app = cloud.client.app
    before = len(app.routes)  # type: ignore[attr-defined]
    install(app)  # type: ignore[arg-type]
    assert len(app.routes) == before  # type: ignore[attr-defined]
