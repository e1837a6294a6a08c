"""Telemetry output: every valid reading into an InfluxDB-compatible time-series database.

The writer turns readings into InfluxDB line protocol and posts them to ``/api/v2/write``
(gzip, millisecond precision) with httpx (:mod:`edge.outputs.tsdb_http`, the default) or
through influxdb-client (``tsdb.client: influxdb-client``); the requests are the same. The
same bytes work with InfluxDB 2, InfluxDB 3 and VictoriaMetrics, which stores
``{measurement}_{field}`` series with the tags as labels.

The schema it promises (the dashboards in ``dashboards/`` rely on it):

* one measurement per device kind (``elevator``, ``water_pump``, ``smart_meter``,
  ``access_gate``, ``camera``);
* tags ``site``, ``building`` and ``device``, plus ``floor`` where the site file knows the
  device's floor and the kind has no field of that name (an elevator's floor is a field);
* fields are the profile's fields only: ``int`` fields as integers (``3i``), ``bool`` fields as
  booleans (VictoriaMetrics stores 1/0), the rest as floats; a value that is not finite or a
  field the profile does not declare is dropped and counted;
* :meth:`InfluxTelemetryWriter.write_events` adds the ``edge_events`` measurement: one point
  per raised or cleared event with tags ``site, building, device, kind, type, severity,
  state`` and fields ``count`` (always 1), ``score`` and ``threshold`` (when the evidence has
  them) and ``forecast_hours`` (when the event carries a forecast).

Failure contract (the runner owns buffering and retry, as in Telegraf): a write either
stores the readings, or raises :class:`TsdbUnavailable` naming the readings that were not
stored so that the runner can spool them into the outbox's telemetry lane and replay them
later. Points the database refuses as malformed (HTTP 400/422) are never raised for: they
would poison the spool; they are counted and logged instead. Bad input (unknown kind,
unknown field, non-finite values, bad timestamps) is counted, never a crash.
"""

from __future__ import annotations

import gzip
import logging
import math
import os
import threading
import urllib.parse
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, Protocol

from device_profiles.messages import Event, Reading
from device_profiles.schema import DeviceProfile
from device_profiles.site import SiteConfig, TsdbConfig

log = logging.getLogger(__name__)

EVENTS_MEASUREMENT = "edge_events"
"""Measurement of the edge's raised/cleared events (see the module docstring)."""
TOKEN_ENV = "GATEHOUSE_TSDB_TOKEN"
"""Environment variable read for the database token when the site file names none."""


class TsdbConfigError(ValueError):
    """The ``tsdb`` section of the site file cannot work (bad URL, unreadable token file)."""


class TsdbWriteError(RuntimeError):
    """A write to the telemetry database failed."""


class TsdbUnavailable(TsdbWriteError):
    """The database could not be reached or refused service; nothing in ``unwritten`` is stored.

    ``unwritten`` holds the readings (or events) of the chunks that failed, in order; the
    chunks before them were stored. Spooling ``unwritten`` and replaying it later loses
    nothing and duplicates nothing.
    """

    def __init__(self, message: str, unwritten: Sequence[Any] = ()) -> None:
        super().__init__(message)
        self.unwritten: tuple[Any, ...] = tuple(unwritten)


class TsdbRejected(TsdbWriteError):
    """The database refused a body as malformed (HTTP 400/422): resending cannot help."""


class TsdbBodyTooLarge(TsdbRejected):
    """The database refused a body as too large (HTTP 413); the writer splits and resends."""


class LineSink(Protocol):
    """Where line-protocol bodies go. :class:`InfluxLineSink` posts them over HTTP.

    ``send`` stores the body or raises :class:`TsdbUnavailable` (retry later) or
    :class:`TsdbRejected` (never retry); ``lines`` is the number of lines in ``body``.
    """

    def send(self, body: bytes, lines: int) -> None: ...

    def close(self) -> None: ...


