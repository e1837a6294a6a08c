"""Device models that run offline (no MQTT, simulated time) or behind the MQTT publisher.

The contract the detection evaluation and the publisher rely on::

    model = make_model(device, seed)            # DeviceModel
    model.inject(FaultSpec(device_id, type, start, end, params))  # returns the completed spec
    sample = model.step(ts)                     # Sample(ts, values, native_events, status)
    model.period                                # seconds between samples
    FAULT_TYPES                                 # kind -> injectable event types
"""

from __future__ import annotations

from simulators.models.base import (
    KIND_PREFIX,
    DeviceModel,
    FaultError,
    FaultSpec,
    Sample,
    default_duration,
    resolve_fault,
)
from simulators.models.offline import simulate_offline
from simulators.models.registry import (
    FAULT_TYPES,
    MODELS,
    device_rng,
    kind_of_fault,
    make_model,
)

__all__ = [
    "FAULT_TYPES",
    "KIND_PREFIX",
    "MODELS",
    "DeviceModel",
    "FaultError",
    "FaultSpec",
    "Sample",
    "default_duration",
    "device_rng",
    "kind_of_fault",
    "make_model",
    "resolve_fault",
    "simulate_offline",
]
