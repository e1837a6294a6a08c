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
import itertools
import json
import math
import random
import sys
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from device_profiles.loader import load_profiles
from device_profiles.messages import Reading
from device_profiles.schema import DeviceProfile
from device_profiles.site import DeviceConfig
from edge.detectors.chain import DetectorChain
from edge.detectors.common import Hysteresis, Params, numeric_fields
from edge.detectors.models import only_when_params
from edge.detectors.pump import PUMP_MODEL_DEFAULTS
from edge.detectors.scorers import MewmaScorer
from edge.detectors.threshold import ScoreMonitor
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


# Choosing the one configuration --------------------------------------------------------

SELECTION_GRID: dict[str, tuple[float, ...]] = {
    "span": (5, 10, 15, 20, 30),
    "shrinkage": (0.1, 0.3),
    "quantile": (0.99, 1.0),
    "margin": (1.5, 2.0, 2.5, 3.0, 4.0, 5.0),
    "clear_level": (0.3, 0.5, 0.8),
    "cooldown_s": (0.0, 60.0),
}
"""The candidate ``pump_model`` settings (720), declared before any was scored."""


@dataclass(frozen=True)
class Counts:
    """One file's (or several files') test-row confusion and standard NAB score, summable."""

    tp: int = 0
    fp: int = 0
    fn: int = 0
    tn: int = 0
    nab_raw: float = 0.0
    windows: int = 0

    def __add__(self, other: Counts) -> Counts:
        return Counts(self.tp + other.tp, self.fp + other.fp, self.fn + other.fn,
                      self.tn + other.tn, self.nab_raw + other.nab_raw,
                      self.windows + other.windows)

    @property
    def f1(self) -> float:
        denom = self.tp + (self.fn + self.fp) / 2
        return self.tp / denom if denom else 0.0

    @property
    def far(self) -> float:
        return 100.0 * self.fp / (self.fp + self.tn) if self.fp + self.tn else 0.0

    @property
    def nab(self) -> float:
        """Normalised NAB standard score (perfect 100, no detection 0)."""
        return 100.0 * (self.nab_raw + self.windows) / (2 * self.windows) if self.windows else 0.0


def file_counts(data: SkabFile, alarms: Sequence[int]) -> Counts:
    """Score one file's alarms on its test rows, as :func:`evaluate` does."""
    test = slice(TRAIN_ROWS, None)
    conf = Confusion()
    conf.add(data.anomaly[test], alarms[test])
    nab = NabScore.empty()
    nab.add(data.times[test], data.changepoint[test], changepoints(alarms)[test])
    return Counts(conf.tp, conf.fp, conf.fn, conf.tn, nab.raw["standard"], nab.windows)


class _Recorded:
    """A detector wrapper that keeps every score its detector gave (selection pass 1)."""

    def __init__(self, inner: MewmaScorer) -> None:
        self.inner = inner
        self.scores: list[float] = []

    def learn_one(self, x: Mapping[str, float]) -> None:
        self.inner.learn_one(x)

    def score_one(self, x: Mapping[str, float]) -> float:
        score = self.inner.score_one(x)
        self.scores.append(score)
        return score

    def reset_window(self) -> None:
        self.inner.reset_window()


class _Replayed:
    """A detector that gives back recorded scores, divided by a margin (selection pass 2)."""

    def __init__(self, scores: Sequence[float], margin: float) -> None:
        self._scores: Iterator[float] = iter(scores)
        self._margin = margin

    def learn_one(self, x: Mapping[str, float]) -> None:
        return None

    def score_one(self, x: Mapping[str, float]) -> float:
        return next(self._scores) / self._margin

    def reset_window(self) -> None:
        return None


def _pump_monitor(
    profile: DeviceProfile, detector: _Recorded | _Replayed, gate: Hysteresis
) -> ScoreMonitor:
    spec = next(d for d in profile.detectors if d.name == SKAB_DETECTOR)
    fields = numeric_fields(profile, spec)
    only_when, settle = only_when_params(Params(spec), profile)
    return ScoreMonitor(detector, fields, "pump.anomaly", gate, only_when=only_when,
                        settle_s=settle)


def _alarms(monitor: ScoreMonitor, readings: Sequence[Reading]) -> list[int]:
    out = []
    for reading in readings:
        monitor.observe(reading)
        out.append(1 if monitor.alarm else 0)
    return out


