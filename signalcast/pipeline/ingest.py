"""Bring closed candles into the database on each tick, from the configured source.

Sources (``data.source``): ``synthetic`` (the seeded market), ``stored`` (nothing is fetched) and
``exchange`` (a real exchange through ccxt, :mod:`signalcast.data.exchange`).

The exchange path, per asset and call:

1. **What is wanted**: every candle slot from the window start to the newest closed candle
   (``cutoff``: the newest candle whose end passed ``data.close_grace_seconds`` ago) that is
   not stored. The window starts ``data.backfill_days`` (or ``--backfill DAYS``) ago; on ticks
   with history stored it starts at the oldest stored candle inside it, so a tick never digs
   further into the past. Gaps already recorded as "the exchange has no data" are skipped on
   ticks and asked again by an explicit backfill. A count query makes the usual case (no hole)
   cheap; a steady tick wants one candle and costs one exchange call.
2. **Fetch and store** each wanted range page by page (``fetch_ohlcv`` with ``since``/``limit``),
   keeping only clean candles inside the range: closed candles only (the forming one is past
   ``cutoff``), never a candle already stored (nothing stored is overwritten). Each page is
   committed at once, so an interrupted backfill resumes from the newest stored candle, and no
   transaction stays open while the exchange is called (SQLite has one writer).
3. **Gaps**: slots in which the asset's market is closed (``assets[].calendar``,
   :mod:`signalcast.data.calendars`) are never wanted; slots still missing inside the range
   are asked for once more; what is still missing
   is recorded in ``candle_gaps`` and reported. Missing slots before the exchange's first candle
   are its history start, not a gap. The newest closed candle itself is asked again with
   backoff (exchanges publish it a moment late); if it does not come, everything else stays
   stored and :class:`~signalcast.core.errors.TemporaryError` says so: the tick predicts nothing for
   this asset (the Celery chain stops before predict and the task is retried).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy import delete
from sqlalchemy.engine import Engine
from sqlmodel import Session

from signalcast.config import AssetConfig, Settings
from signalcast.core.errors import DataError, TemporaryError, UnknownNameError
from signalcast.core.timeframes import last_closed_open_time, timeframe_to_timedelta, utc
from signalcast.data import SyntheticMarket
from signalcast.data.market_cache import shared_market
from signalcast.db.candles import last_candle_time, store_candles
from signalcast.db.engine import session_scope
from signalcast.db.tables import CandleGap
from signalcast.db.upsert import upsert
from signalcast.pipeline.gaps import (
    Range,
    gap_dict,
    missing_ranges,
    open_gap_rows,
    slot_grid,
    slot_runs,
    stored_bounds,
    stored_count,
)

log = logging.getLogger(__name__)

def synthetic_market(settings: Settings, timeframe: str) -> SyntheticMarket:
    """The configured synthetic market (one per assets, seed, start, timeframe per process)."""
    return shared_market([a.symbol for a in settings.assets], settings.data.seed, timeframe,
                         settings.data.start)


def synthetic_candles(settings: Settings, asset: str, timeframe: str,
                      until: datetime) -> pd.DataFrame:
    """The synthetic market's candles of ``asset`` with open time <= ``until``."""
    step = timeframe_to_timedelta(timeframe)
    periods = int((until - settings.data.start) / step) + 1
    if periods <= 0:
        return synthetic_market(settings, timeframe).generate(0)[asset]
    return synthetic_market(settings, timeframe).generate(periods)[asset]


@dataclass(frozen=True)
class IngestProgress:
    """How far one asset's fetch has come (for a progress bar)."""

    asset: str
    stored: int  # candles stored so far by this call
    wanted: int  # candle slots this call set out to fill
    through: datetime | None  # open time of the newest candle stored so far


ProgressFn = Callable[[IngestProgress], None]


def ingest_assets(engine: Engine, settings: Settings, assets: list[str], now: datetime) -> dict:
    """:func:`ingest_asset` for each of ``assets`` in its own transaction (a tick's batch,
    ``schedule.tick_batch_assets``): an asset whose candles cannot be had (bad data, a late
    candle, an asset no longer configured) is reported under ``failed`` and the others go
    on; its prediction then finds no candle and says so. Database errors propagate (the task
    is retried; what was stored stays stored and is not stored twice)."""
    out: dict[str, Any] = {"assets": {}, "failed": {}}
    for asset in assets:
        try:
            with session_scope(engine) as session:
                out["assets"][asset] = ingest_asset(session, settings, asset, now)
        except (DataError, TemporaryError, UnknownNameError) as exc:
            log.warning("%s: ingest failed: %s", asset, exc)
            out["failed"][asset] = f"{type(exc).__name__}: {exc}"[:500]
    if assets and len(out["failed"]) == len(assets):
        raise DataError("no asset of the batch could be ingested: " + "; ".join(
            f"{a}: {why}" for a, why in out["failed"].items())[:1500])
    return out


