"""The thread that runs the telemetry outputs, so that their blocking writes (an HTTP post to
the time-series database per burst) never hold up the runner.

The runner hands each burst's readings to :meth:`TelemetryWriterThread.submit` and goes on
with the next burst; the thread calls the runner's ``write_readings`` (which writes to every
output and spools what an output could not take) in submission order. Guarantees:

* **Back-pressure, not drops.** The queue holds at most ``max_items`` writes; ``submit``
  waits for room (``on_full`` is called once per wait, for a counter). Nothing is dropped.
* **Order.** Bursts are written in the order submitted; consecutive bursts waiting in the
  queue are merged into one write of up to ``max_merge`` readings (fewer, larger requests
  when the database is slower than the stream). A burst joins the one queued last when
  both fit in one write, so ``max_items`` bounds writes waiting, not bursts: small bursts
  do not fill the queue while a write is in flight.
* **Done means written or spooled.** :attr:`done` is the sequence number of the last burst
  handled; the runner acknowledges a burst's MQTT messages only once ``done`` has reached
  it, so a crash can lose no acknowledged reading (the broker redelivers the others).
* **Few, large writes.** With ``linger``, a write of fewer than ``max_merge`` readings
  waits up to ``linger`` seconds for the bursts behind it while ``more_coming()`` says the
  source is still delivering. A steady stream of small bursts (devices spread over the
  second) then costs a few requests a second instead of hundreds; when the source falls
  quiet (an idle site, or a broker that sends no more until it gets acks) the write goes
  at once, so the wait never holds a broker's in-flight window.
* **Done wakes the runner.** ``on_done`` is called after each burst is written or spooled,
  so the runner releases its acknowledgements at once instead of at its next wake-up.
* **Idle work.** ``idle`` (replaying the spool) runs on this thread about every
  ``idle_interval`` seconds, busy or not, so spooled and new readings never interleave.
* **Clean stop.** :meth:`stop` writes every burst still queued, then ends the thread.

Event points (``write_events``, best effort) go through the same queue, so every output is
called from this one thread.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from typing import Generic, TypeVar

log = logging.getLogger(__name__)

R = TypeVar("R")
E = TypeVar("E")

DEFAULT_MAX_ITEMS = 8
"""Writes waiting at most (bursts queued one behind the other share a write of up to
``max_merge`` readings: 40,000 readings at most with the defaults)."""
DEFAULT_MAX_MERGE = 5000
"""Readings per merged write at most (the writer's default ``batch_size``)."""
_LINGER_STEP = 0.002
"""While lingering, how often the writer looks whether the source is still delivering."""


class TelemetryWriterThread(Generic[R, E]):
    """A bounded queue of reading bursts (and event batches) and the thread that writes them.

    ``write_readings(readings)`` and ``write_events(events)`` must not raise for an output's
    failure (the runner's versions spool and count); an unexpected exception is logged and
    passed to ``on_error``, and the burst counts as handled so acknowledgements go on.
    Before :meth:`start` (and after :meth:`stop`) ``submit`` writes on the caller's thread.
    """

    def __init__(
        self,
        write_readings: Callable[[list[R]], None],
        write_events: Callable[[list[E]], None],
        idle: Callable[[], None],
        *,
        max_items: int = DEFAULT_MAX_ITEMS,
        max_merge: int = DEFAULT_MAX_MERGE,
        idle_interval: float = 1.0,
        on_full: Callable[[], None] | None = None,
        on_error: Callable[[], None] | None = None,
        on_done: Callable[[], None] | None = None,
        linger: float = 0.0,
        more_coming: Callable[[], bool] | None = None,
        name: str = "edge-telemetry",
    ) -> None:
        if max_items < 1 or max_merge < 1 or idle_interval <= 0:
            raise ValueError("max_items, max_merge and idle_interval must be positive")
        if linger < 0:
            raise ValueError(f"linger must not be negative, got {linger}")
        self._write_readings = write_readings
        self._write_events = write_events
        self._idle = idle
        self._max_items = max_items
        self._max_merge = max_merge
        self._idle_interval = idle_interval
        self._on_full = on_full
        self._on_error = on_error
        self._on_done = on_done
        self._linger = linger if more_coming is not None else 0.0
        self._more_coming = more_coming
        self.writes = 0
        """Reading writes made (merged bursts count once)."""
        self._cond = threading.Condition()
        self._items: deque[tuple[int, list[R] | None, list[E] | None]] = deque()
        self._submitted = 0
        self._done = 0
        self._running = False
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    @property
    def submitted(self) -> int:
        """Sequence number of the last burst submitted (0: none yet)."""
        return self._submitted

    @property
    def done(self) -> int:
        """Sequence number of the last burst written or spooled; bursts finish in order."""
        return self._done

    def pending(self) -> int:
        """Items (bursts and event batches) waiting in the queue."""
        with self._cond:
            return len(self._items)

    def start(self) -> None:
        with self._cond:
            self._running = True
        self._thread.start()

    def submit(self, readings: Sequence[R]) -> int:
        """Queue a burst's readings (waiting for room); returns its sequence number."""
        return self._put(list(readings), None)

    def submit_events(self, events: Sequence[E]) -> None:
        """Queue event points (waiting for room); they do not count as a burst."""
        self._put(None, list(events))

    def stop(self, timeout: float = 10.0) -> bool:
        """Write what is queued, then end the thread; ``False`` if it did not finish in time
        (what is left stays unacknowledged, so the broker redelivers it)."""
        with self._cond:
            if not self._running:
                return True
            self._stopping = True
            self._cond.notify_all()
        self._thread.join(timeout)
        if self._thread.is_alive():
            log.warning("telemetry writer still busy after %.1fs; %d bursts left unwritten",
                        timeout, self.pending())
            return False
        return True

    # ----------------------------------------------------------------- internals

    def _alive(self) -> bool:
        """The thread takes items (a thread killed by something no ``except`` catches does
        not leave the caller waiting for room forever)."""
        return self._running and self._thread.is_alive()

    def _put(self, readings: list[R] | None, events: list[E] | None) -> int:
        with self._cond:
            if readings is not None and self._alive() and self._items:
                tail = self._items[-1][1]
                if tail is not None and len(tail) + len(readings) <= self._max_merge:
                    # joins the burst queued last: the bound counts writes, not bursts, so
                    # a stream of small bursts never makes the runner wait for room
                    self._submitted += 1
                    tail.extend(readings)
                    self._items[-1] = (self._submitted, tail, None)
                    self._cond.notify_all()
                    return self._submitted
            if self._alive() and len(self._items) >= self._max_items:
                if self._on_full is not None:
                    self._on_full()
                while self._alive() and len(self._items) >= self._max_items:
                    self._cond.wait(0.5)
            if readings is not None:
                self._submitted += 1
            seq = self._submitted
            if self._alive():
                self._items.append((seq, readings, events))
                self._cond.notify_all()
                return seq
        # no thread (not started, or ended with an empty queue): write here, in order
        self._handle(readings, events)
        if readings is not None:
            with self._cond:
                self._done = max(self._done, seq)
                self._cond.notify_all()
        return seq

    def _take(self, wait: float) -> tuple[int, list[R] | None, list[E] | None] | bool:
        """The next item (the readings of the bursts right behind it merged in); ``True``
        when there is none now, ``False`` when the thread must end (stopping, queue empty:
        decided under the lock, so no item can be queued behind the decision)."""
        with self._cond:
            if not self._items and not self._stopping:
                self._cond.wait(wait)
            if not self._items:
                if self._stopping:
                    self._running = False
                    self._cond.notify_all()
                    return False
                return True
            seq, readings, events = self._items.popleft()
            if readings is not None:
                merged = readings  # submit's own copy: extended in place
                seq = self._merge(seq, merged)
                if self._linger and self._more_coming is not None:
                    deadline = time.monotonic() + self._linger
                    # whatever _merge left (an event batch, a burst too big to add) ends it
                    while len(merged) < self._max_merge and not self._stopping \
                            and not self._items:
                        left = deadline - time.monotonic()
                        if left <= 0 or not self._more_coming():
                            break
                        self._cond.notify_all()  # room for a waiting submit
                        self._cond.wait(min(left, _LINGER_STEP))
                        seq = self._merge(seq, merged)
                readings = merged
            self._cond.notify_all()  # room for a waiting submit
            return seq, readings, events

    def _merge(self, seq: int, merged: list[R]) -> int:
        """Move the reading bursts at the head of the queue into ``merged`` (up to
        ``max_merge``; never past an event batch, to keep the order); the last seq taken.
        Called with the lock held."""
        while self._items:
            more = self._items[0][1]
            if more is None or len(merged) + len(more) > self._max_merge:
                break
            seq = self._items.popleft()[0]
            merged.extend(more)
        return seq

    def _run(self) -> None:
        next_idle = time.monotonic() + self._idle_interval
        while True:
            item = self._take(max(0.0, min(next_idle - time.monotonic(), self._idle_interval)))
            if item is False:
                return
            if not isinstance(item, bool):
                seq, readings, events = item
                self._handle(readings, events)
                if readings is not None:
                    self.writes += 1
                    with self._cond:
                        self._done = seq
                        self._cond.notify_all()
                    if self._on_done is not None:
                        self._on_done()
            if time.monotonic() >= next_idle and not self._stopping:
                next_idle = time.monotonic() + self._idle_interval
                self._call(self._idle)

    def _handle(self, readings: list[R] | None, events: list[E] | None) -> None:
        if readings:
            self._call(lambda: self._write_readings(readings))
        if events:
            self._call(lambda: self._write_events(events))

    def _call(self, fn: Callable[[], None]) -> None:
        try:
            fn()
        except Exception:  # the writer thread must survive anything one burst does
            if self._on_error is not None:
                self._on_error()
            log.exception("telemetry writer: unexpected error; continuing")
