"""Every role x endpoint x foreign-site cell is refused, and every API route needs a token.

Users of every role see site ``s1`` only; each request names an object or a site of ``s2``.
A refusal is a 403/404/422 (a 404 looks exactly like a missing object's) or, for lists, an
answer without a single ``s2`` object.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from cloud.bootstrap import ROLES
from tests.servers_cloud import CloudHarness, event, harness

Call = Callable[[CloudHarness, dict[str, str], dict[str, Any]], httpx.Response]


def _get(path: str) -> Call:
    return lambda c, h, ids: c.client.get(path.format(**ids), headers=h)


def _post(path: str, body: dict[str, Any] | None = None, content: bytes | None = None) -> Call:
    def call(c: CloudHarness, h: dict[str, str], ids: dict[str, Any]) -> httpx.Response:
        if content is not None:
            return c.client.post(path.format(**ids), headers=h, content=content)
        filled = {k: (v.format(**ids) if isinstance(v, str) else v)
                  for k, v in (body or {}).items()}
        return c.client.post(path.format(**ids), headers=h, json=filled)

    return call


REFUSED_OBJECTS: dict[str, Call] = {
    "get order": _get("/api/v1/work-orders/{order}"),
    "order audit": _get("/api/v1/work-orders/{order}/audit"),
    "transition": _post("/api/v1/work-orders/{order}/transition", {"to": "cancelled"}),
    "assign": _post("/api/v1/work-orders/{order}/transition", {"to": "assigned"}),
    "acknowledge": _post("/api/v1/work-orders/{order}/acknowledge"),
    "rating": _post("/api/v1/work-orders/{order}/rating", {"rating": 5}),
    "device": _get("/api/v1/devices/{device}?site_id={site}"),
    "device any site": _get("/api/v1/devices/{device}"),
    "visit": _post("/api/v1/devices/{device}/visits?site_id={site}", {"notes": "x"}),
    "report": _post("/api/v1/reports", {"site_id": "{site}", "category": "cleaning", "title": "x"}),
    "kpis": _get("/api/v1/kpis?site_id={site}"),
    "kpis csv": _get("/api/v1/kpis.csv?site_id={site}"),
    "compliance": _get("/api/v1/maintenance/compliance?site_id={site}"),
    "compliance csv": _get("/api/v1/maintenance/compliance.csv?site_id={site}"),
    "import": _post("/api/v1/devices/import?site_id={site}",
                    content=b"device_id,kind\nb2-new,elevator\n"),
    "webhook": _post("/api/v1/webhooks", {"url": "https://example.test/h", "site_id": "{site}"}),
    "gateway token": _post("/api/v1/sites/{site}/gateway-tokens"),
    "list gateway tokens": _get("/api/v1/sites/{site}/gateway-tokens"),
    "revoke gateway token": lambda c, h, ids: c.client.delete(
        f"/api/v1/sites/{ids['site']}/gateway-tokens/1", headers=h),
    "create user": _post("/api/v1/users", {"username": "intruder", "password": "password-123",
                                           "role": "admin", "sites": ["{site}"]}),
    "edit device": lambda c, h, ids: c.client.patch(
        f"/api/v1/devices/{ids['device']}?site_id={ids['site']}", headers=h, json={"serial": "x"}),
    "disable user": _post("/api/v1/users/{user}/active", {"active": False}),
    "delete webhook": lambda c, h, ids: c.client.delete(f"/api/v1/webhooks/{ids['hook']}",
                                                        headers=h),
}
LISTS: dict[str, Call] = {
    "orders": _get("/api/v1/work-orders?site_id=s2"),
    "all orders": _get("/api/v1/work-orders"),
    "devices": _get("/api/v1/devices?site_id=s2"),
    "all devices": _get("/api/v1/devices"),
    "ledger csv": _get("/api/v1/devices.csv?site_id=s2"),
    "sites": _get("/api/v1/sites"),
    "stream": _get("/api/v1/stream?after=0&max_seconds=0.3"),
    "kpis all": _get("/api/v1/kpis"),
    "compliance all": _get("/api/v1/maintenance/compliance"),
    "users": _get("/api/v1/users"),
}


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Any:
    tmp: Path = tmp_path_factory.mktemp("access")
    with harness(f"sqlite:///{tmp}/access.db", access_token_ttl=86400) as cloud:
        cloud.send("s2", [event(site_id="s2", device_id="b2-only")])
        root = cloud.user("root", "admin", ["s2"])
        (order,) = cloud.client.get("/api/v1/work-orders", headers=root).json()
        hook = cloud.client.post("/api/v1/webhooks", headers=root, json={
            "url": "https://example.test/h", "site_id": "s2"}).json()
        users = {role: cloud.user(f"u-{role}", role, ["s1"]) for role in ROLES}
        ids = {"order": order["id"], "hook": hook["id"], "site": "s2", "device": "b2-only",
               "user": "root"}
        yield cloud, users, ids, root


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("endpoint", sorted(REFUSED_OBJECTS))
def test_foreign_objects_are_refused(world: Any, role: str, endpoint: str) -> None:
    cloud, users, ids, _root = world
    reply = REFUSED_OBJECTS[endpoint](cloud, users[role], ids)
    assert reply.status_code in (403, 404, 422), (role, endpoint, reply.status_code, reply.text)
    if reply.status_code == 404:
        missing = {"order": 2**31 - 1, "hook": 2**31 - 1, "site": "nowhere", "device": "none",
                   "user": "nobody"}
        twin = REFUSED_OBJECTS[endpoint](cloud, users[role], missing)
        assert (twin.status_code, twin.json()) == (404, reply.json()), "404 must not leak"


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("endpoint", sorted(LISTS))
def test_lists_never_show_a_foreign_object(world: Any, role: str, endpoint: str) -> None:
    cloud, users, ids, _root = world
    reply = LISTS[endpoint](cloud, users[role], ids)
    if reply.status_code in (403, 404, 422):
        return
    assert reply.status_code == 200, reply.text
    leak = re.search(r'"site_id":\s*"s2"|^s2,|b2-only|"id":\s*"s2"|"sites":\s*\[[^\]]*"s2"'
                     r'|"username":\s*"root"', reply.text, re.M)
    assert leak is None, (role, endpoint, reply.text[:300])


def test_the_foreign_object_exists_for_its_own_site(world: Any) -> None:
    cloud, _users, ids, root = world
    assert cloud.client.get(f"/api/v1/work-orders/{ids['order']}", headers=root).status_code == 200
    assert cloud.client.get("/api/v1/devices/b2-only", headers=root).status_code == 200


def test_every_api_route_needs_a_token(world: Any) -> None:
    cloud, _users, _ids, _root = world
    spec = cloud.client.get("/openapi.json").json()
    checked = 0
    for path, methods in spec["paths"].items():
        if not path.startswith("/api/v1/") or path == "/api/v1/auth/login":
            continue
        concrete = re.sub(r"\{[^}]+\}", "1", path)
        for method in methods:
            reply = cloud.client.request(method.upper(), concrete)
            assert reply.status_code == 401, (method, path, reply.status_code)
            bad = cloud.client.request(method.upper(), concrete,
                                       headers={"Authorization": "Bearer forged.token"})
            assert bad.status_code == 401, (method, path, bad.status_code)
            checked += 1
    assert checked > 20
    assert json.dumps(spec)
