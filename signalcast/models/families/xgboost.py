"""XGBoost family: gradient-boosted trees trained with ``xgb.train``, served by ``inplace_predict``.

``inplace_predict`` on a numpy row skips the DMatrix a plain ``predict`` builds (130-160 us per
row, docs/ml-notes.md). Threads are pinned (``nthread``, default 1) as for LightGBM: two
workers on two cores each spawning threads slow everyone down. The artifact is the booster's
UBJSON model (``save_raw("ubj")``): pickle-free and readable by any later XGBoost. A loaded
model predicts a few rows (a tick's one) through the same trees as numpy arrays
(:mod:`signalcast.models.tree_table`: ~0.05 ms against ``inplace_predict``'s fixed ~0.25),
checked against the library when it is loaded.
"""

from __future__ import annotations

from typing import Any, Self

import numpy as np
import xgboost as xgb

from signalcast.models.base import LEAF_OUTCOMES, SignalModel, leaf_rows
from signalcast.models.tree_table import SMALL_BATCH, TreeTable, checked_table, xgboost_table


class XGBoostModel(SignalModel):
    family = "xgboost"

    def __init__(self, *, seed: int = 0, n_estimators: int = 200, learning_rate: float = 0.05,
                 max_depth: int = 4, min_child_weight: float = 5.0, subsample: float = 0.8,
                 colsample: float = 0.8, reg_lambda: float = 1.0, nthread: int = 1,
                 horizon: int = 1, leaf_outcomes: float = LEAF_OUTCOMES):
        leaf_rows(horizon, leaf_outcomes)  # bad values fail now, not at fit time
        super().__init__(seed=seed, n_estimators=n_estimators, learning_rate=learning_rate,
                         max_depth=max_depth, min_child_weight=min_child_weight,
                         subsample=subsample, colsample=colsample, reg_lambda=reg_lambda,
                         nthread=nthread, horizon=horizon, leaf_outcomes=leaf_outcomes)
        self.booster_: xgb.Booster | None = None
        self.table_: TreeTable | None = None  # set when loaded (from_bytes)

    def _xgb_params(self) -> dict[str, Any]:
        p = self.params
        return {
            "objective": "binary:logistic",
            "tree_method": "hist",
            "eta": p["learning_rate"],
            "max_depth": p["max_depth"],
            # a leaf's hessian sum: p(1-p) <= 1/4 per row, so rows / 4 is its least weight
            "min_child_weight": max(p["min_child_weight"],
                                    leaf_rows(p["horizon"], p["leaf_outcomes"]) / 4),
            "subsample": p["subsample"],
            "colsample_bytree": p["colsample"],
            "lambda": p["reg_lambda"],
            "nthread": p["nthread"],
            "seed": self.seed,
            "verbosity": 0,
        }

    def fit(self, X: np.ndarray, y: np.ndarray) -> Self:
        X, y = self._check_fit_input(X, y)
        data = xgb.DMatrix(X, label=y, nthread=self.params["nthread"])
        self.booster_ = xgb.train(self._xgb_params(), data,
                                  num_boost_round=self.params["n_estimators"])
        return self

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        self._check_fitted(self.booster_)
        X = np.asarray(X, dtype=np.float64)
        if self.table_ is not None and len(X) <= SMALL_BATCH:
            return self.table_.predict_proba(X)
        return self._library_predict(X)

    def _library_predict(self, X: np.ndarray) -> np.ndarray:
        return np.asarray(self.booster_.inplace_predict(X), dtype=np.float64).reshape(len(X))

    def to_bytes(self) -> bytes:
        self._check_fitted(self.booster_)
        return bytes(self.booster_.save_raw(raw_format="ubj"))

    @classmethod
    def from_bytes(cls, data: bytes, params: dict[str, Any]) -> Self:
        model = cls(**params)
        booster = xgb.Booster(model_file=bytearray(data))
        booster.set_param({"nthread": model.params["nthread"]})
        model.booster_ = booster
        model.table_ = checked_table(lambda: xgboost_table(booster), model._library_predict,
                                     booster.num_features(), "xgboost")
        return model
