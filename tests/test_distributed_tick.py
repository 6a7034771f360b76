"""The production path: separate `signalcast worker` processes on the real Redis, the
scheduler's job function enqueuing, a shared SQLite file or Postgres database."""

from __future__ import annotations

import subprocess
import sys
import time
from datetime import datetime, timedelta

import pytest
from sqlalchemy import func
from sqlmodel import select

from signalcast.config.runtime import set_settings
from signalcast.core.timeframes import last_closed_open_time
from signalcast.db.engine import init_db, session_scope
from signalcast.db.tables import AlertOutbox, Candle, Outcome, Prediction, TaskRun
from signalcast.scheduler.jobs import candle_close_tick
from signalcast.tasks import tasks
from signalcast.tasks.app import app, configure
from signalcast.tasks.enqueuer import train_signatures
from signalcast.tasks.runner import wait_chain
from tests.conftest import seed_history
from tests.processes import signalcast_env, stop, workers

pytestmark = pytest.mark.integration


def counts(engine) -> dict[str, int]:
    with session_scope(engine, readonly=True) as session:
        return {t.__tablename__: session.exec(select(func.count()).select_from(t)).one()
                for t in (Candle, Prediction, Outcome, AlertOutbox)}


@pytest.fixture
def production(db_url, redis_url, make_settings, config_path):
    settings = make_settings(db_url, broker_url=redis_url)
    engine = init_db(db_url)
    set_settings(settings)
    configure(settings)
    yield engine, settings, signalcast_env(config_path, db_url, redis_url)
    set_settings(None)


def test_a_tick_runs_on_worker_processes_and_a_repeat_changes_nothing(production, tmp_path):
    engine, settings, env = production
    now = seed_history(engine, settings)
    with workers(env, app, count=2, log_dir=tmp_path):
        trained = [s.apply_async() for s in train_signatures(settings, now)]
        versions = [r.get(timeout=180) for r in trained]
        assert {v["role"] for v in versions} == {"champion"}

        tick_at = now + timedelta(hours=1, seconds=20)
        results = candle_close_tick(engine, settings, tick_at)
        assert len(results) == len(settings.assets)
        assert [wait_chain(r, timeout=120) for r in results] == [None, None]
        after_tick = counts(engine)
        n_models = len(settings.assets) * len(settings.targets)
        assert after_tick["predictions"] == n_models
        assert after_tick["candles"] == len(settings.assets) * (150 * 24 + 1)

        # the same fire time again (a restart, a second scheduler): nothing is enqueued
        assert candle_close_tick(engine, settings, tick_at) == []
        # a redelivered predict task runs again and inserts nothing
        candle = last_closed_open_time(tick_at, "1h").isoformat()
        again = tasks.predict.delay("BTC/USDT", candle).get(timeout=60)
        assert again["predictions"] == 0 and again["alerts"] == 0
        assert counts(engine) == after_tick

    with session_scope(engine, readonly=True) as session:
        runs = session.exec(select(TaskRun)).all()
    assert {r.status for r in runs} == {"done"}
    assert {r.name for r in runs} >= {"train", "ingest", "predict", "resolve", "send_alerts"}


def test_scheduler_and_tick_commands_run_as_separate_processes(production, tmp_path):
    engine, settings, env = production
    now = seed_history(engine, settings)
    scheduler = subprocess.Popen([sys.executable, "-m", "signalcast.cli", "scheduler"], env=env,
                                 stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                 start_new_session=True)
    try:
        with workers(env, app, count=1, log_dir=tmp_path):
            for r in [s.apply_async() for s in train_signatures(settings, now)]:
                r.get(timeout=180)
            tick_at = (now + timedelta(hours=2, seconds=20)).isoformat()
            done = subprocess.run(
                [sys.executable, "-m", "signalcast.cli", "tick", "--at", tick_at],
                env=env, capture_output=True, text=True, timeout=180)
            assert done.returncode == 0, done.stdout + done.stderr
            assert "enqueued 2 asset tick(s)" in done.stdout
        candle = last_closed_open_time(datetime.fromisoformat(tick_at), "1h")
        with session_scope(engine, readonly=True) as session:
            tick_predictions = session.exec(select(func.count()).select_from(Prediction).where(
                Prediction.candle_time == candle, Prediction.served)).one()
        assert tick_predictions == len(settings.assets) * len(settings.targets)
        time.sleep(1)
        assert scheduler.poll() is None, "the scheduler process exited on its own"
    finally:
        code = stop(scheduler)
    output = scheduler.stdout.read().decode()
    assert "Traceback" not in output
    assert code == 0, f"scheduler did not shut down cleanly on SIGTERM:\n{output}"
    assert "became leader" in output and "scheduler stopped" in output
