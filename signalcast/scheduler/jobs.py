"""Scheduler jobs: plain functions of ``now`` that only enqueue work.

Each (job, fire time) is recorded in ``scheduled_enqueues`` in the same transaction as the
enqueue, so a tick that fires twice (a restart, a second scheduler) is enqueued once, and a tick
whose enqueue failed is not recorded and will be tried again.
"""

from __future__ import annotations

import logging
import time
from datetime import datetime

from celery import chain, group
from celery.result import AsyncResult
from sqlalchemy.engine import Engine

from signalcast.config import Settings
from signalcast.db.engine import session_scope
from signalcast.db.tables import ScheduledEnqueue
from signalcast.db.upsert import insert_ignore
from signalcast.tasks import tasks
from signalcast.timeframes import last_closed_open_time, utc

log = logging.getLogger(__name__)
ENQUEUE_ATTEMPTS = 5


def _enqueue_once(engine: Engine, job: str, fire_time: datetime, signature) -> AsyncResult | None:
    """Enqueue ``signature`` unless (job, fire_time) was enqueued before. Retries while the
    broker is briefly unreachable; raises after the last attempt (never drops silently)."""
    for attempt in range(1, ENQUEUE_ATTEMPTS + 1):
        try:
            with session_scope(engine) as session:
                fresh = insert_ignore(session, ScheduledEnqueue,
                                      {"job": job, "fire_time": fire_time, "task_ids": []},
                                      keys=["job", "fire_time"])
                if not fresh:
                    log.info("%s at %s was enqueued before; skipped", job, fire_time)
                    return None
                return signature.apply_async()
        except Exception as exc:  # broker or database briefly down
            if attempt == ENQUEUE_ATTEMPTS:
                log.error("enqueue of %s at %s failed %d times: %s", job, fire_time, attempt, exc)
                raise
            log.warning("enqueue of %s at %s failed (%s); retrying", job, fire_time, exc)
            time.sleep(min(2**attempt, 10))
    return None


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


def train_signatures(settings: Settings, now: datetime, *, assets=None, targets=None,
                     families=None) -> list:
    now = utc(now)
    return [
        tasks.train.si(a.symbol, t.key, f, now.isoformat())
        .set(task_id=f"train:{a.symbol}:{t.key}:{f}:{now.isoformat()}")
        for a in settings.assets if assets is None or a.symbol in assets
        for t in settings.targets if targets is None or t.key in targets
        for f in (families or [settings.models.champion])
    ]


def retrain_all(engine: Engine, settings: Settings, now: datetime) -> list[AsyncResult]:
    """The retrain cadence: train the champion family of every (asset, target)."""
    now = utc(now).replace(second=0, microsecond=0)
    result = _enqueue_once(engine, "retrain", now, group(train_signatures(settings, now)))
    return [] if result is None else list(result.results)
