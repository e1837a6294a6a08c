"""The fall test and back-tracing: is a pixel track an object falling under gravity, and from
where did it start?

A track is converted to metres with the calibration (height above ground from the floor
lines and the storey height, horizontal metres from the local pixel scale) and fitted with
a physical model of a fall from rest with quadratic drag::

    drop(tau) = (vt**2 / g') * ln(cosh(g' * tau / vt))      (vt = inf: g' * tau**2 / 2)

over a small grid of effective gravity ``g'`` (covers storey-height error), terminal
velocity ``vt`` (a stone: inf; paper or a bag: a few m/s) and release time ``t_r`` (up to
``max_backtrace_s`` before the first sighting). The best fit gives the release time and
height, so the origin floor is back-traced even when the first frames of the fall were
missed. A track is a fall only if the model fits to within pixel noise, the speed grows
along the track (rain and gliding birds move at constant speed), the object descends at
least ``min_descent_floors`` and ``min_descent_px``, and its sideways motion is steady and
slower than ``max_sideways_mps``.

Two kinds of fall show little acceleration and get their own, stricter tests:

* a light object (paper, a bag) seen a few tenths of a second after its release: its
  early acceleration is only 0.2-0.35 g. It is accepted when that acceleration is highly
  significant and the best-fitting model is one *with* drag that fits within pixel noise;
* a light object seen only near its terminal speed (:func:`_steady_fall`): a steady
  downward speed of a dragged object (``terminal_min_mps`` .. ``terminal_max_mps`` in
  facade metres), sustained over at least ``terminal_min_floors`` floors, nearly vertical,
  neither slowing down nor wobbling, and constant in *facade metres* rather than in pixels
  (with perspective, rain near the lens and birds move at constant pixel speed, a falling
  object at constant metres per second). The release is back-traced to where an object
  falling from rest reaches 90 % of that speed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from edge.camera.calibration import Calibration

G = 9.81
_G_FACTORS = np.array([0.7, 0.85, 1.0, 1.15, 1.35])
_TERMINAL = np.array([np.inf, 30.0, 15.0, 9.0, 6.0, 4.0])

FloatArray = npt.NDArray[np.float64]


@dataclass(frozen=True, slots=True)
class FallParams:
    """Thresholds of the fall test (defaults tuned on simulated and independent clips)."""

    min_points: int = 10
    min_duration_s: float = 0.3
    min_descent_floors: float = 1.0
    min_descent_px: float = 8.0
    """A track that descends fewer pixels than this is no evidence of a fall whatever its
    fit: near the top of a low-resolution view a floor is 3 or 4 pixels, so an edge that
    jitters in place while the camera shakes and then jumps by the shake's few pixels fits
    a fall within the shape tolerance (``max_rms_px``). A real fall keeps descending."""
    max_rms_px: float = 2.5
    min_speed_gain_mps: float = 2.0
    max_sideways_mps: float = 12.0
    """Measured with the vertical scale, which looking up overstates sideways speed 2-3x."""
    max_sideways_rms_px: float = 3.0
    max_backtrace_s: float = 2.5
    accel_window_s: float = 1.2
    min_accel_g: float = 0.35
    min_accel_sigma: float = 4.0
    min_accel_g_drag: float = 0.2
    """A smaller early acceleration (a light object seen after its release) is enough
    when it is ``min_accel_sigma_drag`` standard errors from zero and the best model has
    drag."""
    min_accel_sigma_drag: float = 8.0
    rest_speed_mps: float = 0.8
    """A track whose first six sightings descend slower than this (or by at most two
    pixels) started at rest in view."""
    rest_release_s: float = 0.6
    min_line_ratio: float = 3.0
    max_mean_gap: float = 1.5
    """Mean frames between sightings: chained rain drops leave gaps, a tracked object few."""
    terminal_min_mps: float = 2.5
    terminal_max_mps: float = 8.0
    """Steady falls: a dragged object's terminal speed (rain near the lens looks faster)."""
    terminal_min_floors: float = 2.0
    terminal_min_points: int = 15
    terminal_max_mean_gap: float = 1.1
    terminal_max_gap: int = 2
    """A steady fall is seen in nearly every frame (chained rain streaks leave gaps)."""
    terminal_min_duration_s: float = 0.6
    terminal_max_slant: float = 0.6
    """Sideways pixels per pixel of descent (a dragged object falls nearly vertically)."""
    terminal_max_decel_g: float = 0.1
    terminal_max_accel_g: float = 0.35
    terminal_perspective_slack: float = 0.15
    """The constant-metres-per-second model may fit at most this much worse (tolerance
    units) than a constant-pixels-per-frame one."""
    terminal_speed_share: float = 0.9
    """Back-tracing a steady fall assumes it was first seen at this share of its terminal
    speed."""
    max_release_above_roof_floors: float = 1.0
    """A fall back-traced to a release more than this many storeys above the roof (the top
    of the facade polygon) started nowhere: dense rain, streaks at several depths chained
    into one track whose speed grows from streak to streak, fits a fall released high above
    the building. The margin covers the back-tracing error (within one floor)."""


