"""The device ledger: CSV import and export, maintenance visits in the device's timeline, and
the schema that migrations build matching the models."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine

import cloud.telemetry_models
from cloud.models import Base
from tests.servers_cloud import CloudHarness, event, harness


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.integration)])
def cloud(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[CloudHarness]:
    url = (f"sqlite:///{tmp_path}/cloud.db" if request.param == "sqlite"
           else request.getfixturevalue("pg_url"))
    with harness(url) as h:
        yield h


CSV = (
    "device_id,kind,building,unit,floor,vendor,model,serial,install_date,warranty_end\n"
    "b1-elev-1,elevator,B1,,0,Otis,Gen2,OT-1,2019-05-01,2029-05-01\n"
    "b2-elev-1,elevator,B2,,0,Otis,Gen2,OT-2,2020-01-15,\n"
)


def test_csv_import_creates_and_updates_and_export_round_trips(cloud: CloudHarness) -> None:
    boss = cloud.user("dora", "dispatcher", ["s1"])
    reply = cloud.client.post("/api/v1/devices/import?site_id=s1", headers=boss,
                              content=CSV.encode(), )
    assert reply.status_code == 200, reply.text
    assert reply.json() == {"created": 1, "updated": 1}
    exported = cloud.client.get("/api/v1/devices.csv?site_id=s1", headers=boss)
    assert exported.headers["content-type"].startswith("text/csv")
    lines = exported.text.splitlines()
    assert lines[0].startswith("site_id,device_id,kind")
    assert "s1,b1-elev-1,elevator,B1,,0,Otis,Gen2,OT-1,2019-05-01,2029-05-01" in lines
    assert "s1,b2-elev-1,elevator,B2,,0,Otis,Gen2,OT-2,2020-01-15," in lines
    assert cloud.client.post("/api/v1/devices/import", headers=boss,
                             content=exported.content).json() == {"created": 0, "updated": 3}


def test_a_bad_csv_imports_nothing_and_names_the_lines(cloud: CloudHarness) -> None:
    boss = cloud.user("dora", "dispatcher", ["s1"])
    bad = CSV + (
        "b3-x,toaster,B3,,,,,,,\nb4-x,elevator,B4,,ten,,,,,\nb5-x,camera,B5,,,,,,05/01/2020,\n"
    )
    reply = cloud.client.post("/api/v1/devices/import?site_id=s1", headers=boss,
                              content=bad.encode())
    assert reply.status_code == 422
    assert [e["line"] for e in reply.json()["detail"]] == [4, 5, 6]
    devices = cloud.client.get("/api/v1/devices?site_id=s1", headers=boss).json()
    assert {d["device_id"] for d in devices} == {"b1-elev-1", "b1-pump-1"}
    assert devices[0]["vendor"] == "Kone"


def test_import_into_another_site_is_refused(cloud: CloudHarness) -> None:
    boss = cloud.user("dora", "dispatcher", ["s1"])
    viewer = cloud.user("val", "viewer", ["s1"])
    reply = cloud.client.post("/api/v1/devices/import?site_id=s2", headers=boss,
                              content=CSV.encode())
    assert reply.status_code == 422
    assert cloud.client.post("/api/v1/devices/import?site_id=s1", headers=viewer,
                             content=CSV.encode()).status_code == 403


def test_visits_and_parts_join_the_device_timeline(cloud: CloudHarness) -> None:
    tech = cloud.user("tess", "technician", ["s1"])
    cloud.send("s1", [event()])
    reply = cloud.client.post("/api/v1/devices/b1-elev-1/visits?site_id=s1", headers=tech,
                              json={"notes": "door operator adjusted",
                                    "parts": ["door belt"], "ts": cloud.clock.now() + 60})
    assert reply.status_code == 201, reply.text
    detail = cloud.client.get("/api/v1/devices/b1-elev-1?site_id=s1", headers=tech).json()
    assert [t["type"] for t in detail["timeline"]] == ["visit", "event", "work_order"] or [
        t["type"] for t in detail["timeline"]] == ["visit", "work_order", "event"]
    assert "door belt" in detail["timeline"][0]["summary"]
    assert detail["visits"][0]["technician"] == "tess"


def test_resolving_an_order_records_a_visit(cloud: CloudHarness) -> None:
    boss = cloud.user("dora", "dispatcher", ["s1"])
    cloud.send("s1", [event()])
    (wo,) = cloud.client.get("/api/v1/work-orders", headers=boss).json()
    for to in ("assigned", "in_progress", "resolved"):
        body = {"to": to, "assignee": "tess"} if to == "assigned" else {"to": to}
        if to == "resolved":
            body["note"] = "door belt replaced"
        cloud.client.post(f"/api/v1/work-orders/{wo['id']}/transition", headers=boss, json=body)
    detail = cloud.client.get("/api/v1/devices/b1-elev-1?site_id=s1", headers=boss).json()
    (visit,) = detail["visits"]
    assert (visit["technician"], visit["work_order_id"]) == ("tess", wo["id"])
    assert visit["notes"].endswith("door belt replaced")


@pytest.mark.parametrize(
    "dialect", ["sqlite", pytest.param("postgresql", marks=pytest.mark.integration)]
)
def test_migrations_build_exactly_the_models(
    dialect: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    from cloud.db import Database
    from tests.servers_cloud import settings_for

    url = (f"sqlite:///{tmp_path}/m.db" if dialect == "sqlite"
           else request.getfixturevalue("pg_url"))
    db = Database(settings_for(url))
    db.migrate()
    db.migrate()
    db.dispose()
    engine = create_engine(url)
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    engine.dispose()
    assert diff == []
