"""Closed candles in the database: store (upsert) and read back as a candle frame."""

from __future__ import annotations

import logging
from datetime import datetime

import numpy as np
import pandas as pd
from sqlmodel import Session, col, select

from signalcast.core.timeframes import timeframe_to_timedelta, utc
from signalcast.db.tables import Candle
from signalcast.db.upsert import upsert

log = logging.getLogger(__name__)
OHLCV = ["open", "high", "low", "close", "volume"]


def closed_only(candles: pd.DataFrame, timeframe: str, now: datetime) -> pd.DataFrame:
    """Drop candles that have not closed at ``now`` (their open + timeframe is in the future)."""
    step = timeframe_to_timedelta(timeframe)
    return candles[candles.index + step <= pd.Timestamp(utc(now))]


def store_candles(session: Session, asset: str, timeframe: str, candles: pd.DataFrame,
                  now: datetime) -> int:
    """Upsert the closed candles of ``candles`` (a validated candle frame). Returns the count of
    rows written; the forming candle, if present, is left out and logged."""
    closed = closed_only(candles, timeframe, now)
    if len(closed) < len(candles):
        log.debug("%s: %d forming candle(s) not stored", asset, len(candles) - len(closed))
    rows = [
        {"asset": asset, "timeframe": timeframe, "time": t.to_pydatetime(),
         "open": o, "high": h, "low": lo, "close": c, "volume": v}
        for t, o, h, lo, c, v in zip(closed.index, *(closed[k].to_numpy(float) for k in OHLCV),
                                     strict=True)
    ]
    return upsert(session, Candle, rows, keys=["asset", "timeframe", "time"], update=OHLCV)


def read_candles(session: Session, asset: str, timeframe: str, *,
                 start: datetime | None = None, end: datetime | None = None,
                 limit: int | None = None) -> pd.DataFrame:
    """Stored candles with open time in [start, end], oldest first; ``limit`` keeps the newest."""
    query = select(Candle.time, Candle.open, Candle.high, Candle.low, Candle.close,
                   Candle.volume).where(Candle.asset == asset, Candle.timeframe == timeframe)
    if start is not None:
        query = query.where(Candle.time >= utc(start))
    if end is not None:
        query = query.where(Candle.time <= utc(end))
    query = query.order_by(col(Candle.time).desc())
    if limit is not None:
        query = query.limit(limit)
    rows = session.exec(query).all()[::-1]
    index = pd.DatetimeIndex([r[0] for r in rows], name="time")
    index = index.tz_localize("UTC") if index.tz is None else index.tz_convert("UTC")
    data = np.array([r[1:] for r in rows], dtype=float).reshape(len(rows), 5)
    return pd.DataFrame(data, index=index, columns=OHLCV)


def last_candle_time(session: Session, asset: str, timeframe: str) -> datetime | None:
    query = (select(Candle.time).where(Candle.asset == asset, Candle.timeframe == timeframe)
             .order_by(col(Candle.time).desc()).limit(1))
    return session.exec(query).first()
