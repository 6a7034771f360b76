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

from signalcast.db.engine import session_scope
from signalcast.db.tables import TaskRun, utcnow
from signalcast.db.upsert import insert_ignore


class RunRecorder:
    def __init__(self, engine: Engine, task_id: str):
        self.engine, self.task_id = engine, task_id
        self.result: dict[str, Any] = {}

    def _set(self, **values: Any) -> None:
        with session_scope(self.engine) as session:
            session.execute(update(TaskRun).where(TaskRun.task_id == self.task_id).values(**values))

    def progress(self, message: str) -> None:
        self._set(progress=message[:500])


@contextmanager
def recorded_run(engine: Engine, task_id: str, name: str,
                 args: dict[str, Any]) -> Iterator[RunRecorder]:
    """Record a task run; the block's exception (if any) is stored and re-raised."""
    with session_scope(engine) as session:
        first = insert_ignore(session, TaskRun, {
            "task_id": task_id, "name": name, "args": args, "status": "running",
            "attempts": 1, "result": {}, "started_at": utcnow()}, keys=["task_id"])
        if not first:  # a retry or a redelivery of the same task id
            session.execute(update(TaskRun).where(TaskRun.task_id == task_id).values(
                attempts=TaskRun.attempts + 1, status="running", started_at=utcnow()))
    recorder = RunRecorder(engine, task_id)
    try:
        yield recorder
    except Exception as exc:
        recorder._set(status="failed", finished_at=utcnow(),
                      error=f"{type(exc).__name__}: {exc}\n{traceback.format_exc(limit=3)}"[:2000])
        raise
    else:
        recorder._set(status="done", finished_at=utcnow(), error=None, result=recorder.result)