def grid_counts(
    files: Sequence[SkabFile], profile: DeviceProfile,
    grid: Mapping[str, Sequence[float]] = SELECTION_GRID,
) -> tuple[list[dict[str, float]], list[list[Counts]]]:
    """Every configuration of ``grid`` on every file: ``(configs, counts[config][file])``.

    Exact and fast: with ``adapt_rate`` 0 nothing is learned after the warm-up, so a
    file's scores depend only on span, shrinkage and quantile, and the margin only divides
    them. Pass 1 records the real scorer's scores through the real thresholding wrapper
    (same operating-state gate as the profile); pass 2 replays them, divided by each margin,
    through a real wrapper with each candidate's hysteresis. Settings not in ``grid`` are
    the ``pump_model`` defaults, the minimum duration the profile's.
    """
    if PUMP_MODEL_DEFAULTS["adapt_rate"] != 0.0:
        raise ValueError("grid_counts replays scores and needs adapt_rate 0")
    profile = protocol_profile(profile)
    spec = next(d for d in profile.detectors if d.name == SKAB_DETECTOR)
    min_duration = float(spec.params.get("min_duration_s", 0.0))
    keys = list(grid)
    configs = [dict(zip(keys, combo, strict=True)) for combo in itertools.product(*grid.values())]
    readings = [[Reading("skab", profile.kind, "skab", ts, row)
                 for ts, row in zip(f.times, f.rows, strict=True)] for f in files]
    recorded: dict[tuple[float, float, float], list[list[float]]] = {}
    out: list[list[Counts]] = []
    for cfg in configs:
        d = {**PUMP_MODEL_DEFAULTS, **cfg}
        key = (d["span"], d["shrinkage"], d["quantile"])
        if key not in recorded:
            recorded[key] = []
            for file_readings in readings:
                rec = _Recorded(MewmaScorer(
                    numeric_fields(profile, spec), warmup=TRAIN_ROWS, span=int(d["span"]),
                    quantile=d["quantile"], margin=1.0, shrinkage=d["shrinkage"],
                    clip=d["clip"]))
                _alarms(_pump_monitor(profile, rec, Hysteresis(math.inf, 0.0)), file_readings)
                recorded[key].append(rec.scores)
        row = []
        for data, file_readings, scores in zip(files, readings, recorded[key], strict=True):
            gate = Hysteresis(1.0, d["clear_level"], min_duration=min_duration,
                              cooldown=d["cooldown_s"])
            monitor = _pump_monitor(profile, _Replayed(scores, d["margin"]), gate)
            row.append(file_counts(data, _alarms(monitor, file_readings)))
        out.append(row)
    return configs, out


def _total(counts: Sequence[Counts]) -> Counts:
    total = Counts()
    for c in counts:
        total = total + c
    return total


def pick(
    counts: Sequence[Sequence[Counts]], files: Sequence[int], *, far_max: float,
    nab_min: float,
) -> int:
    """The configuration with the highest pooled F1 over ``files`` among those with FAR at
    most ``far_max`` and NAB standard at least ``nab_min`` (if none, the lowest FAR)."""
    totals = [_total([row[i] for i in files]) for row in counts]
    allowed = [i for i, t in enumerate(totals) if t.far <= far_max and t.nab >= nab_min]
    if allowed:
        return max(allowed, key=lambda i: totals[i].f1)
    return min(range(len(totals)), key=lambda i: totals[i].far)


def cross_validate(
    counts: Sequence[Sequence[Counts]], *, folds: int = 5, seeds: int = 20,
    far_max: float = 10.0, nab_min: float = 33.0,
) -> list[Counts]:
    """Held-out figures of the selection rule, one per fold assignment.

    Assignment 0 puts file ``i`` (in the given order) in fold ``i mod folds``; assignment
    ``s`` > 0 does the same after shuffling with ``random.Random(s)``. In each split the
    rule (:func:`pick`) sees only the training files; the held-out files' counts of the
    picked configuration are pooled over the folds.
    """
    n = len(counts[0])
    results = []
    for seed in range(seeds):
        order = list(range(n))
        if seed:
            random.Random(seed).shuffle(order)
        held = Counts()
        for k in range(folds):
            test = [order[i] for i in range(n) if i % folds == k]
            train = [i for i in range(n) if i not in test]
            chosen = pick(counts, train, far_max=far_max, nab_min=nab_min)
            held = held + _total([counts[chosen][i] for i in test])
        results.append(held)
    return results


def select(
    paths: Sequence[Path], profile: DeviceProfile, *, seeds: int = 20,
    far_max: float = 10.0, nab_min: float = 33.0,
) -> dict[str, Any]:
    """The shipped selection procedure: its choice on all files and its held-out figures."""
    files = [load_skab_file(p, profile) for p in paths]
    configs, counts = grid_counts(files, profile)
    held = cross_validate(counts, seeds=seeds, far_max=far_max, nab_min=nab_min)
    chosen = pick(counts, list(range(len(files))), far_max=far_max, nab_min=nab_min)
    total = _total(counts[chosen])

    def spread(values: list[float]) -> dict[str, float]:
        return {"mean": round(sum(values) / len(values), 4), "min": round(min(values), 4),
                "max": round(max(values), 4)}

    return {
        "rule": {"far_max": far_max, "nab_min": nab_min, "folds": 5, "seeds": seeds},
        "candidates": len(configs),
        "chosen": configs[chosen],
        "chosen_on_all": {"f1": round(total.f1, 4), "far": round(total.far, 2),
                          "nab_standard": round(total.nab, 2)},
        "held_out": {"f1": spread([h.f1 for h in held]), "far": spread([h.far for h in held]),
                     "nab_standard": spread([h.nab for h in held])},
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


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m edge.evaluation.skab select DIR``: rerun the choice of the configuration."""
    parser = argparse.ArgumentParser(prog="python -m edge.evaluation.skab")
    sub = parser.add_subparsers(dest="command", required=True)
    sel = sub.add_parser("select", help="cross-validated choice of the pump_model settings")
    sel.add_argument("dir")
    sel.add_argument("--seeds", type=int, default=20, help="fold assignments (default 20)")
    sel.add_argument("--far-max", type=float, default=10.0)
    sel.add_argument("--nab-min", type=float, default=33.0)
    args = parser.parse_args(argv)
    directory = Path(args.dir)
    paths = find_files(directory) if directory.is_dir() else []
    if len(paths) < 5:
        print(f"{parser.prog}: need at least 5 labelled CSV files under {directory}",
              file=sys.stderr)
        return 2
    try:
        result = select(paths, load_profiles()["water_pump"], seeds=args.seeds,
                        far_max=args.far_max, nab_min=args.nab_min)
    except SkabFormatError as exc:
        print(f"{parser.prog}: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