@dataclass(frozen=True, slots=True)
class FallFit:
    """Result of the fall test on one track."""

    is_fall: bool
    reason: str
    """``"fall"`` or why the track was rejected (for counters and debugging)."""
    release_t: float = 0.0
    release_y: float = 0.0
    release_x: float = 0.0
    release_floor: int = 0
    g_factor: float = 0.0
    terminal_mps: float = math.inf
    rms_px: float = 0.0
    speed_gain_mps: float = 0.0
    sideways_mps: float = 0.0


def fall_drop(tau: FloatArray, g: float, vt: float) -> FloatArray:
    """Distance fallen ``tau`` seconds after release from rest (metres)."""
    tau = np.maximum(tau, 0.0)
    if math.isinf(vt):
        return np.asarray(0.5 * g * tau * tau, dtype=np.float64)
    z = g * tau / vt
    # ln(cosh z) computed stably: |z| + log1p(exp(-2|z|)) - ln 2
    return np.asarray((vt * vt / g) * (z + np.log1p(np.exp(-2.0 * z)) - math.log(2.0)),
                      dtype=np.float64)


def fall_speed(tau: FloatArray, g: float, vt: float) -> FloatArray:
    tau = np.maximum(tau, 0.0)
    if math.isinf(vt):
        return np.asarray(g * tau, dtype=np.float64)
    return np.asarray(vt * np.tanh(g * tau / vt), dtype=np.float64)


def check_fall(
    t: FloatArray, x: FloatArray, y: FloatArray, cal: Calibration,
    params: FallParams | None = None, fps: float = 25.0,
) -> FallFit:
    """Decide whether the track (times in s, full-resolution pixel positions) is a fall."""
    p = params or FallParams()
    fit = _check_fall(t, x, y, cal, p, fps)
    if not fit.is_fall:
        return fit
    if _above_roof(fit, cal, p):
        return _with(fit, False, "above_roof")
    if (fit.reason == "fall" and fit.g_factor >= float(_G_FACTORS[-1]) - 1e-9
            and float(np.diff(t).max()) * fps > 1.5):
        # the strongest gravity of the grid on a track with missed frames: either a real
        # fall (storey height underestimated) or streaks of rain at several depths chained
        # with a stray first blob whose jump to the next one makes the "acceleration".
        # A real fall is still one without its first sighting.
        rest = _check_fall(t[1:], x[1:], y[1:], cal, p, fps)
        if not rest.is_fall or _above_roof(rest, cal, p):
            return _with(fit, False, "edge_fit")
    return fit


def _above_roof(fit: FallFit, cal: Calibration, p: FallParams) -> bool:
    """Whether the back-traced release is more than the margin above the roof."""
    roof = cal.roof_coord()
    if roof is None:
        return False
    rel_coord = float(cal.floor_coord(fit.release_y))
    return rel_coord > roof + p.max_release_above_roof_floors


