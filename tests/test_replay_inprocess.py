"""The in-process replay (signalcast/ops/replay.py) stores what the Celery path stores.

One short history, trained once, copied into two SQLite files; the same ticks replayed under
the same job id through an embedded Celery worker (scheduler/jobs.candle_close_tick +
wait_tick, the old ``signalcast replay``) and through :class:`ReplayRunner`. Predictions
(probabilities, versions, roles), outcomes, online-learned rows and the updated artifacts,
alerts, enqueue rows and task run records must be the same."""

from __future__ import annotations

import shutil
from datetime import timedelta

import pytest
from sqlmodel import select

from signalcast.config import Settings, load_settings
from signalcast.db.engine import init_db, session_scope
from signalcast.db.tables import (
    AlertOutbox,
    ModelVersion,
    OnlineLearned,
    Outcome,
    Prediction,
    ScheduledEnqueue,
    TaskRun,
)
from signalcast.lifecycle.train import train_model
from signalcast.ops.replay import ReplayRunner
from tests.conftest import seed_history, write_config

ASSET = "BTC/USDT"
TICKS = 30
JOB = "replay-test"



def stored(settings: Settings) -> Settings:
    """As ``signalcast replay`` runs: candles come from the database only."""
    return Settings(settings.file.model_copy(update={"data": settings.file.data.model_copy(
        update={"source": "stored"})}), settings.env, settings.source)


def trained_pair(tmp_path, config, first: str, second: str, target: str):
    """A short stored history with lightgbm and river trained on ``target`` for every asset of
    ``config``, in the SQLite file ``first``, copied to ``second`` (the artifact key comes from
    the tests' environment): (settings and engine of ``first``, the first tick's time)."""
    from signalcast.pipeline.ingest import ingest_asset

    url = f"sqlite:///{tmp_path / first}"
    settings = load_settings(config, database_url=url, broker_url=None, telegram_token=None)
    engine = init_db(url)
    t0 = seed_history(engine, settings)
    with session_scope(engine) as session:  # the candles the ticks will read
        for asset in settings.assets:
            ingest_asset(session, settings, asset.symbol, t0 + timedelta(hours=TICKS + 1))
    for asset in settings.assets:
        for family in ("lightgbm", "river"):
            train_model(engine, settings, asset.symbol, target, family, now=t0)
    engine.dispose()
    shutil.copyfile(tmp_path / first, tmp_path / second)
    return settings, engine, t0


def snapshot(engine) -> dict[str, list]:
    """What a replay stored, without wall-clock times and row ids."""
    with session_scope(engine, readonly=True) as session:
        def rows(query):
            return [tuple(r) for r in session.exec(query).all()]

        return {
            "predictions": rows(select(
                Prediction.target, Prediction.model_version_id, Prediction.candle_time,
                Prediction.prob_up, Prediction.prob_down, Prediction.served, Prediction.role,
                Prediction.fallback, Prediction.alert_held).order_by(
                Prediction.candle_time, Prediction.target, Prediction.model_version_id)),
            "outcomes": rows(select(Outcome.target, Outcome.candle_time, Outcome.label,
                                    Outcome.bars, Outcome.resolved_at)
                             .order_by(Outcome.candle_time, Outcome.target)),
            "learned": rows(select(OnlineLearned.model_version_id, OnlineLearned.candle_time,
                                   OnlineLearned.label)
                            .order_by(OnlineLearned.model_version_id, OnlineLearned.candle_time)),
            "versions": rows(select(ModelVersion.id, ModelVersion.family, ModelVersion.role,
                                    ModelVersion.sha256).order_by(ModelVersion.id)),
            "alerts": sorted(rows(select(AlertOutbox.chat_id, AlertOutbox.target,
                                         AlertOutbox.candle_time, AlertOutbox.kind,
                                         AlertOutbox.status))),
            "enqueues": rows(select(ScheduledEnqueue.job, ScheduledEnqueue.fire_time,
                                    ScheduledEnqueue.task_ids, ScheduledEnqueue.status,
                                    ScheduledEnqueue.redos)
                             .order_by(ScheduledEnqueue.fire_time, ScheduledEnqueue.job)),
            "runs": rows(select(TaskRun.task_id, TaskRun.name, TaskRun.args, TaskRun.status,
                                TaskRun.attempts, TaskRun.result, TaskRun.error)
                         .order_by(TaskRun.task_id)),
        }


