"""After downtime (no leader for a while), each missed job runs once: not once per missed fire.

A new leader calls :func:`catch_up` before its scheduler starts. The candle-close tick for the
newest closed candle is enqueued unless it already was (the (job, fire time) record makes this
safe to call any time); its ingest stores every candle that closed meanwhile. A retrain whose
last cron fire passed unrecorded runs once now.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from apscheduler.triggers.cron import CronTrigger
from sqlalchemy import func
from sqlalchemy.engine import Engine
from sqlmodel import select

from signalcast.config import Settings
from signalcast.core.timeframes import utc
from signalcast.db.engine import session_scope
from signalcast.db.tables import ScheduledEnqueue
from signalcast.scheduler.jobs import candle_close_tick, retrain_all

log = logging.getLogger(__name__)


def previous_fire(trigger: CronTrigger, now: datetime, lookback: timedelta) -> datetime | None:
    """The last time ``trigger`` fired at or before ``now`` (searching ``lookback`` back)."""
    fire, last = trigger.get_next_fire_time(None, now - lookback), None
    while fire is not None and fire <= now:
        last, fire = fire, trigger.get_next_fire_time(fire, fire + timedelta(seconds=1))
    return last


def catch_up(engine: Engine, settings: Settings, now: datetime) -> dict[str, int]:
    now = utc(now)
    ticks = candle_close_tick(engine, settings, now).assets
    trigger = CronTrigger.from_crontab(settings.schedule.retrain_cron, timezone="UTC")
    due = previous_fire(trigger, now, lookback=timedelta(days=8))
    with session_scope(engine, readonly=True) as session:
        last = session.exec(select(func.max(ScheduledEnqueue.fire_time))
                            .where(ScheduledEnqueue.job == "retrain")).one()
    retrains = 0
    if due is not None and (last is None or last < due):
        retrains = len(retrain_all(engine, settings, now))
    if ticks or retrains:
        log.info("caught up: %d asset tick(s), %d training(s)", ticks, retrains)
    return {"ticks": ticks, "trainings": retrains}
