"""The HMM regime family: causal filtered probabilities, stable regime names, quiet logging."""

from __future__ import annotations

import logging
import warnings
from functools import cache

import numpy as np
import pandas as pd
import pytest

from signalcast.data.synthetic import SyntheticMarket
from signalcast.features import MAX_LOOKBACK, compute_features, feature_names
from signalcast.models import registry
from signalcast.models.families.hmm import HMMModel

ASSET = "ETH/USDT"
N_CANDLES = 3000
# The synthetic market's hidden regimes, in increasing volatility, and the HMM's names for them.
TRUE_TO_NAMED = {"calm": "calm", "bull": "normal", "bear": "turbulent"}


@cache
def market(seed: int = 21) -> tuple[pd.DataFrame, np.ndarray, np.ndarray]:
    """Candles, warm feature rows and the true hidden regime of each row."""
    synthetic = SyntheticMarket([ASSET], seed=seed)
    candles = synthetic.generate(MAX_LOOKBACK + N_CANDLES)[ASSET]
    regimes = synthetic.regimes(MAX_LOOKBACK + N_CANDLES).to_numpy()[MAX_LOOKBACK:]
    return candles, compute_features(candles).to_numpy()[MAX_LOOKBACK:], regimes


def labels_for(rows: np.ndarray) -> np.ndarray:
    """Any two-class labels: the regime model's fit only needs them for its up-rates."""
    return (np.arange(len(rows)) % 3 == 0).astype(np.int8)


@cache
def fitted(seed: int = 0) -> HMMModel:
    _, X, _ = market()
    return HMMModel(seed=seed).fit(X, labels_for(X), feature_names=feature_names())


@pytest.mark.slow
def test_regime_probabilities_do_not_change_when_later_candles_change():
    candles, X, _ = market()
    model = fitted()
    t = 1500  # feature row t is candle MAX_LOOKBACK + t
    changed = candles.copy()
    later = changed.index[MAX_LOOKBACK + t + 1:]
    shock = np.exp(np.random.default_rng(1).normal(0, 0.03, len(later)))
    changed.loc[later, ["open", "high", "low", "close"]] *= shock[:, None]
    X_changed = compute_features(changed).to_numpy()[MAX_LOOKBACK:]

    before, after = model.regime_probabilities(X), model.regime_probabilities(X_changed)
    np.testing.assert_array_equal(after[: t + 1], before[: t + 1])
    assert np.abs(after[t + 1:] - before[t + 1:]).max() > 0.1  # the change was visible later


def test_one_row_alone_gives_its_regime_probabilities():
    _, X, _ = market()
    model = fitted()
    batch = model.regime_probabilities(X)
    for i in (0, 777, len(X) - 1):
        np.testing.assert_allclose(model.regime_probabilities(X[i:i + 1])[0], batch[i],
                                   rtol=0, atol=1e-12)
    np.testing.assert_allclose(batch.sum(axis=1), 1.0)


@pytest.mark.slow
def test_regimes_are_named_by_volatility_and_stable_across_seeds():
    _, X, _ = market()
    models = [fitted(seed) for seed in (0, 1, 2)]
    named = []
    for model in models:
        assert model.regime_names == ("calm", "normal", "turbulent")
        assert np.all(np.diff(model.volatility_) > 0)
        named.append(model.regime_probabilities(X).argmax(axis=1))
    for other in named[1:]:
        assert np.mean(other == named[0]) > 0.95
    np.testing.assert_allclose(models[1].volatility_, models[0].volatility_, rtol=0.05)


def test_filtered_regimes_recover_the_hidden_market_regimes():
    _, X, truth = market()
    model = fitted()
    found = np.array(model.regime_names)[model.regime_probabilities(X).argmax(axis=1)]
    expected = np.array([TRUE_TO_NAMED[name] for name in truth])
    assert np.mean(found == expected) > 0.8


@pytest.mark.slow
def test_up_rates_follow_the_training_labels_per_regime():
    _, X, truth = market()
    y = (truth == "bear").astype(np.int8)  # UP exactly in the turbulent regime
    model = HMMModel(seed=0).fit(X, y, feature_names=feature_names())
    assert model.up_rate_.argmax() == model.regime_names.index("turbulent")
    assert model.up_rate_.max() > 0.7 and model.up_rate_.min() < 0.1
    assert np.corrcoef(model.predict_proba(X), y)[0, 1] > 0.7


def test_rows_with_missing_inputs_get_the_stationary_distribution():
    _, X, _ = market()
    model = fitted()
    row = X[:1].copy()
    row[0, feature_names().index("rv_168")] = np.nan
    np.testing.assert_allclose(model.regime_probabilities(row)[0], model._stationary)
    assert 0 <= model.predict_proba(row)[0] <= 1


def test_non_convergence_is_logged_at_debug_and_never_warned(caplog):
    _, X, _ = market()
    with caplog.at_level(logging.DEBUG), warnings.catch_warnings():
        warnings.simplefilter("error")
        HMMModel(seed=0, n_iter=2, n_restarts=2).fit(X, labels_for(X),
                                                     feature_names=feature_names())
    ours = [r for r in caplog.records if r.name == "signalcast.models.families.hmm"]
    assert len(ours) == 2 and all("converged: False" in r.getMessage() for r in ours)
    assert all(r.levelno == logging.DEBUG for r in caplog.records if "hmm" in r.name)


