"""What every handler needs, built once per bot run and kept in ``application.bot_data``."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy.engine import Engine

from signalcast.config import Settings
from signalcast.core.ports import ClusterProbe, Enqueuer

log = logging.getLogger(__name__)


@dataclass
class BotContext:
    settings: Settings
    engine: Engine
    celery: Any | None  # the configured Celery app when a broker is set, else None
    redact: Callable[[str], str]  # removes the bot token from text bound for the log

    @property
    def enqueuer(self) -> Enqueuer | None:
        """How commands start work (retrain, drain); None without a broker."""
        if self.celery is None:
            return None
        from signalcast.tasks.enqueuer import CeleryEnqueuer

        return CeleryEnqueuer()

    @property
    def probe(self) -> ClusterProbe | None:
        if self.celery is None:
            return None
        from signalcast.tasks.enqueuer import CeleryProbe

        return CeleryProbe(self.celery)

    def still_retrying(self, task_id: str) -> bool:
        """Whether Celery will run a task that failed once again (autoretry)."""
        if self.celery is None:
            return False
        from celery.result import AsyncResult

        try:
            return AsyncResult(task_id, app=self.celery).state in ("RETRY", "STARTED")
        except Exception:  # result backend unreachable: trust the TaskRun row
            return False

    def request_drain(self) -> None:
        """Enqueue a drain so alerts queued by a command (a model event) go out now."""
        enqueuer = self.enqueuer
        if enqueuer is None:
            return
        try:
            enqueuer.drain_alerts()
        except Exception as exc:  # the scheduler's drain job will send them later
            log.warning("cannot enqueue an alert drain: %s", exc)
