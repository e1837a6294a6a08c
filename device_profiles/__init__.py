"""Device profiles (one YAML per device kind) and the shared message models.

A profile is data: telemetry fields with units and valid ranges, the sampling period,
the detectors to run, the events the kind can raise and each event's work-order policy.
The message models in :mod:`device_profiles.messages` are the only definitions of the
telemetry, event and work-order shapes exchanged between simulators, edge and cloud.
"""

from device_profiles.loader import ProfileError, load_profile, load_profiles, profile_dir
from device_profiles.schema import (
    DetectorSpec,
    DeviceProfile,
    EventSpec,
    FieldSpec,
    MaintenancePlanSpec,
    WorkOrderPolicy,
)

__all__ = [
    "DetectorSpec",
    "DeviceProfile",
    "EventSpec",
    "FieldSpec",
    "MaintenancePlanSpec",
    "ProfileError",
    "WorkOrderPolicy",
    "load_profile",
    "load_profiles",
    "profile_dir",
]
