"""The dashboard's data API: minute summaries in and out, energy, the estate, alarms, evidence.

The demo runs without a time-series database, so the cloud keeps a bounded, downsampled
history of its own: gateways post per-device one-minute summaries (``POST /api/v1/telemetry``,
gateway token), and the dashboard reads them back (``GET /api/v1/devices/{id}/readings``,
``GET /api/v1/energy``). The authoritative telemetry stays in the TSDB; this is display data,
pruned after ``GATEHOUSE_TELEMETRY_RETENTION`` seconds (default 35 days, enough for a four-week
energy baseline).

Everything a user reads is scoped to the user's sites exactly as in the rest of the API:
another site's device, image or energy answers 404, as if it did not exist.
"""

from __future__ import annotations

import math
import os
import re
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from fastapi import APIRouter, HTTPException, Path, Query, Request, Response, status
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import delete, func, select, tuple_
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from cloud.api.deps import CtxDep, CurrentUser, GatewaySite, Principal, SessionDep, not_found
from cloud.api.devices import find_device
from cloud.api.report_photos import PHOTO_PREFIX
from cloud.context import AppContext
from cloud.models import ACTIVE_STATES, Device, EventRow, Site, WorkOrder
from cloud.telemetry_models import EvidenceImage, TelemetryMinute

router = APIRouter(prefix="/api/v1", tags=["dashboard data"])

RETENTION_ENV = "GATEHOUSE_TELEMETRY_RETENTION"
DEFAULT_RETENTION = 35 * 86400.0
MAX_EVIDENCE_BYTES = 4 * 1024 * 1024
MAX_POINTS = 1500
SPIKE_FACTOR = 1.5
"""An hour is flagged as a spike above this multiple of its baseline..."""
SPIKE_MIN_KWH = 0.5
"""...and at least this many kWh above it (small loads are noisy)."""
STALE_AFTER = 900.0
"""A device whose latest summary is older than this is shown as ``no_data``."""
_NAME_RE = re.compile(r"^[A-Za-z0-9_.-]+(/[A-Za-z0-9_.-]+)*$")
DeviceIdStr = Annotated[str, Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9_.:-]+$")]
Responses = dict[int | str, dict[str, Any]]


def retention_seconds() -> float:
    """The retention of minute summaries (``GATEHOUSE_TELEMETRY_RETENTION``, seconds)."""
    raw = os.environ.get(RETENTION_ENV)
    if raw is None or not raw.strip():
        return DEFAULT_RETENTION
    try:
        value = float(raw)
    except ValueError as exc:
        raise ValueError(f"{RETENTION_ENV} must be a number of seconds, got {raw!r}") from exc
    if not math.isfinite(value) or value < 3600:
        raise ValueError(f"{RETENTION_ENV} must be at least 3600 seconds, got {raw!r}")
    return value


# --------------------------------------------------------------------------- shapes


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SummaryItem(_In):
    """One device's minute: the mean and the max of each field over the minute.

    Numbers are range-checked in the handler, not here, so that a NaN or an infinity is one
    counted rejection of one item instead of a refused batch (and an error reply that cannot
    even be encoded as JSON).
    """

    device_id: DeviceIdStr
    kind: str = Field(min_length=1, max_length=32)
    building: str | None = Field(default=None, max_length=64)
    ts: float
    """Start of the minute (floored to a multiple of 60 on arrival)."""
    values: dict[str, float] = Field(max_length=64)
    max: dict[str, float] = Field(default_factory=dict, max_length=64)
    count: int = Field(default=1, ge=1, le=1_000_000)
    """Readings in the minute; weights the merge when a minute arrives in two parts."""


class SummaryBatch(_In):
    """``POST /api/v1/telemetry`` body."""

    site_id: str = Field(min_length=1, max_length=64)
    items: list[SummaryItem] = Field(max_length=5000)


class SummaryRejection(BaseModel):
    index: int
    device_id: str
    reason: str


class SummaryResult(BaseModel):
    stored: int
    rejected: list[SummaryRejection] = Field(default_factory=list)


