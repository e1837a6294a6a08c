"""The hand-over between the MQTT I/O thread and the runner: chunks in, bursts out.

The I/O thread puts every socket read's messages as one list (one lock, one wake-up per
read instead of per message); the runner takes up to a burst at a time. Bounded twice:
:meth:`Inbox.saturated` tells the I/O thread to stop reading the socket once three
quarters are used (until half is free again), so TCP pushes back on the broker, which
keeps the messages; what still does not fit (one socket read at most) is refused and
counted.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from typing import Generic, TypeVar

T = TypeVar("T")


class Inbox(Generic[T]):
    """A bounded FIFO of messages; ``on_overflow(n)`` is told how many did not fit."""

    def __init__(self, maxsize: int, on_overflow: Callable[[int], None]) -> None:
        if maxsize < 1:
            raise ValueError(f"maxsize must be positive, got {maxsize}")
        self._max = maxsize
        self._items: deque[T] = deque()
        self._ready = threading.Condition(threading.Lock())
        self._on_overflow = on_overflow
        self._high = max(1, maxsize * 3 // 4)
        self._low = maxsize // 2
        self._saturated = False
        self._woken = False
        self.last_put = 0.0
        """``time.monotonic()`` of the last :meth:`put_many` (0.0: none yet)."""

    def put(self, item: T) -> None:
        self.put_many((item,))

    def put_many(self, items: Sequence[T]) -> None:
        """Append ``items`` in order (never blocks; what exceeds the bound is dropped, counted)."""
        now = time.monotonic()
        with self._ready:
            self.last_put = now
            room = self._max - len(self._items)
            dropped = len(items) - room if len(items) > room else 0
            self._items.extend(items[:room] if dropped else items)
            self._ready.notify()
        if dropped:
            self._on_overflow(dropped)

    def take(self, max_items: int, timeout: float) -> list[T]:
        """Up to ``max_items`` of the oldest items, waiting up to ``timeout`` s for the first
        (or until :meth:`wake`: then possibly none)."""
        with self._ready:
            if not self._items and timeout > 0 and not self._woken:
                self._ready.wait(timeout)
            self._woken = False
            items = self._items
            n = min(len(items), max_items)
            popleft = items.popleft
            return [popleft() for _ in range(n)]

    def wake(self) -> None:
        """End the taker's wait now, items or not (it has other work: acks to release). A
        wake before the wait ends the next wait, so it is never lost."""
        with self._ready:
            self._woken = True
            self._ready.notify()

    def quiet_for(self) -> float:
        """Seconds since the last message arrived, 0.0 while some wait to be taken."""
        if self._items:
            return 0.0
        return time.monotonic() - self.last_put if self.last_put else float("inf")

    def saturated(self) -> bool:
        """``True`` from three quarters full until back to half (hysteresis)."""
        n = len(self._items)
        if self._saturated:
            self._saturated = n > self._low
        else:
            self._saturated = n >= self._high
        return self._saturated

    def qsize(self) -> int:
        return len(self._items)
