"""The live cluster as the broker sees it: workers per queue, queue depths, last tick.

Everything here is best effort with short timeouts: a status must answer even when the broker
is down, saying so. Workers are asked through the :class:`~signalcast.core.ports.ClusterProbe`
the caller hands in (Celery's broadcast control, from :mod:`signalcast.tasks.enqueuer`).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import func
from sqlalchemy.engine import Engine
from sqlmodel import select

from signalcast.config import Settings
from signalcast.core.ports import ClusterProbe
from signalcast.core.queues import QUEUES
from signalcast.db.engine import session_scope
from signalcast.db.tables import ScheduledEnqueue, TaskRun

# kombu's Redis transport keeps priority levels 1..9 in sibling lists "<queue>\x06\x16<n>"
_PRIORITY_SUFFIXES = ("", *(f"\x06\x16{p}" for p in range(1, 10)))


def queue_depths(broker_url: str, timeout: float = 2.0) -> dict[str, int]:
    """Messages waiting per queue (Redis LLEN of kombu's lists, priority lists included)."""
    import redis

    client = redis.Redis.from_url(broker_url, socket_timeout=timeout,
                                  socket_connect_timeout=timeout)
    try:
        return {queue: sum(client.llen(queue + suffix) for suffix in _PRIORITY_SUFFIXES)
                for queue in QUEUES}
    finally:
        client.close()


def last_tick(engine: Engine):
    """The open time of the newest candle a tick was enqueued for (the one definition of
    "last tick" that status, the bot and the metrics share), or None."""
    with session_scope(engine, readonly=True) as session:
        return session.exec(select(func.max(ScheduledEnqueue.fire_time))
                            .where(ScheduledEnqueue.job.like("tick:%"))).one()


def cluster_state(engine: Engine, settings: Settings, probe: ClusterProbe | None = None,
                  timeout: float = 1.0) -> dict[str, Any]:
    tick = last_tick(engine)
    with session_scope(engine, readonly=True) as session:
        failed = session.exec(select(TaskRun.name, func.count()).where(
            TaskRun.status == "failed").group_by(TaskRun.name)).all()
    state: dict[str, Any] = {
        "broker": "embedded" if settings.env.broker_url is None else "redis",
        "last_tick": tick.isoformat() if tick else None,
        "failed_tasks": dict(failed),
        "workers": {}, "queues": {}, "broker_error": None,
    }
    if settings.env.broker_url is None:
        return state
    try:
        state["queues"] = queue_depths(settings.env.broker_url, timeout=max(timeout, 1.0))
        state["workers"] = probe.active_queues(timeout) if probe is not None else {}
    except Exception as exc:  # the broker is down: say so rather than fail the status
        state["broker_error"] = f"{type(exc).__name__}: {exc}"
    return state


def workers_per_queue(workers: dict[str, list[str]]) -> dict[str, int]:
    return {queue: sum(queue in qs for qs in workers.values()) for queue in QUEUES}