def _check_fall(
    t: FloatArray, x: FloatArray, y: FloatArray, cal: Calibration, p: FallParams, fps: float,
) -> FallFit:
    n = len(t)
    if n < p.min_points:
        return FallFit(False, "short")
    if t[-1] - t[0] < p.min_duration_s:
        return FallFit(False, "short")
    coord = cal.floor_coord(y)
    if coord[0] - coord[-1] < p.min_descent_floors or y[-1] - y[0] < p.min_descent_px:
        return FallFit(False, "descent")
    h = coord * cal.floor_height_m
    ppm = cal.pixels_per_metre(y)
    gaps = (t[-1] - t[0]) * fps / max(1, n - 1)
    if gaps > p.max_mean_gap:
        return FallFit(False, "sparse")
    acc, acc_se = _early_acceleration(t, h, ppm, p.accel_window_s)
    accelerates = -acc >= p.min_accel_g * G and -acc >= p.min_accel_sigma * acc_se
    weakly = -acc >= p.min_accel_g_drag * G and -acc >= p.min_accel_sigma_drag * acc_se
    k = min(n, 6)
    rest_px = max(2.0, p.rest_speed_mps * (t[k - 1] - t[0]) * float(ppm[0]))
    starts_at_rest = y[k - 1] - y[0] <= rest_px
    # blur and segmentation move the centroid of a fast object: allow 10 % of its step
    step = np.abs(np.gradient(y, t)) / fps
    tol = 1.0 + 0.1 * step
    if not accelerates and not weakly and not starts_at_rest:
        steady = _steady_fall(t, x, y, h, ppm, tol, cal, p, fps)
        return steady if steady is not None else FallFit(False, "no_acceleration")
    w = (ppm / tol) ** 2
    dt_grid = np.arange(0.0, p.max_backtrace_s + 1e-9, 0.02)
    t_r = t[0] - dt_grid
    tau = t[None, :] - t_r[:, None]
    best = (math.inf, 0.0, 0.0, 0.0, 0.0)
    for gf in _G_FACTORS:
        g = G * float(gf)
        for vt in _TERMINAL:
            drop = fall_drop(tau, g, float(vt))
            s = h[None, :] + drop
            h_r = (s * w).sum(axis=1) / w.sum()
            res_px = (s - h_r[:, None]) * ppm[None, :] / tol[None, :]
            rms = np.sqrt((res_px * res_px).mean(axis=1))
            k = int(np.argmin(rms))
            if rms[k] < best[0]:
                best = (float(rms[k]), float(t_r[k]), float(h_r[k]), g, float(vt))
    rms, rel_t, rel_h, g, vt = best
    v0 = float(fall_speed(np.array([t[0] - rel_t]), g, vt)[0])
    v1 = float(fall_speed(np.array([t[-1] - rel_t]), g, vt)[0])
    gain = v1 - v0
    # sideways: in facade coordinates (0 at the left edge, 1 at the right edge at each row)
    # when the facade is known, so the keystone of an upward view does not bend the path
    left, right = cal.facade_span(y)
    span = right - left
    use_facade = bool(np.all(np.isfinite(span)))
    u = (x - left) / span if use_facade else x
    a_x = np.vstack([t - t[0], np.ones(n)]).T
    coef, *_ = np.linalg.lstsq(a_x, u, rcond=None)
    u_res = u - a_x @ coef
    x_res_px = u_res * span if use_facade else u_res
    slope_px = float(coef[0]) * (float(span.mean()) if use_facade else 1.0)
    vx = slope_px / float(ppm.mean())
    x_norm = x_res_px / tol
    x_rms = float(np.sqrt((x_norm * x_norm).mean()))
    rel_coord = rel_h / cal.floor_height_m
    rel_y = cal.row_of_coord(rel_coord)
    u_rel = float(coef[1] + coef[0] * (rel_t - t[0]))
    if use_facade:
        l_r, r_r = cal.facade_span(rel_y)
        rel_x = float(l_r[0] + u_rel * (r_r[0] - l_r[0]))
        if not np.isfinite(rel_x):
            rel_x = float(x[0])
    else:
        rel_x = u_rel
    fit = FallFit(
        False, "", rel_t, rel_y, rel_x, cal.floor_of_coord(rel_coord), g / G, vt, rms, gain, vx
    )
    if rms > p.max_rms_px:
        return _with(fit, False, "shape")
    if gain < max(p.min_speed_gain_mps, 0.3 * v1):
        return _with(fit, False, "no_acceleration")
    if not accelerates:
        if weakly and not math.isinf(vt):
            pass  # a weak early acceleration that drag explains: a light object
        elif starts_at_rest:
            # a light object seen from its release: at rest, then at speed; a straight
            # line (rain, a gliding bird) cannot fit that, and the release must be where
            # it started
            line_rms = _line_rms(t, y, tol)
            if (line_rms < p.min_line_ratio * max(rms, 0.5)
                    or t[0] - rel_t > p.rest_release_s):
                return _with(fit, False, "no_acceleration")
        else:
            return _with(fit, False, "no_acceleration")
    if abs(vx) > p.max_sideways_mps:
        return _with(fit, False, "sideways")
    if x_rms > p.max_sideways_rms_px:
        return _with(fit, False, "erratic")
    return _with(fit, True, "fall")


