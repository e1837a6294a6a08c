"""Validation of raw MQTT messages against the site and the device profiles.

:meth:`Validator.validate` turns ``(topic, payload bytes)`` into exactly one of a
:class:`~device_profiles.messages.Reading` (telemetry), a :class:`StatusChange`, a
:class:`NativeEvent`, or a :class:`Rejection` with a reason from the fixed :class:`Reason`
enum. It never raises on bad input: hostile payloads are data, not errors. Past this stage
no raw dict travels through the pipeline.

It runs once per message on the agent's hot path, so the common case is precomputed: every
valid topic of the site maps straight to its device, profile and channel (no split, no
parse), each kind has a table ``field -> (type, min, max)``, the JSON is parsed by orjson
(the standard library's parser is the fallback and the judge of everything orjson does not
take as is), and a number within its field's range is accepted with one type test and one
comparison. Anything off that path goes through the original step-by-step checks, so a bad
message gets exactly the same reason and detail as before.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Final, NamedTuple

import orjson

from device_profiles.messages import EventState, Reading, telemetry_topic
from device_profiles.schema import DeviceProfile, FieldSpec
from device_profiles.site import SiteConfig
from edge.topics import parse_topic

DEFAULT_MAX_PAYLOAD = 64 * 1024
"""Largest payload accepted (bytes); a device message is a few hundred bytes."""
META_KEYS = frozenset({"ts", "site_id", "kind", "device_id", "seq"})
"""Keys a telemetry object may carry besides the profile's fields."""
_MAX_TS = 4102444800.0
"""2100-01-01: later timestamps are garbage, not the future."""


class Reason(StrEnum):
    """Why a message was rejected. The set is fixed so rejects can be counted by reason."""

    BAD_TOPIC = "bad_topic"
    UNKNOWN_SITE = "unknown_site"
    UNKNOWN_DEVICE = "unknown_device"
    KIND_MISMATCH = "kind_mismatch"
    FOREIGN_PREFIX = "foreign_prefix"
    TOO_LARGE = "too_large"
    BAD_JSON = "bad_json"
    NOT_AN_OBJECT = "not_an_object"
    MISSING_TS = "missing_ts"
    BAD_TS = "bad_ts"
    MISSING_FIELD = "missing_field"
    UNKNOWN_FIELD = "unknown_field"
    WRONG_TYPE = "wrong_type"
    OUT_OF_VALID_RANGE = "out_of_valid_range"
    BAD_STATUS = "bad_status"
    UNKNOWN_NATIVE_EVENT = "unknown_native_event"
    CLOUD_REJECTED = "cloud_rejected"
    """Not a validation reason: an event the cloud refused (kept in the dead letters too)."""


@dataclass(frozen=True, slots=True)
class Rejection:
    """A message that failed validation: the reason (counted) and a human detail."""

    reason: Reason
    detail: str


@dataclass(frozen=True, slots=True)
class StatusChange:
    """A device's ``status`` topic said online or offline (retained; also its last will)."""

    site_id: str
    kind: str
    device_id: str
    ts: float
    online: bool


@dataclass(frozen=True, slots=True)
class NativeEvent:
    """A device-native event (``.../event``) mapped by the profile to an event type."""

    site_id: str
    kind: str
    device_id: str
    ts: float
    native_type: str
    event_type: str
    state: EventState
    evidence: dict[str, Any] = field(default_factory=dict)


Validated = Reading | StatusChange | NativeEvent | Rejection


