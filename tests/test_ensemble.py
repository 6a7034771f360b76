"""Ensemble families: weight optimisation on walk-forward out-of-fold predictions, stacking's
purged out-of-fold arithmetic, conflict detection up to the alert payload, the AlphaPulse
batch/online blend. The shared contract (tests/test_model_contract.py) runs on them too."""

from __future__ import annotations

from datetime import timedelta

import numpy as np
import pytest
from sqlmodel import select

from signalcast.core.errors import UnknownNameError
from signalcast.core.timeframes import last_closed_open_time
from signalcast.db.engine import session_scope
from signalcast.db.tables import AlertOutbox
from signalcast.ensemble import conflicts
from signalcast.ensemble.weighted import ALPHAPULSE_BLEND, log_loss, optimise_weights
from signalcast.models import registry
from signalcast.models.base import SignalModel, pack_arrays, unpack_arrays
from tests.test_routing import (
    BTC,
    T1,
    add_version,
    make_env,
    predict,
    register_test_families,
    rows_at,
)

# -- test families ---------------------------------------------------------------------------------


class ColumnLogit(SignalModel):
    """Logistic regression on one column of X: a member that sees only part of the data."""

    family = "column_logit"

    def __init__(self, *, seed: int = 0, column: int = 0):
        super().__init__(seed=seed, column=column)
        self.coef_: np.ndarray | None = None

    def fit(self, X, y):
        from sklearn.linear_model import LogisticRegression

        X, y = self._check_fit_input(X, y)
        lr = LogisticRegression().fit(X[:, [self.params["column"]]], y)
        self.coef_ = np.array([lr.intercept_[0], lr.coef_[0, 0]])
        return self

    def predict_proba(self, X):
        self._check_fitted(self.coef_)
        z = self.coef_[0] + self.coef_[1] * np.asarray(X, dtype=float)[:, self.params["column"]]
        return 1.0 / (1.0 + np.exp(-z))

    def to_bytes(self) -> bytes:
        return pack_arrays({"coef": self.coef_})

    @classmethod
    def from_bytes(cls, data, params):
        model = cls(**params)
        model.coef_ = unpack_arrays(data)[0]["coef"]
        return model


class SpyModel(ColumnLogit):
    """Records the row ids (column 0 of X) it is fitted on and asked about, per instance."""

    family = "spy"
    log: list[tuple[int, str, np.ndarray]] = []

    def __init__(self, *, seed: int = 0, column: int = 1):
        super().__init__(seed=seed, column=column)

    def fit(self, X, y):
        type(self).log.append((id(self), "fit", np.asarray(X)[:, 0].astype(int)))
        return super().fit(X, y)

    def predict_proba(self, X):
        type(self).log.append((id(self), "predict", np.asarray(X)[:, 0].astype(int)))
        return super().predict_proba(X)


@pytest.fixture
def ensemble_families(monkeypatch):
    register_test_families(monkeypatch)
    monkeypatch.setitem(registry.BUILTIN, "column_logit", "tests.test_ensemble:ColumnLogit")
    monkeypatch.setitem(registry.BUILTIN, "spy", "tests.test_ensemble:SpyModel")


