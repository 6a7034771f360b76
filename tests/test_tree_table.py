"""A loaded XGBoost model predicts a tick's row through its trees as numpy arrays
(``models.tree_table``); the library is the reference: same probabilities on real and edge rows,
and a model the arrays cannot read is served by the library."""

from __future__ import annotations

import dataclasses
import logging

import numpy as np
import xgboost as xgb

from signalcast.models import registry
from signalcast.models.families.xgboost import XGBoostModel
from signalcast.models.tree_table import (
    SMALL_BATCH,
    checked_table,
    probe_rows,
    xgboost_table,
)


def rows(n: int = 4000, d: int = 12, seed: int = 4) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d))
    X[rng.random(X.shape) < 0.03] = np.nan  # missing values take a node's default direction
    signal = np.nan_to_num(X[:, 0]) - 0.5 * np.nan_to_num(X[:, 3])
    y = (signal + rng.logistic(size=n) > 0).astype(np.int8)
    return X, y


def loaded(model: XGBoostModel) -> XGBoostModel:
    return XGBoostModel.from_bytes(model.to_bytes(), model.params)


def test_a_loaded_model_serves_one_row_through_its_table_as_the_library_would():
    X, y = rows()
    model = loaded(registry.create("xgboost", n_estimators=200, horizon=72).fit(X, y))
    assert model.table_ is not None
    library = model._library_predict(X)
    one_at_a_time = np.concatenate([model.predict_proba(X[i:i + 1]) for i in range(300)])
    assert np.max(np.abs(one_at_a_time - library[:300])) < 1e-6
    # rows on, just above and just below the thresholds, unseen in training
    edges = probe_rows(model.table_, X.shape[1], count=3000, seed=9)
    assert np.max(np.abs(model.table_.predict_proba(edges) - model._library_predict(edges))) \
        < 1e-6
    # more rows than a tick's: the library itself (faster there), bit for bit
    assert np.array_equal(model.predict_proba(X[:SMALL_BATCH + 1]), library[:SMALL_BATCH + 1])


def test_a_table_that_disagrees_with_the_library_is_refused(caplog):
    X, y = rows()
    booster = registry.create("xgboost", n_estimators=30).fit(X, y).booster_
    table = xgboost_table(booster)
    flipped = dataclasses.replace(table, default_left=~table.default_left)
    with caplog.at_level(logging.WARNING):
        kept = checked_table(lambda: flipped, booster.inplace_predict, X.shape[1], "xgboost")
    assert kept is None
    assert "differs from the library" in caplog.text
    # the true table passes the same check
    assert checked_table(lambda: table, booster.inplace_predict, X.shape[1], "xgboost") is table


def test_a_booster_the_arrays_cannot_read_is_served_by_the_library():
    X, y = rows(n=1500)
    dart = xgb.train({"booster": "dart", "objective": "binary:logistic", "rate_drop": 0.1,
                      "nthread": 1}, xgb.DMatrix(X, label=y), num_boost_round=10)
    assert checked_table(lambda: xgboost_table(dart), dart.inplace_predict, X.shape[1],
                         "dart") is None
    multi = xgb.train({"objective": "multi:softprob", "num_class": 3, "nthread": 1},
                      xgb.DMatrix(X, label=y % 3), num_boost_round=5)
    assert checked_table(lambda: xgboost_table(multi), multi.inplace_predict, X.shape[1],
                         "multi") is None
