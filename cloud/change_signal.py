"""Wakes the live stream as soon as a work-order change is committed, on every worker.

The stream (``GET /api/v1/stream``) reads the ``changes`` table; without a signal it can only
poll it, so a new order waits up to a poll interval before anyone sees it, and every idle
dashboard costs the database a query per interval. With the signal:

* a session that recorded a change sends ``NOTIFY gatehouse_changes`` in the same
  transaction on PostgreSQL (delivered by the server at commit, never for a rollback);
* each worker process keeps one extra connection that ``LISTEN``\\ s on that channel
  (:class:`ChangeListener`, a daemon thread; it reconnects with backoff after a lost
  connection and wakes every stream on reconnect, so nothing committed meanwhile waits);
* a commit in the same process wakes its own streams directly (the only source on SQLite,
  which runs one worker).

The poll stays as a fallback (``stream_poll_interval``): a lost notification delays a change
by at most one interval, it never loses it, because the stream always reads the table.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from typing import Any

from sqlalchemy import Engine, event, text
from sqlalchemy.orm import Session, sessionmaker

log = logging.getLogger(__name__)

CHANNEL = "gatehouse_changes"
_FLAG = "gatehouse_change_recorded"


class ChangeSignal:
    """Per-process wake-up for coroutines waiting for new changes (thread-safe).

    A waiter takes a :meth:`ticket` *before* it reads the table and waits on it only when the
    read found nothing, so a change committed between the read and the wait is not missed.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._tickets: dict[asyncio.Event, asyncio.AbstractEventLoop] = {}
        self.notified = 0
        """Times :meth:`notify` was called (commits seen here and notifications received)."""

    def ticket(self) -> asyncio.Event:
        """A new ticket for the running event loop; set by the next :meth:`notify`."""
        ticket = asyncio.Event()
        with self._lock:
            self._tickets[ticket] = asyncio.get_running_loop()
        return ticket

    def discard(self, ticket: asyncio.Event) -> None:
        with self._lock:
            self._tickets.pop(ticket, None)

    async def wait(self, ticket: asyncio.Event, timeout: float) -> bool:
        """Wait until the ticket is set or ``timeout`` passes; True when it was set."""
        try:
            await asyncio.wait_for(ticket.wait(), timeout)
        except TimeoutError:
            return False
        finally:
            self.discard(ticket)
        return True

    def notify(self) -> None:
        """Set every outstanding ticket; callable from any thread."""
        with self._lock:
            tickets = list(self._tickets.items())
            self._tickets.clear()
            self.notified += 1
        for ticket, loop in tickets:
            with contextlib.suppress(RuntimeError):  # a closed loop: its waiter is gone
                loop.call_soon_threadsafe(ticket.set)

    @property
    def waiting(self) -> int:
        with self._lock:
            return len(self._tickets)


def mark_change(session: Session) -> None:
    """Note that ``session`` recorded a change (called by :func:`cloud.changes.record`)."""
    session.info[_FLAG] = True


def install(sessions: sessionmaker[Session], signal: ChangeSignal, postgres: bool) -> None:
    """Hook ``sessions``: a commit that recorded a change notifies (see the module doc)."""

    # These hooks also fire when a SAVEPOINT is released or rolled back (the intake opens
    # each order in one): only the outermost transaction's end counts.

    @event.listens_for(sessions, "before_commit")
    def _before_commit(session: Session) -> None:
        if postgres and session.info.get(_FLAG) and not session.in_nested_transaction():
            session.execute(text("SELECT pg_notify(:channel, '')"), {"channel": CHANNEL})

    @event.listens_for(sessions, "after_commit")
    def _after_commit(session: Session) -> None:
        if not session.in_nested_transaction() and session.info.pop(_FLAG, False):
            signal.notify()

    @event.listens_for(sessions, "after_rollback")
    def _after_rollback(session: Session) -> None:
        if not session.in_nested_transaction():
            session.info.pop(_FLAG, None)


class ChangeListener:
    """``LISTEN gatehouse_changes`` on a connection of its own; each notification (and each
    reconnection) calls :meth:`ChangeSignal.notify`. PostgreSQL only."""

    def __init__(
        self, engine: Engine, signal: ChangeSignal, retry_max: float = 10.0
    ) -> None:
        self._engine = engine
        self._signal = signal
        self._retry_max = retry_max
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.connected = False
        self.received = 0
        self.reconnects = 0

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="change-listener", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def _connect(self) -> Any:
        dialect = self._engine.dialect
        cargs, cparams = dialect.create_connect_args(self._engine.url)
        conn = dialect.connect(*cargs, **cparams)
        conn.autocommit = True
        conn.execute(f"LISTEN {CHANNEL}")
        return conn

    def _run(self) -> None:
        delay = 0.5
        while not self._stop.is_set():
            try:
                conn = self._connect()
            except Exception as exc:  # the server is down or refuses us: the poll covers
                log.warning("change listener: cannot connect (%s); retrying in %.1fs",
                            exc, delay)
                self._stop.wait(delay)
                delay = min(delay * 2, self._retry_max)
                continue
            self.connected = True
            delay = 0.5
            self._signal.notify()  # whatever was committed while we were not listening
            try:
                while not self._stop.is_set():
                    for _ in conn.notifies(timeout=1.0):
                        self.received += 1
                        self._signal.notify()
            except Exception as exc:
                if not self._stop.is_set():
                    self.reconnects += 1
                    log.warning("change listener: connection lost (%s); reconnecting", exc)
            finally:
                self.connected = False
                with contextlib.suppress(Exception):  # closing a broken one may fail too
                    conn.close()
