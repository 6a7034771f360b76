"""The River logistic family's SGD step: a forecast made of signal, not of the optimizer's noise.

Rows like a market's: 67 standardised features, a weak signal on five of them, and outcomes that
share a shock in blocks of 72 rows (overlapping 72-candle outcomes). River's own default step
(0.01) leaves the weights wandering so far that the forecast is mostly the order in which the
rows were learned (``models/families/river.py``: ``_weights_step``)."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from signalcast.models import registry

N_FEATURES, BLOCK = 67, 72


def market_like_rows(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, N_FEATURES))
    w = np.zeros(N_FEATURES)
    w[:5] = 0.08  # a weak signal: its forecasts spread by about 0.2 logits
    shared = np.repeat(rng.normal(size=n // BLOCK + 1), BLOCK)[:n]  # one shock per block
    y = (X @ w + shared + 0.5 * rng.logistic(size=n) > 0).astype(np.int8)
    return X, y


def logit(p: np.ndarray) -> np.ndarray:
    return np.log(p / (1.0 - p))


@pytest.mark.parametrize(("params", "noise_share"), [({}, (0.0, 0.2)),
                                                     ({"learning_rate": 0.01}, (0.8, 1.0))])
def test_the_forecast_depends_on_the_rows_not_on_the_order_they_were_learned(params, noise_share):
    """Two fits on the same rows in two orders: what differs between them is the optimizer's
    noise. With the default step it is a small part of the forecast's spread; with 0.01 it is
    nearly all of it."""
    X, y = market_like_rows(6000, seed=0)
    X_new, _ = market_like_rows(2000, seed=50)
    order = np.random.default_rng(1).permutation(len(X))
    a = logit(registry.create("river", **params).fit(X, y).predict_proba(X_new))
    b = logit(registry.create("river", **params).fit(X[order], y[order]).predict_proba(X_new))
    noise = np.std(a - b) / np.sqrt(2)  # one fit's own share of the difference
    low, high = noise_share
    assert low <= noise / np.std(a) <= high


def test_the_default_step_ranks_and_scores_better_than_rivers_own_default():
    for seed in range(3):
        X, y = market_like_rows(6000, seed=seed)
        X_new, y_new = market_like_rows(3000, seed=100 + seed)
        default = registry.create("river").fit(X, y).predict_proba(X_new)
        noisy = registry.create("river", learning_rate=0.01).fit(X, y).predict_proba(X_new)
        assert roc_auc_score(y_new, default) > max(0.53, roc_auc_score(y_new, noisy))
        assert np.mean((default - y_new) ** 2) < np.mean((noisy - y_new) ** 2)


@pytest.mark.parametrize("bad", [0, -0.01])
def test_a_step_that_is_not_positive_is_refused_with_what_to_set(bad):
    with pytest.raises(ValueError, match="learning_rate must be a positive step"):
        registry.create("river", learning_rate=bad)
