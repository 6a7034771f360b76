"""The live cluster as the broker sees it: workers per queue, queue depths, last tick.

Used by ``signalcast status`` and the bot's /status. Everything here is best effort with short
timeouts: a status command must answer even when the broker is down, saying so.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import func
from sqlalchemy.engine import Engine
from sqlmodel import select

from signalcast.config import Settings
from signalcast.db.engine import session_scope
from signalcast.db.tables import ScheduledEnqueue, TaskRun
from signalcast.tasks.app import QUEUES


def queue_depths(broker_url: str) -> dict[str, int]:
    """Messages waiting per queue (Redis lists; Celery's priority sub-queues included)."""
    import redis

    client = redis.Redis.from_url(broker_url, socket_timeout=2, socket_connect_timeout=2)
    depths = {}
    for queue in QUEUES:
        names = [queue, *(f"{queue}\x06\x16{p}" for p in range(1, 10))]
        depths[queue] = sum(client.llen(name) for name in names)
    return depths


def live_workers(timeout: float = 1.0) -> dict[str, list[str]]:
    """Worker hostname -> queues it consumes, for the workers that answer within ``timeout``."""
    from signalcast.tasks.app import app

    replies = app.control.inspect(timeout=timeout).active_queues() or {}
    return {host: sorted(q["name"] for q in queues) for host, queues in replies.items()}


def cluster_state(engine: Engine, settings: Settings) -> dict[str, Any]:
    with session_scope(engine, readonly=True) as session:
        last_tick = session.exec(select(func.max(ScheduledEnqueue.fire_time))
                                 .where(ScheduledEnqueue.job.like("tick:%"))).one()
        failed = session.exec(select(TaskRun.name, func.count()).where(
            TaskRun.status == "failed").group_by(TaskRun.name)).all()
    state: dict[str, Any] = {
        "broker": "embedded" if settings.env.broker_url is None else "redis",
        "last_tick": last_tick.isoformat() if last_tick else None,
        "failed_tasks": dict(failed),
        "workers": {}, "queues": {}, "broker_error": None,
    }
    if settings.env.broker_url is None:
        return state
    try:
        state["queues"] = queue_depths(settings.env.broker_url)
        state["workers"] = live_workers()
    except Exception as exc:  # the broker is down: say so rather than fail the status
        state["broker_error"] = f"{type(exc).__name__}: {exc}"
    return state


def workers_per_queue(workers: dict[str, list[str]]) -> dict[str, int]:
    return {queue: sum(queue in qs for qs in workers.values()) for queue in QUEUES}
