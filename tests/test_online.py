"""Online learning from resolved outcomes (each learned once, the update served at once) and drift
on the champion's error stream (notified and one retrain enqueued)."""

from __future__ import annotations

from datetime import timedelta

import numpy as np
import pytest
from sqlmodel import select

from signalcast.core.timeframes import last_closed_open_time
from signalcast.db.engine import session_scope
from signalcast.db.tables import (
    AlertOutbox,
    ModelEvent,
    ModelVersion,
    OnlineLearned,
    Outcome,
    Prediction,
)
from signalcast.db.upsert import upsert
from signalcast.features import FEATURE_SET, feature_names
from signalcast.lifecycle.states import states
from signalcast.models.artifact import load_version
from signalcast.models.calibration import MonotoneCalibrator
from signalcast.pipeline.learn import features_at, learn_from_outcomes
from signalcast.pipeline.predict import predict_asset
from signalcast.tasks.enqueuer import CeleryEnqueuer
from tests.test_routing import BTC, T1, add_version, make_env, register_test_families


def version(engine, version_id: int) -> ModelVersion:
    with session_scope(engine, readonly=True) as session:
        return session.get(ModelVersion, version_id)


def add_outcomes(engine, rows: list[tuple]) -> None:
    """(candle_time, label, resolved_at) rows of BTC 1pct_24."""
    with session_scope(engine) as session:
        upsert(session, Outcome, [{"asset": BTC, "target": T1, "candle_time": t, "label": label,
                                   "bars": 3, "resolved_at": resolved}
                                  for t, label, resolved in rows],
               keys=["asset", "target", "candle_time"])


def test_online_models_learn_each_resolved_outcome_once_and_serve_the_update(db_url, tmp_path,
                                                                             monkeypatch):
    register_test_families(monkeypatch)
    engine, settings, now = make_env(db_url, tmp_path, days=12)
    newest = last_closed_open_time(now, "1h")
    trained_until = newest - timedelta(hours=60)
    baseline = add_version(engine, "river", train_end=trained_until)
    blend = add_version(engine, "weighted_ensemble", role="champion", train_end=trained_until,
                        calibrate_members=False, weights=[0.8, 0.2],
                        members=[{"family": "const", "params": {"p": 0.6}}, {"family": "river"}])
    learnable = [trained_until + timedelta(hours=h) for h in range(1, 41)]
    labels = [h % 3 % 2 for h in range(40)]
    add_outcomes(engine, [(t, y, t + timedelta(hours=5)) for t, y in zip(learnable, labels,
                                                                         strict=True)]
                 + [(trained_until - timedelta(hours=2), 1, trained_until),  # in training
                    (trained_until + timedelta(hours=41), -1, now),  # expired: no direction
                    (trained_until + timedelta(hours=42), 1, now + timedelta(hours=3))])  # later
    before = {v.id: version(engine, v.id) for v in (baseline, blend)}
    with session_scope(engine) as session:  # serve once: the old models are cached now
        predict_asset(session, settings, BTC, newest - timedelta(hours=1))

    first = learn_from_outcomes(engine, settings, BTC, now)
    second = learn_from_outcomes(engine, settings, BTC, now)

    assert first.learned == {f"{T1} river v1": 40, f"{T1} weighted_ensemble v1": 40}
    assert second.learned == {} and second.drifts == [] and second.retrains == []
    with session_scope(engine, readonly=True) as session:
        ledger = session.exec(select(OnlineLearned.model_version_id, OnlineLearned.candle_time)
                              .order_by(OnlineLearned.candle_time)).all()
    assert sorted(ledger) == sorted((v.id, t) for v in (baseline, blend) for t in learnable)
    after = {v.id: version(engine, v.id) for v in (baseline, blend)}
    for vid in after:
        assert after[vid].sha256 != before[vid].sha256
        assert after[vid].metrics["online_learned"] == 40
    assert version(engine, baseline.id).sha256 == after[baseline.id].sha256  # 2nd run: same

    # the stored update is exactly "learn these outcomes, oldest first, on recomputed features"
    with session_scope(engine, readonly=True) as session:
        X = features_at(session, settings.asset(BTC), learnable)
    replay = load_version(before[baseline.id], settings.artifact_keys)
    for x, y in zip(X, labels, strict=True):
        replay.model.learn_one(x, y)
    replay.calibrator = MonotoneCalibrator()  # River serves its own online-calibrated output
    stored = load_version(after[baseline.id], settings.artifact_keys,
                          feature_set=FEATURE_SET, features=feature_names())
    np.testing.assert_array_equal(stored.predict(X), replay.predict(X))

    # the router serves the updated champion at once (cache keyed by version and sha256)
    with session_scope(engine) as session:
        predict_asset(session, settings, BTC, newest)
        served = session.exec(select(Prediction).where(
            Prediction.model_version_id == blend.id, Prediction.candle_time == newest)).one()
    with session_scope(engine, readonly=True) as session:
        x = features_at(session, settings.asset(BTC), [newest])
    updated = load_version(after[blend.id], settings.artifact_keys)
    old = load_version(before[blend.id], settings.artifact_keys)
    assert served.prob_up == pytest.approx(float(updated.predict(x)[0]), abs=1e-12)
    assert served.prob_up != pytest.approx(float(old.predict(x)[0]), abs=1e-9)


