"""The reconciler and publish-after-commit (docs/reliability.md): an enqueue is not the work.

The fast tests use the embedded broker (its queues purged stand in for a broker that lost its
data) and a broker address nothing listens on; the drill restarts a real redis-server without
its data after three ticks were queued, with real worker processes and the CLI."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import threading
from datetime import timedelta

import pytest
from sqlalchemy import func
from sqlmodel import select

from signalcast.config import load_settings
from signalcast.config.runtime import set_settings
from signalcast.db.engine import init_db, session_scope
from signalcast.db.tables import AlertOutbox, Prediction, ScheduledEnqueue, TaskRun, utcnow
from signalcast.scheduler import enqueue
from signalcast.scheduler.jobs import candle_close_tick
from signalcast.scheduler.reconcile import reconcile
from signalcast.tasks.app import _forget_broker, app, configure, embedded_worker
from signalcast.tasks.enqueuer import train_signatures
from signalcast.tasks.runner import task_runtime
from tests.conftest import seed_history, write_config
from tests.processes import signalcast_env, workers

TOLD = {"alerts": {"console_kinds": ["signal", "system"]}}  # the console hears system alerts


def served(engine) -> list[tuple]:
    with session_scope(engine, readonly=True) as session:
        return session.exec(select(Prediction.asset, Prediction.target, Prediction.candle_time)
                            .where(Prediction.served)).all()


def rows(engine) -> dict[str, str]:
    with session_scope(engine, readonly=True) as session:
        return {f"{r.job}@{r.fire_time:%H:%M}": r.status
                for r in session.exec(select(ScheduledEnqueue)).all()}


def later(settings) -> object:
    """A wall-clock time past the landing grace of everything enqueued so far."""
    return utcnow() + timedelta(seconds=settings.schedule.tick_landing_seconds + 1)


def trained_embedded(tmp_path, overrides: dict) -> tuple:
    """(engine, settings, now) of a SQLite deployment on the embedded broker, its champions
    trained, the app configured for it (no worker runs until a test starts one)."""
    url = f"sqlite:///{tmp_path / 'r.db'}"
    settings = load_settings(write_config(tmp_path / "r.yaml", overrides), database_url=url,
                             broker_url=None, telegram_token=None)
    engine = init_db(url)
    now = seed_history(engine, settings)
    with task_runtime(settings):
        for signature in train_signatures(settings, now):
            signature.apply_async().get(timeout=300)
    set_settings(settings)
    configure(settings)
    return engine, settings, now


@pytest.mark.isolated
def test_a_tick_whose_messages_were_lost_is_reconciled_and_lands_once(tmp_path):
    engine, settings, now = trained_embedded(tmp_path, TOLD)
    # the ticks are enqueued while no worker runs, and the broker loses them
    ticks = [now + timedelta(hours=h, seconds=20) for h in (1, 2, 3)]
    for at in ticks:
        assert len(candle_close_tick(engine, settings, at)) == len(settings.assets)
    app.control.purge()
    assert served(engine) == []
    assert reconcile(engine, settings)["redone"] == 0  # within the landing grace: not yet lost
    with embedded_worker(app):
        done = reconcile(engine, settings, later(settings))
        assert done["redone"] == len(ticks) * len(settings.assets)
        expected = len(ticks) * len(settings.assets) * len(settings.targets)
        _wait_for(lambda: len(served(engine)) == expected, "the reconciled predictions")
        _wait_for(lambda: landed(engine, settings), "the ticks to land")
    predictions = served(engine)
    assert len(predictions) == len(set(predictions)) == expected
    assert {s for j, s in rows(engine).items() if j.startswith("tick:")} == {"landed"}
    with session_scope(engine, readonly=True) as session:
        told = session.exec(select(AlertOutbox).where(AlertOutbox.target == "reconciler")).all()
    assert told and "re-enqueued" in told[0].payload["last_error"]
    set_settings(None)


def landed(engine, settings) -> bool:
    """One reconcile pass; True when every tick row it judged is landed."""
    reconcile(engine, settings, later(settings), predict_backlog=lambda: 0)
    return {s for j, s in rows(engine).items() if j.startswith("tick:")} == {"landed"}


def _reconnect(celery_app) -> None:
    """A stale pooled connection fails once (and is dropped) before a fresh one is made."""
    import redis

    for _ in range(10):
        try:
            celery_app.control.ping(timeout=0.2)
            return
        except redis.ConnectionError:
            continue


def _wait_for(predicate, what: str, timeout: float = 300) -> None:
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.2)
    raise TimeoutError(f"timed out after {timeout}s waiting for {what}")


@pytest.mark.slow
def test_the_database_write_lock_is_free_while_the_broker_is_down(tmp_path, monkeypatch):
    import socket

    with socket.socket() as s:  # a port nothing listens on: the broker is down
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"sqlite:///{tmp_path / 'lock.db'}"
    settings = load_settings(write_config(tmp_path / "lock.yaml"), database_url=url,
                             broker_url=f"redis://127.0.0.1:{port}/0", telegram_token=None)
    engine = init_db(url)
    set_settings(settings)
    configure(settings)
    monkeypatch.setattr(enqueue, "ENQUEUE_RETRY_SECONDS", 4.0)
    failure: list[BaseException] = []

    def tick() -> None:
        try:
            candle_close_tick(engine, settings, settings.data.start + timedelta(days=3))
        except Exception as exc:  # the broker stayed down past the retry budget
            failure.append(exc)

    ticking = threading.Thread(target=tick)
    ticking.start()
    _wait_for(lambda: "pending" in rows(engine).values(), "the pending row", timeout=30)
    writer = sqlite3.connect(url.removeprefix("sqlite:///"), timeout=2)
    writer.isolation_level = None
    writer.execute("BEGIN IMMEDIATE")  # another writer takes the lock while the publish retries
    writer.execute("CREATE TABLE other_writer (x INTEGER)")
    writer.execute("COMMIT")
    assert ticking.is_alive()  # still retrying the publish
    writer.close()
    ticking.join(60)
    assert failure, "the publish to a dead broker should fail after its retries"
    assert set(rows(engine).values()) == {"pending"}  # kept for the reconciler to publish
    configure(load_settings(write_config(tmp_path / "lock.yaml"), database_url=url,
                            broker_url=None, telegram_token=None))
    set_settings(None)


@pytest.mark.slow
def test_redis_restarted_without_its_data_loses_no_tick(tmp_path, sqlite_url):
    """The drill: three ticks queued, Redis restarted empty, the reconciler re-enqueues them;
    every prediction lands once, and ``tick --redo`` changes nothing after."""
    from tests.test_faults import RedisServer

    redis_server = RedisServer(tmp_path, persist=False)
    redis_server.start()
    try:
        config = write_config(tmp_path / "drill.yaml", TOLD)
        settings = load_settings(config, database_url=sqlite_url, broker_url=redis_server.url,
                                 telegram_token=None)
        engine = init_db(sqlite_url)
        set_settings(settings)
        configure(settings)
        env = signalcast_env(config, sqlite_url, redis_server.url)
        now = seed_history(engine, settings)
        with workers(env, app, count=1, log_dir=tmp_path):
            for signature in train_signatures(settings, now):
                signature.apply_async().get(timeout=300)
        ticks = [now + timedelta(hours=h, seconds=20) for h in (1, 2, 3)]
        for at in ticks:
            candle_close_tick(engine, settings, at)
        redis_server.stop()
        redis_server.start()  # without its data: the queued ticks are gone
        _forget_broker(app)  # this process's pooled connections died with the server
        configure(settings)
        _reconnect(app)
        assert served(engine) == []
        with workers(env, app, count=2, log_dir=tmp_path):
            done = reconcile(engine, settings, later(settings), predict_backlog=lambda: 0)
            assert done["redone"] == len(ticks) * len(settings.assets)
            expected = len(ticks) * len(settings.assets) * len(settings.targets)
            _wait_for(lambda: len(served(engine)) == expected, "the reconciled predictions")
            _wait_for(lambda: landed(engine, settings), "the reconciled ticks to land")
            redo = subprocess.run(
                [sys.executable, "-m", "signalcast.cli", "tick", "--at", ticks[0].isoformat(),
                 "--redo"], env=env, capture_output=True, text=True, timeout=300)
            assert redo.returncode == 0, redo.stdout + redo.stderr
            assert "enqueued 2 asset tick(s) again" in redo.stdout
            assert landed(engine, settings)  # the CLI waited for the redone work
        predictions = served(engine)
        assert len(predictions) == len(set(predictions)) == expected
        assert {s for j, s in rows(engine).items() if j.startswith("tick:")} == {"landed"}
        with session_scope(engine, readonly=True) as session:
            failed = session.exec(select(func.count()).select_from(TaskRun).where(
                TaskRun.status == "failed")).one()
        assert failed == 0
    finally:
        redis_server.stop()
        set_settings(None)
