"""The edge against the real cloud app (in process, SQLite): the event contract, idempotent
resends, and one work order per device and event type however often an event repeats."""

from __future__ import annotations

import json
import secrets
import sqlite3
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from device_profiles.loader import load_profiles
from device_profiles.messages import Event
from device_profiles.site import DeviceConfig
from edge.runner import Agent, AgentOptions
from tests.servers_edge import SourceBox, make_site

PROFILES = load_profiles()
GATE = "gh/s1/access_gate/gate-1/event"


def wait_until(
    cond: Callable[[], bool], timeout: float = 20.0, state: Callable[[], object] = str
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return
        time.sleep(0.05)
    raise AssertionError(f"condition not reached in time; state: {state()}")


@pytest.fixture
def cloud(tmp_path: Path) -> Iterator[tuple[httpx.Client, Path, str]]:
    from fastapi.testclient import TestClient

    from cloud.app import create_app
    from cloud.bootstrap import issue_gateway_token, provision_site
    from cloud.settings import Settings

    db = tmp_path / "cloud.db"
    settings = Settings(database_url=f"sqlite:///{db}", secret_key=secrets.token_urlsafe(32),
                        run_engine=False)
    app = create_app(settings)
    site = make_site("s1", devices=[DeviceConfig(id="gate-1", kind="access_gate")])
    provision_site(settings, "s1", "test", site.all_devices())
    token = issue_gateway_token(settings, "s1")
    with TestClient(app) as client:
        yield client, db, token


def rows(db: Path, sql: str) -> list[tuple[object, ...]]:
    conn = sqlite3.connect(db)
    try:
        return conn.execute(sql).fetchall()
    finally:
        conn.close()


def test_events_are_stored_once_and_open_one_order(
    cloud: tuple[httpx.Client, Path, str], tmp_path: Path
) -> None:
    client, db, token = cloud
    box = SourceBox()
    site = make_site(
        "s1", data_dir=tmp_path / "edge", token=token, cloud_url=str(client.base_url),
        devices=[DeviceConfig(id="gate-1", kind="access_gate")],
    )
    agent = Agent(
        site, profiles=PROFILES, options=AgentOptions(reserve_bytes=0, low_water_bytes=0),
        outputs={}, source_factory=box, http_client=client,
    )
    agent.start()
    try:
        for i in range(20):
            body = json.dumps({"ts": 1_790_000_000 + i, "type": "forced_open"}).encode()
            box.get.push(GATE, body)
            box.get.push(GATE, body)  # a redelivery: same id, stored once
        wait_until(lambda: agent.stats()["forwarded"] == 20, state=agent.stats)
        first = Event(
            event_id="camera-style-0001", site_id="s1", gateway_id="gw-test", device_id="gate-1",
            kind="access_gate", type="gate.forced_open", severity="critical", state="raised",
            ts=1_790_000_000.5,
        )
        agent.emit_event(first)
        agent.emit_event(first)
        wait_until(lambda: agent.stats()["outbox_depth"] == 0, state=agent.stats)
    finally:
        agent.stop()
    assert rows(db, "SELECT COUNT(*), COUNT(DISTINCT event_id) FROM events") == [(21, 21)]
    orders = rows(db, "SELECT device_id, event_type, event_count FROM work_orders"
                      " WHERE source = 'event'")
    assert orders == [("gate-1", "gate.forced_open", 21)]
