"""Daily and weekly activity curves shared by the device models.

Simulated time is epoch seconds read as the estate's local time (UTC offset 0: a site in
another zone shifts its start time instead). Curves return multipliers, not absolute values,
so each model scales them to its own units.
"""

from __future__ import annotations

import math
from functools import lru_cache

DAY = 86400.0


def hour_of_day(ts: float) -> float:
    """Hour of the day in [0, 24)."""
    return (ts % DAY) / 3600.0


def is_weekend(ts: float) -> bool:
    """Saturday or Sunday (1970-01-01 was a Thursday)."""
    return (int(ts // DAY) + 3) % 7 >= 5


def bump(hour: float, center: float, width: float) -> float:
    """A Gaussian bump around ``center`` (hours), wrapping around midnight."""
    d = abs(hour - center) % 24.0
    d = min(d, 24.0 - d)
    return math.exp(-0.5 * (d / width) ** 2)


def rush_profile(ts: float) -> tuple[float, float]:
    """(morning, evening) rush intensity in [0, 1]: 7-9 h and 17-20 h on weekdays.

    At weekends the morning rush is late and weak and the evening one spread out.
    Resolved to the minute (and cached: thousands of devices ask for the same minute).
    """
    return _rush_minute(int(ts // 60))


@lru_cache(maxsize=4096)
def _rush_minute(minute: int) -> tuple[float, float]:
    ts = minute * 60.0
    h = hour_of_day(ts)
    if is_weekend(ts):
        return 0.3 * bump(h, 10.0, 1.5), 0.5 * bump(h, 18.0, 2.0)
    return bump(h, 8.0, 0.6), bump(h, 18.5, 0.9)


def daytime(ts: float) -> float:
    """1 in the day (7-22 h), falling smoothly to 0 at night (to the minute, cached)."""
    return _daytime_minute(int(ts // 60))


@lru_cache(maxsize=4096)
def _daytime_minute(minute: int) -> float:
    h = hour_of_day(minute * 60.0)
    return 1.0 / (1.0 + math.exp(-(h - 6.5) * 2.0)) * 1.0 / (1.0 + math.exp((h - 22.5) * 2.0))


def is_night(ts: float, start_hour: float = 1.0, end_hour: float = 5.0) -> bool:
    h = hour_of_day(ts)
    return start_hour <= h < end_hour
