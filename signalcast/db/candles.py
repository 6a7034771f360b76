"""Closed candles in the database: store (upsert) and read back as a candle frame."""

from __future__ import annotations

import itertools
import logging
from datetime import datetime

import numpy as np
import pandas as pd
from sqlalchemy import DateTime, type_coerce
from sqlmodel import Session, col, select

from signalcast.core.errors import DataError
from signalcast.core.timeframes import timeframe_to_timedelta, utc
from signalcast.db.tables import Candle
from signalcast.db.upsert import upsert

log = logging.getLogger(__name__)
OHLCV = ["open", "high", "low", "close", "volume"]
# a candle frame's columns; the time as the stored naive UTC (the frame localizes them all at
# once: aware datetimes one by one cost more than the rest of a hot-path read)
_OHLCV_INDEX = pd.Index(OHLCV)  # built once: a list of names becomes an Arrow index each time
_CANDLE_COLUMNS = (type_coerce(Candle.time, DateTime), Candle.open, Candle.high, Candle.low,
                   Candle.close, Candle.volume)


def closed_only(candles: pd.DataFrame, timeframe: str, now: datetime) -> pd.DataFrame:
    """Drop candles that have not closed at ``now`` (their open + timeframe is in the future)."""
    step = timeframe_to_timedelta(timeframe)
    return candles[candles.index + step <= pd.Timestamp(utc(now))]


def changed_candles(session: Session, asset: str, timeframe: str,
                    candles: pd.DataFrame) -> pd.DataFrame:
    """The stored candles whose OHLCV ``candles`` would change (same open time, other values),
    as a frame of the stored values with the new ones in ``new_<column>`` columns."""
    if not len(candles):
        return pd.DataFrame(columns=OHLCV)
    stored = read_candles(session, asset, timeframe, start=candles.index[0].to_pydatetime(),
                          end=candles.index[-1].to_pydatetime())
    both = stored.join(candles[OHLCV].add_prefix("new_"), how="inner")
    old, new = both[OHLCV].to_numpy(float), both[[f"new_{k}" for k in OHLCV]].to_numpy(float)
    same = np.isclose(old, new, rtol=1e-9, atol=1e-12).all(axis=1)
    return both[~same]


def store_candles(session: Session, asset: str, timeframe: str, candles: pd.DataFrame,
                  now: datetime, *, overwrite: bool = False) -> int:
    """Upsert the closed candles of ``candles`` (a validated candle frame). Returns the count of
    rows written; the forming candle, if present, is left out and logged.

    Stored history never changes silently: when a stored candle would get other OHLCV values,
    nothing is written and :class:`DataError` says how many would change and the first one,
    unless ``overwrite`` (CLI ``ingest --overwrite``) is given; then the count is logged."""
    closed = closed_only(candles, timeframe, now)
    if len(closed) < len(candles):
        log.debug("%s: %d forming candle(s) not stored", asset, len(candles) - len(closed))
    changed = changed_candles(session, asset, timeframe, closed)
    if len(changed) and not overwrite:
        raise DataError(_changed_message(asset, timeframe, changed))
    if len(changed):
        log.warning("%s %s: overwriting %d stored candle(s) with new values (first %s)",
                    asset, timeframe, len(changed), f"{changed.index[0]:%Y-%m-%d %H:%M}")
    rows = [
        {"asset": asset, "timeframe": timeframe, "time": t.to_pydatetime(),
         "open": o, "high": h, "low": lo, "close": c, "volume": v}
        for t, o, h, lo, c, v in zip(closed.index, *(closed[k].to_numpy(float) for k in OHLCV),
                                     strict=True)
    ]
    return upsert(session, Candle, rows, keys=["asset", "timeframe", "time"], update=OHLCV)


def _changed_message(asset: str, timeframe: str, changed: pd.DataFrame) -> str:
    first = changed.iloc[0]

    def values(prefix: str) -> str:
        return " ".join(f"{k[0]}={first[prefix + k]:g}" for k in OHLCV)

    return (
        f"{asset} {timeframe}: {len(changed)} stored candle(s) would change, first "
        f"{changed.index[0]:%Y-%m-%d %H:%M} UTC (stored {values('')}, new {values('new_')}); "
        "nothing was written. Stored history is not changed silently. If the file's times are "
        "in a local timezone, give them an offset (e.g. 2024-01-31T09:00-05:00); if the new "
        "values are right, store them with `signalcast ingest --file FILE --asset "
        f"{asset} --overwrite`."
    )


def read_candles(session: Session, asset: str, timeframe: str, *,
                 start: datetime | None = None, end: datetime | None = None,
                 limit: int | None = None) -> pd.DataFrame:
    """Stored candles with open time in [start, end], oldest first; ``limit`` keeps the newest."""
    query = select(*_CANDLE_COLUMNS).where(Candle.asset == asset, Candle.timeframe == timeframe)
    if start is not None:
        query = query.where(Candle.time >= utc(start))
    if end is not None:
        query = query.where(Candle.time <= utc(end))
    query = query.order_by(col(Candle.time).desc())
    if limit is not None:
        query = query.limit(limit)
    return _frame(session.exec(query).all()[::-1])


def read_latest_candles(session: Session, assets: list[str], timeframe: str, *,
                        end: datetime, limit: int) -> dict[str, pd.DataFrame]:
    """:func:`read_candles` ``(end=end, limit=limit)`` for several assets of one timeframe in
    one bounded query: the candles of the ``limit`` slots up to ``end``. An asset with fewer
    there (a gap, a market's closed hours) is read on its own, so each frame is what
    ``read_candles`` returns."""
    end = utc(end)
    start = end - timeframe_to_timedelta(timeframe) * (limit - 1)
    rows = session.exec(select(Candle.asset, *_CANDLE_COLUMNS).where(
        col(Candle.asset).in_(assets), Candle.timeframe == timeframe, Candle.time >= start,
        Candle.time <= end).order_by(Candle.asset, Candle.time)).all()
    whole = _frame([row[1:] for row in rows])  # one conversion for all, then a slice each
    runs, first = {}, 0
    for asset, group in itertools.groupby(row[0] for row in rows):
        count = sum(1 for _ in group)
        runs[asset], first = (first, first + count), first + count
    out = {}
    for asset in assets:
        first, stop = runs.get(asset, (0, 0))
        out[asset] = (whole.iloc[first:stop] if stop - first == limit
                      else read_candles(session, asset, timeframe, end=end, limit=limit))
    return out


def _frame(rows: list) -> pd.DataFrame:
    """A candle frame of (time, open, high, low, close, volume) rows of
    :data:`_CANDLE_COLUMNS` (naive UTC times), oldest first."""
    times, *values = zip(*rows, strict=True) if rows else ((), (), (), (), (), ())
    index = pd.DatetimeIndex(times, name="time").tz_localize("UTC")
    data = np.array(values, dtype=float).reshape(5, len(rows)).T  # column by column: faster
    return pd.DataFrame(data, index=index, columns=_OHLCV_INDEX)


def last_candle_time(session: Session, asset: str, timeframe: str) -> datetime | None:
    query = (select(Candle.time).where(Candle.asset == asset, Candle.timeframe == timeframe)
             .order_by(col(Candle.time).desc()).limit(1))
    return session.exec(query).first()
