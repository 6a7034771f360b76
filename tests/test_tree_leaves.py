"""Boosted trees' leaves hold several independent outcomes: with labels ``horizon`` candles long,
a leaf of ``leaf_outcomes * horizon`` rows at least (``models.base.leaf_rows``), and training
gives every family that takes one the target's horizon."""

from __future__ import annotations

import numpy as np
import pytest

from signalcast.config import load_settings
from signalcast.lifecycle.evidence import family_params
from signalcast.models import registry
from signalcast.models.base import leaf_rows


def rows(n: int = 3000, seed: int = 2) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 8))
    y = (X[:, 0] + 0.5 * rng.logistic(size=n) > 0).astype(np.int8)
    return X, y


def lightgbm_leaf_counts(model) -> list[int]:
    counts = []

    def walk(node: dict) -> None:
        if "leaf_count" in node:
            counts.append(node["leaf_count"])
        else:
            walk(node["left_child"])
            walk(node["right_child"])

    for tree in model.booster_.dump_model()["tree_info"]:
        walk(tree["tree_structure"])
    return counts


@pytest.mark.parametrize("horizon", [1, 72])
def test_lightgbm_leaves_hold_five_horizons_of_rows(horizon):
    X, y = rows()
    # no bagging: the dump counts a leaf's rows of the full training set
    model = registry.create("lightgbm", n_estimators=20, horizon=horizon, subsample=1.0,
                            colsample=1.0).fit(X, y)
    least = max(40, leaf_rows(horizon))  # min_child_samples 40 stays the floor
    counts = lightgbm_leaf_counts(model)
    assert least <= min(counts) < least * 1.5  # the limit binds


@pytest.mark.parametrize("horizon", [1, 72])
def test_xgboost_leaves_weigh_five_horizons_of_rows(horizon):
    X, y = rows()
    model = registry.create("xgboost", n_estimators=20, horizon=horizon).fit(X, y)
    trees = model.booster_.trees_to_dataframe()
    leaves = trees[trees["Feature"] == "Leaf"]
    # Cover is the hessian sum p(1-p) of the leaf's rows: at most a quarter of its rows
    assert leaves["Cover"].min() >= max(5.0, leaf_rows(horizon) / 4) - 1e-6


def test_hmm_lightgbm_passes_its_horizon_to_its_trees():
    model = registry.create("hmm_lightgbm", horizon=72)
    assert model.get_params()["lightgbm"]["horizon"] == 72
    assert registry.create("hmm_lightgbm", horizon=72,
                           lightgbm={"horizon": 24}).get_params()["lightgbm"]["horizon"] == 24


def test_training_gives_each_family_that_takes_one_the_targets_horizon():
    settings = load_settings(None)
    for family in ("lightgbm", "xgboost", "hmm_lightgbm", "stacking_ensemble"):
        assert family_params(settings, family, 72)["horizon"] == 72
    assert "horizon" not in family_params(settings, "random_forest", 72)
    members = registry.create("stacking_ensemble", horizon=72,
                              members=["lightgbm", "xgboost", "hmm"]).member_specs
    assert [m["params"].get("horizon") for m in members] == [72, 72, None]  # hmm takes none


@pytest.mark.parametrize("bad", [{"horizon": 0}, {"leaf_outcomes": -1}])
def test_a_bad_horizon_or_leaf_size_is_refused_when_the_model_is_made(bad):
    for family in ("lightgbm", "xgboost"):
        with pytest.raises(ValueError, match="horizon must be >= 1 candle and leaf_outcomes"):
            registry.create(family, **bad)
