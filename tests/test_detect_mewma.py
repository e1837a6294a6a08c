"""The pump model's scorer (:class:`MewmaScorer`): learns normal, flags sustained shifts."""

from __future__ import annotations

import math
import random
from collections.abc import Sequence

import pytest

from device_profiles.loader import load_profiles
from device_profiles.messages import Reading
from device_profiles.schema import DeviceProfile
from device_profiles.site import DeviceConfig
from edge.detectors import build_monitors
from edge.detectors.base import DetectorConfigError
from edge.detectors.chain import DetectorChain
from edge.detectors.compact import RowBuffer
from edge.detectors.scorers import MewmaScorer
from edge.detectors.smallmat import Matrix, Vector, quadratic, quantile

FIELDS = ("a", "b", "c")


def normal_row(rng: random.Random) -> dict[str, float]:
    base = rng.gauss(0.0, 1.0)
    return {"a": 10.0 + base, "b": 5.0 + 0.5 * base + rng.gauss(0.0, 0.3),
            "c": 2.0 + rng.gauss(0.0, 0.2)}


def trained(rng: random.Random, **kw: float) -> MewmaScorer:
    scorer = MewmaScorer(FIELDS, warmup=300, **kw)  # type: ignore[arg-type]
    for _ in range(300):
        row = normal_row(rng)
        assert scorer.score_one(row) == 0.0
        scorer.learn_one(row)
    assert scorer.ready
    return scorer


def test_normal_data_stays_below_the_edge_of_normal() -> None:
    rng = random.Random(1)
    scorer = trained(rng)
    scores = [scorer.score_one(normal_row(rng)) for _ in range(2000)]
    assert max(scores) < 1.0


def test_small_sustained_shift_in_one_channel_is_flagged_within_span_samples() -> None:
    rng = random.Random(2)
    scorer = trained(rng)
    for _ in range(50):
        scorer.score_one(normal_row(rng))
    scores = []
    for _ in range(30):
        row = normal_row(rng)
        row["c"] -= 3 * 0.2  # three standard deviations, one channel
        scores.append(scorer.score_one(row))
    assert max(scores[:3]) < 1.0
    assert min(scores[15:]) > 1.0


def test_one_wild_sample_is_clipped_and_cannot_hold_the_score_up() -> None:
    def run(clip: float) -> list[float]:
        rng = random.Random(4)
        scorer = trained(rng, clip=clip)
        wild = normal_row(rng)
        wild["a"] = 1e9
        return [scorer.score_one(wild)] + [scorer.score_one(normal_row(rng)) for _ in range(20)]

    clipped = run(10.0)
    assert sum(s > 1.0 for s in clipped) < 5  # shorter than the profile's 5 s minimum
    assert max(clipped[10:]) < 0.5
    assert min(run(1e12)) > 1.0  # without the clip one sample would hold an alarm


def test_reset_window_restarts_smoothing_from_normal() -> None:
    rng = random.Random(5)
    scorer = trained(rng)
    for _ in range(30):
        row = normal_row(rng)
        row["c"] += 2.0
        scorer.score_one(row)
    assert scorer.score_one(normal_row(rng)) > 1.0
    scorer.reset_window()
    assert scorer.score_one(normal_row(rng)) < 1.0


def test_channel_missing_from_the_warm_up_is_left_out_and_missing_values_count_as_normal() -> None:
    rng = random.Random(6)
    scorer = MewmaScorer(FIELDS, warmup=200)
    for _ in range(200):
        row = normal_row(rng)
        del row["c"]
        scorer.learn_one(row)
    assert scorer.used_fields == ("a", "b")
    scores = [scorer.score_one({"a": normal_row(rng)["a"]}) for _ in range(100)]
    assert max(scores) < 1.0


def test_adaptation_follows_a_slow_drift_of_normal() -> None:
    rng = random.Random(7)
    fixed, adaptive = trained(rng), trained(random.Random(7), adapt_rate=0.01)
    fixed_scores, adaptive_scores = [], []
    for i in range(3000):
        row = normal_row(rng)
        row["a"] += 2.0 * i / 3000  # two standard deviations over the run
        row["b"] += 1.0 * i / 3000
        fixed_scores.append(fixed.score_one(row))
        adaptive_scores.append(adaptive.score_one(row))
        if adaptive_scores[-1] <= 0.5:
            adaptive.learn_one(row)
    assert max(fixed_scores[-200:]) > 1.0
    assert max(adaptive_scores[-200:]) < 1.0


@pytest.mark.parametrize("kw", [
    {"span": 0}, {"warmup": 5}, {"warmup": 20, "span": 20}, {"quantile": 0.2},
    {"margin": 0.0}, {"shrinkage": 1.0}, {"adapt_rate": 1.0}, {"clip": 0.0},
])
def test_bad_configuration_fails_at_construction(kw: dict[str, float]) -> None:
    with pytest.raises(DetectorConfigError):
        MewmaScorer(FIELDS, **kw)  # type: ignore[arg-type]


