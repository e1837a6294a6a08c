"""Ground truth of injected faults as JSON lines, one fault per line.

Each line is ``{"device_id", "kind", "type", "start", "end", "params"}`` with ``start`` and
``end`` epoch seconds of simulated time (the fault is active on ``start <= ts < end``).
Trend faults carry ``params.limit_cross_ts``: when the trended field's mean reaches the
profile's ``limit``, so forecasts can be scored. A line is written and flushed the moment
a fault is scheduled, so a crashed run still leaves the truth of what it injected.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import IO, Any

from simulators.models.base import FaultSpec
from simulators.models.registry import kind_of_fault


class TruthError(ValueError):
    """A truth file line is not a valid record; the message names the file and line."""


@dataclass(frozen=True, slots=True)
class TruthRecord:
    """One injected fault as recorded."""

    device_id: str
    kind: str
    type: str
    start: float
    end: float
    params: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> str:
        return json.dumps(
            {
                "device_id": self.device_id,
                "kind": self.kind,
                "type": self.type,
                "start": self.start,
                "end": self.end,
                "params": self.params,
            },
            separators=(",", ":"),
            sort_keys=False,
        )

    def to_fault(self) -> FaultSpec:
        return FaultSpec(self.device_id, self.type, self.start, self.end, dict(self.params))

    @classmethod
    def from_fault(cls, spec: FaultSpec, kind: str | None = None) -> TruthRecord:
        return cls(
            spec.device_id,
            kind or kind_of_fault(spec.type),
            spec.type,
            spec.start,
            spec.end,
            dict(spec.params),
        )


class GroundTruth:
    """Collects truth records and, given a path, appends each as a JSON line at once.

    Thread-safe: the publisher records scheduled and on-demand faults from two threads.
    """

    def __init__(self, path: Path | str | None = None, *, append: bool = False) -> None:
        self.path = Path(path) if path is not None else None
        self._records: list[TruthRecord] = []
        self._lock = threading.Lock()
        self._file: IO[str] | None = None
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._file = self.path.open("a" if append else "w", encoding="utf-8")

    def record(self, spec: FaultSpec, kind: str | None = None) -> TruthRecord:
        """Record one fault (its kind defaults to the kind its type belongs to)."""
        rec = TruthRecord.from_fault(spec, kind)
        with self._lock:
            self._records.append(rec)
            if self._file is not None:
                self._file.write(rec.to_json() + "\n")
                self._file.flush()
        return rec

    @property
    def records(self) -> list[TruthRecord]:
        with self._lock:
            return list(self._records)

    def close(self) -> None:
        with self._lock:
            if self._file is not None:
                self._file.close()
                self._file = None

    def __enter__(self) -> GroundTruth:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


_KEYS = ("device_id", "kind", "type", "start", "end")


def read_truth(path: Path | str) -> list[TruthRecord]:
    """Every record of a truth file; :class:`TruthError` naming the line if one is broken."""
    path = Path(path)
    out: list[TruthRecord] = []
    with path.open(encoding="utf-8") as fh:
        for number, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                raw = json.loads(line)
            except json.JSONDecodeError as exc:
                raise TruthError(f"{path}:{number}: not JSON: {exc}") from exc
            if not isinstance(raw, dict):
                raise TruthError(f"{path}:{number}: a record must be a JSON object")
            missing = [k for k in _KEYS if k not in raw]
            if missing:
                raise TruthError(f"{path}:{number}: missing {', '.join(missing)}")
            params = raw.get("params") or {}
            try:
                rec = TruthRecord(
                    str(raw["device_id"]),
                    str(raw["kind"]),
                    str(raw["type"]),
                    float(raw["start"]),
                    float(raw["end"]),
                    dict(params),
                )
            except (TypeError, ValueError) as exc:
                raise TruthError(f"{path}:{number}: bad value: {exc}") from exc
            out.append(rec)
    return out
