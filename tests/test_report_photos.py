"""People's problem reports with photos, through the HTTP API of an in-process app on SQLite
and PostgreSQL: upload, refusal of bad or oversized files and of foreign sites, and a report
carrying photos that opens an order dispatched like any other and is rated by its reporter."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.servers_cloud import T0, CloudHarness, harness

JPEG = b"\xff\xd8\xff\xe0" + b"\x00" * 64 + b"\xff\xd9"
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 32


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.integration)])
def cloud(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[CloudHarness]:
    url = (f"sqlite:///{tmp_path}/cloud.db" if request.param == "sqlite"
           else request.getfixturevalue("pg_url"))
    with harness(url) as h:
        yield h


def test_a_jpeg_and_a_png_are_stored_and_served_to_the_site_only(cloud: CloudHarness) -> None:
    resident = cloud.user("rita", "viewer", ["s1"])
    jpeg = cloud.client.post("/api/v1/reports/photos", params={"site_id": "s1"}, content=JPEG,
                             headers={**resident, "Content-Type": "image/jpeg"})
    assert jpeg.status_code == 201, jpeg.text
    body = jpeg.json()
    assert body["content_type"] == "image/jpeg" and body["size"] == len(JPEG)
    assert body["name"].startswith("report-") and body["name"].endswith(".jpg")
    assert body["ref"] == body["url"] == f"/api/v1/evidence/s1/{body['name']}"
    png = cloud.client.post("/api/v1/reports/photos", params={"site_id": "s1"}, content=PNG,
                            headers={**resident, "Content-Type": "application/octet-stream"})
    assert png.status_code == 201, png.text
    assert png.json()["content_type"] == "image/png"
    assert png.json()["name"] != body["name"]

    served = cloud.client.get(body["url"], headers=cloud.user("dora", "dispatcher", ["s1"]))
    assert served.status_code == 200
    assert served.content == JPEG and served.headers["content-type"] == "image/jpeg"
    served_png = cloud.client.get(png.json()["url"], headers=resident)
    assert served_png.content == PNG and served_png.headers["content-type"] == "image/png"
    outsider = cloud.user("olga", "dispatcher", ["s2"])
    assert cloud.client.get(body["url"], headers=outsider).status_code == 404


def test_bad_files_foreign_sites_and_anonymous_callers_are_refused(cloud: CloudHarness) -> None:
    resident = cloud.user("rita", "viewer", ["s1"])
    gif = cloud.client.post("/api/v1/reports/photos", params={"site_id": "s1"},
                            content=b"GIF89a" + b"\x00" * 20,
                            headers={**resident, "Content-Type": "image/jpeg"})
    assert gif.status_code == 415
    empty = cloud.client.post("/api/v1/reports/photos", params={"site_id": "s1"}, content=b"",
                              headers=resident)
    assert empty.status_code == 415
    big = cloud.client.post("/api/v1/reports/photos", params={"site_id": "s1"},
                            content=b"\xff\xd8\xff" + b"\x00" * (4 * 1024 * 1024),
                            headers={**resident, "Content-Type": "image/jpeg"})
    assert big.status_code == 413
    foreign = cloud.client.post("/api/v1/reports/photos", params={"site_id": "s2"},
                                content=JPEG, headers=resident)
    assert foreign.status_code == 404
    admin = cloud.user("ada", "admin", ["*"])
    missing = cloud.client.post("/api/v1/reports/photos", params={"site_id": "nope"},
                                content=JPEG, headers=admin)
    assert missing.status_code == 404
    anonymous = cloud.client.post("/api/v1/reports/photos", params={"site_id": "s1"},
                                  content=JPEG)
    assert anonymous.status_code == 401
    no_site = cloud.client.post("/api/v1/reports/photos", content=JPEG, headers=resident)
    assert no_site.status_code == 422


def test_a_report_with_photos_is_dispatched_followed_and_rated(cloud: CloudHarness) -> None:
    boss = cloud.user("dora", "dispatcher", ["s1"])
    resident = cloud.user("rita", "viewer", ["s1"])
    cloud.user("carl", "technician", ["s1"], team="cleaning", on_shift=True)
    refs = []
    for data in (JPEG, PNG):
        reply = cloud.client.post("/api/v1/reports/photos", params={"site_id": "s1"},
                                  content=data, headers=resident)
        assert reply.status_code == 201, reply.text
        refs.append(reply.json()["ref"])
    filed = cloud.client.post("/api/v1/reports", headers=resident, json={
        "site_id": "s1", "category": "cleaning", "title": "Spill in lobby B1",
        "description": "Oil on the floor", "location": "B1 lobby", "photos": refs,
        "device_id": "b1-elev-1",
    })
    assert filed.status_code == 201, filed.text
    wo = filed.json()
    assert (wo["source"], wo["reporter"], wo["assignee"], wo["state"]) == (
        "report", "rita", "carl", "assigned")
    assert wo["photos"] == refs
    assert (wo["response_due"], wo["resolve_due"]) == (T0 + 2 * 3600, T0 + 24 * 3600)
    board = cloud.client.get("/api/v1/work-orders", headers=boss).json()
    on_board = [o for o in board if o["id"] == wo["id"]]
    assert on_board and on_board[0]["photos"] == refs
    for ref in refs:
        assert cloud.client.get(ref, headers=boss).status_code == 200
    for to in ("in_progress", "resolved", "closed"):
        moved = cloud.client.post(f"/api/v1/work-orders/{wo['id']}/transition", headers=boss,
                                  json={"to": to})
        assert moved.status_code == 200, (to, moved.text)
    rated = cloud.client.post(f"/api/v1/work-orders/{wo['id']}/rating", headers=resident,
                              json={"rating": 5, "comment": "thanks"})
    assert rated.status_code == 200, rated.text
    assert rated.json()["rating"] == 5
    mine = cloud.client.get("/api/v1/work-orders", headers=resident,
                            params={"reporter": "me"}).json()
    assert [(o["id"], o["state"], o["rating"], o["photos"]) for o in mine] == [
        (wo["id"], "closed", 5, refs)]


def test_a_gateway_cannot_overwrite_a_residents_photo(cloud: CloudHarness) -> None:
    resident = cloud.user("rita", "viewer", ["s1"])
    photo = cloud.client.post("/api/v1/reports/photos", params={"site_id": "s1"}, content=JPEG,
                              headers={**resident, "Content-Type": "image/jpeg"}).json()
    forged = cloud.client.post(
        "/api/v1/evidence", params={"name": photo["name"]}, content=JPEG + b"forged",
        headers={**cloud.gateway("s1"), "Content-Type": "image/jpeg"},
    )
    assert forged.status_code == 422 and "report photos" in forged.text
    served = cloud.client.get(photo["url"], headers=resident)
    assert served.content == JPEG
    evidence = cloud.client.post(
        "/api/v1/evidence", params={"name": "2026/11/cam-1_1.jpg"}, content=JPEG,
        headers={**cloud.gateway("s1"), "Content-Type": "image/jpeg"},
    )
    assert evidence.status_code == 201, evidence.text


def test_photos_no_report_used_are_removed_after_a_day(cloud: CloudHarness) -> None:
    resident = cloud.user("rita", "viewer", ["s1"])
    refs = [
        cloud.client.post("/api/v1/reports/photos", params={"site_id": "s1"}, content=JPEG,
                          headers={**resident, "Content-Type": "image/jpeg"}).json()["ref"]
        for _ in range(3)
    ]
    filed = cloud.client.post("/api/v1/reports", headers=resident, json={
        "site_id": "s1", "category": "cleaning", "title": "Spill", "photos": refs[:1],
    })
    assert filed.status_code == 201, filed.text
    engine = cloud.client.app.state.engine  # type: ignore[attr-defined]
    engine.run_once()
    assert engine.report.photos_removed == 0  # too young to judge
    cloud.clock.advance(23 * 3600)
    rosa = cloud.user("rosa", "viewer", ["s1"])  # sign-ins expire: a fresh one
    recent = cloud.client.post("/api/v1/reports/photos", params={"site_id": "s1"}, content=JPEG,
                               headers={**rosa, "Content-Type": "image/jpeg"}).json()["ref"]
    cloud.clock.advance(2 * 3600)
    engine.run_once()
    assert engine.report.photos_removed == 2  # the two unused; the recent one waits
    boss = cloud.user("dora", "dispatcher", ["s1"])
    assert cloud.client.get(refs[0], headers=boss).status_code == 200
    assert cloud.client.get(recent, headers=boss).status_code == 200
    assert [cloud.client.get(r, headers=boss).status_code for r in refs[1:]] == [404, 404]
