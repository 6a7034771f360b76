"""Per-tick work does not grow with the stored history; caches are bounded; retention prunes
only finished rows. Work is counted (SQL statements, SQLite VM steps, feature computations),
never timed: figures belong in bench/."""

from __future__ import annotations

from contextlib import contextmanager
from datetime import timedelta

import numpy as np
import pytest
from sqlalchemy import event, func
from sqlmodel import select

from signalcast.core.errors import ConfigError
from signalcast.core.timeframes import last_closed_open_time, utc
from signalcast.db.candles import read_candles
from signalcast.db.engine import init_db, session_scope
from signalcast.db.tables import (
    AlertOutbox,
    ModelVersion,
    Outcome,
    Prediction,
    ScheduledEnqueue,
    TaskRun,
)
from signalcast.db.upsert import upsert
from signalcast.features import dataset, resolve_first_touch
from signalcast.lifecycle.train import train_model
from signalcast.ops.retention import prune
from signalcast.pipeline.model_cache import ModelCache
from signalcast.pipeline.predict import predict_asset
from signalcast.pipeline.resolve import resolve_outcomes
from tests.conftest import seed_history

ASSET = "BTC/USDT"


@contextmanager
def counted(engine):
    """Count SQL statements and SQLite VM steps (in hundreds) run on ``engine``."""
    work = {"statements": 0, "steps": 0}
    touched = []

    def step() -> int:
        work["steps"] += 1
        return 0  # 0: go on

    def on_execute(conn, *_args):  # noqa: ANN001
        work["statements"] += 1
        raw = conn.connection.dbapi_connection
        raw.set_progress_handler(step, 100)
        touched.append(raw)

    event.listen(engine, "before_cursor_execute", on_execute)
    try:
        yield work
    finally:
        event.remove(engine, "before_cursor_execute", on_execute)
        for raw in touched:
            raw.set_progress_handler(None, 0)


def tick(engine, settings, candle):
    with session_scope(engine) as session:
        predict_asset(session, settings, ASSET, candle)
    with session_scope(engine) as session:
        resolve_outcomes(session, settings, ASSET, candle + timedelta(hours=1, seconds=5))


def fake_history(engine, settings, end, candles: int) -> None:
    """``candles`` hours of served predictions and resolved outcomes before ``end``."""
    with session_scope(engine, readonly=True) as session:
        version_ids = {v.target: v.id for v in session.exec(select(ModelVersion)).all()}
    times = [end - timedelta(hours=h) for h in range(candles, 0, -1)]
    rows = [{"asset": ASSET, "target": t.key, "model_version_id": version_ids[t.key],
             "candle_time": when, "prob_up": 0.4, "prob_down": 0.3, "served": True,
             "role": "champion", "fallback": None, "alert_held": None}
            for t in settings.targets for when in times]
    outcomes = [{"asset": ASSET, "target": t.key, "candle_time": when, "label": 1, "bars": 3,
                 "resolved_at": when} for t in settings.targets for when in times]
    with session_scope(engine) as session:
        upsert(session, Prediction, rows, keys=["asset", "target", "model_version_id",
                                                "candle_time"])
        upsert(session, Outcome, outcomes, keys=["asset", "target", "candle_time"])


@pytest.mark.slow
def test_a_ticks_work_does_not_grow_with_stored_predictions_and_outcomes(sqlite_url,
                                                                          make_settings):
    settings = make_settings(sqlite_url)
    engine = init_db(sqlite_url)
    now = seed_history(engine, settings)  # 150 days of candles
    start = now - timedelta(days=60)
    for target in settings.targets:
        train_model(engine, settings, ASSET, target.key, "lightgbm", now=start)
    first = last_closed_open_time(start, "1h") + timedelta(hours=1)
    for i in range(3):  # warm the model cache and the router's state
        tick(engine, settings, first + timedelta(hours=i))
    with counted(engine) as small:
        tick(engine, settings, first + timedelta(hours=3))

    later = first + timedelta(days=50)
    fake_history(engine, settings, later - timedelta(hours=400), candles=2500)
    for i in range(3):
        tick(engine, settings, later + timedelta(hours=i))
    with counted(engine) as large:
        tick(engine, settings, later + timedelta(hours=3))
    with session_scope(engine, readonly=True) as session:
        stored = session.exec(select(func.count()).select_from(Prediction)).one()
    assert stored > 5000  # the history did grow
    # the same statements, give or take the alert lookups of the outcomes this tick resolved
    assert abs(large["statements"] - small["statements"]) <= 2 * len(settings.targets)
    assert large["steps"] <= 1.5 * small["steps"] + 50, (small, large)


@pytest.mark.slow
def test_resolution_reads_only_the_candles_pending_predictions_need(sqlite_url, make_settings):
    settings = make_settings(sqlite_url)
    engine = init_db(sqlite_url)
    now = seed_history(engine, settings)
    start = now - timedelta(days=30)
    for target in settings.targets:
        train_model(engine, settings, ASSET, target.key, "lightgbm", now=start)
    candle = last_closed_open_time(start, "1h")
    tick(engine, settings, candle)
    reads: list[int] = []
    import signalcast.pipeline.resolve as resolve_module

    def spy(*args, **kwargs):
        frame = read_candles(*args, **kwargs)
        reads.append(len(frame))
        return frame

    resolve_module.read_candles = spy
    try:
        with session_scope(engine) as session:
            added = resolve_outcomes(session, settings, ASSET, candle + timedelta(hours=60))
    finally:
        resolve_module.read_candles = read_candles
    assert added == len(settings.targets)
    # from the predicted candle to now (60 candles), not the 150 days stored
    assert reads and max(reads) <= 61


