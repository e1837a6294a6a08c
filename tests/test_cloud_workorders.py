"""The work-order engine: lifecycle, audit trail, rework, SLA clocks and escalation, dispatch,
reports and ratings; driven by a manual clock, on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from cloud.engine import Engine
from cloud.lifecycle import TRANSITIONS
from tests.servers_cloud import T0, CloudHarness, event, harness


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.integration)])
def cloud(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[CloudHarness]:
    url = (f"sqlite:///{tmp_path}/cloud.db" if request.param == "sqlite"
           else request.getfixturevalue("pg_url"))
    with harness(url, access_token_ttl=60 * 86400) as h:
        yield h


def _engine(cloud: CloudHarness) -> Engine:
    engine: Engine = cloud.client.app.state.engine  # type: ignore[attr-defined]
    return engine


def _open(cloud: CloudHarness, type_: str = "elevator.door_fault", episode: float = T0,
          device: str = "b1-elev-1", kind: str = "elevator") -> None:
    assert cloud.send("s1", [event(type_=type_, episode=episode, device_id=device,
                                   kind=kind)]).status_code == 200


def _orders(cloud: CloudHarness, headers: dict[str, str], **params: Any) -> list[dict[str, Any]]:
    reply = cloud.client.get("/api/v1/work-orders", headers=headers, params=params)
    assert reply.status_code == 200, reply.text
    result: list[dict[str, Any]] = reply.json()
    return result


def _move(cloud: CloudHarness, headers: dict[str, str], order_id: int, to: str,
          **body: Any) -> Any:
    return cloud.client.post(f"/api/v1/work-orders/{order_id}/transition", headers=headers,
                             json={"to": to, **body})


def _walk(cloud: CloudHarness, headers: dict[str, str], order_id: int, path: list[str]) -> None:
    for to in path:
        extra = {"assignee": "tess"} if to == "assigned" else {}
        reply = _move(cloud, headers, order_id, to, **extra)
        assert reply.status_code == 200, (to, reply.text)


_PATHS = {
    "open": [],
    "assigned": ["assigned"],
    "in_progress": ["assigned", "in_progress"],
    "on_hold": ["on_hold"],
    "resolved": ["assigned", "in_progress", "resolved"],
    "closed": ["assigned", "in_progress", "resolved", "closed"],
    "cancelled": ["cancelled"],
}


def test_every_transition_is_allowed_or_refused_as_the_state_machine_says(
    cloud: CloudHarness,
) -> None:
    boss = cloud.user("dora", "dispatcher", ["s1"])
    n = 0
    for start, path in _PATHS.items():
        for to in TRANSITIONS:
            n += 1
            _open(cloud, episode=T0 + n)
            (wo,) = _orders(cloud, boss, active=True)
            _walk(cloud, boss, wo["id"], path)
            extra = {"assignee": "tess"} if to == "assigned" else {}
            reply = _move(cloud, boss, wo["id"], to, **extra)
            if to in TRANSITIONS[start]:
                assert reply.status_code == 200, (start, to, reply.text)
                assert reply.json()["state"] == to
            else:
                assert reply.status_code == 409, (start, to, reply.text)
            current = cloud.client.get(f"/api/v1/work-orders/{wo['id']}", headers=boss).json()
            if current["state"] == "resolved":
                assert _move(cloud, boss, wo["id"], "in_progress").status_code == 200
            if current["state"] not in ("closed", "cancelled"):
                assert _move(cloud, boss, wo["id"], "cancelled").status_code == 200


def test_every_change_is_in_the_audit_trail(cloud: CloudHarness) -> None:
    boss = cloud.user("dora", "dispatcher", ["s1"])
    _open(cloud)
    (wo,) = _orders(cloud, boss)
    cloud.clock.advance(60)
    _walk(cloud, boss, wo["id"], ["assigned", "in_progress", "on_hold", "in_progress",
                                  "resolved", "closed"])
    trail = cloud.client.get(f"/api/v1/work-orders/{wo['id']}/audit", headers=boss).json()
    moves = [(a["action"], a["from_state"], a["to_state"], a["actor"]) for a in trail]
    assert moves[0] == ("create", None, "open", "system")
    assert [m[1:3] for m in moves[1:]] == [
        ("open", "assigned"), ("assigned", "in_progress"), ("in_progress", "on_hold"),
        ("on_hold", "in_progress"), ("in_progress", "resolved"), ("resolved", "closed"),
    ]
    assert all(m[3] == "dora" for m in moves[1:])
    assert all(a["ts"] == T0 + 60 for a in trail[1:])


def test_the_same_fault_within_seven_days_of_closing_reopens_as_rework(
    cloud: CloudHarness,
) -> None:
    boss = cloud.user("dora", "dispatcher", ["s1"])
    _open(cloud)
    (wo,) = _orders(cloud, boss)
    _walk(cloud, boss, wo["id"], _PATHS["closed"])
    cloud.clock.advance(6 * 86400)
    _open(cloud, episode=T0 + 6 * 86400)
    orders = _orders(cloud, boss)
    assert len(orders) == 1
    again = orders[0]
    assert (again["id"], again["state"], again["rework"], again["rework_count"]) == (
        wo["id"], "open", True, 1)
    assert again["response_due"] == cloud.clock.now() + 2 * 3600
    assert again["event_count"] == 2
    trail = cloud.client.get(f"/api/v1/work-orders/{wo['id']}/audit", headers=boss).json()
    assert trail[-1]["action"] == "rework"


def test_a_reopened_order_is_dispatched_again(cloud: CloudHarness) -> None:
    boss = cloud.user("dora", "dispatcher", ["s1"])
    _open(cloud)
    (wo,) = _orders(cloud, boss)
    _walk(cloud, boss, wo["id"], _PATHS["closed"])
    cloud.user("amy", "technician", ["s1"], team="elevator_contractor", on_shift=True)
    _open(cloud, episode=T0 + 600)
    (again,) = _orders(cloud, boss)
    assert (again["state"], again["assignee"], again["rework"]) == ("assigned", "amy", True)


def test_the_same_fault_after_the_rework_window_opens_a_new_order(cloud: CloudHarness) -> None:
    boss = cloud.user("dora", "dispatcher", ["s1"])
    _open(cloud)
    (wo,) = _orders(cloud, boss)
    _walk(cloud, boss, wo["id"], _PATHS["closed"])
    cloud.clock.advance(8 * 86400)
    _open(cloud, episode=T0 + 8 * 86400)
    orders = _orders(cloud, boss)
    assert len(orders) == 2
    assert orders[0]["rework"] is False and orders[0]["id"] != wo["id"]


def test_a_fault_back_before_closing_reopens_a_resolved_order(cloud: CloudHarness) -> None:
    boss = cloud.user("dora", "dispatcher", ["s1"])
    _open(cloud)
    (wo,) = _orders(cloud, boss)
    _walk(cloud, boss, wo["id"], _PATHS["resolved"])
    _open(cloud, episode=T0 + 100)
    (again,) = _orders(cloud, boss)
    assert (again["state"], again["rework"]) == ("open", True)


def test_on_hold_pauses_the_resolve_clock(cloud: CloudHarness) -> None:
    boss = cloud.user("dora", "dispatcher", ["s1"])
    _open(cloud)
    (wo,) = _orders(cloud, boss)
    _walk(cloud, boss, wo["id"], ["assigned", "in_progress", "on_hold"])
    cloud.clock.advance(3 * 86400)
    _engine(cloud).run_once()
    held = cloud.client.get(f"/api/v1/work-orders/{wo['id']}", headers=boss).json()
    assert held["resolve_breached"] is False
    assert held["escalation_level"] == 0
    resumed = _move(cloud, boss, wo["id"], "in_progress").json()
    assert resumed["resolve_due"] == wo["resolve_due"] + 3 * 86400
    assert resumed["held_seconds"] == 3 * 86400
    done = _move(cloud, boss, wo["id"], "resolved").json()
    assert done["resolve_breached"] is False


def test_a_response_breach_escalates_dispatcher_supervisor_manager(cloud: CloudHarness) -> None:
    boss = cloud.user("dora", "dispatcher", ["s1"])
    _open(cloud, type_="elevator.entrapment")
    (wo,) = _orders(cloud, boss)
    engine = _engine(cloud)
    cloud.clock.advance(14 * 60)
    engine.run_once()
    assert _orders(cloud, boss)[0]["escalation_level"] == 0
    cloud.clock.advance(2 * 60)
    engine.run_once()
    first = _orders(cloud, boss)[0]
    assert (first["escalation_level"], first["response_breached"]) == (1, True)
    engine.run_once()
    assert _orders(cloud, boss)[0]["escalation_level"] == 1
    for level in (2, 3, 3):
        cloud.clock.advance(cloud.settings.escalation_step)
        engine.run_once()
        assert _orders(cloud, boss)[0]["escalation_level"] == level
    trail = cloud.client.get(f"/api/v1/work-orders/{wo['id']}/audit", headers=boss).json()
    notes = [a["note"] for a in trail if a["action"] == "escalation"]
    assert [n.rsplit(" ", 1)[-1] for n in notes] == ["dispatcher", "supervisor", "manager"]


def test_acknowledging_in_time_meets_the_response_sla(cloud: CloudHarness) -> None:
    boss = cloud.user("dora", "dispatcher", ["s1"])
    tech = cloud.user("tess", "technician", ["s1"], team="elevator_contractor")
    _open(cloud, type_="elevator.entrapment")
    (wo,) = _orders(cloud, boss)
    _move(cloud, boss, wo["id"], "assigned", assignee="tess")
    cloud.clock.advance(10 * 60)
    ack = cloud.client.post(f"/api/v1/work-orders/{wo['id']}/acknowledge", headers=tech)
    assert ack.status_code == 200
    assert ack.json()["acknowledged_at"] == T0 + 600
    cloud.clock.advance(10 * 60)
    _engine(cloud).run_once()
    after = _orders(cloud, boss)[0]
    assert (after["response_breached"], after["escalation_level"]) == (False, 0)
    cloud.clock.advance(3600)
    _engine(cloud).run_once()
    late = _orders(cloud, boss)[0]
    assert (late["resolve_breached"], late["response_breached"]) == (True, False)
    assert late["escalation_level"] == 1


def test_technicians_work_only_their_own_orders(cloud: CloudHarness) -> None:
    boss = cloud.user("dora", "dispatcher", ["s1"])
    tess = cloud.user("tess", "technician", ["s1"])
    tom = cloud.user("tom", "technician", ["s1"])
    viewer = cloud.user("val", "viewer", ["s1"])
    _open(cloud)
    (wo,) = _orders(cloud, boss)
    assert _move(cloud, viewer, wo["id"], "assigned", assignee="val").status_code == 403
    assert _move(cloud, tess, wo["id"], "assigned", assignee="tom").status_code == 403
    taken = _move(cloud, tess, wo["id"], "assigned")
    assert taken.status_code == 200
    assert (taken.json()["assignee"], taken.json()["acknowledged_at"]) == ("tess", T0)
    assert _move(cloud, tom, wo["id"], "in_progress").status_code == 403
    assert _move(cloud, tess, wo["id"], "in_progress").status_code == 200
    assert _move(cloud, tess, wo["id"], "resolved").status_code == 200
    assert _move(cloud, tess, wo["id"], "closed").status_code == 403
    assert _move(cloud, boss, wo["id"], "closed").status_code == 200


def test_dispatch_picks_the_least_loaded_technician_on_shift(cloud: CloudHarness) -> None:
    boss = cloud.user("dora", "dispatcher", ["s1"])
    cloud.user("amy", "technician", ["s1"], team="elevator_contractor", on_shift=True)
    cloud.user("bob", "technician", ["s1"], team="elevator_contractor", on_shift=True)
    cloud.user("cat", "technician", ["s1"], team="elevator_contractor", on_shift=False)
    cloud.user("dan", "technician", ["s1"], team="engineering", on_shift=True)
    for i, type_ in enumerate(["elevator.door_fault", "elevator.leveling_error",
                               "elevator.abnormal_vibration"]):
        _open(cloud, type_=type_, episode=T0 + i)
    orders = sorted(_orders(cloud, boss), key=lambda o: o["id"])
    assert [o["assignee"] for o in orders] == ["amy", "bob", "amy"]
    assert all(o["state"] == "assigned" and o["acknowledged_at"] is None for o in orders)
    _open(cloud, type_="pump.cavitation", device="b1-pump-1", kind="water_pump")
    pump = _orders(cloud, boss, device_id="b1-pump-1")[0]
    assert pump["assignee"] == "dan"


def test_nobody_on_shift_leaves_the_order_for_a_dispatcher(cloud: CloudHarness) -> None:
    boss = cloud.user("dora", "dispatcher", ["s1"])
    cloud.user("amy", "technician", ["s2"], team="elevator_contractor", on_shift=True)
    _open(cloud)
    (wo,) = _orders(cloud, boss)
    assert (wo["state"], wo["assignee"]) == ("open", None)


def test_a_residents_report_becomes_an_order_and_can_be_rated(cloud: CloudHarness) -> None:
    boss = cloud.user("dora", "dispatcher", ["s1"])
    resident = cloud.user("rita", "viewer", ["s1"])
    cloud.user("carl", "technician", ["s1"], team="cleaning", on_shift=True)
    reply = cloud.client.post("/api/v1/reports", headers=resident, json={
        "site_id": "s1", "category": "cleaning", "title": "Spill in lobby B1",
        "description": "Oil on the floor", "location": "B1 lobby", "photos": ["ev-123.jpg"],
    })
    assert reply.status_code == 201, reply.text
    wo = reply.json()
    assert (wo["source"], wo["reporter"], wo["assignee"], wo["state"]) == (
        "report", "rita", "carl", "assigned")
    assert (wo["response_due"], wo["resolve_due"]) == (T0 + 2 * 3600, T0 + 24 * 3600)
    assert cloud.client.post(f"/api/v1/work-orders/{wo['id']}/rating", headers=resident,
                             json={"rating": 5}).status_code == 409
    _walk(cloud, boss, wo["id"], ["in_progress", "resolved", "closed"])
    rated = cloud.client.post(f"/api/v1/work-orders/{wo['id']}/rating", headers=resident,
                              json={"rating": 4, "comment": "quick"})
    assert rated.status_code == 200
    assert rated.json()["rating"] == 4
    followed = cloud.client.get(f"/api/v1/work-orders/{wo['id']}", headers=resident).json()
    assert followed["state"] == "closed"
    mine = _orders(cloud, resident, reporter="me")
    assert [o["id"] for o in mine] == [wo["id"]]
    assert _orders(cloud, boss, reporter="me") == []
    foreign = cloud.client.post("/api/v1/reports", headers=resident, json={
        "site_id": "s2", "category": "cleaning", "title": "x"})
    assert foreign.status_code == 404