class InfluxLineSink:
    """Posts line protocol through influxdb-client's write service (gzip, ms precision).

    The body is compressed here at ``gzip_level``. The default, 1, is chosen for a small
    gateway: measured on simulated telemetry, level 9 (the client's own) takes 5.5 times the
    CPU of level 1 for a body about a third smaller (6x and 10x smaller than plain text); use
    a higher level when the link to the database, not the CPU, is the bottleneck, and 0 to
    send plain text.

    A short urllib3 retry (``retries`` attempts with exponential backoff from ``backoff_s``,
    on connection errors and HTTP 429/5xx) rides out blips; a longer outage raises
    :class:`TsdbUnavailable` at once so the runner can spool instead of blocking.
    """

    def __init__(
        self,
        config: TsdbConfig,
        *,
        timeout_s: float = 10.0,
        retries: int = 2,
        backoff_s: float = 0.2,
        gzip_level: int = 1,
        token: str | None = None,
    ) -> None:
        check_sink_options(config, timeout_s=timeout_s, retries=retries, gzip_level=gzip_level)
        from influxdb_client.client.influxdb_client import InfluxDBClient
        from influxdb_client.service.write_service import WriteService
        from urllib3.util import Retry

        retry = Retry(
            total=retries,
            connect=retries,
            read=0,
            status=retries,
            backoff_factor=backoff_s,
            status_forcelist=(429, 500, 502, 503, 504),
            allowed_methods=frozenset({"POST"}),
            raise_on_status=True,
        )
        self._config = config
        self._gzip_level = gzip_level
        self._client = InfluxDBClient(
            url=config.url,
            token=(token if token is not None else resolve_token(config)) or "",
            org=config.org,
            enable_gzip=False,
            timeout=int(timeout_s * 1000),
            retries=retry,
        )
        self._service = WriteService(self._client.api_client)  # type: ignore[no-untyped-call]

    def send(self, body: bytes, lines: int) -> None:
        from influxdb_client.rest import ApiException
        from urllib3.exceptions import HTTPError

        encoding = "identity"
        if self._gzip_level:
            body = gzip.compress(body, compresslevel=self._gzip_level)
            encoding = "gzip"
        try:
            self._service.post_write(  # type: ignore[no-untyped-call]
                org=self._config.org,
                bucket=self._config.bucket,
                body=body,
                precision="ms",
                content_encoding=encoding,
                content_type="text/plain; charset=utf-8",
            )
        except ApiException as exc:
            status = int(exc.status or 0)
            detail = _api_detail(exc)
            if status in (400, 422):
                raise TsdbRejected(
                    f"{self._config.url} refused {lines} lines (HTTP {status}): {detail}"
                ) from exc
            if status == 413:
                raise TsdbBodyTooLarge(
                    f"{self._config.url}: body of {lines} lines too large (HTTP 413)"
                ) from exc
            raise TsdbUnavailable(
                f"{self._config.url} answered HTTP {status} to a write: {detail}"
            ) from exc
        except (HTTPError, OSError) as exc:
            raise TsdbUnavailable(f"cannot write to {self._config.url}: {exc}") from exc

    def close(self) -> None:
        self._client.close()  # type: ignore[no-untyped-call]


def default_sink(
    config: TsdbConfig, *, timeout_s: float, retries: int, gzip_level: int
) -> LineSink:
    """The sink ``tsdb.client`` names: httpx (default) or influxdb-client."""
    if config.client == "influxdb-client":
        return InfluxLineSink(config, timeout_s=timeout_s, retries=retries, gzip_level=gzip_level)
    from edge.outputs.tsdb_http import HttpLineSink

    return HttpLineSink(config, timeout_s=timeout_s, retries=retries, gzip_level=gzip_level)


def resolve_token(config: TsdbConfig) -> str | None:
    """The database token: ``token_file`` (preferred), ``token``, or ``$GATEHOUSE_TSDB_TOKEN``.

    An unreadable ``token_file`` raises :class:`TsdbConfigError` naming it.
    """
    if config.token_file:
        try:
            return Path(config.token_file).read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise TsdbConfigError(
                f"tsdb.token_file {config.token_file}: {exc.strerror or exc}"
            ) from exc
    return config.token or os.environ.get(TOKEN_ENV)


def check_sink_options(
    config: TsdbConfig, *, timeout_s: float, retries: int, gzip_level: int
) -> None:
    """What every line sink refuses at construction: a bad URL, timeout, retries or level."""
    check_url(config.url)
    if not 0 <= gzip_level <= 9:
        raise ValueError(f"gzip_level must be 0 (off) to 9, got {gzip_level}")
    if timeout_s <= 0:
        raise ValueError(f"timeout_s must be positive, got {timeout_s}")
    if retries < 0:
        raise ValueError(f"retries must not be negative, got {retries}")


