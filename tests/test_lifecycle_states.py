"""Online models that can be audited: each batch an online model learns is appended as a new,
signed state (the trained artifact kept as state 0), each prediction names the state that made
it, and a past prediction is reproduced exactly from that state after the model moved on."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlmodel import select

from signalcast.core.errors import ArtifactError
from signalcast.core.timeframes import last_closed_open_time
from signalcast.db.engine import session_scope
from signalcast.db.tables import ModelState, ModelVersion, Prediction
from signalcast.lifecycle.states import load_state, purge_states, reproduce, states
from signalcast.models.artifact import ArtifactIdentity, load_artifact
from signalcast.pipeline.learn import learn_from_outcomes
from tests.test_online import add_outcomes, version
from tests.test_routing import BTC, T1, add_version, make_env, predict, register_test_families


def prediction_at(engine, version_id: int, candle) -> Prediction:
    with session_scope(engine, readonly=True) as session:
        return session.exec(select(Prediction).where(
            Prediction.model_version_id == version_id, Prediction.candle_time == candle)).one()


@pytest.mark.slow
def test_a_past_prediction_is_reproduced_exactly_from_the_state_that_made_it(db_url, tmp_path,
                                                                             monkeypatch):
    register_test_families(monkeypatch)
    # each call learns what resolved by then (no batching wait): two calls, two states
    engine, settings, now = make_env(db_url, tmp_path, days=12,
                                     routing={"learn_every_candles": 1})
    newest = last_closed_open_time(now, "1h")
    trained_until = newest - timedelta(hours=80)
    river = add_version(engine, "river", role="champion", train_end=trained_until)
    trained = version(engine, river.id)
    first = [trained_until + timedelta(hours=h) for h in range(1, 31)]
    later = [trained_until + timedelta(hours=h) for h in range(31, 61)]
    learned_by = now - timedelta(hours=6)
    add_outcomes(engine, [(t, h % 2, learned_by) for h, t in enumerate(first)]
                 + [(t, int(h % 3 == 0), now) for h, t in enumerate(later)])

    assert learn_from_outcomes(engine, settings, BTC, learned_by).learned == {
        f"{T1} river v1": 30}
    candle_a = newest - timedelta(hours=3)
    predict(engine, settings, candle_a)  # served by state 1
    assert learn_from_outcomes(engine, settings, BTC, now).learned == {f"{T1} river v1": 30}
    predict(engine, settings, newest)  # served by state 2

    with session_scope(engine, readonly=True) as session:
        kept = states(session, river.id)
        row = session.get(ModelVersion, river.id)
        # appended, never overwritten: the trained artifact is state 0, bytes and MAC unchanged
        assert [s.state for s in kept] == [0, 1, 2]
        assert [s.learned for s in kept] == [0, 30, 60]
        assert (kept[0].sha256, kept[0].artifact, kept[0].artifact_mac) == (
            trained.sha256, trained.artifact, trained.artifact_mac)
        assert len({s.sha256 for s in kept}) == 3
        assert (row.sha256, row.artifact) == (kept[2].sha256, kept[2].artifact)  # it serves 2
        # every state is signed like an artifact: it loads (MAC verified) as this version ...
        for state in kept:
            load_state(session, row, state.sha256, settings.artifact_keys)
        # ... and under no other identity
        other = ArtifactIdentity(row.family, row.asset, row.target, row.version + 1)
        with pytest.raises(ArtifactError, match="failed authentication"):
            load_artifact(kept[1].artifact, kept[1].sha256, mac=kept[1].artifact_mac,
                          identity=other, keys=settings.artifact_keys)

    past, current = prediction_at(engine, river.id, candle_a), prediction_at(engine, river.id,
                                                                              newest)
    assert past.served and (past.model_sha256, current.model_sha256) == (kept[1].sha256,
                                                                          kept[2].sha256)
    with session_scope(engine, readonly=True) as session:
        assert reproduce(session, settings, past) == (past.prob_up, past.prob_down)  # exactly
        assert reproduce(session, settings, current) == (current.prob_up, current.prob_down)
        # the model moved on: today's state says something else about the past candle
        moved = load_state(session, row, kept[2].sha256, settings.artifact_keys)
        from signalcast.db.candles import read_candles
        from signalcast.features import MAX_LOOKBACK, latest_features
        from signalcast.routing.router import model_output
        candles = read_candles(session, BTC, "1h", end=candle_a, limit=MAX_LOOKBACK + 1)
        now_says = model_output(moved, latest_features(candles, "1h").reshape(1, -1))
        assert now_says.p_up != pytest.approx(past.prob_up, abs=1e-9)

    # retention: a purged version keeps the bytes of every state that served a prediction
    with session_scope(engine) as session:
        assert purge_states(session, river.id) == 1  # state 0 served nothing
    with session_scope(engine, readonly=True) as session:
        bytes_kept = {s.state: s.artifact is not None for s in session.exec(
            select(ModelState).where(ModelState.model_version_id == river.id))}
        assert bytes_kept == {0: False, 1: True, 2: True}
        assert reproduce(session, settings, past) == (past.prob_up, past.prob_down)


def test_river_trees_calibrate_themselves_online_prequentially():
    """A tree variant serves its forecasts through an online Platt map learned on the tree's
    forecasts made before each outcome (every outcome, warm start included); the served
    forecast tracks the truth (here P(up) = 0.7 whatever the features), and the map survives
    a round trip through bytes. The logistic variant has none (calibrated by its loss)."""
    import numpy as np

    from signalcast.models import registry

    rng = np.random.default_rng(0)
    X = rng.normal(size=(3000, 4))
    y = (rng.random(3000) < 0.7).astype(int)
    model = registry.create("river", variant="hoeffding", grace_period=50).fit(X[:200], y[:200])
    for x, label in zip(X[200:], y[200:], strict=True):
        model.learn_one(x, label)
    served = model.predict_proba(X[:500])
    assert abs(float(np.mean(served)) - 0.7) < 0.05
    assert model.platt_.n == 3000
    again = type(model).from_bytes(model.to_bytes(), model.get_params())
    np.testing.assert_array_equal(again.predict_proba(X[:50]), served[:50])
    logistic = registry.create("river").fit(X[:200], y[:200])
    assert logistic.platt_ is None  # log-loss SGD: calibrated by its own loss
