"""Resolve predictions whose outcome is known, with the same first-touch function as training."""

from __future__ import annotations

import logging
from datetime import datetime

from sqlmodel import Session, select

from signalcast.alerts.rules import queue_outcome_alerts
from signalcast.config import Settings
from signalcast.core.timeframes import last_closed_open_time
from signalcast.db.candles import read_candles
from signalcast.db.tables import Outcome, Prediction
from signalcast.db.upsert import insert_ignore
from signalcast.features import PENDING, resolve_first_touch

log = logging.getLogger(__name__)


def resolve_outcomes(session: Session, settings: Settings, asset: str, now: datetime) -> int:
    """Record the outcome of every predicted candle of ``asset`` that has resolved by ``now``
    (a level touched, or the horizon passed). Only candles closed at ``now`` are used, so a
    replay over stored history never peeks. Returns the number of outcomes added."""
    asset_cfg = settings.asset(asset)
    newest = last_closed_open_time(now, asset_cfg.timeframe)
    added = 0
    for target in settings.targets:
        resolved = select(Outcome.candle_time).where(
            Outcome.asset == asset_cfg.symbol, Outcome.target == target.key)
        open_times = sorted(session.exec(
            select(Prediction.candle_time).distinct().where(
                Prediction.asset == asset_cfg.symbol, Prediction.target == target.key,
                Prediction.candle_time < newest, Prediction.candle_time.not_in(resolved))).all())
        if not open_times:
            continue
        candles = read_candles(session, asset_cfg.symbol, asset_cfg.timeframe,
                               start=open_times[0], end=newest)
        for candle_time in open_times:
            if candle_time not in candles.index:
                log.warning("%s: candle %s missing; cannot resolve", asset, candle_time)
                continue
            outcome = resolve_first_touch(candles, candle_time, target.pct, target.horizon)
            if outcome.label == PENDING:
                continue
            row = {"asset": asset_cfg.symbol, "target": target.key, "candle_time": candle_time,
                   "label": outcome.label, "bars": outcome.bars, "resolved_at": now}
            if insert_ignore(session, Outcome, row, keys=["asset", "target", "candle_time"]):
                added += 1
                queue_outcome_alerts(session, settings, row)
    return added