def _steady_fall(
    t: FloatArray, x: FloatArray, y: FloatArray, h: FloatArray, ppm: FloatArray,
    tol: FloatArray, cal: Calibration, p: FallParams, fps: float,
) -> FallFit | None:
    """A fall first seen near its terminal speed (see the module notes), or None."""
    n = len(t)
    coord = h / cal.floor_height_m
    if (n < p.terminal_min_points or t[-1] - t[0] < p.terminal_min_duration_s
            or coord[0] - coord[-1] < p.terminal_min_floors):
        return None
    frame_gaps = np.diff(t) * fps
    if (float(frame_gaps.mean()) > p.terminal_max_mean_gap
            or float(frame_gaps.max()) > p.terminal_max_gap + 0.5):
        return None
    dy = float(y[-1] - y[0])
    if dy <= 0 or abs(float(x[-1] - x[0])) > p.terminal_max_slant * dy:
        return None
    tt = t - t[0]
    w = ppm / tol
    # constant speed in facade metres, weighted to pixel-tolerance units
    a_lin = np.vstack([np.ones(n), tt]).T
    coef, *_ = np.linalg.lstsq(a_lin * w[:, None], h * w, rcond=None)
    speed = -float(coef[1])
    res_m = (h - a_lin @ coef) * w
    rms_m = float(np.sqrt((res_m * res_m).mean()))
    if not p.terminal_min_mps <= speed <= p.terminal_max_mps or rms_m > p.max_rms_px:
        return None
    # neither slowing down (a bird levelling off) nor still clearly accelerating
    a_q = np.vstack([np.ones(n), tt, 0.5 * tt * tt]).T
    cq, *_ = np.linalg.lstsq(a_q * w[:, None], h * w, rcond=None)
    if cq[2] > p.terminal_max_decel_g * G or -cq[2] > p.terminal_max_accel_g * G:
        return None
    # perspective: constant metres per second, not constant pixels per frame
    if rms_m > _line_rms(t, y, tol) + p.terminal_perspective_slack:
        return None
    # sideways: steady
    a_x = np.vstack([tt, np.ones(n)]).T
    cx, *_ = np.linalg.lstsq(a_x, x, rcond=None)
    x_res = (x - a_x @ cx) / tol
    if float(np.sqrt((x_res * x_res).mean())) > p.max_sideways_rms_px:
        return None
    vt = speed / p.terminal_speed_share
    share = p.terminal_speed_share
    lead_s = vt / G * math.atanh(share)
    lead_m = vt * vt / (2 * G) * math.log(1.0 / (1.0 - share * share))
    rel_h = float(coef[0]) + lead_m
    rel_coord = rel_h / cal.floor_height_m
    rel_y = cal.row_of_coord(rel_coord)
    return FallFit(True, "steady_fall", float(t[0]) - lead_s, rel_y, float(cx[1]),
                   cal.floor_of_coord(rel_coord), 1.0, vt, rms_m, 0.0,
                   float(cx[0]) / float(ppm.mean()))


def _early_acceleration(
    t: FloatArray, h: FloatArray, ppm: FloatArray, window_s: float
) -> tuple[float, float]:
    """Free quadratic fit of height over the first ``window_s`` of the track (at least six
    sightings): the acceleration (m/s², negative = down) and its standard error. Pixel-
    weighted, so the error reflects the real measurement noise at each row."""
    k = max(6, int(np.searchsorted(t, t[0] + window_s, side="right")))
    tt, hh, w = t[:k] - t[0], h[:k], ppm[:k]
    a = np.vstack([np.ones_like(tt), tt, 0.5 * tt * tt]).T * w[:, None]
    b = hh * w
    coef, *_ = np.linalg.lstsq(a, b, rcond=None)
    res = b - a @ coef
    dof = max(1, len(tt) - 3)
    sigma2 = max(float(res @ res) / dof, 0.25)
    try:
        cov = np.linalg.inv(a.T @ a) * sigma2
    except np.linalg.LinAlgError:
        return 0.0, float("inf")
    return float(coef[2]), float(np.sqrt(max(cov[2, 2], 0.0)))


def _line_rms(t: FloatArray, y: FloatArray, tol: FloatArray) -> float:
    """RMS residual (in tolerance units) of the best constant-velocity fit of the rows."""
    a = np.vstack([t - t[0], np.ones_like(t)]).T / tol[:, None]
    coef, *_ = np.linalg.lstsq(a, y / tol, rcond=None)
    res = y / tol - a @ coef
    return float(np.sqrt((res * res).mean()))


def _with(fit: FallFit, ok: bool, reason: str) -> FallFit:
    return FallFit(
        ok, reason, fit.release_t, fit.release_y, fit.release_x, fit.release_floor,
        fit.g_factor, fit.terminal_mps, fit.rms_px, fit.speed_gain_mps, fit.sideways_mps,
    )
