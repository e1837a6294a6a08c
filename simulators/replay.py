"""Replay a CSV recording (such as a SKAB file) as one device's telemetry.

Column headers map to profile fields through the field names and their ``aliases``
(case-insensitive), so SKAB's ``Accelerometer1RMS;...;Volume Flow RateRMS`` become the
water-pump fields. Rows keep their recorded time offsets; a label column (SKAB's
``anomaly``) yields the recording's anomaly intervals as ground truth.
"""

from __future__ import annotations

import csv
import logging
import math
import statistics
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from device_profiles.schema import DeviceProfile

log = logging.getLogger("gatehouse.simulate.replay")


class RecordingError(ValueError):
    """The CSV file cannot be read or has no time column or no mapped field."""


@dataclass(frozen=True, slots=True)
class Recording:
    """A recording mapped to a profile: rows as (seconds from the first row, values)."""

    fields: tuple[str, ...]
    rows: list[tuple[float, dict[str, float]]]
    anomalies: list[tuple[float, float]]
    """Labelled anomaly intervals ``[start, end)`` as offsets from the first row."""
    ignored_columns: tuple[str, ...]
    bad_cells: int
    """Cells that were empty or not numbers (left out of their row)."""

    @property
    def period(self) -> float:
        """Median seconds between rows (1 when there is a single row)."""
        if len(self.rows) < 2:
            return 1.0
        steps = [b[0] - a[0] for a, b in zip(self.rows, self.rows[1:], strict=False)]
        return max(statistics.median(steps), 1e-3)

    @property
    def length(self) -> float:
        """Seconds from the first row to one period after the last."""
        return (self.rows[-1][0] + self.period) if self.rows else 0.0


def _parse_time(text: str) -> float:
    text = text.strip()
    try:
        return float(text)
    except ValueError:
        pass
    moment = datetime.fromisoformat(text)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


def read_recording(
    path: Path | str,
    profile: DeviceProfile,
    *,
    sep: str = ";",
    time_column: str = "datetime",
    label_column: str = "anomaly",
) -> Recording:
    """Read and map a CSV recording; :class:`RecordingError` names the file and problem.

    Rows whose time cannot be parsed, or that go back in time, are skipped (counted in
    ``bad_cells``); so are cells that are not numbers.
    """
    path = Path(path)
    try:
        with path.open(newline="", encoding="utf-8") as fh:
            reader = csv.reader(fh, delimiter=sep)
            header = next(reader, None)
            lines = list(reader)
    except OSError as exc:
        raise RecordingError(f"{path}: cannot read: {exc}") from exc
    if not header:
        raise RecordingError(f"{path}: empty file")
    header = [h.strip() for h in header]
    if time_column not in header:
        raise RecordingError(
            f"{path}: no time column {time_column!r}; columns are {', '.join(header)} "
            "(choose one with --time-column, or check --sep)"
        )
    t_idx = header.index(time_column)
    l_idx = header.index(label_column) if label_column in header else None
    by_alias = profile.field_by_alias()
    mapping: list[tuple[int, str]] = []
    ignored: list[str] = []
    for i, name in enumerate(header):
        if i in (t_idx, l_idx):
            continue
        field = by_alias.get(name.lower())
        if field is None:
            ignored.append(name)
        else:
            mapping.append((i, field))
    if not mapping:
        raise RecordingError(
            f"{path}: no column maps to a {profile.kind} field; columns are {', '.join(header)}"
        )
    if ignored:
        log.info("%s: columns not in the %s profile, ignored: %s", path, profile.kind, ignored)
    rows: list[tuple[float, dict[str, float]]] = []
    labels: list[bool] = []
    bad = 0
    t0: float | None = None
    last = -math.inf
    for line in lines:
        if not line or all(not c.strip() for c in line):
            continue
        try:
            t = _parse_time(line[t_idx])
        except (ValueError, IndexError):
            bad += 1
            continue
        if t0 is None:
            t0 = t
        offset = t - t0
        if offset < last:
            bad += 1
            continue
        last = offset
        values: dict[str, float] = {}
        for i, field in mapping:
            try:
                value = float(line[i])
            except (ValueError, IndexError):
                bad += 1
                continue
            if math.isfinite(value):
                values[field] = value
            else:
                bad += 1
        rows.append((offset, values))
        label = False
        if l_idx is not None:
            try:
                label = float(line[l_idx]) >= 0.5
            except (ValueError, IndexError):
                bad += 1
        labels.append(label)
    if not rows:
        raise RecordingError(f"{path}: no readable rows")
    recording = Recording(tuple(f for _, f in mapping), rows, [], tuple(ignored), bad)
    return Recording(
        recording.fields, rows, _intervals(rows, labels, recording.period), tuple(ignored), bad
    )


def _intervals(
    rows: list[tuple[float, dict[str, float]]], labels: list[bool], period: float
) -> list[tuple[float, float]]:
    out: list[tuple[float, float]] = []
    start: float | None = None
    for (offset, _), label in zip(rows, labels, strict=True):
        if label and start is None:
            start = offset
        elif not label and start is not None:
            out.append((start, offset))
            start = None
    if start is not None:
        out.append((start, rows[-1][0] + period))
    return out


class RowPublisher:
    """Publishes rows of a recording at their offsets (scaled by ``speed``)."""

    def __init__(
        self,
        recording: Recording,
        publish: Any,
        *,
        start_ts: float,
        speed: float = 1.0,
        loop: bool = False,
        stop: threading.Event | None = None,
    ) -> None:
        if not speed > 0:
            raise ValueError(f"speed must be positive, got {speed}")
        self.recording = recording
        self.publish = publish
        self.start_ts = start_ts
        self.speed = speed
        self.loop = loop
        self.stop = stop or threading.Event()
        self.published = 0
        self.passes = 0

    def pass_start(self, index: int) -> float:
        """Simulated start time of pass ``index`` (0-based) of a looped replay."""
        return self.start_ts + index * self.recording.length

    def run(self, on_pass: Any = None) -> int:
        """Publish until the end (or forever with ``loop``); return rows published.

        ``publish(ts, values)`` sends one row; ``on_pass(index, start_ts)`` is called as each
        pass begins (used to write its ground truth).
        """
        wall0 = time.monotonic()
        index = 0
        while not self.stop.is_set():
            base = self.pass_start(index)
            if on_pass is not None:
                on_pass(index, base)
            for offset, values in self.recording.rows:
                sim = base - self.start_ts + offset
                wait = wall0 + sim / self.speed - time.monotonic()
                if wait > 0 and self.stop.wait(wait):
                    return self.published
                self.publish(base + offset, values)
                self.published += 1
            self.passes += 1
            index += 1
            if not self.loop:
                break
        return self.published
