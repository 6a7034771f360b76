"""Ingest from an exchange end to end: the real ccxt client against the fake Binance server
(tests/fakes/exchange_server.py), candles stored in a real database (SQLite; Postgres too where
the ``db_url`` fixture is used)."""

from __future__ import annotations

import io
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from rich.console import Console
from sqlalchemy import delete
from sqlmodel import select
from typer.testing import CliRunner

from signalcast.cli.render import render_status
from signalcast.config import load_settings
from signalcast.core.errors import DataError, TemporaryError
from signalcast.data.exchange import clear_sources
from signalcast.db.candles import read_candles
from signalcast.db.engine import init_db, session_scope
from signalcast.db.tables import Candle, CandleGap
from signalcast.ops.status import collect_status
from signalcast.pipeline.ingest import ingest_asset
from tests.fakes.exchange_server import FakeExchange, ms

pytestmark = pytest.mark.integration

NOW = datetime(2024, 3, 1, 10, 30, tzinfo=UTC)  # the fake's default clock: mid-candle
LAST_CLOSED = datetime(2024, 3, 1, 9, tzinfo=UTC)
DAYS, CANDLES, PAGE = 10, 240, 100  # backfill_days in these tests; the fake's page cap
FIRST = datetime(2024, 2, 20, 10, tzinfo=UTC)  # 10 days of hourly candles before NOW
HOUR = timedelta(hours=1)


@pytest.fixture(autouse=True)
def _fresh_clients():
    clear_sources()
    yield
    clear_sources()


@pytest.fixture
def exchange():
    with FakeExchange(page_limit=PAGE) as ex:
        yield ex


@pytest.fixture
def make_live(tmp_path: Path, exchange: FakeExchange):
    """``make_live(database_url, assets=None, ex=None, **data)`` -> settings with data.source
    exchange, pointed at the fake server (or ``ex``), with small timeouts and backoffs."""

    def make(url: str, assets: list[dict] | None = None, ex: FakeExchange | None = None,
             **data):
        config = {
            "assets": assets or [{"symbol": "BTC/USDT", "timeframe": "1h"}],
            "targets": [{"pct": 0.01, "horizon": 24}],
            "data": {"source": "exchange",
                     "exchange_options": (ex or exchange).ccxt_options(rateLimit=1),
                     "backfill_days": DAYS, "close_grace_seconds": 0, "max_retries": 2,
                     "retry_backoff_seconds": 0.01, "retry_backoff_max_seconds": 0.5,
                     "request_timeout_seconds": 1.0, **data},
        }
        path = tmp_path / "live.yaml"
        path.write_text(yaml.safe_dump(config))
        return load_settings(path, database_url=url, broker_url=None, telegram_token=None)

    return make


def ingest(engine, settings, now, asset="BTC/USDT", **kwargs) -> dict:
    with session_scope(engine) as session:
        return ingest_asset(session, settings, asset, now, **kwargs)


def stored(engine, asset="BTC/USDT", timeframe="1h") -> pd.DataFrame:
    with session_scope(engine, readonly=True) as session:
        return read_candles(session, asset, timeframe)


def assert_same_as_exchange(frame: pd.DataFrame, ex: FakeExchange, symbol="BTC/USDT",
                            timeframe="1h") -> None:
    """Stored candles are exactly the exchange's closed candles over the same span."""
    truth = ex.closed(symbol, timeframe, frame.index[0], frame.index[-1])
    assert frame.index.equals(truth.index)
    assert np.allclose(frame.to_numpy(), truth.to_numpy(), rtol=1e-9, atol=1e-7)


def assert_contiguous(frame: pd.DataFrame, step: timedelta = HOUR) -> None:
    assert frame.index.is_unique
    assert (frame.index[1:] - frame.index[:-1] == step).all()


def klines_since(ex: FakeExchange, start: int = 0) -> list[tuple[datetime, int]]:
    """(startTime, limit) of the klines calls from the ``start``-th on."""
    return [(pd.Timestamp(int(r.params["startTime"]), unit="ms", tz="UTC").to_pydatetime(),
             int(r.params["limit"])) for r in ex.klines_requests()[start:]]


