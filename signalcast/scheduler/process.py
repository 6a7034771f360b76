"""``signalcast scheduler``: the APScheduler process that decides *when*.

Defaults set on purpose (RELIABILITY.md): UTC, ``coalesce=True`` (after downtime each missed job
runs once, not once per missed fire), ``max_instances=1``, an explicit misfire grace time.
"""

from __future__ import annotations

import logging
import signal
from datetime import UTC, datetime

from apscheduler.schedulers.blocking import BlockingScheduler
from apscheduler.triggers.cron import CronTrigger

from signalcast.config import Settings
from signalcast.db.engine import get_engine
from signalcast.scheduler.jobs import candle_close_tick, retrain_all
from signalcast.timeframes import timeframe_to_timedelta

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
    return scheduler


def run_scheduler(settings: Settings) -> None:
    """Run until SIGTERM/SIGINT, then finish the job in hand and exit cleanly."""
    scheduler = build_scheduler(settings)

    def _stop(signum, _frame):
        log.info("signal %s: stopping the scheduler", signal.Signals(signum).name)
        scheduler.shutdown(wait=False)

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    for job in scheduler.get_jobs():
        log.info("scheduled %s: %s", job.name, job.trigger)
    scheduler.start()
    log.info("scheduler stopped")