def ingest_asset(session: Session, settings: Settings, asset: str, now: datetime,
                 *, since: datetime | None = None, backfill_days: int | None = None,
                 progress: ProgressFn | None = None) -> dict:
    """Store the candles of ``asset`` that closed by ``now`` and are not stored yet.

    ``backfill_days`` (CLI ``--backfill``) or ``since`` also fetch the history from then on;
    ``progress`` is called as pages arrive (exchange source)."""
    cfg = settings.asset(asset)
    if settings.data.source == "exchange":
        return ingest_from_exchange(session, settings, cfg, now, since=since,
                                    backfill_days=backfill_days, progress=progress)
    if backfill_days is not None and since is None:
        since = utc(now) - timedelta(days=backfill_days)
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


# ---------------------------------------------------------------------------- exchange
def exchange_source(settings: Settings) -> Any:
    """The process's ccxt source for ``settings.data`` (markets loaded once)."""
    from signalcast.data.exchange import RetryPolicy, cached_source

    data = settings.data
    retry = RetryPolicy(data.max_retries, data.retry_backoff_seconds,
                        data.retry_backoff_max_seconds)
    return cached_source(data.exchange, data.exchange_options,
                         timeout=data.request_timeout_seconds, retry=retry)


def ingest_from_exchange(session: Session, settings: Settings, cfg: AssetConfig,
                         now: datetime, *, since: datetime | None = None,
                         backfill_days: int | None = None,
                         progress: ProgressFn | None = None) -> dict:
    """The exchange path of :func:`ingest_asset` (see the module docstring)."""
    return _ExchangeIngest(session, settings, cfg, utc(now), progress).run(since, backfill_days)