# ---------------------------------------------------------------------------- backfill
def test_first_start_backfills_history_across_pages(db_url, make_live, exchange):
    settings = make_live(db_url)
    engine = init_db(db_url)
    progress = []
    result = ingest(engine, settings, NOW, progress=progress.append)
    frame = stored(engine)
    assert len(frame) == CANDLES and result["stored"] == CANDLES
    assert frame.index[0] == FIRST and frame.index[-1] == LAST_CLOSED
    assert result["last"] == LAST_CLOSED.isoformat() and result["gaps"] == []
    assert_contiguous(frame)
    assert_same_as_exchange(frame, exchange)
    # the server answers at most 100 candles: each page starts where the one before ended
    assert klines_since(exchange) == [(FIRST, 240), (FIRST + 100 * HOUR, 140),
                                      (FIRST + 200 * HOUR, 40)]
    assert [p.stored for p in progress] == [0, 100, 200, 240]
    assert all(p.wanted == CANDLES for p in progress)
    assert exchange.unexpected == []


def test_interrupted_backfill_resumes_without_duplicates_or_holes(db_url, make_live, exchange):
    settings = make_live(db_url)
    engine = init_db(db_url)
    exchange.fail(503, times=3, after=1)  # the second page fails on every attempt
    with pytest.raises(TemporaryError, match=r"failed 3 time\(s\)"):
        ingest(engine, settings, NOW)
    partial = stored(engine)
    assert len(partial) == PAGE and partial.index[0] == FIRST  # the first page was kept
    assert_contiguous(partial)
    calls = len(exchange.klines_requests())
    result = ingest(engine, settings, NOW)  # the rerun continues from the newest stored
    assert result["stored"] == CANDLES - PAGE
    assert klines_since(exchange, calls) == [(FIRST + 100 * HOUR, 140), (FIRST + 200 * HOUR, 40)]
    frame = stored(engine)
    assert len(frame) == CANDLES
    assert_contiguous(frame)
    assert_same_as_exchange(frame, exchange)


def test_explicit_backfill_extends_history_backwards_and_resumes(sqlite_url, make_live,
                                                                 exchange):
    settings = make_live(sqlite_url, backfill_days=2)
    engine = init_db(sqlite_url)
    ingest(engine, settings, NOW)
    assert len(stored(engine)) == 48
    result = ingest(engine, settings, NOW, backfill_days=DAYS)
    assert result["stored"] == CANDLES - 48
    frame = stored(engine)
    assert len(frame) == CANDLES and frame.index[0] == FIRST
    assert_contiguous(frame)
    assert_same_as_exchange(frame, exchange)
    calls = len(exchange.klines_requests())
    again = ingest(engine, settings, NOW, backfill_days=DAYS)  # nothing missing: no call
    assert again["stored"] == 0 and len(exchange.klines_requests()) == calls


def test_backfill_before_the_listing_starts_at_the_first_candle(sqlite_url, make_live):
    with FakeExchange(start=datetime(2024, 2, 25, tzinfo=UTC)) as young:
        settings = make_live(sqlite_url, ex=young)
        engine = init_db(sqlite_url)
        result = ingest(engine, settings, NOW)
        frame = stored(engine)
        assert frame.index[0] == datetime(2024, 2, 25, tzinfo=UTC)
        assert result["history_start"] == "2024-02-25T00:00:00+00:00"
        assert result["gaps"] == []  # before the listing is not a gap
        calls = len(young.klines_requests())
        young.now = NOW + HOUR
        assert ingest(engine, settings, NOW + HOUR)["stored"] == 1
        assert len(young.klines_requests()) == calls + 1  # no digging before the listing