def test_missing_feature_columns_are_named_in_the_error():
    _, X, _ = market()
    names = [name if name != "rv_168" else "something_else" for name in feature_names()]
    with pytest.raises(ValueError, match="rv_168"):
        HMMModel().fit(X, labels_for(X), feature_names=names)


def test_fit_without_names_reads_the_current_feature_set():
    _, X, _ = market()
    plain = HMMModel(seed=0).fit(X, labels_for(X))
    np.testing.assert_array_equal(plain.predict_proba(X), fitted().predict_proba(X))


def test_hybrid_gives_lightgbm_the_regime_probabilities_as_extra_columns():
    _, X, _ = market()
    hybrid = registry.create("hmm_lightgbm", hmm={"n_restarts": 2},
                             lightgbm={"n_estimators": 20})
    hybrid.fit_with_feature_names(X, labels_for(X), feature_names())
    assert hybrid.lightgbm_.booster_.num_feature() == X.shape[1] + 3
    assert hybrid.feature_names_ == feature_names()


def test_hybrid_rejects_a_seed_inside_its_parts():
    with pytest.raises(ValueError, match="one seed"):
        registry.create("hmm_lightgbm", hmm={"seed": 4})


def test_the_range_tells_the_regimes_apart_better_than_returns_alone():
    _, X, truth = market()
    expected = np.array([TRUE_TO_NAMED[name] for name in truth])
    recovered = {}
    for use_range in (False, True):
        model = HMMModel(seed=0, range_emission=use_range).fit(X, labels_for(X),
                                                               feature_names=feature_names())
        assert (model.range_mean_.size > 0) is use_range
        found = np.array(model.regime_names)[model.regime_probabilities(X).argmax(axis=1)]
        recovered[use_range] = np.mean(found == expected)
    assert recovered[True] > recovered[False] + 0.02
    assert recovered[True] > 0.9


def test_candles_without_a_range_fit_on_returns_alone(caplog):
    candles, _, _ = market()
    flat = candles.copy()
    flat["high"] = flat["low"] = flat["close"]  # close-only data: every high equals its low
    X = compute_features(flat).to_numpy()[MAX_LOOKBACK:]
    X = np.nan_to_num(X)  # the ratios of a zero range are NaN; the HMM does not read them
    with caplog.at_level(logging.INFO, logger="signalcast.models.families.hmm"):
        model = HMMModel(seed=0, n_restarts=2).fit(X, labels_for(X),
                                                   feature_names=feature_names())
    assert model.range_mean_.size == 0
    assert "no usable range (0 of" in caplog.text
    again = HMMModel.from_bytes(model.to_bytes(), model.get_params())
    np.testing.assert_array_equal(again.predict_proba(X), model.predict_proba(X))


def test_unlabelled_rows_shape_the_regimes_but_not_the_up_rates():
    _, X, _ = market()
    y = np.where(np.arange(len(X)) % 2 == 0, 1, -1).astype(np.int8)  # labelled rows all UP
    model = HMMModel(seed=0).fit(X, y, feature_names=feature_names())
    assert np.all(model.up_rate_ > 0.99)  # the -1 rows did not count as DOWN (0.5 if they had)
    np.testing.assert_array_equal(model.transmat_, fitted().transmat_)  # the same regimes
    with pytest.raises(ValueError, match="0 .DOWN first. or 1 .UP first.$"):
        registry.create("lightgbm").fit(X, y)  # families that take labels only refuse -1


def test_hybrid_fits_its_regimes_on_unlabelled_rows_and_its_trees_on_labelled_ones():
    _, X, _ = market()
    y = labels_for(X).copy()
    y[1::4] = -1
    hybrid = registry.create("hmm_lightgbm", hmm={"n_restarts": 2},
                             lightgbm={"n_estimators": 20})
    hybrid.fit_with_feature_names(X, y, feature_names())  # LightGBM refuses a -1 label
    alone = HMMModel(seed=0, n_restarts=2).fit(X, y, feature_names=feature_names())
    np.testing.assert_array_equal(hybrid.hmm_.transmat_, alone.transmat_)
    assert hybrid.lightgbm_.booster_.num_trees() > 0
    assert 0 <= hybrid.predict_proba(X).min() <= hybrid.predict_proba(X).max() <= 1


def test_up_rates_are_regressed_not_averaged_where_the_regimes_are_uncertain():
    """Rows whose regime probabilities are the true posteriors: the regression finds each
    regime's up-rate; probability-weighted label means are pulled toward the average."""
    from signalcast.models.families.hmm import _up_rates

    rng = np.random.default_rng(5)
    probs = rng.dirichlet([0.7, 0.7, 0.7], size=40_000)  # often unsure between regimes
    truth = np.array([0.2, 0.5, 0.85])
    y = (rng.random(len(probs)) < probs @ truth).astype(np.float64)
    np.testing.assert_allclose(_up_rates(probs, y, 20.0), truth, atol=0.03)
    averaged = probs.T @ y / probs.sum(axis=0)
    assert averaged[0] > truth[0] + 0.05 and averaged[2] < truth[2] - 0.05
