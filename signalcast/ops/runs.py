"""Task runs: one row per task id recording attempts, progress, result and error.

Written in their own short transactions so progress is visible while the task still works
(the bot's /retrain reply and ``signalcast status`` read it).
"""

from __future__ import annotations

import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import update
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from signalcast.core.errors import SignalcastError
from signalcast.db.engine import session_scope
from signalcast.db.tables import TaskRun, utcnow
from signalcast.db.upsert import dialect_insert


class RunRecorder:
    def __init__(self, engine: Engine, task_id: str):
        self.engine, self.task_id = engine, task_id
        self.result: dict[str, Any] = {}
        self.finished = False  # recorded done in the work's own transaction (finish_in)

    def _set(self, **values: Any) -> None:
        with session_scope(self.engine) as session:
            self._update(session, **values)

    def _update(self, session: Session, **values: Any) -> None:
        session.execute(update(TaskRun).where(TaskRun.task_id == self.task_id).values(**values))

    def finish_in(self, session: Session, result: dict[str, Any]) -> None:
        """Record the run done with ``result`` in ``session``'s transaction, the one that writes
        the task's work: the record says done exactly when that work is committed, and the
        run costs one transaction fewer. Should the commit fail, the block's exception records
        the run failed as usual."""
        self.result = result
        self._update(session, status="done", finished_at=utcnow(), error=None, result=result)
        self.finished = True

    def progress(self, message: str) -> None:
        self._set(progress=message[:500])


def _start(session: Session, task_id: str, name: str, args: dict[str, Any]) -> int:
    """Insert the run, or count one more attempt of it, in one statement; returns attempts."""
    stmt = dialect_insert(session, TaskRun).values(
        task_id=task_id, name=name, args=args, status="running", attempts=1, result={},
        started_at=utcnow())
    stmt = _one_more_attempt(stmt, ("status", "started_at"))
    return session.connection().execute(
        stmt.returning(TaskRun.__table__.c.attempts)).scalar_one()


def _one_more_attempt(stmt: Any, columns: tuple[str, ...]) -> Any:
    """``stmt`` (an insert of run rows) where a task id is recorded already: one more attempt
    (as a redelivery counts one), and the new row's ``columns``."""
    return stmt.on_conflict_do_update(index_elements=["task_id"], set_={
        "attempts": TaskRun.__table__.c.attempts + 1,
        **{c: stmt.excluded[c] for c in columns}})


FINISHED_COLUMNS = ("status", "progress", "result", "error", "started_at", "finished_at")


def store_finished_runs(session: Session, rows: list[dict[str, Any]]) -> None:
    """Store run records of work this process did itself (a replay's tick: ``task_id``,
    ``name``, ``args``, ``attempts`` 1 and the :data:`FINISHED_COLUMNS`), in one statement, as
    :func:`recorded_run` leaves them: a task id recorded before counts one more attempt."""
    if rows:
        session.connection().execute(
            _one_more_attempt(dialect_insert(session, TaskRun), FINISHED_COLUMNS), rows)


class GaveUp(SignalcastError):
    """The task's worker died in it too often; it is recorded as failed and not run again."""


@contextmanager
def recorded_run(engine: Engine, task_id: str, retries: int, name: str,
                 args: dict[str, Any], max_lost: int | None = None) -> Iterator[RunRecorder]:
    """Record a task run; the block's exception (if any) is stored and re-raised.

    With ``acks_late`` and ``task_reject_on_worker_lost`` a task whose worker was killed is
    redelivered, and the broker keeps no count: a task that kills its worker every time (say,
    out of memory) would loop forever. Each start is counted here; starts that ended neither in
    success nor in a retry (``retries``) were lost deliveries, and after ``max_lost`` of them
    the run is marked failed for good and :class:`GaveUp` is raised instead of running again.
    """
    if max_lost is None:
        from signalcast.config.runtime import get_settings

        max_lost = get_settings().workers.max_lost_deliveries
    with session_scope(engine) as session:
        attempts = _start(session, task_id, name, args)
    recorder = RunRecorder(engine, task_id)
    lost = attempts - 1 - retries
    if lost >= max_lost:
        message = (f"gave up: the worker died {lost} times while running this task; "
                   "check worker memory and time limits, then re-enqueue it")
        recorder._set(status="failed", finished_at=utcnow(), error=message)
        raise GaveUp(f"{name} {args}: {message}")
    try:
        yield recorder
    except Exception as exc:
        recorder._set(status="failed", finished_at=utcnow(),
                      error=f"{type(exc).__name__}: {exc}\n{traceback.format_exc(limit=3)}"[:2000])
        raise
    else:
        if not recorder.finished:
            recorder._set(status="done", finished_at=utcnow(), error=None,
                          result=recorder.result)


FINAL = ("done", "failed")


def run_states(engine: Engine, task_ids: list[str]) -> dict[str, TaskRun]:
    """The run records of ``task_ids`` that exist, by id (one short read)."""
    if not task_ids:
        return {}
    with session_scope(engine, readonly=True) as session:
        rows = session.exec(select(TaskRun).where(col(TaskRun.task_id).in_(task_ids))).all()
        return {row.task_id: row for row in rows}


def work_settled(engine: Engine, per_asset: list[list[str]]) -> bool:
    """True when every asset's tick work (its ingest, predict and resolve task ids) has a final
    record: its ingest failed (nothing after it runs), or both predict and resolve ended."""
    runs = run_states(engine, [i for ids in per_asset for i in ids])

    def final(task_id: str) -> bool:
        return task_id in runs and runs[task_id].status in FINAL

    def settled(ids: list[str]) -> bool:
        ingest, rest = ids[0], ids[1:]
        return (ingest in runs and runs[ingest].status == "failed") or all(map(final, rest))

    return all(settled(ids) for ids in per_asset)


def mark_lost(engine: Engine, task_id: str, why: str) -> None:
    """Record that a running task's process is gone (its message with it): the reconciler
    enqueues it again, and the next start counts as one more lost delivery."""
    with session_scope(engine) as session:
        session.execute(update(TaskRun).where(TaskRun.task_id == task_id,
                                              TaskRun.status == "running")
                        .values(status="lost", error=why[:2000], finished_at=utcnow()))
