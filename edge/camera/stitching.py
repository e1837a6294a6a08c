"""Stitching fragments of one fall back together.

A falling object's track can be cut: a rain streak crossing it moves its blob's centroid
out of the tracker's gate, a window of its own brightness hides it for more frames than a
track survives, two objects passing each other swap blobs. The pieces continue each other:
the later one starts where the earlier one, carried on at its last velocity (plus up to
gravity's pull in the gap), would be, and moves on at a speed the earlier one could have
reached. :class:`FragmentStitcher` remembers recently ended tracks and, when a new track
has three sightings (enough for a velocity), links it to the fragment it continues, so the
fall test sees the whole fall.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable

from edge.camera.tracking import Track


def _end_velocity(tr: Track, k: int = 4) -> tuple[float, float]:
    j = max(0, len(tr.frames) - k)
    df = tr.frames[-1] - tr.frames[j]
    if df <= 0:
        return 0.0, 0.0
    return (tr.xs[-1] - tr.xs[j]) / df, (tr.ys[-1] - tr.ys[j]) / df


def _start_velocity(tr: Track) -> tuple[float, float]:
    df = tr.frames[-1] - tr.frames[0]
    if df <= 0:
        return 0.0, 0.0
    return (tr.xs[-1] - tr.xs[0]) / df, (tr.ys[-1] - tr.ys[0]) / df


class FragmentStitcher:
    """Finds, for a young track, the earlier fragment of the same fall (or nothing).

    ``gravity_px(y)``: gravity in pixels per frame squared at image row ``y`` (from the
    calibration's vertical scale)."""

    def __init__(self, gravity_px: Callable[[float], float], max_gap: int = 10,
                 min_sightings: int = 3) -> None:
        self._gravity_px = gravity_px
        self._max_gap = max_gap
        self._min = min_sightings
        self._ended: list[Track] = []
        self._claimed: dict[int, int] = {}
        """Track id -> its last frame, for fragments already continued (never twice)."""

    def remember(self, tracks: Iterable[Track], frame: int) -> None:
        """Keep ended tracks that a later track may continue; forget old ones."""
        horizon = frame - self._max_gap - 12
        self._ended = [t for t in self._ended if t.last_frame >= horizon]
        self._claimed = {k: f for k, f in self._claimed.items() if f >= horizon}
        self._ended.extend(t for t in tracks
                           if len(t.frames) >= self._min and t.last_frame >= horizon
                           and t.track_id not in self._claimed and not t.is_static())

    def pool(self, live: Iterable[Track], frame: int) -> list[Track]:
        """The tracks a young track may continue this frame: remembered ones and live ones
        long enough to have a velocity (pass it to :meth:`link`)."""
        lo = frame - self._max_gap - 8
        return [t for t in live if len(t.frames) >= self._min and t.frames[-1] >= lo] + [
            t for t in self._ended if t.frames[-1] >= lo]

    def _error(self, young: Track, p: Track) -> float | None:
        """How well ``young`` continues fragment ``p`` (lower is better), or None."""
        gap = young.frames[0] - p.frames[-1]
        vx, vy = _end_velocity(p)
        speed = math.hypot(vx, vy)
        g = self._gravity_px(p.ys[-1])
        # where the earlier fragment would be, at its last velocity and with up to full
        # gravity in the gap (the end velocity is a mean over the last sightings: up to
        # 1.5 frames old)
        px = p.xs[-1] + vx * gap
        py_lo = p.ys[-1] + vy * gap
        py_hi = py_lo + g * gap * (0.5 * gap + 1.5)
        # a blob partly hidden (by a window of its own brightness, at the edge of a gap)
        # has its centroid shifted by up to half its length
        extent = 0.5 * math.sqrt(max(p.areas[-1], young.areas[0]))
        slack = 5.0 + 0.3 * speed * gap + extent
        ex = abs(young.xs[0] - px) / slack
        ey = max(0.0, py_lo - young.ys[0], young.ys[0] - py_hi) / slack
        if ex > 1.0 or ey > 1.0:
            return None
        # and moving on at a speed it could have reached
        svx, svy = _start_velocity(young)
        vslack = 1.5 + 0.3 * speed
        if (svy < vy - vslack or svy > vy + g * (gap + 2) + vslack
                or abs(svx - vx) > vslack or svy < -1.0):
            return None
        return ex + ey + abs(svy - vy) / vslack

    def link(self, young: list[Track], pool: list[Track]) -> list[tuple[Track, Track]]:
        """Pair young tracks with the fragments they continue, among ``pool`` (see
        :meth:`pool`) tracks not seen since the young one began: best pairs first, each
        fragment continued once and each young track continuing one. Sets ``parent``;
        returns the (young, fragment) pairs."""
        pairs: list[tuple[float, int, int]] = []
        for i, y in enumerate(young):
            f0 = y.frames[0]
            lo = f0 - self._max_gap
            for j, p in enumerate(pool):
                if p is y or not lo <= p.frames[-1] < f0:
                    continue
                err = self._error(y, p)
                if err is not None:
                    pairs.append((err, i, j))
        pairs.sort()
        done_y: set[int] = set()
        done_p: set[int] = set()
        out: list[tuple[Track, Track]] = []
        for _err, i, j in pairs:
            if i in done_y or j in done_p:
                continue
            done_y.add(i)
            done_p.add(j)
            found = pool[j]
            young[i].parent = found
            if found in self._ended:
                self._ended.remove(found)
            self._claimed[found.track_id] = found.last_frame
            out.append((young[i], found))
        return out
