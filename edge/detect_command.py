"""``gatehouse detect FILE.csv``: stream a recording through a detector chain (a contract).

Writes CSV to stdout with the header ``timestamp,score,alarm`` and one row per input row,
in time order: ``score`` is the learned model's score (1.0 is the edge of normal; 0.0 while
it is still learning, or for kinds without a learned model), ``alarm`` is 1 while any
episode of the chain is open.

With ``--kind`` the recording replays through that kind's full profile chain, exactly as
the edge agent runs it (columns are matched to profile fields by name or alias,
case-insensitively). Without it, the generic chain is used: the univariate model for one
column, the multivariate one for several. Values that are not numbers count as missing
(counted on stderr); an unreadable timestamp is an error naming the line.
"""

from __future__ import annotations

import argparse
import csv
import itertools
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

TIME_NAMES = ("timestamp", "datetime", "time", "ts", "date")
LABEL_NAMES = ("anomaly", "changepoint", "label", "labels")


class DetectInputError(ValueError):
    """The recording cannot be used; the message names the file and line or column."""


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("file", help="CSV recording (one row per sample)")
    parser.add_argument("--sep", default=",", help="field separator (default ',')")
    parser.add_argument(
        "--time-column", default=None,
        help="timestamp column (epoch seconds or ISO datetime; default: a column named "
        "timestamp/datetime/time/ts, else the first)",
    )
    parser.add_argument(
        "--columns", default=None,
        help="comma-separated value columns (default: every column but time and labels)",
    )
    parser.add_argument(
        "--kind", default=None,
        help="device kind whose profile chain to run (default: the generic chain)",
    )
    parser.add_argument(
        "--detector", action="append", default=None,
        help="with --kind: run only this profile detector (repeatable)",
    )


@dataclass
class Recording:
    """A parsed CSV: raw time text, epoch seconds and values per row, in file order."""

    time_text: list[str] = field(default_factory=list)
    times: list[float] = field(default_factory=list)
    rows: list[dict[str, float]] = field(default_factory=list)
    bad_values: int = 0


def read_recording(
    fh: TextIO,
    name: str,
    sep: str,
    time_column: str | None,
    columns: Sequence[str] | None,
    rename: dict[str, str] | None = None,
) -> tuple[Recording, list[str]]:
    """Parse the CSV; return it and the value columns used (renamed through ``rename``,
    a map from lower-case column name to field name; columns it lacks are dropped)."""
    from edge.evaluation.skab import parse_time

    reader = csv.reader(fh, delimiter=sep)
    try:
        header = [h.strip() for h in next(reader)]
    except StopIteration as exc:
        raise DetectInputError(f"{name}: empty file") from exc
    lower = [h.lower() for h in header]
    if time_column is not None:
        if time_column.lower() not in lower:
            raise DetectInputError(f"{name}: no time column {time_column!r} in {header}")
        i_time = lower.index(time_column.lower())
    else:
        i_time = next((lower.index(n) for n in TIME_NAMES if n in lower), 0)
    if columns:
        picked = []
        for col in columns:
            if col.strip().lower() not in lower:
                raise DetectInputError(f"{name}: no column {col!r} in {header}")
            picked.append(lower.index(col.strip().lower()))
    else:
        picked = [i for i, h in enumerate(lower) if i != i_time and h not in LABEL_NAMES]
    targets: list[tuple[int, str]] = []
    for i in picked:
        if rename is None:
            targets.append((i, header[i]))
        elif lower[i] in rename:
            targets.append((i, rename[lower[i]]))
        elif columns:
            raise DetectInputError(f"{name}: column {header[i]!r} is not a field of the kind")
    if not targets:
        raise DetectInputError(f"{name}: no value columns to watch")
    rec = Recording()
    for lineno, raw in enumerate(reader, start=2):
        if not raw or all(not c.strip() for c in raw):
            continue
        try:
            text = raw[i_time]
            ts = parse_time(text)
        except (ValueError, IndexError) as exc:
            raise DetectInputError(f"{name}:{lineno}: unreadable timestamp: {exc}") from exc
        values: dict[str, float] = {}
        for i, target in targets:
            try:
                v = float(raw[i])
            except (ValueError, IndexError):
                rec.bad_values += 1
                continue
            if v != v:
                rec.bad_values += 1
                continue
            values[target] = v
        rec.time_text.append(text)
        rec.times.append(ts)
        rec.rows.append(values)
    return rec, [t for _, t in targets]


def _median_period(times: Sequence[float]) -> float:
    diffs = sorted(b - a for a, b in itertools.pairwise(times) if b > a)
    return diffs[len(diffs) // 2] if diffs else 1.0


def run(args: argparse.Namespace) -> int:
    from device_profiles.loader import load_profiles
    from device_profiles.messages import Reading
    from device_profiles.site import DeviceConfig
    from edge.detectors.base import DetectorConfigError
    from edge.detectors.chain import DetectorChain, generic_chain

    path = Path(args.file)
    columns = [c for c in args.columns.split(",") if c.strip()] if args.columns else None
    try:
        rename = None
        profile = None
        if args.kind is not None:
            profiles = load_profiles()
            if args.kind not in profiles:
                raise DetectInputError(
                    f"unknown kind {args.kind!r}; expected one of {', '.join(sorted(profiles))}"
                )
            profile = profiles[args.kind]
            rename = profile.field_by_alias()
        try:
            with path.open(newline="", encoding="utf-8") as fh:
                rec, used = read_recording(
                    fh, str(path), args.sep, args.time_column, columns, rename
                )
        except OSError as exc:
            raise DetectInputError(f"cannot read {path}: {exc}") from exc
        if profile is not None:
            device = DeviceConfig(id=path.stem[:64] or "recording", kind=profile.kind)
            chain = DetectorChain.for_device(profile, device, only=args.detector)
            kind = profile.kind
        else:
            if args.detector:
                raise DetectInputError("--detector needs --kind")
            chain = generic_chain(used, _median_period(rec.times))
            kind = "generic"
    except (DetectInputError, DetectorConfigError) as exc:
        print(f"gatehouse detect: {exc}", file=sys.stderr)
        return 2
    order = sorted(range(len(rec.times)), key=rec.times.__getitem__)
    out = csv.writer(sys.stdout, lineterminator="\n")
    out.writerow(["timestamp", "score", "alarm"])
    for i in order:
        chain.observe(Reading("csv", kind, "recording", rec.times[i], rec.rows[i]))
        out.writerow([rec.time_text[i], f"{chain.score:.6g}", 1 if chain.alarm else 0])
    if rec.bad_values:
        print(f"gatehouse detect: {rec.bad_values} values were not numbers and were treated "
              "as missing", file=sys.stderr)
    return 0