def check_url(url: str) -> str:
    """``url`` if it is an ``http(s)://host[:port]`` address, else :class:`TsdbConfigError`."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise TsdbConfigError(f"tsdb.url {url!r}: expected http://host:port or https://host:port")
    try:
        parts.port  # noqa: B018  (raises on a port that is not a number)
    except ValueError as exc:
        raise TsdbConfigError(f"tsdb.url {url!r}: {exc}") from exc
    return url


def _api_detail(exc: Any) -> str:
    body = getattr(exc, "body", None)
    if isinstance(body, bytes):
        body = body.decode("utf-8", "replace")
    return str(body or getattr(exc, "reason", "") or "no detail")[:300]


def escape_measurement(name: str) -> str:
    """Escape a measurement name for line protocol (commas and spaces)."""
    return _clean(name).replace("\\", "\\\\").replace(",", "\\,").replace(" ", "\\ ")


def escape_key(text: str) -> str:
    """Escape a tag key, tag value or field key (commas, equals signs and spaces)."""
    return (
        _clean(text)
        .replace("\\", "\\\\")
        .replace(",", "\\,")
        .replace("=", "\\=")
        .replace(" ", "\\ ")
    )


def _clean(text: str) -> str:
    return text.replace("\n", " ").replace("\r", " ")


def tag_set(tags: Mapping[str, str | None]) -> str:
    """``,k=v,...`` sorted by key (as InfluxDB prefers); empty or missing values are left out."""
    return "".join(
        f",{escape_key(k)}={escape_key(v)}" for k, v in sorted(tags.items()) if v not in (None, "")
    )


_FLOAT, _INT, _BOOL = 0, 1, 2
_TYPE_CODES = {"float": _FLOAT, "int": _INT, "bool": _BOOL}
_TEMPLATES_MAX = 4096
"""Field templates kept (one per kind and order of field names; a device sends one order)."""


@dataclass(frozen=True, slots=True)
class _FieldsTemplate:
    """The field set of one line for a kind and an order of field names, as a %-template.

    ``text`` is ``key=%r,key=%di,key=%s,...``: floats formatted by ``repr`` (the shortest
    text that reads back as the same double), ints rounded, bools as ``true``/``false``.
    """

    text: str
    ints: tuple[int, ...]
    bools: tuple[int, ...]
    codes: tuple[int, ...]
    accepted: set[tuple[type, ...]] = field(default_factory=set)
    """Types of the values (in order) known to fit the template: floats where the field
    is a float, float, int or bool where it is an int or a bool (learnt as they come)."""

    def fits(self, types: tuple[type, ...]) -> bool:
        """Whether values of these types format as :meth:`encode_reading` would."""
        if types in self.accepted:
            return True
        ok = all(
            t is float if code == _FLOAT else t in (float, int, bool)
            for t, code in zip(types, self.codes, strict=True)
        )
        if ok and len(self.accepted) < 64:
            self.accepted.add(types)
        return ok


@dataclass(frozen=True, slots=True)
class _DeviceTags:
    building: str | None
    floor: int | None


_MISSING = _FieldsTemplate("", (), (), ())
"""Sentinel: no template built yet for a kind and order of names."""


class InfluxTelemetryWriter:
    """The telemetry output stage: readings (and events) to an InfluxDB-compatible database.

    Each :meth:`write` call posts its readings in chunks of ``config.batch_size`` lines, one
    request per chunk, and returns once they are stored. It keeps nothing between calls, so a
    crash loses nothing the runner has not spooled; the runner's burst cadence, not a timer
    here, decides how often requests go out (``config.flush_interval`` is not used).
    Safe to call from several threads.
    """

    def __init__(
        self,
        config: TsdbConfig,
        site: SiteConfig,
        profiles: Mapping[str, DeviceProfile],
        *,
        sink: LineSink | None = None,
        timeout_s: float = 10.0,
        retries: int = 2,
        gzip_level: int = 1,
    ) -> None:
        self._config = config
        self._devices = {
            d.id: _DeviceTags(building=d.building, floor=d.floor) for d in site.all_devices()
        }
        self._fields: dict[str, dict[str, tuple[str, int]]] = {
            kind: {
                name: (escape_key(name) + "=", _TYPE_CODES[spec.type])
                for name, spec in profile.fields.items()
            }
            for kind, profile in profiles.items()
        }
        self._measurements = {kind: escape_measurement(kind) for kind in profiles}
        self._prefixes: dict[tuple[str, str, str], str] = {}
        self._templates: dict[tuple[str, tuple[str, ...]], _FieldsTemplate | None] = {}
        self._sink: LineSink = (
            sink if sink is not None
            else default_sink(config, timeout_s=timeout_s, retries=retries, gzip_level=gzip_level)
        )
        self._lock = threading.Lock()
        self._counts: Counter[str] = Counter()

    @classmethod
    def from_site(
        cls, site: SiteConfig, profiles: Mapping[str, DeviceProfile]
    ) -> InfluxTelemetryWriter | None:
        """The writer the site file asks for, or ``None`` when it has no ``tsdb`` section."""
        if site.tsdb is None:
            return None
        return cls(site.tsdb, site, profiles)

    def write(self, readings: Sequence[Reading]) -> None:
        """Store ``readings``; raise :class:`TsdbUnavailable` with the ones not stored."""
        lines, kept = self.encode_readings(readings)
        self._send_chunks(lines, kept, "readings")

    def encode_readings(self, readings: Sequence[Reading]) -> tuple[list[str], list[Reading]]:
        """The lines of ``readings`` and the readings they stand for (the others are counted).

        The same lines as :meth:`encode_reading` one by one, faster: a reading whose values
        are all finite numbers is one %-format of its device's cached measurement-and-tags
        prefix and its kind's cached field template (floats where the field is a float;
        ints or bools may stand for int and bool fields); anything else (a value not finite,
        of another type, a field the kind does not have) takes the careful path.
        """
        lines: list[str] = []
        kept: list[Reading] = []
        templates = self._templates
        prefixes = self._prefixes
        for reading in readings:
            values = reading.values
            ts = reading.ts
            template = templates.get((reading.kind, tuple(values)), _MISSING)
            if template is _MISSING:
                template = self._template(reading.kind, tuple(values))
            if template is not None and 0.0 <= ts < math.inf:
                args = tuple(values.values())
                total = math.nan
                if template.fits(tuple(map(type, args))):
                    try:  # noqa: SIM105 (a try costs nothing here, a context manager does)
                        total = sum(args)
                    except OverflowError:  # an integer too large for a float
                        pass
                if total - total == 0:  # every value finite
                    prefix = prefixes.get((reading.site_id, reading.kind, reading.device_id))
                    if prefix is None:
                        prefix = self._prefix(reading)
                    fields: tuple[object, ...] = args
                    if template.ints or template.bools:
                        mixed: list[object] = list(args)
                        for i in template.ints:
                            mixed[i] = round(args[i])
                        for i in template.bools:
                            mixed[i] = "true" if args[i] else "false"
                        fields = tuple(mixed)
                    lines.append(f"{prefix} {template.text % fields} {round(ts * 1000)}")
                    kept.append(reading)
                    continue
            line = self.encode_reading(reading)
            if line is not None:
                lines.append(line)
                kept.append(reading)
        return lines, kept

    def _template(self, kind: str, names: tuple[str, ...]) -> _FieldsTemplate | None:
        """The field template of ``kind`` for values named ``names`` in this order, or
        ``None`` when a name is not one of the kind's fields (the careful path counts it)."""
        fields = self._fields.get(kind)
        template: _FieldsTemplate | None = None
        if fields is not None and names and all(name in fields for name in names):
            parts: list[str] = []
            ints: list[int] = []
            bools: list[int] = []
            for i, name in enumerate(names):
                key, code = fields[name]
                key = key.replace("%", "%%")
                if code == _FLOAT:
                    parts.append(key + "%r")
                elif code == _INT:
                    parts.append(key + "%di")
                    ints.append(i)
                else:
                    parts.append(key + "%s")
                    bools.append(i)
            codes = tuple(fields[name][1] for name in names)
            template = _FieldsTemplate(",".join(parts), tuple(ints), tuple(bools), codes)
        if len(self._templates) < _TEMPLATES_MAX:
            self._templates[(kind, names)] = template
        return template

    def write_events(self, events: Sequence[Event]) -> None:
        """Store events in ``edge_events``; raise :class:`TsdbUnavailable` with those not stored."""
        lines = [self.encode_event(e) for e in events]
        self._send_chunks(lines, list(events), "events")

    def encode_reading(self, reading: Reading) -> str | None:
        """One line of protocol for ``reading``, or ``None`` (counted) when nothing is valid."""
        fields = self._fields.get(reading.kind)
        if fields is None:
            self._count("rejected_unknown_kind")
            return None
        if not (math.isfinite(reading.ts) and reading.ts >= 0):
            self._count("rejected_bad_timestamp")
            return None
        parts: list[str] = []
        unknown = not_finite = 0
        for name, value in reading.values.items():
            spec = fields.get(name)
            if spec is None:
                unknown += 1
                continue
            try:
                finite = value - value == 0  # False for NaN and +-inf
            except TypeError:
                finite = False
            if not finite:
                not_finite += 1
                continue
            key, code = spec
            if code == _FLOAT:
                parts.append(key + repr(value if type(value) is float else float(value)))
            elif code == _INT:
                parts.append(f"{key}{round(value)}i")
            else:
                parts.append(key + ("true" if value else "false"))
        if unknown:
            self._count("fields_dropped_unknown", unknown)
        if not_finite:
            self._count("fields_dropped_not_finite", not_finite)
        if not parts:
            self._count("rejected_no_fields")
            return None
        return f"{self._prefix(reading)} {','.join(parts)} {round(reading.ts * 1000)}"

    def encode_event(self, event: Event) -> str:
        """One line of protocol for ``event`` in the ``edge_events`` measurement."""
        device = self._devices.get(event.device_id)
        tags = tag_set(
            {
                "site": event.site_id,
                "building": device.building if device else None,
                "device": event.device_id,
                "kind": event.kind,
                "type": event.type,
                "severity": event.severity,
                "state": event.state,
            }
        )
        fields = ["count=1i"]
        for name in ("score", "threshold"):
            value = event.evidence.get(name)
            if (
                isinstance(value, int | float)
                and not isinstance(value, bool)
                and math.isfinite(value)
            ):
                fields.append(f"{name}={float(value)!r}")
        if event.forecast is not None and math.isfinite(event.forecast.hours_to_limit):
            fields.append(f"forecast_hours={float(event.forecast.hours_to_limit)!r}")
        return f"{EVENTS_MEASUREMENT}{tags} {','.join(fields)} {round(event.ts * 1000)}"

    def stats(self) -> dict[str, int]:
        """Counters since start: ``lines_written``, ``requests``, rejections and drops by reason."""
        with self._lock:
            return dict(self._counts)

    def close(self) -> None:
        """Release the HTTP connections."""
        self._sink.close()

    def __enter__(self) -> InfluxTelemetryWriter:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _prefix(self, reading: Reading) -> str:
        key = (reading.site_id, reading.kind, reading.device_id)
        prefix = self._prefixes.get(key)
        if prefix is not None:
            return prefix
        device = self._devices.get(reading.device_id)
        floor: str | None = None
        if (
            device is not None
            and device.floor is not None
            and "floor" not in self._fields.get(reading.kind, {})
        ):
            floor = str(device.floor)
        prefix = self._measurements[reading.kind] + tag_set(
            {
                "site": reading.site_id,
                "building": device.building if device else None,
                "device": reading.device_id,
                "floor": floor,
            }
        )
        if device is None:
            self._count("unknown_device")
        else:
            self._prefixes[key] = prefix
        return prefix

    def _send_chunks(self, lines: list[str], items: Sequence[Any], what: str) -> None:
        size = self._config.batch_size
        for start in range(0, len(lines), size):
            try:
                self._send(lines[start : start + size], what)
            except TsdbUnavailable as exc:
                self._count("write_failures")
                raise TsdbUnavailable(str(exc), items[start:]) from exc

    def _send(self, chunk: list[str], what: str) -> None:
        """Send one chunk; halve it on HTTP 413; count and drop what the database refuses."""
        try:
            self._sink.send("\n".join(chunk).encode("utf-8"), len(chunk))
        except TsdbBodyTooLarge:
            if len(chunk) > 1:
                half = len(chunk) // 2
                self._send(chunk[:half], what)
                self._send(chunk[half:], what)
                return
            self._count("lines_rejected_by_database")
            log.warning("telemetry database refused one %s line as too large", what)
            return
        except TsdbRejected as exc:
            self._count("lines_rejected_by_database", len(chunk))
            log.warning("telemetry database refused %d %s: %s", len(chunk), what, exc)
            return
        self._count("requests")
        self._count("lines_written", len(chunk))

    def _count(self, name: str, n: int = 1) -> None:
        with self._lock:
            self._counts[name] += n
