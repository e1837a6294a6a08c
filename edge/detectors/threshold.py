"""The thresholding wrapper: turns a score :class:`Detector` into a :class:`DeviceMonitor`.

Scores go through a :class:`Hysteresis` (raise level, lower clear level, minimum duration,
cool-down). A sample is learned only while no alarm is raised or pending and its score is
below the clear level, so a fault never becomes part of the normal the detector learns.
"""

from __future__ import annotations

from device_profiles.messages import Reading
from edge.detectors.base import Detector, Finding, MonitorBase, WindowedDetector
from edge.detectors.common import Episode, Hysteresis


class ScoreMonitor(MonitorBase):
    """A detector plus thresholding: emits one event type's episodes.

    ``fields`` are the reading fields handed to the detector (missing optional fields are
    simply absent from ``x``; the detector decides how to treat them). ``last_score`` and
    ``alarm`` expose the latest state for tools that print a score per row.
    ``only_when=(field, minimum)`` restricts the model to one operating state (a pump
    running): other samples, and those of the first ``settle_s`` seconds after entering the
    state (start-up transients; not at the start of the data, where the state's age is
    unknown), are neither scored nor learned and leave the state as it is. Leaving the
    state drops a raise still waiting for its minimum duration and the detector's
    smoothing window (a stop transient cannot carry over into the next run).
    """

    __slots__ = (
        "_episode",
        "_fields",
        "_gate",
        "_only_when",
        "_seen_outside",
        "_settle",
        "_state_since",
        "detector",
        "last_score",
    )

    def __init__(
        self,
        detector: Detector,
        fields: tuple[str, ...],
        event_type: str,
        gate: Hysteresis,
        *,
        only_when: tuple[str, float] | None = None,
        settle_s: float = 0.0,
    ) -> None:
        self.detector = detector
        self._only_when = only_when
        self._settle = settle_s
        self._state_since: float | None = None
        self._seen_outside = False
        self._fields = fields
        self._gate = gate
        self._episode = Episode(event_type)
        self.last_score = 0.0

    @property
    def alarm(self) -> bool:
        """Whether the episode is currently raised."""
        return self._episode.active

    def observe(self, reading: Reading) -> list[Finding]:
        values = reading.values
        if self._only_when is not None:
            gate_value = values.get(self._only_when[0])
            if gate_value is None or gate_value < self._only_when[1]:
                if self._state_since is not None:
                    self._gate.reset_pending()
                    if isinstance(self.detector, WindowedDetector):
                        self.detector.reset_window()
                self._state_since = None
                self._seen_outside = True
                return []
            if self._state_since is None:
                self._state_since = reading.ts if self._seen_outside else float("-inf")
            if reading.ts - self._state_since < self._settle:
                return []
        x = {name: values[name] for name in self._fields if name in values}
        score = self.detector.score_one(x)
        self.last_score = score
        step = self._gate.update(reading.ts, score)
        if not self._gate.active and score <= self._gate.clear_level:
            self.detector.learn_one(x)
        if step == "raise":
            return self._episode.raise_(
                reading.ts, {"score": score, "threshold": self._gate.raise_level}
            )
        if step == "clear":
            return self._episode.clear(reading.ts, {"score": score})
        return []