# ---------------------------------------------------------------------------- ticks
def test_tick_fetches_only_new_candles_with_one_call_per_tick(sqlite_url, make_live, exchange):
    settings = make_live(sqlite_url)
    engine = init_db(sqlite_url)
    ingest(engine, settings, NOW)
    markets_calls = exchange.count("exchangeInfo")
    for k in range(1, 6):
        exchange.now = NOW + k * HOUR
        before = len(exchange.klines_requests())
        result = ingest(engine, settings, exchange.now)
        assert result["stored"] == 1 and result["calls"] == 1
        assert klines_since(exchange, before) == [(LAST_CLOSED + k * HOUR, 1)]
    assert exchange.count("exchangeInfo") == markets_calls  # markets were loaded once
    again = ingest(engine, settings, exchange.now + timedelta(minutes=10))  # same candle
    assert again["stored"] == 0 and again["calls"] == 0
    frame = stored(engine)
    assert len(frame) == CANDLES + 5
    assert_same_as_exchange(frame, exchange)


def test_forming_candle_is_never_stored(sqlite_url, make_live, exchange):
    served = []

    def record(symbol, interval, rows):
        served.extend(r[0] for r in rows)
        return rows

    exchange.tamper = record
    # a missing candle makes the last answer reach past the range, up to the forming candle
    exchange.add_gap("BTC/USDT", datetime(2024, 3, 1, 5, tzinfo=UTC),
                     datetime(2024, 3, 1, 5, tzinfo=UTC))
    settings = make_live(sqlite_url, close_grace_seconds=5)
    engine = init_db(sqlite_url)
    ingest(engine, settings, NOW)
    forming = datetime(2024, 3, 1, 10, tzinfo=UTC)
    assert ms(forming) in served  # the exchange sent it ...
    assert stored(engine).index[-1] == LAST_CLOSED  # ... and it was not stored
    exchange.clear_gaps()
    # 2 s after the candle ended, inside the 5 s grace: still not closed
    exchange.now = datetime(2024, 3, 1, 11, 0, 2, tzinfo=UTC)
    assert ingest(engine, settings, exchange.now)["stored"] == 0
    assert stored(engine).index[-1] == LAST_CLOSED
    exchange.now = datetime(2024, 3, 1, 11, 0, 6, tzinfo=UTC)
    assert ingest(engine, settings, exchange.now)["stored"] == 1
    frame = stored(engine)
    assert frame.index[-1] == forming
    assert_same_as_exchange(frame.loc[[forming]], exchange)  # final values, not the partial


# ---------------------------------------------------------------------------- gaps
def test_candles_skipped_once_are_refetched_in_the_same_tick(sqlite_url, make_live, exchange):
    exchange.add_gap("BTC/USDT", datetime(2024, 2, 25, tzinfo=UTC),
                     datetime(2024, 2, 25, 4, tzinfo=UTC), once=True)
    settings = make_live(sqlite_url)
    engine = init_db(sqlite_url)
    result = ingest(engine, settings, NOW)
    frame = stored(engine)
    assert len(frame) == CANDLES and result["gaps"] == [] and result["new_gaps"] == 0
    assert_contiguous(frame)
    assert_same_as_exchange(frame, exchange)
    refetch = klines_since(exchange)[-1]
    assert refetch == (datetime(2024, 2, 25, tzinfo=UTC), 5)


def test_gap_without_data_is_recorded_reported_and_filled_by_a_later_backfill(
        db_url, make_live, exchange):
    first, last = datetime(2024, 2, 25, tzinfo=UTC), datetime(2024, 2, 25, 4, tzinfo=UTC)
    exchange.add_gap("BTC/USDT", first, last)
    settings = make_live(db_url)
    engine = init_db(db_url)
    result = ingest(engine, settings, NOW)
    assert result["stored"] == CANDLES - 5 and result["new_gaps"] == 1
    assert [(g["first"], g["last"], g["missing"]) for g in result["gaps"]] == [
        (first.isoformat(), last.isoformat(), 5)]
    assert not stored(engine).index.isin(pd.date_range(first, last, freq="1h")).any()

    status = collect_status(engine, settings)
    assert status["assets"][0]["last_candle"] == LAST_CLOSED.isoformat()
    assert status["assets"][0]["gaps"] == result["gaps"]
    out = io.StringIO()
    render_status(status, Console(file=out, width=200))
    assert "open gaps" in out.getvalue() and "2024-02-25T00:00 .. 2024-02-25T04:00 (5)" in \
        out.getvalue()

    # a tick does not ask again for a recorded gap: one call for the one new candle
    exchange.now = NOW + HOUR
    before = len(exchange.klines_requests())
    assert ingest(engine, settings, exchange.now)["gaps"] == result["gaps"]
    assert klines_since(exchange, before) == [(LAST_CLOSED + HOUR, 1)]

    # the exchange repairs its history; an explicit backfill asks again and fills the gap
    exchange.clear_gaps()
    result = ingest(engine, settings, exchange.now, backfill_days=DAYS)
    assert result["filled_gaps"] == 1 and result["gaps"] == [] and result["stored"] == 5
    frame = stored(engine)
    assert len(frame) == CANDLES + 1
    assert_contiguous(frame)
    assert_same_as_exchange(frame, exchange)
    with session_scope(engine) as session:
        gap = session.exec(select(CandleGap)).one()
    assert gap.status == "filled" and gap.filled_at is not None
    assert collect_status(engine, settings)["assets"][0]["gaps"] == []