def planted(n: int, seed: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Column 0: row id; column 1: the signal (P(UP) = sigmoid(2 x)); column 2: noise."""
    rng = np.random.default_rng(seed)
    signal, noise = rng.normal(size=n), rng.normal(size=n)
    y = (rng.random(n) < 1 / (1 + np.exp(-2 * signal))).astype(np.int8)
    return np.column_stack([np.arange(n), signal, noise]), y


# -- weighted --------------------------------------------------------------------------------------


def test_optimised_weights_beat_equal_weights_out_of_sample(ensemble_families):
    X, y = planted(1600)
    members = [{"family": "column_logit", "params": {"column": 1}},
               {"family": "column_logit", "params": {"column": 2}}]
    fit, test = slice(0, 1100), slice(1100, None)
    optimised = registry.create("weighted_ensemble", members=members, horizon=10,
                                folds=3).fit(X[fit], y[fit])
    equal = registry.create("weighted_ensemble", members=members, weights=[1, 1],
                            horizon=10, folds=3).fit(X[fit], y[fit])

    assert optimised.weights_[0] > 0.9  # the informative member gets the weight
    assert optimised.oof_log_loss_["weighted"] < optimised.oof_log_loss_["equal"]
    held_out = log_loss(y[test], optimised.predict_proba(X[test]))
    assert held_out < log_loss(y[test], equal.predict_proba(X[test])) - 0.02
    np.testing.assert_allclose(equal.weights_, [0.5, 0.5])


def test_optimise_weights_stays_on_the_simplex_and_never_loses_to_equal_weights():
    rng = np.random.default_rng(3)
    y = (rng.random(500) < 0.5).astype(float)
    good = np.clip(y * 0.6 + 0.2 + rng.normal(0, 0.05, 500), 0.01, 0.99)
    probs = np.column_stack([good, rng.random(500), np.full(500, 0.5)])
    weights = optimise_weights(probs, y)
    assert weights.min() >= 0 and weights.sum() == pytest.approx(1.0)
    assert log_loss(y, probs @ weights) <= log_loss(y, probs.mean(axis=1))
    assert weights[0] == weights.max()


def test_conflict_needs_one_member_confident_up_and_another_confident_down():
    flags = conflicts(np.array([[0.62, 0.38, 0.5], [0.62, 0.41, 0.5], [0.9, 0.8, 0.7],
                                [0.3, 0.2, 0.7]]), 0.1)
    assert flags.tolist() == [True, False, False, True]


@pytest.mark.slow
def test_alphapulse_blend_mixes_batch_and_online_eight_to_two_and_keeps_learning():
    X, y = planted(700)
    blend = registry.create("weighted_ensemble", **ALPHAPULSE_BLEND, horizon=10, folds=2)
    blend.fit(X[:600], y[:600])
    p, _flags, members = blend.predict_with_details(X[600:])

    np.testing.assert_allclose(blend.weights_, [0.8, 0.2])
    np.testing.assert_allclose(p, 0.8 * members[:, 0] + 0.2 * members[:, 1])
    assert blend.learns_online
    before = blend.predict_proba(X[600:])
    for row, label in zip(X[600:650], y[600:650], strict=True):
        blend.learn_one(row, int(label))
    after = blend.predict_proba(X[600:])
    assert not np.array_equal(before, after)  # the River member learned, LightGBM did not
    np.testing.assert_array_equal(blend.members_[0].predict_proba(X[600:]),
                                  registry.family_class("lightgbm").from_bytes(
                                      blend.members_[0].to_bytes(), {}).predict_proba(X[600:]))
    loaded = type(blend).from_bytes(blend.to_bytes(), blend.get_params())
    np.testing.assert_array_equal(loaded.predict_proba(X[600:]), after)


def test_ensembles_reject_bad_members_when_created():
    with pytest.raises(UnknownNameError, match="Did you mean 'lightgbm'"):
        registry.create("weighted_ensemble", members=["lightgbn"])
    with pytest.raises(ValueError, match="2 weights for 1 members"):
        registry.create("weighted_ensemble", members=["lightgbm"], weights=[1, 2])
    with pytest.raises(ValueError, match="ensemble's seed"):
        registry.create("stacking_ensemble", members=[{"family": "xgboost",
                                                       "params": {"seed": 3}}])
    with pytest.raises(ValueError, match="family name or"):
        registry.create("stacking_ensemble", members=[{"name": "xgboost"}])


# -- stacking --------------------------------------------------------------------------------------


def test_stacking_oof_fits_end_a_horizon_before_every_row_they_predict(ensemble_families):
    X, y = planted(900)
    spy = registry.family_class("spy")
    spy.log.clear()
    horizon = 30
    model = registry.create("stacking_ensemble", members=["spy", "spy"], horizon=horizon,
                            folds=3, min_fit_rows=60).fit(X, y)

    plan = model.oof_.plan
    assert len(plan.folds) == 3
    for fold in plan.folds:  # the plan: training rows end `horizon` rows before the block
        trained = np.concatenate([fold.fit, fold.calibration])
        assert trained.max() + horizon < fold.block.start <= fold.test.min()
        assert fold.calibration.min() > fold.fit.max() + horizon
    for earlier, later in zip(plan.folds, plan.folds[1:], strict=False):  # the embargo
        embargoed = np.arange(earlier.block.stop, earlier.block.stop + horizon)
        assert not np.isin(np.concatenate([later.fit, later.calibration]), embargoed).any()
    np.testing.assert_array_equal(model.oof_.rows, plan.test_rows)

    # what the members really saw: every prediction made during fit is of rows at least
    # `horizon` rows after everything that instance was fitted on (an instance's predictions
    # follow its fit in the log; ids of collected instances may be reused by later ones)
    fitted_on = {}
    for instance, kind, rows in spy.log:
        if kind == "fit":
            fitted_on[instance] = rows
        else:
            assert rows.min() > fitted_on[instance].max() + horizon
    refits = [rows for _, kind, rows in spy.log if kind == "fit" and len(rows) == len(X)]
    assert len(refits) == 2  # each member is refitted on every row at the end
    assert sum(kind == "fit" for _, kind, _ in spy.log) == 2 * 3 + 2  # 3 folds, 2 refits
    assert model.coef_.shape == (2,) and np.isfinite(model.intercept_)


def test_stacking_weights_are_never_negative_and_otherwise_the_free_logistic_fit():
    """The meta-learner is scikit-learn's L2 logistic regression with every member weight held at
    zero or above: where the free fit's weights are positive the two agree; a member that ranks
    backwards gets weight 0 instead of turning its ranking upside down."""
    from sklearn.linear_model import LogisticRegression

    from signalcast.ensemble.stacking import _non_negative_logistic

    rng = np.random.default_rng(4)
    signal = rng.normal(size=4000)
    y = (signal + rng.logistic(size=4000) > 0).astype(np.int8)
    good = np.column_stack([signal + rng.normal(scale=s, size=4000) for s in (0.5, 1.0)])
    free = LogisticRegression(C=1.0, max_iter=1000).fit(good, y)
    assert (free.coef_ > 0).all()
    coef, intercept = _non_negative_logistic(good, y, 1.0)
    np.testing.assert_allclose(coef, free.coef_[0], atol=1e-4)
    assert intercept == pytest.approx(free.intercept_[0], abs=1e-4)

    backwards = np.column_stack([good, -signal + rng.normal(size=4000)])
    assert LogisticRegression(C=1.0, max_iter=1000).fit(backwards, y).coef_[0, 2] < 0
    coef, _ = _non_negative_logistic(backwards, y, 1.0)
    assert coef[2] == 0.0 and (coef[:2] > 0).all()


def test_stacking_without_enough_rows_averages_member_log_odds(ensemble_families):
    X, y = planted(40)
    model = registry.create("stacking_ensemble", members=["column_logit", "spy"],
                            horizon=24).fit(X, y)
    assert model.oof_ is None
    np.testing.assert_allclose(model.coef_, [0.5, 0.5])
    raw = np.column_stack([m.predict_proba(X) for m in model.members_])
    logits = np.log(raw / (1 - raw)).mean(axis=1)
    np.testing.assert_allclose(model.predict_proba(X), 1 / (1 + np.exp(-logits)))


# -- conflict in the alert -------------------------------------------------------------------------


def test_conflict_flag_reaches_the_alert_payload(db_url, tmp_path, ensemble_families):
    engine, settings, now = make_env(db_url, tmp_path)
    ensemble = add_version(
        engine, "weighted_ensemble", role="champion", calibrate_members=False,
        members=[{"family": "const", "params": {"p": 0.9}},
                 {"family": "const_b", "params": {"p": 0.1}}], weights=[0.9, 0.1])
    candle = last_closed_open_time(now, "1h")
    result = predict(engine, settings, candle)

    assert rows_at(engine, candle)[ensemble.id].prob_up == pytest.approx(0.82)
    assert result.conflicts == [T1]
    with session_scope(engine, readonly=True) as session:
        signal = session.exec(select(AlertOutbox).where(AlertOutbox.kind == "signal")).one()
    assert signal.payload["conflict"] is True and signal.payload["direction"] == "UP"
    assert signal.payload["model"] == "weighted_ensemble v1" and signal.asset == BTC
    # members that agree raise no flag
    agreeing = add_version(
        engine, "weighted_ensemble", role="champion", calibrate_members=False,
        members=[{"family": "const", "params": {"p": 0.9}},
                 {"family": "const_b", "params": {"p": 0.7}}], weights=[0.5, 0.5])
    later = predict(engine, settings, candle - timedelta(hours=1))
    assert later.conflicts == []
    assert later.served[T1] == f"weighted_ensemble v{agreeing.version} (champion)"
