"""Stacking ensemble: a logistic meta-learner on the members' out-of-fold log-odds.

The meta-learner sees each member's raw P(UP) as a logit, ``sigmoid(b + sum_i c_i *
logit(p_i))``, fitted on walk-forward out-of-fold predictions with a purge of ``horizon`` rows
(:mod:`.oof`; scikit-learn's ``StackingClassifier`` refuses time-series splits). Its fitted
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
        from sklearn.linear_model import LogisticRegression

        meta = LogisticRegression(C=self.params["C"], max_iter=1000)
        meta.fit(_logit(oof.probs), oof.y)
        self.coef_ = meta.coef_[0].astype(np.float64)
        self.intercept_ = float(meta.intercept_[0])

    def _combine(self, raw: np.ndarray, calibrated: np.ndarray) -> np.ndarray:
        return 1.0 / (1.0 + np.exp(-(_logit(raw) @ self.coef_ + self.intercept_)))

    def _combiner_state(self) -> dict[str, Any]:
        return {"coef": self.coef_.tolist(), "intercept": self.intercept_}

    def _load_combiner(self, state: Mapping[str, Any]) -> None:
        self.coef_ = np.asarray(state["coef"], dtype=np.float64)
        self.intercept_ = float(state["intercept"])
