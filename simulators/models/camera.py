"""Camera stream health (the video itself is rendered by :mod:`simulators.camera`).

A healthy stream holds its nominal frame rate (25 fps) with a handful of dropped frames per
message and almost never reconnects.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from device_profiles.schema import DeviceProfile
from device_profiles.site import DeviceConfig
from simulators.models.base import DeviceModel, FaultSpec


class CameraHealthModel(DeviceModel):
    kind = "camera"
    fault_types = ("camera.stream_degraded",)
    default_params: ClassVar[dict[str, dict[str, Any]]] = {
        "camera.stream_degraded": {"fps": 6.0},
    }
    default_durations: ClassVar[dict[str, float]] = {"camera.stream_degraded": 600.0}

    def __init__(
        self, device: DeviceConfig, profile: DeviceProfile, rng: np.random.Generator
    ) -> None:
        super().__init__(device, profile, rng)
        self.nominal_fps = float(device.params.get("fps", 25.0))

    def _advance(
        self, ts: float, dt: float, active: dict[str, FaultSpec]
    ) -> tuple[dict[str, float], list[dict[str, Any]]]:
        n = self.noise
        degraded = active.get("camera.stream_degraded")
        if degraded is not None:
            target = float(degraded.params["fps"])
            fps = max(0.0, target + n.normal(0, 0.8))
            drops = int((self.nominal_fps - fps) * dt) + n.poisson(5.0)
            reconnects = n.poisson(0.2 * dt / 10.0)
        else:
            fps = max(0.0, self.nominal_fps + n.normal(0, 0.3))
            drops = n.poisson(0.3 * dt / 10.0)
            reconnects = 1 if n.chance(1e-4 * dt / 10.0) else 0
        values: dict[str, float] = {
            "fps": round(min(fps, 120.0), 2),
            "frame_drops": max(0, drops),
            "reconnects": reconnects,
        }
        return values, []
