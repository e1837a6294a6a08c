"""The background engine's other duties: signed webhooks with backoff, preventive plans and
their compliance report, and the KPI report; driven pass by pass with a manual clock."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from cloud.app import create_app
from cloud.bootstrap import create_user, issue_gateway_token, provision_site
from cloud.clock import ManualClock
from cloud.engine import Engine
from cloud.settings import Settings
from device_profiles.site import DeviceConfig
from tests.servers_cloud import T0, CloudHarness, event, harness, settings_for


class FakeTransport:
    """Records posts; answers with the queued statuses (an exception instance is raised)."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, bytes, dict[str, str]]] = []
        self.answers: list[int | Exception] = []

    def __call__(self, url: str, body: bytes, headers: dict[str, str], timeout: float) -> int:
        self.calls.append((url, body, headers))
        answer = self.answers.pop(0) if self.answers else 200
        if isinstance(answer, Exception):
            raise answer
        return answer


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.integration)])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/cloud.db"
    value: str = request.getfixturevalue("pg_url")
    return value


@pytest.fixture
def cloud(url: str) -> Iterator[CloudHarness]:
    with harness(url, access_token_ttl=400 * 86400) as h:
        yield h


def _admin_with_webhook(
    settings: Settings, client: TestClient
) -> tuple[dict[str, str], httpx.Response]:
    """Site s1, its admin ada (logged in) and a webhook of s1: (ada's headers, the reply
    that created the webhook)."""
    provision_site(settings, "s1", "Site one", [])
    create_user(settings, "ada", "password-123", "admin", ["s1"])
    admin_login = client.post("/api/v1/auth/login",
                              json={"username": "ada", "password": "password-123"})
    admin = {"Authorization": f"Bearer {admin_login.json()['access_token']}"}
    reply = client.post("/api/v1/webhooks", headers=admin,
                        json={"url": "https://example.test/hook", "site_id": "s1"})
    assert reply.status_code == 201, reply.text
    return admin, reply


def _engine(cloud: CloudHarness) -> Engine:
    engine: Engine = cloud.client.app.state.engine  # type: ignore[attr-defined]
    return engine


def test_webhooks_are_signed_and_retried_with_backoff(url: str) -> None:
    transport = FakeTransport()
    settings = settings_for(url, webhook_retry_initial=2.0, webhook_retry_max=5.0)
    clock = ManualClock(T0)
    app = create_app(settings, clock=clock, webhook_transport=transport)
    with TestClient(app) as client:
        admin, reply = _admin_with_webhook(settings, client)
        secret = reply.json()["secret"]
        gw = {"Authorization": f"Bearer {issue_gateway_token(settings, 's1')}"}
        client.post("/api/v1/events", headers=gw,
                    json={"events": [event().model_dump(mode="json")]})
        engine: Engine = app.state.engine
        transport.answers = [503, ConnectionError("refused"), 200]
        assert engine.deliver_once() == 0
        assert engine.deliver_once() == 0, "no retry before the backoff has passed"
        assert len(transport.calls) == 1
        clock.advance(2.0)
        assert engine.deliver_once() == 0
        clock.advance(2.0)
        assert engine.deliver_once() == 0, "the second backoff is doubled (4 s)"
        clock.advance(2.0)
        assert engine.deliver_once() == 1
        assert engine.deliver_once() == 0
        assert len(transport.calls) == 3
        url_, body, headers = transport.calls[-1]
        assert url_ == "https://example.test/hook"
        stamp = headers["X-Gatehouse-Timestamp"]
        expected = hmac.new(secret.encode(), f"{stamp}.".encode() + body,
                            hashlib.sha256).hexdigest()
        assert headers["X-Gatehouse-Signature"] == f"v1={expected}"
        topics = [c["topic"] for c in json.loads(body)["changes"]]
        assert topics == ["work_order.created"]
        (hook,) = client.get("/api/v1/webhooks", headers=admin).json()
        assert (hook["failures"], hook["delivered"], hook["last_error"]) == (0, 1, None)


