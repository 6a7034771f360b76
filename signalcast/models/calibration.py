"""Sigmoid (Platt) calibration of P(UP), fitted on a later walk-forward fold.

Alert thresholds are probabilities, so they must mean what they say. Isotonic regression overfits
below about 1,000 samples (ML_NOTES.md); a two-parameter sigmoid on the logit does not.
"""

from __future__ import annotations

from dataclasses import dataclass

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
        from sklearn.linear_model import LogisticRegression

        y = np.asarray(y)
        if len(np.unique(y)) < 2:
            return cls()  # one class only: nothing to learn, keep the model's own scale
        lr = LogisticRegression(C=1e4, max_iter=1000)
        lr.fit(_logit(raw).reshape(-1, 1), y)
        return cls(float(lr.coef_[0, 0]), float(lr.intercept_[0]))

    def __call__(self, raw: np.ndarray) -> np.ndarray:
        return 1.0 / (1.0 + np.exp(-(self.a * _logit(raw) + self.b)))

    def to_dict(self) -> dict[str, float]:
        return {"a": self.a, "b": self.b}
