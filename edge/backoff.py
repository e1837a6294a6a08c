"""Retry pacing shared by everything the runner retries: jittered, capped, exponential.

The delay after the n-th consecutive failure is drawn uniformly from
``[d/2, d]`` with ``d = min(maximum, initial * 2**n)`` ("equal jitter"): many gateways
coming back after the same outage spread out instead of hammering the cloud together,
and no delay ever exceeds ``maximum``.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable


class Backoff:
    """Consecutive-failure counter that yields the next delay; :meth:`reset` on success."""

    def __init__(
        self, initial: float, maximum: float, *, rng: Callable[[], float] = random.random
    ) -> None:
        if initial <= 0 or maximum < initial:
            raise ValueError(f"need 0 < initial <= maximum, got {initial} and {maximum}")
        self.initial = initial
        self.maximum = maximum
        self._rng = rng
        self.failures = 0

    def next_delay(self) -> float:
        """Record one more failure and return how long to wait before the next try."""
        ceiling = min(self.maximum, self.initial * 2.0 ** min(self.failures, 60))
        self.failures += 1
        return ceiling / 2.0 + self._rng() * ceiling / 2.0

    def reset(self) -> None:
        self.failures = 0


class RateLimiter:
    """A token bucket: at most ``rate`` items per second, bursts up to ``burst`` items.

    ``rate=None`` means unlimited. :meth:`delay_for` says how long to wait before ``n``
    items may go; :meth:`take` spends the tokens.
    """

    def __init__(
        self,
        rate: float | None,
        *,
        burst: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if rate is not None and rate <= 0:
            raise ValueError(f"rate must be positive, got {rate}")
        self.rate = rate
        self.burst = burst if burst is not None else (rate if rate is not None else 0.0)
        if rate is not None and self.burst < 1:
            raise ValueError("burst must allow at least one item")
        self._clock = clock
        self._tokens = self.burst
        self._at = clock()

    def allowance(self) -> int:
        """How many items may go right now (a large number when unlimited)."""
        if self.rate is None:
            return 1 << 30
        self._refill()
        return int(self._tokens)

    def delay_for(self, n: int) -> float:
        """Seconds until ``n`` items (at most the burst) may go."""
        if self.rate is None:
            return 0.0
        self._refill()
        missing = min(float(n), self.burst) - self._tokens
        return max(0.0, missing / self.rate)

    def take(self, n: int) -> None:
        if self.rate is None:
            return
        self._refill()
        self._tokens -= n

    def _refill(self) -> None:
        assert self.rate is not None
        now = self._clock()
        self._tokens = min(self.burst, self._tokens + (now - self._at) * self.rate)
        self._at = now
