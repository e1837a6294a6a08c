"""Property: however events are split into batches and resent, the intake stores each once,
keeps one active order per (device, type), counts every raised event once, and leaves the
order's ``condition_cleared`` as the device's latest event says."""

from __future__ import annotations

import itertools
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select

from cloud.bootstrap import provision_site
from cloud.clock import ManualClock
from cloud.db import Database
from cloud.intake import Intake
from cloud.models import ACTIVE_STATES, WorkOrder
from cloud.policies import PolicyBook
from device_profiles.messages import Event, EventBatch
from tests.servers_cloud import T0, event, settings_for

KEYS = [(d, t) for d in ("e1", "e2") for t in ("elevator.door_fault", "elevator.leveling_error")]
_sites = itertools.count()

steps = st.lists(st.tuples(st.integers(0, len(KEYS) - 1), st.booleans()), min_size=1,
                 max_size=30)
cuts = st.lists(st.integers(1, 8), min_size=1, max_size=30)
resends = st.lists(st.integers(0, 1000), max_size=10)


def _batches(events: list[Event], sizes: list[int]) -> list[list[Event]]:
    out, i = [], 0
    for size in itertools.cycle(sizes):
        if i >= len(events):
            return out
        out.append(events[i:i + size])
        i += size
    return out


def test_any_batching_and_resending_gives_the_same_orders(tmp_path: Path) -> None:
    cfg = settings_for(f"sqlite:///{tmp_path}/prop.db")
    db = Database(cfg)
    db.migrate()
    intake = Intake(db, PolicyBook.load(), ManualClock(T0 + 10_000), cfg.rework_window)

    @given(steps=steps, sizes=cuts, again=resends)
    @settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
    def check(steps: list[tuple[int, bool]], sizes: list[int], again: list[int]) -> None:
        site = f"p{next(_sites)}"
        provision_site(cfg, site, site, [])
        events = [
            event(site_id=site, device_id=KEYS[k][0], type_=KEYS[k][1],
                  state="cleared" if clear else "raised", episode=T0 + i)
            for i, (k, clear) in enumerate(steps)
        ]
        batches = _batches(events, sizes)
        accepted: list[str] = []
        duplicates: list[str] = []
        for n, batch in enumerate(batches):
            result = intake.ingest(site, EventBatch(events=batch))
            accepted += result.accepted
            duplicates += result.duplicates
            assert result.rejected == []
            if again and n > 0:
                old = batches[again[n % len(again)] % n]
                resent = intake.ingest(site, EventBatch(events=list(reversed(old))))
                assert resent.accepted == []
                duplicates += resent.duplicates
        assert sorted(accepted) == sorted(e.event_id for e in events)
        with db.session() as session:
            orders = session.scalars(select(WorkOrder).where(WorkOrder.site_id == site)).all()
        by_key = {(o.device_id, o.event_type): o for o in orders}
        assert len(by_key) == len(orders)
        for key in KEYS:
            mine = [e for e in events if (e.device_id, e.type) == key]
            raised = [e for e in mine if e.state == "raised"]
            if not raised:
                assert key not in by_key
                continue
            order = by_key[key]
            assert order.state in ACTIVE_STATES
            assert order.event_count == len(raised)
            assert order.condition_cleared == (mine[-1].state == "cleared")
            assert order.last_event_at == raised[-1].ts

    check()
    db.dispose()
