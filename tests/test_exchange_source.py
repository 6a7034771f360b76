"""The ccxt data source: settings checks, candle cleaning, paging, retries and symbol errors.

Tests marked ``integration`` drive the real ccxt client against the local fake Binance server
(tests/fakes/exchange_server.py); the others need no server.
"""

from __future__ import annotations

import math
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
import yaml

from signalcast.config import load_settings
from signalcast.core.errors import ConfigError, DataError, TemporaryError
from signalcast.data.exchange import (
    ExchangeSource,
    RetryPolicy,
    align_up,
    clean_ohlcv,
    import_ccxt,
    slots,
)
from signalcast.data.validation import validate_candles
from tests.fakes.exchange_server import FakeExchange, ms

H = 3_600_000  # one hour in ms
T0 = datetime(2024, 1, 1, tzinfo=UTC)


def _config(tmp_path: Path, data: dict) -> Path:
    path = tmp_path / "live.yaml"
    path.write_text(yaml.safe_dump({
        "assets": [{"symbol": "BTC/USDT", "timeframe": "1h"}],
        "targets": [{"pct": 0.01, "horizon": 24}],
        "data": data,
    }))
    return path


def _load(path: Path):
    return load_settings(path, database_url="sqlite:///unused.db", broker_url=None,
                         telegram_token=None)


# ---------------------------------------------------------------------------- settings
def test_missing_ccxt_fails_settings_validation_with_install_command(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "ccxt", None)  # `import ccxt` now raises ImportError
    with pytest.raises(ConfigError) as err:
        _load(_config(tmp_path, {"source": "exchange"}))
    message = str(err.value)
    assert "data.source" in message
    assert "pip install 'signalcast[live]'" in message
    with pytest.raises(ConfigError, match=r"pip install 'signalcast\[live\]'"):
        import_ccxt()


@pytest.mark.slow
def test_missing_ccxt_stops_the_cli_at_start_up_with_the_install_command(tmp_path):
    path = _config(tmp_path, {"source": "exchange"})
    code = ("import sys; sys.modules['ccxt'] = None; from signalcast.cli.app import main; "
            f"sys.argv = ['signalcast', 'config', 'show', '-C', {str(path)!r}]; main()")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60, env={**os.environ, "COLUMNS": "200"})
    assert done.returncode == 2, done.stdout + done.stderr
    # (main() prints errors as rich markup, which swallows "[live]" until it escapes them)
    assert "data.source" in done.stdout and "pip install ccxt" in done.stdout
    assert "Traceback" not in done.stdout + done.stderr


def test_missing_ccxt_does_not_matter_for_other_sources(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "ccxt", None)
    settings = _load(_config(tmp_path, {"source": "synthetic"}))
    assert settings.data.source == "synthetic"


@pytest.mark.integration  # needs the live extra (ccxt)
def test_unknown_exchange_id_is_a_config_error_with_a_suggestion(tmp_path):
    with pytest.raises(ConfigError) as err:
        _load(_config(tmp_path, {"source": "exchange", "exchange": "binanse"}))
    assert "data.exchange" in str(err.value)
    assert "'binance'" in str(err.value)


@pytest.mark.slow
def test_credentials_in_exchange_options_are_refused(tmp_path):
    data = {"source": "exchange", "exchange_options": {"apiKey": "abc", "rateLimit": 10}}
    with pytest.raises(ConfigError, match=r"data.exchange_options.*remove "
                                          r"data.exchange_options.apiKey"):
        _load(_config(tmp_path, data))


@pytest.mark.integration  # needs the live extra (ccxt)
def test_exchange_settings_have_defaults_and_bounds(tmp_path):
    settings = _load(_config(tmp_path, {"source": "exchange"}))
    assert settings.data.exchange == "binance"
    assert settings.data.backfill_days == 365 and settings.data.max_retries >= 1
    with pytest.raises(ConfigError, match=r"data.close_grace_seconds must be >= 0"):
        _load(_config(tmp_path, {"source": "exchange", "close_grace_seconds": -1}))
    path = tmp_path / "symbol.yaml"
    path.write_text(yaml.safe_dump({
        "assets": [{"symbol": "XBT/USDT", "exchange_symbol": "BTC/USDT"}],
        "targets": [{"pct": 0.01, "horizon": 24}], "data": {"source": "exchange"}}))
    assert _load(path).assets[0].exchange_symbol == "BTC/USDT"


# ---------------------------------------------------------------------------- cleaning
def _row(t: int, o=100.0, h=101.0, lo=99.0, c=100.5, v=10.0) -> list:
    return [t, o, h, lo, c, v]


