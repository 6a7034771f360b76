"""River family: an online learner, warm-started on history and updated from resolved outcomes.

``variant`` picks the estimator: ``"logistic"`` (default: ``StandardScaler | LogisticRegression``,
6-7 us per prediction, docs/ml-notes.md), ``"arf"`` (adaptive random forest, ``n_models`` trees,
150-200 us per prediction, about 1 ms per update) or ``"hoeffding"`` (one Hoeffding tree).
:meth:`fit` starts a fresh model and learns the rows one by one in the order given (time order);
:meth:`learn_one` / :meth:`learn_many` keep learning from outcomes as they resolve. The logistic
variant's SGD step is ``learning_rate`` or, by default, 0.005 divided by the number of features
(:func:`_weights_step` says why; River's own default, 0.01, left our forecasts mostly noise).

Calibration while it learns. A version of this family keeps learning after training
(:mod:`signalcast.pipeline.learn`), so the calibrator fitted at training time on the trained
model's out-of-fold outputs would map a model that no longer exists; once it learns online, it
is served by its own probabilities (the served calibrator becomes the identity), which are
calibrated *online*:

* ``logistic``: the model is fitted by stochastic gradient descent on the log loss, a strictly
  proper scoring rule, and keeps descending it on every outcome it learns: the intercept's
  gradient is the mean residual ``p - y``, so its mean forecast follows the mean outcome of the
  stream, and the slope follows how sharp the features really are. Its probabilities are
  calibrated by the same loss that trains it; a second map on top would only lag behind.
* ``arf`` and ``hoeffding``: trees' leaf frequencies are not calibrated (a young leaf says 0 or
  1), so an online Platt map ``sigmoid(a * logit(raw) + b)`` (:class:`OnlinePlatt`, starting at
  the identity) learns each outcome *prequentially*: it is updated on the raw probability the
  trees gave *before* they learn that outcome, i.e. always on out-of-sample forecasts.

Serialisation uses pickle: River models have no other format. That is acceptable only because
an artifact's MAC is verified before it is loaded
(:func:`signalcast.models.artifact.load_artifact`); never load river bytes from elsewhere.
"""

from __future__ import annotations

import math
import pickle
from typing import Any, Self

import numpy as np

from signalcast.models.base import SignalModel

VARIANTS = ("logistic", "arf", "hoeffding")
SELF_CALIBRATED = ("logistic",)  # trained on the log loss: no online Platt map on top
EPS = 1e-6


class OnlinePlatt:
    """``p = sigmoid(a * logit(raw) + b)``, from the identity (``a = 1, b = 0``), one SGD step on
    the log loss per outcome (``learning_rate``), ``a`` kept >= ``a_min`` (increasing map)."""

    def __init__(self, learning_rate: float = 0.01, a_min: float = 0.05):
        self.a, self.b, self.learning_rate, self.a_min, self.n = 1.0, 0.0, learning_rate, a_min, 0

    def __call__(self, raw: float) -> float:
        return _sigmoid(self.a * _logit(raw) + self.b)

    def learn_one(self, raw: float, y: int) -> None:
        z = _logit(raw)
        residual = self(raw) - float(y)
        self.a = max(self.a_min, self.a - self.learning_rate * residual * z)
        self.b -= self.learning_rate * residual
        self.n += 1


WEIGHT_STEP = 0.005  # the logistic SGD step times the number of features (see _weights_step)


def _weights_step(n_features: int) -> float:
    """The default SGD step of the logistic variant's weights: ``WEIGHT_STEP / n_features``.

    Why. A constant SGD step ``eta`` on the log loss leaves the weights fluctuating about their
    optimum with a variance of about ``eta / 2`` per standardised feature, so the forecast carries
    a noise of about ``eta * d / 2`` in logit units squared for ``d`` features, whatever the
    market. River's default 0.01 over our 67 features is 0.34 (about +-0.58 logits, +-14 points of
    probability near 50%): more than any signal these features carry, so the forecast was mostly
    the optimizer's noise (walk forward on the packaged market: AUC below a coin on 8 of 9 series,
    Brier 0.38-0.44 against 0.25 for the base rate; docs/ml-notes.md). ``WEIGHT_STEP / d`` holds it
    at 0.0025 (+-0.05 logits) for any number of features. The price is speed: the weights' time
    constant is about ``4 / eta`` rows (53,600 here), so a training of 8,760 rows stops early,
    which shrinks the weights toward zero (toward the base-rate forecast, as a ridge penalty
    would), and online the weights move slowly while the intercept (River's step 0.01, a memory
    of about 400 rows) follows the base rate of the outcomes as they resolve."""
    return WEIGHT_STEP / max(1, int(n_features))


