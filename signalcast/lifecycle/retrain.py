"""``/retrain`` and its live progress: enqueue trainings through the handed
:class:`~signalcast.core.ports.Enqueuer`, then follow each one by its task-run record."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy.engine import Engine
from sqlmodel import select

from signalcast.config import Settings
from signalcast.core.errors import ConfigError, UnknownNameError
from signalcast.core.ports import Enqueuer
from signalcast.db.engine import session_scope
from signalcast.db.tables import TaskRun, utcnow


@dataclass(frozen=True)
class RetrainTask:
    task_id: str
    asset: str
    target: str
    family: str


@dataclass
class RetrainJob:
    started_at: datetime
    tasks: list[RetrainTask]


@dataclass(frozen=True)
class TaskState:
    task: RetrainTask
    state: str  # queued | running | done | failed
    detail: str = ""


@dataclass
class RetrainProgress:
    job: RetrainJob
    states: list[TaskState] = field(default_factory=list)

    def count(self, state: str) -> int:
        return sum(s.state == state for s in self.states)

    @property
    def finished(self) -> bool:
        return all(s.state in ("done", "failed") for s in self.states)


def start_retrain(settings: Settings, enqueuer: Enqueuer | None, asset: str,
                  target: str | None = None, family: str | None = None, *,
                  now: datetime | None = None) -> RetrainJob:
    """Validate the names and enqueue the train tasks (one per target and family) through
    ``enqueuer`` (None: no broker here, which raises a ConfigError saying what to do)."""
    from signalcast.models.registry import families

    symbol = settings.asset(asset).symbol
    key = settings.target(target).key if target else None
    if family is not None and family not in families():
        raise UnknownNameError("model family", family, families())
    if settings.env.broker_url is None or enqueuer is None:
        raise ConfigError("retraining from here needs SIGNALCAST_BROKER_URL and a worker on the "
                          "train queue; on one machine use `signalcast train`")
    now = now or utcnow()
    keys = [key] if key is not None else [t.key for t in settings.targets]
    names = [family] if family is not None else [settings.models.champion]
    tasks = [RetrainTask(enqueuer.train(symbol, k, f, now), symbol, k, f)
             for k in keys for f in names]
    return RetrainJob(started_at=now, tasks=tasks)


def retrain_progress(engine: Engine, job: RetrainJob, *,
                     still_retrying: Callable[[str], bool] | None = None) -> RetrainProgress:
    """Each train task's state from its TaskRun row (no row yet: queued). A failed run that
    ``still_retrying(task_id)`` says will be retried shows as running."""
    ids = [t.task_id for t in job.tasks]
    with session_scope(engine, readonly=True) as session:
        runs = {r.task_id: r for r in session.exec(
            select(TaskRun).where(TaskRun.task_id.in_(ids))).all()}
    progress = RetrainProgress(job)
    for task in job.tasks:
        run = runs.get(task.task_id)
        if run is None:
            progress.states.append(TaskState(task, "queued"))
        elif run.status == "done":
            metrics = run.result.get("metrics") or {}
            auc = metrics.get("auc")
            detail = f"v{run.result.get('version')}" + (
                f", AUC {auc:.3f}" if isinstance(auc, int | float) else "")
            role = run.result.get("role")
            progress.states.append(TaskState(task, "done", f"{detail} ({role})" if role
                                             else detail))
        elif run.status == "failed" and not (still_retrying and still_retrying(task.task_id)):
            error = (run.error or "").splitlines()[0] if run.error else "failed"
            progress.states.append(TaskState(task, "failed", error[:200]))
        else:
            progress.states.append(TaskState(task, "running", run.progress or ""))
    return progress
