"""The ``schedule`` section: when ticks, retrains, promotions, summaries and checks run."""

from __future__ import annotations

from pydantic import Field, field_validator

from signalcast.config.base import Section


class ScheduleConfig(Section):
    predict_delay_seconds: int = Field(default=20, ge=0, le=59)
    retrain_cron: str = "17 3 * * *"
    misfire_grace_seconds: int = Field(default=300, ge=1)
    leader_ttl_seconds: float = Field(default=30, ge=2)  # a standby takes over within this
    promotion_cron: str = "41 4 * * *"  # daily: compare challengers with champions
    summary_cron: str = "0 8 * * *"  # daily summary alert (UTC, crontab syntax)
    health_check_minutes: int = Field(default=5, ge=1, le=1440)  # system check cadence
    alerts_retry_seconds: int = Field(default=30, ge=5, le=3600)  # drain waiting alerts
    # the reconciler (scheduler/reconcile.py, docs/reliability.md)
    reconcile_seconds: int = Field(default=60, ge=5, le=3600)  # how often it looks
    tick_landing_seconds: int = Field(default=240, ge=5, le=86400)  # unseen work then: lost
    pending_republish_seconds: int = Field(default=30, ge=5, le=3600)  # publish again after
    max_tick_redos: int = Field(default=2, ge=0, le=10)  # re-enqueues of one tick's lost work
    tick_drain_wait_seconds: int = Field(default=300, ge=0, le=3600)  # the tick's one drain
    # Assets per ingest and per predict task of a tick (docs/scaling.md): 1 runs each asset on
    # its own task; more shares a task's fixed costs (broker round trip, run record,
    # transactions) and its reads among assets: 6 assets in one batch ticked 2.3x faster. A
    # batch's ingests run one after another: on an exchange source keep it at 8 or fewer.
    tick_batch_assets: int = Field(default=1, ge=1, le=100)  # assets per ingest/predict task

    @field_validator("retrain_cron", "summary_cron", "promotion_cron")
    @classmethod
    def _valid_cron(cls, value: str) -> str:
        from apscheduler.triggers.cron import CronTrigger

        try:
            CronTrigger.from_crontab(value, timezone="UTC")
        except ValueError as exc:
            raise ValueError(f"must be a crontab expression like '17 3 * * *' ({exc})") from exc
        return value