def test_clean_ohlcv_drops_bad_rows_and_returns_valid_sorted_candles():
    t = ms(T0)
    rows = [
        _row(t + 3 * H),  # out of order: sorted, kept
        _row(t),
        _row(t + H, h=98.0),  # high < low
        _row(t + 2 * H, c=float("nan")),  # missing price
        _row(t + 4 * H, o=0.0, lo=0.0),  # non-positive price
        _row(t + 5 * H, v=-1.0),  # negative volume
        _row(t + 6 * H + 60_000),  # off the hourly grid
        _row(t + 7 * H), _row(t + 7 * H),  # identical duplicate: one kept
        _row(t + 8 * H), _row(t + 8 * H, c=100.7),  # conflicting duplicate: both dropped
        [None, 1, 2, 0.5, 1, 1],  # no time
        _row(t + 9 * H, h=None),  # missing high
        _row(t + 10 * H),
    ]
    candles, dropped = clean_ohlcv(rows, "1h", "test")
    expected = [T0 + timedelta(hours=k) for k in (0, 3, 7, 10)]
    assert list(candles.index.to_pydatetime()) == expected
    assert dropped == 9
    assert candles.index.is_monotonic_increasing and candles.index.is_unique
    validate_candles(candles, timeframe="1h")  # meets the contract: raises nothing
    assert np.isfinite(candles.to_numpy()).all()


def test_grid_helpers_align_and_count_slots():
    assert align_up(datetime(2024, 1, 1, 10, 30, tzinfo=UTC), "1h") == datetime(
        2024, 1, 1, 11, tzinfo=UTC)
    assert align_up(datetime(2024, 1, 1, 10, tzinfo=UTC), "4h") == datetime(
        2024, 1, 1, 12, tzinfo=UTC)
    assert slots(T0, T0 + timedelta(hours=5), "1h") == 6
    assert slots(T0, T0 - timedelta(hours=1), "1h") == 0


# ---------------------------------------------------------------------------- server
class _Sleeps:
    """Records backoff waits instead of sleeping them (keeps the tests fast)."""

    def __init__(self) -> None:
        self.waits: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)


def _source(ex: FakeExchange, sleeps: _Sleeps | None = None, *, retries: int = 3,
            timeout: float = 2.0, backoff_max: float = 5.0, **options) -> ExchangeSource:
    options.setdefault("rateLimit", 1)
    return ExchangeSource("binance", ex.ccxt_options(**options), timeout=timeout,
                          retry=RetryPolicy(retries, 0.05, backoff_max),
                          sleep=sleeps or _Sleeps())


@pytest.mark.integration
def test_iter_range_pages_through_history_beyond_the_server_page_cap():
    with FakeExchange(page_limit=500) as ex:
        source = _source(ex)
        first, last = T0 + timedelta(hours=3), T0 + timedelta(hours=1202)
        pages = list(source.iter_range("BTC/USDT", "1h", first, last))
        got = [p.candles for p in pages if len(p.candles)]
        assert [len(g) for g in got] == [500, 500, 200]
        truth = ex.closed("BTC/USDT", "1h", first, last)
        import pandas as pd

        candles = pd.concat(got)
        assert candles.index.equals(truth.index)
        assert np.allclose(candles.to_numpy(), truth.to_numpy(), rtol=1e-9, atol=1e-7)
        starts = [int(r.params["startTime"]) for r in ex.klines_requests()]
        assert starts == [ms(first), ms(first) + 500 * H, ms(first) + 1000 * H]
        assert ex.unexpected == []


@pytest.mark.integration
def test_ccxt_rate_limiter_spaces_the_calls():
    with FakeExchange(page_limit=100) as ex:
        # ccxt weighs a Binance spot klines call 0.4 units of rateLimit: 500 ms -> 200 ms apart
        # (far more than a call takes here, so the spacing can only come from the limiter).
        source = _source(ex, rateLimit=500)
        source.load_markets()
        list(source.iter_range("BTC/USDT", "1h", T0, T0 + timedelta(hours=299)))
        times = [r.at for r in ex.klines_requests()]
        assert len(times) == 3
        assert min(b - a for a, b in zip(times, times[1:], strict=False)) >= 0.19
        unlimited = _source(ex, enableRateLimit=False)
        unlimited.load_markets()
        before = len(ex.klines_requests())
        list(unlimited.iter_range("BTC/USDT", "1h", T0, T0 + timedelta(hours=299)))
        times = [r.at for r in ex.klines_requests()[before:]]
        assert max(b - a for a, b in zip(times, times[1:], strict=False)) < 0.19


