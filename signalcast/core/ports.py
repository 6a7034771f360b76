"""Ports: what a use case needs from the layers above it, as small protocols.

Use cases never import Celery. The few that must start more work (a drift retrain, a
``/retrain`` command, an alert drain after an admin command) are handed an :class:`Enqueuer`;
:class:`signalcast.tasks.enqueuer.CeleryEnqueuer` implements it. Status is handed a
:class:`ClusterProbe` to ask the workers who is alive.
"""

from __future__ import annotations

from datetime import datetime
from typing import Protocol


class Enqueuer(Protocol):
    def train(self, asset: str, target: str, family: str, now: datetime, *,
              history_candles: int | None = None) -> str:
        """Enqueue one training on the ``train`` queue; returns its (deterministic) task id.
        ``history_candles``: train on only that many of the newest candles (a drift retrain);
        None: ``training.history_candles``. The window is part of the task id."""
        ...

    def drain_alerts(self) -> None:
        """Enqueue one outbox drain on the ``alerts`` queue."""
        ...


class ClusterProbe(Protocol):
    def ping(self, timeout: float) -> list[str]:
        """Names of the workers that answered within ``timeout`` seconds."""
        ...

    def active_queues(self, timeout: float) -> dict[str, list[str]]:
        """Worker name -> the queues it consumes, for the workers that answered."""
        ...