class FieldInfo(BaseModel):
    unit: str
    min: float
    max: float
    warn_low: float | None = None
    warn_high: float | None = None
    limit: float | None = None


class ReadingPoint(BaseModel):
    ts: float
    mean: dict[str, float]
    max: dict[str, float]


class Readings(BaseModel):
    site_id: str
    device_id: str
    kind: str
    since: float
    until: float
    step: float
    """Seconds per point: 60, or more when the range held too many minutes."""
    fields: dict[str, FieldInfo]
    points: list[ReadingPoint]


class EnergyHour(BaseModel):
    ts: float
    kwh: float | None
    baseline_kwh: float | None
    baseline: Literal["week", "day", "history"] | None
    """How the baseline was found: same hour of previous weeks, of previous days, or the
    mean of all earlier hours (a young site); ``None``: no history yet."""
    coverage: float
    """Share of the hour's meter-minutes that reported (0..1)."""
    spike: bool


class BuildingEnergy(BaseModel):
    building: str
    meters: int
    kwh_total: float
    baseline_total: float | None
    hours: list[EnergyHour]


class SpikeEvent(BaseModel):
    ts: float
    device_id: str
    building: str | None
    work_order_id: int | None


class Energy(BaseModel):
    site_id: str
    since: float
    until: float
    buildings: list[BuildingEnergy]
    spike_events: list[SpikeEvent]


class EstateDevice(BaseModel):
    device_id: str
    kind: str
    unit: str | None
    floor: int | None
    state: Literal["ok", "fault", "alarm", "offline", "no_data"]
    open_orders: int
    worst_priority: str | None
    last_seen: float | None


class EstateFloor(BaseModel):
    floor: int | None
    devices: list[EstateDevice]


class EstateBuilding(BaseModel):
    building: str
    floors: list[EstateFloor]


class Estate(BaseModel):
    site_id: str
    name: str
    counts: dict[str, int]
    buildings: list[EstateBuilding]


class Alarm(BaseModel):
    event_id: str
    site_id: str
    device_id: str
    building: str | None
    type: str
    severity: str
    ts: float
    floor: int | None
    position: dict[str, Any]
    """Where on the facade: ``window_column``, ``x``/``y`` as the camera engineer sends them."""
    snapshot: str | None
    snapshot_url: str | None
    """Path of the evidence image (needs the bearer token, or ``?access_token=``)."""
    work_order_id: int | None
    work_order_state: str | None


class EvidenceStored(BaseModel):
    site_id: str
    name: str
    size: int
    url: str


# --------------------------------------------------------------------------- telemetry in


@router.post(
    "/telemetry", response_model=SummaryResult,
    responses={401: {"description": "missing, invalid or revoked gateway token"},
               403: {"description": "the batch names another site than the token's"}},
)
async def post_telemetry(batch: SummaryBatch, site_id: GatewaySite, ctx: CtxDep) -> SummaryResult:
    """Store minute summaries; a minute sent again (or in two parts) is merged, not doubled.

    Items for devices not in the site's ledger, or stamped more than a day ahead, are
    rejected with a reason; the rest of the batch is stored.
    """
    if batch.site_id != site_id:
        raise HTTPException(status.HTTP_403_FORBIDDEN, "the gateway token belongs to another site")
    return await run_in_threadpool(store_summaries, ctx, site_id, batch.items)


def store_summaries(ctx: AppContext, site_id: str, items: Sequence[SummaryItem]) -> SummaryResult:
    """Merge ``items`` into the table (one transaction; retried once on a concurrent insert)."""
    for attempt in (1, 2):
        try:
            with ctx.db.session() as session:
                result = _store(session, site_id, items, ctx.clock.now())
                session.commit()
                return result
        except IntegrityError:
            if attempt == 2:
                raise
    raise AssertionError("unreachable")


