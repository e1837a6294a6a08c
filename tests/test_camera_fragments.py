"""Falls the plain fall test misses: seen in fragments, seen late, seen only near terminal
speed, or crossing another fall; and the distractors these allowances must still refuse.

Short clips of the simulator with objects placed by hand; "hidden" frames paste the
static scene over the object (what a window of the object's own brightness does)."""

from __future__ import annotations

import math
from collections.abc import Iterator

import numpy as np
import pytest

from edge.camera.detector import Alarm, ThrowDetector
from edge.camera.evaluation import match_alarms
from edge.camera.fall import FallParams, check_fall
from edge.camera.stitching import FragmentStitcher
from edge.camera.tracking import Track
from simulators.camera.render import ClipRenderer, ClipSpec, _Obj
from tests.camera_independent import DISTRACTORS as INDEPENDENT_DISTRACTORS
from tests.camera_independent import independent_clip
from tests.test_camera_math import CAL, FPS, PPM


def _renderer(seed: int, objects: list[tuple[int, int, float, float, float, float]],
              night: bool = False, distractors: tuple[str, ...] = (),
              seconds: float = 8.0) -> ClipRenderer:
    """A 1280x720 clip with objects (release frame, floor, column offset m, vx m/s,
    terminal speed m/s, area px) instead of random ones."""
    r = ClipRenderer(ClipSpec(f"frag_{seed}", seed=seed, seconds=seconds, throws=0,
                              night=night, distractors=distractors))
    sc = r.scene
    cols = sc.column_centres_m()
    r.objects = [
        _Obj(rf, (floor - 1) * sc.floor_height_m + 1.2, cols[len(cols) // 2] + dx, vx, vt,
             math.sqrt(area / math.pi), 60 if not night else 140)
        for rf, floor, dx, vx, vt, area in objects
    ]
    return r


def _run(r: ClipRenderer, hidden: dict[int, set[int]] | None = None) -> list[Alarm]:
    """Detect over the clip's frames; ``hidden``: object index -> frames it is invisible."""
    spec = r.spec
    det = ThrowDetector(r.meta().calibration, spec.fps, spec.width, spec.height)
    alarms: list[Alarm] = []
    frames: Iterator[np.ndarray] = r.frames()
    for i, img in enumerate(frames):
        for k, gone in (hidden or {}).items():
            if i in gone:
                o = r.objects[k]
                u, v, _ = r._obj_pos(o, i / spec.fps)
                pad = round(o.radius) + 12
                y0, y1 = max(0, round(v) - 3 * pad), min(spec.height, round(v) + pad)
                x0, x1 = max(0, round(u) - pad), min(spec.width, round(u) + pad)
                img[y0:y1, x0:x1] = r.base[y0:y1, x0:x1]
        alarms += det.feed(det.prepare(img), i)
    alarms += det.finish(r.n_frames)
    return alarms


def _matched(r: ClipRenderer, alarms: list[Alarm]) -> tuple[list[Alarm | None], list[Alarm]]:
    pairs, extra = match_alarms(r.meta(), alarms)
    return [a for _, a in pairs], extra


def test_a_fall_cut_in_two_by_a_long_gap_is_stitched_back_together() -> None:
    # a bag (terminal speed 9 m/s) from floor 9, invisible for 9 frames after 0.6 s:
    # longer than a track survives, so the tracker cuts it in two
    r = _renderer(31, [(40, 9, 0.0, 0.5, 9.0, 60.0)])
    gap = set(range(55, 64))
    alarms = _run(r, {0: gap})
    found, extra = _matched(r, alarms)
    assert extra == []
    alarm = found[0]
    assert alarm is not None
    assert alarm.trajectory[0][0] < min(gap) < max(gap) < alarm.trajectory[-1][0]
    assert abs(alarm.floor - 9) <= 1


def test_a_light_object_first_seen_after_its_release_is_a_fall() -> None:
    # paper (terminal speed 6 m/s) hidden for its first 0.3 s: its early acceleration is
    # far below gravity, but drag explains it
    r = _renderer(32, [(40, 10, 0.0, 0.0, 6.0, 50.0)])
    alarms = _run(r, {0: set(range(40, 48))})
    found, extra = _matched(r, alarms)
    assert extra == []
    assert found[0] is not None
    assert abs(found[0].floor - 10) <= 1


def test_a_bag_seen_only_near_terminal_speed_is_a_steady_fall() -> None:
    # a bag (6 m/s) hidden for its first 1.3 s (96 % of its terminal speed by then), then
    # seen falling steadily over several floors
    r = _renderer(33, [(30, 13, 0.0, 0.0, 6.0, 60.0)], seconds=9.0)
    alarms = _run(r, {0: set(range(30, 30 + round(1.3 * FPS)))})
    found, extra = _matched(r, alarms)
    assert extra == []
    alarm = found[0]
    assert alarm is not None
    assert alarm.fit.reason == "steady_fall"
    assert abs(alarm.floor - 13) <= 1


def test_a_second_object_released_where_the_first_one_passes_is_its_own_alarm() -> None:
    # B is dropped from floor 5 just as A (from floor 10, the top floor of this scene)
    # passes its balcony: their blobs merge, then part; B is not a piece of A's fall
    r = _renderer(34, [(25, 10, 0.0, 0.0, 9.0, 60.0)], seconds=9.0)
    assert r.scene.floors == 10  # a release above the roof is refused (chained rain)
    a = r.objects[0]
    t_pass = None
    for f in range(a.release_frame, r.n_frames):
        if r._obj_pos(a, f / FPS)[2] <= 4 * r.scene.floor_height_m + 1.2:
            t_pass = f
            break
    assert t_pass is not None
    b = _Obj(t_pass, 4 * r.scene.floor_height_m + 1.2, a.x0, 0.0, 6.0, a.radius, a.level)
    r.objects.append(b)
    found, extra = _matched(r, _run(r))
    assert extra == []
    assert all(x is not None for x in found), found
    assert sorted(x.floor for x in found if x is not None) in ([5, 10], [4, 10], [6, 10])


# --- the stitcher and the steady-fall test on their own -----------------------------------
def _track(tid: int, frames: range, x0: float, y0: float, vx: float, vy: float,
           ay: float = 0.0) -> Track:
    tr = Track(tid)
    for k, f in enumerate(frames):
        tr.add(f, x0 + vx * k, y0 + vy * k + 0.5 * ay * k * k, 30.0)
    return tr


def test_stitcher_links_a_continuation_and_refuses_rain_and_a_still_lamp() -> None:
    st = FragmentStitcher(lambda y: 9.81 * PPM / FPS**2, max_gap=10)
    before = _track(1, range(100, 120), 500, 200, 0.2, 3.0, ay=0.3)
    end_vy = 3.0 + 0.3 * 19
    st.remember([before], 128)
    # 6 frames later, where gravity would have carried it
    after = _track(2, range(126, 129), 500 + 0.2 * 25, before.ys[-1] + end_vy * 6 + 5,
                   0.2, end_vy + 1.5)
    pool = st.pool([after], 128)
    assert st.link([after], pool) == [(after, before)]
    assert after.parent is before
    frames, _xs, ys, _ = after.chain()
    assert frames[0] == 100 and frames[-1] == 128 and ys == sorted(ys)
    # a rain streak starting there moves far faster than the fragment could have
    st.remember([_track(3, range(100, 120), 700, 200, 0.0, 3.0)], 128)
    rain = _track(4, range(124, 127), 700, 262, 0.0, 25.0)
    assert st.link([rain], st.pool([rain], 126)) == []
    # a lamp that sat still is not where a falling object starts moving fast
    # (and a fragment is continued once only)
    st.remember([_track(5, range(100, 120), 900, 300, 0.0, 0.0)], 128)
    drop = _track(6, range(124, 127), 902, 310, 0.0, 9.0)
    assert st.link([drop], st.pool([drop], 126)) == []
    st.remember([before], 128)  # ended again later: still not continued twice
    again = _track(7, range(126, 129), after.xs[0], after.ys[0], 0.2, end_vy + 1.5)
    assert st.link([again], st.pool([again], 128)) == []


def test_stitcher_pairs_best_first_when_two_tracks_start_at_once() -> None:
    # one blob (two objects together) parts in two: the fast piece continues the fall,
    # the one starting at rest is another object
    st = FragmentStitcher(lambda y: 9.81 * PPM / FPS**2, max_gap=10)
    fall = _track(1, range(100, 120), 500, 200, 0.0, 2.0, ay=0.2)
    vy = 2.0 + 0.2 * 19
    slow = _track(2, range(121, 124), 500, fall.ys[-1] - 4, 0.0, 0.3)
    fast = _track(3, range(121, 124), 500, fall.ys[-1] + vy + 2, 0.0, vy + 0.3)
    pairs = st.link([slow, fast], st.pool([fall, slow, fast], 123))
    assert pairs == [(fast, fall)]


def test_steady_fall_needs_facade_speed_not_pixel_speed() -> None:
    # perspective: floors 150 px tall at the bottom, 40 px at the top
    lines = [680.0]
    for k in range(12):
        lines.append(lines[-1] - (150 - 10 * k))
    cal = type(CAL).from_dict({"floor_lines": lines})
    t = np.arange(0, 45) / FPS
    # 6 m/s in facade metres from floor 9 down
    h0 = 8 * 3.0
    h = h0 - 6.0 * t
    y = np.array([cal.row_of_coord(v / 3.0) for v in h])
    x = np.full(t.size, 600.0)
    fit = check_fall(t, x, y, cal, fps=FPS)
    assert fit.is_fall and fit.reason == "steady_fall"
    assert 7 <= fit.release_floor <= 11
    # the same rows crossed at a constant pixel speed (rain, a gliding bird) are not
    y_rain = np.linspace(y[0], y[-1], t.size)
    assert not check_fall(t, x, y_rain, cal, fps=FPS).is_fall
    # nor a steep slant, nor a speed no dragged object keeps
    assert not check_fall(t, x + 1.0 * (y - y[0]), y, cal, fps=FPS).is_fall
    fast = np.array([cal.row_of_coord(max(0.0, h0 - 11.0 * v) / 3.0) for v in t])
    assert not check_fall(t[:20], x[:20], fast[:20], cal, FallParams(), fps=FPS).is_fall


def test_a_pigeon_dropping_off_a_railing_then_flying_off_is_not_a_fall() -> None:
    frames = np.arange(0, 40, dtype=float)
    tt = frames / FPS
    drop = tt < 0.4
    vy_end = 9.81 * 0.4 * PPM
    y = np.where(drop, 200 + 0.5 * 9.81 * PPM * tt * tt,
                 200 + 0.5 * 9.81 * PPM * 0.16 + vy_end * 0.3 * (1 - np.exp(-(tt - 0.4) / 0.3)))
    x = np.where(drop, 500.0, 500.0 + 12 * PPM * (tt - 0.4))
    assert not check_fall(tt, x, y, CAL, fps=FPS).is_fall


@pytest.mark.parametrize("night", [False, True])
def test_independent_renderer_distractors_raise_no_alarm(
    tmp_path: pytest.TempPathFactory, night: bool
) -> None:
    from pathlib import Path

    from edge.camera.clip import read_meta
    from edge.camera.video import detect_clip

    video = independent_clip(Path(str(tmp_path)), f"indep_distr_{int(night)}", 41 + night, [],
                             seconds=20.0, night=night, distractors=INDEPENDENT_DISTRACTORS)
    meta = read_meta(video.with_suffix(".json"))
    res = detect_clip(video, meta.calibration, meta.fps)
    assert [a.to_json() for a in res.alarms] == []