@pytest.mark.slow
@pytest.mark.isolated  # it runs an embedded Celery worker (see tests/conftest.py)
def test_in_process_replay_stores_what_the_celery_replay_stores(tmp_path):
    from signalcast.notifier.transports import set_console_writer
    from signalcast.scheduler.jobs import candle_close_tick
    from signalcast.tasks.runner import task_runtime, wait_tick

    config = write_config(tmp_path / "replay.yaml", {
        "assets": [{"symbol": ASSET, "timeframe": "1h"}],
        # +-1% within 12 h: most outcomes resolve inside the replay, early or at the horizon
        "targets": [{"pct": 0.01, "horizon": 12, "alert_threshold": 0.52}],
        "models": {"champion": "lightgbm", "alert_without_skill": ["1pct_12"],
                   "params": {"lightgbm": {"n_estimators": 30}}},
        # river shadows and learns the resolved outcomes (online learning on both paths), in
        # batches of 6 candles' wait so that several batches fall inside the 30 ticks
        "routing": {"default": {"shadows": ["river"]}, "learn_every_candles": 6},
    })
    settings, engine, t0 = trained_pair(tmp_path, config, "celery.db", "inline.db", "1pct_12")
    inline_db = tmp_path / "inline.db"

    delay = timedelta(seconds=settings.schedule.predict_delay_seconds)
    times = [t0 + timedelta(hours=i) + delay for i in range(TICKS)]
    set_console_writer(lambda text: None)
    try:
        celery = stored(settings)
        with task_runtime(celery):
            for now in times:
                assert wait_tick(candle_close_tick(engine, celery, now, job=JOB)) == []

        inline_url = f"sqlite:///{inline_db}"
        inline = stored(load_settings(config, database_url=inline_url, broker_url=None,
                                      telegram_token=None))
        inline_engine = init_db(inline_url)
        runner = ReplayRunner(inline_engine, inline, job=JOB)
        for now in times:
            assert runner.tick(now).failures == []
    finally:
        set_console_writer(None)

    through_workers, in_process = snapshot(engine), snapshot(inline_engine)
    # the replay did real work: served and shadow predictions every tick, outcomes, learning
    assert len({p[2] for p in in_process["predictions"]}) == TICKS
    assert {p[6] for p in in_process["predictions"]} == {"champion", "shadow"}
    assert len(in_process["outcomes"]) >= TICKS // 2
    assert in_process["learned"]
    assert len(in_process["runs"]) == 4 * TICKS  # ingest, predict, resolve, drain per tick
    assert all(r[3] == "done" for r in in_process["runs"])
    for table in through_workers:
        assert in_process[table] == through_workers[table], table


@pytest.mark.slow
def test_resolution_reads_candles_once_for_all_targets(sqlite_url, make_settings, monkeypatch):
    """A tick's resolution finds every target's pending predictions in one query and reads the
    candles once (from the oldest pending one), with the outcomes per-target reads gave."""
    from signalcast.core.timeframes import last_closed_open_time
    from signalcast.db.candles import read_candles
    from signalcast.features import resolve_first_touch
    from signalcast.pipeline import resolve as resolve_module
    from signalcast.pipeline.predict import predict_asset

    settings = make_settings(sqlite_url)  # two targets: horizons 24 and 48
    engine = init_db(sqlite_url)
    now = seed_history(engine, settings)
    start = now - timedelta(days=10)
    for target in settings.targets:
        train_model(engine, settings, ASSET, target.key, "lightgbm", now=start)
    first = last_closed_open_time(start, "1h")
    for i in range(30):
        with session_scope(engine) as session:
            predict_asset(session, settings, ASSET, first + timedelta(hours=i))
    reads: list[tuple] = []

    def spy(*args, **kwargs):
        frame = read_candles(*args, **kwargs)
        reads.append((kwargs.get("start"), len(frame)))
        return frame

    monkeypatch.setattr(resolve_module, "read_candles", spy)
    at = first + timedelta(hours=40, seconds=5)
    with session_scope(engine) as session:
        added = resolve_module.resolve_outcomes(session, settings, ASSET, at)
    assert len(reads) == 1 and reads[0][0] == first  # the oldest pending prediction
    with session_scope(engine, readonly=True) as session:
        outcomes = session.exec(select(Outcome)).all()
        candles = read_candles(session, ASSET, "1h", end=last_closed_open_time(at, "1h"))
    assert added == len(outcomes) > 0
    assert {o.target for o in outcomes} == {t.key for t in settings.targets}
    for o in outcomes:
        target = settings.target(o.target)
        alone = resolve_first_touch(candles, o.candle_time, target.pct, target.horizon)
        assert (alone.label, alone.bars) == (o.label, o.bars), o


def snapshot_by_asset(engine) -> dict[str, list]:
    """:func:`snapshot` with every asset's rows, sorted (rows of one tick may be stored in any
    asset order when assets run in parallel)."""
    with session_scope(engine, readonly=True) as session:
        def rows(query):
            return sorted((tuple(r) for r in session.exec(query).all()), key=repr)

        return {
            "predictions": rows(select(
                Prediction.asset, Prediction.target, Prediction.model_version_id,
                Prediction.candle_time, Prediction.prob_up, Prediction.prob_down,
                Prediction.served, Prediction.role, Prediction.fallback, Prediction.alert_held)),
            "outcomes": rows(select(Outcome.asset, Outcome.target, Outcome.candle_time,
                                    Outcome.label, Outcome.bars, Outcome.resolved_at)),
            "learned": rows(select(OnlineLearned.model_version_id, OnlineLearned.candle_time,
                                   OnlineLearned.label)),
            "versions": rows(select(ModelVersion.id, ModelVersion.asset, ModelVersion.family,
                                    ModelVersion.role, ModelVersion.sha256)),
            "alerts": rows(select(AlertOutbox.chat_id, AlertOutbox.asset, AlertOutbox.target,
                                  AlertOutbox.candle_time, AlertOutbox.kind,
                                  AlertOutbox.status)),
            "enqueues": rows(select(ScheduledEnqueue.job, ScheduledEnqueue.fire_time,
                                    ScheduledEnqueue.task_ids, ScheduledEnqueue.status,
                                    ScheduledEnqueue.redos)),
            "runs": rows(select(TaskRun.task_id, TaskRun.name, TaskRun.args, TaskRun.status,
                                TaskRun.attempts, TaskRun.result, TaskRun.error)),
        }


