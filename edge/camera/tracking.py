"""A cheap multi-object tracker for small fast blobs.

Nearest neighbour with gating around a constant-acceleration prediction (finite
differences over three recent sightings, no fitting per frame). A one-sighting track
only accepts a next sighting at or below it within the largest per-frame step a falling
object can make at that row. Tracks of three or more sightings survive ``max_miss``
frames without one (an object crossing a window of its own brightness vanishes for a few
frames), younger ones ``max_miss_young``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt


@dataclass(slots=True)
class Track:
    """One tracked blob: sightings as parallel lists (frame index, x, y, area)."""

    track_id: int
    frames: list[int] = field(default_factory=list)
    xs: list[float] = field(default_factory=list)
    ys: list[float] = field(default_factory=list)
    areas: list[float] = field(default_factory=list)
    alarmed: bool = False
    checked_at: int = 0
    parent: Track | None = None
    """The earlier fragment of the same fall this track continues (a fall cut in two by a
    gap, a crossing rain streak or a window of its own brightness), if any."""

    def chain(self) -> tuple[list[int], list[float], list[float], list[float]]:
        """Sightings of the whole fall: the parent fragments' (oldest first), then this
        track's."""
        parts: list[Track] = [self]
        node = self.parent
        while node is not None and len(parts) < 16:
            parts.append(node)
            node = node.parent
        frames: list[int] = []
        xs: list[float] = []
        ys: list[float] = []
        areas: list[float] = []
        for part in reversed(parts):
            frames += part.frames
            xs += part.xs
            ys += part.ys
            areas += part.areas
        return frames, xs, ys, areas

    def chain_length(self) -> int:
        n, node = len(self.frames), self.parent
        while node is not None:
            n += len(node.frames)
            node = node.parent
        return n

    @property
    def last_frame(self) -> int:
        return self.frames[-1]

    def add(self, frame: int, x: float, y: float, area: float) -> None:
        self.frames.append(frame)
        self.xs.append(x)
        self.ys.append(y)
        self.areas.append(area)

    def is_static(self, span: int = 25, radius: float = 4.0) -> bool:
        """Sat still for its last ``span`` sightings (a lamp, a flickering edge): it is
        ended, so it cannot capture an object starting from the same spot."""
        if len(self.frames) < span:
            return False
        xs, ys = self.xs[-span:], self.ys[-span:]
        return max(xs) - min(xs) < radius and max(ys) - min(ys) < radius

    def predict(self, frame: int) -> tuple[float, float, float]:
        """Predicted (x, y) at ``frame`` and the gate radius around it (pixels).

        Finite differences over three sightings spaced up to three apart (less noisy than
        neighbours, and no fitting per frame)."""
        n = len(self.frames)
        x2, y2, f2 = self.xs[-1], self.ys[-1], self.frames[-1]
        df = frame - f2
        if n == 1:
            return x2, y2, 0.0
        k = min(3, (n - 1) // 2) if n >= 3 else 1
        x1, y1, f1 = self.xs[-1 - k], self.ys[-1 - k], self.frames[-1 - k]
        vx, vy = (x2 - x1) / (f2 - f1), (y2 - y1) / (f2 - f1)
        if n == 2:
            px, py = x2 + vx * df, y2 + vy * df
            return px, py, 5.0 + 0.6 * float(np.hypot(vx, vy)) * df
        x0, y0, f0 = self.xs[-1 - 2 * k], self.ys[-1 - 2 * k], self.frames[-1 - 2 * k]
        ux, uy = (x1 - x0) / (f1 - f0), (y1 - y0) / (f1 - f0)
        half = (f2 - f0) / 2.0
        ax, ay = (vx - ux) / half, (vy - uy) / half
        ex, ey = vx + ax * (f2 - f1) / 2.0, vy + ay * (f2 - f1) / 2.0
        px = x2 + ex * df + 0.5 * ax * df * df
        py = y2 + ey * df + 0.5 * ay * df * df
        speed = abs(ex) + abs(ey)
        return px, py, (4.0 + 0.35 * speed * df) if n < 7 else (4.0 + 0.25 * speed * df)


class Tracker:
    """Associates each frame's blobs with live tracks; hands back tracks that ended."""

    def __init__(
        self, max_step: Callable[[float], float], max_miss: int = 8, max_miss_young: int = 2,
        max_tracks: int = 300,
    ) -> None:
        self._max_step = max_step
        self._max_miss = max_miss
        self._max_miss_young = max_miss_young
        self._max_tracks = max_tracks
        self._tracks: list[Track] = []
        self._next_id = 1

    @property
    def live(self) -> list[Track]:
        return list(self._tracks)

    def update(
        self, frame: int, xy: npt.NDArray[np.float64], area: npt.NDArray[np.float64],
        allow_births: bool = True,
    ) -> list[Track]:
        """Take one frame's blobs (full-resolution x, y); return the tracks that ended."""
        n_det = len(xy)
        used = np.zeros(n_det, bool)
        pairs: list[tuple[float, int, int]] = []
        if n_det:
            dx_all = xy[:, 0]
            dy_all = xy[:, 1]
            for ti, tr in enumerate(self._tracks):
                px, py, gate = tr.predict(frame)
                dx = dx_all - px
                dy = dy_all - py
                if gate == 0.0:
                    step = self._max_step(py) * (frame - tr.last_frame)
                    ok = (dy >= -3.0) & (dy <= step) & (np.abs(dx) <= 4.0 + 0.3 * step)
                    dist = np.abs(dx) + 0.2 * np.abs(dy)
                else:
                    dist = np.hypot(dx, dy)
                    ok = dist <= gate
                pairs.extend((float(dist[j]), ti, int(j)) for j in np.flatnonzero(ok))
        pairs.sort()
        taken: set[int] = set()
        for _d, ti, j in pairs:
            if ti in taken or used[j]:
                continue
            taken.add(ti)
            used[j] = True
            self._tracks[ti].add(frame, float(xy[j, 0]), float(xy[j, 1]), float(area[j]))
        alive: list[Track] = []
        ended: list[Track] = []
        for t in self._tracks:
            limit = self._max_miss if len(t.frames) >= 3 else self._max_miss_young
            gone = frame - t.last_frame > limit
            (ended if gone or t.is_static() else alive).append(t)
        self._tracks = alive
        if allow_births:
            for jj in np.flatnonzero(~used):
                j = int(jj)
                tr = Track(self._next_id)
                self._next_id += 1
                tr.add(frame, float(xy[j, 0]), float(xy[j, 1]), float(area[j]))
                self._tracks.append(tr)
        if len(self._tracks) > self._max_tracks:
            self._tracks.sort(key=lambda t: (len(t.frames) > 1, t.last_frame), reverse=True)
            ended.extend(t for t in self._tracks[self._max_tracks:] if len(t.frames) > 1)
            self._tracks = self._tracks[: self._max_tracks]
        return ended

    def retire(self, track: Track) -> bool:
        """Stop tracking ``track`` (a later track was found to continue it)."""
        if track in self._tracks:
            self._tracks.remove(track)
            return True
        return False

    def flush(self) -> list[Track]:
        """End every live track (end of stream)."""
        ended, self._tracks = self._tracks, []
        return ended
