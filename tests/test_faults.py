"""Fault tests with real processes (docs/reliability.md): workers killed or stopped mid-task, Redis
down and back, two schedulers, many writers on one database. Each checks nothing is lost and
nothing is doubled by counting rows."""

from __future__ import annotations

import gc
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import func
from sqlmodel import select

from signalcast.config.runtime import set_settings
from signalcast.db.engine import init_db, session_scope
from signalcast.db.tables import ModelVersion, Prediction, TaskRun
from signalcast.scheduler.jobs import candle_close_tick
from signalcast.tasks.app import TIME_LIMITS, app, configure
from signalcast.tasks.enqueuer import train_signatures
from signalcast.tasks.runner import wait_chain
from tests.conftest import seed_history, write_config
from tests.processes import signalcast_env, start_worker, stop, wait_for_workers, workers

pytestmark = [pytest.mark.integration, pytest.mark.slow]

SLOW_TRAINING = {"models": {"champion": "lightgbm",
                            "params": {"lightgbm": {"n_estimators": 1500, "num_leaves": 31}}}}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class RedisServer:
    """A throwaway redis-server with AOF persistence (``persist=False``: none, so a restart
    loses every queued message), for tests that stop and restart it."""

    def __init__(self, workdir: Path, persist: bool = True):
        self.port, self.dir, self.persist = free_port(), workdir, persist
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.proc = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1",
             "--dir", str(self.dir), "--appendonly", "yes" if self.persist else "no",
             "--appendfsync", "always", "--save", ""],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", self.port)) == 0:
                    return
            time.sleep(0.05)
        raise TimeoutError("redis-server did not start")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)


@pytest.fixture
def own_redis(tmp_path):
    server = RedisServer(tmp_path)
    server.start()
    yield server
    server.stop()


def production(tmp_path, database_url, broker_url, overrides=None):
    config = write_config(tmp_path / "faults.yaml", overrides)
    from signalcast.config import load_settings

    settings = load_settings(config, database_url=database_url, broker_url=broker_url,
                             telegram_token=None)
    engine = init_db(database_url)
    set_settings(settings)
    configure(settings)
    return engine, settings, signalcast_env(config, database_url, broker_url)


def wait_until(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.2)
    raise TimeoutError(f"timed out after {timeout}s waiting for {what}")


def run_of(engine, task_id: str) -> TaskRun | None:
    with session_scope(engine, readonly=True) as session:
        return session.exec(select(TaskRun).where(TaskRun.task_id == task_id)).first()


def count(engine, table, *where) -> int:
    with session_scope(engine, readonly=True) as session:
        return session.exec(select(func.count()).select_from(table).where(*where)).one()


def active_task_pid(task_id: str) -> tuple[str, int] | None:
    for host, tasks in (app.control.inspect(timeout=1).active() or {}).items():
        for task in tasks:
            if task["id"] == task_id:
                return host, task["worker_pid"]
    return None


def test_kill_9_of_the_process_running_a_training_completes_it_once(
        tmp_path, sqlite_url, redis_url):
    engine, settings, env = production(tmp_path, sqlite_url, redis_url, SLOW_TRAINING)
    now = seed_history(engine, settings)
    with workers(env, app, count=2, log_dir=tmp_path, queues="train"):
        signature = train_signatures(settings, now, assets=["BTC/USDT"], targets=["1pct_24"])[0]
        result = signature.apply_async()
        wait_until(lambda: (run_of(engine, result.id) or TaskRun(progress="")).progress
                   and "fitting" in run_of(engine, result.id).progress, 120, "the fit to start")
        host, pid = active_task_pid(result.id)
        os.kill(pid, signal.SIGKILL)
        outcome = result.get(timeout=240)
    run = run_of(engine, result.id)
    assert run.status == "done" and run.attempts == 2, (run.status, run.attempts, run.error)
    assert count(engine, ModelVersion) == 1 and outcome["version"] == 1


def test_kill_9_of_a_whole_worker_mid_prediction_is_redelivered_to_the_other(
        tmp_path, sqlite_url, redis_url):
    """With the shipped defaults (visibility timeout 200 s, a sweep every 10 s), the dead
    worker's prediction comes back within three of its hard time limits, and lands once."""
    engine, settings, env = production(tmp_path, sqlite_url, redis_url)
    now = seed_history(engine, settings)
    with workers(env, app, count=1, log_dir=tmp_path, queues="train"):
        for r in [s.apply_async() for s in train_signatures(settings, now)]:
            r.get(timeout=180)
    a = start_worker(env, "a", queues="predict", log=tmp_path / "a.log")
    b = None
    try:
        wait_for_workers(app, ["a"])
        import sqlite3

        # Hold the database's write lock so the prediction is caught in the middle.
        blocker = sqlite3.connect(sqlite_url.removeprefix("sqlite:///"), timeout=60)
        blocker.isolation_level = None
        blocker.execute("BEGIN IMMEDIATE")
        from signalcast.tasks import tasks

        candle = (now - timedelta(hours=1)).replace(minute=0, second=0, microsecond=0)
        result = tasks.predict.delay("BTC/USDT", candle.isoformat())
        wait_until(lambda: active_task_pid(result.id) is not None, 30, "the prediction to start")
        stop(a, signal.SIGKILL)
        blocker.execute("ROLLBACK")
        blocker.close()
        b = start_worker(env, "b", queues="predict", log=tmp_path / "b.log")
        outcome = result.get(timeout=3 * TIME_LIMITS["signalcast.predict"][1])
    finally:
        stop(a)
        if b is not None:
            stop(b)
    assert outcome["predictions"] == len(settings.targets)
    assert count(engine, Prediction) == len(settings.targets)
    assert run_of(engine, result.id).status == "done"


