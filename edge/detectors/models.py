"""Learned-model detectors: a score detector plus the thresholding wrapper, from a profile.

``gaussian`` (multivariate, :class:`GaussianScorer`) and ``zscore`` (univariate or
worst-of-fields, :class:`ZScorer`) can be listed in any profile (``pump_model``, the pump's
multivariate EWMA chart, lives in :mod:`edge.detectors.pump`). Nothing is tuned per device.

Params: the scorer's ``warmup``, ``smooth``, ``quantile``, ``margin`` (and for ``gaussian``
``shrinkage``), ``adapt_rate``; the wrapper's ``clear_level`` (raise level is 1.0, the
calibrated edge of normal), ``min_duration_s``, ``clear_after_s``, ``cooldown_s``; and
``only_when`` / ``only_when_min``: model only samples whose field ``only_when`` is at least
``only_when_min`` (one operating state, e.g. a pump running), skipping the first
``settle_s`` seconds after the state is entered (start-up transients).
"""

from __future__ import annotations

from collections.abc import Sequence

from device_profiles.schema import DetectorSpec, DeviceProfile
from device_profiles.site import DeviceConfig
from edge.detectors.base import DetectorConfigError, register
from edge.detectors.common import Hysteresis, Params, event_type, numeric_fields
from edge.detectors.scorers import GaussianScorer, ZScorer
from edge.detectors.threshold import ScoreMonitor

GAUSSIAN_DEFAULTS: dict[str, float] = {
    "warmup": 400,
    "smooth": 10,
    "quantile": 0.99,
    "margin": 1.25,
    "shrinkage": 0.1,
    "adapt_rate": 0.0,
}
ZSCORE_DEFAULTS: dict[str, float] = {
    "warmup": 100,
    "smooth": 5,
    "quantile": 0.99,
    "margin": 1.5,
    "adapt_rate": 0.001,
}
CLEAR_LEVEL = 0.8
COOLDOWN_PERIODS = 60.0


def gaussian_scorer(fields: Sequence[str]) -> GaussianScorer:
    """A :class:`GaussianScorer` with the default configuration."""
    d = GAUSSIAN_DEFAULTS
    return GaussianScorer(
        fields, warmup=int(d["warmup"]), smooth=int(d["smooth"]), quantile=d["quantile"],
        margin=d["margin"], shrinkage=d["shrinkage"], adapt_rate=d["adapt_rate"],
    )


def zscorer(fields: Sequence[str]) -> ZScorer:
    """A :class:`ZScorer` with the default configuration."""
    d = ZSCORE_DEFAULTS
    return ZScorer(
        fields, warmup=int(d["warmup"]), smooth=int(d["smooth"]), quantile=d["quantile"],
        margin=d["margin"], adapt_rate=d["adapt_rate"],
    )


def default_gate(sampling_period: float) -> Hysteresis:
    """The default thresholding: raise at 1.0, clear below 0.8, cool-down 60 periods."""
    return Hysteresis(1.0, CLEAR_LEVEL, cooldown=COOLDOWN_PERIODS * sampling_period)


def _gate(p: Params, profile: DeviceProfile) -> Hysteresis:
    return Hysteresis(
        1.0,
        p.number("clear_level", CLEAR_LEVEL, lo=0.0, hi=1.0),
        min_duration=p.number("min_duration_s", 0.0, lo=0),
        clear_duration=p.number("clear_after_s", 0.0, lo=0),
        cooldown=p.number("cooldown_s", COOLDOWN_PERIODS * profile.sampling_period, lo=0),
    )


def only_when_params(
    p: Params, profile: DeviceProfile
) -> tuple[tuple[str, float] | None, float]:
    """``only_when`` / ``only_when_min`` / ``settle_s``: the operating state a model watches."""
    name = p.text("only_when", None)
    minimum = p.number("only_when_min", 0.5)
    settle = p.number("settle_s", 0.0, lo=0.0)
    if name is None:
        return None, settle
    if name not in profile.fields:
        raise DetectorConfigError(f"only_when names unknown field {name!r}")
    return (name, minimum), settle


def build_gaussian(
    spec: DetectorSpec,
    profile: DeviceProfile,
    device: DeviceConfig,
    default_event: str = "anomaly",
) -> ScoreMonitor:
    """The multivariate model over the detector's fields, thresholded."""
    p = Params(spec)
    d = GAUSSIAN_DEFAULTS
    fields = numeric_fields(profile, spec)
    scorer = GaussianScorer(
        fields,
        warmup=p.integer("warmup", int(d["warmup"]), lo=10),
        smooth=p.integer("smooth", int(d["smooth"]), lo=1),
        quantile=p.number("quantile", d["quantile"], lo=0.5, hi=1.0),
        margin=p.number("margin", d["margin"], lo=0.01),
        shrinkage=p.number("shrinkage", d["shrinkage"], lo=0.0, hi=0.99),
        adapt_rate=p.number("adapt_rate", d["adapt_rate"], lo=0.0, hi=0.5),
    )
    gate = _gate(p, profile)
    only_when, settle = only_when_params(p, profile)
    p.done()
    return ScoreMonitor(
        scorer, fields, event_type(profile, spec, default_event), gate,
        only_when=only_when, settle_s=settle,
    )


def build_zscore(
    spec: DetectorSpec, profile: DeviceProfile, device: DeviceConfig
) -> ScoreMonitor:
    """The univariate (worst-of-fields) standard-score model, thresholded."""
    p = Params(spec)
    d = ZSCORE_DEFAULTS
    fields = numeric_fields(profile, spec)
    scorer = ZScorer(
        fields,
        warmup=p.integer("warmup", int(d["warmup"]), lo=3),
        smooth=p.integer("smooth", int(d["smooth"]), lo=1),
        quantile=p.number("quantile", d["quantile"], lo=0.5, hi=1.0),
        margin=p.number("margin", d["margin"], lo=0.01),
        adapt_rate=p.number("adapt_rate", d["adapt_rate"], lo=0.0, hi=0.5),
    )
    gate = _gate(p, profile)
    only_when, settle = only_when_params(p, profile)
    p.done()
    return ScoreMonitor(
        scorer, fields, event_type(profile, spec, "anomaly"), gate,
        only_when=only_when, settle_s=settle,
    )


register("gaussian")(build_gaussian)
register("zscore")(build_zscore)