class _Invalid(Exception):
    def __init__(self, reason: Reason, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


def _reject_constant(name: str) -> float:
    raise ValueError(f"{name} is not valid JSON")


_DIGIT_MAP = bytes(0x30 if 0x30 <= b <= 0x39 else 0x20 for b in range(256))
_LONG_DIGITS = b"0" * 19
"""orjson turns integers beyond 64 bits into floats where the standard library keeps an
``int``; a payload with 19 digits in a row (found as 19 zeros once every digit is mapped to
``0`` and everything else to a space: faster than a regular expression) is left to the
standard library."""


def loads_json(payload: bytes) -> Any:
    """``json.loads(payload, parse_constant=<reject>)``, the same value, faster.

    orjson parses what it can; whatever it refuses (invalid JSON, a UTF-8 byte order mark,
    UTF-16, lone surrogates, numbers too large for a double, deep nesting) and any payload
    that may hold an integer beyond 64 bits goes to the standard library, whose answer, value
    or error, is the one returned or raised.
    """
    if _LONG_DIGITS not in payload.translate(_DIGIT_MAP):
        try:
            return orjson.loads(payload)
        except orjson.JSONDecodeError:
            pass
    return json.loads(payload, parse_constant=_reject_constant)


_FLOAT: Final = 0
_INT: Final = 1
_BOOL: Final = 2
_TYPE_CODES: Final = {"float": _FLOAT, "int": _INT, "bool": _BOOL}
_EXACT_INT: Final = 2**53
"""Integers below this magnitude convert to float exactly (and never overflow)."""

_FieldCheck = tuple[int, float, float, FieldSpec]
"""(type code, min, max, spec); min/max are +inf/-inf when a bound is not finite, so that
the fast comparison fails and the full check decides."""


@dataclass(frozen=True, slots=True)
class _KindChecks:
    """A kind's telemetry checks, precomputed: key -> check (``None``: a meta key, skipped)."""

    fields: dict[str, _FieldCheck | None]
    required: tuple[str, ...]

    @classmethod
    def of(cls, profile: DeviceProfile) -> _KindChecks:
        table: dict[str, _FieldCheck | None] = {}
        for name, spec in profile.fields.items():
            finite = math.isfinite(spec.min) and math.isfinite(spec.max)
            lo, hi = (spec.min, spec.max) if finite else (math.inf, -math.inf)
            table[name] = (_TYPE_CODES[spec.type], lo, hi, spec)
        for key in META_KEYS:
            table[key] = None
        return cls(fields=table, required=tuple(profile.required))


class _Device(NamedTuple):
    """What validation needs of a device (the site's ``DeviceConfig`` models are larger and
    not kept here)."""

    id: str
    kind: str


@dataclass(frozen=True, slots=True)
class _Route:
    """A valid telemetry topic of the site: its device, profile and the kind's checks."""

    device: _Device
    profile: DeviceProfile
    checks: _KindChecks


class Validator:
    """Checks messages of one site against its device list and the kinds' profiles.

    ``clock`` stamps status messages that carry no timestamp (a bare ``online``).

    Telemetry topics are looked up in a table built once (nearly every message is
    telemetry); status and event messages, a few a day per device, take the general path,
    which parses the topic. The table holds one entry per device, shared objects otherwise:
    on a 5,000-device estate every per-device object kept here is megabytes of the agent's
    memory.
    """

    def __init__(
        self,
        site: SiteConfig,
        profiles: Mapping[str, DeviceProfile],
        *,
        max_payload: int = DEFAULT_MAX_PAYLOAD,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if max_payload < 64:
            raise ValueError(f"max_payload must be at least 64 bytes, got {max_payload}")
        devices = site.all_devices()
        missing = sorted({d.kind for d in devices} - set(profiles))
        if missing:
            raise ValueError(f"no profile for kind(s): {', '.join(missing)}")
        self._site_id = site.site_id
        self._devices: dict[str, _Device] = {d.id: _Device(d.id, d.kind) for d in devices}
        self._profiles = dict(profiles)
        self._max_payload = max_payload
        self._clock = clock
        checks = {kind: _KindChecks.of(profile) for kind, profile in self._profiles.items()}
        self._routes: dict[str, _Route] = {}
        for device in self._devices.values():
            topic = telemetry_topic(site.site_id, device.kind, device.id)
            parts = parse_topic(topic)
            if parts is None or (parts.site_id, parts.kind, parts.device_id) != (
                site.site_id, device.kind, device.id
            ):
                continue  # an id the topic grammar cannot carry: the full path decides
            self._routes[topic] = _Route(
                device=device, profile=self._profiles[device.kind], checks=checks[device.kind]
            )

    def validate(self, topic: str, payload: bytes) -> Validated:
        """Classify one message; bad input yields a :class:`Rejection`, never an exception."""
        try:
            route = self._routes.get(topic)
            if route is None:
                return self._validate(topic, payload)
            return self._validate_route(route, payload)
        except _Invalid as exc:
            return Rejection(exc.reason, exc.detail)

    def _validate_route(self, route: _Route, payload: bytes) -> Validated:
        """:meth:`_validate` for a telemetry topic of one of the site's devices."""
        if len(payload) > self._max_payload:
            raise _Invalid(Reason.TOO_LARGE, f"{len(payload)} bytes > {self._max_payload}")
        device = route.device
        try:
            obj = loads_json(payload)
        except (ValueError, RecursionError) as exc:
            raise _Invalid(Reason.BAD_JSON, str(exc)[:200]) from None
        if type(obj) is not dict:
            raise _Invalid(Reason.NOT_AN_OBJECT, f"JSON {type(obj).__name__}, expected object")
        if "device_id" in obj or "site_id" in obj or "kind" in obj:
            self._check_identity(device, obj)  # raises if one names another device
        ts = obj.get("ts")
        if type(ts) is not float or not 0 < ts < _MAX_TS:
            ts = self._ts(obj)
        return self._telemetry_fast(route, obj, ts)

    def _telemetry_fast(self, route: _Route, obj: dict[str, Any], ts: float) -> Reading:
        """:meth:`_telemetry` with the kind's precomputed table; same results, same errors."""
        table = route.checks.fields
        values: dict[str, float] = {}
        for key, raw in obj.items():
            check = table.get(key, _UNKNOWN_KEY)
            if check is None:
                continue
            if check is _UNKNOWN_KEY:
                raise _Invalid(
                    Reason.UNKNOWN_FIELD, f"{str(key)[:64]!r} not in {route.profile.kind}"
                )
            code, lo, hi, spec = check
            kind = type(raw)
            if kind is float:
                if code == _FLOAT and lo <= raw <= hi:
                    values[key] = raw
                    continue
            elif kind is int:
                if code != _BOOL and -_EXACT_INT < raw < _EXACT_INT:
                    value = float(raw)
                    if lo <= value <= hi:
                        values[key] = value
                        continue
                elif code == _BOOL and (raw == 0 or raw == 1):
                    values[key] = float(raw)
                    continue
            elif kind is bool and code == _BOOL:
                values[key] = 1.0 if raw else 0.0
                continue
            values[key] = _field_value(key, spec, raw)  # raises, or decides an unusual case
        for name in route.checks.required:
            if name not in values:
                raise _Invalid(Reason.MISSING_FIELD, f"required field {name!r} missing")
        device = route.device
        return Reading(
            site_id=self._site_id, kind=device.kind, device_id=device.id, ts=ts, values=values
        )

    def _validate(self, topic: str, payload: bytes) -> Validated:
        parts = parse_topic(topic)
        if parts is None:
            raise _Invalid(Reason.BAD_TOPIC, f"not gh/<site>/<kind>/<device>/<channel>: {topic!r}")
        if parts.site_id != self._site_id:
            raise _Invalid(Reason.UNKNOWN_SITE, f"site {parts.site_id!r}")
        device = self._devices.get(parts.device_id)
        if device is None:
            raise _Invalid(Reason.UNKNOWN_DEVICE, f"device {parts.device_id!r}")
        if device.kind != parts.kind:
            raise _Invalid(
                Reason.KIND_MISMATCH, f"{device.id} is a {device.kind}, topic says {parts.kind}"
            )
        if len(payload) > self._max_payload:
            raise _Invalid(Reason.TOO_LARGE, f"{len(payload)} bytes > {self._max_payload}")
        profile = self._profiles[device.kind]
        if parts.channel == "status":
            return self._status(device, payload)
        obj = self._json_object(payload)
        self._check_identity(device, obj)
        ts = self._ts(obj)
        if parts.channel == "event":
            return self._native_event(device, profile, obj, ts)
        return self._telemetry(device, profile, obj, ts)

    @staticmethod
    def _json_object(payload: bytes) -> dict[str, Any]:
        try:
            obj = loads_json(payload)
        except (ValueError, RecursionError) as exc:
            raise _Invalid(Reason.BAD_JSON, str(exc)[:200]) from None
        if not isinstance(obj, dict):
            raise _Invalid(Reason.NOT_AN_OBJECT, f"JSON {type(obj).__name__}, expected object")
        return obj

    def _check_identity(self, device: _Device, obj: Mapping[str, Any]) -> None:
        """A payload naming another device, site or kind than its topic is refused."""
        for key, expected in (
            ("device_id", device.id), ("site_id", self._site_id), ("kind", device.kind)
        ):
            if key in obj and obj[key] != expected:
                raise _Invalid(
                    Reason.FOREIGN_PREFIX,
                    f"payload {key} {str(obj[key])[:64]!r} published under {expected!r}",
                )

    @staticmethod
    def _ts(obj: Mapping[str, Any]) -> float:
        if "ts" not in obj:
            raise _Invalid(Reason.MISSING_TS, "no 'ts'")
        ts = obj["ts"]
        if isinstance(ts, bool) or not isinstance(ts, int | float):
            raise _Invalid(Reason.BAD_TS, f"'ts' is {type(ts).__name__}, expected epoch seconds")
        ts = float(ts)
        if not math.isfinite(ts) or not 0 < ts < _MAX_TS:
            raise _Invalid(Reason.BAD_TS, f"'ts' {ts!r} outside (0, 2100-01-01)")
        return ts

    def _telemetry(
        self, device: _Device, profile: DeviceProfile, obj: Mapping[str, Any], ts: float
    ) -> Reading:
        values: dict[str, float] = {}
        for key, raw in obj.items():
            if key in META_KEYS:
                continue
            spec = profile.fields.get(key)
            if spec is None:
                raise _Invalid(Reason.UNKNOWN_FIELD, f"{str(key)[:64]!r} not in {profile.kind}")
            values[key] = _field_value(key, spec, raw)
        for name in profile.required:
            if name not in values:
                raise _Invalid(Reason.MISSING_FIELD, f"required field {name!r} missing")
        return Reading(
            site_id=self._site_id, kind=device.kind, device_id=device.id, ts=ts, values=values
        )

    def _native_event(
        self, device: _Device, profile: DeviceProfile, obj: Mapping[str, Any], ts: float
    ) -> NativeEvent:
        native = obj.get("type")
        if not isinstance(native, str):
            raise _Invalid(Reason.WRONG_TYPE, "event 'type' must be a string")
        event_type = profile.device_events.get(native)
        if event_type is None:
            raise _Invalid(
                Reason.UNKNOWN_NATIVE_EVENT, f"{native[:64]!r} not a {profile.kind} device event"
            )
        state = obj.get("state", "raised")
        if state not in ("raised", "cleared"):
            raise _Invalid(Reason.WRONG_TYPE, "event 'state' must be 'raised' or 'cleared'")
        evidence = {
            k: v for k, v in obj.items()
            if k not in META_KEYS and k not in ("type", "state")
            and isinstance(v, str | int | float | bool)
        }
        return NativeEvent(
            site_id=self._site_id, kind=device.kind, device_id=device.id, ts=ts,
            native_type=native, event_type=event_type, state=state, evidence=evidence,
        )

    def _status(self, device: _Device, payload: bytes) -> StatusChange:
        text = payload.strip()
        ts: float | None = None
        word: object
        if text.startswith(b"{"):
            obj = self._json_object(payload)
            self._check_identity(device, obj)
            word = obj.get("status", obj.get("state"))
            if "ts" in obj:
                ts = self._ts(obj)
        else:
            word = text.decode("utf-8", errors="replace").lower()
        if word not in ("online", "offline"):
            raise _Invalid(Reason.BAD_STATUS, f"not online/offline: {str(word)[:64]!r}")
        return StatusChange(
            site_id=self._site_id, kind=device.kind, device_id=device.id,
            ts=self._clock() if ts is None else ts, online=word == "online",
        )


_UNKNOWN_KEY: Final[_FieldCheck] = (-1, math.nan, math.nan, FieldSpec(unit="", min=0, max=1))
"""Sentinel of :meth:`Validator._telemetry_fast` for a key the kind does not have."""


def _field_value(name: str, spec: FieldSpec, raw: object) -> float:
    """The field's value as a float, checked against its type and physically valid range."""
    if spec.type == "bool":
        if isinstance(raw, bool):
            return 1.0 if raw else 0.0
        if isinstance(raw, int) and raw in (0, 1):
            return float(raw)
        raise _Invalid(Reason.WRONG_TYPE, f"{name} must be true/false or 0/1")
    if isinstance(raw, bool) or not isinstance(raw, int | float):
        raise _Invalid(Reason.WRONG_TYPE, f"{name} must be a number, got {type(raw).__name__}")
    if spec.type == "int" and isinstance(raw, float) and not raw.is_integer():
        raise _Invalid(Reason.WRONG_TYPE, f"{name} must be an integer, got {raw!r}")
    try:
        value = float(raw)
    except OverflowError:
        value = math.inf
    if not math.isfinite(value) or not spec.min <= value <= spec.max:
        raise _Invalid(
            Reason.OUT_OF_VALID_RANGE, f"{name}={value!r} outside [{spec.min}, {spec.max}]"
        )
    return value
