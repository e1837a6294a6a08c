"""Reference record of what detection makes of the simulator's fault scenarios.

Every fault type of :mod:`edge.evaluation.scenarios` (one device each, with its lead-in and
tail) and a short fault-free run of every kind stream through the agent's
:class:`~edge.detection.Detection` (readings, status changes, a tick at every sample time)
and, separately, through the kind's :class:`~edge.detectors.chain.DetectorChain` (the
replay tools' path, with its model score per reading). For each run the record keeps a
digest of the input samples, every event (id, type, state, time, evidence, forecast) and a
digest of the score sequence. Scores (in the digest and in the events' evidence) are kept
to 9 significant digits: the pump model's arithmetic moved from numpy to plain Python,
whose sums round differently in the last bits (about 1e-13 relative), which no decision
can see; anything larger is a changed result.

``tests/test_detect_differential.py`` compares the current code with the stored record, so
a change meant to make detection cheaper cannot change a result. The record depends on the
simulator too: when the input digests differ the simulator changed, and the record must be
written again from a commit whose detection is trusted, e.g. in a worktree::

    git worktree add --detach /tmp/ref <commit>
    PYTHONPATH=/tmp/ref .venv/bin/python tests/detection_reference.py --write
"""

from __future__ import annotations

import argparse
import hashlib
import json
import struct
import sys
from pathlib import Path
from typing import Any

RECORD = Path(__file__).with_name("detection_reference.json")
SEED = 5
HEALTHY_DAYS = 0.25


def _digest(h: Any, *parts: object) -> None:
    h.update(repr(parts).encode())


def _sig9(value: float) -> float:
    return float(f"{value:.9g}")


def _evidence9(item: Any) -> Any:
    """``item`` with every float inside an ``evidence`` kept to 9 significant digits."""
    if isinstance(item, dict):
        return {k: _round_floats(v) if k == "evidence" else _evidence9(v)
                for k, v in item.items()}
    if isinstance(item, list):
        return [_evidence9(v) for v in item]
    return item


def _round_floats(item: Any) -> Any:
    if isinstance(item, float):
        return _sig9(item)
    if isinstance(item, dict):
        return {k: _round_floats(v) for k, v in item.items()}
    if isinstance(item, list):
        return [_round_floats(v) for v in item]
    return item


def run_one(kind: str, device: dict[str, Any], start: float, end: float,
            faults: list[Any]) -> dict[str, Any]:
    """One scenario run through Detection and through the DetectorChain."""
    from device_profiles.loader import load_profiles
    from device_profiles.messages import Reading
    from device_profiles.site import DeviceConfig, SiteConfig
    from edge.detection import Detection
    from edge.detectors.chain import DetectorChain
    from edge.validate import StatusChange
    from simulators.models import simulate_offline

    profiles = load_profiles()
    dev = DeviceConfig(**device)
    site = SiteConfig(site_id="ref", devices=[dev])
    detection = Detection(site, profiles)
    chain = DetectorChain.for_device(profiles[kind], dev)
    inputs = hashlib.sha256()
    scores = hashlib.sha256()
    events: list[dict[str, Any]] = []
    findings: list[list[Any]] = []
    for _dev, sample in simulate_offline([dev], start, end, faults, SEED):
        _digest(inputs, sample.ts, sample.status, sample.values)
        found = []
        if sample.status is not None:
            online = sample.status == "online"
            events += [e.model_dump(mode="json") for e in detection.status(
                StatusChange("ref", kind, dev.id, sample.ts, online))]
            found += chain.on_status(sample.ts, online)
        if sample.values:
            reading = Reading("ref", kind, dev.id, sample.ts, dict(sample.values))
            events += [e.model_dump(mode="json") for e in detection.observe(reading)]
            found += chain.observe(Reading("ref", kind, dev.id, sample.ts, dict(sample.values)))
            scores.update(struct.pack("<d?", _sig9(chain.score), chain.alarm))
        events += [e.model_dump(mode="json") for e in detection.tick(sample.ts)]
        found += chain.tick(sample.ts)
        findings += [[f.event_type, f.state, f.ts, f.episode_start,
                      _round_floats(json.loads(json.dumps(f.evidence, default=repr))),
                      None if f.forecast is None else f.forecast.model_dump(mode="json")]
                     for f in found]
    return {
        "device": device, "start": start, "end": end,
        "inputs": inputs.hexdigest(), "scores": scores.hexdigest(),
        "events": _evidence9(events), "chain_findings": findings,
    }


def runs() -> list[tuple[str, dict[str, Any], float, float, list[Any]]]:
    """The scenario runs of the record: every fault type once, every kind healthy briefly."""
    from edge.evaluation.scenarios import scenarios

    out = []
    for r in scenarios(1, HEALTHY_DAYS):
        out.append((r.device.kind, r.device.model_dump(exclude_defaults=True), r.start, r.end,
                    list(r.faults)))
    return out


def record(kinds: set[str] | None = None) -> dict[str, Any]:
    """The record of every run (of ``kinds`` only, when given), keyed by device id."""
    return {
        device["id"]: run_one(kind, device, start, end, faults)
        for kind, device, start, end, faults in runs()
        if kinds is None or kind in kinds
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write", action="store_true", help=f"write {RECORD.name}")
    args = parser.parse_args()
    data = record()
    text = json.dumps(data, sort_keys=True, indent=0)
    if args.write:
        RECORD.write_text(text + "\n")
    n_events = sum(len(r["events"]) for r in data.values())
    print(f"{len(data)} runs, {n_events} events", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
