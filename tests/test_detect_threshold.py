"""The thresholding wrapper: hysteresis, minimum duration, cool-down, no flapping."""

from __future__ import annotations

import random
from collections.abc import Mapping

import pytest

from device_profiles.messages import Reading
from edge.detectors.base import DetectorConfigError
from edge.detectors.common import Hysteresis
from edge.detectors.threshold import ScoreMonitor


def run(h: Hysteresis, scores: list[float], period: float = 1.0) -> list[tuple[int, str]]:
    out = []
    for i, s in enumerate(scores):
        step = h.update(i * period, s)
        if step is not None:
            out.append((i, step))
    return out


def test_raises_at_raise_level_and_clears_only_below_clear_level() -> None:
    h = Hysteresis(1.0, 0.5)
    assert run(h, [0.2, 1.2, 0.8, 0.7, 0.6, 0.4, 0.9]) == [(1, "raise"), (5, "clear")]


def test_minimum_duration_suppresses_short_spikes() -> None:
    h = Hysteresis(1.0, 0.5, min_duration=3.0)
    scores = [0, 2, 2, 0, 2, 2, 2, 2, 0]
    assert run(h, scores) == [(7, "raise"), (8, "clear")]


def test_clear_duration_needs_sustained_calm() -> None:
    h = Hysteresis(1.0, 0.5, clear_duration=2.0)
    assert run(h, [2, 0, 2, 0, 0, 0]) == [(0, "raise"), (5, "clear")]


def test_cooldown_blocks_immediate_re_raise() -> None:
    h = Hysteresis(1.0, 0.5, cooldown=5.0)
    assert run(h, [2, 0, 2, 2, 2, 2, 2, 2]) == [(0, "raise"), (1, "clear"), (6, "raise")]


def test_no_flapping_on_noisy_signal_at_the_threshold() -> None:
    rng = random.Random(3)
    scores = [1.0 + rng.gauss(0, 0.1) for _ in range(5000)]
    with_hysteresis = run(Hysteresis(1.0, 0.6, min_duration=3.0, cooldown=60.0), scores)
    naive = run(Hysteresis(1.0, 1.0), scores)
    assert len(naive) > 1000
    assert len(with_hysteresis) <= 2


def test_bad_levels_fail_at_construction() -> None:
    with pytest.raises(DetectorConfigError):
        Hysteresis(1.0, 2.0)
    with pytest.raises(DetectorConfigError):
        Hysteresis(1.0, 0.5, min_duration=-1)


class FakeDetector:
    """Scores a sample by its value; records what it is taught."""

    def __init__(self) -> None:
        self.learned: list[float] = []

    def learn_one(self, x: Mapping[str, float]) -> None:
        self.learned.append(x["v"])

    def score_one(self, x: Mapping[str, float]) -> float:
        return x["v"]


def test_score_monitor_keeps_anomalies_out_of_learning_and_names_episode_by_data_time() -> None:
    det = FakeDetector()
    mon = ScoreMonitor(det, ("v",), "pump.anomaly", Hysteresis(1.0, 0.5, min_duration=1.0))
    values = [0.1, 0.2, 3.0, 3.0, 3.0, 0.7, 0.3, 0.2]
    findings = []
    for i, v in enumerate(values):
        findings += mon.observe(Reading("s", "water_pump", "p1", 1000.0 + i, {"v": v}))
    assert [(f.state, f.ts, f.episode_start) for f in findings] == [
        ("raised", 1003.0, 1003.0), ("cleared", 1006.0, 1003.0),
    ]
    assert 3.0 not in det.learned
    assert 0.7 not in det.learned
    assert det.learned == [0.1, 0.2, 0.3, 0.2]


class WindowedFake(FakeDetector):
    def __init__(self) -> None:
        super().__init__()
        self.resets = 0

    def reset_window(self) -> None:
        self.resets += 1


def test_only_when_skips_other_states_settles_and_drops_pending_raises() -> None:
    det = WindowedFake()
    mon = ScoreMonitor(det, ("v",), "pump.anomaly", Hysteresis(1.0, 0.5, min_duration=3.0),
                       only_when=("run", 0.5), settle_s=2.0)
    rows = [(0, 1, 0.1), (1, 1, 2.0), (2, 1, 2.0), (3, 0, 9.0), (4, 0, 9.0),
            (5, 1, 9.0), (6, 1, 9.0), (7, 1, 0.2), (8, 1, 2.0), (9, 1, 2.0)]
    findings = []
    for ts, run_flag, v in rows:
        reading = Reading("s", "water_pump", "p1", float(ts), {"v": v, "run": run_flag})
        findings += mon.observe(reading)
    assert findings == []
    assert det.resets == 1
    assert 9.0 not in det.learned
    assert det.learned == [0.1, 0.2]
