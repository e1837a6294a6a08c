"""Camera calibration: floor boundaries, facade region and ignore masks, in full-frame pixels.

A calibration is data from the site config (a camera's ``params.calibration``) or from a
clip's sidecar JSON. It answers three questions the detector asks:

* which image rows bound which floor (``floor_lines``, listed from the ground up, so floor
  ``N`` is the band of rows between ``floor_lines[N]`` (its top) and ``floor_lines[N-1]``
  (its bottom));
* how many pixels make a metre at a given row (from the local floor spacing and the storey
  height), which turns pixel tracks into metres so a fall can be tested against gravity;
* where motion counts (inside ``facade`` if given, outside every ``masks`` polygon).
"""

from __future__ import annotations

import itertools
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

Polygon = list[tuple[float, float]]


class CalibrationError(ValueError):
    """The calibration is missing or inconsistent; the message names the field."""


def _polygon(value: Any, name: str) -> Polygon:
    if not isinstance(value, list) or len(value) < 3:
        raise CalibrationError(f"{name}: a polygon needs at least 3 [x, y] points")
    points: Polygon = []
    for i, point in enumerate(value):
        if (
            not isinstance(point, list | tuple)
            or len(point) != 2
            or not all(isinstance(c, int | float) and not isinstance(c, bool) for c in point)
        ):
            raise CalibrationError(f"{name}[{i}]: expected [x, y], got {point!r}")
        points.append((float(point[0]), float(point[1])))
    return points


