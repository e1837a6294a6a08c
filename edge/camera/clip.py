"""The clip format (a contract other tools read and write).

A clip is a video file OpenCV can read (``NAME.mp4`` or ``NAME.avi``) beside ``NAME.json``::

    {"fps": 25, "width": W, "height": H,
     "calibration": {"floor_lines": [...], "masks": [[[x, y], ...], ...]},
     "throws": [{"release_frame": F, "impact_frame": F, "floor": N, "x": X, "size_px": S}]}

``impact_frame`` is the last frame the object is in view (it hits the ground or leaves the
image); ``x`` is the release column in pixels; ``size_px`` is the object's area in pixels.
Extra keys are allowed and ignored (for example a scene description).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edge.camera.calibration import Calibration, CalibrationError

VIDEO_SUFFIXES = (".mp4", ".avi")


class ClipError(ValueError):
    """A clip or its sidecar is missing or malformed."""


@dataclass(frozen=True, slots=True)
class Throw:
    release_frame: int
    impact_frame: int
    floor: int
    x: float
    size_px: float

    def to_dict(self) -> dict[str, Any]:
        return {
            "release_frame": self.release_frame,
            "impact_frame": self.impact_frame,
            "floor": self.floor,
            "x": round(self.x, 1),
            "size_px": round(self.size_px, 1),
        }


@dataclass(frozen=True, slots=True)
class ClipMeta:
    fps: float
    width: int
    height: int
    calibration: Calibration
    throws: tuple[Throw, ...]
    extra: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "fps": self.fps,
            "width": self.width,
            "height": self.height,
            "calibration": self.calibration.to_dict(),
            "throws": [t.to_dict() for t in self.throws],
        }
        if self.extra:
            out.update(self.extra)
        return out


def _num(data: dict[str, Any], key: str, where: str) -> float:
    value = data.get(key)
    if not isinstance(value, int | float) or isinstance(value, bool):
        raise ClipError(f"{where}: '{key}' must be a number, got {value!r}")
    return float(value)


def parse_meta(data: Any, where: str = "clip") -> ClipMeta:
    """Validate a sidecar mapping; raise :class:`ClipError` naming the field."""
    if not isinstance(data, dict):
        raise ClipError(f"{where}: expected a JSON object")
    fps = _num(data, "fps", where)
    if not 1 <= fps <= 240:
        raise ClipError(f"{where}: fps {fps} out of range 1..240")
    width, height = int(_num(data, "width", where)), int(_num(data, "height", where))
    try:
        calibration = Calibration.from_dict(data.get("calibration"))
    except CalibrationError as exc:
        raise ClipError(f"{where}: {exc}") from exc
    throws_raw = data.get("throws", [])
    if not isinstance(throws_raw, list):
        raise ClipError(f"{where}: 'throws' must be a list")
    throws = []
    for i, t in enumerate(throws_raw):
        w = f"{where}: throws[{i}]"
        if not isinstance(t, dict):
            raise ClipError(f"{w}: expected an object")
        throws.append(
            Throw(
                release_frame=int(_num(t, "release_frame", w)),
                impact_frame=int(_num(t, "impact_frame", w)),
                floor=int(_num(t, "floor", w)),
                x=_num(t, "x", w),
                size_px=_num(t, "size_px", w),
            )
        )
    known = {"fps", "width", "height", "calibration", "throws"}
    extra = {k: v for k, v in data.items() if k not in known} or None
    return ClipMeta(fps, width, height, calibration, tuple(throws), extra)


def read_meta(path: Path | str) -> ClipMeta:
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise ClipError(f"{path}: cannot read clip sidecar: {exc}") from exc
    return parse_meta(data, str(path))


def write_meta(meta: ClipMeta, path: Path | str) -> None:
    Path(path).write_text(json.dumps(meta.to_dict(), indent=1), encoding="utf-8")


def sidecar_of(video: Path) -> Path:
    return video.with_suffix(".json")


def find_clips(folder: Path | str) -> list[Path]:
    """Every video under ``folder`` (recursively) that has a sidecar JSON, sorted."""
    root = Path(folder)
    return sorted(
        p for p in root.rglob("*")
        if p.suffix.lower() in VIDEO_SUFFIXES and sidecar_of(p).is_file()
    )