@pytest.mark.integration
def test_429_is_retried_after_the_retry_after_the_exchange_asks_for():
    with FakeExchange() as ex:
        sleeps = _Sleeps()
        source = _source(ex, sleeps)
        source.load_markets()
        ex.fail(429, retry_after=2)
        rows = source.fetch_page("BTC/USDT", "1h", T0, 10)
        assert len(rows) == 10
        assert sleeps.waits == [2.0]  # Retry-After wins over the 0.05 s backoff
        assert ex.count("klines", status=429) == 1 and ex.count("klines", status=200) == 1


@pytest.mark.integration
def test_5xx_and_timeouts_are_retried_with_growing_backoff():
    with FakeExchange() as ex:
        sleeps = _Sleeps()
        source = _source(ex, sleeps, timeout=0.3)
        source.load_markets()
        ex.fail(500)
        ex.fail(503)
        ex.delay(1.0, after=2)  # the third call times out on our side
        rows = source.fetch_page("BTC/USDT", "1h", T0, 5)
        assert [r[0] for r in rows] == [ms(T0) + k * H for k in range(5)]
        assert sleeps.waits == [0.05, 0.1, 0.2]
        assert ex.count("klines") == 4


@pytest.mark.integration
def test_ban_longer_than_the_backoff_maximum_gives_up_at_once():
    with FakeExchange() as ex:
        sleeps = _Sleeps()
        source = _source(ex, sleeps, backoff_max=5.0)
        source.load_markets()
        ex.fail(418, retry_after=120)
        with pytest.raises(TemporaryError, match=r"asks to wait 120 s"):
            source.fetch_page("BTC/USDT", "1h", T0, 5)
        assert ex.count("klines") == 1 and sleeps.waits == []


@pytest.mark.integration
def test_exchange_down_raises_temporary_error_after_the_retries():
    with FakeExchange() as ex:
        sleeps = _Sleeps()
        source = _source(ex, sleeps, retries=2)
        ex.down = True
        with pytest.raises(TemporaryError, match=r"failed 3 time\(s\).*ExchangeNotAvailable"):
            source.load_markets()
        assert len(sleeps.waits) == 2
        assert ex.count("exchangeInfo") == 3


@pytest.mark.integration
def test_unknown_symbol_names_the_close_symbols_it_lists_and_fetches_nothing():
    with FakeExchange() as ex:
        source = _source(ex)
        with pytest.raises(DataError) as err:
            source.resolve_symbol("BTC/USTD", setting="assets[BTC/USTD].symbol")
        message = str(err.value)
        assert "does not list 'BTC/USTD'" in message
        assert "BTC/USDT" in message and "assets[BTC/USTD].symbol" in message
        assert ex.count("klines") == 0
        assert ex.count("/api/v3/exchangeInfo") == 2  # asked again once: lists go stale
        assert source.resolve_symbol("BTCUSDT") == "BTC/USDT"  # a market id works too


@pytest.mark.integration
def test_symbol_the_exchange_refuses_is_a_data_error_and_not_retried():
    with FakeExchange(invalid_symbols=["LUNA/USDT"]) as ex:
        sleeps = _Sleeps()
        source = _source(ex, sleeps)
        assert source.resolve_symbol("LUNA/USDT") == "LUNA/USDT"  # listed, but ...
        with pytest.raises(DataError, match=r"does not know this symbol"):
            source.fetch_page("LUNA/USDT", "1h", T0, 5)
        assert ex.count("klines") == 1 and sleeps.waits == []


@pytest.mark.integration
def test_unsupported_timeframe_is_a_config_error_naming_the_setting():
    with FakeExchange() as ex:
        source = _source(ex)
        with pytest.raises(ConfigError, match=r"assets\[BTC/USDT\].timeframe.*1h"):
            source.check_timeframe("7h", setting="assets[BTC/USDT].timeframe")
        source.check_timeframe("15m")


@pytest.mark.integration
def test_bad_candles_in_an_answer_are_dropped_from_the_page():
    with FakeExchange() as ex:
        def corrupt(symbol, interval, rows):
            for row in rows:
                if row[0] == ms(T0 + timedelta(hours=2)):
                    row[2] = "1.0"  # high far below low
                if row[0] == ms(T0 + timedelta(hours=3)):
                    row[4] = "NaN"
            return rows

        ex.tamper = corrupt
        pages = list(_source(ex).iter_range("BTC/USDT", "1h", T0, T0 + timedelta(hours=5)))
        assert sum(p.dropped for p in pages) == 2
        kept = [t for p in pages for t in p.candles.index.to_pydatetime()]
        assert kept == [T0 + timedelta(hours=k) for k in (0, 1, 4, 5)]
        assert all(not math.isnan(x) for p in pages for x in p.candles.to_numpy().ravel())
