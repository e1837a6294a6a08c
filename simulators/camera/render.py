"""Render one simulated camera clip (grey video + sidecar ground truth).

The static scene (sky, facade, floors, windows, balconies, a tree, the road) is drawn once;
each frame adds what moves: falling objects with motion blur, and the distractors a real
facade camera sees (birds, insects near the lens, rain, leaves, swinging laundry, lights
switching, flicker, auto-exposure steps, shake), then sensor noise. The video codec adds
compression noise. Objects fall from rest with quadratic drag (terminal speed infinite for
a stone, a few m/s for paper or a bag) and 0 to 3 m/s of sideways speed.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import numpy.typing as npt

from edge.camera.calibration import Calibration
from edge.camera.clip import ClipMeta, Throw, write_meta
from simulators.camera.scene import Scene, fall_drop

U8 = npt.NDArray[np.uint8]
DISTRACTORS = ("birds", "insects", "rain", "leaves", "laundry", "lights", "flicker",
               "exposure", "shake")


@dataclass(frozen=True, slots=True)
class ClipSpec:
    """What to render. ``throws`` is the number of objects; ``distractors`` the kinds on."""

    name: str
    seed: int
    seconds: float = 12.0
    width: int = 1280
    height: int = 720
    fps: int = 25
    night: bool = False
    throws: int = 1
    distractors: tuple[str, ...] = ()
    size_range: tuple[float, float] = (6.0, 120.0)
    """Object area range in pixels (drawn log-uniformly)."""
    codec: str = "mp4v"


@dataclass(slots=True)
class _Obj:
    release_frame: int
    z0: float
    x0: float
    vx: float
    vt: float
    radius: float
    level: int
    impact_frame: int = -1


@dataclass(slots=True)
class _Mover:
    """A generic moving distractor in image coordinates."""

    x: float
    y: float
    vx: float
    vy: float
    r: float
    level: int
    age: int = 0
    life: int = 100
    phase: float = 0.0
    kind: str = ""
    extra: dict[str, float] = field(default_factory=dict)


class ClipRenderer:
    def __init__(self, spec: ClipSpec) -> None:
        self.spec = spec
        self.rng = np.random.default_rng(spec.seed)
        rng = self.rng
        floors = int(rng.integers(10, 19))
        self.scene = Scene.build(
            spec.width, spec.height, floors, float(rng.uniform(15.0, 20.0)),
            int(rng.integers(5, 10)), floor_height_m=float(rng.uniform(2.9, 3.2)),
            ground_row=float(rng.uniform(0.86, 0.93)), top_row=float(rng.uniform(0.03, 0.10)),
        )
        self.masks: list[list[list[float]]] = []
        self.base = self._draw_static()
        self.n_frames = round(spec.seconds * spec.fps)
        self.objects = self._plan_throws()
        self._noise = self._noise_bank()

    # static scene -----------------------------------------------------------------------
    def _draw_static(self) -> U8:
        s, sc, rng = self.spec, self.scene, self.rng
        night = s.night
        img = np.full((s.height, s.width), 12 if night else int(rng.integers(170, 215)),
                      np.uint8)
        sky_grad = np.linspace(0, 25 if not night else 8, s.height, dtype=np.float32)
        img = np.clip(img.astype(np.float32) + sky_grad[:, None], 0, 255).astype(np.uint8)
        facade = np.asarray(sc.facade_polygon(), np.float32)
        tone = int(rng.integers(25, 45)) if night else int(rng.integers(105, 160))
        cv2.fillPoly(img, [np.round(facade).astype(np.int32)], tone)
        hw = sc.facade_width_m / 2
        fh = sc.floor_height_m
        step = sc.facade_width_m / sc.columns
        self.windows: list[tuple[int, int, int, int]] = []
        for f in range(sc.floors):
            z = f * fh
            a, b = sc.project(-hw, z), sc.project(hw, z)
            cv2.line(img, (round(a[0]), round(a[1])), (round(b[0]), round(b[1])),
                     max(0, tone - 30), 1, cv2.LINE_AA)
            for c in range(sc.columns):
                x0 = -hw + step * c + step * 0.2
                x1 = x0 + step * 0.6
                p0 = sc.project(x0, z + 0.9)
                p1 = sc.project(x1, z + 2.5)
                lit = night and rng.random() < 0.35
                level = int(rng.integers(150, 230)) if lit else (
                    int(rng.integers(5, 20)) if night else int(rng.integers(40, 90)))
                rect = (round(p0[0]), round(p1[1]), round(p1[0]), round(p0[1]))
                cv2.rectangle(img, rect[:2], rect[2:], level, -1)
                self.windows.append(rect)
                # balcony railing
                r0 = sc.project(x0 - step * 0.05, z + 1.0)
                r1 = sc.project(x1 + step * 0.05, z + 1.0)
                cv2.line(img, (round(r0[0]), round(r0[1])), (round(r1[0]), round(r1[1])),
                         min(255, tone + 40), 1, cv2.LINE_AA)
        # road below the ground line (masked)
        g_row = round(sc.project(0.0, 0.0)[1])
        img[g_row + 2:, :] = 40 if night else 95
        self.masks.append([[0, g_row + 2], [s.width - 1, g_row + 2],
                           [s.width - 1, s.height - 1], [0, s.height - 1]])
        # a tree on one side (masked)
        left = rng.random() < 0.5
        tx = int(s.width * (rng.uniform(0.02, 0.12) if left else rng.uniform(0.88, 0.98)))
        trad = int(s.height * rng.uniform(0.12, 0.2))
        ty = g_row - trad
        self.tree = (tx, ty, trad)
        cv2.circle(img, (tx, ty), trad, 25 if night else 70, -1)
        r = trad + 8
        self.masks.append([[tx - r, ty - r], [tx + r, ty - r], [tx + r, g_row + 2],
                           [tx - r, g_row + 2]])
        return np.asarray(img, np.uint8)

    def _noise_bank(self) -> list[tuple[U8, U8]]:
        sigma = 4.0 if self.spec.night else 2.0
        out = []
        for _ in range(6):
            n = self.rng.normal(0.0, sigma, (self.spec.height, self.spec.width))
            out.append((np.clip(n, 0, 255).astype(np.uint8),
                        np.clip(-n, 0, 255).astype(np.uint8)))
        return out

    # throws -----------------------------------------------------------------------------
    def _plan_throws(self) -> list[_Obj]:
        s, sc, rng = self.spec, self.scene, self.rng
        objs: list[_Obj] = []
        if s.throws <= 0:
            return objs
        usable = self.n_frames - int(4.5 * s.fps)
        start = int(1.5 * s.fps)
        slots = np.linspace(start, max(start, usable), s.throws + 1)
        cols = sc.column_centres_m()
        tx, _, trad = self.tree
        for i in range(s.throws):
            rf = int(rng.integers(int(slots[i]), max(int(slots[i]) + 1, int(slots[i + 1]))))
            floor = int(rng.integers(3, sc.floors + 1))
            for _ in range(20):
                x0 = float(rng.choice(cols)) + float(rng.uniform(-0.5, 0.5))
                u, _v = sc.project(x0, 0.0)
                if abs(u - tx) > trad + 30:
                    break
            kind = rng.random()
            vt = math.inf if kind < 0.5 else (20.0 if kind < 0.7 else (9.0 if kind < 0.85 else 6.0))
            lo, hi = s.size_range
            area = float(math.exp(rng.uniform(math.log(lo), math.log(hi))))
            radius = math.sqrt(area / math.pi)
            base = 12 if s.night else 140
            level = int(rng.integers(90, 150)) if s.night else int(
                rng.choice([rng.integers(10, 70), rng.integers(215, 255)]))
            del base
            objs.append(_Obj(rf, (floor - 1) * sc.floor_height_m + float(rng.uniform(1.0, 1.4)),
                             x0, float(rng.uniform(-3.0, 3.0)), vt, radius, level))
        return objs

    def _obj_pos(self, o: _Obj, t: float) -> tuple[float, float, float]:
        """(u, v, z) of object ``o`` at clip time ``t`` seconds."""
        tau = t - o.release_frame / self.spec.fps
        z = o.z0 - fall_drop(tau, o.vt)
        vx = o.vx if math.isinf(o.vt) else o.vx * min(1.0, o.vt / 10.0)
        x = o.x0 + vx * max(tau, 0.0)
        u, v = self.scene.project(x, z)
        return u, v, z

    # per frame --------------------------------------------------------------------------
    def render(self, out_dir: Path) -> tuple[Path, Path]:
        s = self.spec
        out_dir.mkdir(parents=True, exist_ok=True)
        suffix = ".avi" if s.codec.upper() in {"MJPG", "XVID"} else ".mp4"
        video = out_dir / f"{s.name}{suffix}"
        writer = cv2.VideoWriter(str(video), cv2.VideoWriter.fourcc(*s.codec), s.fps,
                                 (s.width, s.height), False)
        if not writer.isOpened():
            raise RuntimeError(f"cannot open a video writer for {video} ({s.codec})")
        state = _DistractorState(self)
        try:
            for i in range(self.n_frames):
                writer.write(self.frame(i, state))
        finally:
            writer.release()
        meta = self.meta()
        sidecar = video.with_suffix(".json")
        write_meta(meta, sidecar)
        return video, sidecar

    def frames(self) -> Iterator[U8]:
        """The clip's frames in order, without writing a file (tests, MQTT publishing)."""
        state = _DistractorState(self)
        for i in range(self.n_frames):
            yield self.frame(i, state)

    def frame(self, i: int, state: _DistractorState) -> U8:
        s = self.spec
        img = self.base.copy()
        t = i / s.fps
        state.draw_background_changes(img, i)
        exposure = (1 / 25) if s.night else (1 / 100)
        for o in self.objects:
            if i < o.release_frame:
                continue
            u0, v0, z0 = self._obj_pos(o, t - exposure / 2)
            u1, v1, z1 = self._obj_pos(o, t + exposure / 2)
            if o.impact_frame >= 0:
                continue
            if z1 <= 0.0 or v1 >= s.height or u1 < 0 or u1 >= s.width:
                o.impact_frame = i - 1 if z1 <= 0.0 and z0 <= 0.0 else i
                if z0 <= 0.0:
                    continue
            _draw_blob(img, u0, v0, u1, v1, o.radius, o.level)
        state.draw_movers(img, i)
        gain = state.gain(i)
        if abs(gain - 1.0) > 1e-3:
            img = np.asarray(cv2.convertScaleAbs(img, alpha=gain), np.uint8)
        img = state.shake(img, i)
        pos, neg = self._noise[int(self.rng.integers(len(self._noise)))]
        dx, dy = int(self.rng.integers(0, 64)), int(self.rng.integers(0, 64))
        h, w = img.shape
        cv2.add(img[: h - dy, : w - dx], pos[dy:, dx:], dst=img[: h - dy, : w - dx])
        cv2.subtract(img[dy:, dx:], neg[: h - dy, : w - dx], dst=img[dy:, dx:])
        return img

    def meta(self) -> ClipMeta:
        s, sc = self.spec, self.scene
        cal = Calibration.from_dict({
            "floor_lines": sc.floor_lines(),
            "masks": self.masks,
            "facade": sc.facade_polygon(),
            "window_columns": sc.column_bounds_px(),
            "floor_height_m": round(sc.floor_height_m, 3),
        })
        throws = []
        for o in self.objects:
            floor = int(o.z0 // sc.floor_height_m) + 1
            u, _ = sc.project(o.x0, o.z0)
            impact = o.impact_frame if o.impact_frame >= 0 else self.n_frames - 1
            throws.append(Throw(o.release_frame, impact, floor, u, math.pi * o.radius ** 2))
        extra: dict[str, Any] = {"renderer": "gatehouse-sim-1", "night": s.night,
                                 "distractors": list(s.distractors), "seed": s.seed}
        return ClipMeta(float(s.fps), s.width, s.height, cal, tuple(throws), extra)


def _draw_blob(img: U8, u0: float, v0: float, u1: float, v1: float, r: float,
               level: int) -> None:
    """Anti-aliased blurred disc from (u0, v0) to (u1, v1): the object over one exposure."""
    shift = 4
    k = 1 << shift
    length = math.hypot(u1 - u0, v1 - v0)
    if r < 1.2:
        # a tiny object: blend its area into the pixels it covers
        n = max(1, math.ceil(length))
        area = math.pi * r * r
        for j in range(n):
            f = (j + 0.5) / n
            _splat(img, u0 + (u1 - u0) * f, v0 + (v1 - v0) * f, area / n, level)
        return
    thickness = max(1, round(2 * r))
    if length < 0.5:
        cv2.circle(img, (round(u1 * k), round(v1 * k)), round(r * k), level, -1,
                   cv2.LINE_AA, shift)
    else:
        cv2.line(img, (round(u0 * k), round(v0 * k)), (round(u1 * k), round(v1 * k)), level,
                 thickness, cv2.LINE_AA, shift)


def _splat(img: U8, u: float, v: float, area: float, level: int) -> None:
    """Add a sub-pixel point of ``area`` pixels by bilinear weights."""
    h, w = img.shape
    x0, y0 = math.floor(u - 0.5), math.floor(v - 0.5)
    fx, fy = u - 0.5 - x0, v - 0.5 - y0
    for dy, wy in ((0, 1 - fy), (1, fy)):
        for dx, wx in ((0, 1 - fx), (1, fx)):
            x, y = x0 + dx, y0 + dy
            if 0 <= x < w and 0 <= y < h:
                a = min(1.0, area * wx * wy)
                img[y, x] = round(img[y, x] * (1 - a) + level * a)


class _DistractorState:
    """All distractors of one clip and their evolving state."""

    def __init__(self, r: ClipRenderer) -> None:
        self.r = r
        self.on = set(r.spec.distractors)
        self.rng = np.random.default_rng(r.spec.seed + 7919)
        self.movers: list[_Mover] = []
        s = r.spec
        n = r.n_frames
        self.exposure_steps = sorted(int(v) for v in self.rng.integers(0, n, max(1, n // 150))) \
            if "exposure" in self.on else []
        self.shake_windows = [(int(a), int(a) + int(self.rng.integers(10, 50)))
                              for a in self.rng.integers(0, n, max(1, n // 250))] \
            if "shake" in self.on else []
        self.light_events = sorted(
            (int(f), int(self.rng.integers(len(r.windows))))
            for f in self.rng.integers(0, n, max(1, n // (40 if s.night else 120)))
        ) if "lights" in self.on else []
        self.lit: dict[int, int] = {}
        self.flicker_f = float(self.rng.uniform(2.0, 9.0))
        self.flicker_a = float(self.rng.uniform(0.01, 0.04))
        self.laundry: list[_Mover] = []
        if "laundry" in self.on:
            sc = r.scene
            for _ in range(int(self.rng.integers(1, 4))):
                fl = int(self.rng.integers(1, sc.floors))
                x = float(self.rng.choice(sc.column_centres_m()))
                u, v = sc.project(x, fl * sc.floor_height_m + 1.0)
                ppm = sc.pixels_per_metre(fl * sc.floor_height_m)
                self.laundry.append(_Mover(u, v, ppm * 0.3, ppm * 0.6, ppm * 0.25,
                                           int(self.rng.integers(160, 250)),
                                           phase=float(self.rng.uniform(0, 6.28)),
                                           extra={"period": float(self.rng.uniform(1.5, 3.5))}))

    def gain(self, i: int) -> float:
        g = 1.0
        t = i / self.r.spec.fps
        if "flicker" in self.on:
            g *= 1.0 + self.flicker_a * math.sin(2 * math.pi * self.flicker_f * t)
        level = 1.0
        for k, f in enumerate(self.exposure_steps):
            if i >= f:
                level = 0.75 if k % 2 == 0 else 1.0
        return g * level

    def shake(self, img: U8, i: int) -> U8:
        for a, b in self.shake_windows:
            if a <= i < b:
                dx, dy = self.rng.uniform(-2.5, 2.5, 2)
                m = np.array([[1.0, 0.0, dx], [0.0, 1.0, dy]], np.float32)
                out = cv2.warpAffine(img, m, (img.shape[1], img.shape[0]),
                                     borderMode=cv2.BORDER_REPLICATE)
                return np.asarray(out, np.uint8)
        return img

    def draw_background_changes(self, img: U8, i: int) -> None:
        for f, w in self.light_events:
            if f == i:
                self.lit[w] = 0 if self.lit.get(w) else int(self.rng.integers(150, 240))
        for w, level in self.lit.items():
            if level:
                x0, y0, x1, y1 = self.r.windows[w]
                cv2.rectangle(img, (x0, y0), (x1, y1), level, -1)

    def _spawn(self, i: int) -> None:
        r, rng, s = self.r, self.rng, self.r.spec
        fps = s.fps
        sc = r.scene
        if "birds" in self.on and rng.random() < 1.0 / (3 * fps):
            ppm = sc.pixels_per_metre(float(rng.uniform(5, sc.floors * 3)))
            left = rng.random() < 0.5
            y = float(rng.uniform(0.05, 0.8) * s.height)
            speed = float(rng.uniform(5.0, 14.0)) * ppm / fps
            vy = float(rng.uniform(-0.3, 0.5)) * speed
            self.movers.append(_Mover(0.0 if left else s.width - 1.0, y,
                                      speed if left else -speed, vy,
                                      float(rng.uniform(1.2, 3.5)),
                                      int(rng.integers(10, 60)), life=10 * fps, kind="bird",
                                      phase=float(rng.uniform(0, 6.28))))
        if "insects" in self.on and rng.random() < 1.0 / (4 * fps):
            self.movers.append(_Mover(float(rng.uniform(0, s.width)),
                                      float(rng.uniform(0, s.height)),
                                      float(rng.normal(0, 8)), float(rng.normal(0, 8)),
                                      float(rng.uniform(6, 25)),
                                      int(rng.integers(0, 80)), life=int(rng.integers(20, 80)),
                                      kind="insect"))
        if "leaves" in self.on and rng.random() < 1.0 / (0.7 * fps):
            tx, ty, trad = r.tree
            ppm = sc.pixels_per_metre(3.0)
            self.movers.append(_Mover(tx + float(rng.uniform(-trad, trad)),
                                      ty + float(rng.uniform(-trad, trad * 0.3)),
                                      float(rng.uniform(-1.5, 1.5)) * ppm / fps,
                                      float(rng.uniform(0.5, 1.8)) * ppm / fps,
                                      float(rng.uniform(1.0, 2.5)),
                                      int(rng.integers(40, 120)), life=8 * fps, kind="leaf",
                                      phase=float(rng.uniform(0, 6.28)),
                                      extra={"sway": float(rng.uniform(0.5, 2.0)) * ppm / fps}))
        if "rain" in self.on:
            # the drops a camera sees are the ones within a few metres of the lens: long,
            # fast, faint streaks; farther drops are far below a pixel
            for _ in range(int(rng.poisson(4))):
                depth = float(rng.uniform(1.0, 8.0))
                ppm = sc.focal_px / depth
                speed = float(rng.uniform(6.0, 9.0)) * ppm / fps
                self.movers.append(_Mover(float(rng.uniform(0, s.width)),
                                          float(rng.uniform(-0.3, 0.9) * s.height),
                                          speed * float(rng.uniform(-0.15, 0.15)), speed,
                                          max(0.5, 0.002 * ppm),
                                          int(rng.integers(10, 40) * min(1.0, 3.0 / depth)),
                                          life=10 * fps, kind="rain"))

    def draw_movers(self, img: U8, i: int) -> None:
        self._spawn(i)
        s = self.r.spec
        keep = []
        fps = s.fps
        for m in self.movers:
            m.age += 1
            if m.kind == "bird":
                m.x += m.vx
                m.y += m.vy + 0.6 * math.sin(m.phase + m.age * 0.9)
                rr = m.r * (1.0 + 0.4 * math.sin(m.phase + m.age * 1.7))
                cv2.ellipse(img, (round(m.x), round(m.y)), (max(1, round(rr * 1.8)),
                            max(1, round(rr * 0.6))), 0, 0, 360, m.level, -1, cv2.LINE_AA)
            elif m.kind == "insect":
                m.vx += float(self.rng.normal(0, 6))
                m.vy += float(self.rng.normal(0, 6))
                m.x += m.vx
                m.y += m.vy
                cv2.circle(img, (round(m.x), round(m.y)), round(m.r), m.level, -1, cv2.LINE_AA)
            elif m.kind == "leaf":
                m.x += m.vx + m.extra["sway"] * math.sin(m.phase + m.age * 0.35)
                m.y += m.vy * (0.6 + 0.4 * math.sin(m.phase * 2 + m.age * 0.5))
                _draw_blob(img, m.x, m.y, m.x, m.y, m.r, m.level)
            elif m.kind == "rain":
                m.x += m.vx
                m.y += m.vy
                tail = 0.6
                p0 = (round(m.x - m.vx * tail), round(m.y - m.vy * tail))
                cur = int(img[min(max(round(m.y), 0), s.height - 1),
                              min(max(round(m.x), 0), s.width - 1)])
                cv2.line(img, p0, (round(m.x), round(m.y)), min(255, cur + m.level),
                         max(1, round(m.r)), cv2.LINE_AA)
            if m.age < m.life and -50 < m.x < s.width + 50 and -50 < m.y < s.height + 50:
                keep.append(m)
        self.movers = keep
        for lm in self.laundry:
            ang = 0.35 * math.sin(lm.phase + 2 * math.pi * i / (lm.extra["period"] * fps))
            cx, cy = lm.x + lm.vx * math.sin(ang) * 3, lm.y + lm.vy * (1 - math.cos(ang))
            w, h = lm.r * 2, lm.r * 3
            cv2.rectangle(img, (round(cx - w / 2), round(cy)), (round(cx + w / 2),
                          round(cy + h)), lm.level, -1)


def render_clip(spec: ClipSpec, out_dir: Path) -> tuple[Path, Path]:
    """Render ``spec`` into ``out_dir``; return (video path, sidecar path)."""
    return ClipRenderer(spec).render(out_dir)
