"""``gatehouse eval skab DIR``: the pump chain on the labelled pump-testbed recordings (SKAB).

Protocol of the benchmark: in each labelled file the first 400 rows are training data and
the rest is test data; scores are pooled over all test rows of all files. Each file is
streamed in time order through a fresh ``pump_model`` detector of the ``water_pump``
profile (the edge's multivariate chain with its thresholding wrapper), its warm-up set to
the protocol's 400 training rows: it learns normal from the training rows and then scores,
adapting only to rows it judges normal. Labels are
read only to score. Predicted changepoints for NAB are the rows where the alarm switches
on or off.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from device_profiles.loader import load_profiles
from device_profiles.messages import Reading
from device_profiles.schema import DeviceProfile
from device_profiles.site import DeviceConfig
from edge.detectors.chain import DetectorChain
from edge.evaluation.metrics import Confusion, NabScore

TRAIN_ROWS = 400
SKAB_DETECTOR = "pump_model"


class SkabFormatError(ValueError):
    """A file does not look like a labelled SKAB recording."""


@dataclass
class SkabFile:
    """One labelled recording: timestamps, readings by profile field, labels."""

    name: str
    times: list[float]
    rows: list[dict[str, float]]
    anomaly: list[int]
    changepoint: list[int]


def parse_time(text: str) -> float:
    """Epoch seconds from an ISO datetime (naive means UTC) or a plain number."""
    try:
        return float(text)
    except ValueError:
        pass
    dt = datetime.fromisoformat(text.strip())
    if dt.tzinfo is None:
        from datetime import UTC

        dt = dt.replace(tzinfo=UTC)
    return dt.timestamp()


def load_skab_file(path: Path, profile: DeviceProfile) -> SkabFile:
    """Read one ``;``-separated SKAB file, mapping its channels to profile fields by alias."""
    aliases = profile.field_by_alias()
    with path.open(newline="", encoding="utf-8") as fh:
        reader = csv.reader(fh, delimiter=";")
        try:
            header = next(reader)
        except StopIteration as exc:
            raise SkabFormatError(f"{path}: empty file") from exc
        lower = [h.strip().lower() for h in header]
        if "anomaly" not in lower or "changepoint" not in lower or "datetime" not in lower:
            raise SkabFormatError(f"{path}: needs datetime, anomaly and changepoint columns")
        i_time, i_anom, i_cp = lower.index("datetime"), lower.index("anomaly"), lower.index(
            "changepoint"
        )
        channels = [(i, aliases[h]) for i, h in enumerate(lower) if h in aliases]
        if not channels:
            raise SkabFormatError(f"{path}: no column matches a water_pump field or alias")
        out = SkabFile(path.name, [], [], [], [])
        for lineno, rec in enumerate(reader, start=2):
            if not rec:
                continue
            try:
                out.times.append(parse_time(rec[i_time]))
                out.rows.append({name: float(rec[i]) for i, name in channels})
                out.anomaly.append(int(float(rec[i_anom])))
                out.changepoint.append(int(float(rec[i_cp])))
            except (ValueError, IndexError) as exc:
                raise SkabFormatError(f"{path}:{lineno}: bad row: {exc}") from exc
    return out


def find_files(directory: Path) -> list[Path]:
    """Every labelled CSV under ``directory`` (files without label columns are skipped)."""
    found = []
    for path in sorted(directory.rglob("*.csv")):
        with path.open(encoding="utf-8") as fh:
            head = fh.readline().lower()
        if "anomaly" in head and "changepoint" in head:
            found.append(path)
    return found


def protocol_profile(profile: DeviceProfile) -> DeviceProfile:
    """The profile with the protocol's training length as the model's warm-up.

    The benchmark fixes training at the first 400 rows of each file; every other setting
    is the profile's own (on a live pump the profile learns from an hour of running).
    """
    detectors = tuple(
        d.model_copy(update={"params": {**d.params, "warmup": TRAIN_ROWS}})
        if d.name == SKAB_DETECTOR else d
        for d in profile.detectors
    )
    return profile.model_copy(update={"detectors": detectors})


def detect_file(data: SkabFile, profile: DeviceProfile) -> tuple[list[float], list[int]]:
    """Stream one file through a fresh chain; the score and alarm of every row."""
    chain = DetectorChain.for_device(
        protocol_profile(profile), DeviceConfig(id="skab", kind=profile.kind),
        only=[SKAB_DETECTOR],
    )
    scores: list[float] = []
    alarms: list[int] = []
    for ts, row in zip(data.times, data.rows, strict=True):
        chain.observe(Reading("skab", profile.kind, "skab", ts, row))
        scores.append(chain.score)
        alarms.append(1 if chain.alarm else 0)
    return scores, alarms


def changepoints(alarms: Sequence[int]) -> list[int]:
    """1 where the alarm switches on or off (the first row is never one)."""
    return [0] + [1 if alarms[i] != alarms[i - 1] else 0 for i in range(1, len(alarms))]


def evaluate(paths: Sequence[Path], profile: DeviceProfile) -> dict[str, Any]:
    """Pooled outlier metrics and NAB scores over the test rows of ``paths``."""
    conf = Confusion()
    nab = NabScore.empty()
    rows = 0
    per_file: list[dict[str, Any]] = []
    for path in paths:
        data = load_skab_file(path, profile)
        _, alarms = detect_file(data, profile)
        cps = changepoints(alarms)
        test = slice(TRAIN_ROWS, None)
        file_conf = Confusion()
        file_conf.add(data.anomaly[test], alarms[test])
        conf.add(data.anomaly[test], alarms[test])
        nab.add(data.times[test], data.changepoint[test], cps[test])
        rows += len(data.times[test])
        per_file.append({
            "file": str(path.relative_to(path.parents[1])) if len(path.parents) > 1 else path.name,
            "f1": round(file_conf.f1, 4), "far": round(file_conf.far, 2),
            "mar": round(file_conf.mar, 2),
        })
    scores = nab.normalised()
    return {
        "f1": round(conf.f1, 4),
        "far": round(conf.far, 2),
        "mar": round(conf.mar, 2),
        "nab_standard": round(scores["standard"], 2),
        "nab_low_fp": round(scores["low_fp"], 2),
        "nab_low_fn": round(scores["low_fn"], 2),
        "files": len(paths),
        "rows": rows,
        "changepoint_windows": nab.windows,
        "detector": SKAB_DETECTOR,
        "per_file": per_file,
    }


def run(args: argparse.Namespace) -> int:
    directory = Path(args.dir)
    if not directory.is_dir():
        print(f"gatehouse eval skab: {directory} is not a folder", file=sys.stderr)
        return 2
    paths = find_files(directory)
    if not paths:
        print(f"gatehouse eval skab: no labelled CSV under {directory}", file=sys.stderr)
        return 2
    profile = load_profiles()["water_pump"]
    try:
        result = evaluate(paths, profile)
    except SkabFormatError as exc:
        print(f"gatehouse eval skab: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(result))
    else:
        print(
            f"{result['files']} files, {result['rows']} test rows: F1 {result['f1']:.3f}, "
            f"FAR {result['far']:.2f} %, MAR {result['mar']:.2f} %; NAB standard "
            f"{result['nab_standard']:.2f}, low FP {result['nab_low_fp']:.2f}, "
            f"low FN {result['nab_low_fn']:.2f}"
        )
    return 0