class _ExchangeIngest:
    def __init__(self, session: Session, settings: Settings, cfg: AssetConfig, now: datetime,
                 progress: ProgressFn | None):
        self.session, self.settings, self.cfg, self.now = session, settings, cfg, now
        self.data = settings.data
        self.tf = cfg.timeframe
        self.step = timeframe_to_timedelta(cfg.timeframe)
        self.progress = progress
        self.source = exchange_source(settings)
        self.received: set[int] = set()  # open times (ns) stored by this call
        self.stored = self.dropped = self.wanted = 0
        self.newest: datetime | None = None

    def run(self, since: datetime | None, backfill_days: int | None) -> dict:
        from signalcast.data.exchange import align_up, slots

        asset, data = self.cfg.symbol, self.data
        setting = "exchange_symbol" if self.cfg.exchange_symbol else "symbol"
        self.symbol = self.source.resolve_symbol(self.cfg.exchange_symbol or asset,
                                                 setting=f"assets[{asset}].{setting}")
        self.source.check_timeframe(self.tf, setting=f"assets[{asset}].timeframe")
        calls_before = self.source.calls
        cutoff = last_closed_open_time(self.now - timedelta(seconds=data.close_grace_seconds),
                                       self.tf)
        explicit = since is not None or backfill_days is not None
        first_stored, _ = stored_bounds(self.session, asset, self.tf)
        days = backfill_days if backfill_days is not None else data.backfill_days
        if since is not None:
            window_start = align_up(utc(since), self.tf)
        else:  # the candle that was forming ``days`` ago, and everything after it
            window_start = last_closed_open_time(self.now - timedelta(days=days), self.tf)
            window_start += self.step
        scan_start = window_start
        if not explicit and first_stored is not None:
            scan_start = max(window_start, first_stored)
        recorded = open_gap_rows(self.session, asset, self.tf)
        skip = [] if explicit else [(g.first_missing, g.last_missing) for g in recorded]
        holes = missing_ranges(self.session, asset, self.tf, scan_start, cutoff, skip,
                               calendar=self.cfg.calendar)
        self.session.commit()  # no transaction stays open while the exchange is called
        self.wanted = sum(slots(a, b, self.tf) for a, b in holes)
        self._report()

        for first, last in holes:
            self._fetch(first, last)

        def leading(start: datetime) -> bool:  # before the exchange's first candle
            return start == scan_start and (first_stored is None or first_stored > start)

        # Ask once more for what the exchange skipped inside a range (a flaky answer or a gap).
        for first, last in self._still_missing(holes):
            if last != cutoff and not leading(first):
                self._fetch(first, last)
        # The newest closed candle may be published a moment late: ask again with backoff.
        retry = 0
        while (tail := [m for m in self._still_missing(holes) if m[1] == cutoff]) \
                and retry < data.max_retries:
            self.source.sleep(self.source.retry.wait(retry))
            retry += 1
            self._fetch(*tail[0])

        history_start = None
        new_gaps: list[Range] = []
        late: Range | None = None
        for first, last in self._still_missing(holes):
            if last == cutoff:
                late = (first, last)
            elif leading(first):
                history_start = last + self.step
                log.info("%s: %s has no %s candles before %s", asset, self.source.id, self.tf,
                         history_start)
            else:
                new_gaps.append((first, last))
        filled = self._settle_gaps(recorded, new_gaps, explicit, scan_start, cutoff)
        self.session.commit()
        newest = last_candle_time(self.session, asset, self.tf)
        self.session.commit()
        open_gaps = [gap_dict(g) for g in open_gap_rows(self.session, asset, self.tf)]
        self.session.commit()
        if new_gaps:
            log.warning("%s: %s has no data for %d range(s) of %s candles (%s); recorded as "
                        "gaps", asset, self.source.id, len(new_gaps), self.tf,
                        ", ".join(f"{a:%Y-%m-%d %H:%M}..{b:%Y-%m-%d %H:%M}" for a, b in new_gaps))
        result = {
            "asset": asset, "source": f"exchange:{self.source.id}", "symbol": self.symbol,
            "stored": self.stored, "last": newest and newest.isoformat(),
            "wanted": self.wanted, "calls": self.source.calls - calls_before,
            "dropped": self.dropped, "new_gaps": len(new_gaps), "filled_gaps": filled,
            "gaps": open_gaps,
            "history_start": history_start and history_start.isoformat(),
        }
        if late is not None:
            raise TemporaryError(
                f"{asset}: {self.source.id} has not delivered the {self.tf} candle(s) "
                f"{late[0]:%Y-%m-%d %H:%M}..{late[1]:%Y-%m-%d %H:%M} UTC that closed by "
                f"{self.now:%Y-%m-%d %H:%M:%S} (asked {retry + 1} time(s)); {self.stored} "
                f"older candle(s) stored, newest {result['last']}. No prediction for {asset} "
                "on this tick; a retry fetches it"
            )
        return result

    # ------------------------------------------------------------------------ helpers
    def _report(self) -> None:
        if self.progress is not None:
            self.progress(IngestProgress(self.cfg.symbol, self.stored, self.wanted, self.newest))

    def _fetch(self, first: datetime, last: datetime) -> None:
        for page in self.source.iter_range(self.symbol, self.tf, first, last):
            self.dropped += page.dropped
            candles = page.candles
            fresh = ~np.isin(candles.index.as_unit("ns").asi8,
                             np.fromiter(self.received, dtype=np.int64))
            candles = candles[fresh]
            if not len(candles):
                continue
            store_candles(self.session, self.cfg.symbol, self.tf, candles, self.now)
            self.session.commit()  # each page is kept even if a later page fails
            self.received.update(int(t) for t in candles.index.as_unit("ns").asi8)
            self.stored += len(candles)
            newest = candles.index[-1].to_pydatetime()
            self.newest = newest if self.newest is None else max(self.newest, newest)
            self._report()

    def _still_missing(self, ranges: list[Range]) -> list[Range]:
        have = np.fromiter(self.received, dtype=np.int64)
        out: list[Range] = []
        for first, last in ranges:
            grid = slot_grid(first, last, self.step)
            out += slot_runs(grid, ~np.isin(grid, have))
        return out

    def _settle_gaps(self, recorded: list[CandleGap], new_gaps: list[Range], explicit: bool,
                     scan_start: datetime, cutoff: datetime) -> int:
        """Mark recorded gaps filled when their candles are stored; on an explicit backfill
        replace the ones it asked again by what is still missing; record new gaps."""
        from signalcast.data.exchange import slots

        asset, tf, filled = self.cfg.symbol, self.tf, 0
        carried: list[CandleGap] = []
        for gap in recorded:
            present = stored_count(self.session, asset, tf, gap.first_missing, gap.last_missing)
            asked = explicit and gap.last_missing >= scan_start and gap.first_missing <= cutoff
            if present >= gap.missing:
                gap.status, gap.filled_at = "filled", self.now
                gap.last_checked = self.now if asked else gap.last_checked
                self.session.add(gap)
                filled += 1
                log.info("%s: gap %s..%s is filled", asset, gap.first_missing, gap.last_missing)
            elif asked:
                carried.append(gap)
                self.session.execute(delete(CandleGap).where(
                    CandleGap.asset == asset, CandleGap.timeframe == tf,
                    CandleGap.first_missing == gap.first_missing))
        self.session.flush()
        rows = []
        for first, last in new_gaps:
            before = [g for g in carried if g.first_missing <= last and g.last_missing >= first]
            rows.append({
                "asset": asset, "timeframe": tf, "first_missing": first, "last_missing": last,
                "missing": slots(first, last, tf), "status": "open",
                "reason": f"{self.source.id} returned no valid candle when asked twice",
                "checks": max([g.checks for g in before], default=0) + 1,
                "first_seen": min([g.first_seen for g in before], default=self.now),
                "last_checked": self.now, "filled_at": None,
            })
        if rows:
            upsert(self.session, CandleGap, rows, keys=["asset", "timeframe", "first_missing"],
                   update=["last_missing", "missing", "status", "reason", "checks",
                           "last_checked", "filled_at"])
        return filled