def test_a_real_http_receiver_verifies_the_signature(cloud: CloudHarness) -> None:
    received: list[tuple[bytes, dict[str, str]]] = []

    class Receiver(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            received.append((body, dict(self.headers)))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = HTTPServer(("127.0.0.1", 0), Receiver)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        admin = cloud.user("ada", "admin", ["s1"])
        hook = cloud.client.post("/api/v1/webhooks", headers=admin, json={
            "url": f"http://127.0.0.1:{server.server_port}/h", "site_id": "s1"}).json()
        cloud.send("s1", [event()])
        assert _engine(cloud).deliver_once() == 1
    finally:
        server.shutdown()
        thread.join()
    body, headers = received[0]
    stamp = headers["X-Gatehouse-Timestamp"]
    mac = hmac.new(hook["secret"].encode(), f"{stamp}.".encode() + body, hashlib.sha256)
    assert headers["X-Gatehouse-Signature"] == "v1=" + mac.hexdigest()


def test_webhooks_are_for_admins_and_their_sites(cloud: CloudHarness) -> None:
    boss = cloud.user("dora", "dispatcher", ["s1"])
    admin = cloud.user("ada", "admin", ["s1"])
    body = {"url": "https://example.test/hook", "site_id": "s1"}
    assert cloud.client.post("/api/v1/webhooks", headers=boss, json=body).status_code == 403
    body["site_id"] = "s2"
    assert cloud.client.post("/api/v1/webhooks", headers=admin, json=body).status_code == 404


def _day(text: str) -> float:
    return datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp()


def test_preventive_orders_come_ahead_of_their_due_date_once(cloud: CloudHarness) -> None:
    provision_site(cloud.settings, "s1", "", [
        DeviceConfig(id="b1-elev-1", kind="elevator", install_date="2025-06-01"),
    ])
    boss = cloud.user("dora", "dispatcher", ["s1"])
    engine = _engine(cloud)
    engine.run_once()
    engine.run_once()
    plans = cloud.client.get("/api/v1/work-orders", headers=boss,
                             params={"device_id": "b1-elev-1"}).json()
    assert [(o["source"], o["plan_name"], o["due_at"]) for o in plans] == [
        ("preventive", "routine_service", _day("2025-06-16"))]
    first = plans[0]
    assert first["resolve_due"] == _day("2025-06-16") + 3 * 86400
    cloud.clock.set(_day("2025-06-28"))
    engine.run_once()
    assert len(cloud.client.get("/api/v1/work-orders", headers=boss).json()) == 1
    cloud.clock.set(_day("2025-06-29"))
    engine.run_once()
    orders = cloud.client.get("/api/v1/work-orders", headers=boss).json()
    assert sorted(o["due_at"] for o in orders) == [_day("2025-06-16"), _day("2025-07-01")]


def test_the_compliance_report_counts_on_time_late_missed(cloud: CloudHarness) -> None:
    provision_site(cloud.settings, "s1", "", [
        DeviceConfig(id="b1-elev-1", kind="elevator", install_date="2025-06-01"),
    ])
    boss = cloud.user("dora", "dispatcher", ["s1"])
    engine = _engine(cloud)
    engine.run_once()
    (first,) = cloud.client.get("/api/v1/work-orders", headers=boss).json()
    for to in ("assigned", "in_progress", "resolved"):
        body = {"to": to, "assignee": "tess"} if to == "assigned" else {"to": to}
        cloud.client.post(f"/api/v1/work-orders/{first['id']}/transition", headers=boss,
                          json=body)
    cloud.clock.set(_day("2025-07-10"))
    engine.run_once()
    report = cloud.client.get("/api/v1/maintenance/compliance", headers=boss).json()
    (row,) = [r for r in report if r["plan"] == "routine_service"]
    assert (row["on_time"], row["late"], row["missed"]) == (1, 0, 1)
    assert row["on_time_rate"] == 0.5
    csv_text = cloud.client.get("/api/v1/maintenance/compliance.csv", headers=boss).text
    assert csv_text.splitlines()[0].startswith("site_id,kind,plan,total,on_time,late,missed")
    assert "s1,elevator,routine_service,2,1,0,1,0,0.5" in csv_text.splitlines()


def test_kpis_report_times_compliance_rework_and_satisfaction(cloud: CloudHarness) -> None:
    boss = cloud.user("dora", "dispatcher", ["s1"])

    def move(order_id: int, *states: str) -> None:
        for to in states:
            body = {"to": to, "assignee": "tess"} if to == "assigned" else {"to": to}
            r = cloud.client.post(f"/api/v1/work-orders/{order_id}/transition", headers=boss,
                                  json=body)
            assert r.status_code == 200, r.text

    cloud.send("s1", [event(type_="elevator.door_fault")])
    cloud.send("s1", [event(type_="elevator.leveling_error")])
    a, b = sorted(cloud.client.get("/api/v1/work-orders", headers=boss).json(),
                  key=lambda o: o["id"])
    cloud.clock.advance(600)
    move(a["id"], "assigned", "in_progress")
    cloud.clock.advance(3000)
    move(a["id"], "resolved", "closed")
    cloud.client.post(f"/api/v1/work-orders/{a['id']}/rating", headers=boss, json={"rating": 4})
    cloud.clock.advance(3 * 3600)
    move(b["id"], "assigned", "in_progress")
    report = cloud.client.get("/api/v1/kpis", headers=boss, params={"site_id": "s1"}).json()
    assert report["orders"] == 2
    assert report["response_time_s"]["median"] == (600 + 600 + 3000 + 3 * 3600) / 2
    assert report["resolve_time_s"]["count"] == 1
    assert report["resolve_time_s"]["median"] == 3600
    assert report["sla_compliance"]["response"] == 0.5
    assert report["completion_rate"] == 0.5
    assert report["rework_rate"] == 0.0
    assert report["satisfaction"] == {"count": 1, "mean": 4.0}
    assert report["per_kind"]["elevator"]["faults"] == 2
    csv_text = cloud.client.get("/api/v1/kpis.csv", headers=boss).text
    assert csv_text.splitlines()[0] == "site_id,device_id,kind,faults,mttr_hours,mtbf_hours"
    assert any(line.startswith("s1,b1-elev-1,elevator,2,1.0,") for line in csv_text.splitlines())
    assert cloud.client.get("/api/v1/kpis", headers=boss,
                            params={"site_id": "s2"}).status_code == 404


def test_a_failing_engine_pass_is_counted_and_the_engine_keeps_going(url: str) -> None:
    import asyncio

    from cloud.context import AppContext
    from cloud.db import Database
    from cloud.intake import Intake
    from cloud.policies import PolicyBook

    class BrokenDatabase(Database):
        """A database whose sessions fail, as during an outage."""

        def session(self) -> Any:
            raise ConnectionError("database unreachable")

    settings = settings_for(url, engine_interval=0.01)
    db = BrokenDatabase(settings)
    clock = ManualClock(T0)
    policies = PolicyBook.load()
    ctx = AppContext(settings=settings, db=db, clock=clock, policies=policies,
                     intake=Intake(db, policies, clock, settings.rework_window))
    engine = Engine(ctx)

    async def drive() -> int:
        task = asyncio.create_task(engine.run_forever())
        for _ in range(500):
            if engine.report.errors >= 3:
                break
            await asyncio.sleep(0.01)
        alive = not task.done()
        task.cancel()
        return int(alive)

    assert asyncio.run(drive()) == 1
    assert engine.report.errors >= 3
    db.dispose()


def test_a_committed_change_wakes_the_webhook_delivery(tmp_path: Path) -> None:
    """The delivery pass runs when a change is committed, not at its poll: the poll is made
    30 s here, so only the wake-up can deliver within the test's time."""
    import time

    transport = FakeTransport()
    settings = settings_for(f"sqlite:///{tmp_path}/cloud.db", run_engine=True,
                            webhook_poll_interval=30.0, engine_interval=3600.0)
    app = create_app(settings, clock=ManualClock(T0), webhook_transport=transport)
    with TestClient(app) as client:
        _admin_with_webhook(settings, client)
        time.sleep(0.5)  # the first pass (at start) is over; the next is 30 s away
        assert transport.calls == []
        gw = {"Authorization": f"Bearer {issue_gateway_token(settings, 's1')}"}
        client.post("/api/v1/events", headers=gw,
                    json={"events": [event().model_dump(mode="json")]})
        deadline = time.monotonic() + 10.0
        while not transport.calls and time.monotonic() < deadline:
            time.sleep(0.02)
        assert transport.calls, "the committed order did not wake the webhook delivery"
        topics = [c["topic"] for c in json.loads(transport.calls[0][1])["changes"]]
        assert topics == ["work_order.created"]
