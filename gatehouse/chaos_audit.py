"""Compare the ground truth with what the cloud stored, and check the edge's stores.

The definitions (also in ``docs/chaos.md``):

* **sent**: device-native events the broker acknowledged (the load's ground truth). From
  the PUBACK on, the broker, the edge's persistent session and its outbox answer for them.
* **received**: sent events whose ``event_id`` is in the cloud's ``events`` table.
* **lost**: sent but not received. Also counted: events left in the edge's outbox at the
  end, and events the cloud rejected (kept in the edge's dead letters as ``cloud_rejected``).
* **duplicated**: the same (device, type, state, episode timestamp) stored twice under
  different ids, plus detector episodes raised again while still open (a second ``raised``
  for a (device, type) with no ``cleared`` in between: the same episode told twice).
* **work orders duplicated**: more than one active order for one (device, event type), or
  more orders for a (device, event type) than distinct episodes raised for it.
* **injected faults detected**: simulator faults with at least one raised event for that
  device and type in the cloud (reported; detection recall belongs to the detectors).
"""

from __future__ import annotations

import json
import sqlite3
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gatehouse.chaos_load import SentEvent

ACTIVE_STATES = ("open", "assigned", "in_progress", "on_hold", "resolved")


@dataclass(frozen=True)
class CloudEvent:
    event_id: str
    device_id: str
    type: str
    state: str
    ts: float
    received_at: float = 0.0


@dataclass(frozen=True)
class CloudOrder:
    id: int
    device_id: str
    event_type: str
    state: str


def read_cloud(database_url: str, site_id: str) -> tuple[list[CloudEvent], list[CloudOrder]]:
    """The site's events and event-sourced work orders, read straight from the database."""
    from sqlalchemy import create_engine, text

    engine = create_engine(database_url)
    try:
        with engine.connect() as conn:
            events = [
                CloudEvent(str(r[0]), str(r[1]), str(r[2]), str(r[3]), float(r[4]), float(r[5]))
                for r in conn.execute(text(
                    "SELECT event_id, device_id, type, state, ts, received_at FROM events "
                    "WHERE site_id = :s"), {"s": site_id})
            ]
            orders = [
                CloudOrder(int(r[0]), str(r[1]), str(r[2]), str(r[3]))
                for r in conn.execute(text(
                    "SELECT id, device_id, event_type, state FROM work_orders "
                    "WHERE site_id = :s AND source = 'event'"), {"s": site_id})
            ]
    finally:
        engine.dispose()
    return events, orders


def integrity(path: Path) -> str:
    """``PRAGMA integrity_check`` of an SQLite file (``"ok"``, ``"missing"`` or the errors)."""
    if not path.exists():
        return "missing"
    conn = sqlite3.connect(path)
    try:
        rows = conn.execute("PRAGMA integrity_check").fetchall()
    except sqlite3.DatabaseError as exc:
        return f"error: {exc}"
    finally:
        conn.close()
    return "; ".join(str(r[0]) for r in rows)


@dataclass(frozen=True)
class EdgeStores:
    """What the stopped edge's files say: outbox depth per lane, durable eviction counts,
    events the cloud rejected (dead letters)."""

    outbox_depth: dict[str, int]
    evicted: dict[str, int]
    cloud_rejected: int


def read_edge_stores(data_dir: Path) -> EdgeStores:
    depth: dict[str, int] = {}
    evicted: dict[str, int] = {}
    rejected = 0
    outbox = data_dir / "outbox.db"
    if outbox.exists():
        conn = sqlite3.connect(outbox)
        try:
            depth = {str(lane): int(n) for lane, n in conn.execute(
                "SELECT lane, COUNT(*) FROM outbox GROUP BY lane")}
            evicted = {str(name).removeprefix("evicted:"): int(v) for name, v in conn.execute(
                "SELECT name, value FROM counters WHERE name LIKE 'evicted:%'")}
        finally:
            conn.close()
    letters = data_dir / "deadletters.db"
    if letters.exists():
        conn = sqlite3.connect(letters)
        try:
            row = conn.execute("SELECT COUNT(*) FROM dead_letters WHERE reason = "
                               "'cloud_rejected'").fetchone()
            rejected = int(row[0]) if row else 0
        finally:
            conn.close()
    return EdgeStores(depth, evicted, rejected)


def load_fault_truth(path: Path) -> list[dict[str, Any]]:
    """The simulator's truth file (one injected fault per line); empty when absent."""
    if not path.exists():
        return []
    out: list[dict[str, Any]] = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            value = json.loads(line)
            if isinstance(value, dict):
                out.append(value)
    return out


