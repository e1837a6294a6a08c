"""The device ledger as CSV: export, and an all-or-nothing import with line-numbered errors."""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date

from device_profiles.schema import KINDS

COLUMNS: tuple[str, ...] = (
    "site_id", "device_id", "kind", "building", "unit", "floor", "vendor", "model", "serial",
    "install_date", "warranty_end",
)
_ID = re.compile(r"^[A-Za-z0-9_-]{1,128}$")
MAX_ROWS = 50_000


@dataclass(frozen=True)
class LedgerRow:
    site_id: str
    device_id: str
    kind: str
    building: str | None
    unit: str | None
    floor: int | None
    vendor: str | None
    model: str | None
    serial: str | None
    install_date: str | None
    warranty_end: str | None


@dataclass(frozen=True)
class RowError:
    line: int
    error: str


def to_csv(rows: Iterable[LedgerRow]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(COLUMNS)
    for row in rows:
        writer.writerow(["" if getattr(row, c) is None else getattr(row, c) for c in COLUMNS])
    return out.getvalue()


def parse_csv(text: str, default_site: str | None) -> tuple[list[LedgerRow], list[RowError]]:
    """Rows and the errors of every bad line (line 1 is the header)."""
    reader = csv.DictReader(io.StringIO(text, newline=""))
    try:
        header = reader.fieldnames or []
    except csv.Error as exc:
        return [], [RowError(1, f"not CSV: {exc}")]
    missing = {"device_id", "kind"} - set(header)
    if missing:
        return [], [RowError(1, f"missing column(s): {', '.join(sorted(missing))}")]
    unknown = set(header) - set(COLUMNS)
    if unknown:
        return [], [RowError(1, f"unknown column(s): {', '.join(sorted(unknown))}")]
    rows: list[LedgerRow] = []
    errors: list[RowError] = []
    line = 1
    while True:
        line += 1
        try:
            raw = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:
            errors.append(RowError(line, f"not CSV: {exc}"))
            break
        if line > MAX_ROWS + 1:
            errors.append(RowError(line, f"more than {MAX_ROWS} rows"))
            break
        try:
            rows.append(_row(raw, default_site))
        except ValueError as exc:
            errors.append(RowError(line, str(exc)))
    return rows, errors


def _row(raw: dict[str | None, str | list[str] | None], default_site: str | None) -> LedgerRow:
    if None in raw:
        raise ValueError("more fields than columns")

    def get(name: str) -> str | None:
        value = raw.get(name)
        if not isinstance(value, str):
            return None
        value = value.strip()
        return value or None

    site = get("site_id") or default_site
    if not site:
        raise ValueError("no site_id (column or query parameter)")
    device = get("device_id") or ""
    if not _ID.match(device):
        raise ValueError(f"bad device_id {device!r}")
    kind = get("kind") or ""
    if kind not in KINDS:
        raise ValueError(f"unknown kind {kind!r}")
    floor_text = get("floor")
    try:
        floor = int(floor_text) if floor_text is not None else None
    except ValueError:
        raise ValueError(f"floor {floor_text!r} is not a whole number") from None
    for name in ("install_date", "warranty_end"):
        value = get(name)
        if value is not None:
            try:
                date.fromisoformat(value)
            except ValueError:
                raise ValueError(f"{name} {value!r} is not a YYYY-MM-DD date") from None
    for name in ("building", "unit", "vendor", "model", "serial"):
        value = get(name)
        if value is not None and len(value) > 128:
            raise ValueError(f"{name} is longer than 128 characters")
    return LedgerRow(
        site_id=site, device_id=device, kind=kind, building=get("building"), unit=get("unit"),
        floor=floor, vendor=get("vendor"), model=get("model"), serial=get("serial"),
        install_date=get("install_date"), warranty_end=get("warranty_end"),
    )
