"""What is routed where, as data for the CLI and the bot: per (asset, target) the champion,
shadows, A/B split, open circuit breakers and recent fallbacks."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func
from sqlalchemy.engine import Engine
from sqlmodel import select

from signalcast.config import Settings
from signalcast.core.timeframes import utc
from signalcast.core.versions import label
from signalcast.db.engine import session_scope
from signalcast.db.tables import Prediction
from signalcast.routing.breaker import CLOSED, state_at
from signalcast.routing.overrides import overrides_for
from signalcast.routing.router import Router


def routing_overview(engine: Engine, settings: Settings, now: datetime,
                     days: int = 7) -> list[dict[str, Any]]:
    """One dict per configured (asset, target); ``fallbacks`` counts served predictions of the
    last ``days`` that needed the fallback chain."""
    now = utc(now)
    out = []
    with session_scope(engine, readonly=True) as session:
        counts = dict(((a, t), n) for a, t, n in session.exec(
            select(Prediction.asset, Prediction.target, func.count()).where(
                Prediction.served, Prediction.fallback.is_not(None),
                Prediction.candle_time >= now - timedelta(days=days))
            .group_by(Prediction.asset, Prediction.target)).all())
        for asset in settings.assets:
            router = Router(session, settings, asset.symbol, now, lock=False)
            overrides = overrides_for(session, asset.symbol)
            for target in settings.targets:
                lineup = router.lineup(target.key)
                policy = lineup.policy
                breakers = router.breakers
                open_breakers = [
                    f"{label(v)} {state_at(breakers.get(v.id), now, policy)}"
                    for v in lineup.versions()
                    if state_at(breakers.get(v.id), now, policy) != CLOSED]
                out.append({
                    "asset": asset.symbol, "target": target.key,
                    "champion": label(lineup.champion) if lineup.champion else None,
                    "shadows": [label(v) for v in lineup.shadows],
                    "ab_share": policy.ab_share,
                    "ab_challenger": label(lineup.ab_challenger) if lineup.ab_challenger
                    else None,
                    "promote_mode": policy.promote_mode,
                    "overridden": target.key in overrides,
                    "breakers": open_breakers,
                    "fallbacks": counts.get((asset.symbol, target.key), 0),
                })
    return out
