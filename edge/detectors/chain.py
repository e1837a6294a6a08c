"""A device's whole detector chain, as the edge agent runs it, with a score and alarm per row.

Tools that replay recordings (``gatehouse detect``, the evaluations, the benchmark) need one
number and one flag per reading; :class:`DetectorChain` feeds every monitor of a device and
reports the score of its learned model (the first :class:`ScoreMonitor`, 0.0 when the kind
has none) and whether any episode is open.
"""

from __future__ import annotations

from collections.abc import Sequence

from device_profiles.messages import Reading
from device_profiles.schema import DeviceProfile
from device_profiles.site import DeviceConfig
from edge.detectors.base import DetectorConfigError, DeviceMonitor, Finding, build_monitors
from edge.detectors.threshold import ScoreMonitor


class DetectorChain:
    """All monitors of one device; keeps the set of open episodes."""

    def __init__(self, monitors: Sequence[DeviceMonitor]) -> None:
        self.monitors = list(monitors)
        self._scorer = next((m for m in self.monitors if isinstance(m, ScoreMonitor)), None)
        self.open: dict[str, float] = {}
        """Event type -> episode start of every open episode."""

    @classmethod
    def for_device(
        cls,
        profile: DeviceProfile,
        device: DeviceConfig,
        only: Sequence[str] | None = None,
    ) -> DetectorChain:
        """The profile's chain for ``device``; ``only`` keeps the named detectors."""
        if only:
            unknown = set(only) - {d.name for d in profile.detectors}
            if unknown:
                raise DetectorConfigError(
                    f"profile {profile.kind!r} has no detector {', '.join(sorted(unknown))}"
                )
            profile = profile.model_copy(
                update={"detectors": tuple(d for d in profile.detectors if d.name in only)}
            )
        return cls(build_monitors(profile, device))

    @property
    def score(self) -> float:
        """The learned model's latest score (1.0 is the edge of normal), or 0.0."""
        return self._scorer.last_score if self._scorer is not None else 0.0

    @property
    def alarm(self) -> bool:
        """Whether any episode is open."""
        return bool(self.open)

    def _track(self, findings: list[Finding]) -> list[Finding]:
        for f in findings:
            if f.state == "raised":
                self.open[f.event_type] = f.episode_start
            else:
                self.open.pop(f.event_type, None)
        return findings

    def observe(self, reading: Reading) -> list[Finding]:
        """Feed one reading to every monitor."""
        out: list[Finding] = []
        for m in self.monitors:
            found = m.observe(reading)
            if found:
                out += found
        return self._track(out) if out else out

    def tick(self, now: float) -> list[Finding]:
        """Advance time without data."""
        out: list[Finding] = []
        for m in self.monitors:
            out += m.tick(now)
        return self._track(out) if out else out

    def on_status(self, ts: float, online: bool) -> list[Finding]:
        """Pass a status change to every monitor."""
        out: list[Finding] = []
        for m in self.monitors:
            out += m.on_status(ts, online)
        return self._track(out) if out else out


def generic_chain(columns: Sequence[str], sampling_period: float = 1.0) -> DetectorChain:
    """The chain for a recording of unknown kind: the learned model over ``columns``.

    One column gets the univariate :class:`ZScorer` model, several the multivariate
    :class:`GaussianScorer` one, each with the same defaults and thresholding as the
    registered ``zscore`` and ``gaussian`` detectors; the event type is ``generic.anomaly``.
    """
    from edge.detectors.models import default_gate, gaussian_scorer, zscorer

    names = tuple(columns)
    if not names:
        raise DetectorConfigError("no columns to watch")
    scorer = zscorer(names) if len(names) == 1 else gaussian_scorer(names)
    return DetectorChain(
        [ScoreMonitor(scorer, names, "generic.anomaly", default_gate(sampling_period))]
    )
