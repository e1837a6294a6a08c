"""Access gates: brute force, forced open, held open and tailgating from the gate's counters."""

from __future__ import annotations

from device_profiles.messages import Reading
from device_profiles.schema import DetectorSpec, DeviceProfile
from device_profiles.site import DeviceConfig
from edge.detectors.base import Finding, MonitorBase, register
from edge.detectors.common import Episode, Params, condition_from, rule_event


class _WindowSum:
    """Sum of counts over the last ``window`` seconds of data time (a short list: one entry
    per message with a non-zero count in the window)."""

    __slots__ = ("_items", "total", "window")

    def __init__(self, window: float) -> None:
        self.window = window
        self._items: list[tuple[float, float]] = []
        self.total = 0.0

    def add(self, ts: float, count: float) -> None:
        if count:
            self._items.append((ts, count))
            self.total += count
        while self._items and self._items[0][0] <= ts - self.window:
            self.total -= self._items.pop(0)[1]


class GateRules(MonitorBase):
    """The gate's security rules, from its per-message counters.

    * brute force: at least ``max_failed`` failed recognitions within ``failed_window_s``;
      clears after ``brute_clear_after_s`` (default 5 min) below that.
    * forced open: the door opens with no granted recognition within ``grant_window_s``
      before (or in the same message); clears when the door closes.
    * held open: the door open for ``held_open_s`` or longer (``door_open_s``, or timed from
      ``door_open`` when the gate does not report it); clears when the door closes.
    * tailgating: passages exceed grants by ``tailgating_excess`` or more within
      ``tailgating_window_s``; clears after ``tail_clear_after_s`` (default 2 min) without.
    """

    __slots__ = (
        "_brute",
        "_door_was_open",
        "_excess",
        "_failed",
        "_forced",
        "_grant_window",
        "_grants",
        "_held",
        "_held_open",
        "_last_grant",
        "_max_failed",
        "_opened_at",
        "_passages",
        "_tail",
    )

    def __init__(self, spec: DetectorSpec, profile: DeviceProfile, device: DeviceConfig) -> None:
        p = Params(spec)
        self._failed = _WindowSum(p.number("failed_window_s", 60.0, lo=0.001))
        self._max_failed = p.number("max_failed", 5, lo=1)
        self._grant_window = p.number("grant_window_s", 15.0, lo=0.0)
        self._held_open = p.number("held_open_s", 60.0, lo=0.0)
        self._excess = p.number("tailgating_excess", 2, lo=1)
        tail_window = p.number("tailgating_window_s", 30.0, lo=0.001)
        self._passages = _WindowSum(tail_window)
        self._grants = _WindowSum(tail_window)
        self._brute = condition_from(
            p, rule_event(profile, "brute_force"), prefix="brute_", clear_after_s=300.0
        )
        self._tail = condition_from(
            p, rule_event(profile, "tailgating"), prefix="tail_", clear_after_s=120.0
        )
        p.done()
        self._forced = Episode(rule_event(profile, "forced_open"))
        self._held = Episode(rule_event(profile, "held_open"))
        self._last_grant = float("-inf")
        self._door_was_open = False
        self._opened_at: float | None = None

    def observe(self, reading: Reading) -> list[Finding]:
        v = reading.values
        ts = reading.ts
        out: list[Finding] = []
        denials = v.get("denials", 0.0)
        grants = v.get("grants", 0.0)
        passages = v.get("passages", 0.0)
        if grants > 0:
            self._last_grant = ts
        self._failed.add(ts, denials)
        failed = self._failed.total
        step = self._brute.step(ts, failed >= self._max_failed)
        if step is not None:  # evidence built only for a transition
            out += self._brute.emit(step, ts, {
                "failed": failed, "window_s": self._failed.window,
                "max_failed": self._max_failed,
            })
        self._passages.add(ts, passages)
        self._grants.add(ts, grants)
        excess = self._passages.total - self._grants.total
        step = self._tail.step(ts, excess >= self._excess)
        if step is not None:
            out += self._tail.emit(
                step, ts, {"passages": self._passages.total, "grants": self._grants.total}
            )
        door_open = v.get("door_open", 0.0) > 0.5
        if door_open and not self._door_was_open:
            self._opened_at = ts - v.get("door_open_s", 0.0)
            if ts - self._last_grant > self._grant_window:
                out += self._forced.raise_(ts, {"last_grant": self._last_grant})
        if not door_open:
            self._opened_at = None
            out += self._forced.clear(ts)
            out += self._held.clear(ts)
        else:
            open_s = v.get("door_open_s")
            if open_s is None and self._opened_at is not None:
                open_s = ts - self._opened_at
            if open_s is not None and open_s >= self._held_open:
                out += self._held.raise_(ts, {"door_open_s": open_s})
        self._door_was_open = door_open
        return out


register("gate_rules")(GateRules)
