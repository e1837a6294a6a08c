"""Shared plumbing of the edge's SQLite stores: opening in WAL mode, checking on start,
and telling "the disk is full" apart from other database errors.

Both stores (outbox, dead letters) use one connection guarded by a lock, in autocommit
mode with explicit ``BEGIN IMMEDIATE``/``COMMIT``: every write is one short transaction
that either happened completely or not at all, which is what makes a SIGKILL harmless.
"""

from __future__ import annotations

import logging
import sqlite3
import time
from pathlib import Path

log = logging.getLogger(__name__)


class StoreError(RuntimeError):
    """A store could not be opened or written; the message names the file."""


class StoreFull(StoreError):
    """The disk (or the database's size limit) is full: the write did not happen."""


def is_disk_full(exc: sqlite3.Error) -> bool:
    """Whether ``exc`` means "no space left" rather than a bug or corruption."""
    code = getattr(exc, "sqlite_errorcode", None)
    if code == sqlite3.SQLITE_FULL:
        return True
    text = str(exc).lower()
    return "disk is full" in text or "no space" in text


def open_store(path: Path, *, check: bool = True) -> sqlite3.Connection:
    """Open (creating) a WAL database at ``path``; with ``check`` verify it first.

    A database that fails ``PRAGMA quick_check`` is moved aside as
    ``<name>.corrupt-<epoch>`` (kept for inspection, never deleted) and a fresh one is
    created, so the agent resumes instead of crash-looping on a damaged file.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        try:
            conn = _connect(path)
            verdict = conn.execute("PRAGMA quick_check").fetchone()[0] if check else "ok"
            if verdict != "ok":
                conn.close()
        except sqlite3.OperationalError:
            raise
        except sqlite3.DatabaseError as exc:
            verdict = str(exc)
        if verdict != "ok":
            _move_aside(path, verdict)
            conn = _connect(path)
    except sqlite3.DatabaseError as exc:
        raise StoreError(f"{path}: cannot open store: {exc}") from exc
    return conn


def _move_aside(path: Path, verdict: str) -> None:
    aside = path.with_name(f"{path.name}.corrupt-{int(time.time())}")
    log.error("store %s failed its check (%s); moved aside to %s", path, verdict, aside)
    path.rename(aside)
    for suffix in ("-wal", "-shm"):
        side = path.with_name(path.name + suffix)
        if side.exists():
            side.rename(aside.with_name(aside.name + suffix))


def _connect(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=30)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    return conn


def integrity_check(path: Path) -> str:
    """``PRAGMA integrity_check`` of the database at ``path`` (``"ok"`` when sound)."""
    conn = sqlite3.connect(path)
    try:
        rows = conn.execute("PRAGMA integrity_check").fetchall()
    finally:
        conn.close()
    return "; ".join(str(r[0]) for r in rows)
