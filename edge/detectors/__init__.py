"""Detectors, registered by name. Importing this package imports (registers) every one.

The registry is explicit: each module below registers its detectors when imported, and this
list is the whole set (no folder scanning).
"""

from edge.detectors import elevator, gate, generic, meter, models, pump, trend
from edge.detectors.base import (
    Detector,
    DetectorConfigError,
    DeviceMonitor,
    Finding,
    MonitorBase,
    build_monitors,
    register,
    registered,
)

__all__ = [
    "Detector",
    "DetectorConfigError",
    "DeviceMonitor",
    "Finding",
    "MonitorBase",
    "build_monitors",
    "elevator",
    "gate",
    "generic",
    "meter",
    "models",
    "pump",
    "register",
    "registered",
    "trend",
]
