"""A third-party model family: P(UP) is the share of UP among the training labels.

It knows signalcast only through the public contract (:class:`signalcast.models.base.SignalModel`)
and registers itself with an entry point, as any plugin distribution would.
"""

from __future__ import annotations

import json
from typing import Any, Self

import numpy as np

from signalcast.models.base import SignalModel


class BaseRateModel(SignalModel):
    family = "base_rate"

    def __init__(self, *, seed: int = 0, prior_rows: float = 1.0):
        super().__init__(seed=seed, prior_rows=prior_rows)
        self.rate_: float | None = None

    def fit(self, X: np.ndarray, y: np.ndarray) -> Self:
        X, y = self._check_fit_input(X, y)
        prior = self.params["prior_rows"]
        self.rate_ = float((y.sum() + 0.5 * prior) / (len(y) + prior))
        return self

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        self._check_fitted(self.rate_)
        return np.full(len(np.asarray(X)), self.rate_)

    def to_bytes(self) -> bytes:
        self._check_fitted(self.rate_)
        return json.dumps({"rate": self.rate_}).encode()

    @classmethod
    def from_bytes(cls, data: bytes, params: dict[str, Any]) -> Self:
        model = cls(**params)
        model.rate_ = float(json.loads(data)["rate"])
        return model
