"""Run device models offline: simulated time, no MQTT, as fast as the CPU allows."""

from __future__ import annotations

import heapq
import zlib
from collections.abc import Iterable, Iterator
from typing import Protocol

from device_profiles.site import DeviceConfig
from simulators.models.base import DeviceModel, FaultError, FaultSpec, Sample


class TruthSink(Protocol):
    def record(self, spec: FaultSpec, kind: str | None = None) -> object: ...


def phase_offset(device_id: str, period: float) -> float:
    """Where in its period a device samples (devices are not synchronised; stable per id)."""
    return (zlib.crc32(device_id.encode()) % 1000) / 1000.0 * period


def simulate_offline(
    devices: Iterable[DeviceConfig],
    start: float,
    end: float,
    faults: Iterable[FaultSpec] = (),
    seed: int = 0,
    *,
    floors: int | None = None,
    truth: TruthSink | None = None,
) -> Iterator[tuple[DeviceConfig, Sample]]:
    """Every sample of every device on ``[start, end)``, in time order (ties: device order).

    Faults are injected before the first step (a fault for an unknown device raises
    :class:`FaultError`); with ``truth`` each completed fault spec is recorded. Samples of a
    silent device (``*.offline`` fault) are yielded too, with empty ``values``: don't feed
    them as readings, use their ``status`` and timestamps.
    """
    from simulators.models.registry import make_model

    devs = list(devices)
    models: list[DeviceModel] = [make_model(d, seed, floors=floors) for d in devs]
    by_id = {d.id: i for i, d in enumerate(devs)}
    for spec in faults:
        index = by_id.get(spec.device_id)
        if index is None:
            raise FaultError(f"fault {spec.type} names unknown device {spec.device_id!r}")
        resolved = models[index].inject(spec)
        if truth is not None:
            truth.record(resolved, devs[index].kind)
    heap = [
        (start + phase_offset(d.id, m.period), i)
        for i, (d, m) in enumerate(zip(devs, models, strict=True))
    ]
    heapq.heapify(heap)
    while heap:
        ts, i = heap[0]
        if ts >= end:
            break
        model = models[i]
        sample = model.step(ts)
        heapq.heapreplace(heap, (ts + model.period, i))
        yield devs[i], sample
