"""Geometry of a simulated camera view: a facade plane seen by a pinhole camera looking up.

The camera stands ``distance_m`` in front of the facade, ``camera_height_m`` above the
ground, tilted up so the ground line sits near the bottom of the image and the roof near the
top. Everything the renderer draws on the facade goes through :meth:`Scene.project`, so the
floor lines written to the clip's calibration are exactly where the floors are drawn.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True, slots=True)
class Scene:
    width: int
    height: int
    floors: int
    floor_height_m: float
    distance_m: float
    facade_width_m: float
    columns: int
    focal_px: float
    tilt_rad: float
    cx: float
    cy: float
    camera_height_m: float = 1.5

    @classmethod
    def build(
        cls, width: int, height: int, floors: int, distance_m: float, columns: int,
        floor_height_m: float = 3.0, ground_row: float = 0.9, top_row: float = 0.06,
    ) -> Scene:
        """Choose tilt and focal length so the ground line and the roof (+ 2 m of sky) fall on
        ``ground_row`` and ``top_row`` of the image height."""
        hc = 1.5
        z_top = floors * floor_height_m + 2.0
        tilt = math.atan2(z_top * 0.55 - hc, distance_m)

        def span(f: float) -> tuple[float, float]:
            def v(z: float) -> float:
                fw = distance_m * math.cos(tilt) + (z - hc) * math.sin(tilt)
                up = (z - hc) * math.cos(tilt) - distance_m * math.sin(tilt)
                return -f * up / fw
            return v(0.0), v(z_top)

        v0, v1 = span(1.0)
        focal = (ground_row - top_row) * height / (v0 - v1)
        cy = ground_row * height - focal * v0
        # facade about 75 % of the image width at the ground
        fw0 = distance_m * math.cos(tilt) - hc * math.sin(tilt)
        facade_w = 0.75 * width * fw0 / focal
        return cls(width, height, floors, floor_height_m, distance_m, facade_w, columns,
                   focal, tilt, width / 2.0, cy, hc)

    def project(self, x_m: float, z_m: float) -> tuple[float, float]:
        """Image (u, v) of the facade point ``x_m`` metres right of centre, ``z_m`` up."""
        d, t, hc = self.distance_m, self.tilt_rad, self.camera_height_m
        fw = d * math.cos(t) + (z_m - hc) * math.sin(t)
        up = (z_m - hc) * math.cos(t) - d * math.sin(t)
        return self.cx + self.focal_px * x_m / fw, self.cy - self.focal_px * up / fw

    def pixels_per_metre(self, z_m: float) -> float:
        _, a = self.project(0.0, z_m)
        _, b = self.project(0.0, z_m + 0.1)
        return (a - b) / 0.1

    def floor_lines(self) -> list[float]:
        return [round(self.project(0.0, k * self.floor_height_m)[1], 2)
                for k in range(self.floors + 1)]

    def facade_polygon(self) -> list[list[float]]:
        hw = self.facade_width_m / 2
        top = self.floors * self.floor_height_m
        pts = [self.project(-hw, 0.0), self.project(hw, 0.0),
               self.project(hw, top), self.project(-hw, top)]
        return [[round(u, 1), round(v, 1)] for u, v in pts]

    def column_centres_m(self) -> list[float]:
        step = self.facade_width_m / self.columns
        return [-self.facade_width_m / 2 + step * (i + 0.5) for i in range(self.columns)]

    def column_bounds_px(self) -> list[float]:
        """x of the boundaries between window columns at mid height."""
        step = self.facade_width_m / self.columns
        z = self.floors * self.floor_height_m / 2
        return [round(self.project(-self.facade_width_m / 2 + step * i, z)[0], 1)
                for i in range(1, self.columns)]

    def z_of_row(self, v: float) -> float:
        """Height on the facade seen at image row ``v`` (by bisection)."""
        lo, hi = -20.0, self.floors * self.floor_height_m + 40.0
        for _ in range(50):
            mid = (lo + hi) / 2
            if self.project(0.0, mid)[1] > v:
                lo = mid
            else:
                hi = mid
        return (lo + hi) / 2


def fall_drop(tau: float, vt: float, g: float = 9.81) -> float:
    """Metres fallen ``tau`` s after release from rest with terminal speed ``vt`` (inf ok)."""
    if tau <= 0:
        return 0.0
    if math.isinf(vt):
        return 0.5 * g * tau * tau
    return float((vt * vt / g) * np.log(np.cosh(min(g * tau / vt, 300.0))))
