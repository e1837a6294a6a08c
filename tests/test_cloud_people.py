"""Users, shifts and gateway tokens through the API."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.servers_cloud import CloudHarness, event, harness


@pytest.fixture
def cloud(tmp_path: Path) -> Iterator[CloudHarness]:
    with harness(f"sqlite:///{tmp_path}/people.db") as h:
        yield h


def test_admins_create_users_on_their_sites_only(cloud: CloudHarness) -> None:
    admin = cloud.user("ada", "admin", ["s1"])
    body = {"username": "tina", "password": "password-123", "role": "technician",
            "sites": ["s1"], "team": "elevator_contractor"}
    assert cloud.client.post("/api/v1/users", headers=admin, json=body).status_code == 201
    assert cloud.client.post("/api/v1/users", headers=admin, json=body).status_code == 409
    foreign = dict(body, username="ford", sites=["s2"])
    assert cloud.client.post("/api/v1/users", headers=admin, json=foreign).status_code == 404
    everywhere = dict(body, username="eve", sites=["*"])
    assert cloud.client.post("/api/v1/users", headers=admin, json=everywhere).status_code == 404
    login = cloud.client.post("/api/v1/auth/login",
                              json={"username": "tina", "password": "password-123"})
    assert login.status_code == 200
    names = [u["username"] for u in cloud.client.get("/api/v1/users", headers=admin).json()]
    assert "tina" in names and "ford" not in names


def test_a_technician_going_on_shift_gets_dispatched(cloud: CloudHarness) -> None:
    boss = cloud.user("dora", "dispatcher", ["s1"])
    tech = cloud.user("tina", "technician", ["s1"], team="elevator_contractor")
    cloud.send("s1", [event()])
    first = cloud.client.get("/api/v1/work-orders", headers=boss).json()[0]
    assert first["assignee"] is None
    shift = cloud.client.post("/api/v1/users/me/shift", headers=tech, json={"on_shift": True})
    assert shift.json()["on_shift"] is True
    cloud.send("s1", [event(type_="elevator.leveling_error")])
    orders = cloud.client.get("/api/v1/work-orders", headers=boss,
                              params={"event_type": "elevator.leveling_error"}).json()
    assert orders[0]["assignee"] == "tina"


def test_gateway_tokens_rotate_and_revoke_through_the_api(cloud: CloudHarness) -> None:
    admin = cloud.user("ada", "admin", ["s1"])
    body = {"events": [event().model_dump(mode="json")]}
    old = cloud.gateway("s1")
    created = cloud.client.post("/api/v1/sites/s1/gateway-tokens?rotate=true", headers=admin)
    assert created.status_code == 201
    new = {"Authorization": f"Bearer {created.json()['token']}"}
    assert cloud.client.post("/api/v1/events", json=body, headers=old).status_code == 401
    assert cloud.client.post("/api/v1/events", json=body, headers=new).status_code == 200
    tokens = cloud.client.get("/api/v1/sites/s1/gateway-tokens", headers=admin).json()
    live = [t for t in tokens if t["revoked_at"] is None]
    assert [t["prefix"] for t in live] == [created.json()["prefix"]]
    assert "token" not in live[0]
    gone = cloud.client.delete(f"/api/v1/sites/s1/gateway-tokens/{live[0]['id']}",
                               headers=admin)
    assert gone.status_code == 204
    assert cloud.client.post("/api/v1/events", json=body, headers=new).status_code == 401
    boss = cloud.user("dora", "dispatcher", ["s1"])
    assert cloud.client.post("/api/v1/sites/s1/gateway-tokens",
                             headers=boss).status_code == 403
    assert cloud.client.post("/api/v1/sites/s2/gateway-tokens",
                             headers=admin).status_code == 404


def test_a_disabled_users_token_stops_working(cloud: CloudHarness) -> None:
    admin = cloud.user("ada", "admin", ["s1"])
    tina = cloud.user("tina", "technician", ["s1"])
    cloud.user("otto", "technician", ["s1", "s2"])
    assert cloud.client.get("/api/v1/auth/me", headers=tina).status_code == 200
    off = cloud.client.post("/api/v1/users/tina/active", headers=admin, json={"active": False})
    assert off.status_code == 200 and off.json()["active"] is False
    assert cloud.client.get("/api/v1/auth/me", headers=tina).status_code == 401
    assert cloud.client.post("/api/v1/auth/login", json={
        "username": "tina", "password": "password-123"}).status_code == 401
    assert cloud.client.post("/api/v1/users/otto/active", headers=admin,
                             json={"active": False}).status_code == 404
    assert cloud.client.post("/api/v1/users/ada/active", headers=admin,
                             json={"active": False}).status_code == 404


def test_dispatchers_edit_the_ledger(cloud: CloudHarness) -> None:
    boss = cloud.user("dora", "dispatcher", ["s1"])
    viewer = cloud.user("val", "viewer", ["s1"])
    reply = cloud.client.patch("/api/v1/devices/b1-elev-1?site_id=s1", headers=boss,
                               json={"serial": "K-77", "warranty_end": "2030-01-31"})
    assert reply.status_code == 200, reply.text
    assert (reply.json()["serial"], reply.json()["warranty_end"], reply.json()["vendor"]) == (
        "K-77", "2030-01-31", "Kone")
    assert cloud.client.patch("/api/v1/devices/b1-elev-1?site_id=s1", headers=viewer,
                              json={"serial": "x"}).status_code == 403
    assert cloud.client.patch("/api/v1/devices/b1-elev-1?site_id=s2", headers=boss,
                              json={"serial": "x"}).status_code == 404
    assert cloud.client.patch("/api/v1/devices/b1-elev-1?site_id=s1", headers=boss,
                              json={"install_date": "31/01/2020"}).status_code == 422
