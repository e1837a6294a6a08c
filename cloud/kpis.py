"""Key figures of the maintenance contract, computed from the work orders of a period.

Definitions (orders opened in [since, until], cancelled ones left out unless said):
- response time: acknowledged_at - opened_at; resolve time: resolved_at - opened_at - time on hold;
- SLA compliance: of the orders whose clock is decided (acknowledged/resolved, or breached), the
  share not breached;
- completion rate: resolved or closed / all non-cancelled;
- rework rate: orders reopened as rework / completed;
- MTTR: mean resolve time of device-fault orders; MTBF: device-hours in the period / faults
  (orders opened from events), per device and per kind;
- satisfaction: mean rating (1 to 5) of rated orders.
"""

from __future__ import annotations

import csv
import io
import statistics
from collections import defaultdict
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from cloud.models import Device, WorkOrder

_DONE = ("resolved", "closed")


def _percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    k = (len(ordered) - 1) * q
    lo, hi = int(k), min(int(k) + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


def _summary(values: list[float]) -> dict[str, float | int | None]:
    return {
        "count": len(values),
        "median": _percentile(values, 0.5),
        "p90": _percentile(values, 0.9),
        "mean": statistics.fmean(values) if values else None,
    }


def _resolve_time(o: WorkOrder) -> float | None:
    if o.resolved_at is None:
        return None
    return max(0.0, o.resolved_at - o.opened_at - o.held_seconds)


def compute(
    session: Session, sites: frozenset[str] | None, since: float, until: float,
    site_id: str | None = None,
) -> dict[str, Any]:
    """The KPI report of the caller's sites (or one of them) for the period."""
    stmt = select(WorkOrder).where(WorkOrder.opened_at >= since, WorkOrder.opened_at <= until)
    dev_stmt = select(Device.site_id, Device.device_id, Device.kind)
    if sites is not None:
        stmt = stmt.where(WorkOrder.site_id.in_(sorted(sites)))
        dev_stmt = dev_stmt.where(Device.site_id.in_(sorted(sites)))
    if site_id is not None:
        stmt = stmt.where(WorkOrder.site_id == site_id)
        dev_stmt = dev_stmt.where(Device.site_id == site_id)
    orders = [o for o in session.scalars(stmt) if o.state != "cancelled"]
    devices = [(str(r[0]), str(r[1]), str(r[2])) for r in session.execute(dev_stmt)]
    hours = max(0.0, until - since) / 3600.0

    response = [o.acknowledged_at - o.opened_at for o in orders if o.acknowledged_at is not None]
    resolve = [t for o in orders if (t := _resolve_time(o)) is not None]
    resp_decided = [o for o in orders if o.acknowledged_at is not None or o.response_breached]
    res_decided = [o for o in orders if o.resolved_at is not None or o.resolve_breached]
    done = [o for o in orders if o.state in _DONE]
    ratings = [o.rating for o in orders if o.rating is not None]

    faults: dict[tuple[str, str], list[WorkOrder]] = defaultdict(list)
    for o in orders:
        if o.source == "event" and o.device_id is not None:
            faults[(o.site_id, o.device_id)].append(o)
    per_device = []
    kind_faults: dict[str, int] = defaultdict(int)
    kind_devices: dict[str, int] = defaultdict(int)
    kind_repairs: dict[str, list[float]] = defaultdict(list)
    for site, device, kind in devices:
        mine = faults.get((site, device), [])
        repairs = [t for o in mine if (t := _resolve_time(o)) is not None]
        kind_faults[kind] += len(mine)
        kind_devices[kind] += 1
        kind_repairs[kind].extend(repairs)
        per_device.append({
            "site_id": site, "device_id": device, "kind": kind, "faults": len(mine),
            "mttr_hours": statistics.fmean(repairs) / 3600 if repairs else None,
            "mtbf_hours": hours / len(mine) if mine else None,
        })
    per_kind = {
        kind: {
            "devices": kind_devices[kind], "faults": kind_faults[kind],
            "mttr_hours": (statistics.fmean(kind_repairs[kind]) / 3600
                           if kind_repairs[kind] else None),
            "mtbf_hours": (hours * kind_devices[kind] / kind_faults[kind]
                           if kind_faults[kind] else None),
        }
        for kind in sorted(kind_devices)
    }
    return {
        "since": since, "until": until, "orders": len(orders),
        "response_time_s": _summary(response),
        "resolve_time_s": _summary(resolve),
        "sla_compliance": {
            "response": (sum(not o.response_breached for o in resp_decided) / len(resp_decided)
                         if resp_decided else None),
            "resolve": (sum(not o.resolve_breached for o in res_decided) / len(res_decided)
                        if res_decided else None),
        },
        "completion_rate": len(done) / len(orders) if orders else None,
        "rework_rate": sum(o.rework for o in done) / len(done) if done else None,
        "satisfaction": {
            "count": len(ratings), "mean": statistics.fmean(ratings) if ratings else None,
        },
        "per_kind": per_kind,
        "per_device": per_device,
        "by_priority": _by_priority(orders),
    }


def _by_priority(orders: list[WorkOrder]) -> dict[str, dict[str, int]]:
    out: dict[str, dict[str, int]] = defaultdict(lambda: {"orders": 0, "breached": 0})
    for o in orders:
        out[o.priority]["orders"] += 1
        out[o.priority]["breached"] += int(o.response_breached or o.resolve_breached)
    return dict(sorted(out.items()))


def per_device_csv(report: dict[str, Any]) -> str:
    out = io.StringIO()
    cols = ["site_id", "device_id", "kind", "faults", "mttr_hours", "mtbf_hours"]
    writer = csv.DictWriter(out, fieldnames=cols, lineterminator="\n")
    writer.writeheader()
    for row in report["per_device"]:
        writer.writerow({c: "" if row[c] is None else row[c] for c in cols})
    return out.getvalue()

