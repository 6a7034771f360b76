"""Scheduler jobs: plain functions of ``now`` that only enqueue work.

Each (job, fire time) is recorded in ``scheduled_enqueues`` (committed as pending before the
publish, marked sent after: scheduler/enqueue.py), so a tick that fires twice (a restart, a
second scheduler) is enqueued once, and the reconciler (scheduler/reconcile.py) finds
enqueues whose publish or whose work did not land.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime

from celery import group
from celery.result import AsyncResult
from sqlalchemy import func
from sqlalchemy.engine import Engine
from sqlmodel import select

from signalcast.alerts.rules import queue_system_alerts
from signalcast.alerts.summary import queue_summary_alerts
from signalcast.config import Settings
from signalcast.core.timeframes import last_closed_open_time, utc
from signalcast.db.engine import session_scope
from signalcast.db.tables import AlertOutbox
from signalcast.scheduler.enqueue import enqueue_once, enqueue_shared
from signalcast.scheduler.ticks import TickResults, asset_plan, batch_plans, drain_signature
from signalcast.tasks import tasks
from signalcast.tasks.enqueuer import retrain_signatures

log = logging.getLogger(__name__)


def candle_close_tick(engine: Engine, settings: Settings, now: datetime,
                      timeframe: str | None = None, *, job: str = "tick") -> TickResults:
    """After a candle close: per asset ingest, then predict and resolve (by batches of
    ``schedule.tick_batch_assets``); one drain per timeframe's tick (scheduler/ticks.py).
    Returns the per-asset (per-batch) results (``.drain``: the drain's).

    ``job`` names the dedup key space: a replay uses its own so it never collides with the
    live scheduler's record of what it enqueued."""
    now = utc(now)
    results = TickResults()
    for tf in sorted({a.timeframe for a in settings.assets}):
        if timeframe is not None and tf != timeframe:
            continue
        candle_time = last_closed_open_time(now, tf)
        symbols = [a.symbol for a in settings.assets if a.timeframe == tf]
        size = settings.schedule.tick_batch_assets
        plans = []
        for batch in (symbols[i:i + size] for i in range(0, len(symbols), size)):
            shared = ([asset_plan(job, batch[0], tf, now, candle_time)] if len(batch) == 1
                      else batch_plans(job, batch, tf, now, candle_time))
            result = enqueue_shared(engine, {p.job: p.ids for p in shared}, candle_time,
                                    shared[0].flow, deadline=shared[0].deadline)
            if result is not None:
                results.append(result)
                results.assets += len(shared)
                plans.extend(shared)
        if plans:
            results.drain = enqueue_once(
                engine, f"drain:{job}:{tf}", candle_time,
                drain_signature(job, tf, candle_time, plans, settings),
                deadline=max(p.deadline for p in plans))
    return results


def retrain_all(engine: Engine, settings: Settings, now: datetime) -> list[AsyncResult]:
    """The retrain cadence: train the champion family of every (asset, target), one task per
    asset (its targets share the asset's features)."""
    now = utc(now).replace(second=0, microsecond=0)
    result = enqueue_once(engine, "retrain", now, group(retrain_signatures(settings, now)))
    return [] if result is None else list(result.results)


def evaluate_promotions(engine: Engine, settings: Settings, now: datetime) -> AsyncResult | None:
    """The promotion cadence: enqueue one promotion round (champion against challengers on
    shared resolved outcomes) on the train queue, once per fire time."""
    now = utc(now).replace(second=0, microsecond=0)
    return enqueue_once(engine, "promotions", now,
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
    return enqueue_once(engine, "summary", now.replace(second=0, microsecond=0),
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
