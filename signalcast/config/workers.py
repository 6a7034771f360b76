"""The ``workers`` section: Celery worker behaviour."""

from __future__ import annotations

from pydantic import Field

from signalcast.config.base import Section


class WorkersConfig(Section):
    """Celery worker behaviour (docs/reliability.md explains each default).

    The Redis visibility timeout is one setting per broker connection, so it is sized for the
    short queues: a message of a dead ``predict`` or ``alerts`` worker comes back after it (plus
    one ``restore_sweep_seconds``). Training (the ``train`` queue) is acknowledged on receipt and
    never waits on it: a killed pool child is retried at once, a dead host's training is
    re-enqueued by the scheduler's reconciler after its hard time limit."""

    # above every predict/alerts hard time limit (180 s) and retry countdown (120 s)
    visibility_timeout_seconds: int = Field(default=200, ge=5)  # a dead worker's task returns
    restore_sweep_seconds: int = Field(default=10, ge=1, le=300)  # how often workers look
    max_lost_deliveries: int = Field(default=3, ge=1)  # worker died mid-task this often: give up
    max_memory_per_child_mb: int = Field(default=2048, ge=64)  # a pool child past it is replaced
    # A replaced child loses its loaded models and loads each again: replacing it every 200
    # tasks (the old default) cost a 6-asset predict worker half its tick rate (bench_scaling)
    max_tasks_per_child: int | None = Field(default=None, ge=1)  # None: replaced by memory only
    soft_shutdown_seconds: float = Field(default=30, ge=0)
    model_threads: int = Field(default=1, ge=1)  # threads per worker process for model code
