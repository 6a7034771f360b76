"""Stacking ensemble: a logistic meta-learner on the members' out-of-fold log-odds.

The meta-learner sees each member's raw P(UP) as a logit, ``sigmoid(b + sum_i c_i *
logit(p_i))`` with every ``c_i >= 0`` (a member never counts against its own ranking),
fitted on walk-forward out-of-fold predictions with a purge of ``horizon`` rows (:mod:`.oof`;
scikit-learn's ``StackingClassifier`` refuses time-series splits). Its fitted
coefficients are plain numbers in the artifact, so the meta-learner is pickle-free and costs a
dot product per row. Without out-of-fold predictions (too few rows, or one class only) it
averages the members' log-odds.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from signalcast.ensemble.base import EnsembleModel
from signalcast.ensemble.oof import MemberOOF

_EPS = 1e-6


def _non_negative_logistic(Z: np.ndarray, y: np.ndarray, C: float) -> tuple[np.ndarray, float]:
    """``sigmoid(b + Z @ c)`` fitted with every ``c_i >= 0``, minimising ``C * sum(log loss) +
    |c|^2 / 2`` (scikit-learn's L2 objective; the intercept unpenalised), by L-BFGS-B.

    Non-negative weights (Breiman's stacked regressions): a member's forecast may count for
    little or nothing, never against itself. A free logistic meta-learner fitted on out-of-fold
    predictions that carry little signal (early folds, members without skill) comes out with
    negative weights by chance, and then turns the fully trained members' ranking upside down:
    the same hazard as a calibrator with a negative slope."""
    from scipy.optimize import minimize

    Z, y = np.asarray(Z, dtype=np.float64), np.asarray(y, dtype=np.float64)

    def objective(theta: np.ndarray) -> tuple[float, np.ndarray]:
        z = theta[0] + Z @ theta[1:]
        loss = np.logaddexp(0.0, z) - y * z  # log(1 + e^z) - y z, stable
        residual = 1.0 / (1.0 + np.exp(-z)) - y
        grad = np.concatenate([[C * residual.sum()], C * (Z.T @ residual) + theta[1:]])
        return float(C * loss.sum() + 0.5 * theta[1:] @ theta[1:]), grad

    m = Z.shape[1]
    start = np.concatenate([[0.0], np.full(m, 1.0 / m)])
    fit = minimize(objective, start, jac=True, method="L-BFGS-B",
                   bounds=[(None, None)] + [(0.0, None)] * m)
    return fit.x[1:].copy(), float(fit.x[0])


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(np.asarray(p, dtype=np.float64), _EPS, 1 - _EPS)
    return np.log(p / (1 - p))


class StackingEnsemble(EnsembleModel):
    family = "stacking_ensemble"

    def __init__(self, *, seed: int = 0, members: Sequence[str | Mapping[str, Any]] | None = None,
                 horizon: int = 24, folds: int = 4, min_fit_rows: int = 100, C: float = 1.0,
                 calibrate_members: bool = True, conflict_margin: float = 0.1):
        if C <= 0:
            raise ValueError(f"C (inverse regularisation) must be > 0, got {C}")
        super().__init__(seed=seed, members=members, horizon=horizon, folds=folds,
                         min_fit_rows=min_fit_rows, calibrate_members=calibrate_members,
                         conflict_margin=conflict_margin, C=float(C))
        self.coef_: np.ndarray | None = None
        self.intercept_: float | None = None

    def _fit_combiner(self, oof: MemberOOF | None, calibrated: np.ndarray | None) -> None:
        m = len(self.member_specs)
        self.coef_, self.intercept_ = np.full(m, 1.0 / m), 0.0
        if oof is None or len(np.unique(oof.y)) < 2:
            return
        self.coef_, self.intercept_ = _non_negative_logistic(_logit(oof.probs), oof.y,
                                                             self.params["C"])

    def _combine(self, raw: np.ndarray, calibrated: np.ndarray) -> np.ndarray:
        return 1.0 / (1.0 + np.exp(-(_logit(raw) @ self.coef_ + self.intercept_)))

    def _combiner_state(self) -> dict[str, Any]:
        return {"coef": self.coef_.tolist(), "intercept": self.intercept_}

    def _load_combiner(self, state: Mapping[str, Any]) -> None:
        self.coef_ = np.asarray(state["coef"], dtype=np.float64)
        self.intercept_ = float(state["intercept"])