def test_explicit_backfill_keeps_an_unfilled_gap_and_counts_the_check(sqlite_url, make_live,
                                                                      exchange):
    first, last = datetime(2024, 2, 25, tzinfo=UTC), datetime(2024, 2, 25, 4, tzinfo=UTC)
    exchange.add_gap("BTC/USDT", first, last)
    settings = make_live(sqlite_url)
    engine = init_db(sqlite_url)
    ingest(engine, settings, NOW)
    result = ingest(engine, settings, NOW, backfill_days=DAYS)
    assert result["stored"] == 0 and len(result["gaps"]) == 1
    assert result["gaps"][0]["checks"] == 2
    with session_scope(engine) as session:
        rows = session.exec(select(CandleGap)).all()
    assert [(r.first_missing, r.missing, r.status) for r in rows] == [(first, 5, "open")]


def test_hole_in_stored_candles_is_repaired_on_the_next_tick(sqlite_url, make_live, exchange):
    settings = make_live(sqlite_url)
    engine = init_db(sqlite_url)
    ingest(engine, settings, NOW)
    hole = datetime(2024, 2, 25, 3, tzinfo=UTC)
    with session_scope(engine) as session:  # e.g. rows lost to a bad manual cleanup
        session.execute(delete(Candle).where(Candle.time >= hole,
                                             Candle.time <= hole + 2 * HOUR))
    assert len(stored(engine)) == CANDLES - 3
    exchange.now = NOW + HOUR
    before = len(exchange.klines_requests())
    result = ingest(engine, settings, exchange.now)
    assert result["stored"] == 4
    assert klines_since(exchange, before) == [(hole, 3), (LAST_CLOSED + HOUR, 1)]
    frame = stored(engine)
    assert len(frame) == CANDLES + 1
    assert_contiguous(frame)
    assert_same_as_exchange(frame, exchange)


def test_bad_candles_are_dropped_and_reported_never_stored(sqlite_url, make_live, exchange):
    bad = datetime(2024, 2, 25, 7, tzinfo=UTC)

    def corrupt(symbol, interval, rows):
        for row in rows:
            if row[0] == ms(bad):
                row[2], row[3] = row[3], row[2]  # high and low swapped: high < low
        return rows

    exchange.tamper = corrupt
    settings = make_live(sqlite_url)
    engine = init_db(sqlite_url)
    result = ingest(engine, settings, NOW)
    frame = stored(engine)
    assert bad not in frame.index and len(frame) == CANDLES - 1
    assert result["dropped"] == 2  # in the first answer and in the re-fetch
    assert [(g["first"], g["missing"]) for g in result["gaps"]] == [(bad.isoformat(), 1)]
    assert (frame["high"] >= frame["low"]).all()
    assert_same_as_exchange(frame.loc[:bad - HOUR], exchange)
    assert_same_as_exchange(frame.loc[bad + HOUR:], exchange)