def test_online_models_learn_in_batches_once_the_oldest_outcome_waited_a_day(db_url, tmp_path,
                                                                            monkeypatch):
    """Default routing.learn_every_candles (24): an hourly tick does not load, update and store
    the model for each outcome; the outcomes wait until the oldest resolved 23 candles before
    the tick, then all of them are learned as one new state, and the next tick learns none."""

    register_test_families(monkeypatch)
    engine, settings, now = make_env(db_url, tmp_path, days=12)
    assert settings.routing.learn_every_candles == 24
    newest = last_closed_open_time(now, "1h")
    trained_until = newest - timedelta(hours=100)
    river = add_version(engine, "river", role="champion", train_end=trained_until)
    first_resolved = newest - timedelta(hours=40)
    # one outcome resolves per hour from first_resolved on; one more, of a candle that is not
    # stored (no features: it cannot be learned), resolved first
    add_outcomes(engine, [(trained_until + timedelta(hours=h), h % 2,
                           first_resolved + timedelta(hours=h - 1)) for h in range(1, 41)]
                 + [(trained_until + timedelta(minutes=30), 1, first_resolved)])

    def learned_at(hours_after_first: int) -> dict[str, int]:
        tick = first_resolved + timedelta(hours=hours_after_first)
        return learn_from_outcomes(engine, settings, BTC, tick).learned

    assert [learned_at(h) for h in (0, 1, 12, 22)] == [{}, {}, {}, {}]
    assert learned_at(23) == {f"{T1} river v1": 24}  # the oldest waited 23 candles: all 24
    # the 25th resolved now: it waits for its own day (the unlearnable one does not make
    # every later tick a batch)
    assert [learned_at(h) for h in (24, 30, 46)] == [{}, {}, {}]
    assert learned_at(47) == {f"{T1} river v1": 16}  # the rest (40 in all)
    with session_scope(engine, readonly=True) as session:
        ledger = session.exec(select(OnlineLearned.candle_time).where(
            OnlineLearned.model_version_id == river.id)).all()
        kept = [(s.state, s.learned) for s in states(session, river.id)]
        stored = version(engine, river.id)
    assert len(ledger) == len(set(ledger)) == 40
    assert kept == [(0, 0), (1, 24), (2, 40)]  # the trained artifact, then one state a batch
    assert stored.metrics["online_learned"] == 40