@pytest.mark.slow
def test_a_replay_in_two_processes_stores_what_one_process_stores(tmp_path):
    """Three assets split over two worker processes (ticks in lockstep, one drain per tick):
    the same predictions, outcomes, online learning, alerts, enqueue rows and run records as
    the one-process replay; replaying the same ticks again adds nothing."""
    from signalcast.notifier.transports import set_console_writer
    from signalcast.ops.replay_parallel import ParallelReplay, asset_groups

    assets = ["BTC/USDT", "ETH/USDT", "SOL/USDT"]
    config = write_config(tmp_path / "replay.yaml", {
        "assets": [{"symbol": a, "timeframe": "1h"} for a in assets],
        # +-0.5% within 12 h: nearly always touched, so served chances pass 0.51 and alert
        "targets": [{"pct": 0.005, "horizon": 12, "alert_threshold": 0.51}],
        "models": {"champion": "lightgbm", "alert_without_skill": ["*"],
                   "params": {"lightgbm": {"n_estimators": 30}}},
        "routing": {"default": {"shadows": ["river"]}, "learn_every_candles": 6},
        # the replayed candles are years old: signals must not expire by the wall clock
        "alerts": {"console": True, "console_kinds": ["signal", "outcome"],
                   "max_signal_age_seconds": 10**9, "chat_interval_seconds": 0},
    })
    settings, engine, t0 = trained_pair(tmp_path, config, "one.db", "two.db", "0.5pct_12")
    two_db = tmp_path / "two.db"

    delay = timedelta(seconds=settings.schedule.predict_delay_seconds)
    times = [t0 + timedelta(hours=i) + delay for i in range(TICKS)]
    printed: list[str] = []
    set_console_writer(printed.append)
    try:
        one = stored(settings)
        runner = ReplayRunner(engine, one, job=JOB)
        for now in times:
            assert runner.tick(now).failures == []
        sent_by_one = len(printed)

        two_url = f"sqlite:///{two_db}"
        two = stored(load_settings(config, database_url=two_url, broker_url=None,
                                   telegram_token=None))
        two_engine = init_db(two_url)
        assert asset_groups(two, 2) == [["BTC/USDT", "SOL/USDT"], ["ETH/USDT"]]
        with ParallelReplay(two_engine, two, processes=2, job=JOB) as parallel:
            reports = [parallel.tick(now) for now in times]
            assert all(r.failures == [] for r in reports)
            assert all(sorted(r.assets) == assets for r in reports)
            before = snapshot_by_asset(two_engine)
            again = parallel.tick(times[-1])  # a tick replayed twice: every asset skipped
            assert again.assets == [] and again.failures == []
    finally:
        set_console_writer(None)

    in_one, in_two = snapshot_by_asset(engine), snapshot_by_asset(two_engine)
    assert before == in_two
    # real work: served and shadow predictions of every asset every tick, outcomes, learning,
    # alerts drained by the parent (printed to its console) as many as one process sent
    assert len(in_two["predictions"]) == TICKS * len(assets) * 2
    assert {p[0] for p in in_two["outcomes"]} == set(assets)
    assert {row[0] for row in in_two["learned"]} and in_two["alerts"]
    assert sent_by_one > 0 and len(printed) == 2 * sent_by_one
    assert len(in_two["runs"]) == (3 * len(assets) + 1) * TICKS
    for table in in_one:
        assert in_two[table] == in_one[table], table


@pytest.mark.slow
def test_a_parallel_replay_whose_worker_dies_stops_with_an_error_naming_its_assets(
        tmp_path, make_settings):
    import os
    import signal

    from signalcast.ops.replay_parallel import ParallelReplay, ReplayWorkerDied

    url = f"sqlite:///{tmp_path / 'r.db'}"
    settings = stored(make_settings(url))
    engine = init_db(url)
    now = seed_history(engine, settings, days=20)
    with ParallelReplay(engine, settings, processes=2, job=JOB) as replay:
        (first, _), (second, _) = replay._workers
        assert first.is_alive() and second.is_alive()
        os.kill(second.pid, signal.SIGKILL)
        second.join(timeout=10)
        with pytest.raises(ReplayWorkerDied) as died:
            replay.tick(now)
    assert f"the replay worker of {', '.join(replay.groups[1])} exited (code -9)" in str(died.value)
    assert "started again from the same time skips them" in str(died.value)
    assert not first.is_alive()  # closing the replay stopped the other worker
