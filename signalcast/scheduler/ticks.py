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

With ``schedule.tick_batch_assets`` above 1, the assets of a timeframe are ticked in batches:
one ``ingest_assets`` and one ``predict_assets`` per batch (:func:`batch_plans`), each asset's
``resolve`` its own; each asset keeps its own enqueue record and expected result.

Task ids are deterministic: ``<job>:<asset>:<candle>[:r<redo>]:<step>``; a re-enqueue of lost
work (``redo``) runs under fresh ids, so the attempt counter of the task runs stays an honest
count of lost deliveries.
"""

from __future__ import annotations

import hashlib
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
    """The per-asset (per-batch) results of one tick (what the scheduler and the CLI wait
    on), with the tick's one drain (``drain``; None when nothing was enqueued) and how many
    asset ticks they carry (``assets``)."""

    drain: AsyncResult | None = None
    assets: int = 0


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


def batch_plans(job: str, assets: list[str], timeframe: str, now: datetime,
                candle_time: datetime) -> list[TickPlan]:
    """The tick of a batch of assets (``schedule.tick_batch_assets``): one ``ingest_assets``,
    then one ``predict_assets`` and each asset's own ``resolve``. One plan per asset, sharing
    the flow; each plan's ids are the batch's ingest and predict and the asset's resolve, so
    the drain and the reconciler judge each asset as they judge a tick of its own (a lost
    asset is redone on its own: :func:`asset_plan`)."""
    deadline = tick_deadline(candle_time, timeframe)
    # the batch's name in its task ids: its first asset, how many more, a digest of them all
    digest = hashlib.sha1("\n".join(assets).encode()).hexdigest()[:8]
    key = tick_key(job, f"{assets[0]}+{len(assets) - 1}#{digest}", candle_time, 0)
    expires = deadline.isoformat()
    ingest_id, predict_id = f"{key}:ingest", f"{key}:predict"
    resolves = {a: f"{tick_key(job, a, candle_time, 0)}:resolve" for a in assets}
    flow = chain(
        tasks.ingest_assets.si(assets, now.isoformat()).set(task_id=ingest_id, expires=expires),
        group(tasks.predict_assets.si(assets, candle_time.isoformat(), expires)
              .set(task_id=predict_id, expires=expires),
              *(tasks.resolve.si(a, now.isoformat()).set(task_id=resolves[a], expires=expires)
                for a in assets)),
    )
    return [TickPlan(a, f"{job}:{a}", candle_time, deadline, flow,
                     [ingest_id, predict_id, resolves[a]]) for a in assets]


def drain_signature(job: str, timeframe: str, candle_time: datetime, plans: list[TickPlan],
                    settings: Settings, redo: int = 0) -> Signature:
    """The tick's one drain: waits for the plans' work, then sends what it queued."""
    until = min([*(p.deadline for p in plans),
                 utcnow() + timedelta(seconds=settings.schedule.tick_drain_wait_seconds)])
    key = tick_key(job, f"drain:{timeframe}", candle_time, redo)
    expires = max(p.deadline for p in plans).isoformat()
    return tasks.send_alerts.si([p.ids for p in plans], until.isoformat()).set(
        task_id=f"{key}:alerts", expires=expires)
