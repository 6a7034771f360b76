"""HMM + LightGBM hybrid (BSE Predict's plan): LightGBM on the features plus the HMM's filtered
regime probabilities.

The HMM is fitted first, on the same training rows (every candle: rows labelled -1 shape the
regimes only, see ``SignalModel.fits_unlabelled``), LightGBM on the labelled ones. The regime
probabilities are causal and computed from each row alone (see
:mod:`signalcast.models.families.hmm`), so appending them as columns leaks nothing and works
on the one-row hot path. Hyperparameters of the two parts are nested:
``{"hmm": {"n_states": 3}, "lightgbm": {"n_estimators": 200}}``; both use ``seed``.
The artifact holds both parts' own pickle-free payloads.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Self

import numpy as np

from signalcast.models.base import SignalModel, pack_arrays, unpack_arrays
from signalcast.models.families.hmm import HMMModel
from signalcast.models.families.lightgbm import LightGBMModel


class HMMLightGBMModel(SignalModel):
    family = "hmm_lightgbm"
    fits_unlabelled = True  # the HMM's regimes from every candle, LightGBM on labelled rows

    def __init__(self, *, seed: int = 0, hmm: Mapping[str, Any] | None = None,
                 lightgbm: Mapping[str, Any] | None = None, horizon: int = 1):
        hmm, lightgbm = dict(hmm or {}), dict(lightgbm or {})
        lightgbm.setdefault("horizon", horizon)  # its leaves hold outcomes of this horizon
        for part, part_params in ((HMMModel, hmm), (LightGBMModel, lightgbm)):
            if "seed" in part_params:
                raise ValueError("hmm_lightgbm takes one seed, at the top level")
            part(**part_params)  # bad parameters fail now, not at fit time
        super().__init__(seed=seed, hmm=hmm, lightgbm=lightgbm, horizon=horizon)
        self.hmm_: HMMModel | None = None
        self.lightgbm_: LightGBMModel | None = None
        self.feature_names_: list[str] | None = None

    def fit(self, X: np.ndarray, y: np.ndarray, *,
            feature_names: Sequence[str] | None = None) -> Self:
        X, y = self._check_fit_input(X, y, unlabelled=True)
        hmm = HMMModel(seed=self.seed, **self.params["hmm"]).fit(X, y, feature_names=feature_names)
        booster = LightGBMModel(seed=self.seed, **self.params["lightgbm"])
        labelled = y >= 0
        X = X[labelled]
        self.lightgbm_ = booster.fit(np.hstack([X, hmm.regime_probabilities(X)]), y[labelled])
        self.hmm_ = hmm
        self.feature_names_ = hmm.feature_names_
        return self

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        self._check_fitted(self.lightgbm_)
        X = np.asarray(X, dtype=np.float64)
        return self.lightgbm_.predict_proba(np.hstack([X, self.hmm_.regime_probabilities(X)]))

    def to_bytes(self) -> bytes:
        self._check_fitted(self.lightgbm_)
        parts = {"hmm": self.hmm_.to_bytes(), "lightgbm": self.lightgbm_.to_bytes()}
        return pack_arrays({name: np.frombuffer(blob, dtype=np.uint8)
                            for name, blob in parts.items()})

    @classmethod
    def from_bytes(cls, data: bytes, params: dict[str, Any]) -> Self:
        model = cls(**params)
        arrays, _ = unpack_arrays(data)
        model.hmm_ = HMMModel.from_bytes(arrays["hmm"].tobytes(),
                                         {"seed": model.seed, **model.params["hmm"]})
        model.lightgbm_ = LightGBMModel.from_bytes(arrays["lightgbm"].tobytes(),
                                                   {"seed": model.seed,
                                                    **model.params["lightgbm"]})
        model.feature_names_ = model.hmm_.feature_names_
        return model
