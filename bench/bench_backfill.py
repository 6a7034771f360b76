"""Backfill speed and steady-state cost of the exchange source, against the local fake Binance.

The real ccxt client talks HTTP to tests/fakes/exchange_server.py (pages of at most
``--page-limit`` candles) with ccxt's rate limiter off, so the figures measure signalcast, ccxt
and the database, not an exchange's throttle. Printed:

- fetch only: candles per second through ``ExchangeSource.iter_range`` (HTTP + parsing +
  cleaning), no database;
- backfill: candles per second through ``ingest_asset`` on a first start (fetch, clean, validate,
  upsert and commit per page) into a fresh database;
- steady state: exchange calls (HTTP requests) per tick per asset and time per tick, over
  ``--ticks`` ticks one candle apart.

Run from the repository root::

    python bench/bench_backfill.py                      # 15m candles, 365 days, SQLite
    python bench/bench_backfill.py --timeframe 1h --days 730 --db-url postgresql://...
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # for tests.fakes

from signalcast.config import load_settings  # noqa: E402
from signalcast.core.timeframes import last_closed_open_time, timeframe_to_timedelta  # noqa: E402
from signalcast.data.exchange import ExchangeSource, RetryPolicy, clear_sources  # noqa: E402
from signalcast.db.engine import init_db, session_scope  # noqa: E402
from signalcast.pipeline.ingest import exchange_source, ingest_asset  # noqa: E402
from tests.fakes.exchange_server import FakeExchange  # noqa: E402

NOW = datetime(2025, 3, 1, 10, 7, 30, tzinfo=UTC)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--timeframe", default="15m")
    parser.add_argument("--days", type=int, default=365)
    parser.add_argument("--page-limit", type=int, default=1000,
                        help="most candles the fake answers per call (Binance spot: 1000)")
    parser.add_argument("--ticks", type=int, default=50)
    parser.add_argument("--db-url", default=None, help="default: a temporary SQLite file")
    args = parser.parse_args()

    step = timeframe_to_timedelta(args.timeframe)
    with tempfile.TemporaryDirectory() as tmp, FakeExchange(
            start=datetime(2025, 3, 1, tzinfo=UTC) - timedelta(days=args.days + 5), now=NOW,
            page_limit=args.page_limit) as ex:
        options = ex.ccxt_options(enableRateLimit=False)
        url = args.db_url or f"sqlite:///{tmp}/bench.db"

        # fetch only
        source = ExchangeSource("binance", options, retry=RetryPolicy(2, 0.1, 1.0))
        source.load_markets()
        last = last_closed_open_time(NOW, args.timeframe)
        first = last - (args.days * timedelta(days=1) // step - 1) * step
        calls = ex.count("klines")
        t0 = time.perf_counter()
        fetched = sum(len(p.candles) for p in source.iter_range("BTC/USDT", args.timeframe,
                                                                  first, last))
        fetch_s = time.perf_counter() - t0
        fetch_calls = ex.count("klines") - calls

        # backfill through ingest_asset into a fresh database
        config = Path(tmp) / "bench.yaml"
        config.write_text(yaml.safe_dump({
            "assets": [{"symbol": "BTC/USDT", "timeframe": args.timeframe}],
            "targets": [{"pct": 0.01, "horizon": 24}],
            "data": {"source": "exchange", "exchange_options": options,
                     "backfill_days": args.days, "close_grace_seconds": 0},
        }))
        settings = load_settings(config, database_url=url, broker_url=None,
                                 telegram_token=None)
        engine = init_db(url)
        clear_sources()
        exchange_source(settings).load_markets()  # markets are loaded outside the timing
        calls = ex.count("klines")
        t0 = time.perf_counter()
        with session_scope(engine) as session:
            result = ingest_asset(session, settings, "BTC/USDT", NOW)
        backfill_s = time.perf_counter() - t0
        backfill_calls = ex.count("klines") - calls

        # steady state: one tick per candle close
        per_tick, tick_ms = [], []
        for k in range(1, args.ticks + 1):
            ex.now = NOW + k * step
            before = len(ex.requests)
            t0 = time.perf_counter()
            with session_scope(engine) as session:
                tick = ingest_asset(session, settings, "BTC/USDT", ex.now)
            tick_ms.append((time.perf_counter() - t0) * 1000)
            per_tick.append(len(ex.requests) - before)
            assert tick["stored"] == 1, tick

    print(f"fake exchange: {args.timeframe} candles, {args.days} days, pages of at most "
          f"{args.page_limit}, ccxt rate limiter off; database {url.split(':')[0]}")
    print(f"fetch only : {fetched} candles in {fetch_s:.2f} s = {fetched / fetch_s:,.0f} "
          f"candles/s ({fetch_calls} calls)")
    print(f"backfill   : {result['stored']} candles in {backfill_s:.2f} s = "
          f"{result['stored'] / backfill_s:,.0f} candles/s ({backfill_calls} calls, "
          "stored and committed page by page)")
    print(f"steady     : {statistics.mean(per_tick):.2f} HTTP requests per tick per asset "
          f"(min {min(per_tick)}, max {max(per_tick)}) over {args.ticks} ticks; "
          f"median {statistics.median(tick_ms):.1f} ms per tick")


if __name__ == "__main__":
    main()
