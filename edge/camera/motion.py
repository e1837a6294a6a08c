"""Motion: small moving blobs in a downscaled grey frame.

A running background (float, updated only where nothing moves) and a running mean absolute
deviation per pixel give a per-pixel threshold, so flickering lights, swaying edges and
compression noise raise their own threshold instead of raising detections. A global gain
factor is removed first (flicker, slow exposure drift). When too large a share of the view
changes at once (an exposure step, a light switching a whole wall, camera shake) the frame
is declared *disturbed*: the background is re-seeded from it and it yields no blobs.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
import numpy.typing as npt

U8 = npt.NDArray[np.uint8]
F32 = npt.NDArray[np.float32]


@dataclass(frozen=True, slots=True)
class MotionParams:
    alpha_bg: float = 0.05
    alpha_dev: float = 0.02
    k_dev: float = 4.0
    min_threshold: float = 6.0
    max_threshold: float = 60.0
    initial_dev: float = 3.0
    disturbed_share: float = 0.03
    max_blob_area: int = 600
    max_blob_side: int = 48
    max_blobs: int = 400


@dataclass(frozen=True, slots=True)
class Blobs:
    """Blobs of one frame at processing resolution: centroids (N x 2: x, y), areas, contrasts."""

    xy: npt.NDArray[np.float64]
    area: npt.NDArray[np.int32]
    disturbed: bool


_EMPTY = np.zeros((0, 2), np.float64)
_KERNEL = np.ones((3, 3), np.uint8)


class MotionDetector:
    """Per-pixel adaptive background subtraction on the processing image.

    Kept cheap: the per-frame work is on 8-bit images (one scaled conversion of the
    background that also removes the global gain, an absolute difference, a comparison with
    the threshold map, connected components); the float background is updated every
    ``update_every`` frames and the deviation/threshold map every ``4 * update_every``.
    """

    def __init__(self, valid: U8, params: MotionParams | None = None,
                 update_every: int = 2) -> None:
        self._p = params or MotionParams()
        self._valid = valid
        self._valid_count = float(np.count_nonzero(valid)) or 1.0
        self._every = max(1, update_every)
        self._bg: F32 | None = None
        self._dev: F32 | None = None
        self._thr: U8 | None = None
        self._bg_mean = 0.0
        self._frames = 0
        self.disturbed_frames = 0

    @property
    def shape(self) -> tuple[int, int]:
        h, w = self._valid.shape
        return h, w

    def reset(self) -> None:
        """Forget the background (a new stream, a reconnect)."""
        self._bg = None
        self._dev = None
        self._thr = None
        self._frames = 0

    def _threshold_map(self) -> U8:
        p, dev = self._p, self._dev
        assert dev is not None
        thr = cv2.addWeighted(dev, p.k_dev, dev, 0.0, p.min_threshold)
        return np.asarray(np.clip(thr, 0, p.max_threshold), np.uint8)

    def process(self, gray: U8) -> Blobs:
        """Blobs of ``gray`` (same size as the valid mask); updates the background."""
        p = self._p
        if self._bg is None or self._dev is None or self._thr is None:
            self._bg = gray.astype(np.float32)
            self._dev = np.full(gray.shape, p.initial_dev, np.float32)
            self._thr = self._threshold_map()
            self._bg_mean = cv2.mean(gray, self._valid)[0]
            self._frames = 1
            return Blobs(_EMPTY, np.zeros(0, np.int32), True)
        bg = self._bg
        self._frames += 1
        mean_fr = cv2.mean(gray, self._valid)[0]
        gain = mean_fr / self._bg_mean if self._bg_mean > 1.0 else 1.0
        bg8 = cv2.convertScaleAbs(bg, alpha=gain)
        diff = cv2.absdiff(gray, bg8)
        fg = cv2.compare(diff, self._thr, cv2.CMP_GT)
        cv2.bitwise_and(fg, self._valid, dst=fg)
        changed = cv2.countNonZero(fg)
        if changed > p.disturbed_share * self._valid_count:
            self.disturbed_frames += 1
            self._bg = gray.astype(np.float32)
            self._bg_mean = mean_fr
            return Blobs(_EMPTY, np.zeros(0, np.int32), True)
        if self._frames % self._every == 0:
            if abs(gain - 1.0) > 0.002:
                bg *= gain
            still = cv2.bitwise_not(fg)
            cv2.accumulateWeighted(gray, bg, p.alpha_bg * self._every, still)
            if self._frames % (4 * self._every) == 0:
                # unmasked: a pixel that stays "moving" (a lamp, a flag edge) must not freeze
                # its background and deviation for ever
                assert self._dev is not None
                cv2.accumulateWeighted(gray, bg, p.alpha_bg * self._every)
                cv2.accumulateWeighted(diff, self._dev, p.alpha_dev * 4 * self._every)
                self._thr = self._threshold_map()
            self._bg_mean = cv2.mean(bg, self._valid)[0]
        if changed == 0:
            return Blobs(_EMPTY, np.zeros(0, np.int32), False)
        # join the pieces of one object cut by a thin line of its own brightness (a floor
        # line, a railing): components closer than two pixels become one
        fg = cv2.dilate(fg, _KERNEL)
        n, _labels, stats, cents = cv2.connectedComponentsWithStats(fg, connectivity=8)
        if n <= 1:
            return Blobs(_EMPTY, np.zeros(0, np.int32), False)
        stats = stats[1:]
        cents = cents[1:]
        area = stats[:, cv2.CC_STAT_AREA]
        keep = (
            (area <= p.max_blob_area)
            & (stats[:, cv2.CC_STAT_WIDTH] <= p.max_blob_side)
            & (stats[:, cv2.CC_STAT_HEIGHT] <= p.max_blob_side)
        )
        xy = cents[keep].astype(np.float64)
        ar = area[keep].astype(np.int32)
        if len(ar) > p.max_blobs:
            order = np.argsort(-ar)[: p.max_blobs]
            xy, ar = xy[order], ar[order]
        return Blobs(xy, ar, False)