# ---------------------------------------------------------------------------- failures
def test_rate_limits_and_server_errors_are_retried_then_the_tick_succeeds(
        sqlite_url, make_live, exchange):
    settings = make_live(sqlite_url, max_retries=3)
    engine = init_db(sqlite_url)
    ingest(engine, settings, NOW)
    exchange.fail(429, retry_after=0)
    exchange.fail(418, retry_after=0)
    exchange.fail(500)
    exchange.now = NOW + HOUR
    result = ingest(engine, settings, exchange.now)
    assert result["stored"] == 1 and result["calls"] == 4
    assert [exchange.count("klines", status=s) for s in (429, 418, 500)] == [1, 1, 1]
    assert_same_as_exchange(stored(engine), exchange)


def test_giving_up_raises_temporary_error_and_leaves_stored_candles_untouched(
        sqlite_url, make_live, exchange):
    settings = make_live(sqlite_url)
    engine = init_db(sqlite_url)
    ingest(engine, settings, NOW)
    before = stored(engine)
    exchange.down = True
    exchange.now = NOW + 2 * HOUR
    with pytest.raises(TemporaryError, match=r"failed 3 time\(s\).*ExchangeNotAvailable"):
        ingest(engine, settings, exchange.now)
    pd.testing.assert_frame_equal(stored(engine), before)
    with session_scope(engine) as session:
        assert session.exec(select(CandleGap)).all() == []
    exchange.down = False  # back up: the next run catches up
    assert ingest(engine, settings, exchange.now)["stored"] == 2


def test_timeouts_are_retried_then_the_tick_succeeds(sqlite_url, make_live, exchange):
    settings = make_live(sqlite_url, request_timeout_seconds=0.3)
    engine = init_db(sqlite_url)
    ingest(engine, settings, NOW)
    exchange.delay(1.0, times=2)
    exchange.now = NOW + HOUR
    assert ingest(engine, settings, exchange.now)["stored"] == 1
    assert exchange.count("klines") >= 3 + 2


def test_newest_candle_not_published_yet_raises_temporary_error(sqlite_url, make_live,
                                                                exchange):
    settings = make_live(sqlite_url)
    engine = init_db(sqlite_url)
    ingest(engine, settings, NOW)
    newest = LAST_CLOSED + 3 * HOUR
    exchange.tamper = lambda s, i, rows: [r for r in rows if r[0] < ms(newest)]  # lagging
    exchange.now = NOW + 3 * HOUR
    before = len(exchange.klines_requests())
    with pytest.raises(TemporaryError, match=r"has not delivered the 1h candle"):
        ingest(engine, settings, exchange.now)
    # the range (2 calls: the answer stops short, then nothing more), then one call per retry
    assert len(exchange.klines_requests()) - before == 2 + settings.data.max_retries
    assert stored(engine).index[-1] == newest - HOUR  # the older new candles are kept
    exchange.tamper = None
    assert ingest(engine, settings, exchange.now)["stored"] == 1
    assert_same_as_exchange(stored(engine), exchange)


def test_unknown_symbol_is_a_data_error_naming_close_symbols(sqlite_url, make_live, exchange):
    settings = make_live(sqlite_url, assets=[{"symbol": "BTC/USTD"}])
    engine = init_db(sqlite_url)
    with pytest.raises(DataError) as err:
        ingest(engine, settings, NOW, asset="BTC/USTD")
    assert "BTC/USDT" in str(err.value) and "assets[BTC/USTD].symbol" in str(err.value)
    assert exchange.count("klines") == 0
    assert len(stored(engine, "BTC/USTD")) == 0


def test_exchange_symbol_override_stores_under_the_configured_asset(sqlite_url, make_live,
                                                                    exchange):
    settings = make_live(sqlite_url, assets=[{"symbol": "XBT/USDT",
                                              "exchange_symbol": "BTC/USDT"}])
    engine = init_db(sqlite_url)
    assert ingest(engine, settings, NOW, asset="XBT/USDT")["stored"] == CANDLES
    assert_same_as_exchange(stored(engine, "XBT/USDT"), exchange, symbol="BTC/USDT")