@dataclass(frozen=True, slots=True)
class Calibration:
    """Validated calibration of one camera view (full-resolution pixel coordinates)."""

    floor_lines: tuple[float, ...]
    masks: tuple[Polygon, ...] = ()
    facade: Polygon | None = None
    window_columns: tuple[float, ...] = ()
    """Optional x boundaries between window columns, left to right."""
    floor_height_m: float = 3.0
    _neg_lines: npt.NDArray[np.float64] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        lines = self.floor_lines
        if len(lines) < 2:
            raise CalibrationError("floor_lines: need at least the ground and one more line")
        if any(b >= a for a, b in itertools.pairwise(lines)):
            raise CalibrationError(
                "floor_lines: rows must decrease from the ground up (image y grows downwards)"
            )
        if not 2.0 <= self.floor_height_m <= 6.0:
            raise CalibrationError("floor_height_m: expected 2 to 6 metres")
        if any(b <= a for a, b in itertools.pairwise(self.window_columns)):
            raise CalibrationError("window_columns: x boundaries must increase")
        object.__setattr__(self, "_neg_lines", -np.asarray(lines, dtype=np.float64))

    @classmethod
    def from_dict(cls, data: Any) -> Calibration:
        """Build from the JSON/YAML mapping; raise :class:`CalibrationError` naming the field."""
        if not isinstance(data, dict):
            raise CalibrationError("calibration: expected a mapping")
        known = {"floor_lines", "masks", "facade", "window_columns", "floor_height_m"}
        unknown = sorted(set(data) - known)
        if unknown:
            raise CalibrationError(f"calibration: unknown field(s) {', '.join(unknown)}")
        lines = data.get("floor_lines")
        if not isinstance(lines, list) or not all(
            isinstance(v, int | float) and not isinstance(v, bool) for v in lines
        ):
            raise CalibrationError("floor_lines: expected a list of image rows")
        masks_raw = data.get("masks", []) or []
        if not isinstance(masks_raw, list):
            raise CalibrationError("masks: expected a list of polygons")
        masks = tuple(_polygon(m, f"masks[{i}]") for i, m in enumerate(masks_raw))
        facade_raw = data.get("facade")
        facade = _polygon(facade_raw, "facade") if facade_raw is not None else None
        cols = data.get("window_columns", []) or []
        if not isinstance(cols, list) or not all(
            isinstance(v, int | float) and not isinstance(v, bool) for v in cols
        ):
            raise CalibrationError("window_columns: expected a list of x positions")
        height = data.get("floor_height_m", 3.0)
        if not isinstance(height, int | float) or isinstance(height, bool):
            raise CalibrationError("floor_height_m: expected a number")
        return cls(
            floor_lines=tuple(float(v) for v in lines),
            masks=masks,
            facade=facade,
            window_columns=tuple(float(v) for v in cols),
            floor_height_m=float(height),
        )

    @classmethod
    def from_json_file(cls, path: Path | str) -> Calibration:
        """Read a calibration file, or a clip sidecar holding a ``calibration`` key."""
        path = Path(path)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            raise CalibrationError(f"{path}: cannot read calibration: {exc}") from exc
        if isinstance(data, dict) and "calibration" in data:
            data = data["calibration"]
        try:
            return cls.from_dict(data)
        except CalibrationError as exc:
            raise CalibrationError(f"{path}: {exc}") from exc

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "floor_lines": list(self.floor_lines),
            "masks": [[list(p) for p in m] for m in self.masks],
        }
        if self.facade is not None:
            out["facade"] = [list(p) for p in self.facade]
        if self.window_columns:
            out["window_columns"] = list(self.window_columns)
        if self.floor_height_m != 3.0:
            out["floor_height_m"] = self.floor_height_m
        return out

    def floor_coord(self, y: float | npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        """Continuous floor coordinate of image row(s) ``y``: 0 at the ground line, k at
        ``floor_lines[k]``, linear in between and extrapolated with the end spacings."""
        yy = -np.asarray(y, dtype=np.float64)
        xp = self._neg_lines
        k = np.arange(len(xp), dtype=np.float64)
        out = np.interp(yy, xp, k)
        below = yy < xp[0]
        above = yy > xp[-1]
        out = np.where(below, (yy - xp[0]) / (xp[1] - xp[0]), out)
        out = np.where(above, k[-1] + (yy - xp[-1]) / (xp[-1] - xp[-2]), out)
        return np.asarray(out, dtype=np.float64)

    def floor_of_coord(self, coord: float) -> int:
        """Floor number (1 = ground floor) of a floor coordinate; never below 1."""
        return max(1, math.floor(coord) + 1)

    def floor_of_row(self, y: float) -> int:
        """Floor number whose band holds image row ``y``."""
        return self.floor_of_coord(float(self.floor_coord(y)))

    def row_of_coord(self, coord: float) -> float:
        """Inverse of :meth:`floor_coord` for one value."""
        lines = self.floor_lines
        n = len(lines)
        if coord <= 0:
            return lines[0] + coord * (lines[1] - lines[0])
        if coord >= n - 1:
            return lines[-1] + (coord - (n - 1)) * (lines[-1] - lines[-2])
        k = int(coord)
        return lines[k] + (coord - k) * (lines[k + 1] - lines[k])

    def pixels_per_metre(self, y: float | npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        """Vertical image scale at row(s) ``y`` (from the local floor spacing)."""
        yy = np.asarray(y, dtype=np.float64)
        eps = 0.5
        d = np.abs(self.floor_coord(yy - eps) - self.floor_coord(yy + eps)) / (2 * eps)
        return np.asarray(1.0 / (d * self.floor_height_m), dtype=np.float64)

    def facade_span(
        self, y: float | npt.NDArray[np.float64]
    ) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
        """Left and right x of the facade at row(s) ``y`` (the polygon's extreme crossings,
        nearest edge beyond its top or bottom). Without a facade: NaN (callers fall back to
        image columns)."""
        yy = np.atleast_1d(np.asarray(y, dtype=np.float64))
        if self.facade is None:
            nan = np.full(yy.shape, np.nan)
            return nan, nan
        pts = np.asarray(self.facade, dtype=np.float64)
        lo_y, hi_y = pts[:, 1].min(), pts[:, 1].max()
        yc = np.clip(yy, lo_y + 1e-6, hi_y - 1e-6)
        left = np.full(yy.shape, np.inf)
        right = np.full(yy.shape, -np.inf)
        for (x0, y0), (x1, y1) in zip(pts, np.roll(pts, -1, axis=0), strict=True):
            if y0 == y1:
                continue
            f = (yc - y0) / (y1 - y0)
            inside = (f >= 0) & (f <= 1)
            xc = x0 + f * (x1 - x0)
            left = np.where(inside, np.minimum(left, xc), left)
            right = np.where(inside, np.maximum(right, xc), right)
        bad = ~np.isfinite(left) | ~np.isfinite(right) | (right - left < 1.0)
        left[bad], right[bad] = np.nan, np.nan
        return left, right

    def roof_coord(self) -> float | None:
        """Floor coordinate of the roof: the top of the facade polygon. None without a
        facade, or when the facade reaches the top of the image (the roof is out of view,
        so any height up there is possible)."""
        if self.facade is None:
            return None
        top = min(p[1] for p in self.facade)
        if top <= 1.0:
            return None
        return float(self.floor_coord(top))

    def window_column(self, x: float) -> int | None:
        """Index (0 = leftmost) of the window column holding ``x``, if columns are set."""
        if not self.window_columns:
            return None
        return int(np.searchsorted(np.asarray(self.window_columns), x))

    def valid_mask(self, width: int, height: int, scale: float = 1.0) -> npt.NDArray[np.uint8]:
        """255 where motion counts, 0 elsewhere, at ``scale`` times the full resolution."""
        import cv2

        w, h = max(1, round(width * scale)), max(1, round(height * scale))
        mask = np.zeros((h, w), np.uint8)
        if self.facade is None:
            mask[:] = 255
        else:
            pts = np.round(np.asarray(self.facade) * scale).astype(np.int32)
            cv2.fillPoly(mask, [pts], 255)
        for poly in self.masks:
            pts = np.round(np.asarray(poly) * scale).astype(np.int32)
            cv2.fillPoly(mask, [pts], 0)
        return mask
