"""A drift alarm queues a retrain on the recent candles only: the window since (one block before)
the change point the CUSUM implies, carried in the Celery task's arguments and id; the real
``train`` task trains a challenger whose ``train_start`` is that window, audited as a
``drift_retrain`` event; an old four-argument message still runs (the full history)."""

from __future__ import annotations

from datetime import datetime, timedelta

import numpy as np
import pytest
from sqlmodel import select

from signalcast.config.models import TrainingConfig
from signalcast.config.runtime import set_settings
from signalcast.core.timeframes import last_closed_open_time
from signalcast.db.engine import session_scope
from signalcast.db.tables import ModelEvent, ModelVersion, Prediction
from signalcast.db.upsert import upsert
from signalcast.features import MAX_LOOKBACK
from signalcast.lifecycle.train import drift_window, train_model
from signalcast.pipeline.learn import learn_from_outcomes
from signalcast.tasks import tasks
from signalcast.tasks.enqueuer import CeleryEnqueuer
from tests.conftest import SMALL_CONFIG
from tests.test_online import add_outcomes
from tests.test_routing import BTC, T1, make_env

HORIZON = 24  # of 1pct_24


@pytest.fixture
def runtime_settings():
    yield set_settings
    set_settings(None)


@pytest.mark.slow
@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_a_drift_alarm_retrains_a_challenger_on_the_recent_window(db_url, tmp_path,
                                                                  runtime_settings):
    engine, settings, now = make_env(db_url, tmp_path, days=150, training={
        **SMALL_CONFIG["training"], "drift_window": True})  # off by default (the bench: no gain)
    runtime_settings(settings)  # the task reads the process's settings, as a worker does
    champion = train_model(engine, settings, BTC, T1, "lightgbm", now=now)
    assert champion.role == "champion"
    # the champion's record: it says UP at 0.8; UP happens 75% of the time, then 30%
    rng = np.random.default_rng(4)
    candles = [now - timedelta(hours=30 + k) for k in range(800)][::-1]
    ups = np.r_[rng.random(500) < 0.75, rng.random(300) < 0.30]
    with session_scope(engine) as session:
        upsert(session, Prediction, [
            {"asset": BTC, "target": T1, "model_version_id": champion.id, "candle_time": t,
             "prob_up": 0.8, "served": True, "role": "champion"} for t in candles],
            keys=["asset", "target", "model_version_id", "candle_time"])
    add_outcomes(engine, [(t, int(up), t + timedelta(hours=24))
                          for t, up in zip(candles, ups, strict=True)])

    sent = []
    report = learn_from_outcomes(engine, settings, BTC, now, enqueuer=CeleryEnqueuer(sent.append))
    again = learn_from_outcomes(engine, settings, BTC, now, enqueuer=CeleryEnqueuer(sent.append))

    [drift] = report.drifts
    assert again.drifts == [] and again.retrains == []
    change = drift["change_point"]
    # the rise began after the turn (within a block of it), before the alarm
    assert (candles[500] - timedelta(hours=HORIZON)).isoformat() <= change <= drift["candle_time"]
    newest = last_closed_open_time(now, "1h")
    since = int((newest - datetime.fromisoformat(change)) / timedelta(hours=1)) + 1
    window = drift_window(settings.training, HORIZON, since)
    assert drift["retrain_candles"] == window and window < settings.training.history_candles
    [signature] = sent
    assert signature.task == "signalcast.train"
    assert signature.args == (BTC, T1, "lightgbm", now.isoformat(), window)
    assert signature.options["task_id"] == f"train:{BTC}:{T1}:lightgbm:{now.isoformat()}" \
                                           f":last{window}"
    assert report.retrains == [signature.options["task_id"]]

    # the worker's side: the real task, eagerly, with the captured arguments (twice: idempotent)
    result = signature.apply().get()
    assert signature.apply().get()["model_version_id"] == result["model_version_id"]
    with session_scope(engine, readonly=True) as session:
        retrained = session.get(ModelVersion, result["model_version_id"])
        events = session.exec(select(ModelEvent).order_by(ModelEvent.id)).all()
    assert retrained.role == "challenger" and retrained.version == 2  # judged, not served
    # the window asked for, doubled while its rows were too few for the walk-forward evidence
    used = retrained.metrics["window"]
    assert used["requested"] == window and used["reason"] == "drift"
    assert used["candles"] in [window * 2 ** k for k in range(4)]
    assert used["candles"] < settings.training.history_candles
    # its rows start where the window does (the first MAX_LOOKBACK candles warm features up),
    # no later than one block before the change point
    first_row = newest - timedelta(hours=used["candles"] - 1 - MAX_LOOKBACK)
    assert retrained.train_start == first_row
    assert first_row <= datetime.fromisoformat(change) - timedelta(hours=HORIZON)
    assert retrained.train_start > champion.train_start + timedelta(days=30)
    assert retrained.train_end == champion.train_end
    assert retrained.n_rows >= settings.training.min_rows
    assert [(e.event, e.to_version_id) for e in events] == [
        ("retrained", champion.id), ("drift", champion.id), ("drift_retrain", retrained.id)]
    assert f"drift retrain queued on the last {window} candles" in events[1].reason
    assert f"drift retrain on the last {used['candles']} candles" in events[2].reason
    assert events[2].stats["window"] == used

    # a message queued before the window existed (four arguments) still runs: the full history
    old = tasks.train.apply(args=(BTC, T1, "lightgbm", now.isoformat())).get()
    assert old["model_version_id"] == champion.id  # the same data as v1's training: v1 itself


def test_the_drift_window_has_a_floor_and_a_ceiling():
    assert not TrainingConfig().drift_window  # off by default
    training = TrainingConfig(history_candles=3000, min_rows=300, drift_min_rows=400,
                              drift_window=True)
    assert drift_window(training, HORIZON, 1000) == 1000 + HORIZON + MAX_LOOKBACK
    assert drift_window(training, HORIZON, 10) == 400 + HORIZON + MAX_LOOKBACK  # a floor
    assert drift_window(training.model_copy(update={"drift_min_rows": None}), HORIZON, 10) \
        == 300 + HORIZON + MAX_LOOKBACK  # unset: min_rows
    assert drift_window(training, HORIZON, 2900) is None  # not shorter: the full window
    off = training.model_copy(update={"drift_window": False})
    assert drift_window(off, HORIZON, 1000) is None
