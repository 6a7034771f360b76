"""Scheduler job functions of routing: plain functions of ``now`` (register them on the
scheduler; they do their work directly, it is short).

- :func:`evaluate_promotions`: compare every routed challenger with its champion on shared
  resolved outcomes; promote or notify (see :mod:`signalcast.routing.promotion`). Daily is
  enough: outcomes accumulate one per candle.
- :func:`learn_online`: online learning and drift for every asset, for a deployment that does
  not call :func:`signalcast.pipeline.learn.learn_from_outcomes` from the resolve task.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.engine import Engine

from signalcast.config import Settings
from signalcast.pipeline import learn as online
from signalcast.routing import promotion


def evaluate_promotions(engine: Engine, settings: Settings, now: datetime) -> list[dict]:
    """One promotion round over every configured (asset, target); JSON-ready results."""
    return [c.to_dict() for c in promotion.evaluate_promotions(engine, settings, now)]


def learn_online(engine: Engine, settings: Settings, now: datetime) -> list[dict]:
    """Online learning and drift detection for every configured asset."""
    return [online.learn_from_outcomes(engine, settings, asset.symbol, now).to_dict()
            for asset in settings.assets]
