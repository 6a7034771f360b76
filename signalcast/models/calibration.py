"""Sigmoid (Platt) calibration of P(UP), fitted on a later walk-forward fold.

Alert thresholds are probabilities, so they must mean what they say. Isotonic regression overfits
below about 1,000 samples (docs/ml-notes.md); a two-parameter sigmoid on the logit does not.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

_EPS = 1e-6


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(np.asarray(p, dtype=np.float64), _EPS, 1 - _EPS)
    return np.log(p / (1 - p))


@dataclass(frozen=True)
class SigmoidCalibrator:
    """``p_calibrated = sigmoid(a * logit(p) + b)``; the identity is ``a=1, b=0``."""

    a: float = 1.0
    b: float = 0.0

    @classmethod
    def fit(cls, raw: np.ndarray, y: np.ndarray) -> SigmoidCalibrator:
        """Maximum likelihood with the slope bounded to [0.001, 20]: never negative, so the map
        never reverses the model's ranking (an unbounded slope came out negative on small or
        overfitted calibration folds and turned the forecast upside down)."""
        y = np.asarray(y)
        if len(np.unique(y)) < 2:
            return cls()  # one class only: nothing to learn, keep the model's own scale
        a, b = _fit_monotone_sigmoid(raw, y, 1e-3, 20.0, intercept=True)
        return cls(a, b)

    def __call__(self, raw: np.ndarray) -> np.ndarray:
        return 1.0 / (1.0 + np.exp(-(self.a * _logit(raw) + self.b)))

    def to_dict(self) -> dict[str, float]:
        return {"a": self.a, "b": self.b}


# --------------------------------------------------------------------------------------------
# Calibration that cannot hurt (docs/ml-notes.md, "Calibration"): pooled out-of-fold fit,
# monotone, shrunk toward its null by the effective sample size, kept only when it beats
# the raw forecast on held-out folds. Pure numpy/scipy; JSON-able via to_dict / from_dict.

def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-z))


def _fit_monotone_sigmoid(raw: np.ndarray, y: np.ndarray, a_min: float,
                          a_max: float, intercept: bool = False) -> tuple[float, float]:
    """Maximum-likelihood ``sigmoid(a * logit(raw) + b)`` with ``a_min <= a <= a_max``
    (a_min > 0: the map is strictly increasing, so it never reverses a model's ranking).

    ``intercept=False`` (the default) fixes ``b = 0``: a temperature, one scale for the model's
    confidence, centred where the model says 50% (and shrunk toward 50%, see
    :class:`MonotoneCalibrator`): a base rate away from 50% is the model's to forecast. A
    forward-fitted offset lags a drifting base rate and differs from one walk-forward fold to the
    next, which reorders rows across folds (pooled AUC lost 0.01-0.03 with it, none without it)."""
    from scipy.optimize import minimize

    x = _logit(raw)
    y = np.asarray(y, dtype=np.float64)

    def nll(theta):
        a, b = theta
        z = a * x + b
        # log(1 + e^z) - y z, and its gradient
        loss = np.logaddexp(0.0, z) - y * z
        r = _sigmoid(z) - y
        return loss.mean(), np.array([(r * x).mean(), r.mean() if intercept else 0.0])

    res = minimize(nll, x0=np.array([1.0, 0.0]), jac=True, method="L-BFGS-B",
                   bounds=[(a_min, a_max), (-20.0, 20.0) if intercept else (0.0, 0.0)])
    return float(res.x[0]), float(res.x[1])


TAIL_QUANTILE = 0.005  # the fitted raw range: the 0.5% and 99.5% quantiles of the fitting rows
TAIL_SLOPE = 1e-4  # beyond it the map rises this slowly: flat in value, strict in order


def _fitted_range(raw: np.ndarray) -> tuple[float, float]:
    if len(raw) == 0:
        return 0.0, 1.0
    lo, hi = np.quantile(raw, [TAIL_QUANTILE, 1.0 - TAIL_QUANTILE])
    return float(lo), float(hi)


@dataclass(frozen=True)
class MonotoneCalibrator:
    """``p = w * sigmoid(a * logit(raw) + b) + (1 - w) * prior`` (``kind="sigmoid"``) or
    ``p = raw`` (``kind="identity"``).

    ``a >= a_min > 0`` so the map is strictly increasing; ``w = n_eff / (n_eff + prior_episodes)``
    with ``n_eff = n / horizon`` (overlapping labels: about one independent outcome per horizon)
    shrinks toward ``prior`` when data is thin: the map's own "no information" value, 50% for a
    temperature (``intercept=False``, the direction factor), the pooled base rate ``base`` for a
    map with an intercept (the touch factor; ``prior`` None means ``base``, as in artifacts from
    before it). Shrinking a temperature toward each fold's base rate was a per-fold offset after
    all: where the map came out flat (a forecast of no validated skill), every walk-forward fold
    became its own constant, the earlier folds' base rate, and the pooled rows were ranked by
    those constants (on a four-regime market, pooled AUC 0.548 -> 0.483; 0.533 shrunk toward
    50%). Fitted by :meth:`fit`.
    """

    kind: str = "identity"
    a: float = 1.0
    b: float = 0.0
    w: float = 1.0
    base: float = 0.5
    n: int = 0
    n_eff: float = 0.0
    heldout_brier_raw: float | None = None
    heldout_brier_cal: float | None = None
    # the raw range the map was fitted on (its TAIL_QUANTILE and 1 - TAIL_QUANTILE quantiles):
    # beyond it the map is flat (no extrapolation), see :meth:`__call__`
    lo: float = 0.0
    hi: float = 1.0
    prior: float | None = None

    @classmethod
    def fit(cls, raw, y, *, horizon: int = 1, groups=None, positions=None,
            prior_episodes: float = 10.0, a_min: float = 1e-3, a_max: float = 20.0,
            min_rows: int = 30, intercept: bool = False) -> MonotoneCalibrator:
        """Fit on pooled out-of-fold predictions ``raw`` with outcomes ``y`` (0/1, time order).

        ``groups``: the walk-forward fold of each row (time-ordered ids). The candidate map is
        validated forward: for each later group it is refitted on the earlier groups (rows with
        ``position + horizon`` >= the group's first position are purged when ``positions`` is
        given) and scored on it; it is kept only if its held-out Brier beats the raw forecast's on
        every checked group, else the identity is returned (also when no group could be checked).
        Without ``groups`` the shrunk candidate is returned (on tiny data ~ the base rate).
        ``intercept``: fit ``b`` too (see :func:`_fit_monotone_sigmoid`; the default, a
        temperature, suits P(up first | touched), centred near 50% by the two symmetric levels;
        the touch factor, whose rate is anywhere in (0, 1), needs its intercept).
        """
        raw = np.clip(np.asarray(raw, dtype=np.float64), 0.0, 1.0)
        y = np.asarray(y, dtype=np.float64)
        fitted = _fitted_range(raw)
        return replace(cls._fit(raw, y, horizon=horizon, groups=groups, positions=positions,
                                prior_episodes=prior_episodes, a_min=a_min, a_max=a_max,
                                min_rows=min_rows, intercept=intercept),
                       lo=fitted[0], hi=fitted[1])

    @classmethod
    def _fit(cls, raw, y, *, horizon, groups, positions, prior_episodes, a_min, a_max,
             min_rows, intercept) -> MonotoneCalibrator:
        if len(y) < min_rows or len(np.unique(y)) < 2:
            base = float((y.sum() + 1.0) / (len(y) + 2.0))
            n_eff = len(y) / max(horizon, 1)
            w = 0.0 if len(np.unique(y)) < 2 else n_eff / (n_eff + prior_episodes)
            return cls("sigmoid", 1.0, 0.0, float(w), base, len(y), float(n_eff))
        candidate = cls._fit_candidate(raw, y, horizon, prior_episodes, a_min, a_max,
                                       intercept)
        if groups is None:
            return candidate
        groups = np.asarray(groups)
        positions = None if positions is None else np.asarray(positions)
        order = list(dict.fromkeys(groups.tolist()))
        if len(order) < 3:  # one or two folds only: validate on time thirds instead
            groups = np.minimum(np.arange(len(y)) * 3 // len(y), 2)
            order = [0, 1, 2]
        sse_raw = sse_cal = 0.0
        checked = losses = 0
        for g in order[1:]:
            test = groups == g
            train = np.isin(groups, order[:order.index(g)])
            if positions is not None:
                train &= positions + horizon < positions[test].min()
            if train.sum() < min_rows or len(np.unique(y[train])) < 2:
                continue
            lo, hi = _fitted_range(raw[train])
            fitted = replace(cls._fit_candidate(raw[train], y[train], horizon, prior_episodes,
                                                a_min, a_max, intercept), lo=lo, hi=hi)
            g_raw = float(np.sum((raw[test] - y[test]) ** 2))
            g_cal = float(np.sum((fitted(raw[test]) - y[test]) ** 2))
            sse_raw, sse_cal = sse_raw + g_raw, sse_cal + g_cal
            losses += int(g_cal >= g_raw)
            checked += int(test.sum())
        if checked == 0:  # nothing held out to show the map helps: keep the raw forecast
            return cls(n=len(y), base=candidate.base, n_eff=candidate.n_eff)
        # kept only if it wins on every held-out group (a noisy win in sum is not enough)
        identity = cls(n=len(y), base=candidate.base, n_eff=candidate.n_eff)
        kept = candidate if (sse_cal < sse_raw and losses == 0) else identity
        return replace(kept, heldout_brier_raw=sse_raw / checked,
                       heldout_brier_cal=sse_cal / checked)

    @classmethod
    def _fit_candidate(cls, raw, y, horizon, prior_episodes, a_min, a_max, intercept=False):
        a, b = _fit_monotone_sigmoid(raw, y, a_min, a_max, intercept)
        n_eff = len(y) / max(horizon, 1)
        base = float((y.sum() + 1.0) / (len(y) + 2.0))
        return cls("sigmoid", a, b, float(n_eff / (n_eff + prior_episodes)), base, len(y),
                   float(n_eff), prior=None if intercept else 0.5)

    def __call__(self, raw) -> np.ndarray:
        """The map, flat beyond the fitted raw range ``[lo, hi]``: a raw value the map never saw
        gets the value at the nearest fitted extreme (plus ``TAIL_SLOPE`` times the distance,
        so the order of the rows, hence any AUC, is kept while the probability is not
        extrapolated). The identity is the raw forecast itself, unflattened: it is what the
        held-out folds validated when they kept it (flattening it cut each walk-forward fold's
        model at the range of the earlier folds' models and reordered the pooled rows: the
        range-aware HMM's pooled AUC lost up to 0.008)."""
        raw = np.clip(np.asarray(raw, dtype=np.float64), 0.0, 1.0)
        if self.kind == "identity":
            return raw
        inside = np.clip(raw, self.lo, self.hi)
        tail = TAIL_SLOPE * (raw - inside)
        prior = self.base if self.prior is None else self.prior
        p = self.w * _sigmoid(self.a * _logit(inside) + self.b) + (1.0 - self.w) * prior
        return np.clip(p + tail, 0.0, 1.0)

    def to_dict(self) -> dict:
        return {"kind": self.kind, "a": float(self.a), "b": float(self.b), "w": float(self.w),
                "base": float(self.base), "n": int(self.n), "n_eff": float(self.n_eff),
                "heldout_brier_raw": self.heldout_brier_raw,
                "heldout_brier_cal": self.heldout_brier_cal, "lo": float(self.lo),
                "hi": float(self.hi), "prior": self.prior}

    @classmethod
    def from_dict(cls, d: dict) -> MonotoneCalibrator:
        # artifacts from before the fitted range: lo=0, hi=1 (no flattening); from before
        # ``prior``: shrunk toward ``base``, as they were fitted
        return cls(**d)


def calibrator_from_dict(d: dict):
    """Either calibrator from its ``to_dict`` form (old artifacts hold only ``a``/``b``)."""
    return MonotoneCalibrator.from_dict(d) if "kind" in d else SigmoidCalibrator(**d)
