"""A second clip renderer, written independently of ``simulators.camera``.

It shares nothing with the simulator but the clip format (``edge.camera.clip``): a level
camera (evenly spaced floors, no keystone), colour, a brick texture, square objects
integrated with Euler steps and *linear* drag, motion blur by averaging sub-frames, uniform
per-channel noise, MJPEG in AVI. Its distractors are its own too (``DISTRACTORS``):

* ``rain``: drops 0.5 to 10 m from the lens (apparent speed, width and contrast from the
  depth), wind slant, a density per clip;
* ``birds``: flapping V shapes crossing at 5 to 15 m/s, some descending steeply, and pigeons
  that drop off a railing (falling for a few tenths of a second) before flying off;
* ``lights``: windows switching on and off, and a television flickering in one window;
* ``sway``: a banner swinging on a balcony and a lantern swinging on its cord;
* ``leaves``: leaves fluttering down past the facade with a wide zig-zag;
* ``insects``: large out-of-focus blobs near the lens, erratic;
* ``exposure``: auto-exposure ramps of -25 % to +25 % and colour-balance shifts;
* ``shake``: the whole image jittering by up to 3 px (and a little rotation) for 0.5-2 s.

``independent_clip(..., rain=True)`` with no ``distractors`` draws the original light
distractor set (short rain dashes, one bird, one blinking window).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import numpy.typing as npt

from edge.camera.calibration import Calibration
from edge.camera.clip import ClipMeta, Throw, write_meta

U8 = npt.NDArray[np.uint8]
DISTRACTORS = ("rain", "birds", "lights", "sway", "leaves", "insects", "exposure", "shake")
RENDERER = "test-independent"


@dataclass(slots=True)
class _Layout:
    width: int
    height: int
    floors: int
    floor_px: int
    ground: int
    left: int
    right: int
    lines: list[int]
    windows: list[tuple[int, int, int, int]] = field(default_factory=list)

    @property
    def ppm(self) -> float:
        return self.floor_px / 3.0


def _layout(width: int, height: int, floors: int, floor_px: int, margin: int) -> _Layout:
    ground = height - round(40 * height / 540)
    lines = [ground - floor_px * k for k in range(floors + 1)]
    lay = _Layout(width, height, floors, floor_px, ground, margin, width - margin, lines)
    for k in range(floors):
        top = lines[k + 1]
        for cx in range(margin + 40, width - margin - 40, 110):
            lay.windows.append((cx, top + 14 * floor_px // 64, cx + 50, top + 44 * floor_px // 64))
    return lay


def _background(lay: _Layout, rng: np.random.Generator, night: bool) -> U8:
    h, w = lay.height, lay.width
    bg = np.zeros((h, w, 3), np.uint8)
    bg[:] = (200, 170, 140)  # sky
    top = lay.lines[-1]
    bg[top:lay.ground, lay.left:lay.right] = (70, 90, 150)  # brick facade
    bricks = rng.integers(-18, 18, (lay.ground - top, lay.right - lay.left, 1))
    bg[top:lay.ground, lay.left:lay.right] = np.clip(
        bg[top:lay.ground, lay.left:lay.right].astype(int) + bricks, 0, 255).astype(np.uint8)
    for x0, y0, x1, y1 in lay.windows:
        bg[y0:y1, x0:x1] = (40, 40, 45)
    for k in range(lay.floors):
        bg[lay.lines[k] - 2:lay.lines[k], lay.left:lay.right] = (160, 160, 160)
    bg[lay.ground:, :] = (90, 90, 90)
    if night:
        bg = (bg.astype(np.float32) * 0.22).astype(np.uint8)
    return bg


# --- distractors ------------------------------------------------------------------------
@dataclass(slots=True)
class _Thing:
    kind: str
    x: float
    y: float
    vx: float
    vy: float
    size: float
    colour: tuple[int, int, int]
    age: int = 0
    life: int = 10_000
    phase: float = 0.0
    extra: dict[str, float] = field(default_factory=dict)


class _Distractors:
    """Every distractor of one clip and its state; ``draw`` is called once per frame."""

    def __init__(self, lay: _Layout, kinds: tuple[str, ...], rng: np.random.Generator,
                 fps: int, frames: int, night: bool, rain_rate: float | None = None) -> None:
        self.lay, self.on, self.rng, self.fps, self.night = lay, set(kinds), rng, fps, night
        self.things: list[_Thing] = []
        self.distance_m = float(rng.uniform(15.0, 22.0))
        self.focal_px = lay.ppm * self.distance_m
        self.rain_rate = float(rng.uniform(2.0, 12.0))  # new visible drops per frame
        if rain_rate is not None:  # drawn all the same: the clip's other draws are unchanged
            self.rain_rate = rain_rate
        self.wind = float(rng.uniform(-0.35, 0.35))
        self.lit: dict[int, tuple[int, int, int]] = {}
        self.switches = sorted((int(f), int(rng.integers(len(lay.windows))))
                               for f in rng.integers(0, frames, max(1, frames // 60)))
        self.tv = int(rng.integers(len(lay.windows)))
        ramps = sorted(int(f) for f in rng.integers(0, frames, max(1, frames // 200)))
        self.ramps = [(f, int(rng.integers(4, 12)), float(rng.uniform(0.75, 1.25)),
                       rng.uniform(0.9, 1.1, 3)) for f in ramps]
        shakes = rng.integers(0, frames, max(1, frames // 400))
        self.shakes = [(int(a), int(a) + int(rng.integers(fps // 2, 2 * fps))) for a in shakes]
        self.banner = self._balcony_point(rng)
        self.lantern = self._balcony_point(rng)
        self.sway_period = (float(rng.uniform(1.2, 3.0)), float(rng.uniform(1.5, 2.5)))

    def _balcony_point(self, rng: np.random.Generator) -> tuple[float, float]:
        x0, y0, x1, _y1 = self.lay.windows[int(rng.integers(len(self.lay.windows)))]
        return float(x0 + x1) / 2 + float(rng.uniform(-20, 20)), float(y0 - 6)

    # spawning ---------------------------------------------------------------------------
    def _spawn(self) -> None:
        rng, lay, fps = self.rng, self.lay, self.fps
        if "rain" in self.on:
            for _ in range(int(rng.poisson(self.rain_rate))):
                depth = float(rng.uniform(0.5, 10.0))
                dia_mm = float(rng.uniform(1.0, 4.0))
                v = 4.0 + 1.3 * dia_mm  # m/s, roughly a drop's terminal speed by size
                ppm_here = self.focal_px / depth
                speed = v * ppm_here / fps
                width_px = dia_mm / 1000.0 * ppm_here
                self.things.append(_Thing(
                    "rain", float(rng.uniform(-50, lay.width + 50)),
                    float(rng.uniform(-0.4, 0.8) * lay.height), self.wind * speed, speed,
                    width_px, (0, 0, 0), life=4 * fps))
        if "birds" in self.on and rng.random() < 1.0 / (4 * fps):
            if rng.random() < 0.25:  # a pigeon dropping off a railing, then flying away
                x, y = self._balcony_point(rng)
                self.things.append(_Thing(
                    "pigeon", x, y + 4, 0.0, 0.0, float(rng.uniform(3.0, 6.0)),
                    self._dark(rng), life=4 * fps,
                    extra={"drop": float(rng.uniform(0.2, 0.45)) * fps,
                           "g": float(rng.uniform(0.5, 1.0)) * 9.81 * lay.ppm / fps / fps,
                           "dir": float(rng.choice([-1.0, 1.0]))}))
            else:
                speed = float(rng.uniform(5.0, 15.0)) * lay.ppm / fps
                ang = float(rng.uniform(-0.4, 0.9))  # radians below the horizontal
                left = rng.random() < 0.5
                self.things.append(_Thing(
                    "bird", -10.0 if left else lay.width + 10.0,
                    float(rng.uniform(0.05, 0.75)) * lay.height,
                    speed * math.cos(ang) * (1 if left else -1), speed * math.sin(ang),
                    float(rng.uniform(3.0, 8.0)), self._dark(rng), life=8 * fps,
                    phase=float(rng.uniform(0, 6.3))))
        if "leaves" in self.on and rng.random() < 1.0 / (3 * fps):
            self.things.append(_Thing(
                "leaf", float(rng.uniform(lay.left, lay.right)), float(lay.lines[-1] - 5),
                float(rng.uniform(-0.5, 0.5)) * lay.ppm / fps,
                float(rng.uniform(0.5, 2.0)) * lay.ppm / fps, float(rng.uniform(2.0, 4.5)),
                (20, 90, 60) if not self.night else (10, 25, 18), life=20 * fps,
                phase=float(rng.uniform(0, 6.3)),
                extra={"amp": float(rng.uniform(0.5, 1.5)) * lay.ppm,
                       "period": float(rng.uniform(0.8, 2.0)) * fps}))
        if "insects" in self.on and rng.random() < 1.0 / (5 * fps):
            self.things.append(_Thing(
                "insect", float(rng.uniform(0, lay.width)), float(rng.uniform(0, lay.height)),
                float(rng.normal(0, 6)), float(rng.normal(0, 6)), float(rng.uniform(8, 30)),
                self._dark(rng), life=int(rng.integers(fps // 2, 3 * fps))))

    def _dark(self, rng: np.random.Generator) -> tuple[int, int, int]:
        if self.night:
            return tuple(int(c) for c in rng.integers(25, 60, 3))  # type: ignore[return-value]
        return tuple(int(c) for c in rng.integers(20, 70, 3))  # type: ignore[return-value]

    # per frame --------------------------------------------------------------------------
    def background_changes(self, img: U8, i: int) -> None:
        """Lights switching and the television (drawn under the moving things)."""
        if "lights" not in self.on:
            return
        rng = self.rng
        for f, w in self.switches:
            if f == i:
                if w in self.lit:
                    del self.lit[w]
                else:
                    warm = (int(rng.integers(90, 170)), int(rng.integers(170, 230)),
                            int(rng.integers(210, 255)))
                    self.lit[w] = warm
        for w, colour in self.lit.items():
            x0, y0, x1, y1 = self.lay.windows[w]
            cv2.rectangle(img, (x0, y0), (x1 - 1, y1 - 1), colour, -1)
        if i % 3 == 0:
            self._tv_level = int(rng.integers(60, 200))
        x0, y0, x1, y1 = self.lay.windows[self.tv]
        level = getattr(self, "_tv_level", 100)
        cv2.rectangle(img, (x0 + 8, y0 + 4), (x1 - 8, y1 - 4), (level, level * 3 // 4, 40), -1)

    def draw(self, img: U8, i: int) -> None:
        self._spawn()
        lay, fps = self.lay, self.fps
        keep: list[_Thing] = []
        for t in self.things:
            t.age += 1
            if t.kind == "rain":
                t.x += t.vx
                t.y += t.vy
                tail = 1.0 if self.night else 0.5
                p0 = (round(t.x - t.vx * tail), round(t.y - t.vy * tail))
                p1 = (round(t.x), round(t.y))
                cover = min(1.0, t.size)
                add = int(90 * cover) if not self.night else int(60 * cover)
                if add >= 2:
                    roi = _line_roi(img, p0, p1, max(1, round(t.size)))
                    if roi is not None:
                        sub, off = roi
                        layer = np.zeros_like(sub)
                        cv2.line(layer, (p0[0] - off[0], p0[1] - off[1]),
                                 (p1[0] - off[0], p1[1] - off[1]), (add, add, add),
                                 max(1, round(t.size)), cv2.LINE_AA)
                        cv2.add(sub, layer, dst=sub)
            elif t.kind == "bird":
                t.x += t.vx
                t.y += t.vy + 0.5 * math.sin(t.phase + t.age * 0.7)
                flap = math.sin(t.phase + t.age * 1.9)
                s = t.size
                wing = (round(t.x - s), round(t.y - s * 0.6 * flap))
                wing2 = (round(t.x + s), round(t.y - s * 0.6 * flap))
                body = (round(t.x), round(t.y))
                cv2.line(img, wing, body, t.colour, 2, cv2.LINE_AA)
                cv2.line(img, body, wing2, t.colour, 2, cv2.LINE_AA)
            elif t.kind == "pigeon":
                if t.age < t.extra["drop"]:
                    t.vy += t.extra["g"]
                else:  # wings open: level off and fly away
                    t.vy *= 0.75
                    t.vy -= 0.3
                    t.vx += t.extra["dir"] * 0.8
                t.x += t.vx
                t.y += t.vy
                s = t.size
                if t.age < t.extra["drop"]:
                    cv2.ellipse(img, (round(t.x), round(t.y)), (max(1, round(s * 0.6)),
                                max(1, round(s))), 0, 0, 360, t.colour, -1, cv2.LINE_AA)
                else:
                    flap = math.sin(t.age * 2.1)
                    body = (round(t.x), round(t.y))
                    cv2.line(img, (round(t.x - s), round(t.y - s * 0.6 * flap)), body,
                             t.colour, 2, cv2.LINE_AA)
                    cv2.line(img, body, (round(t.x + s), round(t.y - s * 0.6 * flap)),
                             t.colour, 2, cv2.LINE_AA)
            elif t.kind == "leaf":
                t.y += t.vy * (0.5 + 0.5 * abs(math.cos(t.phase + 2 * math.pi * t.age
                                                        / t.extra["period"])))
                x = t.x + t.vx * t.age + t.extra["amp"] * math.sin(
                    t.phase + 2 * math.pi * t.age / t.extra["period"])
                ang = 40 * math.cos(t.phase + 2 * math.pi * t.age / t.extra["period"])
                cv2.ellipse(img, (round(x), round(t.y)), (max(1, round(t.size)),
                            max(1, round(t.size * 0.45))), ang, 0, 360, t.colour, -1,
                            cv2.LINE_AA)
            elif t.kind == "insect":
                t.vx = 0.8 * t.vx + float(self.rng.normal(0, 5))
                t.vy = 0.8 * t.vy + float(self.rng.normal(0, 5))
                t.x += t.vx
                t.y += t.vy
                r = round(t.size)
                x0, y0 = round(t.x) - 2 * r, round(t.y) - 2 * r
                if min(x0, y0) >= 0 and x0 + 4 * r < lay.width and y0 + 4 * r < lay.height:
                    sub = img[y0:y0 + 4 * r, x0:x0 + 4 * r]
                    disc = np.zeros_like(sub)
                    cv2.circle(disc, (2 * r, 2 * r), r, (255, 255, 255), -1)
                    soft = cv2.GaussianBlur(disc, (0, 0), r / 2)
                    alpha = soft.astype(np.float32) / 255.0 * 0.8
                    col = np.array(t.colour, np.float32)
                    sub[:] = (sub * (1 - alpha) + col * alpha).astype(np.uint8)
            if t.age < t.life and -80 < t.x < lay.width + 80 and -80 < t.y < lay.height + 80:
                keep.append(t)
        self.things = keep
        if "sway" in self.on:
            self._sway(img, i)
        del fps

    def _sway(self, img: U8, i: int) -> None:
        fps = self.fps
        # a banner hanging from a railing, swinging about its top edge
        bx, by = self.banner
        ang = 0.5 * math.sin(2 * math.pi * i / (self.sway_period[0] * fps))
        w, h = 14.0, 26.0
        ca, sa = math.cos(ang), math.sin(ang)
        pts = [(-w / 2, 0.0), (w / 2, 0.0), (w / 2, h), (-w / 2, h)]
        poly = np.array([[bx + px * ca - py * sa, by + px * sa + py * ca] for px, py in pts],
                        np.float32)
        colour = (40, 40, 200) if not self.night else (15, 15, 60)
        cv2.fillPoly(img, [np.round(poly).astype(np.int32)], colour, cv2.LINE_AA)
        # a lantern on a cord: a pendulum, so it also rises and falls a little
        lx, ly = self.lantern
        cord = 30.0
        a = 0.6 * math.sin(2 * math.pi * i / (self.sway_period[1] * fps))
        px, py = lx + cord * math.sin(a), ly + cord * math.cos(a)
        cv2.line(img, (round(lx), round(ly)), (round(px), round(py)), (30, 30, 30), 1)
        glow = (120, 200, 250) if self.night else (60, 120, 200)
        cv2.circle(img, (round(px), round(py)), 4, glow, -1, cv2.LINE_AA)

    def exposure(self, img: U8, i: int) -> U8:
        if "exposure" not in self.on:
            return img
        gain = np.ones(3)
        for f, ramp, g, balance in self.ramps:
            if i >= f:
                k = min(1.0, (i - f + 1) / ramp)
                gain = gain * (1.0 + (g * balance - 1.0) * k)
        if np.allclose(gain, 1.0, atol=1e-3):
            return img
        out = cv2.multiply(img, np.array([*gain, 0.0]), dtype=cv2.CV_8U)
        return np.asarray(out, np.uint8)

    def shake(self, img: U8, i: int) -> U8:
        if "shake" not in self.on:
            return img
        for a, b in self.shakes:
            if a <= i < b:
                dx, dy = self.rng.uniform(-3.0, 3.0, 2)
                rot = float(self.rng.uniform(-0.15, 0.15))
                m = cv2.getRotationMatrix2D((self.lay.width / 2, self.lay.height / 2), rot, 1.0)
                m[:, 2] += (dx, dy)
                out = cv2.warpAffine(img, m, (self.lay.width, self.lay.height),
                                     borderMode=cv2.BORDER_REFLECT)
                return np.asarray(out, np.uint8)
        return img


def _line_roi(img: U8, p0: tuple[int, int], p1: tuple[int, int],
              pad: int) -> tuple[U8, tuple[int, int]] | None:
    h, w = img.shape[:2]
    x0 = max(0, min(p0[0], p1[0]) - pad - 1)
    x1 = min(w, max(p0[0], p1[0]) + pad + 2)
    y0 = max(0, min(p0[1], p1[1]) - pad - 1)
    y1 = min(h, max(p0[1], p1[1]) + pad + 2)
    if x1 <= x0 or y1 <= y0:
        return None
    return img[y0:y1, x0:x1], (x0, y0)


# --- the clip ---------------------------------------------------------------------------
def independent_clip(
    out: Path, name: str, seed: int, throws: list[dict[str, float]], seconds: float = 9.0,
    width: int = 960, height: int = 540, fps: int = 25, rain: bool = True, night: bool = False,
    distractors: tuple[str, ...] = (), floors: int = 7, floor_px: int = 64, margin: int = 120,
    rain_rate: float | None = None, until_s: float | None = None,
) -> Path:
    """Render one clip; return the video path (the sidecar is beside it).

    ``throws``: dicts with floor, x (px), t (s), side (px), drag (1/s, linear), vx (m/s).
    ``rain`` draws the original light set (dashes, one bird, one blinking window) when
    ``distractors`` is empty; ``distractors`` picks from :data:`DISTRACTORS` instead.
    ``rain_rate`` fixes the new visible drops per frame (else drawn from 2 to 12).
    ``until_s`` writes only the first seconds of the clip (the same frames as the whole
    ``seconds`` clip: its random draws depend on its length)."""
    rng = np.random.default_rng(seed)
    out.mkdir(parents=True, exist_ok=True)
    lay = _layout(width, height, floors, floor_px, margin)
    ppm = lay.ppm
    bg = _background(lay, rng, night)
    objs: list[dict[str, Any]] = []
    for th in throws:
        z0 = (th["floor"] - 1) * 3.0 + 1.3
        objs.append({**th, "z": z0, "vz": 0.0, "xm": (th["x"] - lay.left) / ppm, "end": -1,
                     "colour": tuple(int(c) for c in (rng.integers(150, 230, 3) if night
                                                      else rng.integers(0, 60, 3)))})
    n = int(seconds * fps)
    written = n if until_s is None else min(n, int(until_s * fps))
    path = out / f"{name}.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"MJPG"), fps, (width, height))
    assert writer.isOpened()
    legacy = not distractors
    extras = _Distractors(lay, distractors, np.random.default_rng(seed + 104729), fps, n,
                          night, rain_rate) if distractors else None
    blink = (lay.left + 40 + 110 * 3, lay.lines[min(4, floors)] + 14)
    dashes = rng.uniform(0, 1, (60, 2)) * (width, height)
    bird = [-20.0, 180.0]
    sub = 4 if objs else 1
    noise_rng = np.random.default_rng(seed + 7)
    bank = [(noise_rng.integers(0, 8, (height + 32, width + 32, 3), dtype=np.uint8),
             noise_rng.integers(0, 8, (height + 32, width + 32, 3), dtype=np.uint8))
            for _ in range(4)] if not legacy else []
    try:
        for i in range(written):
            base = bg.copy()
            if extras is not None:
                extras.background_changes(base, i)
            if sub == 1:
                img = base
                if legacy and (i // 30) % 2:
                    cv2.rectangle(img, blink, (blink[0] + 50, blink[1] + 30), (120, 220, 250),
                                  -1)
            else:
                frame = np.zeros((height, width, 3), np.float32)
                for s in range(sub):
                    layer = base.copy()
                    if legacy and (i // 30) % 2:
                        cv2.rectangle(layer, blink, (blink[0] + 50, blink[1] + 30),
                                      (120, 220, 250), -1)
                    t = (i + s / sub) / fps
                    for o in objs:
                        if t < o["t"] or o["z"] <= 0:
                            continue
                        half = o["side"] / 2
                        cx = lay.left + o["xm"] * ppm
                        cy = lay.ground - o["z"] * ppm
                        cv2.rectangle(layer, (round(cx - half), round(cy - half)),
                                      (round(cx + half) - 1, round(cy + half) - 1),
                                      o["colour"], -1)
                    frame += layer
                    for o in objs:  # Euler step of 1/(fps*sub) s with linear drag
                        if t < o["t"] or o["z"] <= 0:
                            continue
                        dt = 1.0 / (fps * sub)
                        o["vz"] += (-9.81 - o["drag"] * o["vz"]) * dt
                        o["z"] += o["vz"] * dt
                        o["xm"] += o["vx"] * dt
                        if o["z"] <= 0 and o["end"] < 0:
                            o["end"] = i
                img = (frame / sub).astype(np.uint8)
            if legacy:
                bird[0] += 9.0
                bird[1] += 0.8 * math.sin(i / 3)
                cv2.ellipse(img, (round(bird[0]), round(bird[1])), (5, 2), 0, 0, 360,
                            (30, 30, 30), -1)
                if rain:
                    dashes[:, 1] += 23.0
                    dashes[dashes[:, 1] > height, 1] -= height
                    for dx, dy in dashes:
                        cv2.line(img, (int(dx), int(dy)), (int(dx) + 1, int(dy) + 9),
                                 (215, 215, 215), 1)
                noise = rng.integers(-7, 8, img.shape, dtype=np.int16)
                writer.write(np.clip(img.astype(np.int16) + noise, 0, 255).astype(np.uint8))
                continue
            assert extras is not None
            extras.draw(img, i)
            img = extras.exposure(img, i)
            img = extras.shake(img, i)
            pos, neg = bank[int(noise_rng.integers(len(bank)))]
            oy, ox = int(noise_rng.integers(0, 32)), int(noise_rng.integers(0, 32))
            cv2.add(img, pos[oy:oy + height, ox:ox + width], dst=img)
            cv2.subtract(img, neg[oy:oy + height, ox:ox + width], dst=img)
            writer.write(img)
    finally:
        writer.release()
    meta_throws = []
    for o in objs:
        meta_throws.append(Throw(round(o["t"] * fps), o["end"] if o["end"] >= 0 else written - 1,
                                 int(o["floor"]), float(o["x"]), float(o["side"] ** 2)))
    g = lay.ground
    cal = Calibration.from_dict({
        "floor_lines": lay.lines,
        "masks": [[[0, g + 2], [width, g + 2], [width, height], [0, height]]],
        "facade": [[lay.left, g], [lay.right, g], [lay.right, lay.lines[-1]],
                   [lay.left, lay.lines[-1]]],
    })
    extra: dict[str, Any] = {"renderer": RENDERER, "night": night,
                             "distractors": list(distractors) or (["light"] if rain else [])}
    write_meta(ClipMeta(float(fps), width, height, cal, tuple(meta_throws), extra),
               path.with_suffix(".json"))
    return path
