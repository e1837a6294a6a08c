"""A cap on the time learned models spend fitting, so one thread keeps up with the messages.

A learned model (the pumps' MEWMA chart, the generic Gaussian and z-score models) collects
its warm-up samples and then fits itself once, in the thread that feeds it: the edge
agent's runner, which also validates and judges every other message. One fit takes
milliseconds, but on an estate whose pumps were all started together (a new gateway, a
restart: every model warms up again) hundreds finish their warm-up within the same
second. Fitted back to back they would hold the runner for a minute and more; meanwhile
every message, an elevator entrapment included, waits in the agent's queue (about 1,800 a
second on a 5,000-device estate, half a kilobyte each).

With a budget set (:func:`limit_fitting`; the agent sets ``AgentOptions.fit_share``), a
model whose warm-up is complete fits only while the budget has time left; otherwise it
keeps its warm-up samples, takes no new ones, scores 0 as during the warm-up and tries
again with its next sample. The budget refills at ``share`` seconds per second (a token
bucket that may go into debt by one fit), so fitting takes at most about that share of the
thread over any few seconds, and models fit in the order their samples come. The fitted
model is the same as without the budget: the same first ``warmup`` samples, the same
arithmetic; only when it starts to score moves (by seconds to minutes). Without a budget
(the default: ``gatehouse detect``, the evaluations, the tests) a model fits with the sample
that completes its warm-up.

One budget per process, used from one thread (the detectors' thread).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable

MAX_CREDIT = 0.05
"""Seconds of fitting an idle budget saves up at most (a few fits at once after a quiet
spell, never a long stall)."""


class FitBudget:
    """A token bucket of fitting time: ``share`` seconds per second of wall-clock time."""

    def __init__(self, share: float, *, clock: Callable[[], float] = time.perf_counter) -> None:
        if not 0.0 < share <= 1.0:
            raise ValueError(f"fit share must be in (0, 1], got {share}")
        self.share = share
        self._clock = clock
        self._balance = 0.0
        """Seconds of fitting available now; negative while the last fits are paid off."""
        self._last = clock()
        self.fits = 0
        self.seconds = 0.0
        self._waiting: set[int] = set()

    def may_fit(self, model: object) -> bool:
        """Whether ``model`` may fit now; if not, it is counted as waiting until it does."""
        now = self._clock()
        self._balance = min(self._balance + (now - self._last) * self.share, MAX_CREDIT)
        self._last = now
        if self._balance >= 0.0:
            return True
        self._waiting.add(id(model))
        return False

    def spent(self, model: object, seconds: float) -> None:
        """``model`` fitted, taking ``seconds``."""
        self._balance -= seconds
        self._waiting.discard(id(model))
        self.fits += 1
        self.seconds += seconds

    @property
    def waiting(self) -> int:
        """Models whose warm-up is complete, waiting for the budget to fit."""
        return len(self._waiting)

    def samples(self) -> Iterable[tuple[str, dict[str, str], float]]:
        """Gauges for the agent's ``/metrics``."""
        yield "model_fits", {}, float(self.fits)
        yield "model_fit_seconds", {}, self.seconds
        yield "model_fits_waiting", {}, float(self.waiting)


_budget: FitBudget | None = None


def limit_fitting(share: float | None) -> FitBudget | None:
    """Cap fitting at ``share`` of the detectors' thread from now on (``None``: no cap).
    Returns the budget (its counters feed the agent's metrics)."""
    global _budget
    _budget = None if share is None else FitBudget(share)
    return _budget


def stop_limiting(budget: FitBudget | None) -> None:
    """Remove the cap, if ``budget`` is still the one in force (agent stop)."""
    global _budget
    if budget is not None and _budget is budget:
        _budget = None


def fit_within_budget(model: object, fit: Callable[[], None]) -> bool:
    """Run ``fit`` now if the budget allows (always without one); ``True`` if it ran."""
    budget = _budget
    if budget is None:
        fit()
        return True
    if not budget.may_fit(model):
        return False
    started = time.perf_counter()
    try:
        fit()
    finally:
        budget.spent(model, time.perf_counter() - started)
    return True
