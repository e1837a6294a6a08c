"""The dead-letter store: what the edge refused, kept for a person to look at.

Every rejected MQTT message (and every event the cloud refused) is kept with its topic,
the first bytes of its payload, the reason and when it happened. The store is bounded by
rows: past ``max_rows`` the oldest letters go (they are already counted by reason in the
metrics, so nothing is lost from the accounting). Writes are batched per burst.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from edge.sqlite_store import StoreError, StoreFull, is_disk_full, open_store

PAYLOAD_PREFIX = 512
"""Bytes of a rejected payload kept (enough to see what it was, never a whole flood)."""

_SCHEMA = """
CREATE TABLE IF NOT EXISTS dead_letters (
    id INTEGER PRIMARY KEY,
    ts REAL NOT NULL,
    topic TEXT NOT NULL,
    reason TEXT NOT NULL,
    detail TEXT NOT NULL,
    payload BLOB NOT NULL,
    size INTEGER NOT NULL
);
"""


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """One refused message (``payload`` is a prefix; ``size`` is the original length)."""

    topic: str
    reason: str
    detail: str
    payload: bytes
    size: int
    ts: float = 0.0


class DeadLetters:
    """A bounded SQLite table of refused messages; thread-safe."""

    def __init__(
        self, path: Path | str, *, max_rows: int = 10_000, clock: Callable[[], float] = time.time
    ) -> None:
        if max_rows < 1:
            raise ValueError(f"max_rows must be at least 1, got {max_rows}")
        self.path = Path(path)
        self._max_rows = max_rows
        self._clock = clock
        self._lock = threading.Lock()
        self._conn = open_store(self.path)
        try:
            self._conn.executescript(_SCHEMA)
        except sqlite3.Error as exc:
            raise StoreError(f"{self.path}: cannot create the dead-letter schema: {exc}") from exc

    def add_many(self, letters: Iterable[tuple[str, str, str, bytes]]) -> int:
        """Keep ``(topic, reason, detail, payload)`` letters; return how many were kept.

        Raises :class:`~edge.sqlite_store.StoreFull` when the disk is full (nothing kept).
        """
        now = self._clock()
        rows = [
            (now, topic[:512], reason, detail[:512], payload[:PAYLOAD_PREFIX], len(payload))
            for topic, reason, detail, payload in letters
        ]
        if not rows:
            return 0
        with self._lock:
            conn = self._conn
            try:
                conn.execute("PRAGMA synchronous=NORMAL")
                conn.execute("BEGIN IMMEDIATE")
                try:
                    conn.executemany(
                        "INSERT INTO dead_letters (ts, topic, reason, detail, payload, size)"
                        " VALUES (?, ?, ?, ?, ?, ?)",
                        rows,
                    )
                    conn.execute(
                        "DELETE FROM dead_letters WHERE id <= "
                        "(SELECT MAX(id) FROM dead_letters) - ?",
                        (self._max_rows,),
                    )
                    conn.execute("COMMIT")
                except BaseException:
                    if conn.in_transaction:
                        conn.execute("ROLLBACK")
                    raise
            except sqlite3.Error as exc:
                if is_disk_full(exc):
                    raise StoreFull(f"{self.path}: disk full: {exc}") from exc
                raise StoreError(f"{self.path}: write failed: {exc}") from exc
        return len(rows)

    def count(self) -> int:
        with self._lock:
            return int(self._conn.execute("SELECT COUNT(*) FROM dead_letters").fetchone()[0])

    def recent(self, n: int = 100) -> list[DeadLetter]:
        """The ``n`` newest letters, newest first."""
        with self._lock:
            rows = self._conn.execute(
                "SELECT topic, reason, detail, payload, size, ts FROM dead_letters"
                " ORDER BY id DESC LIMIT ?",
                (max(0, n),),
            ).fetchall()
        return [DeadLetter(t, r, d, bytes(p), s, ts) for t, r, d, p, s, ts in rows]

    def by_reason(self) -> dict[str, int]:
        """Letters currently kept, by reason."""
        with self._lock:
            rows = self._conn.execute(
                "SELECT reason, COUNT(*) FROM dead_letters GROUP BY reason"
            ).fetchall()
        return {str(r): int(c) for r, c in rows}

    def close(self) -> None:
        with self._lock:
            self._conn.close()