def pump_spec_params(**params: object) -> DeviceProfile:
    profile = load_profiles()["water_pump"]
    detectors = tuple(
        d.model_copy(update={"params": {**d.params, **params}}) if d.name == "pump_model" else d
        for d in profile.detectors
    )
    return profile.model_copy(update={"detectors": detectors})


@pytest.mark.parametrize("params", [{"span": 0}, {"warmup": 50, "span": 60}, {"clip": -1.0},
                                    {"clear_level": 1.5}, {"spann": 10}])
def test_pump_model_rejects_bad_params_naming_the_detector(params: dict[str, object]) -> None:
    with pytest.raises(DetectorConfigError, match="pump_model"):
        build_monitors(pump_spec_params(**params), DeviceConfig(id="p1", kind="water_pump"))


def test_pump_model_learns_the_pump_then_raises_on_a_flow_drop_and_clears_after() -> None:
    rng = random.Random(8)
    profile = pump_spec_params(warmup=300)
    chain = DetectorChain.for_device(profile, DeviceConfig(id="p1", kind="water_pump"),
                                     only=["pump_model"])

    def row(flow_shift: float) -> dict[str, float]:
        load = rng.gauss(0.0, 1.0)
        return {"accel1_rms": 0.2 + 0.01 * rng.gauss(0, 1), "accel2_rms": 0.25 + 0.01 * load,
                "current_a": 2.0 + 0.05 * load, "pressure_bar": 3.0 + 0.05 * rng.gauss(0, 1),
                "voltage_v": 230 + rng.gauss(0, 1), "flow_lpm": 120 + 2 * load + flow_shift}

    states: list[str] = []
    t = 1_700_000_000.0
    for i in range(1500):
        shift = -8.0 if 900 <= i < 1100 else 0.0
        states += [f.state for f in chain.observe(
            Reading("site", "water_pump", "p1", t + i, row(shift)))]
    assert states == ["raised", "cleared"]



# The row-by-row definitions the pump model's fit followed before it went column by column
# (the model must give the same numbers to the bit).
def _column_means(rows: Sequence[Sequence[float]], width: int) -> Vector:
    """The mean of each column (``rows`` must not be empty)."""
    sums = [0.0] * width
    for row in rows:
        for j in range(width):
            sums[j] += row[j]
    n = len(rows)
    return [s / n for s in sums]


def _covariance(rows: Sequence[Sequence[float]], mean: Sequence[float]) -> Matrix:
    """The sample covariance (divided by n - 1) of ``rows`` about ``mean``."""
    d = len(mean)
    acc = [[0.0] * d for _ in range(d)]
    for row in rows:
        diff = [row[j] - mean[j] for j in range(d)]
        for i in range(d):
            di = diff[i]
            line = acc[i]
            for j in range(i, d):
                line[j] += di * diff[j]
    n = max(1, len(rows) - 1)
    for i in range(d):
        for j in range(i, d):
            acc[i][j] /= n
            acc[j][i] = acc[i][j]
    return acc


def _row_by_row_fit(rows: list[list[float]], model: MewmaScorer) -> tuple[
    list[float], list[list[float]], list[float], list[list[float]]
]:
    """The fit as it was written before it went column by column: the centre and
    covariance of the settled smoothed vectors, the last state, and those vectors."""
    width = len(rows[0])
    mean, std = [], []
    for j in range(width):
        vals = [row[j] for row in rows if row[j] == row[j]]
        m = math.fsum(vals) / len(vals)
        mean.append(m)
        std.append(math.sqrt(max(math.fsum((v - m) * (v - m) for v in vals) / len(vals), 1e-12)))
    state = [0.0] * width
    smoothed = []
    for row in rows:
        for k in range(width):
            z = (row[k] - mean[k]) / std[k]
            z = 0.0 if z != z else max(-model.clip, min(model.clip, z))
            state[k] += model.alpha * (z - state[k])
        smoothed.append(list(state))
    settled = smoothed[model.span:]
    centre = _column_means(settled, width)
    return centre, _covariance(settled, centre), state, settled


def test_the_column_by_column_fit_equals_the_row_by_row_definitions_to_the_bit() -> None:
    rng = random.Random(11)
    fields = ["a", "b", "c", "d"]
    model = MewmaScorer(fields, warmup=300, span=10)
    stored = RowBuffer(4)  # the warm-up as the model stores it (float32 offsets)
    for i in range(300):
        x = {f: rng.gauss(3.0 + k, 0.5 + k) for k, f in enumerate(fields)}
        if i % 17 == 5:
            x["b"] = math.nan  # missing now and then: counts as the mean
        if i == 40:
            x["c"] = 1e9  # one wild sample: clipped
        stored.append([x[f] for f in fields])
        model.learn_one(x)
    assert model.ready
    rows = [list(r) for r in zip(*stored.columns(), strict=True)]
    centre, cov, state, settled = _row_by_row_fit(rows, model)
    assert model._centre == centre
    assert model._cov == cov
    assert model._state == state
    prec = model._prec
    assert prec is not None
    t2 = [quadratic([r[k] - centre[k] for k in range(4)], prec) for r in settled]
    assert model._scale == max(quantile(t2, model.quantile), 1e-9) * model.margin
