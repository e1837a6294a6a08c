"""``gatehouse eval throwing DIR``: thrown-object detection measured over a folder of clips.

Every clip (video + sidecar, see :mod:`edge.camera.clip`) is run through a fresh detector.
An alarm matches a ground-truth throw when its track overlaps the throw's frames and its
back-traced release column lies within ``max(40 px, 4 % of the width)`` of the truth (pairs
taken by column and release-time error); each throw matches at most one alarm and every
unmatched alarm is a false alarm. Recall is given
per size band of object area (``>= 16 px``, ``6 to 15 px``, ``< 6 px``) for throws from floor
3 up (falls of at least two floors in view), and for all throws.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from edge.camera.clip import ClipError, ClipMeta, Throw, find_clips, read_meta, sidecar_of
from edge.camera.detector import Alarm

if TYPE_CHECKING:
    from edge.camera.video import ClipResult

log = logging.getLogger(__name__)

BANDS = (("ge16", 16.0, float("inf")), ("6to15", 6.0, 16.0), ("lt6", 0.0, 6.0))


def size_band(area: float) -> str:
    for name, lo, hi in BANDS:
        if lo <= area < hi:
            return name
    return "lt6"


def match_alarms(
    meta: ClipMeta, alarms: list[Alarm]
) -> tuple[list[tuple[Throw, Alarm | None]], list[Alarm]]:
    """Pair each throw with at most one alarm; return the pairs and the unmatched alarms.

    A pair is possible when the alarm's track overlaps the throw's frames and its release
    column is within tolerance; pairs are taken greedily by a cost mixing the column error
    and the release-time error, so two throws from the same column are not swapped."""
    tol = max(40.0, 0.04 * meta.width)
    candidates: list[tuple[float, int, int]] = []
    for ti, throw in enumerate(meta.throws):
        for ai, a in enumerate(alarms):
            first, last = a.trajectory[0][0], a.trajectory[-1][0]
            if last < throw.release_frame - 2 or first > throw.impact_frame + 2:
                continue
            dx = abs(a.x - throw.x)
            if dx > tol:
                continue
            cost = dx / tol + abs(a.release_frame - throw.release_frame) / meta.fps
            candidates.append((cost, ti, ai))
    candidates.sort()
    by_throw: dict[int, int] = {}
    used: set[int] = set()
    for _cost, ti, ai in candidates:
        if ti in by_throw or ai in used:
            continue
        by_throw[ti] = ai
        used.add(ai)
    pairs: list[tuple[Throw, Alarm | None]] = [
        (t, alarms[by_throw[i]] if i in by_throw else None) for i, t in enumerate(meta.throws)
    ]
    return pairs, [a for i, a in enumerate(alarms) if i not in used]


@dataclass(slots=True)
class Tally:
    clips: int = 0
    frames: int = 0
    seconds_video: float = 0.0
    seconds_video_distractor_only: float = 0.0
    cpu_seconds: float = 0.0
    throws: list[tuple[Throw, Alarm | None, float]] = field(default_factory=list)
    false_alarms: list[dict[str, Any]] = field(default_factory=list)
    false_alarms_distractor_only: int = 0
    errors: list[str] = field(default_factory=list)
    rejections: dict[str, int] = field(default_factory=dict)
    renderers: set[str] = field(default_factory=set)

    def add_clip(self, name: str, meta: ClipMeta, result_alarms: list[Alarm], frames: int,
                 cpu: float, rejections: dict[str, int]) -> None:
        self.clips += 1
        self.frames += frames
        seconds = frames / meta.fps
        self.seconds_video += seconds
        if not meta.throws:
            self.seconds_video_distractor_only += seconds
        self.cpu_seconds += cpu
        pairs, extra = match_alarms(meta, result_alarms)
        for throw, alarm in pairs:
            self.throws.append((throw, alarm, meta.fps))
        for a in extra:
            self.false_alarms.append({"clip": name, **a.to_json()})
        if not meta.throws:
            self.false_alarms_distractor_only += len(extra)
        for k, v in rejections.items():
            self.rejections[k] = self.rejections.get(k, 0) + v
        if meta.extra and isinstance(meta.extra.get("renderer"), str):
            self.renderers.add(meta.extra["renderer"])

    def summary(self) -> dict[str, Any]:
        def recall(items: list[tuple[Throw, Alarm | None, float]]) -> dict[str, Any]:
            hit = sum(1 for _, a, _ in items if a is not None)
            return {"throws": len(items), "detected": hit,
                    "recall": round(hit / len(items), 4) if items else None}

        eligible = [x for x in self.throws if x[0].floor >= 3]
        bands = {name: recall([x for x in eligible if size_band(x[0].size_px) == name])
                 for name, _, _ in BANDS}
        bands_all = {name: recall([x for x in self.throws if size_band(x[0].size_px) == name])
                     for name, _, _ in BANDS}
        hits = [(t, a, fps) for t, a, fps in self.throws if a is not None]
        within = [abs(a.floor - t.floor) <= 1 for t, a, _ in hits]
        exact = [a.floor == t.floor for t, a, _ in hits]
        lat = np.asarray([(a.frame - t.impact_frame) / fps for t, a, fps in hits], np.float64)
        hours = self.seconds_video / 3600.0
        d_hours = self.seconds_video_distractor_only / 3600.0
        return {
            "clips": self.clips,
            "frames": self.frames,
            "camera_hours": round(hours, 4),
            "camera_hours_distractor_only": round(d_hours, 4),
            "renderers": sorted(self.renderers),
            "recall_by_size": bands,
            "recall_by_size_all_floors": bands_all,
            "false_alarms": len(self.false_alarms),
            "false_alarms_per_camera_hour": round(len(self.false_alarms) / hours, 4)
            if hours else None,
            "false_alarms_per_camera_hour_distractor_only": round(
                self.false_alarms_distractor_only / d_hours, 4) if d_hours else None,
            "false_alarm_list": self.false_alarms[:50],
            "floor_within_one": round(sum(within) / len(within), 4) if within else None,
            "floor_exact": round(sum(exact) / len(exact), 4) if exact else None,
            "latency_s": {
                "median": round(float(np.median(lat)), 3) if len(lat) else None,
                "p95": round(float(np.percentile(lat, 95)), 3) if len(lat) else None,
                "max": round(float(lat.max()), 3) if len(lat) else None,
            },
            "fps_per_core": round(self.frames / self.cpu_seconds, 1) if self.cpu_seconds else None,
            "rejected_tracks": dict(sorted(self.rejections.items())),
            "errors": self.errors,
        }


def _run_clip(video: Path) -> tuple[ClipMeta, ClipResult] | str:
    """One clip through a fresh detector (in a worker process when ``jobs > 1``)."""
    from edge.camera.video import VideoOpenError, detect_clip

    try:
        meta = read_meta(sidecar_of(video))
        return meta, detect_clip(video, meta.calibration, meta.fps)
    except (ClipError, VideoOpenError) as exc:
        return str(exc)


def evaluate(folder: Path | str, jobs: int = 1,
             progress: Callable[[int, int, str], None] | None = None) -> dict[str, Any]:
    """Run every clip under ``folder`` (``jobs`` clips at a time, each on one thread: the
    CPU time per clip, and so frames/s per core, does not depend on ``jobs``); return the
    summary mapping. ``progress(done, total, clip name)`` is called as each clip is
    tallied."""
    tally = Tally()
    clips = find_clips(folder)
    if not clips:
        raise ClipError(f"{folder}: no clip (NAME.mp4|NAME.avi beside NAME.json) found")
    with contextlib.ExitStack() as stack:
        if jobs > 1:
            from multiprocessing import Pool

            pool = stack.enter_context(Pool(jobs))
            results: Iterable[tuple[ClipMeta, ClipResult] | str] = pool.imap(
                _run_clip, clips, chunksize=1)
        else:
            results = map(_run_clip, clips)
        for done, (video, out) in enumerate(zip(clips, results, strict=True), start=1):
            if isinstance(out, str):
                tally.errors.append(out)
                log.warning("skipping clip: %s", out)
            else:
                meta, res = out
                tally.add_clip(video.name, meta, res.alarms, res.frames, res.seconds_cpu,
                               res.rejections)
            if progress is not None:
                progress(done, len(clips), video.name)
    return tally.summary()


def _progress_line(done: int, total: int, name: str) -> None:
    print(f"  {done}/{total} clips ({name})", file=sys.stderr, flush=True)


def _human(s: dict[str, Any]) -> str:
    lines = [f"clips {s['clips']}, frames {s['frames']}, camera-hours {s['camera_hours']} "
             f"(distractor-only {s['camera_hours_distractor_only']})"]
    for name, r in s["recall_by_size"].items():
        lines.append(f"recall {name:>6} px (floor>=3): {r['recall']} "
                     f"({r['detected']}/{r['throws']})")
    lines.append(f"false alarms {s['false_alarms']}, per camera-hour "
                 f"{s['false_alarms_per_camera_hour']} (distractor-only clips "
                 f"{s['false_alarms_per_camera_hour_distractor_only']})")
    lines.append(f"floor within one {s['floor_within_one']}, exact {s['floor_exact']}")
    lat = s["latency_s"]
    lines.append(f"latency median {lat['median']} s, p95 {lat['p95']} s")
    lines.append(f"frames/s per core (decode + detect) {s['fps_per_core']}")
    if s["errors"]:
        lines.append(f"errors: {len(s['errors'])}")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    try:
        summary = evaluate(args.dir, max(1, int(getattr(args, "jobs", 1) or 1)),
                           progress=_progress_line)
    except ClipError as exc:
        print(f"gatehouse eval throwing: {exc}", file=sys.stderr)
        return 2
    if getattr(args, "json", False):
        print(json.dumps(summary))
    else:
        print(_human(summary))
    return 0 if not summary["errors"] else 1
