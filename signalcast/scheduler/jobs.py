"""Scheduler jobs: plain functions of ``now`` that only enqueue work.

Each (job, fire time) is recorded in ``scheduled_enqueues`` in the same transaction as the
enqueue, so a tick that fires twice (a restart, a second scheduler) is enqueued once, and a tick
whose enqueue failed is not recorded and will be tried again.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import datetime

from celery import chain, group
from celery.result import AsyncResult
from sqlalchemy import func
from sqlalchemy.engine import Engine
from sqlmodel import select

from signalcast.alerts.rules import queue_summary_alerts, queue_system_alerts
from signalcast.config import Settings
from signalcast.core.timeframes import last_closed_open_time, utc
from signalcast.db.engine import session_scope
from signalcast.db.tables import AlertOutbox, ScheduledEnqueue
from signalcast.db.upsert import insert_ignore
from signalcast.tasks import tasks
from signalcast.tasks.enqueuer import train_signatures

log = logging.getLogger(__name__)
ENQUEUE_RETRY_SECONDS = 120.0


def _enqueue_once(engine: Engine, job: str, fire_time: datetime, signature) -> AsyncResult | None:
    """Enqueue ``signature`` unless (job, fire_time) was enqueued before. Retries with backoff
    while the broker or database is unreachable, for up to ``ENQUEUE_RETRY_SECONDS``; then
    raises (a tick is never dropped silently)."""
    deadline = time.monotonic() + ENQUEUE_RETRY_SECONDS
    attempt = 0
    while True:
        attempt += 1
        try:
            with session_scope(engine) as session:
                fresh = insert_ignore(session, ScheduledEnqueue,
                                      {"job": job, "fire_time": fire_time, "task_ids": []},
                                      keys=["job", "fire_time"])
                if not fresh:
                    log.info("%s at %s was enqueued before; skipped", job, fire_time)
                    return None
                return signature.apply_async()
        except Exception as exc:  # broker or database briefly down: the row rolled back
            if time.monotonic() > deadline:
                log.error("enqueue of %s at %s failed %d times: %s", job, fire_time, attempt, exc)
                raise
            log.warning("enqueue of %s at %s failed (%s); retrying", job, fire_time, exc)
            time.sleep(min(0.5 * 2**attempt, 5.0))


def candle_close_tick(engine: Engine, settings: Settings, now: datetime,
                      timeframe: str | None = None, *, job: str = "tick") -> list[AsyncResult]:
    """After a candle close: per asset, ingest -> predict -> resolve outcomes -> send alerts.

    ``job`` names the dedup key space: a replay uses its own so it never collides with the
    live scheduler's record of what it enqueued."""
    now = utc(now)
    results = []
    for asset in settings.assets:
        if timeframe is not None and asset.timeframe != timeframe:
            continue
        candle_time = last_closed_open_time(now, asset.timeframe).isoformat()
        key = f"{job}:{asset.symbol}:{candle_time}"
        flow = chain(
            tasks.ingest.si(asset.symbol, now.isoformat()).set(task_id=f"{key}:ingest"),
            tasks.predict.si(asset.symbol, candle_time).set(task_id=f"{key}:predict"),
            tasks.resolve.si(asset.symbol, now.isoformat()).set(task_id=f"{key}:resolve"),
            tasks.send_alerts.si().set(task_id=f"{key}:alerts"),
        )
        result = _enqueue_once(engine, f"{job}:{asset.symbol}",
                               last_closed_open_time(now, asset.timeframe), flow)
        if result is not None:
            results.append(result)
    return results


def retrain_all(engine: Engine, settings: Settings, now: datetime) -> list[AsyncResult]:
    """The retrain cadence: train the champion family of every (asset, target)."""
    now = utc(now).replace(second=0, microsecond=0)
    result = _enqueue_once(engine, "retrain", now, group(train_signatures(settings, now)))
    return [] if result is None else list(result.results)


def evaluate_promotions(engine: Engine, settings: Settings, now: datetime) -> AsyncResult | None:
    """The promotion cadence: enqueue one promotion round (champion against challengers on
    shared resolved outcomes) on the train queue, once per fire time."""
    now = utc(now).replace(second=0, microsecond=0)
    return _enqueue_once(engine, "promotions", now,
                         tasks.evaluate_promotions.si(now.isoformat())
                         .set(task_id=f"promotions:{now.isoformat()}"))


# -- alert jobs --------------------------------------------------------------------------------


def daily_summary(engine: Engine, settings: Settings, now: datetime) -> AsyncResult | None:
    """Queue the daily summary alert (hit rate and live AUC per asset and target) for every
    receiving chat, then enqueue a drain. The outbox key (chat, day) makes a second run of the
    same day queue nothing."""
    now = utc(now)
    with session_scope(engine) as session:
        queued = queue_summary_alerts(session, settings, now)
    if not queued:
        return None
    return _enqueue_once(engine, "summary", now.replace(second=0, microsecond=0),
                         tasks.send_alerts.si())


def system_check(engine: Engine, settings: Settings, now: datetime, *,
                 ping: Callable[[], list[dict]] | None = None) -> int:
    """Ping the workers (with a broker), queue system alerts for silent workers, a silent
    scheduler and repeated task failures, and enqueue a drain when any was queued."""
    workers = None
    if settings.env.broker_url is not None:
        try:
            replies = ping() if ping else tasks.app.control.ping(timeout=2.0)
            workers = [name for reply in replies or [] for name in reply]
        except Exception as exc:  # the broker is down: the tick jobs will say so
            log.warning("system check: cannot ping the workers: %s", exc)
    with session_scope(engine) as session:
        queued = queue_system_alerts(session, settings, utc(now), workers_seen=workers)
    if queued:
        try:
            tasks.send_alerts.apply_async()
        except Exception as exc:
            log.error("system check queued %d alert(s) but cannot enqueue a drain: %s",
                      queued, exc)
    return queued


def drain_due_alerts(engine: Engine, settings: Settings, now: datetime) -> AsyncResult | None:
    """Enqueue a drain when alerts wait in the outbox (after a 429 or an outage, or queued
    outside a tick) and no drain is already waiting in the ``alerts`` queue."""
    with session_scope(engine, readonly=True) as session:
        due = session.exec(select(func.count()).select_from(AlertOutbox).where(
            AlertOutbox.status == "pending", AlertOutbox.next_attempt_at <= utc(now))).one()
    if not due:
        return None
    if settings.env.broker_url is not None:
        from signalcast.ops.cluster import queue_depths

        try:
            if queue_depths(settings.env.broker_url)["alerts"] > 0:
                return None
        except Exception as exc:  # cannot tell: enqueue anyway, a drain is idempotent
            log.info("alerts queue depth unknown (%s)", exc)
    return tasks.send_alerts.apply_async()
