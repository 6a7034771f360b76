"""The Celery side of :mod:`signalcast.core.ports`: how use cases start work and ask who runs.

Task ids are deterministic (``train:<asset>:<target>:<family>:<now>``, ``...:last<N>`` for a
drift retrain on the newest N candles), so the same request
enqueued twice is the same task, and a retrain started by a command can be followed by its id.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import datetime
from typing import Any

from celery import Celery
from celery.canvas import Signature

from signalcast.config import Settings
from signalcast.core.queues import train_task_id
from signalcast.core.timeframes import utc
from signalcast.tasks import tasks


def train_signature(asset: str, target: str, family: str, now: datetime,
                    history_candles: int | None = None) -> Signature:
    """One ``train`` task; with ``history_candles`` (a drift retrain's window) it is an extra
    argument and the id ends ``:last<N>``, so the same window enqueued twice is one task and a
    full-history training at the same time is another."""
    now = utc(now)
    task_id = train_task_id(asset, target, family, now, history_candles)
    if history_candles is None:
        return tasks.train.si(asset, target, family, now.isoformat()).set(task_id=task_id)
    return tasks.train.si(asset, target, family, now.isoformat(), int(history_candles)).set(
        task_id=task_id)


def train_signatures(settings: Settings, now: datetime, *, assets: Iterable[str] | None = None,
                     targets: Iterable[str] | None = None,
                     families: Iterable[str] | None = None) -> list[Signature]:
    """One train signature per chosen (asset, target, family); by default every configured
    asset and target with the champion family."""
    assets = None if assets is None else set(assets)
    targets = None if targets is None else set(targets)
    return [train_signature(a.symbol, t.key, f, now)
            for a in settings.assets if assets is None or a.symbol in assets
            for t in settings.targets if targets is None or t.key in targets
            for f in (families or [settings.models.champion])]


def retrain_signatures(settings: Settings, now: datetime) -> list[Signature]:
    """The scheduled retrain: one ``train_asset`` signature per configured asset (all its
    targets, the champion family), so each asset's features are computed once per run
    whichever train worker takes it."""
    now = utc(now)
    family = settings.models.champion
    return [tasks.train_asset.si(a.symbol, [t.key for t in settings.targets], family,
                                 now.isoformat()).set(
        task_id=f"train_asset:{a.symbol}:{family}:{now.isoformat()}")
        for a in settings.assets]


class CeleryEnqueuer:
    """:class:`~signalcast.core.ports.Enqueuer` over the Celery app; ``send`` is how a
    signature goes out (default ``apply_async``; tests pass ``list.append`` to capture)."""

    def __init__(self, send: Callable[[Signature], Any] | None = None) -> None:
        self._send = send or (lambda signature: signature.apply_async())

    def train(self, asset: str, target: str, family: str, now: datetime, *,
              history_candles: int | None = None) -> str:
        signature = train_signature(asset, target, family, now, history_candles)
        self._send(signature)
        return signature.options["task_id"]

    def drain_alerts(self) -> None:
        self._send(tasks.send_alerts.si())


class CeleryProbe:
    """:class:`~signalcast.core.ports.ClusterProbe` through Celery's broadcast control."""

    def __init__(self, app: Celery | None = None) -> None:
        self._app = app or tasks.app

    def ping(self, timeout: float) -> list[str]:
        replies = self._app.control.ping(timeout=timeout) or []
        return sorted(name for reply in replies for name in reply)

    def active_queues(self, timeout: float) -> dict[str, list[str]]:
        replies = self._app.control.inspect(timeout=timeout).active_queues() or {}
        return {host: sorted(q["name"] for q in queues) for host, queues in replies.items()}


def probe_for(settings: Settings) -> CeleryProbe | None:
    """A probe of the cluster ``settings`` point at (the app is configured for them), or None
    in embedded mode, where no worker runs outside the command itself."""
    if settings.env.broker_url is None:
        return None
    from signalcast.tasks.app import configure

    configure(settings)  # the broadcast goes through the configured broker
    return CeleryProbe()
