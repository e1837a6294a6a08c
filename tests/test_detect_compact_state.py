"""Compact detector state: the same results as the list-of-objects formulas, bounded memory."""

from __future__ import annotations

import math
import random
import tracemalloc
from collections import deque

import numpy as np
import pytest

from device_profiles.loader import load_profiles
from device_profiles.messages import Reading
from device_profiles.site import DeviceConfig
from edge.detectors import build_monitors
from edge.detectors.compact import RowBuffer, SlotMeans
from edge.detectors.scorers import GaussianScorer, MewmaScorer
from edge.detectors.trend import LinearTrend

FIELDS = ("accel", "current", "pressure", "voltage")
KIB = 1024


def pump_like_row(rng: random.Random) -> dict[str, float]:
    """Channels of very different magnitudes (a 230 V supply varying by a fraction of a volt)."""
    base = rng.gauss(0.0, 1.0)
    return {
        "accel": 0.027 + 0.002 * base + rng.gauss(0.0, 0.001),
        "current": 2.1 + 0.1 * base + rng.gauss(0.0, 0.05),
        "pressure": 1.3 + rng.gauss(0.0, 0.02),
        "voltage": 231.7 + rng.gauss(0.0, 0.4),
    }


def old_mewma_fit(
    rows: list[list[float]], span: int, clip: float, shrinkage: float, quantile: float,
    margin: float,
) -> tuple[np.ndarray, np.ndarray, float]:
    """The pump model's calibration as it was computed from a float64 list of rows."""
    data = np.asarray(rows, dtype=np.float64)
    alpha = 2.0 / (span + 1.0)
    mean = np.nanmean(data, axis=0)
    std = np.sqrt(np.clip(np.nanvar(data, axis=0), 1e-12, None))
    z = np.clip(np.nan_to_num((data - mean) / std), -clip, clip)
    smoothed = np.empty_like(z)
    state = np.zeros(z.shape[1])
    for i, row in enumerate(z):
        state += alpha * (row - state)
        smoothed[i] = state
    settled = smoothed[span:]
    centre = settled.mean(axis=0)
    cov = np.cov(settled, rowvar=False)
    sd = np.sqrt(np.clip(np.diag(cov), 1e-12, None))
    corr = cov / np.outer(sd, sd)
    shrunk = (1.0 - shrinkage) * corr + shrinkage * np.eye(len(sd))
    prec = np.linalg.inv(shrunk) / np.outer(sd, sd)
    diff = settled - centre
    t2 = np.einsum("ij,jk,ik->i", diff, prec, diff)
    return centre, prec, max(float(np.quantile(t2, quantile)), 1e-9) * margin


def test_row_buffer_keeps_values_to_float32_precision_of_their_spread() -> None:
    rng = random.Random(1)
    rows = [[v for v in pump_like_row(rng).values()] for _ in range(500)]
    rows[0][1] = math.nan  # the first value of a column missing: its offset comes later
    rows[7][3] = math.nan
    buf = RowBuffer(len(FIELDS))
    for row in rows:
        buf.append(row)
    got = buf.matrix()
    want = np.asarray(rows)
    assert got.shape == (500, 4)
    assert np.array_equal(np.isnan(got), np.isnan(want))
    ok = ~np.isnan(want)
    spread = np.nanmax(want, axis=0) - np.nanmin(want, axis=0)
    # float32 of the difference from the first value: error relative to the spread, not to
    # the magnitude (the 231.7 V column keeps millivolts).
    assert np.all(np.abs(got - want)[ok] <= (1e-6 * spread * np.ones_like(want))[ok])
    assert buf.nbytes() == 500 * 4 * 4


