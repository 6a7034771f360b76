"""Stored candles against the slots they should fill: the missing ranges an ingest fetches,
and the gaps it records (``candle_gaps``) when the source has nothing for them."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy import func
from sqlmodel import Session, col, select

from signalcast.core.timeframes import timeframe_to_timedelta, utc
from signalcast.data.calendars import expected_slots
from signalcast.db.tables import Candle, CandleGap

Range = tuple[datetime, datetime]  # open times of the first and last candle, both included


def open_gap_rows(session: Session, asset: str, timeframe: str) -> list[CandleGap]:
    query = select(CandleGap).where(CandleGap.asset == asset, CandleGap.timeframe == timeframe,
                                    CandleGap.status == "open").order_by(
                                        col(CandleGap.first_missing))
    return list(session.exec(query).all())


def gap_dict(gap: CandleGap) -> dict[str, Any]:
    return {"first": gap.first_missing.isoformat(), "last": gap.last_missing.isoformat(),
            "missing": gap.missing, "checks": gap.checks, "reason": gap.reason}


def open_gaps(session: Session, asset: str, timeframe: str) -> list[dict[str, Any]]:
    """Open gaps of an asset as plain data (status, CLI)."""
    return [gap_dict(g) for g in open_gap_rows(session, asset, timeframe)]


def stored_bounds(session: Session, asset: str,
                  timeframe: str) -> tuple[datetime | None, datetime | None]:
    """The open times of the oldest and newest stored candle (None, None: nothing stored)."""
    query = select(func.min(Candle.time), func.max(Candle.time)).where(
        Candle.asset == asset, Candle.timeframe == timeframe)
    first, last = session.exec(query).one()
    return (None if first is None else utc(first)), (None if last is None else utc(last))


def stored_count(session: Session, asset: str, timeframe: str, first: datetime,
                 last: datetime) -> int:
    """Stored candles with open time in [first, last]."""
    query = select(func.count()).select_from(Candle).where(
        Candle.asset == asset, Candle.timeframe == timeframe, Candle.time >= first,
        Candle.time <= last)
    return int(session.exec(query).one())


def slot_grid(first: datetime, last: datetime, step: timedelta) -> np.ndarray:
    """Open times (ns) from first to last."""
    step_ns = int(step.total_seconds() * 1e9)
    start = pd.Timestamp(first).value
    count = max(0, (pd.Timestamp(last).value - start) // step_ns + 1)
    return start + step_ns * np.arange(count, dtype=np.int64)


def slot_runs(grid: np.ndarray, mask: np.ndarray) -> list[Range]:
    """Consecutive stretches of ``grid`` where ``mask`` is true, as (first, last) datetimes."""
    if not mask.any():
        return []
    edges = np.diff(np.concatenate([[0], mask.astype(np.int8), [0]]))
    starts, ends = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1) - 1

    def stamp(i: int) -> datetime:
        return pd.Timestamp(int(grid[i]), tz="UTC").to_pydatetime()

    return [(stamp(s), stamp(e)) for s, e in zip(starts, ends, strict=True)]


def missing_ranges(session: Session, asset: str, timeframe: str, first: datetime,
                   last: datetime, skip: list[Range], *,
                   calendar: str = "24/7") -> list[Range]:
    """Ranges of candle slots in [first, last] with no stored candle, leaving out ``skip`` and
    the slots in which the market of ``calendar`` is closed (never fetched, never a gap)."""
    if last < first:
        return []
    step = timeframe_to_timedelta(timeframe)
    grid = slot_grid(first, last, step)
    skipped = ~expected_slots(pd.DatetimeIndex(grid, tz="UTC"), calendar, pd.Timedelta(step))
    for a, b in skip:
        skipped |= (grid >= pd.Timestamp(a).value) & (grid <= pd.Timestamp(b).value)
    # The usual case: no hole up to the newest stored candle, then the new candles. Two
    # aggregate queries answer it without reading every stored time.
    query = select(func.count(), func.max(Candle.time)).where(
        Candle.asset == asset, Candle.timeframe == timeframe, Candle.time >= first,
        Candle.time <= last)
    count, newest = session.exec(query).one()
    if newest is None:
        return slot_runs(grid, ~skipped)
    upto = int(np.searchsorted(grid, pd.Timestamp(utc(newest)).value, side="right"))
    if count + int(skipped[:upto].sum()) == upto:
        return slot_runs(grid[upto:], ~skipped[upto:])
    query = select(Candle.time).where(Candle.asset == asset, Candle.timeframe == timeframe,
                                      Candle.time >= first, Candle.time <= last)
    times = session.exec(query).all()
    have = pd.DatetimeIndex(pd.to_datetime(times, utc=True)).as_unit("ns").asi8
    return slot_runs(grid, ~np.isin(grid, have) & ~skipped)
