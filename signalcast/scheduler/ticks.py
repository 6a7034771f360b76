"""The shape of a candle-close tick, and its expected result.

Per asset: ``ingest``, then ``predict`` and ``resolve`` side by side (a failing prediction does
not stop outcome resolution, online learning or drift); per tick (all assets of a timeframe at
one fire time) ONE drain of the outbox, published with the tick, that waits (by re-scheduling
itself, never by blocking a worker) until every asset's work has a final record or
``schedule.tick_drain_wait_seconds`` passed.

Every message of a tick expires at the tick's deadline (Celery ``expires``), and the predict
task refuses to predict after it: a signal computed after its candle's next close would carry
the price levels of then. The deadline is the candle's next close on the wall clock; a replay
of history (its next close long past) gets one candle's time from when it was published.

Task ids are deterministic: ``<job>:<asset>:<candle>[:r<redo>]:<step>``; a re-enqueue of lost
work (``redo``) runs under fresh ids, so the attempt counter of the task runs stays an honest
count of lost deliveries.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from celery import chain, group
from celery.canvas import Signature
from celery.result import AsyncResult

from signalcast.config import Settings
from signalcast.core.queues import tick_deadline, tick_key
from signalcast.db.tables import utcnow
from signalcast.tasks import tasks


class TickResults(list):
    """The per-asset results of one tick (what the scheduler and the CLI wait on), with the
    tick's one drain (``drain``; None when nothing was enqueued)."""

    drain: AsyncResult | None = None


@dataclass
class TickPlan:
    """What one asset's tick runs: its flow and the ids the drain waits for."""

    asset: str
    job: str
    candle_time: datetime
    deadline: datetime
    flow: Signature
    ids: list[str] = field(default_factory=list)


def asset_plan(job: str, asset: str, timeframe: str, now: datetime, candle_time: datetime,
               *, redo: int = 0, deadline: datetime | None = None) -> TickPlan:
    """One asset's tick: ingest, then predict and resolve independently."""
    deadline = deadline or tick_deadline(candle_time, timeframe)
    key = tick_key(job, asset, candle_time, redo)
    expires = deadline.isoformat()
    ids = [f"{key}:ingest", f"{key}:predict", f"{key}:resolve"]
    flow = chain(
        tasks.ingest.si(asset, now.isoformat()).set(task_id=ids[0], expires=expires),
        group(tasks.predict.si(asset, candle_time.isoformat(), expires)
              .set(task_id=ids[1], expires=expires),
              tasks.resolve.si(asset, now.isoformat()).set(task_id=ids[2], expires=expires)),
    )
    return TickPlan(asset, f"{job}:{asset}", candle_time, deadline, flow, ids)


def drain_signature(job: str, timeframe: str, candle_time: datetime, plans: list[TickPlan],
                    settings: Settings, redo: int = 0) -> Signature:
    """The tick's one drain: waits for the plans' work, then sends what it queued."""
    until = min([*(p.deadline for p in plans),
                 utcnow() + timedelta(seconds=settings.schedule.tick_drain_wait_seconds)])
    key = tick_key(job, f"drain:{timeframe}", candle_time, redo)
    expires = max(p.deadline for p in plans).isoformat()
    return tasks.send_alerts.si([p.ids for p in plans], until.isoformat()).set(
        task_id=f"{key}:alerts", expires=expires)
