"""Ticks in batches (``schedule.tick_batch_assets``): several assets per ingest and predict
task, each asset still its own enqueue record, expected result and redo.

On real worker processes (Redis, SQLite and Postgres): a batched tick stores exactly what
per-asset ticks store, a repeat enqueues nothing, a redelivered batch inserts nothing and an
unknown asset in a batch is reported while the others are kept. On the embedded broker: a
batch whose messages were lost is redone asset by asset and lands once."""

from __future__ import annotations

from collections import Counter
from datetime import timedelta

import pytest
from sqlalchemy import func
from sqlmodel import select

from signalcast.config import load_settings
from signalcast.config.runtime import set_settings
from signalcast.core.timeframes import last_closed_open_time
from signalcast.db.engine import init_db, session_scope
from signalcast.db.tables import Prediction, ScheduledEnqueue, TaskRun
from signalcast.scheduler.jobs import candle_close_tick
from signalcast.scheduler.reconcile import reconcile
from signalcast.tasks import tasks
from signalcast.tasks.app import app, embedded_worker
from signalcast.tasks.enqueuer import train_signatures
from signalcast.tasks.runner import wait_tick
from tests.conftest import SMALL_CONFIG, seed_history, write_config
from tests.processes import workers
from tests.test_faults import production
from tests.test_reconcile import _wait_for, landed, later, served, trained_embedded

THREE = {"assets": [*SMALL_CONFIG["assets"], {"symbol": "SOL/USDT"}],
         "schedule": {"tick_batch_assets": 2}}


def served_at(engine, candle) -> Counter:
    with session_scope(engine, readonly=True) as session:
        return Counter(session.exec(select(Prediction.asset).where(
            Prediction.candle_time == candle, Prediction.served)).all())


def prediction_count(engine) -> int:
    with session_scope(engine, readonly=True) as session:
        return session.exec(select(func.count()).select_from(Prediction)).one()


@pytest.mark.integration
def test_a_batched_tick_on_worker_processes_stores_each_asset_once(db_url, redis_url, tmp_path):
    engine, settings, env = production(tmp_path, db_url, redis_url, THREE)
    now = seed_history(engine, settings)
    try:
        with workers(env, app, count=2, log_dir=tmp_path):
            for result in [s.apply_async() for s in train_signatures(settings, now)]:
                result.get(timeout=300)
            tick_at = now + timedelta(hours=1, seconds=20)
            candle = last_closed_open_time(tick_at, "1h")
            results = candle_close_tick(engine, settings, tick_at)
            assert (len(results), results.assets) == (2, 3)  # a batch of two and one alone
            assert wait_tick(results, timeout=180) == []
            n_targets = len(settings.targets)
            assert served_at(engine, candle) == {"BTC/USDT": n_targets, "ETH/USDT": n_targets,
                                                 "SOL/USDT": n_targets}
            stored = prediction_count(engine)

            assert candle_close_tick(engine, settings, tick_at) == []  # a repeat: nothing
            # a redelivered batch runs again and inserts nothing
            again = tasks.predict_assets.delay(["BTC/USDT", "ETH/USDT"],
                                               candle.isoformat()).get(timeout=60)
            assert (again["predictions"], again["alerts"], again["failed"]) == (0, 0, {})
            assert set(again["assets"]) == {"BTC/USDT", "ETH/USDT"}
            # an asset no longer configured is reported; the batch's other assets still run
            odd = tasks.predict_assets.delay(["DOGE/USDT", "SOL/USDT"],
                                             candle.isoformat()).get(timeout=60)
            assert "DOGE/USDT" in odd["failed"] and "unknown asset" in odd["failed"][
                "DOGE/USDT"].lower()
            assert set(odd["assets"]) == {"SOL/USDT"} and odd["predictions"] == 0
            assert prediction_count(engine) == stored
            assert served_at(engine, candle).total() == 3 * n_targets
    finally:
        set_settings(None)

    with session_scope(engine, readonly=True) as session:
        runs = session.exec(select(TaskRun)).all()
        ticks = session.exec(select(ScheduledEnqueue).where(
            ScheduledEnqueue.job.like("tick:%"))).all()
    assert {r.status for r in runs} == {"done"}
    names = Counter(r.name for r in runs)
    assert (names["ingest_assets"], names["ingest"], names["resolve"]) == (1, 1, 3)
    assert names["predict_assets"] == 3 and names["predict"] == 1  # two of them by hand
    # each asset keeps its own record: the batch's ingest and predict, its own resolve
    assert sorted(t.job for t in ticks) == ["tick:BTC/USDT", "tick:ETH/USDT", "tick:SOL/USDT"]
    by_job = {t.job: t.task_ids for t in ticks}
    assert by_job["tick:BTC/USDT"][:2] == by_job["tick:ETH/USDT"][:2]
    assert by_job["tick:BTC/USDT"][2] != by_job["tick:ETH/USDT"][2]
    assert all(ids[2].endswith(":resolve") and job.split(":", 1)[1] in ids[2]
               for job, ids in by_job.items())
    assert landed(engine, settings)


