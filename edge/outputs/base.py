"""The telemetry output contract: where valid readings go besides detection.

An output is deliberately dumb (as in Telegraf): :meth:`TelemetryOutput.write` stores a
burst's readings or raises. It has no buffer, no retry, no timer. The runner owns all of
that: when ``write`` raises, the runner spools the readings into the outbox's bounded
``telemetry`` lane and replays them, oldest first, with backoff; while a spool exists new
readings join it, so order is kept and a down database is not hammered.

If the raised exception has an ``unwritten`` attribute (a sequence of the readings that
were *not* stored, for outputs that write in chunks), only those are spooled.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Protocol

from device_profiles.messages import Reading
from device_profiles.schema import DeviceProfile
from device_profiles.site import SiteConfig


class OutputNotReady(RuntimeError):
    """An output cannot take readings right now; the runner spools and retries them."""


class TelemetryOutput(Protocol):
    """A sink for validated readings, called from the runner thread once per burst."""

    def write(self, readings: Sequence[Reading]) -> None:
        """Store all ``readings`` or raise (nothing stored, or see ``unwritten``)."""
        ...

    def close(self) -> None: ...


OutputFactory = Callable[[SiteConfig, Mapping[str, DeviceProfile]], TelemetryOutput | None]
"""Builds an output from the site file; returns ``None`` when the site does not ask for it."""
