"""The fit budget: learned models that finish their warm-up together fit a few at a time."""

from __future__ import annotations

import random
from collections.abc import Iterator

import pytest

from edge.detectors import fit_budget
from edge.detectors.fit_budget import FitBudget, limit_fitting, stop_limiting
from edge.detectors.scorers import GaussianScorer, MewmaScorer, ZScorer

FIELDS = ("a", "b", "c", "d", "e", "f")


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture()
def clock() -> Iterator[Clock]:
    """A process-wide budget of 10 % driven by a hand-moved clock; removed afterwards."""
    c = Clock()
    budget = FitBudget(0.1, clock=c)
    fit_budget._budget = budget
    yield c
    stop_limiting(budget)
    assert fit_budget._budget is None


def samples(seed: int, n: int) -> list[dict[str, float]]:
    rng = random.Random(seed)
    return [{k: rng.gauss(5.0 + i, 1.0 + i / 3) for i, k in enumerate(FIELDS)} for _ in range(n)]


def test_token_bucket_refills_at_its_share_and_saves_little() -> None:
    c = Clock()
    b = FitBudget(0.1, clock=c)
    assert b.may_fit("m1")  # a fresh budget fits at once
    b.spent("m1", 0.05)
    assert not b.may_fit("m2")
    assert b.waiting == 1
    c.now += 0.49  # 0.049 s earned of the 0.05 owed
    assert not b.may_fit("m2")
    c.now += 0.02
    assert b.may_fit("m2")
    b.spent("m2", 0.01)
    assert b.waiting == 0
    assert (b.fits, round(b.seconds, 6)) == (2, 0.06)
    c.now += 3600  # a quiet hour saves up at most MAX_CREDIT
    assert b.may_fit("m3")
    b.spent("m3", fit_budget.MAX_CREDIT + 0.001)
    assert not b.may_fit("m4")
    gauges = {name: value for name, _, value in b.samples()}
    assert gauges == {"model_fits": 3.0, "model_fit_seconds": pytest.approx(0.111),
                      "model_fits_waiting": 1.0}


@pytest.mark.parametrize("share", [0.0, -0.1, 1.5])
def test_share_must_be_a_fraction(share: float) -> None:
    with pytest.raises(ValueError, match="fit share"):
        FitBudget(share)


def test_models_done_together_fit_one_at_a_time_and_learn_the_same(clock: Clock) -> None:
    data = samples(1, 120)
    budget = fit_budget._budget
    assert budget is not None
    free = MewmaScorer(FIELDS, warmup=100)
    fit_budget._budget = None  # the reference fits without a budget
    for x in data[:100]:
        free.learn_one(x)
    assert free.ready
    fit_budget._budget = budget
    models = [MewmaScorer(FIELDS, warmup=100) for _ in range(3)]
    for x in data[:100]:
        for m in models:
            m.learn_one(x)
    # The first model's fit spent the budget (its time is real, the clock is not moving):
    # the other two wait, score 0 and take no more samples.
    assert [m.ready for m in models] == [True, False, False]
    assert budget.waiting == 2
    for x in data[100:110]:
        for m in models[1:]:
            m.learn_one(x)
            assert m.score_one(x) == 0.0
            assert m._buf is not None and m._buf.rows == 100
    clock.now += 60.0
    for m in models[1:]:
        m.learn_one(data[110])
    assert all(m.ready for m in models)
    assert budget.waiting == 0 and budget.fits == 3
    # Fitted later, fitted the same: the same first 100 samples, the same arithmetic.
    for m in models:
        assert m._scale == free._scale
        assert m._prec == free._prec
        assert m._centre == free._centre


def test_the_numpy_models_wait_for_the_budget_too(clock: Clock) -> None:
    data = samples(2, 60)
    budget = fit_budget._budget
    assert budget is not None
    budget.spent("someone else", 1.0)  # owed: nothing fits for 10 s
    gauss = GaussianScorer(FIELDS, warmup=40)
    z = ZScorer(FIELDS, warmup=40)
    for x in data[:45]:
        gauss.learn_one(x)
        z.learn_one(x)
    assert not gauss.ready and z.score_one(data[45]) == 0.0
    assert budget.waiting == 2
    clock.now += 11.0
    gauss.learn_one(data[46])
    assert gauss.ready
    clock.now += 11.0  # the Gaussian fit (numpy's import included) was paid for
    z.learn_one(data[46])
    assert z.score_one(data[47]) > 0.0
    assert budget.waiting == 0


def test_without_a_budget_a_model_fits_with_its_last_warmup_sample() -> None:
    assert limit_fitting(None) is None
    m = MewmaScorer(FIELDS, warmup=50)
    for i, x in enumerate(samples(3, 50)):
        assert not m.ready, i
        m.learn_one(x)
    assert m.ready


def test_the_agent_sets_its_budget_and_removes_it_on_stop() -> None:
    budget = limit_fitting(0.25)
    assert budget is not None and fit_budget._budget is budget
    stop_limiting(FitBudget(0.5))  # someone else's budget: not removed
    assert fit_budget._budget is budget
    stop_limiting(budget)
    assert fit_budget._budget is None