@dataclass
class Audit:
    """The comparison's result; :meth:`as_dict` is the JSON report's ``delivery`` part."""

    events_sent: int = 0
    events_sent_critical: int = 0
    events_received: int = 0
    events_lost: int = 0
    lost_ids: list[str] = field(default_factory=list)
    events_duplicated: int = 0
    same_episode_stored_twice: int = 0
    episodes_reraised: int = 0
    reraised_soon_after_edge_restart: int = 0
    reraised_examples: list[str] = field(default_factory=list)
    work_orders: int = 0
    work_orders_duplicated: int = 0
    cloud_events_total: int = 0
    detector_events: int = 0
    faults_injected: int = 0
    faults_detected: int = 0
    outbox_left: dict[str, int] = field(default_factory=dict)
    cloud_rejected: int = 0

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def audit(sent: Mapping[str, SentEvent], events: Iterable[CloudEvent],
          orders: Iterable[CloudOrder], stores: EdgeStores,
          faults: Iterable[Mapping[str, Any]], native_types: Iterable[str],
          edge_restarts: Sequence[float] = (), restart_window_s: float = 30.0) -> Audit:
    """Compare the ground truth ``sent`` with the cloud's ``events`` and ``orders``.

    ``edge_restarts`` (wall-clock times the edge was started again after a kill) let the
    audit say how many re-raised episodes reached the cloud within ``restart_window_s``
    of a restart: the mark of detector state lost in a crash."""
    events = list(events)
    orders = list(orders)
    native = set(native_types)
    result = Audit()
    cloud_ids = {e.event_id for e in events}
    result.cloud_events_total = len(events)
    result.events_sent = len(sent)
    result.events_sent_critical = sum(1 for e in sent.values() if e.severity == "critical")
    lost = sorted(eid for eid in sent if eid not in cloud_ids)
    result.events_lost = len(lost)
    result.lost_ids = lost[:20]
    result.events_received = len(sent) - len(lost)

    same = Counter((e.device_id, e.type, e.state, round(e.ts, 3)) for e in events)
    result.same_episode_stored_twice = sum(n - 1 for n in same.values() if n > 1)

    by_key: dict[tuple[str, str], list[CloudEvent]] = defaultdict(list)
    for e in events:
        if e.type not in native:
            by_key[(e.device_id, e.type)].append(e)
    episodes: Counter[tuple[str, str]] = Counter()
    for (device, etype), rows in by_key.items():
        rows.sort(key=lambda r: (r.ts, r.state != "cleared"))
        open_since: float | None = None
        for row in rows:
            if row.state == "raised":
                result.detector_events += 1
                if open_since is not None:
                    result.episodes_reraised += 1
                    if any(0.0 <= row.received_at - t <= restart_window_s
                           for t in edge_restarts):
                        result.reraised_soon_after_edge_restart += 1
                    if len(result.reraised_examples) < 10:
                        result.reraised_examples.append(
                            f"{device} {etype}: raised at {open_since:.3f} and again at "
                            f"{row.ts:.3f} with no clear between")
                else:
                    episodes[(device, etype)] += 1
                open_since = row.ts if open_since is None else open_since
            elif row.state == "cleared":
                result.detector_events += 1
                open_since = None
    for e in events:
        if e.type in native and e.state == "raised":
            episodes[(e.device_id, e.type)] += 1
    result.events_duplicated = result.same_episode_stored_twice + result.episodes_reraised

    result.work_orders = len(orders)
    active = Counter((o.device_id, o.event_type) for o in orders if o.state in ACTIVE_STATES)
    dup_active = sum(n - 1 for n in active.values() if n > 1)
    per_key = Counter((o.device_id, o.event_type) for o in orders)
    beyond = sum(max(0, n - max(episodes.get(k, 0), 1)) for k, n in per_key.items())
    result.work_orders_duplicated = max(dup_active, beyond)

    faults = list(faults)
    result.faults_injected = len(faults)
    raised = {(e.device_id, e.type) for e in events if e.state == "raised"}
    result.faults_detected = sum(
        1 for f in faults if (str(f.get("device_id")), str(f.get("type"))) in raised)

    result.outbox_left = {lane: n for lane, n in stores.outbox_depth.items()
                          if lane != "telemetry"}
    result.cloud_rejected = stores.cloud_rejected
    return result
