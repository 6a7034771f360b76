"""``signalcast scheduler``: the APScheduler process that decides *when*.

Defaults set on purpose (docs/reliability.md): UTC, ``coalesce=True`` (after downtime each
missed job runs once, not once per missed fire), ``max_instances=1``, an explicit misfire grace
time.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from datetime import UTC, datetime

from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.schedulers.blocking import BlockingScheduler
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger

from signalcast.config import Settings
from signalcast.core.timeframes import timeframe_to_timedelta
from signalcast.db.engine import get_engine
from signalcast.scheduler.catchup import catch_up
from signalcast.scheduler.jobs import (
    candle_close_tick,
    daily_summary,
    drain_due_alerts,
    evaluate_promotions,
    retrain_all,
    system_check,
)
from signalcast.scheduler.leader import LeaderLock
from signalcast.scheduler.reconcile import reconcile

log = logging.getLogger(__name__)


def close_trigger(timeframe: str, delay_seconds: int) -> CronTrigger:
    """Fires ``delay_seconds`` after every close of a ``timeframe`` candle (UTC)."""
    minutes = int(timeframe_to_timedelta(timeframe).total_seconds() // 60)
    fields: dict[str, str | int] = {"second": delay_seconds}
    if minutes < 60:
        fields["minute"] = f"*/{minutes}"
    elif minutes < 24 * 60:
        fields.update(minute=0, hour=f"*/{minutes // 60}")
    else:
        fields.update(minute=0, hour=0, day=f"*/{minutes // (24 * 60)}")
    return CronTrigger(timezone=UTC, **fields)


def build_scheduler(settings: Settings, scheduler_cls=BlockingScheduler):
    engine = get_engine(settings.env.database_url)
    scheduler = scheduler_cls(timezone=UTC, job_defaults={
        "coalesce": True, "max_instances": 1,
        "misfire_grace_time": settings.schedule.misfire_grace_seconds})
    for timeframe in sorted({a.timeframe for a in settings.assets}):
        scheduler.add_job(
            lambda tf=timeframe: candle_close_tick(engine, settings, datetime.now(UTC), tf),
            close_trigger(timeframe, settings.schedule.predict_delay_seconds),
            id=f"candle_close:{timeframe}", name=f"predict after each {timeframe} close")
    scheduler.add_job(
        lambda: retrain_all(engine, settings, datetime.now(UTC)),
        CronTrigger.from_crontab(settings.schedule.retrain_cron, timezone=UTC),
        id="retrain", name="retrain champions")
    scheduler.add_job(
        lambda: evaluate_promotions(engine, settings, datetime.now(UTC)),
        CronTrigger.from_crontab(settings.schedule.promotion_cron, timezone=UTC),
        id="promotions", name="promote challengers that beat their champion")
    scheduler.add_job(
        lambda: daily_summary(engine, settings, datetime.now(UTC)),
        CronTrigger.from_crontab(settings.schedule.summary_cron, timezone=UTC),
        id="summary", name="daily summary alert")
    scheduler.add_job(
        lambda: system_check(engine, settings, datetime.now(UTC)),
        IntervalTrigger(minutes=settings.schedule.health_check_minutes, timezone=UTC),
        id="system_check", name="system health check")
    scheduler.add_job(
        lambda: reconcile(engine, settings, datetime.now(UTC),
                          predict_backlog=lambda: _predict_backlog(settings)),
        IntervalTrigger(seconds=settings.schedule.reconcile_seconds, timezone=UTC),
        id="reconcile", name="reconcile enqueues with the work they should have produced")
    scheduler.add_job(
        lambda: drain_due_alerts(engine, settings, datetime.now(UTC)),
        IntervalTrigger(seconds=settings.schedule.alerts_retry_seconds, timezone=UTC),
        id="drain_alerts", name="send alerts that wait")
    return scheduler


def _predict_backlog(settings: Settings) -> int | None:
    """Messages waiting in the predict queue (None when the broker cannot say)."""
    if settings.env.broker_url is None:
        return 0
    from signalcast.ops.cluster import queue_depths

    try:
        return queue_depths(settings.env.broker_url)["predict"]
    except Exception as exc:  # the broker is down: the reconciler looks again later
        log.info("predict queue depth unknown (%s)", exc)
        return None


def run_scheduler(settings: Settings, stop: threading.Event | None = None) -> None:
    """Compete for leadership until SIGTERM/SIGINT (or ``stop``). The leader runs the jobs and
    renews its lock; a standby waits and takes over within the lock's TTL."""
    import redis

    stop = stop or threading.Event()

    def _stop(signum, _frame):
        log.info("signal %s: stopping the scheduler", signal.Signals(signum).name)
        stop.set()

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _stop)
        signal.signal(signal.SIGINT, _stop)
    ttl = settings.schedule.leader_ttl_seconds
    lock = LeaderLock(redis.Redis.from_url(settings.env.broker_url, socket_timeout=5), ttl)
    engine = get_engine(settings.env.database_url)
    said_standby = False
    while not stop.is_set():
        try:
            leader = lock.acquire()
        except redis.RedisError as exc:
            log.warning("cannot reach Redis for the leader lock (%s); retrying", exc)
            leader = False
        if not leader:
            if not said_standby:
                log.info("standby: another scheduler leads (%s)", _holder(lock))
                said_standby = True
            stop.wait(min(2.0, ttl / 3))
            continue
        said_standby = False
        log.info("became leader (%s)", lock.token)
        _lead(settings, engine, lock, stop)
    lock.release()
    log.info("scheduler stopped")


def _holder(lock: LeaderLock) -> str:
    try:
        return lock.holder() or "nobody"
    except Exception:  # only for a log line
        return "unknown"


def _lead(settings: Settings, engine, lock: LeaderLock, stop: threading.Event) -> None:
    """Run the jobs while we hold the lock. Renewal errors (Redis briefly down) are tolerated
    until our lease would have run out; a lost lock stops the jobs at once."""
    import redis

    catch_up(engine, settings, datetime.now(UTC))
    scheduler = build_scheduler(settings, BackgroundScheduler)
    for job in scheduler.get_jobs():
        log.info("scheduled %s: %s", job.name, job.trigger)
    scheduler.start()
    ttl = settings.schedule.leader_ttl_seconds
    last_renewed = time.monotonic()
    try:
        while not stop.wait(ttl / 3):
            try:
                if lock.renew() or lock.acquire():  # acquire: Redis restarted and lost the key
                    last_renewed = time.monotonic()
                    continue
                log.warning("leadership lost to %s; stepping down", _holder(lock))
                return
            except redis.RedisError as exc:
                if time.monotonic() - last_renewed > ttl:
                    log.warning("lease expired while Redis was unreachable (%s); stepping down",
                                exc)
                    return
                log.warning("cannot renew the leader lock (%s); still within the lease", exc)
    finally:
        scheduler.shutdown(wait=True)
