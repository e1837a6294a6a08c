"""Thrown-object detection on one camera view: motion -> tracks -> fall test -> alarms.

Frames are reduced to a grey processing image of about 640 pixels wide (an integer
downscale, so a 4 x 4 object still covers a 2 x 2 patch) before anything else; that and
the per-frame work being a handful of whole-image OpenCV calls is what keeps the cost per
frame well under the decode cost.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np
import numpy.typing as npt

from edge.camera.calibration import Calibration
from edge.camera.fall import FallFit, FallParams, G, check_fall, fall_drop, fall_speed
from edge.camera.motion import MotionDetector, MotionParams
from edge.camera.stitching import FragmentStitcher
from edge.camera.tracking import Track, Tracker


@dataclass(frozen=True, slots=True)
class Alarm:
    """One thrown or falling object."""

    frame: int
    """Frame index at which the alarm was raised."""
    release_frame: int
    release_t: float
    floor: int
    x: float
    release_y: float
    window_column: int | None
    trajectory: list[tuple[int, float, float]]
    size_px: float
    fit: FallFit

    def to_json(self) -> dict[str, float | int]:
        return {"frame": self.frame, "floor": self.floor, "x": round(self.x, 1),
                "release_frame": self.release_frame}


@dataclass(frozen=True, slots=True)
class DetectorParams:
    target_width: int = 640
    warmup_frames: int = 8
    max_miss: int = 8
    max_fall_speed_mps: float = 30.0
    recheck_every: int = 12
    dedupe_frames: int = 20
    dedupe_px: float = 48.0
    stitch_max_gap: int = 10
    """Frames a fall may be lost for and still be stitched back together."""
    motion: MotionParams = field(default_factory=MotionParams)
    fall: FallParams = field(default_factory=FallParams)


def processing_scale(width: int, target_width: int = 640) -> int:
    """Integer downscale factor giving a processing image close to ``target_width``."""
    return max(1, round(width / target_width))


def to_processing(frame: npt.NDArray[np.uint8], factor: int) -> npt.NDArray[np.uint8]:
    """Grey processing image of a BGR or grey frame, downscaled by ``factor``."""
    gray = np.asarray(cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY) if frame.ndim == 3 else frame,
                      np.uint8)
    if factor == 1:
        return gray
    h, w = gray.shape
    return np.asarray(
        cv2.resize(gray, (w // factor, h // factor), interpolation=cv2.INTER_AREA), np.uint8
    )


class ThrowDetector:
    """Stateful detector for one camera view; feed processing images in frame order."""

    def __init__(
        self, calibration: Calibration, fps: float, width: int, height: int,
        params: DetectorParams | None = None,
    ) -> None:
        if fps <= 0:
            raise ValueError("fps must be positive")
        self.cal = calibration
        self.fps = fps
        self.width, self.height = width, height
        self.p = params or DetectorParams()
        self.factor = processing_scale(width, self.p.target_width)
        valid = calibration.valid_mask(width, height, 1.0 / self.factor)
        valid = valid[: height // self.factor, : width // self.factor]
        self.motion = MotionDetector(valid, self.p.motion)
        step_per_frame = self.p.max_fall_speed_mps / fps
        # the vertical scale of every image row, looked up instead of computed per call
        ppm_rows = np.asarray(calibration.pixels_per_metre(np.arange(height, dtype=np.float64)),
                              np.float64).tolist()
        last_row = height - 1

        def ppm_at(y: float) -> float:
            return float(ppm_rows[min(max(int(y + 0.5), 0), last_row)])

        def max_step(y: float) -> float:
            return ppm_at(y) * step_per_frame + 3.0

        self.tracker = Tracker(max_step, self.p.max_miss)

        def gravity_px(y: float) -> float:
            return ppm_at(y) * G / (fps * fps)

        self.stitcher = FragmentStitcher(gravity_px, self.p.stitch_max_gap)
        self.frames_seen = 0
        self.rejections: dict[str, int] = {}
        self._recent: list[Alarm] = []
        self._tracks_of: dict[int, Track] = {}
        """The live track behind each recent alarm (it keeps being extended after the
        alarm), so a later piece of the same fall is recognised by where it was lost."""

    def prepare(self, frame: npt.NDArray[np.uint8]) -> npt.NDArray[np.uint8]:
        return to_processing(frame, self.factor)

    def feed(self, proc: npt.NDArray[np.uint8], frame_index: int) -> list[Alarm]:
        """Process one processing image; return the alarms it completes."""
        self.frames_seen += 1
        blobs = self.motion.process(proc)
        xy = (blobs.xy + 0.5) * self.factor - 0.5
        area = blobs.area.astype(np.float64) * (self.factor * self.factor)
        births = self.frames_seen > self.p.warmup_frames and not blobs.disturbed
        ended = self.tracker.update(frame_index, xy, area, allow_births=births)
        ended += self._stitch(frame_index)
        self.stitcher.remember(ended, frame_index)
        alarms = [a for t in ended if (a := self._judge(t, frame_index, final=True))]
        for tr in self.tracker.live:
            n = tr.chain_length()
            if (not tr.alarmed and n >= 2 * self.p.fall.min_points
                    and n - tr.checked_at >= self.p.recheck_every):
                tr.checked_at = n
                alarm = self._judge(tr, frame_index, final=False)
                if alarm:
                    alarms.append(alarm)
        return alarms

    def _stitch(self, frame_index: int) -> list[Track]:
        """Link each track that just got its third sighting to the fragment it continues;
        a live fragment it continues is ended (and judged on its own) now."""
        live = self.tracker.live
        young = [t for t in live if len(t.frames) == 3 and t.frames[-1] == frame_index
                 and t.parent is None]
        if not young:
            return []
        pool = self.stitcher.pool(live, frame_index)
        return [found for _tr, found in self.stitcher.link(young, pool)
                if self.tracker.retire(found)]

    def finish(self, frame_index: int) -> list[Alarm]:
        """End of stream: judge every live track."""
        return [a for t in self.tracker.flush() if (a := self._judge(t, frame_index, True))]

    def _same_object(self, prev: Alarm, tr: Track, release_frame: int, x: float) -> bool:
        """The track is the object of an earlier alarm: the same release, or a piece of the
        same fall (its first sighting lies on the earlier alarm's fitted fall path)."""
        if (abs(prev.release_frame - release_frame) <= self.p.dedupe_frames
                and abs(prev.x - x) <= self.p.dedupe_px):
            return True
        f0, x0, y0 = tr.frames[0], tr.xs[0], tr.ys[0]
        last_f, last_x = self._lost_at(prev)
        # a continuation starts after the earlier track was lost, and soon after
        if f0 <= last_f - 2 or f0 - last_f > self.fps:
            return False
        fit = prev.fit
        if not (self._on_path(prev, f0, y0) and abs(x0 - last_x) <= self.p.dedupe_px):
            return False
        # and moves at the earlier fall's speed there (not a second object released where
        # the first one happened to pass)
        k = min(len(tr.frames), 6) - 1
        if k < 2:
            return True
        v_seen = (tr.ys[k] - tr.ys[0]) / (tr.frames[k] - tr.frames[0])
        mid = np.array([(tr.frames[0] + tr.frames[k]) / 2.0 / self.fps - fit.release_t])
        v_mps = float(fall_speed(mid, fit.g_factor * G, fit.terminal_mps)[0])
        v_pred = v_mps * float(self.cal.pixels_per_metre((y0 + tr.ys[k]) / 2.0)) / self.fps
        return abs(v_seen - v_pred) <= 0.5 + 0.25 * v_pred

    def _on_path(self, alarm: Alarm, frame: int, y: float) -> bool:
        """Whether row ``y`` at ``frame`` lies on the alarm's fitted fall path."""
        fit = alarm.fit
        tau = np.array([frame / self.fps - fit.release_t])
        h_rel = self.cal.floor_coord(fit.release_y) * self.cal.floor_height_m
        h = float(h_rel) - float(fall_drop(tau, fit.g_factor * G, fit.terminal_mps)[0])
        y_pred = self.cal.row_of_coord(h / self.cal.floor_height_m)
        return abs(y - y_pred) <= 12.0 + 0.1 * abs(y_pred - alarm.release_y)

    def _lost_at(self, alarm: Alarm) -> tuple[int, float]:
        """Frame and column of the alarmed object's last sighting: the last one of its track
        still descending along the fitted fall path (a track that lost the object may have
        been caught by a blob that sits still, a lit window, while the object goes on as a
        new track)."""
        last_f, last_x, last_y = alarm.trajectory[-1]
        tr = self._tracks_of.get(id(alarm))
        if tr is None:
            return last_f, last_x
        for f, x, y in zip(tr.frames, tr.xs, tr.ys, strict=True):
            if f <= last_f:
                continue
            if y <= last_y or not self._on_path(alarm, f, y):
                break
            last_f, last_x, last_y = f, x, y
        return last_f, last_x

    def _judge(self, tr: Track, frame_index: int, final: bool) -> Alarm | None:
        """Alarm if the track is a new fall: its whole chain of fragments first, then the
        track alone (a wrong link, or a second object that crossed the first one)."""
        if tr.alarmed:
            return None
        own = (tr.frames, tr.xs, tr.ys, tr.areas)
        tries = [tr.chain(), own] if tr.parent is not None else [own]
        reason: str | None = None
        duplicate = own_duplicate = False
        continues_alarm = False
        node = tr.parent
        while node is not None and not continues_alarm:
            continues_alarm, node = node.alarmed, node.parent
        for pts in tries:
            if len(pts[0]) < self.p.fall.min_points:
                continue
            t = np.asarray(pts[0], np.float64) / self.fps
            fit = check_fall(t, np.asarray(pts[1]), np.asarray(pts[2]), self.cal,
                             self.p.fall, self.fps)
            if not fit.is_fall:
                reason = reason or fit.reason
                continue
            release_frame = round(fit.release_t * self.fps)
            # when the track continues an alarmed fall, it is another object only if it
            # was released where it was first seen (two objects that crossed)
            late = (duplicate or continues_alarm) and (
                tr.frames[0] / self.fps - fit.release_t > self.p.fall.rest_release_s)
            if late or any(self._same_object(prev, tr, release_frame, fit.release_x)
                           for prev in self._recent):
                duplicate = True
                own_duplicate = pts is own
                continue
            tr.alarmed = True
            return self._alarm(tr, pts, fit, release_frame, frame_index)
        if duplicate:
            # a piece of an alarmed fall; settled once the track alone is one too
            tr.alarmed = own_duplicate or final
            if tr.alarmed:
                self.rejections["duplicate"] = self.rejections.get("duplicate", 0) + 1
        elif final:
            key = reason or ("short" if len(tr.frames) > 1 else "")
            if key:
                self.rejections[key] = self.rejections.get(key, 0) + 1
        return None

    def _alarm(self, tr: Track, pts: tuple[list[int], list[float], list[float], list[float]],
               fit: FallFit, release_frame: int, frame_index: int) -> Alarm:
        frames, xs, ys, areas = pts
        alarm = Alarm(
            frame=frame_index,
            release_frame=release_frame,
            release_t=fit.release_t,
            floor=fit.release_floor,
            x=fit.release_x,
            release_y=fit.release_y,
            window_column=self.cal.window_column(fit.release_x),
            trajectory=[(f, round(x, 1), round(y, 1))
                        for f, x, y in zip(frames, xs, ys, strict=True)],
            size_px=float(np.median(areas)),
            fit=fit,
        )
        self._recent = [a for a in self._recent
                        if frame_index - a.frame < 10 * self.p.dedupe_frames] + [alarm]
        self._tracks_of = {id(a): self._tracks_of.get(id(a), tr) for a in self._recent}
        return alarm