@pytest.mark.slow
def test_batched_resolution_gives_what_resolving_each_entry_alone_gives(sqlite_url,
                                                                       make_settings):
    settings = make_settings(sqlite_url)
    engine = init_db(sqlite_url)
    now = seed_history(engine, settings)
    start = now - timedelta(days=20)
    for target in settings.targets:
        train_model(engine, settings, ASSET, target.key, "lightgbm", now=start)
    first = last_closed_open_time(start, "1h")
    for i in range(80):  # past the longer horizon (48): resolved and still pending ones
        tick(engine, settings, first + timedelta(hours=i))
    newest = first + timedelta(hours=80)
    with session_scope(engine, readonly=True) as session:
        outcomes = session.exec(select(Outcome).where(Outcome.asset == ASSET)).all()
        candles = read_candles(session, ASSET, "1h", start=first - timedelta(hours=1),
                               end=newest)
    assert {o.label for o in outcomes} >= {0, 1} and len(outcomes) > 50
    for o in outcomes:
        target = settings.target(o.target)
        resolved_at = utc(o.resolved_at)
        window = candles[candles.index <= last_closed_open_time(resolved_at, "1h")]
        alone = resolve_first_touch(window, o.candle_time, target.pct, target.horizon)
        assert (alone.label, alone.bars) == (o.label, o.bars), o


@pytest.mark.slow
def test_features_are_computed_once_per_asset_and_reused_across_targets(sqlite_url,
                                                                         make_settings):
    settings = make_settings(sqlite_url)
    engine = init_db(sqlite_url)
    now = seed_history(engine, settings)
    dataset.clear_shared_features()  # another test may have trained on the same history
    before = dict(dataset.FEATURE_STATS)
    for target in settings.targets:
        train_model(engine, settings, ASSET, target.key, "lightgbm", now=now)
    computed = dataset.FEATURE_STATS["computed"] - before["computed"]
    reused = dataset.FEATURE_STATS["reused"] - before["reused"]
    assert computed == 1 and reused == len(settings.targets) - 1


def test_shared_features_are_keyed_by_the_candle_values():
    index = np.arange(400)
    import pandas as pd

    times = pd.date_range("2024-01-01", periods=len(index), freq="h", tz="UTC")
    candles = pd.DataFrame({"open": 100 + np.sin(index), "high": 101 + np.sin(index),
                            "low": 99 + np.sin(index), "close": 100.5 + np.sin(index),
                            "volume": 10.0 + index}, index=times)
    first = dataset.shared_features(candles, "1h")
    assert dataset.shared_features(candles.copy(), "1h") is first  # the same history
    corrected = candles.copy()
    corrected.iloc[-1, 3] += 1.0  # a corrected candle is another history
    assert dataset.shared_features(corrected, "1h") is not first


def test_model_cache_is_bounded_by_bytes_least_recently_used_first():
    cache = ModelCache(max_bytes=100)
    cache.put((1, "a"), "m1", 40)
    cache.put((2, "b"), "m2", 40)
    assert cache.get((1, "a")) == "m1"
    cache.put((3, "c"), "m3", 40)  # over 100 bytes: the least recently used (2) goes
    assert sorted(k[0] for k in cache.keys()) == [1, 3] and cache.bytes == 80
    cache.put((1, "a2"), "m1 updated", 30, replaces=1)  # a new checksum of version 1
    assert sorted(cache.keys()) == [(1, "a2"), (3, "c")] and cache.bytes == 70
    cache.put((4, "huge"), "too big", 500)  # served, never kept
    assert cache.get((4, "huge")) is None and cache.bytes == 70
    assert cache.evictions == 1


def test_prune_deletes_only_finished_rows_older_than_the_window(db_url):
    engine = init_db(db_url)
    from datetime import UTC, datetime

    now = datetime(2026, 6, 1, tzinfo=UTC)
    old, recent = now - timedelta(days=40), now - timedelta(days=2)
    with session_scope(engine) as session:
        for i, (status, when) in enumerate([("sent", old), ("failed", old), ("pending", old),
                                            ("sent", recent)]):
            session.add(AlertOutbox(chat_id="1", asset=ASSET, target=f"t{i}", candle_time=when,
                                    kind="signal", payload={}, status=status,
                                    created_at=when))
        for i, (status, when) in enumerate([("done", old), ("running", old), ("done", recent)]):
            session.add(TaskRun(task_id=f"id{i}", name="predict", args={}, status=status,
                                started_at=when, finished_at=when))
        for i, (status, when) in enumerate([("landed", old), ("pending", old),
                                            ("landed", recent)]):
            session.add(ScheduledEnqueue(job=f"tick:{i}", fire_time=when, status=status))
    counted_only = prune(engine, now, dry_run=True, batch=1)
    result = prune(engine, now, batch=1)  # chunks of one row: several transactions
    assert counted_only.deleted == result.deleted == {
        "alert_outbox": 2, "task_runs": 1, "scheduled_enqueues": 1}
    assert prune(engine, now).deleted == {"alert_outbox": 0, "task_runs": 0,
                                          "scheduled_enqueues": 0}
    with session_scope(engine, readonly=True) as session:
        assert sorted(a.status for a in session.exec(select(AlertOutbox))) == ["pending", "sent"]
        assert sorted(r.status for r in session.exec(select(TaskRun))) == ["done", "running"]
        assert sorted(e.status for e in session.exec(select(ScheduledEnqueue))) == [
            "landed", "pending"]
    with pytest.raises(ConfigError, match="keep at least 7 days"):
        prune(engine, now, keep_days=1)
