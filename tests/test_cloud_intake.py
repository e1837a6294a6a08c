"""Event intake and the walking-skeleton API, on SQLite and on PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.servers_cloud import T0, CloudHarness, event, harness


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.integration)])
def cloud(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[CloudHarness]:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path}/cloud.db"
    else:
        url = request.getfixturevalue("pg_url")
    with harness(url) as h:
        yield h


def test_a_raised_event_opens_one_order_with_sla_from_the_profile(cloud: CloudHarness) -> None:
    ev = event(type_="elevator.entrapment", severity="critical")
    reply = cloud.send("s1", [ev])
    assert reply.status_code == 200, reply.text
    assert reply.json() == {"accepted": [ev.event_id], "duplicates": [], "rejected": []}
    admin = cloud.user("ada", "admin", ["s1"])
    orders = cloud.client.get("/api/v1/work-orders", headers=admin).json()
    assert len(orders) == 1
    wo = orders[0]
    assert (wo["device_id"], wo["event_type"], wo["state"]) == (
        "b1-elev-1", "elevator.entrapment", "open")
    assert (wo["priority"], wo["team"], wo["category"]) == ("P1", "elevator_contractor", "elevator")
    assert wo["opened_at"] == T0
    assert wo["response_due"] == T0 + 15 * 60
    assert wo["resolve_due"] == T0 + 3600
    assert wo["event_count"] == 1


def test_a_resent_batch_opens_no_second_order(cloud: CloudHarness) -> None:
    batch = [event(), event(type_="elevator.leveling_error")]
    first = cloud.send("s1", batch).json()
    second = cloud.send("s1", batch).json()
    assert sorted(first["accepted"]) == sorted(e.event_id for e in batch)
    assert second["accepted"] == []
    assert sorted(second["duplicates"]) == sorted(e.event_id for e in batch)
    admin = cloud.user("ada", "admin", ["s1"])
    orders = cloud.client.get("/api/v1/work-orders", headers=admin).json()
    assert sorted(o["event_type"] for o in orders) == ["elevator.door_fault",
                                                       "elevator.leveling_error"]
    assert all(o["event_count"] == 1 for o in orders)


def test_a_duplicate_inside_one_batch_counts_once(cloud: CloudHarness) -> None:
    ev = event()
    result = cloud.send("s1", [ev, ev]).json()
    assert result["accepted"] == [ev.event_id]
    assert result["duplicates"] == [ev.event_id]


def test_repeat_events_attach_to_the_open_order_and_count(cloud: CloudHarness) -> None:
    cloud.send("s1", [event(episode=T0)])
    cloud.send("s1", [event(episode=T0 + 60), event(episode=T0 + 120)])
    admin = cloud.user("ada", "admin", ["s1"])
    orders = cloud.client.get("/api/v1/work-orders", headers=admin).json()
    assert len(orders) == 1
    assert orders[0]["event_count"] == 3
    assert orders[0]["last_event_at"] == T0 + 120


def test_one_batch_attaches_to_many_open_orders(cloud: CloudHarness) -> None:
    types = ["elevator.door_fault", "elevator.leveling_error", "elevator.abnormal_vibration"]
    cloud.send("s1", [event(type_=t) for t in types])
    later = [event(type_=t, episode=T0 + k) for t in types for k in (10, 20)]
    later.append(event(type_=types[0], episode=T0, state="cleared", ts=T0 + 30))
    assert len(cloud.send("s1", later).json()["accepted"]) == 7
    admin = cloud.user("ada", "admin", ["s1"])
    orders = {o["event_type"]: o for o in
              cloud.client.get("/api/v1/work-orders", headers=admin).json()}
    assert {t: o["event_count"] for t, o in orders.items()} == dict.fromkeys(types, 3)
    assert [orders[t]["condition_cleared"] for t in types] == [True, False, False]


def test_a_cleared_event_marks_the_order_without_closing_it(cloud: CloudHarness) -> None:
    cloud.send("s1", [event(episode=T0)])
    cloud.send("s1", [event(episode=T0, state="cleared", ts=T0 + 300)])
    admin = cloud.user("ada", "admin", ["s1"])
    (wo,) = cloud.client.get("/api/v1/work-orders", headers=admin).json()
    assert wo["condition_cleared"] is True
    assert wo["state"] == "open"
    cloud.send("s1", [event(episode=T0 + 900)])
    (wo,) = cloud.client.get("/api/v1/work-orders", headers=admin).json()
    assert wo["condition_cleared"] is False
    assert wo["event_count"] == 2


def test_events_without_a_policy_are_recorded_but_open_nothing(cloud: CloudHarness) -> None:
    ev = event(type_="elevator.sensor_stuck", severity="info")
    assert cloud.send("s1", [ev]).json()["accepted"] == [ev.event_id]
    admin = cloud.user("ada", "admin", ["s1"])
    assert cloud.client.get("/api/v1/work-orders", headers=admin).json() == []
    detail = cloud.client.get("/api/v1/devices/b1-elev-1", headers=admin).json()
    assert [e["event_id"] for e in detail["events"]] == [ev.event_id]


def test_wrong_site_unknown_type_and_kind_mismatch_are_rejected(cloud: CloudHarness) -> None:
    foreign = event(site_id="s2")
    unknown = event(type_="elevator.made_up")
    mismatch = event(device_id="b1-pump-1", kind="elevator")
    good = event()
    result = cloud.send("s1", [foreign, unknown, mismatch, good]).json()
    assert result["accepted"] == [good.event_id]
    reasons = {r["event_id"]: r["reason"] for r in result["rejected"]}
    assert reasons[foreign.event_id].startswith("wrong site")
    assert reasons[unknown.event_id].startswith("unknown event type")
    assert reasons[mismatch.event_id].startswith("kind mismatch")


def test_unknown_devices_enter_the_ledger(cloud: CloudHarness) -> None:
    cloud.send("s1", [event(device_id="b9-pump-4", kind="water_pump", type_="pump.cavitation")])
    admin = cloud.user("ada", "admin", ["s1"])
    dev = cloud.client.get("/api/v1/devices/b9-pump-4", headers=admin).json()["device"]
    assert dev["kind"] == "water_pump"


def test_gateway_tokens_authenticate_and_can_be_revoked(cloud: CloudHarness) -> None:
    from cloud.bootstrap import revoke_gateway_tokens, rotate_gateway_token

    body = {"events": [event().model_dump(mode="json")]}
    assert cloud.client.post("/api/v1/events", json=body).status_code == 401
    bad = {"Authorization": "Bearer ghg_not-a-token"}
    assert cloud.client.post("/api/v1/events", json=body, headers=bad).status_code == 401
    headers = cloud.gateway("s1")
    assert cloud.client.post("/api/v1/events", json=body, headers=headers).status_code == 200
    new = rotate_gateway_token(cloud.settings, "s1")
    assert cloud.client.post("/api/v1/events", json=body, headers=headers).status_code == 401
    fresh = {"Authorization": f"Bearer {new}"}
    assert cloud.client.post("/api/v1/events", json=body, headers=fresh).status_code == 200
    assert revoke_gateway_tokens(cloud.settings, "s1") == 1
    assert cloud.client.post("/api/v1/events", json=body, headers=fresh).status_code == 401


def test_a_malformed_batch_is_422(cloud: CloudHarness) -> None:
    headers = cloud.gateway("s1")
    reply = cloud.client.post("/api/v1/events", json={"events": [{"event_id": "x"}]},
                              headers=headers)
    assert reply.status_code == 422
    reply = cloud.client.post("/api/v1/events", content=b"not json", headers=headers)
    assert reply.status_code == 422


def test_device_detail_shows_device_events_and_orders(cloud: CloudHarness) -> None:
    ev = event()
    cloud.send("s1", [ev])
    viewer = cloud.user("val", "viewer", ["s1"])
    detail = cloud.client.get("/api/v1/devices/b1-elev-1?site_id=s1", headers=viewer).json()
    assert detail["device"]["vendor"] == "Kone"
    assert [e["event_id"] for e in detail["events"]] == [ev.event_id]
    assert [o["event_type"] for o in detail["work_orders"]] == ["elevator.door_fault"]
    assert {t["type"] for t in detail["timeline"]} == {"event", "work_order"}
    sites = cloud.client.get("/api/v1/sites", headers=viewer).json()
    assert [s["id"] for s in sites] == ["s1"]


def test_another_sites_objects_answer_404(cloud: CloudHarness) -> None:
    cloud.send("s2", [event(site_id="s2")])
    s1_user = cloud.user("sam", "dispatcher", ["s1"])
    s2_user = cloud.user("tom", "dispatcher", ["s2"])
    (foreign,) = cloud.client.get("/api/v1/work-orders", headers=s2_user).json()
    assert cloud.client.get("/api/v1/work-orders", headers=s1_user).json() == []
    assert cloud.client.get(f"/api/v1/work-orders/{foreign['id']}",
                            headers=s1_user).status_code == 404
    assert cloud.client.get("/api/v1/work-orders/999999", headers=s1_user).status_code == 404
    assert cloud.client.get("/api/v1/devices/b1-elev-1?site_id=s2",
                            headers=s1_user).status_code == 404


def test_login_accepts_form_and_json_and_refuses_wrong_passwords(cloud: CloudHarness) -> None:
    cloud.user("ada", "admin", ["s1"], password="correct-horse")
    form = cloud.client.post("/api/v1/auth/login",
                             data={"username": "ada", "password": "correct-horse"})
    assert form.status_code == 200
    assert form.json()["token_type"] == "bearer"
    wrong = cloud.client.post("/api/v1/auth/login",
                              json={"username": "ada", "password": "nope-nope"})
    assert wrong.status_code == 401
    assert cloud.client.get("/api/v1/work-orders").status_code == 401


def test_access_tokens_expire(cloud: CloudHarness) -> None:
    headers = cloud.user("ada", "admin", ["s1"])
    assert cloud.client.get("/api/v1/auth/me", headers=headers).status_code == 200
    cloud.clock.advance(cloud.settings.access_token_ttl + 1)
    assert cloud.client.get("/api/v1/auth/me", headers=headers).status_code == 401


def test_health_and_openapi(cloud: CloudHarness) -> None:
    assert cloud.client.get("/healthz").json()["status"] == "ok"
    spec = cloud.client.get("/openapi.json").json()
    assert "/api/v1/events" in spec["paths"]
    assert cloud.client.get("/docs").status_code == 200


def test_the_stream_sends_every_order_change_of_the_callers_sites(cloud: CloudHarness) -> None:
    cloud.send("s1", [event()])
    cloud.send("s2", [event(site_id="s2")])
    cloud.send("s1", [event(episode=T0 + 5)])
    user = cloud.user("sam", "viewer", ["s1"])
    token = user["Authorization"].split()[1]
    with cloud.client.stream("GET", "/api/v1/stream", params={
        "after": 0, "max_seconds": 0.5, "access_token": token}) as reply:
        assert reply.headers["content-type"].startswith("text/event-stream")
        lines = [line for line in reply.iter_lines() if line]
    events = [line.split(": ", 1)[1] for line in lines if line.startswith("event:")]
    assert events == ["work_order.created", "work_order.event"]
    ids = [int(line.split(": ", 1)[1]) for line in lines if line.startswith("id:")]
    with cloud.client.stream("GET", "/api/v1/stream", headers={
        **user, "Last-Event-ID": str(ids[0])}, params={"max_seconds": 0.3}) as reply:
        again = [line for line in reply.iter_lines() if line.startswith("event:")]
    assert again == ["event: work_order.event"]


def test_nul_characters_are_refused_before_the_database(cloud: CloudHarness) -> None:
    admin = cloud.user("ada", "admin", ["s1"])
    assert cloud.client.get("/api/v1/work-orders", headers=admin,
                            params={"event_type": "\x00"}).status_code == 422
    body = {"events": [event(device_id="b1-elev-1").model_dump(mode="json")]}
    body["events"][0]["gateway_id"] = "gw\x00"
    reply = cloud.client.post("/api/v1/events", json=body, headers=cloud.gateway("s1"))
    assert reply.status_code == 422
    assert cloud.client.post("/api/v1/devices/import?site_id=s1", headers=admin,
                             content=b"device_id,kind\nx\x00,elevator\n").status_code == 422
    assert cloud.send("s1", [event()]).status_code == 200
    huge = cloud.client.post("/api/v1/events", headers={
        **cloud.gateway("s1"), "Content-Type": "application/json"},
        content=b"[" + b" " * (33 * 1024 * 1024) + b"]")
    assert huge.status_code == 413
