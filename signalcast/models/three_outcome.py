"""Three outcomes from any binary family: P(up first), P(down first), P(neither) unconditionally.

Design: touch model x direction model, both through the existing binary contract
(:class:`~signalcast.models.base.SignalModel`), so every family works unchanged:

* ``touch``: the family fitted on *all* resolved rows, y = 1 if either level was touched
  (UP or DOWN), 0 if EXPIRED;
* ``direction``: the family fitted on the touched rows, y = 1 if UP first (today's model);
* ``p_up = P(touch) * P(up | touch)``, ``p_down = P(touch) * (1 - P(up | touch))``,
  ``p_none = 1 - P(touch)``; each factor calibrated by its own
  :class:`~signalcast.models.calibration.MonotoneCalibrator` (touch on all rows, direction on
  touched rows), so the product is a proper distribution whose factors are each reliable.

When (almost) every row touches (short pct, long horizon) the touch model is replaced by its
shrunk base rate (a constant), so nothing is lost against today's binary model.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from signalcast.features.labels import DOWN, EXPIRED, UP
from signalcast.models import registry
from signalcast.models.calibration import MonotoneCalibrator

MIN_CLASS_ROWS = 30  # fewer expired (or touched) rows than this: the touch model is a constant


def combine(p_touch, p_up_given_touch) -> np.ndarray:
    """(n, 3) [p_up, p_down, p_none] from the two factors."""
    pt = np.clip(np.asarray(p_touch, float), 0.0, 1.0)
    pd_ = np.clip(np.asarray(p_up_given_touch, float), 0.0, 1.0)
    return np.column_stack([pt * pd_, pt * (1.0 - pd_), 1.0 - pt])


class TouchDirectionModel:
    """Two fitted binary models of one family (or a cheaper ``touch_family``)."""

    def __init__(self, family: str, params: Mapping[str, Any] | None = None, *,
                 touch_family: str | None = None, touch_params: Mapping[str, Any] | None = None):
        self.family, self.params = family, dict(params or {})
        self.touch_family = touch_family or family
        self.touch_params = dict(touch_params if touch_params is not None else
                                 (self.params if self.touch_family == family else {}))
        self.direction_ = None
        self.touch_ = None
        self.touch_rate_: float | None = None  # used when the touch model is a constant

    def fit(self, X: np.ndarray, labels: np.ndarray, feature_names: Sequence[str]):
        labels = np.asarray(labels)
        if not np.isin(labels, (UP, DOWN, EXPIRED)).all():
            raise ValueError("labels must be UP, DOWN or EXPIRED (resolved rows only)")
        touched = labels != EXPIRED
        direction = registry.create(self.family, **self.params)
        if direction.fits_unlabelled:  # every candle, the untouched ones without a label
            rows, y = slice(None), np.where(touched, labels == UP, -1).astype(np.int8)
        else:
            rows, y = touched, (labels[touched] == UP).astype(np.int8)
        self.direction_ = direction.fit_with_feature_names(X[rows], y, feature_names)
        n_exp = int((~touched).sum())
        if min(n_exp, int(touched.sum())) < MIN_CLASS_ROWS:
            self.touch_, self.touch_rate_ = None, float((touched.sum() + 1) / (len(labels) + 2))
        else:
            self.touch_ = registry.create(self.touch_family, **self.touch_params)
            self.touch_.fit_with_feature_names(X, touched.astype(np.int8), feature_names)
            self.touch_rate_ = None
        return self

    def predict_components(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Raw (p_touch, p_up_given_touch) per row, before calibration."""
        p_dir = np.asarray(self.direction_.predict_proba(X), float)
        if self.touch_ is None:
            p_touch = np.full(len(X), self.touch_rate_)
        else:
            p_touch = np.asarray(self.touch_.predict_proba(X), float)
        return p_touch, p_dir


class ThreeOutcomeCalibration:
    """The two factor calibrators; JSON-able."""

    def __init__(self, touch: MonotoneCalibrator, direction: MonotoneCalibrator):
        self.touch, self.direction = touch, direction

    def __call__(self, p_touch_raw, p_dir_raw) -> np.ndarray:
        return combine(self.touch(p_touch_raw), self.direction(p_dir_raw))

    def to_dict(self) -> dict:
        return {"touch": self.touch.to_dict(), "direction": self.direction.to_dict()}

    @classmethod
    def from_dict(cls, d: dict) -> ThreeOutcomeCalibration:
        return cls(MonotoneCalibrator.from_dict(d["touch"]),
                   MonotoneCalibrator.from_dict(d["direction"]))
