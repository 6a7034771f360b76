"""LightGBM family: gradient-boosted trees, served through the raw Booster on numpy rows.

The sklearn wrapper adds 250-450 us per one-row call (docs/ml-notes.md); the raw Booster does not.
Threads are pinned (``num_threads``, default 1): two 2-thread fits on 2 cores ran 5-10x slower.
A leaf holds at least ``min_child_samples`` rows and at least ``leaf_outcomes`` outcomes' worth
of them (``leaf_outcomes * horizon`` rows; see :func:`signalcast.models.base.leaf_rows`).
"""

from __future__ import annotations

from typing import Any, Self

import lightgbm as lgb
import numpy as np

from signalcast.models.base import LEAF_OUTCOMES, SignalModel, leaf_rows


class LightGBMModel(SignalModel):
    family = "lightgbm"

    def __init__(self, *, seed: int = 0, n_estimators: int = 200, learning_rate: float = 0.05,
                 num_leaves: int = 15, min_child_samples: int = 40, subsample: float = 0.8,
                 colsample: float = 0.8, num_threads: int = 1, horizon: int = 1,
                 leaf_outcomes: float = LEAF_OUTCOMES):
        leaf_rows(horizon, leaf_outcomes)  # bad values fail now, not at fit time
        super().__init__(seed=seed, n_estimators=n_estimators, learning_rate=learning_rate,
                         num_leaves=num_leaves, min_child_samples=min_child_samples,
                         subsample=subsample, colsample=colsample, num_threads=num_threads,
                         horizon=horizon, leaf_outcomes=leaf_outcomes)
        self.booster_: lgb.Booster | None = None

    def _lgb_params(self) -> dict[str, Any]:
        p = self.params
        return {
            "objective": "binary",
            "learning_rate": p["learning_rate"],
            "num_leaves": p["num_leaves"],
            "min_data_in_leaf": max(p["min_child_samples"],
                                    leaf_rows(p["horizon"], p["leaf_outcomes"])),
            "bagging_fraction": p["subsample"],
            "bagging_freq": 1,
            "feature_fraction": p["colsample"],
            "num_threads": p["num_threads"],
            "seed": self.seed,
            "deterministic": True,
            "force_row_wise": True,
            "verbosity": -1,
        }

    def fit(self, X: np.ndarray, y: np.ndarray) -> Self:
        X, y = self._check_fit_input(X, y)
        data = lgb.Dataset(X, label=y, free_raw_data=True)
        self.booster_ = lgb.train(self._lgb_params(), data,
                                  num_boost_round=self.params["n_estimators"])
        return self

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        self._check_fitted(self.booster_)
        X = np.asarray(X, dtype=np.float64)
        return self.booster_.predict(X, num_threads=self.params["num_threads"])

    def to_bytes(self) -> bytes:
        self._check_fitted(self.booster_)
        return self.booster_.model_to_string().encode()

    @classmethod
    def from_bytes(cls, data: bytes, params: dict[str, Any]) -> Self:
        model = cls(**params)
        model.booster_ = lgb.Booster(model_str=data.decode())
        return model
