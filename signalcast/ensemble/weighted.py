"""Weighted-average ensemble: P(UP) = sum_i w_i * p_i over the members' calibrated P(UP).

Weights come from the parameters (``weights``, normalised to sum to 1) or, when ``weights`` is
None, are optimised on the members' walk-forward out-of-fold predictions: the point of the
probability simplex with the lowest log-loss (convex in the weights; SLSQP from equal weights,
which it never does worse than). With too few rows for out-of-fold predictions the weights are
equal.

AlphaPulse's batch/online blend is a configured case (:data:`ALPHAPULSE_BLEND`): a LightGBM and a
River member with weights 0.8 and 0.2; the River member keeps learning from resolved outcomes
through :meth:`~signalcast.ensemble.base.EnsembleModel.learn_one`.

>>> from signalcast.models import registry
>>> model = registry.create("weighted_ensemble", **ALPHAPULSE_BLEND)
>>> [m["family"] for m in model.member_specs], model.params["weights"]
(['lightgbm', 'river'], [0.8, 0.2])
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from signalcast.ensemble.base import EnsembleModel
from signalcast.ensemble.oof import MemberOOF

ALPHAPULSE_BLEND: dict[str, Any] = {
    "members": [{"family": "lightgbm", "params": {}}, {"family": "river", "params": {}}],
    "weights": [0.8, 0.2],
}

_EPS = 1e-6


def log_loss(y: np.ndarray, p: np.ndarray) -> float:
    p = np.clip(np.asarray(p, dtype=np.float64), _EPS, 1 - _EPS)
    return float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))


def optimise_weights(probs: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Simplex weights minimising the log-loss of ``probs @ w`` ((n, m) member probabilities).

    >>> y = np.array([1, 0, 1, 0])
    >>> optimise_weights(np.array([[0.9, 0.5], [0.1, 0.5], [0.8, 0.5], [0.2, 0.5]]), y).round(2)
    array([1., 0.])
    """
    from scipy.optimize import minimize

    probs = np.asarray(probs, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    m = probs.shape[1]
    equal = np.full(m, 1.0 / m)
    if m == 1 or len(np.unique(y)) < 2:
        return equal

    def loss(w: np.ndarray) -> float:
        return log_loss(y, probs @ w)

    def grad(w: np.ndarray) -> np.ndarray:
        p = np.clip(probs @ w, _EPS, 1 - _EPS)
        return probs.T @ (-(y / p) + (1 - y) / (1 - p)) / len(y)

    result = minimize(loss, equal, jac=grad, method="SLSQP", bounds=[(0.0, 1.0)] * m,
                      constraints=[{"type": "eq", "fun": lambda w: w.sum() - 1.0,
                                    "jac": lambda w: np.ones(m)}],
                      options={"ftol": 1e-10, "maxiter": 200})
    weights = np.clip(result.x, 0.0, None)
    if not np.isfinite(weights).all() or weights.sum() <= 0:
        return equal
    weights = weights / weights.sum()
    return weights if loss(weights) <= loss(equal) else equal


class WeightedEnsemble(EnsembleModel):
    family = "weighted_ensemble"

    def __init__(self, *, seed: int = 0, members: Sequence[str | Mapping[str, Any]] | None = None,
                 weights: Sequence[float] | None = None, horizon: int = 24, folds: int = 4,
                 min_fit_rows: int = 100, calibrate_members: bool = True,
                 conflict_margin: float = 0.1):
        if weights is not None:
            weights = [float(w) for w in weights]
            if any(w < 0 for w in weights) or sum(weights) <= 0:
                raise ValueError(f"weights must be >= 0 with a positive sum, got {weights}")
        super().__init__(seed=seed, members=members, horizon=horizon, folds=folds,
                         min_fit_rows=min_fit_rows, calibrate_members=calibrate_members,
                         conflict_margin=conflict_margin, weights=weights)
        if weights is not None and len(weights) != len(self.member_specs):
            raise ValueError(f"{len(weights)} weights for {len(self.member_specs)} members")
        self.weights_: np.ndarray | None = None
        self.oof_log_loss_: dict[str, float] = {}  # equal vs chosen weights on the OOF rows

    def _needs_oof(self) -> bool:
        return self.params["weights"] is None

    def _fit_combiner(self, oof: MemberOOF | None, calibrated: np.ndarray | None) -> None:
        m = len(self.member_specs)
        if self.params["weights"] is not None:
            weights = np.asarray(self.params["weights"]) / sum(self.params["weights"])
        elif oof is None:
            weights = np.full(m, 1.0 / m)
        else:
            weights = optimise_weights(calibrated, oof.y)
        self.weights_ = weights
        self.oof_log_loss_ = {} if oof is None else {
            "equal": log_loss(oof.y, calibrated.mean(axis=1)),
            "weighted": log_loss(oof.y, calibrated @ weights)}

    def _combine(self, raw: np.ndarray, calibrated: np.ndarray) -> np.ndarray:
        return calibrated @ self.weights_

    def _combiner_state(self) -> dict[str, Any]:
        return {"weights": self.weights_.tolist()}

    def _load_combiner(self, state: Mapping[str, Any]) -> None:
        self.weights_ = np.asarray(state["weights"], dtype=np.float64)
