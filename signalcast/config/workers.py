"""The ``workers`` section: Celery worker behaviour."""

from __future__ import annotations

from pydantic import Field

from signalcast.config.base import Section


class WorkersConfig(Section):
    """Celery worker behaviour (docs/reliability.md explains each default)."""

    visibility_timeout_seconds: int = Field(default=7200, ge=5)  # > longest train + queue wait
    max_lost_deliveries: int = Field(default=3, ge=1)  # worker died mid-task this often: give up
    max_memory_per_child_mb: int = Field(default=2048, ge=64)
    max_tasks_per_child: int = Field(default=200, ge=1)
    soft_shutdown_seconds: float = Field(default=30, ge=0)
    model_threads: int = Field(default=1, ge=1)  # threads per worker process for model code