class RiverModel(SignalModel):
    family = "river"

    def __init__(self, *, seed: int = 0, variant: str = "logistic",
                 learning_rate: float | None = None, l2: float = 0.0, n_models: int = 10,
                 grace_period: int = 200):
        if variant not in VARIANTS:
            raise ValueError(f"river variant must be one of {VARIANTS}, got {variant!r}")
        if learning_rate is not None and not float(learning_rate) > 0:
            raise ValueError(f"river learning_rate must be a positive step (or null for "
                             f"{WEIGHT_STEP} / number of features), got {learning_rate!r}")
        super().__init__(seed=seed, variant=variant, learning_rate=learning_rate, l2=l2,
                         n_models=n_models, grace_period=grace_period)
        self.model_: Any | None = None
        self.platt_: OnlinePlatt | None = None

    def _new_model(self, n_features: int) -> Any:
        from river import forest, linear_model, optim, preprocessing, tree

        p = self.params
        if p["variant"] == "arf":
            return forest.ARFClassifier(n_models=p["n_models"], grace_period=p["grace_period"],
                                        seed=self.seed)
        if p["variant"] == "hoeffding":
            return tree.HoeffdingTreeClassifier(grace_period=p["grace_period"])
        step = p["learning_rate"] or _weights_step(n_features)
        return preprocessing.StandardScaler() | linear_model.LogisticRegression(
            optimizer=optim.SGD(step), l2=p["l2"])

    def fit(self, X: np.ndarray, y: np.ndarray) -> Self:
        X, y = self._check_fit_input(X, y)
        self.model_ = self._new_model(X.shape[1])
        self.platt_ = None if self.params["variant"] in SELF_CALIBRATED else OnlinePlatt()
        return self.learn_many(X, y)

    def learn_one(self, x_row: np.ndarray, y: int) -> Self:
        """Learn one resolved outcome (``x_row`` of shape (d,), ``y`` in {0, 1}); the online
        Platt map (trees) first learns the trees' forecast made before they see it."""
        self._check_fitted(self.model_)
        self._learn(_as_dict(x_row), bool(y))
        return self

    def learn_many(self, X: np.ndarray, y: np.ndarray) -> Self:
        """Learn rows one by one, in the order given (oldest first)."""
        self._check_fitted(self.model_)
        X, y = self._check_fit_input(X, y)
        for row, label in zip(X.tolist(), y.tolist(), strict=True):
            self._learn(dict(enumerate(row)), bool(label))
        return self

    def _learn(self, x: dict[int, float], y: bool) -> None:
        if self.platt_ is not None:  # prequential: the forecast before the trees learn y
            self.platt_.learn_one(_p_up(self.model_.predict_proba_one(x)), int(y))
        self.model_.learn_one(x, y)

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        self._check_fitted(self.model_)
        rows = np.asarray(X, dtype=np.float64).tolist()
        raw = [_p_up(self.model_.predict_proba_one(dict(enumerate(row)))) for row in rows]
        if self.platt_ is not None:
            raw = [self.platt_(p) for p in raw]
        return np.array(raw, dtype=np.float64)

    def to_bytes(self) -> bytes:
        self._check_fitted(self.model_)
        payload = self.model_ if self.platt_ is None else {"model": self.model_,
                                                           "platt": vars(self.platt_)}
        return pickle.dumps(payload, protocol=pickle.HIGHEST_PROTOCOL)

    @classmethod
    def from_bytes(cls, data: bytes, params: dict[str, Any]) -> Self:
        model = cls(**params)
        payload = pickle.loads(data)  # only after load_artifact verified the artifact's HMAC
        if isinstance(payload, dict) and "model" in payload:
            model.model_ = payload["model"]
            model.platt_ = OnlinePlatt()
            vars(model.platt_).update(payload["platt"])
        else:  # the estimator alone: logistic, or an artifact from before the online map
            model.model_ = payload
        return model


def _logit(p: float) -> float:
    p = min(max(float(p), EPS), 1.0 - EPS)
    return math.log(p / (1.0 - p))


def _sigmoid(z: float) -> float:
    return 1.0 / (1.0 + math.exp(-z)) if z >= 0 else math.exp(z) / (1.0 + math.exp(z))


def _as_dict(x_row: np.ndarray) -> dict[int, float]:
    return dict(enumerate(np.asarray(x_row, dtype=np.float64).ravel().tolist()))


def _p_up(proba: dict[bool, float]) -> float:
    """P(True) from River's class dict; a tree that has seen one class only omits the other."""
    if True in proba:
        return float(proba[True])
    return 1.0 - float(proba.get(False, 0.5))
