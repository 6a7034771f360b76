"""River family: an online learner, warm-started on history and updated from resolved outcomes.

``variant`` picks the estimator: ``"logistic"`` (default: ``StandardScaler | LogisticRegression``,
6-7 us per prediction, docs/ml-notes.md), ``"arf"`` (adaptive random forest, ``n_models`` trees,
150-200 us per prediction, about 1 ms per update) or ``"hoeffding"`` (one Hoeffding tree).
:meth:`fit` starts a fresh model and learns the rows one by one in the order given (time order);
:meth:`learn_one` / :meth:`learn_many` keep learning from outcomes as they resolve.

Serialisation uses pickle: River models have no other format. That is acceptable only because
an artifact's sha256 is verified against the database before it is loaded
(:func:`signalcast.models.artifact.load_artifact`); never load river bytes from elsewhere.
"""

from __future__ import annotations

import pickle
from typing import Any, Self

import numpy as np

from signalcast.models.base import SignalModel

VARIANTS = ("logistic", "arf", "hoeffding")


class RiverModel(SignalModel):
    family = "river"

    def __init__(self, *, seed: int = 0, variant: str = "logistic", learning_rate: float = 0.01,
                 l2: float = 0.0, n_models: int = 10, grace_period: int = 200):
        if variant not in VARIANTS:
            raise ValueError(f"river variant must be one of {VARIANTS}, got {variant!r}")
        super().__init__(seed=seed, variant=variant, learning_rate=learning_rate, l2=l2,
                         n_models=n_models, grace_period=grace_period)
        self.model_: Any | None = None

    def _new_model(self) -> Any:
        from river import forest, linear_model, optim, preprocessing, tree

        p = self.params
        if p["variant"] == "arf":
            return forest.ARFClassifier(n_models=p["n_models"], grace_period=p["grace_period"],
                                        seed=self.seed)
        if p["variant"] == "hoeffding":
            return tree.HoeffdingTreeClassifier(grace_period=p["grace_period"])
        return preprocessing.StandardScaler() | linear_model.LogisticRegression(
            optimizer=optim.SGD(p["learning_rate"]), l2=p["l2"])

    def fit(self, X: np.ndarray, y: np.ndarray) -> Self:
        X, y = self._check_fit_input(X, y)
        self.model_ = self._new_model()
        return self.learn_many(X, y)

    def learn_one(self, x_row: np.ndarray, y: int) -> Self:
        """Learn one resolved outcome (``x_row`` of shape (d,), ``y`` in {0, 1})."""
        self._check_fitted(self.model_)
        self.model_.learn_one(_as_dict(x_row), bool(y))
        return self

    def learn_many(self, X: np.ndarray, y: np.ndarray) -> Self:
        """Learn rows one by one, in the order given (oldest first)."""
        self._check_fitted(self.model_)
        X, y = self._check_fit_input(X, y)
        for row, label in zip(X.tolist(), y.tolist(), strict=True):
            self.model_.learn_one(dict(enumerate(row)), bool(label))
        return self

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        self._check_fitted(self.model_)
        rows = np.asarray(X, dtype=np.float64).tolist()
        return np.array([_p_up(self.model_.predict_proba_one(dict(enumerate(row))))
                         for row in rows], dtype=np.float64)

    def to_bytes(self) -> bytes:
        self._check_fitted(self.model_)
        return pickle.dumps(self.model_, protocol=pickle.HIGHEST_PROTOCOL)

    @classmethod
    def from_bytes(cls, data: bytes, params: dict[str, Any]) -> Self:
        model = cls(**params)
        model.model_ = pickle.loads(data)  # only after load_artifact verified the artifact's HMAC
        return model


def _as_dict(x_row: np.ndarray) -> dict[int, float]:
    return dict(enumerate(np.asarray(x_row, dtype=np.float64).ravel().tolist()))


def _p_up(proba: dict[bool, float]) -> float:
    """P(True) from River's class dict; a tree that has seen one class only omits the other."""
    if True in proba:
        return float(proba[True])
    return 1.0 - float(proba.get(False, 0.5))
