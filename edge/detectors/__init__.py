"""Detectors, registered by name. Importing this package imports (registers) every one."""

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
    "register",
    "registered",
]
