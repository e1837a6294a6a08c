"""Two real cloud worker processes on PostgreSQL: concurrent batches never open a second order,
resends never count twice, and the event stream (fed from the database) reaches every worker."""

from __future__ import annotations

import json
import random
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from tests.servers_cloud import T0, event, served, settings_for, site_with_admin

pytestmark = pytest.mark.integration

DEVICES = [f"b1-elev-{i}" for i in range(1, 6)]
TYPES = ["elevator.door_fault", "elevator.leveling_error", "elevator.abnormal_vibration"]


def test_two_workers_open_exactly_one_order_per_device_and_type(
    pg_url: str, tmp_path: Path
) -> None:
    token = site_with_admin(settings_for(pg_url))
    events = [
        event(device_id=d, type_=t, episode=T0 + k)
        for d in DEVICES for t in TYPES for k in range(8)
    ]
    rng = random.Random(7)
    batches = []
    for _ in range(60):
        batches.append(rng.sample(events, 25))
    with served(pg_url, workers=2, workdir=tmp_path) as base:
        headers = {"Authorization": f"Bearer {token}"}

        def post(batch: list[object]) -> tuple[int, dict[str, object]]:
            body = {"events": [e.model_dump(mode="json") for e in batch]}  # type: ignore[attr-defined]
            r = httpx.post(base + "/api/v1/events", json=body, headers=headers, timeout=60)
            return r.status_code, r.json()

        with ThreadPoolExecutor(max_workers=12) as pool:
            results = list(pool.map(post, batches))
        # everything once more, so every event is sent at least once
        results.append(post(events))
        assert {code for code, _ in results} == {200}
        accepted = [e for _, body in results for e in body["accepted"]]  # type: ignore[attr-defined]
        assert sorted(accepted) == sorted({e.event_id for e in events})
        login = httpx.post(base + "/api/v1/auth/login",
                           json={"username": "ada", "password": "password-123"})
        user = {"Authorization": f"Bearer {login.json()['access_token']}"}
        orders = httpx.get(base + "/api/v1/work-orders", headers=user,
                           params={"limit": 1000}).json()
        keys = [(o["device_id"], o["event_type"]) for o in orders]
        assert sorted(keys) == sorted((d, t) for d in DEVICES for t in TYPES)
        assert all(o["event_count"] == 8 for o in orders)

        with httpx.stream("GET", base + "/api/v1/stream", headers=user,
                          params={"after": 0, "max_seconds": 2}, timeout=30) as stream:
            data = [json.loads(line[5:]) for line in stream.iter_lines()
                    if line.startswith("data:")]
        created = {m["work_order_id"] for m in data if m["topic"] == "work_order.created"}
        assert created == {o["id"] for o in orders}

        # close every order, then let the same faults come back concurrently: each closed
        # order is reopened once as rework, and no second order appears
        for o in orders:
            for to in ("assigned", "in_progress", "resolved", "closed"):
                body = {"to": to, "assignee": "tess"} if to == "assigned" else {"to": to}
                moved = httpx.post(f"{base}/api/v1/work-orders/{o['id']}/transition",
                                   json=body, headers=user)
                assert moved.status_code == 200, moved.text
        again = [event(device_id=d, type_=t, episode=T0 + 3600 + k)
                 for d in DEVICES for t in TYPES for k in range(4)]
        with ThreadPoolExecutor(max_workers=12) as pool:
            codes = list(pool.map(post, [rng.sample(again, 10) for _ in range(40)] + [again]))
        assert {code for code, _ in codes} == {200}
        after = httpx.get(base + "/api/v1/work-orders", headers=user,
                          params={"limit": 1000}).json()
        assert sorted(o["id"] for o in after) == sorted(o["id"] for o in orders)
        assert all(o["rework_count"] == 1 and o["state"] == "open" for o in after)
        assert all(o["event_count"] == 8 + 4 for o in after)