def test_mewma_calibration_equals_the_float64_list_formula() -> None:
    rng = random.Random(2)
    warmup = 600
    rows = [pump_like_row(rng) for _ in range(warmup)]
    scorer = MewmaScorer(FIELDS, warmup=warmup, span=10, quantile=1.0, margin=2.5)
    for row in rows:
        scorer.learn_one(row)
    assert scorer.ready
    centre, prec, scale = old_mewma_fit(
        [[r[f] for f in FIELDS] for r in rows], span=10, clip=10.0, shrinkage=0.1,
        quantile=1.0, margin=2.5,
    )
    assert scorer._centre is not None and scorer._prec is not None
    np.testing.assert_allclose(scorer._centre, centre, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(scorer._prec, prec, rtol=1e-4)
    assert scorer._scale == pytest.approx(scale, rel=1e-4)
    # Scoring: the smoothed statistic over the same sequence as the old formula gives it.
    mean = np.mean([[r[f] for f in FIELDS] for r in rows], axis=0)
    std = np.sqrt(np.var([[r[f] for f in FIELDS] for r in rows], axis=0))
    state = centre.copy()
    scorer.reset_window()
    for i in range(300):
        row = pump_like_row(rng)
        if 100 <= i < 150:
            row["pressure"] -= 0.06  # a 3-sigma drop: scores well above 1
        z = np.clip((np.array([row[f] for f in FIELDS]) - mean) / std, -10.0, 10.0)
        state += (2.0 / 11.0) * (z - state)
        diff = state - centre
        want = float(diff @ prec @ diff) / scale
        assert scorer.score_one(row) == pytest.approx(want, rel=1e-3, abs=1e-6)


def test_gaussian_scorer_scores_with_compact_warmup_match_float64() -> None:
    rng = random.Random(3)
    rows = [pump_like_row(rng) for _ in range(400)]
    scorer = GaussianScorer(FIELDS, warmup=400, smooth=1)
    for row in rows:
        scorer.learn_one(row)
    data = np.asarray([[r[f] for f in FIELDS] for r in rows])
    mean = data.mean(axis=0)
    assert scorer._mean is not None
    np.testing.assert_allclose(scorer._mean, mean, rtol=1e-7)
    np.testing.assert_allclose(scorer._cov, np.cov(data, rowvar=False), rtol=1e-4)


def test_warmup_buffer_is_float32_and_dropped_once_fitted() -> None:
    rng = random.Random(4)
    scorer = MewmaScorer(FIELDS, warmup=3600)
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for _ in range(3599):
            scorer.learn_one(pump_like_row(rng))
        held = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert scorer._buf is not None and scorer._buf.nbytes() == 3599 * 4 * 4
    # 3,599 rows of 4 channels: 56 KiB of floats (it was ~220 bytes a row as lists).
    assert held < 64 * KIB
    scorer.learn_one(pump_like_row(rng))
    assert scorer.ready and scorer._buf is None


def test_linear_trend_window_matches_a_deque_of_points_and_stays_bounded() -> None:
    rng = random.Random(5)
    line = LinearTrend(1800.0)
    ref: deque[tuple[float, float]] = deque()
    t0 = 1_767_571_200.0
    for i in range(20_000):
        ts = t0 + 5.0 * i
        v = 0.03 + 1e-6 * i + rng.gauss(0.0, 0.002)
        line.add(ts, v)
        t = (ts - t0) / 3600.0
        ref.append((t, v))
        while ref[0][0] < t - 0.5:
            ref.popleft()
    assert line.count == len(ref) == 361
    assert line.span_h == pytest.approx(ref[-1][0] - ref[0][0])
    fit = line.fit()
    assert fit is not None
    ts_arr = np.array([p[0] for p in ref])
    vs_arr = np.array([p[1] for p in ref])
    slope, intercept = np.polyfit(ts_arr, vs_arr, 1)
    assert fit[0] == pytest.approx(slope, rel=1e-4)
    assert fit[1] == pytest.approx(intercept + slope * ts_arr[-1], rel=1e-6)
    # 20,000 samples went through; the arrays hold the window plus a bounded dead prefix.
    assert line.nbytes() <= 16 * (2 * 361 + 64)


def test_linear_trend_rebase_keeps_the_fit() -> None:
    line = LinearTrend(7200.0)
    t0 = 1_767_571_200.0
    for i in range(400):
        line.add(t0 + 30.0 * i, 1.0 + 0.01 * i)
    before = line.fit()
    line._rebase(t0 + 30.0 * 399)
    after = line.fit()
    assert before is not None and after is not None
    assert after[0] == pytest.approx(before[0], rel=1e-9)
    assert after[1] == pytest.approx(before[1], rel=1e-9)


def test_nested_recent_line_equals_a_separate_line_over_the_shorter_window() -> None:
    rng = random.Random(7)
    nested = LinearTrend(1800.0, 900.0)
    full, recent = LinearTrend(1800.0), LinearTrend(900.0)
    t0 = 1_767_571_200.0
    for i in range(5000):
        ts = t0 + 5.0 * i + rng.uniform(0.0, 1.0)
        v = 0.03 + 2e-6 * i + rng.gauss(0.0, 0.002)
        for line in (nested, full, recent):
            line.add(ts, v)
        if i % 97 == 0:
            assert nested.fit() == full.fit()  # the same sums, in the same order
            assert nested.fit_recent() == recent.fit()
            assert nested.count == full.count and nested.span_h == full.span_h
    assert nested.nested and not full.nested
    assert full.fit_recent() == full.fit()
    # One pair of arrays for both lines.
    assert nested.nbytes() <= 16 * (2 * full.count + 64)


class _OldSlot:
    """The meter baseline slot as it was: a running mean object and a period counter."""

    def __init__(self) -> None:
        self.n, self.value, self.periods, self.last = 0, 0.0, 0, None

    def add(self, v: float, period: int, cap: int) -> None:
        self.n += 1
        self.value += (v - self.value) / min(self.n, cap)
        if period != self.last:
            self.periods += 1
            self.last = period

    def seen_before(self, period: int) -> int:
        return self.periods - (1 if self.last == period else 0)


def test_slot_means_equal_the_object_per_slot_formula() -> None:
    rng = random.Random(6)
    slots = SlotMeans(168, 50)
    old = [_OldSlot() for _ in range(168)]
    for i in range(50_000):
        slot, period, v = rng.randrange(168), i // 5000, rng.uniform(0.0, 8.0)
        slots.add(slot, v, period)
        old[slot].add(v, period, 50)
    for s in range(168):
        assert slots.mean(s) == old[s].value
        for period in (8, 9, 10):
            assert slots.seen_before(s, period) == old[s].seen_before(period)


def feed(kind: str, rows: int, period: float) -> int:
    """Bytes per device held by the monitors of 5 devices of ``kind`` after ``rows`` samples."""
    from simulators.models import simulate_offline

    profile = load_profiles()[kind]
    devices = [DeviceConfig(id=f"d{i}", kind=kind) for i in range(5)]
    start = 1_767_571_200.0
    samples = [(d.id, s.ts, dict(s.values)) for d, s in
               simulate_offline(devices, start, start + rows * period, [], seed=3) if s.values]
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        monitors = {d.id: build_monitors(profile, d) for d in devices}
        for device_id, ts, values in samples:
            reading = Reading("s", kind, device_id, ts, values)
            for m in monitors[device_id]:
                m.observe(reading)
        held = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    return held // len(devices)


def test_pump_and_meter_state_after_an_hour_of_data_is_small() -> None:
    # Before the compact state: a pump held ~240 KiB after an hour (and ~900 KiB at the end
    # of its model's warm-up), a meter ~29 KiB.
    assert feed("water_pump", 3600, 1.0) < 80 * KIB
    assert feed("smart_meter", 360, 10.0) < 12 * KIB