def test_sigterm_lets_a_worker_finish_the_training_in_hand(tmp_path, sqlite_url, redis_url):
    engine, settings, env = production(tmp_path, sqlite_url, redis_url, SLOW_TRAINING)
    now = seed_history(engine, settings)
    worker = start_worker(env, "warm", queues="train", log=tmp_path / "warm.log")
    try:
        wait_for_workers(app, ["warm"])
        signature = train_signatures(settings, now, assets=["ETH/USDT"], targets=["2pct_48"])[0]
        result = signature.apply_async()
        wait_until(lambda: active_task_pid(result.id) is not None, 60, "the training to start")
        code = stop(worker, signal.SIGTERM, timeout=180)
    finally:
        stop(worker)
    assert code == 0
    run = run_of(engine, result.id)
    assert run.status == "done" and run.attempts == 1
    assert count(engine, ModelVersion) == 1


def test_results_of_a_broker_left_behind_stay_quiet_when_collected(
        tmp_path, sqlite_url, redis_url, own_redis, monkeypatch):
    """Pointing the app at another broker (tests, the demo) leaves results of the old one
    behind. When the garbage collector destroys one, Celery unsubscribes its key through the
    old backend; with that broker gone this meant reconnect attempts and log lines from inside
    whatever the collector interrupted (a CI run failed so, in the middle of compiling a
    module). The old backend is made inert when it is replaced."""
    production(tmp_path, sqlite_url, own_redis.url)
    # each subscribes to its result key (after the first unsubscribe finds the connection
    # gone, the second one's reconnect reads the old broker)
    results = [app.send_task("signalcast.no_such_task") for _ in range(2)]
    old_consumer = app.backend.result_consumer
    assert old_consumer.subscribed_to, "the old backend should have subscribed to the result"
    own_redis.stop()
    production(tmp_path, sqlite_url, redis_url)
    unraisable, records = [], []
    monkeypatch.setattr(sys, "unraisablehook", unraisable.append)
    handler = logging.Handler(logging.INFO)
    handler.emit = records.append
    logging.getLogger("celery").addHandler(handler)
    try:
        del results
        gc.collect()
    finally:
        logging.getLogger("celery").removeHandler(handler)
    noisy = [r.getMessage() for r in records]
    assert noisy == [] and unraisable == [], (noisy, [u.exc_value for u in unraisable])


def test_a_tick_survives_redis_down_for_20_seconds(tmp_path, sqlite_url, own_redis):
    engine, settings, env = production(tmp_path, sqlite_url, own_redis.url)
    now = seed_history(engine, settings)
    with workers(env, app, count=1, log_dir=tmp_path):
        for r in [s.apply_async() for s in train_signatures(settings, now)]:
            r.get(timeout=180)
        own_redis.stop()
        results: list = []
        ticking = threading.Thread(target=lambda: results.extend(
            candle_close_tick(engine, settings, now + timedelta(hours=1, seconds=20))))
        ticking.start()  # the scheduler's enqueue retries while Redis is down
        time.sleep(20)
        assert ticking.is_alive() and not results
        own_redis.start()
        ticking.join(120)
        assert len(results) == len(settings.assets)
        assert [wait_chain(r, timeout=180) for r in results] == [None] * len(settings.assets)
    assert count(engine, Prediction) == len(settings.assets) * len(settings.targets)


def test_two_schedulers_fire_once_and_the_standby_takes_over(tmp_path, sqlite_url, own_redis):
    from datetime import UTC, datetime

    import redis

    start = (datetime.now(UTC) - timedelta(hours=6)).isoformat()
    engine, settings, env = production(tmp_path, sqlite_url, own_redis.url, {
        "assets": [{"symbol": "BTC/USDT", "timeframe": "1m"}],
        "data": {"source": "synthetic", "seed": 3, "start": start},
        "schedule": {"predict_delay_seconds": 1, "leader_ttl_seconds": 4,
                     "retrain_cron": "0 0 1 1 *"},
    })
    logs = {name: tmp_path / f"{name}.log" for name in ("a", "b")}

    def scheduler(name):
        return subprocess.Popen(
            ["python", "-m", "signalcast.cli", "scheduler"], env=env,
            stdout=open(logs[name], "wb"), stderr=subprocess.STDOUT, start_new_session=True)

    def said(name, text):
        return text in logs[name].read_text()

    def fired() -> list[datetime]:
        from signalcast.db.tables import ScheduledEnqueue

        with session_scope(engine, readonly=True) as session:
            return sorted(session.exec(select(ScheduledEnqueue.fire_time).where(  # published
                ScheduledEnqueue.job == "tick:BTC/USDT", ScheduledEnqueue.status != "pending"))
                .all())

    queue = redis.Redis.from_url(own_redis.url)
    a = scheduler("a")
    b = None
    try:
        wait_until(lambda: said("a", "became leader"), 30, "scheduler a to lead")
        b = scheduler("b")
        wait_until(lambda: said("b", "standby"), 30, "scheduler b to stand by")
        first = len(fired())
        wait_until(lambda: len(fired()) > first, 75, "the next minute's tick")
        time.sleep(2)
        assert not said("b", "became leader")
        assert queue.llen("predict") == len(fired())  # one chain per fire, not two

        stop(a, signal.SIGKILL)
        killed_at = time.monotonic()
        wait_until(lambda: said("b", "became leader"), 15, "scheduler b to take over")
        assert time.monotonic() - killed_at <= 4 + 3  # the lock TTL plus one retry interval
        seen = len(fired())
        wait_until(lambda: len(fired()) > seen, 75, "the standby's first tick")
        assert queue.llen("predict") == len(fired())
    finally:
        stop(a)
        if b is not None:
            stop(b)
