"""Training by evidence: ``auto`` evaluates the candidate families walk-forward and stores the
chosen one with its held-out figures, benchmarks and skill gate; the served artifact gives
the unconditional three-outcome forecast; ensembles purge at least the target's horizon."""

from __future__ import annotations

import numpy as np
import pytest

from signalcast.config import load_settings
from signalcast.db.engine import init_db
from signalcast.lifecycle.evidence import family_params
from signalcast.lifecycle.train import train_model
from signalcast.models.artifact import load_version
from tests.conftest import SMALL_CONFIG, seed_history, write_config

CANDIDATES = ["lightgbm", "lorentzian"]


def auto_settings(tmp_path, sqlite_url):
    models = {**SMALL_CONFIG["models"], "champion": "auto", "candidates": CANDIDATES,
              "params": {"lightgbm": {"n_estimators": 20}, "lorentzian": {"n_neighbors": 8}}}
    config = write_config(tmp_path / "auto.yaml", {
        "models": models, "training": {**SMALL_CONFIG["training"], "folds": 4,
                                       "bootstrap": 200}})
    return load_settings(config, database_url=sqlite_url, broker_url=None, telegram_token=None)


@pytest.mark.slow
def test_auto_serves_the_candidate_whose_walk_forward_skill_is_surest(tmp_path, sqlite_url):
    settings = auto_settings(tmp_path, sqlite_url)
    engine = init_db(sqlite_url)
    now = seed_history(engine, settings)
    row = train_model(engine, settings, "BTC/USDT", "1pct_24", "auto", now=now)
    m = row.metrics
    # an open skill gate first, then the higher lower bound of the skill, then the skill
    scores = {c["family"]: (c["gate_open"], c["skill_lower"], c["brier_skill"])
              for c in m["selection"]["candidates"]}
    assert set(scores) == set(CANDIDATES) and m["selection"]["mode"] == "auto"
    assert row.family == max(scores, key=scores.get) and row.role == "champion"
    assert m["gate_open"] == scores[row.family][0]
    assert m["purge"] == 24 and m["evaluation"] == "walk-forward"
    for figure, benchmark in (("brier", "brier_ref"), ("auc", "auc_null_mean"),
                              ("hit_rate", "majority_rate"), ("brier3", "brier3_ref")):
        assert m[figure] is not None and m[benchmark] is not None
    assert isinstance(m["gate_open"], bool) and m["gate_reason"]
    assert m["gate_open"] == (m["brier_skill"] > 0 and m["skill_lower"] > 0
                              and m["skill3"] > 0 and m["skill3_lower"] > 0)
    assert m["calibration"]["direction"]["kind"] in ("identity", "sigmoid")
    served = load_version(row, settings.artifact_keys)
    X = np.random.default_rng(0).normal(size=(5, len(served.features)))
    probs = served.predict3(X)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0)
    assert served.three_outcome
    again = train_model(engine, settings, "BTC/USDT", "1pct_24", "auto", now=now)
    assert again.id == row.id  # the same request on the same data: the same version


def test_ensembles_purge_at_least_the_targets_horizon(tmp_path, sqlite_url):
    settings = auto_settings(tmp_path, sqlite_url)
    assert family_params(settings, "stacking_ensemble", 72)["horizon"] == 72
    assert family_params(settings, "weighted_ensemble", 48)["horizon"] == 48
    assert family_params(settings, "lightgbm", 72)["horizon"] == 72  # its leaves: leaf_rows
    assert "horizon" not in family_params(settings, "random_forest", 72)
