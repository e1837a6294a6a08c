"""The durable outbox: what the edge still owes the cloud (and the telemetry database).

One SQLite database in WAL mode holds several named *lanes*. A lane is a FIFO of
``(key, payload bytes)`` items; keys are unique within a lane, so re-inserting an item that
is still queued (an event re-derived after a crash and a redelivery) is a no-op.

Lane rules are data (:class:`LaneSpec`):

* ``critical``: committed with ``synchronous=FULL``, never evicted, drained first;
* ``events``: committed with ``synchronous=FULL``, never evicted;
* ``telemetry``: bounded by bytes; putting past the bound evicts the oldest items first and
  every evicted item is counted, persistently, in the same transaction.

Only :meth:`Outbox.ack` removes an item (what the receiver acknowledged) apart from
eviction. Every method is thread-safe. A write that hits a full disk raises
:class:`~edge.sqlite_store.StoreFull` and changes nothing.

The same database holds the detection layer's *episode registry* (table ``episodes``: the
open fault episode of each (device, event type) and its start). An :class:`Entry` may carry
the :class:`EpisodeState` its event causes; :meth:`Outbox.put_many` writes it in the same
transaction as the event, so after a SIGKILL the registry and the queued events always
agree (both written, or neither). :meth:`Outbox.open_episodes` reads the registry at start.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from edge.sqlite_store import StoreError, StoreFull, is_disk_full, open_store

CRITICAL = "critical"
EVENTS = "events"
TELEMETRY = "telemetry"


@dataclass(frozen=True, slots=True)
class LaneSpec:
    """How a lane behaves: a byte bound (``None``: unbounded, never evicted) and whether
    its commits are flushed to the disk (``synchronous=FULL``) before returning."""

    name: str
    max_bytes: int | None = None
    sync_full: bool = True


def default_lanes(telemetry_max_bytes: int = 64 * 1024 * 1024) -> tuple[LaneSpec, ...]:
    """The edge's three lanes: critical and events durable and unbounded, telemetry bounded."""
    if telemetry_max_bytes <= 0:
        raise ValueError(f"telemetry_max_bytes must be positive, got {telemetry_max_bytes}")
    return (
        LaneSpec(CRITICAL),
        LaneSpec(EVENTS),
        LaneSpec(TELEMETRY, max_bytes=telemetry_max_bytes, sync_full=False),
    )


@dataclass(frozen=True, slots=True)
class EpisodeState:
    """One (device, event type)'s episode as the registry keeps it.

    ``open``: an episode raised at data time ``start`` (its event id names it) and not yet
    cleared; ``raised_ts`` is the raised event's timestamp. A closed state deletes the row.
    """

    device_id: str
    event_type: str
    start: float
    raised_ts: float
    open: bool = True


@dataclass(frozen=True, slots=True)
class Entry:
    """An item to put: ``items`` is how many records the payload holds (evictions count
    records, so a spooled batch of 500 readings evicted counts 500). ``episode``: the
    registry change the item's event causes, written in the same transaction."""

    lane: str
    key: str
    payload: bytes
    items: int = 1
    episode: EpisodeState | None = None


@dataclass(frozen=True, slots=True)
class Item:
    """A queued item as :meth:`Outbox.peek` returns it."""

    lane: str
    key: str
    payload: bytes
    created: float
    items: int


_SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (
    id INTEGER PRIMARY KEY,
    lane TEXT NOT NULL,
    key TEXT NOT NULL,
    payload BLOB NOT NULL,
    size INTEGER NOT NULL,
    items INTEGER NOT NULL,
    created REAL NOT NULL,
    UNIQUE (lane, key)
);
CREATE INDEX IF NOT EXISTS outbox_lane_id ON outbox (lane, id);
CREATE TABLE IF NOT EXISTS counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS episodes (
    device_id TEXT NOT NULL,
    event_type TEXT NOT NULL,
    start REAL NOT NULL,
    raised_ts REAL NOT NULL,
    PRIMARY KEY (device_id, event_type)
);
"""


class Outbox:
    """Lanes of durable items in one SQLite file (see the module docstring for the rules)."""

    def __init__(
        self,
        path: Path | str,
        lanes: Sequence[LaneSpec] | None = None,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        specs = tuple(lanes) if lanes is not None else default_lanes()
        if not specs:
            raise ValueError("an outbox needs at least one lane")
        self.path = Path(path)
        self._lanes = {spec.name: spec for spec in specs}
        if len(self._lanes) != len(specs):
            raise ValueError("lane names must be unique")
        self._clock = clock
        self._lock = threading.Lock()
        self._conn = open_store(self.path)
        try:
            self._conn.executescript(_SCHEMA)
        except sqlite3.Error as exc:
            raise StoreError(f"{self.path}: cannot create the outbox schema: {exc}") from exc
        self._bytes: dict[str, int] = {name: 0 for name in self._lanes}
        self._depth: dict[str, int] = {name: 0 for name in self._lanes}
        self._evicted: dict[str, int] = {name: 0 for name in self._lanes}
        for lane, size, count in self._conn.execute(
            "SELECT lane, COALESCE(SUM(size), 0), COUNT(*) FROM outbox GROUP BY lane"
        ):
            if lane in self._lanes:
                self._bytes[lane] = int(size)
                self._depth[lane] = int(count)
        for name, value in self._conn.execute("SELECT name, value FROM counters"):
            lane = str(name).removeprefix("evicted:")
            if lane in self._lanes:
                self._evicted[lane] = int(value)

    @property
    def lanes(self) -> tuple[str, ...]:
        return tuple(self._lanes)

    def put(self, lane: str, key: str, payload: bytes, *, items: int = 1) -> bool:
        """Queue one item; ``False`` if ``key`` is already queued in ``lane`` (no-op)."""
        return self.put_many([Entry(lane, key, payload, items)]) == 1

    def put_many(self, entries: Iterable[Entry]) -> int:
        """Queue several items in one transaction; return how many were new.

        The transaction is flushed to the disk before returning when any entry's lane is
        ``sync_full``. Bounded lanes evict their oldest items past the bound (counted).
        Entries' episode changes are applied in order in the same transaction, whether or
        not their item was new (a re-derived event still carries its registry change).
        """
        batch = list(entries)
        if not batch:
            return 0
        for entry in batch:
            self._spec(entry.lane)
            if entry.items < 0:
                raise ValueError(f"items must not be negative, got {entry.items}")
        full = any(self._lanes[e.lane].sync_full for e in batch)
        now = self._clock()
        with self._lock:
            bytes_after = dict(self._bytes)
            depth_after = dict(self._depth)
            evicted_after = dict(self._evicted)
            inserted = 0

            def work(conn: sqlite3.Connection) -> None:
                nonlocal inserted
                for e in batch:
                    cur = conn.execute(
                        "INSERT OR IGNORE INTO outbox (lane, key, payload, size, items, created)"
                        " VALUES (?, ?, ?, ?, ?, ?)",
                        (e.lane, e.key, e.payload, len(e.payload), e.items, now),
                    )
                    if cur.rowcount == 1:
                        inserted += 1
                        bytes_after[e.lane] += len(e.payload)
                        depth_after[e.lane] += 1
                    if e.episode is not None:
                        _write_episode(conn, e.episode)
                for lane in {e.lane for e in batch}:
                    bound = self._lanes[lane].max_bytes
                    if bound is not None and bytes_after[lane] > bound:
                        freed, rows, records = self._evict_locked(
                            conn, lane, bytes_after[lane] - bound
                        )
                        bytes_after[lane] -= freed
                        depth_after[lane] -= rows
                        evicted_after[lane] += records

            self._transaction(work, full=full)
            self._bytes, self._depth, self._evicted = bytes_after, depth_after, evicted_after
            return inserted

    def peek(self, lane: str, n: int) -> list[Item]:
        """The ``n`` oldest items of ``lane`` (they stay queued until acknowledged)."""
        self._spec(lane)
        with self._lock:
            rows = self._conn.execute(
                "SELECT key, payload, created, items FROM outbox WHERE lane = ?"
                " ORDER BY id LIMIT ?",
                (lane, max(0, n)),
            ).fetchall()
        return [Item(lane, key, bytes(data), created, items) for key, data, created, items in rows]

    def ack(self, lane: str, keys: Iterable[str]) -> int:
        """Remove acknowledged items; unknown keys are ignored. Return how many went."""
        self._spec(lane)
        wanted = list(dict.fromkeys(keys))
        if not wanted:
            return 0
        with self._lock:
            removed_bytes = 0
            removed = 0

            def work(conn: sqlite3.Connection) -> None:
                nonlocal removed_bytes, removed
                for start in range(0, len(wanted), 500):
                    chunk = wanted[start:start + 500]
                    marks = ",".join("?" * len(chunk))
                    size, count = conn.execute(
                        f"SELECT COALESCE(SUM(size), 0), COUNT(*) FROM outbox"
                        f" WHERE lane = ? AND key IN ({marks})",
                        (lane, *chunk),
                    ).fetchone()
                    conn.execute(
                        f"DELETE FROM outbox WHERE lane = ? AND key IN ({marks})", (lane, *chunk)
                    )
                    removed_bytes += int(size)
                    removed += int(count)

            self._transaction(work, full=False)
            self._bytes[lane] -= removed_bytes
            self._depth[lane] -= removed
            return removed

    def shrink(self, lane: str, max_bytes: int) -> int:
        """Evict the oldest items of a bounded lane until it holds at most ``max_bytes``
        (used to make room when the disk fills). Return the records evicted."""
        spec = self._spec(lane)
        if spec.max_bytes is None:
            raise ValueError(f"lane {lane!r} is never evicted")
        with self._lock:
            excess = self._bytes[lane] - max(0, max_bytes)
            if excess <= 0:
                return 0
            freed = rows = records = 0

            def work(conn: sqlite3.Connection) -> None:
                nonlocal freed, rows, records
                freed, rows, records = self._evict_locked(conn, lane, excess)

            self._transaction(work, full=False)
            self._bytes[lane] -= freed
            self._depth[lane] -= rows
            self._evicted[lane] += records
            return records

    def depth(self, lane: str) -> int:
        """Items queued in ``lane``."""
        self._spec(lane)
        return self._depth[lane]

    def size_bytes(self, lane: str) -> int:
        """Payload bytes queued in ``lane``."""
        self._spec(lane)
        return self._bytes[lane]

    def oldest_age(self, lane: str) -> float | None:
        """Seconds the oldest item of ``lane`` has waited; ``None`` when the lane is empty."""
        self._spec(lane)
        with self._lock:
            row = self._conn.execute(
                "SELECT created FROM outbox WHERE lane = ? ORDER BY id LIMIT 1", (lane,)
            ).fetchone()
        return None if row is None else max(0.0, self._clock() - float(row[0]))

    def evictions(self, lane: str) -> int:
        """Records evicted from ``lane`` since the outbox was created (survives restarts)."""
        self._spec(lane)
        return self._evicted[lane]

    def open_episodes(self) -> list[EpisodeState]:
        """The episode registry: every (device, event type) with an open episode."""
        with self._lock:
            try:
                rows = self._conn.execute(
                    "SELECT device_id, event_type, start, raised_ts FROM episodes"
                    " ORDER BY device_id, event_type"
                ).fetchall()
            except sqlite3.Error as exc:
                raise StoreError(f"{self.path}: cannot read the episode registry: {exc}") from exc
        return [EpisodeState(str(d), str(t), float(s), float(r)) for d, t, s, r in rows]

    def checkpoint(self) -> None:
        """Fold the WAL back into the database file (keeps the WAL from growing)."""
        with self._lock:
            try:
                self._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            except sqlite3.Error as exc:
                if not is_disk_full(exc):
                    raise StoreError(f"{self.path}: checkpoint failed: {exc}") from exc

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def _spec(self, lane: str) -> LaneSpec:
        spec = self._lanes.get(lane)
        if spec is None:
            raise KeyError(f"unknown outbox lane {lane!r}; lanes: {', '.join(self._lanes)}")
        return spec

    def _evict_locked(
        self, conn: sqlite3.Connection, lane: str, excess: int
    ) -> tuple[int, int, int]:
        """Delete the oldest items of ``lane`` totalling at least ``excess`` bytes;
        return (bytes freed, rows deleted, records counted as evicted)."""
        freed = rows = records = 0
        last_id: int | None = None
        cur = conn.execute("SELECT id, size, items FROM outbox WHERE lane = ? ORDER BY id", (lane,))
        try:
            while freed < excess:
                row = cur.fetchone()
                if row is None:
                    break
                freed += int(row[1])
                rows += 1
                records += int(row[2])
                last_id = int(row[0])
        finally:
            cur.close()
        if last_id is None:
            return 0, 0, 0
        conn.execute("DELETE FROM outbox WHERE lane = ? AND id <= ?", (lane, last_id))
        conn.execute(
            "INSERT INTO counters (name, value) VALUES (?, ?)"
            " ON CONFLICT(name) DO UPDATE SET value = value + excluded.value",
            (f"evicted:{lane}", records),
        )
        return freed, rows, records

    def _transaction(self, work: Callable[[sqlite3.Connection], None], *, full: bool) -> None:
        conn = self._conn
        try:
            conn.execute(f"PRAGMA synchronous={'FULL' if full else 'NORMAL'}")
            conn.execute("BEGIN IMMEDIATE")
            try:
                work(conn)
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
        except sqlite3.Error as exc:
            if is_disk_full(exc):
                raise StoreFull(f"{self.path}: disk full: {exc}") from exc
            raise StoreError(f"{self.path}: write failed: {exc}") from exc


def _write_episode(conn: sqlite3.Connection, state: EpisodeState) -> None:
    if state.open:
        conn.execute(
            "INSERT INTO episodes (device_id, event_type, start, raised_ts) VALUES (?, ?, ?, ?)"
            " ON CONFLICT(device_id, event_type)"
            " DO UPDATE SET start = excluded.start, raised_ts = excluded.raised_ts",
            (state.device_id, state.event_type, state.start, state.raised_ts),
        )
    else:
        conn.execute(
            "DELETE FROM episodes WHERE device_id = ? AND event_type = ?",
            (state.device_id, state.event_type),
        )