def test_each_asset_uses_its_own_timeframe(sqlite_url, make_live, exchange):
    assets = [{"symbol": "ETH/USDT", "timeframe": "15m"}, {"symbol": "SOL/USDT",
                                                            "timeframe": "4h"},
              {"symbol": "BTC/USDT", "timeframe": "1d"}]
    settings = make_live(sqlite_url, assets=assets, backfill_days=5)
    engine = init_db(sqlite_url)
    expected = {"ETH/USDT": (480, timedelta(minutes=15)), "SOL/USDT": (30, 4 * HOUR),
                "BTC/USDT": (5, 24 * HOUR)}
    for asset, cfg in zip(expected, assets, strict=True):
        ingest(engine, settings, NOW, asset=asset)
        frame = stored(engine, asset, cfg["timeframe"])
        count, step = expected[asset]
        assert len(frame) == count
        assert frame.index[-1] + step <= NOW  # closed only
        assert_contiguous(frame, step)
        assert_same_as_exchange(frame, exchange, asset, cfg["timeframe"])


# ---------------------------------------------------------------------------- CLI, schema
def test_cli_ingest_backfill_stores_history_and_reports_gaps(tmp_path, sqlite_url):
    from signalcast.cli.app import cli

    now = datetime.now(UTC)
    listing = (now - timedelta(days=20)).replace(hour=0, minute=0, second=0, microsecond=0)
    with FakeExchange(start=listing, now=None) as live:
        gap = (now - timedelta(days=2)).replace(minute=0, second=0, microsecond=0)
        live.add_gap("BTC/USDT", gap, gap + HOUR)
        path = tmp_path / "cli.yaml"
        path.write_text(yaml.safe_dump({
            "assets": [{"symbol": "BTC/USDT", "timeframe": "1h"}],
            "targets": [{"pct": 0.01, "horizon": 24}],
            "data": {"source": "exchange", "exchange_options": live.ccxt_options(rateLimit=1),
                     "backfill_days": 1, "close_grace_seconds": 0,
                     "retry_backoff_seconds": 0.01},
        }))
        env = {"SIGNALCAST_DATABASE_URL": sqlite_url}
        runner = CliRunner()
        result = runner.invoke(cli, ["ingest", "--backfill", "3", "-C", str(path)], env=env)
        assert result.exit_code == 0, result.output
        assert "BTC/USDT: 70 candles stored" in result.output
        assert f"open gap {gap.isoformat()}" in result.output
        status = runner.invoke(cli, ["status", "-C", str(path)], env=env)
        assert status.exit_code == 0, status.output
        assert "open gaps" in status.output and f"{gap:%Y-%m-%dT%H:%M}" in status.output
        again = runner.invoke(cli, ["ingest", "-C", str(path)], env=env)
        assert "BTC/USDT: 0 candles stored" in again.output


def test_gap_table_migration_matches_the_model(db_url):
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext
    from sqlmodel import SQLModel

    def table_of(diff) -> str | None:
        diff = diff[0] if isinstance(diff, list) else diff  # column changes come in lists
        for part in diff[1:]:
            if isinstance(part, str) and part == "candle_gaps":
                return part
            name = getattr(part, "name", None) if hasattr(part, "columns") else None
            table = getattr(getattr(part, "table", None), "name", None)
            if "candle_gaps" in (name, table):
                return "candle_gaps"
        return None

    engine = init_db(db_url)
    with engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        diffs = compare_metadata(context, SQLModel.metadata)
    assert [d for d in diffs if table_of(d) == "candle_gaps"] == []
    assert "candle_gaps" in SQLModel.metadata.tables


def test_synthetic_source_is_unchanged_and_accepts_backfill(sqlite_url, make_settings):
    settings = make_settings(sqlite_url)
    engine = init_db(sqlite_url)
    now = datetime(2023, 1, 10, 0, 30, tzinfo=UTC)
    result = ingest(engine, settings, now)
    assert result["stored"] == 216 and result["last"] == "2023-01-09T23:00:00+00:00"
    ingest(engine, settings, now)  # again: nothing new (the newest candle is re-upserted)
    assert len(stored(engine)) == 216
    assert ingest(engine, settings, now, backfill_days=1)["stored"] == 23  # from now - 1 day
    assert len(stored(engine)) == 216