@pytest.mark.slow
def test_drift_in_champion_errors_notifies_and_enqueues_one_retrain(db_url, tmp_path,
                                                                    monkeypatch):
    register_test_families(monkeypatch)
    engine, settings, now = make_env(db_url, tmp_path, days=1)
    champion = add_version(engine, "const", role="champion", p=0.8)
    rng = np.random.default_rng(4)
    candles = [now - timedelta(hours=30 + k) for k in range(800)][::-1]
    # the champion always says UP; UP happens 75% of the time, then 30% (the market turned)
    ups = np.r_[rng.random(500) < 0.75, rng.random(300) < 0.30]
    with session_scope(engine) as session:
        upsert(session, Prediction, [
            {"asset": BTC, "target": T1, "model_version_id": champion.id, "candle_time": t,
             "prob_up": 0.8, "served": True, "role": "champion"} for t in candles],
            keys=["asset", "target", "model_version_id", "candle_time"])
    add_outcomes(engine, [(t, int(up), t + timedelta(hours=24)) for t, up in zip(candles, ups,
                                                                                 strict=True)])
    sent = []
    first = learn_from_outcomes(engine, settings, BTC, now, enqueuer=CeleryEnqueuer(sent.append))
    second = learn_from_outcomes(engine, settings, BTC, now, enqueuer=CeleryEnqueuer(sent.append))

    [drift] = first.drifts
    assert drift["target"] == T1 and drift["version"] == "const v1"
    assert drift["candle_time"] > candles[500].isoformat()  # after the turn, not before
    assert drift["error_rate_recent"] > drift["error_rate_before"] + 0.1
    assert [(s.task, s.args[:3]) for s in sent] == [("signalcast.train", (BTC, T1, "const"))]
    assert first.retrains == [sent[0].options["task_id"]] and second.retrains == []
    assert second.drifts == []
    with session_scope(engine, readonly=True) as session:
        events = session.exec(select(ModelEvent)).all()
        alerts = session.exec(select(AlertOutbox).where(AlertOutbox.kind == "model")).all()
    assert [(e.event, e.to_version_id, e.actor) for e in events] == [
        ("drift", champion.id, "drift")]
    assert [a.payload["event"] for a in alerts] == ["drift"]
    assert "CUSUM" in alerts[0].payload["reason"]  # the block detector (ADWIN replaced)


def test_no_drift_is_reported_on_a_steady_error_rate(db_url, tmp_path, monkeypatch):
    register_test_families(monkeypatch)
    engine, settings, now = make_env(db_url, tmp_path, days=1)
    champion = add_version(engine, "const", role="champion", p=0.8)
    rng = np.random.default_rng(5)
    candles = [now - timedelta(hours=30 + k) for k in range(800)][::-1]
    with session_scope(engine) as session:
        upsert(session, Prediction, [
            {"asset": BTC, "target": T1, "model_version_id": champion.id, "candle_time": t,
             "prob_up": 0.8, "served": True, "role": "champion"} for t in candles],
            keys=["asset", "target", "model_version_id", "candle_time"])
    add_outcomes(engine, [(t, int(up), t + timedelta(hours=24))
                          for t, up in zip(candles, rng.random(800) < 0.7, strict=True)])
    sent = []
    report = learn_from_outcomes(engine, settings, BTC, now, enqueuer=CeleryEnqueuer(sent.append))
    assert report.drifts == [] and sent == []


@pytest.mark.slow
def test_the_drift_detector_counts_each_block_once_incrementally(db_url, tmp_path, monkeypatch):
    from signalcast.db.tables import DriftState
    from signalcast.pipeline.drift import check_drift

    register_test_families(monkeypatch)
    engine, settings, now = make_env(db_url, tmp_path, days=1)
    champion = add_version(engine, "const", role="champion", p=0.6)
    rng = np.random.default_rng(6)
    candles = [now - timedelta(hours=30 + k) for k in range(24 * 20)][::-1]
    with session_scope(engine) as session:
        upsert(session, Prediction, [
            {"asset": BTC, "target": T1, "model_version_id": champion.id, "candle_time": t,
             "prob_up": 0.6, "prob_down": 0.35, "served": True, "role": "champion"}
            for t in candles], keys=["asset", "target", "model_version_id", "candle_time"])
    add_outcomes(engine, [(t, int(up), t + timedelta(hours=24))
                          for t, up in zip(candles, rng.random(len(candles)) < 0.6, strict=True)])

    def state():
        with session_scope(engine, readonly=True) as session:
            return session.get(DriftState, champion.id)

    halfway = candles[240] + timedelta(hours=48)
    assert check_drift(engine, settings, BTC, T1, halfway) is None
    counted = state().blocks
    assert 8 <= counted <= 10  # the blocks completed by then, the first (partial) one skipped
    assert check_drift(engine, settings, BTC, T1, halfway) is None
    assert state().blocks == counted  # the same blocks are not counted twice
    assert check_drift(engine, settings, BTC, T1, now + timedelta(days=3)) is None
    assert 19 <= state().blocks <= 20 and state().alarms == 0  # every block once, no alarm
