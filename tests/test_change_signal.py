"""The live stream is woken by commits, not by its poll: in-process on SQLite, and across
processes on PostgreSQL through LISTEN/NOTIFY (two separate servers on one database, each
polling only every 30 s, must still show each other's orders within a couple of seconds)."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select, text
from sqlalchemy.orm import Session

from cloud import changes
from cloud.bootstrap import provision_site
from cloud.change_signal import ChangeSignal
from cloud.db import Database
from cloud.models import WorkOrder
from cloud.orders import new_order
from device_profiles.schema import WorkOrderPolicy
from tests.servers_cloud import T0, event, served, settings_for, site_with_admin


def test_a_ticket_is_set_by_a_notify_from_another_thread() -> None:
    signal = ChangeSignal()

    async def main() -> tuple[bool, bool, int]:
        first = signal.ticket()
        threading.Timer(0.05, signal.notify).start()
        woke = await signal.wait(first, 5.0)
        second = signal.ticket()
        timed_out = await signal.wait(second, 0.05)
        return woke, timed_out, signal.waiting

    woke, timed_out, waiting = asyncio.run(main())
    assert woke and not timed_out
    assert waiting == 0  # tickets are dropped after their wait, set or not


def test_a_notify_before_the_wait_is_not_lost() -> None:
    """The stream takes its ticket before reading: a commit between read and wait counts."""
    signal = ChangeSignal()

    async def main() -> bool:
        ticket = signal.ticket()
        signal.notify()  # "committed" while the stream was still reading
        return await signal.wait(ticket, 0.5)

    assert asyncio.run(main())


def _add_order(session: Session, device_id: str) -> None:
    policy = WorkOrderPolicy(category="engineering", priority="P3", team="pumps",
                             response_sla=3600, resolve_sla=86400)
    order = new_order(site_id="s1", policy=policy, source="event", title="pressure high",
                      opened_at=T0, device_id=device_id)
    session.add(order)
    session.flush()
    changes.record(session, order, "work_order.created", T0)


def test_a_committed_change_notifies_and_a_rolled_back_one_does_not(tmp_path: Path) -> None:
    settings = settings_for(f"sqlite:///{tmp_path / 'cloud.db'}")
    provision_site(settings, "s1", "Site one", [])
    db = Database(settings)
    before = db.changes.notified
    with db.session() as session, session.begin():
        _add_order(session, "b1-pump-1")
    assert db.changes.notified == before + 1
    with db.session() as session:
        with session.begin():
            pass  # a commit without a change wakes nobody
        assert db.changes.notified == before + 1
        session.begin()
        _add_order(session, "b1-pump-2")
        session.rollback()
        with session.begin():
            pass  # the rolled-back change's mark must not leak into the next commit
    assert db.changes.notified == before + 1
    with db.session() as session, session.begin():
        with session.begin_nested():  # as the intake opens an order: inside a SAVEPOINT
            _add_order(session, "b1-pump-3")
        assert db.changes.notified == before + 1, "woken before the change was committed"
        savepoint = session.begin_nested()
        session.execute(text("SELECT 1"))
        savepoint.rollback()  # a rolled-back savepoint keeps the outer change's mark
    assert db.changes.notified == before + 2
    with db.session() as session:
        assert session.scalar(select(func.count()).select_from(WorkOrder)) == 2


def _stream_first_change(base: str, user: dict[str, str], seconds: float,
                         got: dict[str, Any], ready: threading.Event) -> None:
    with httpx.stream("GET", base + "/api/v1/stream", headers=user,
                      params={"max_seconds": seconds}, timeout=seconds + 30) as reply:
        ready.set()
        for line in reply.iter_lines():
            if line.startswith("data:"):
                got["at"] = time.monotonic()
                got["topic"] = json.loads(line[5:])["topic"]
                return


@pytest.mark.integration
def test_a_change_committed_by_one_server_wakes_another_servers_stream(
    pg_url: str, tmp_path: Path
) -> None:
    token = site_with_admin(settings_for(pg_url))
    slow_poll = {"GATEHOUSE_STREAM_POLL_INTERVAL": "30"}
    with served(pg_url, 1, tmp_path, env=slow_poll) as a, \
            served(pg_url, 1, tmp_path, env=slow_poll) as b:
        login = httpx.post(b + "/api/v1/auth/login",
                           json={"username": "ada", "password": "password-123"})
        user = {"Authorization": f"Bearer {login.json()['access_token']}"}
        deadline = time.monotonic() + 30
        while not httpx.get(b + "/healthz").json()["stream"]["listening"]:
            assert time.monotonic() < deadline, "server b never started listening"
            time.sleep(0.1)
        got: dict[str, Any] = {}
        ready = threading.Event()
        reader = threading.Thread(target=_stream_first_change, args=(b, user, 20.0, got, ready))
        reader.start()
        assert ready.wait(30)
        time.sleep(0.5)  # the stream has read the (empty) table and now waits on its poll
        sent = time.monotonic()
        body = {"events": [event().model_dump(mode="json")]}
        reply = httpx.post(a + "/api/v1/events", json=body,
                           headers={"Authorization": f"Bearer {token}"})
        assert reply.status_code == 200, reply.text
        reader.join(40)
        assert got, "server b's stream never saw the order server a opened"
        assert got["topic"] == "work_order.created"
        # a 30 s poll cannot explain this: server b was woken by server a's NOTIFY
        assert got["at"] - sent < 3.0, f"took {got['at'] - sent:.1f} s"
        assert httpx.get(b + "/healthz").json()["stream"]["wakeups"] >= 1


@pytest.mark.integration
def test_the_listener_reconnects_after_its_connection_is_killed(pg_url: str) -> None:
    """A PostgreSQL restart or a killed backend: the listener reconnects (with backoff),
    wakes the streams once on reconnect, and then hears commits again."""
    settings = settings_for(pg_url)
    provision_site(settings, "s1", "Site one", [])
    db = Database(settings)
    listener = db.change_listener()
    assert listener is not None
    listener.start()
    try:
        wait_until(lambda: listener.connected)
        with db.session() as session:
            session.execute(text(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE query LIKE 'LISTEN%' AND pid <> pg_backend_pid()"
            ))
            session.commit()
        wait_until(lambda: listener.reconnects == 1 and listener.connected)
        heard = listener.received
        other = Database(settings)  # another "worker": only NOTIFY can reach the listener
        with other.session() as session, session.begin():
            _add_order(session, "b1-pump-9")
        other.dispose()
        wait_until(lambda: listener.received > heard)
    finally:
        listener.stop()
        db.dispose()


def wait_until(cond: Callable[[], bool], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.05)
