"""Bring closed candles into the database on each tick, from the configured source."""

from __future__ import annotations

import threading
from datetime import datetime

import pandas as pd
from sqlmodel import Session

from signalcast.config import Settings
from signalcast.data import SyntheticMarket
from signalcast.services.candles import last_candle_time, store_candles
from signalcast.timeframes import last_closed_open_time, timeframe_to_timedelta

_markets: dict[tuple, SyntheticMarket] = {}
_lock = threading.Lock()


def synthetic_market(settings: Settings, timeframe: str) -> SyntheticMarket:
    """One market per (assets, seed, start, timeframe) in this process; it caches its paths."""
    key = (tuple(a.symbol for a in settings.assets), settings.data.seed, settings.data.start,
           timeframe)
    with _lock:
        if key not in _markets:
            _markets[key] = SyntheticMarket([a.symbol for a in settings.assets],
                                            seed=settings.data.seed, timeframe=timeframe,
                                            start=settings.data.start)
        return _markets[key]


def synthetic_candles(settings: Settings, asset: str, timeframe: str,
                      until: datetime) -> pd.DataFrame:
    """The synthetic market's candles of ``asset`` with open time <= ``until``."""
    step = timeframe_to_timedelta(timeframe)
    periods = int((until - settings.data.start) / step) + 1
    if periods <= 0:
        return synthetic_market(settings, timeframe).generate(0)[asset]
    return synthetic_market(settings, timeframe).generate(periods)[asset]


def ingest_asset(session: Session, settings: Settings, asset: str, now: datetime,
                 *, since: datetime | None = None) -> dict:
    """Store the candles of ``asset`` that closed by ``now`` and are not stored yet."""
    cfg = settings.asset(asset)
    newest = last_closed_open_time(now, cfg.timeframe)
    before = last_candle_time(session, cfg.symbol, cfg.timeframe)
    if settings.data.source == "stored":
        return {"asset": cfg.symbol, "stored": 0, "last": before and before.isoformat()}
    candles = synthetic_candles(settings, cfg.symbol, cfg.timeframe, newest)
    start = since or before
    if start is not None:
        candles = candles[candles.index >= pd.Timestamp(start)]
    stored = store_candles(session, cfg.symbol, cfg.timeframe, candles, now)
    return {"asset": cfg.symbol, "stored": stored, "last": newest.isoformat()}