def _store(
    session: Session, site_id: str, items: Sequence[SummaryItem], now: float
) -> SummaryResult:
    known = set(session.scalars(select(Device.device_id).where(Device.site_id == site_id)))
    rejected: list[SummaryRejection] = []
    merged: dict[tuple[str, float], SummaryItem] = {}
    for index, item in enumerate(items):
        reason = None
        if item.device_id not in known:
            reason = "unknown device for this site"
        elif not (math.isfinite(item.ts) and 0 <= item.ts <= 1e11):
            reason = "bad timestamp"
        elif not all(math.isfinite(v) and abs(v) <= 1e15
                     for v in (*item.values.values(), *item.max.values())):
            reason = "value not a finite number"
        elif item.ts > now + 86400:
            reason = "timestamp more than a day in the future"
        elif not item.values:
            reason = "no values"
        if reason is not None:
            rejected.append(SummaryRejection(index=index, device_id=item.device_id, reason=reason))
            continue
        minute = math.floor(item.ts / 60.0) * 60.0
        key = (item.device_id, minute)
        merged[key] = _merge_items(merged[key], item) if key in merged else item
    if merged:
        existing = {
            (row.device_id, row.ts): row
            for row in session.scalars(
                select(TelemetryMinute).where(
                    TelemetryMinute.site_id == site_id,
                    tuple_(TelemetryMinute.device_id, TelemetryMinute.ts).in_(list(merged)),
                )
            )
        }
        for (device_id, minute), item in merged.items():
            row = existing.get((device_id, minute))
            if row is None:
                session.add(TelemetryMinute(
                    site_id=site_id, device_id=device_id, kind=item.kind,
                    building=item.building, ts=minute, hour=int(minute // 3600),
                    samples=item.count, mean=dict(item.values), max=_max_of(item),
                    power_kw=item.values.get("power_kw"), received_at=now,
                ))
            else:
                mean, mx, samples = _merge_row(row, item)
                row.mean, row.max, row.samples = mean, mx, samples
                row.power_kw = mean.get("power_kw")
                row.received_at = now
                row.building = item.building or row.building
    session.execute(
        delete(TelemetryMinute).where(
            TelemetryMinute.site_id == site_id, TelemetryMinute.ts < now - retention_seconds()
        )
    )
    return SummaryResult(stored=len(merged), rejected=rejected)


def _max_of(item: SummaryItem) -> dict[str, float]:
    out = dict(item.values)
    out.update(item.max)
    return out


def _weighted(
    a: dict[str, float], wa: int, b: dict[str, float], wb: int
) -> dict[str, float]:
    out: dict[str, float] = {}
    for name in set(a) | set(b):
        if name in a and name in b:
            out[name] = (a[name] * wa + b[name] * wb) / (wa + wb)
        else:
            out[name] = a[name] if name in a else b[name]
    return out


def _maxed(a: dict[str, float], b: dict[str, float]) -> dict[str, float]:
    return {n: max(a[n], b[n]) if n in a and n in b else a.get(n, b.get(n, 0.0))
            for n in set(a) | set(b)}


def _merge_items(a: SummaryItem, b: SummaryItem) -> SummaryItem:
    return a.model_copy(update={
        "values": _weighted(a.values, a.count, b.values, b.count),
        "max": _maxed(_max_of(a), _max_of(b)),
        "count": a.count + b.count,
        "building": b.building or a.building,
    })


def _merge_row(
    row: TelemetryMinute, item: SummaryItem
) -> tuple[dict[str, float], dict[str, float], int]:
    mean = _weighted(dict(row.mean), row.samples, item.values, item.count)
    return mean, _maxed(dict(row.max), _max_of(item)), row.samples + item.count


# --------------------------------------------------------------------------- readings out


@router.get(
    "/devices/{device_id}/readings", response_model=Readings,
    responses={404: {"description": "no such device on the caller's sites"},
               409: {"description": "ambiguous: give site_id"}},
)
def get_readings(
    device_id: Annotated[str, Path(min_length=1, max_length=128)],
    user: CurrentUser, session: SessionDep, ctx: CtxDep,
    site_id: Annotated[str | None, Query(max_length=64)] = None,
    since: Annotated[float | None, Query(ge=0, le=1e11)] = None,
    until: Annotated[float | None, Query(ge=0, le=1e11)] = None,
) -> Readings:
    """The device's minute summaries from ``since`` (default: 24 hours before ``until``) to
    ``until`` (default: now, or the end of the device's latest minute if that is later, as
    with a simulator running faster than the clock).

    At most 1,500 points: a longer range is averaged into wider steps (``step``).
    """
    dev = find_device(session, user, device_id, site_id)
    end = until if until is not None else _latest_or_now(
        session, ctx.clock.now(),
        (TelemetryMinute.site_id == dev.site_id, TelemetryMinute.device_id == dev.device_id))
    start = since if since is not None else end - 86400.0
    if start > end:
        raise HTTPException(422, "since is after until")
    rows = session.execute(
        select(TelemetryMinute.ts, TelemetryMinute.mean, TelemetryMinute.max).where(
            TelemetryMinute.site_id == dev.site_id, TelemetryMinute.device_id == dev.device_id,
            TelemetryMinute.ts >= start, TelemetryMinute.ts <= end,
        ).order_by(TelemetryMinute.ts)
    ).all()
    step = 60.0
    while (end - start) / step > MAX_POINTS:
        step *= 2
    points = _downsample([(r[0], r[1], r[2]) for r in rows], step)
    profile = ctx.policies.profiles.get(dev.kind)
    fields = {} if profile is None else {
        name: FieldInfo(unit=f.unit, min=f.min, max=f.max, warn_low=f.warn_low,
                        warn_high=f.warn_high, limit=f.limit)
        for name, f in profile.fields.items()
    }
    return Readings(site_id=dev.site_id, device_id=dev.device_id, kind=dev.kind, since=start,
                    until=end, step=step, fields=fields, points=points)


def _latest_or_now(session: Session, now: float, where: tuple[Any, ...]) -> float:
    latest = session.scalar(select(func.max(TelemetryMinute.ts)).where(
        *where, TelemetryMinute.ts <= now + 86400.0))
    return now if latest is None else max(now, float(latest) + 60.0)


def _downsample(
    rows: Sequence[tuple[float, dict[str, Any], dict[str, Any]]], step: float
) -> list[ReadingPoint]:
    if step <= 60.0:
        return [ReadingPoint(ts=ts, mean=dict(mean), max=dict(mx)) for ts, mean, mx in rows]
    buckets: dict[float, list[tuple[dict[str, Any], dict[str, Any]]]] = defaultdict(list)
    for ts, mean, mx in rows:
        buckets[math.floor(ts / step) * step].append((mean, mx))
    out: list[ReadingPoint] = []
    for ts in sorted(buckets):
        group = buckets[ts]
        names = {n for mean, _ in group for n in mean}
        out.append(ReadingPoint(
            ts=ts,
            mean={n: sum(m[n] for m, _ in group if n in m) / sum(1 for m, _ in group if n in m)
                  for n in names},
            max={n: max(x[n] for _, x in group if n in x)
                 for n in {n for _, x in group for n in x}},
        ))
    return out


# --------------------------------------------------------------------------- energy


@dataclass(frozen=True, slots=True)
class HourlyPower:
    """Mean power of one meter over one hour, and how many of its minutes reported."""

    building: str
    device_id: str
    hour: int
    mean_kw: float
    minutes: int


def energy_by_building(
    rows: Iterable[HourlyPower], first_hour: int, last_hour: int, weeks: int = 4
) -> list[BuildingEnergy]:
    """kWh per building per hour from ``first_hour`` to ``last_hour``, with a baseline.

    An hour's kWh is the sum over the building's meters of their mean power that hour
    (kW x 1 h), so a few missing minutes do not read as a drop. The baseline of hour ``h``
    is the mean of the same hour of the ``weeks`` previous weeks that have data; failing
    that, of the same hour of the previous seven days; failing that, the mean of every
    earlier hour in ``rows`` (a young site); else none.
    """
    kwh: dict[str, dict[int, float]] = defaultdict(dict)
    minutes: dict[str, dict[int, int]] = defaultdict(lambda: defaultdict(int))
    meters: dict[str, set[str]] = defaultdict(set)
    for r in rows:
        kwh[r.building][r.hour] = kwh[r.building].get(r.hour, 0.0) + r.mean_kw
        minutes[r.building][r.hour] += r.minutes
        meters[r.building].add(r.device_id)
    out: list[BuildingEnergy] = []
    for building in sorted(kwh):
        series = kwh[building]
        n_meters = len(meters[building])
        hours: list[EnergyHour] = []
        for h in range(first_hour, last_hour + 1):
            base, method = _baseline(series, h, weeks)
            value = series.get(h)
            spike = (value is not None and base is not None
                     and value > base * SPIKE_FACTOR and value - base >= SPIKE_MIN_KWH)
            hours.append(EnergyHour(
                ts=h * 3600.0, kwh=None if value is None else round(value, 4),
                baseline_kwh=None if base is None else round(base, 4), baseline=method,
                coverage=round(min(1.0, minutes[building].get(h, 0) / (60.0 * n_meters)), 3),
                spike=spike,
            ))
        shown = [x for x in hours if x.kwh is not None]
        bases = [x.baseline_kwh for x in shown if x.baseline_kwh is not None]
        out.append(BuildingEnergy(
            building=building, meters=n_meters,
            kwh_total=round(sum(x.kwh or 0.0 for x in shown), 3),
            baseline_total=round(sum(bases), 3) if bases and len(bases) == len(shown) else None,
            hours=hours,
        ))
    return out


def _baseline(
    series: dict[int, float], hour: int, weeks: int
) -> tuple[float | None, Literal["week", "day", "history"] | None]:
    same_week = [series[hour - 168 * k] for k in range(1, weeks + 1) if hour - 168 * k in series]
    if same_week:
        return sum(same_week) / len(same_week), "week"
    same_day = [series[hour - 24 * k] for k in range(1, 8) if hour - 24 * k in series]
    if same_day:
        return sum(same_day) / len(same_day), "day"
    earlier = [v for h, v in series.items() if h < hour]
    if earlier:
        return sum(earlier) / len(earlier), "history"
    return None, None


def _site_for(session: Session, user: Principal, site_id: str | None) -> Site:
    """The caller's site ``site_id``, or their only site when none is given; else 404/422."""
    if site_id is None:
        visible: list[Site] = list(session.scalars(user.scope(select(Site), Site.id).limit(2)))
        if len(visible) != 1:
            raise HTTPException(422, "give site_id")
        return visible[0]
    site = session.get(Site, site_id)
    if site is None or not user.can_see(site_id):
        raise not_found("site")
    return site


@router.get(
    "/energy", response_model=Energy,
    responses={404: {"description": "no such site for the caller"}},
)
def get_energy(
    user: CurrentUser, session: SessionDep, ctx: CtxDep,
    site_id: Annotated[str | None, Query(max_length=64)] = None,
    hours: Annotated[int, Query(ge=1, le=24 * 31)] = 24,
    weeks: Annotated[int, Query(ge=1, le=5)] = 4,
) -> Energy:
    """Consumption per building per hour over the last ``hours``, against a baseline.

    "Now" is the clock, or the end of the latest meter minute when that is later. Only the
    hours a baseline can use are read: the window and the week before it, and the window's
    hours in each earlier week (so the cost does not grow with the retention).
    """
    site = _site_for(session, user, site_id)
    now = _latest_or_now(session, ctx.clock.now(), (
        TelemetryMinute.site_id == site.id, TelemetryMinute.power_kw.is_not(None)))
    last_hour = int((now - 1.0) // 3600)
    first_hour = last_hour - hours + 1
    windows = [(first_hour - 168, last_hour)] + [
        (first_hour - 168 * k, last_hour - 168 * k) for k in range(2, weeks + 1)]
    rows: list[HourlyPower] = []
    for lo, hi in windows:
        stmt = (
            select(TelemetryMinute.building, TelemetryMinute.device_id, TelemetryMinute.hour,
                   func.avg(TelemetryMinute.power_kw), func.count(TelemetryMinute.power_kw))
            .where(TelemetryMinute.site_id == site.id, TelemetryMinute.power_kw.is_not(None),
                   TelemetryMinute.hour >= lo, TelemetryMinute.hour <= hi)
            .group_by(TelemetryMinute.building, TelemetryMinute.device_id, TelemetryMinute.hour)
        )
        rows.extend(
            HourlyPower(building=b or "?", device_id=d, hour=int(h), mean_kw=float(p),
                        minutes=int(n))
            for b, d, h, p, n in session.execute(stmt)
        )
    spikes = session.execute(
        select(EventRow.ts, EventRow.device_id, Device.building, EventRow.work_order_id)
        .join(Device, (Device.site_id == EventRow.site_id)
              & (Device.device_id == EventRow.device_id), isouter=True)
        .where(EventRow.site_id == site.id, EventRow.type == "meter.energy_spike",
               EventRow.state == "raised", EventRow.ts >= first_hour * 3600.0)
        .order_by(EventRow.ts)
    ).all()
    return Energy(
        site_id=site.id, since=first_hour * 3600.0, until=now,
        buildings=energy_by_building(rows, first_hour, last_hour, weeks),
        spike_events=[SpikeEvent(ts=t, device_id=d, building=b, work_order_id=w)
                      for t, d, b, w in spikes],
    )


# --------------------------------------------------------------------------- estate


_PRIORITY_ORDER = {"P1": 1, "P2": 2, "P3": 3, "P4": 4}


@router.get(
    "/estate", response_model=Estate,
    responses={404: {"description": "no such site for the caller"}},
)
def get_estate(
    user: CurrentUser, session: SessionDep, ctx: CtxDep,
    site_id: Annotated[str | None, Query(max_length=64)] = None,
) -> Estate:
    """The site's buildings, floors (top first) and devices, each with its state.

    A device is ``offline`` with an open ``*.offline`` order, ``alarm`` with an open P1
    order, ``fault`` with any other open event order, ``no_data`` when its summaries
    stopped arriving, else ``ok``. Preventive and reported orders do not colour a device.
    """
    site = _site_for(session, user, site_id)
    now = ctx.clock.now()
    devices = list(session.scalars(select(Device).where(Device.site_id == site.id)))
    orders: dict[str, list[WorkOrder]] = defaultdict(list)
    for o in session.scalars(select(WorkOrder).where(
        WorkOrder.site_id == site.id, WorkOrder.state.in_(ACTIVE_STATES),
        WorkOrder.device_id.is_not(None),
    )):
        orders[str(o.device_id)].append(o)
    last_seen = dict(session.execute(
        select(TelemetryMinute.device_id, func.max(TelemetryMinute.ts))
        .where(TelemetryMinute.site_id == site.id, TelemetryMinute.ts >= now - 86400.0)
        .group_by(TelemetryMinute.device_id)
    ).tuples().all())
    any_seen = bool(last_seen)
    buildings: dict[str, dict[int | None, list[EstateDevice]]] = defaultdict(
        lambda: defaultdict(list))
    counts: dict[str, int] = defaultdict(int)
    for dev in devices:
        mine = orders.get(dev.device_id, [])
        seen = last_seen.get(dev.device_id)
        state = _device_state(mine, seen, now, any_seen)
        counts[state] += 1
        worst = min((o.priority for o in mine), key=lambda p: _PRIORITY_ORDER.get(p, 9),
                    default=None)
        buildings[dev.building or "?"][dev.floor].append(EstateDevice(
            device_id=dev.device_id, kind=dev.kind, unit=dev.unit, floor=dev.floor, state=state,
            open_orders=len(mine), worst_priority=worst,
            last_seen=None if seen is None else float(seen),
        ))
    return Estate(
        site_id=site.id, name=site.name, counts=dict(counts),
        buildings=[
            EstateBuilding(building=b, floors=[
                EstateFloor(floor=f, devices=sorted(devs, key=lambda d: (d.kind, d.device_id)))
                for f, devs in sorted(floors.items(), key=lambda kv: _floor_key(kv[0]))
            ])
            for b, floors in sorted(buildings.items())
        ],
    )


def _floor_key(floor: int | None) -> tuple[int, int]:
    return (1, 0) if floor is None else (0, -floor)


def _device_state(
    orders: Sequence[WorkOrder], last_seen: float | None, now: float, any_seen: bool
) -> Literal["ok", "fault", "alarm", "offline", "no_data"]:
    faults = [o for o in orders if o.event_type is not None and o.state != "resolved"]
    if any(str(o.event_type).endswith(".offline") for o in faults):
        return "offline"
    if any(o.priority == "P1" for o in faults):
        return "alarm"
    if faults:
        return "fault"
    if any_seen and (last_seen is None or now - last_seen > STALE_AFTER):
        return "no_data"
    return "ok"


# --------------------------------------------------------------------------- alarms


DEFAULT_ALARM_TYPES = ("camera.object_thrown",)


@router.get("/alarms", response_model=list[Alarm])
def get_alarms(
    user: CurrentUser, session: SessionDep,
    site_id: Annotated[str | None, Query(max_length=64)] = None,
    types: Annotated[list[str] | None, Query(max_length=20)] = None,
    since: Annotated[float | None, Query(ge=0, le=1e11)] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> list[Alarm]:
    """Raised security alarms on the caller's sites, newest first (default: thrown objects).

    Each carries the floor and position from the event's evidence and, when the gateway
    uploaded it, the URL of the evidence image.
    """
    wanted = list(types or DEFAULT_ALARM_TYPES)
    stmt = user.scope(
        select(EventRow, Device.building, WorkOrder.state)
        .join(Device, (Device.site_id == EventRow.site_id)
              & (Device.device_id == EventRow.device_id), isouter=True)
        .join(WorkOrder, WorkOrder.id == EventRow.work_order_id, isouter=True)
        .where(EventRow.type.in_(wanted), EventRow.state == "raised"),
        EventRow.site_id,
    )
    if site_id is not None:
        stmt = stmt.where(EventRow.site_id == site_id)
    if since is not None:
        stmt = stmt.where(EventRow.ts >= since)
    rows = session.execute(stmt.order_by(EventRow.ts.desc()).limit(limit)).all()
    stored = _stored_names(session, [(e.site_id, _snapshot(e.evidence)) for e, _, _ in rows])
    out: list[Alarm] = []
    for ev, building, wo_state in rows:
        evidence = dict(ev.evidence or {})
        snap = _snapshot(evidence)
        floor = evidence.get("floor")
        out.append(Alarm(
            event_id=ev.event_id, site_id=ev.site_id, device_id=ev.device_id, building=building,
            type=ev.type, severity=ev.severity, ts=ev.ts,
            floor=int(floor) if isinstance(floor, int | float) else None,
            position={k: evidence[k] for k in ("window_column", "x", "y", "column", "position")
                      if evidence.get(k) is not None},
            snapshot=snap,
            snapshot_url=(f"/api/v1/evidence/{ev.site_id}/{snap}"
                          if snap and (ev.site_id, snap) in stored else None),
            work_order_id=ev.work_order_id, work_order_state=wo_state,
        ))
    return out


def _snapshot(evidence: dict[str, Any] | None) -> str | None:
    value = (evidence or {}).get("snapshot")
    return value if isinstance(value, str) and valid_evidence_name(value) else None


def _stored_names(
    session: Session, keys: Sequence[tuple[str, str | None]]
) -> set[tuple[str, str]]:
    wanted = [(s, n) for s, n in keys if n is not None]
    if not wanted:
        return set()
    found = session.execute(
        select(EvidenceImage.site_id, EvidenceImage.name)
        .where(tuple_(EvidenceImage.site_id, EvidenceImage.name).in_(wanted))
    ).tuples().all()
    return {(s, n) for s, n in found}


# --------------------------------------------------------------------------- evidence


def valid_evidence_name(name: str) -> bool:
    """A relative path of safe segments (``2026/11/cam-1_173.jpg``), no ``..``, 200 chars."""
    return (0 < len(name) <= 200 and _NAME_RE.match(name) is not None
            and all(part not in (".", "..") for part in name.split("/")))


@router.post(
    "/evidence", response_model=EvidenceStored, status_code=status.HTTP_201_CREATED,
    openapi_extra={"requestBody": {"required": True, "content": {
        "image/jpeg": {"schema": {"type": "string", "format": "binary"}}}}},
    responses={401: {"description": "missing, invalid or revoked gateway token"},
               413: {"description": "image larger than 4 MiB"},
               415: {"description": "not a JPEG"},
               422: {"description": "bad name, or a name reserved for report photos"}},
)
async def post_evidence(
    request: Request, site_id: GatewaySite, ctx: CtxDep,
    name: Annotated[str, Query(min_length=1, max_length=200)],
) -> EvidenceStored:
    """Store an evidence JPEG under ``name`` (the event's ``evidence.snapshot``).

    Uploading the same name again replaces the image, so a gateway may retry freely.
    Faces must already be blurred: the gateway does that before anything leaves the site.
    """
    if not valid_evidence_name(name):
        raise HTTPException(422,
                            "name must be a relative path of [A-Za-z0-9_.-] segments")
    if name.startswith(PHOTO_PREFIX):
        raise HTTPException(422, f"names starting with {PHOTO_PREFIX!r} are residents' "
                                 "report photos: a gateway cannot write them")
    length = request.headers.get("content-length", "")
    if length.isdigit() and int(length) > MAX_EVIDENCE_BYTES:
        raise HTTPException(413, "image larger than 4 MiB")
    body = bytearray()
    async for chunk in request.stream():
        body.extend(chunk)
        if len(body) > MAX_EVIDENCE_BYTES:
            raise HTTPException(413,
                                "image larger than 4 MiB")
    if not body.startswith(b"\xff\xd8\xff"):
        raise HTTPException(status.HTTP_415_UNSUPPORTED_MEDIA_TYPE, "the body is not a JPEG")
    await run_in_threadpool(_store_image, ctx, site_id, name, bytes(body))
    return EvidenceStored(site_id=site_id, name=name, size=len(body),
                          url=f"/api/v1/evidence/{site_id}/{name}")


def _store_image(ctx: AppContext, site_id: str, name: str, data: bytes) -> None:
    for attempt in (1, 2):
        try:
            with ctx.db.session() as session:
                row = session.scalars(select(EvidenceImage).where(
                    EvidenceImage.site_id == site_id, EvidenceImage.name == name)).first()
                if row is None:
                    row = EvidenceImage(site_id=site_id, name=name, content_type="image/jpeg",
                                        data=data, size=len(data), received_at=ctx.clock.now())
                    session.add(row)
                else:
                    row.data, row.size, row.received_at = data, len(data), ctx.clock.now()
                session.commit()
                return
        except IntegrityError:
            if attempt == 2:
                raise


@router.get(
    "/evidence/{site_id}/{name:path}",
    response_class=Response,
    responses={200: {"content": {"image/jpeg": {}}, "description": "the image"},
               404: {"description": "no such image on the caller's sites"}},
)
def get_evidence(
    site_id: Annotated[str, Path(min_length=1, max_length=64)],
    name: Annotated[str, Path(min_length=1, max_length=200)],
    user: CurrentUser, session: SessionDep,
) -> Response:
    """An evidence image (bearer token, or ``?access_token=`` for an ``<img>`` tag)."""
    if not user.can_see(site_id) or not valid_evidence_name(name):
        raise not_found("evidence image")
    row = session.scalars(select(EvidenceImage).where(
        EvidenceImage.site_id == site_id, EvidenceImage.name == name)).first()
    if row is None:
        raise not_found("evidence image")
    return Response(content=row.data, media_type=row.content_type,
                    headers={"Cache-Control": "private, max-age=3600"})
