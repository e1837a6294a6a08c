"""Which model simulates which kind, and how a device's model and generator are made."""

from __future__ import annotations

import zlib

import numpy as np

from device_profiles.loader import load_profiles
from device_profiles.schema import DeviceProfile
from device_profiles.site import DeviceConfig
from simulators.models.base import DeviceModel, FaultError
from simulators.models.camera import CameraHealthModel
from simulators.models.elevator import ElevatorModel
from simulators.models.gate import AccessGateModel
from simulators.models.meter import SmartMeterModel
from simulators.models.pump import WaterPumpModel

MODELS: dict[str, type[DeviceModel]] = {
    "elevator": ElevatorModel,
    "water_pump": WaterPumpModel,
    "smart_meter": SmartMeterModel,
    "access_gate": AccessGateModel,
    "camera": CameraHealthModel,
}
"""The model class of each device kind."""

FAULT_TYPES: dict[str, tuple[str, ...]] = {
    kind: model.all_fault_types() for kind, model in MODELS.items()
}
"""Kind -> the event types its model can inject (every kind has ``{prefix}.offline``)."""


def kind_of_fault(fault_type: str) -> str:
    """The device kind a fault type belongs to; :class:`FaultError` if none."""
    for kind, types in FAULT_TYPES.items():
        if fault_type in types:
            return kind
    known = ", ".join(t for types in FAULT_TYPES.values() for t in types)
    raise FaultError(f"unknown fault type {fault_type!r}; known: {known}")


def device_rng(device_id: str, seed: int) -> np.random.Generator:
    """The generator of one device: independent of the other devices and of their order."""
    return np.random.default_rng([seed & 0xFFFFFFFF, zlib.crc32(device_id.encode())])


def make_model(
    device: DeviceConfig,
    seed: int,
    *,
    profile: DeviceProfile | None = None,
    floors: int | None = None,
) -> DeviceModel:
    """Build the model of ``device`` with its own generator derived from ``seed``.

    ``profile`` defaults to the shipped profile of the kind; ``floors`` (elevators) to
    ``device.params['floors']`` or 18.
    """
    prof = profile if profile is not None else load_profiles()[device.kind]
    rng = device_rng(device.id, seed)
    if device.kind == "elevator":
        return ElevatorModel(device, prof, rng, floors=floors)
    return MODELS[device.kind](device, prof, rng)
