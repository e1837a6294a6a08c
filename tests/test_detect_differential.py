"""Detection gives exactly the recorded results on the simulator's fault scenarios.

``tests/detection_reference.json`` was written by ``tests/detection_reference.py`` from the
code before the per-reading CPU work (commit 3d110cf): every fault type the simulator
injects, one device each, and a fault-free run of every kind, through the agent's
``Detection`` and the replay tools' ``DetectorChain``. Each run must give the same events
(ids, types, states, times, evidence, forecasts), the same chain findings and the same
model score after every reading.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.detection_reference import RECORD, run_one, runs

REFERENCE: dict[str, Any] = json.loads(RECORD.read_text()) if RECORD.exists() else {}
RUNS = {device["id"]: (kind, device, start, end, faults)
        for kind, device, start, end, faults in runs()}


def test_the_record_covers_every_scenario_run() -> None:
    assert set(REFERENCE) == set(RUNS)
    kinds = {kind for kind, *_ in RUNS.values()}
    assert kinds == {"water_pump", "elevator", "smart_meter", "access_gate", "camera"}
    assert sum(len(r["events"]) for r in REFERENCE.values()) >= 100


@pytest.mark.parametrize("device_id", sorted(RUNS))
def test_same_events_as_the_reference(device_id: str) -> None:
    kind, device, start, end, faults = RUNS[device_id]
    expected = REFERENCE[device_id]
    got = json.loads(json.dumps(run_one(kind, device, start, end, faults), sort_keys=True))
    assert got["inputs"] == expected["inputs"], (
        "the simulator's samples changed: write the record again from a trusted commit "
        "(see tests/detection_reference.py)"
    )
    assert got["events"] == expected["events"]
    assert got["chain_findings"] == expected["chain_findings"]
    assert got["scores"] == expected["scores"]