@pytest.mark.isolated
def test_a_lost_batch_is_redone_asset_by_asset_and_lands_once(tmp_path):
    engine, settings, now = trained_embedded(tmp_path, {
        "alerts": {"console_kinds": ["signal", "system"]}, "schedule": {"tick_batch_assets": 2}})
    ticks = [now + timedelta(hours=h, seconds=20) for h in (1, 2)]
    for at in ticks:  # enqueued while no worker runs; then the broker loses them
        results = candle_close_tick(engine, settings, at)
        assert (len(results), results.assets) == (1, len(settings.assets))
    app.control.purge()
    with embedded_worker(app):
        done = reconcile(engine, settings, later(settings))
        assert done["redone"] == len(ticks) * len(settings.assets)  # each asset on its own
        expected = len(ticks) * len(settings.assets) * len(settings.targets)
        _wait_for(lambda: len(served(engine)) == expected, "the reconciled predictions")
        _wait_for(lambda: landed(engine, settings), "the ticks to land")
    predictions = served(engine)
    assert len(predictions) == len(set(predictions)) == expected
    set_settings(None)


def test_a_batch_stores_what_each_asset_alone_stores(tmp_path):
    """predict_candles (one read, one write transaction, one insert for all assets) against
    predict_candle per asset, at the same candle on the same models: the same rows."""
    from sqlalchemy import delete

    from signalcast.lifecycle.train import train_model
    from signalcast.pipeline.predict import predict_candle, predict_candles

    url = f"sqlite:///{tmp_path / 'same.db'}"
    overrides = {"routing": {"default": {"shadows": ["river"]}}}
    settings = load_settings(write_config(tmp_path / "same.yaml", overrides), database_url=url,
                             broker_url=None, telegram_token=None)
    engine = init_db(url)
    now = seed_history(engine, settings)
    symbols = [a.symbol for a in settings.assets]
    for asset in symbols:
        for target in settings.targets:
            for family in ("lightgbm", "river"):
                train_model(engine, settings, asset, target.key, family, now=now)
    candle = last_closed_open_time(now, "1h")

    def rows() -> set[tuple]:
        with session_scope(engine, readonly=True) as session:
            return set(session.exec(select(
                Prediction.asset, Prediction.target, Prediction.model_version_id,
                Prediction.prob_up, Prediction.prob_down, Prediction.served, Prediction.role,
                Prediction.alert_held).where(Prediction.candle_time == candle)).all())

    batch = predict_candles(engine, settings, [*symbols, "DOGE/USDT"], candle)
    assert batch["predictions"] == len(symbols) * len(settings.targets) * 2
    assert set(batch["failed"]) == {"DOGE/USDT"}
    assert {a: r["predictions"] for a, r in batch["assets"].items()} == {
        a: len(settings.targets) * 2 for a in symbols}
    together = rows()
    assert predict_candles(engine, settings, symbols, candle)["predictions"] == 0  # a rerun
    with session_scope(engine) as session:
        session.execute(delete(Prediction).where(Prediction.candle_time == candle))
    alone = [predict_candle(engine, settings, a, candle) for a in symbols]
    assert sum(r.predictions for r in alone) == batch["predictions"]
    assert rows() == together
    assert {r.asset: r.served for r in alone} == {a: batch["assets"][a]["served"]
                                                  for a in symbols}


def test_latest_candles_of_many_assets_are_what_each_read_returns(tmp_path):
    """read_latest_candles: one bounded query, and an asset with a gap in the window (a
    closed market, a missing candle) read on its own, so every frame equals read_candles'."""
    from signalcast.db.candles import read_candles, read_latest_candles
    from signalcast.db.tables import Candle

    url = f"sqlite:///{tmp_path / 'gap.db'}"
    settings = load_settings(write_config(tmp_path / "gap.yaml"), database_url=url,
                             broker_url=None, telegram_token=None)
    engine = init_db(url)
    now = seed_history(engine, settings, days=20)
    end = last_closed_open_time(now, "1h") - timedelta(hours=5)
    with session_scope(engine) as session:  # a hole in ETH's window: 3 candles missing
        session.execute(Candle.__table__.delete().where(
            Candle.asset == "ETH/USDT", Candle.time > end - timedelta(hours=40),
            Candle.time <= end - timedelta(hours=37)))
    with session_scope(engine, readonly=True) as session:
        frames = read_latest_candles(session, ["BTC/USDT", "ETH/USDT", "SOL/USDT"], "1h",
                                     end=end, limit=121)
        for asset, frame in frames.items():
            alone = read_candles(session, asset, "1h", end=end, limit=121)
            assert frame.equals(alone), asset
    assert len(frames["BTC/USDT"]) == len(frames["ETH/USDT"]) == 121
    assert frames["ETH/USDT"].index[0] < frames["BTC/USDT"].index[0]  # reached further back
    assert frames["SOL/USDT"].empty  # not stored: as read_candles says
