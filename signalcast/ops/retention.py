"""Retention for the tables that grow with every tick: ``alert_outbox``, ``task_runs`` and
``scheduled_enqueues``.

Only finished rows older than the kept window go: an alert still ``pending`` or ``sending``, a
task still ``running`` and an enqueue not yet ``landed``/``expired`` stay whatever their age.
The window must outlast the work that reads these rows: an outcome alert looks up the signal
alert of its candle when the outcome resolves (up to a target's horizon plus the resolver's
catch-up later), the reconciler reads recent enqueues and runs, and a redelivered tick is
refused after its candle's next close. Rows are deleted in chunks of ``batch`` per transaction,
so a SQLite writer lock is never held for long. Predictions, outcomes and model versions are
history (evaluation reads them) and are never pruned here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import delete, tuple_
from sqlalchemy.engine import Engine
from sqlmodel import col, select

from signalcast.core.errors import ConfigError
from signalcast.db.engine import session_scope
from signalcast.db.tables import AlertOutbox, ScheduledEnqueue, TaskRun

DEFAULT_KEEP_DAYS = 30
MIN_KEEP_DAYS = 7  # less could delete a signal alert before its outcome resolves
OUTBOX_OPEN = ("pending", "sending")  # every other status is final
ENQUEUE_FINAL = ("landed", "expired")
RUN_FINAL = ("done", "failed")


@dataclass
class PruneResult:
    cutoff: datetime
    deleted: dict[str, int] = field(default_factory=dict)  # table -> rows deleted

    def to_dict(self) -> dict:
        return {"cutoff": self.cutoff.isoformat(), "deleted": dict(self.deleted)}


def prune(engine: Engine, now: datetime, *, keep_days: float = DEFAULT_KEEP_DAYS,
          batch: int = 5_000, dry_run: bool = False) -> PruneResult:
    """Delete the finished rows of the growing tables older than ``keep_days`` before ``now``
    (``dry_run``: count them only). Running it twice deletes nothing the second time."""
    if keep_days < MIN_KEEP_DAYS:
        raise ConfigError(f"keep_days={keep_days:g} is below {MIN_KEEP_DAYS}: a signal alert "
                          "must outlive its outcome (horizon plus catch-up); keep at least "
                          f"{MIN_KEEP_DAYS} days")
    if batch < 1:
        raise ConfigError(f"batch={batch} must be at least 1")
    cutoff = now - timedelta(days=keep_days)
    result = PruneResult(cutoff)
    tables = {
        "alert_outbox": (AlertOutbox, AlertOutbox.id,
                         [AlertOutbox.created_at < cutoff,
                          col(AlertOutbox.status).not_in(OUTBOX_OPEN)]),
        "task_runs": (TaskRun, TaskRun.id,
                      [col(TaskRun.status).in_(RUN_FINAL), TaskRun.finished_at < cutoff]),
    }
    for name, (table, key, where) in tables.items():
        result.deleted[name] = _prune_by_id(engine, table, key, where, batch, dry_run)
    result.deleted["scheduled_enqueues"] = _prune_enqueues(engine, cutoff, batch, dry_run)
    return result


def _prune_by_id(engine: Engine, table, key, where: list, batch: int,  # noqa: ANN001
                 dry_run: bool) -> int:
    deleted = 0
    while True:
        with session_scope(engine, readonly=dry_run) as session:
            ids = session.exec(select(key).where(*where).order_by(key)
                               .offset(deleted if dry_run else 0).limit(batch)).all()
            if not ids:
                return deleted
            if not dry_run:
                session.exec(delete(table).where(col(key).in_(ids)))
        deleted += len(ids)


def _prune_enqueues(engine: Engine, cutoff: datetime, batch: int, dry_run: bool) -> int:
    where = [ScheduledEnqueue.fire_time < cutoff,
             col(ScheduledEnqueue.status).in_(ENQUEUE_FINAL)]
    deleted = 0
    while True:
        with session_scope(engine, readonly=dry_run) as session:
            keys = session.exec(select(ScheduledEnqueue.job, ScheduledEnqueue.fire_time)
                                .where(*where).order_by(ScheduledEnqueue.fire_time)
                                .offset(deleted if dry_run else 0).limit(batch)).all()
            if not keys:
                return deleted
            if not dry_run:
                session.exec(delete(ScheduledEnqueue).where(
                    tuple_(ScheduledEnqueue.job, ScheduledEnqueue.fire_time).in_(
                        [tuple(k) for k in keys])))
        deleted += len(keys)
