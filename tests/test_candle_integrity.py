"""Candle integrity: times off the timeframe's grid are refused (or repaired under --repair,
counted), a re-ingest that would change stored candles is refused unless --overwrite, and a
market's calendar keeps weekends and holidays out of the gaps (real FX and equity series)."""

from __future__ import annotations

import logging
from datetime import UTC, datetime

import numpy as np
import pandas as pd
import pytest
from backtesting.test import EURUSD, GOOG

from signalcast.core.errors import DataError
from signalcast.data import load_candles
from signalcast.data.validation import validate_candles
from signalcast.db.candles import read_candles, store_candles
from signalcast.db.engine import init_db, session_scope

NOW = datetime(2030, 1, 1, tzinfo=UTC)


def series(n: int = 48, start: str = "2024-03-04 00:00", freq: str = "1h") -> pd.DataFrame:
    """A clean synthetic candle frame on the grid."""
    rng = np.random.default_rng(3)
    close = 100 * np.exp(np.cumsum(rng.normal(0, 0.01, n)))
    opens = np.concatenate([[100.0], close[:-1]])
    index = pd.date_range(start, periods=n, freq=freq, tz="UTC", name="time")
    return pd.DataFrame({"open": opens, "high": np.maximum(opens, close) * 1.002,
                         "low": np.minimum(opens, close) * 0.998, "close": close,
                         "volume": rng.uniform(1, 10, n)}, index=index)


def write_csv(frame: pd.DataFrame, path, times=None) -> str:
    out = frame.copy()
    out.index = pd.Index(times if times is not None else out.index, name="timestamp")
    out.to_csv(path)
    return str(path)


def as_frame(real: pd.DataFrame) -> pd.DataFrame:
    return real.rename(columns=str.lower)[["open", "high", "low", "close", "volume"]]


# -- calendars --------------------------------------------------------------------------------

def test_fx_weekends_and_holidays_are_not_gaps_in_real_eurusd():
    frame = as_frame(EURUSD)
    _, always = validate_candles(frame, timeframe="1h", calendar="24/7", source="EURUSD")
    _, fx = validate_candles(frame, timeframe="1h", calendar="fx", source="EURUSD")
    assert len(always.gaps) == 42  # every weekend, Christmas and New Year, read as 24/7
    assert fx.gaps == [] and "gap" not in fx.summary()
    # A missing trading hour is still a gap under the fx calendar.
    holed = frame.drop(pd.Timestamp("2017-06-14 10:00"))
    _, report = validate_candles(holed, timeframe="1h", calendar="fx")
    assert [(g.after, g.missing) for g in report.gaps] == [
        (pd.Timestamp("2017-06-14 09:00", tz="UTC"), 1)]


@pytest.mark.slow
def test_equity_weekends_and_nyse_holidays_are_not_gaps_in_real_goog(tmp_path, caplog):
    path = write_csv(as_frame(GOOG), tmp_path / "goog.csv")
    with caplog.at_level(logging.WARNING, logger="signalcast.data.validation"):
        candles = load_candles(path, timeframe="1d", calendar="equity")
    assert len(candles) == len(GOOG) and "gaps" not in caplog.text
    _, always = validate_candles(as_frame(GOOG), timeframe="1d")
    assert always.missing_candles > 900  # weekends and holidays, read as 24/7
    holed = as_frame(GOOG).drop(pd.Timestamp("2010-03-10"))  # a Wednesday
    _, report = validate_candles(holed, timeframe="1d", calendar="equity")
    assert [(g.after.date().isoformat(), g.missing) for g in report.gaps] == [("2010-03-09", 1)]


# -- off the grid -------------------------------------------------------------------------------

def test_a_series_at_half_past_is_refused_for_a_1h_asset(tmp_path):
    clean = series()
    path = write_csv(clean, tmp_path / "half.csv", clean.index + pd.Timedelta(minutes=30))
    with pytest.raises(DataError) as err:
        load_candles(path, timeframe="1h")
    message = str(err.value)
    assert "half.csv: 1 problem" in message
    assert "48 candles not on the 1h grid (2024-03-04 00:30, 2024-03-04 01:30" in message
    assert "e.g. 2024-03-04 00:00" in message and "--repair" in message


def test_repair_snaps_a_uniformly_shifted_series_and_says_so(tmp_path, caplog):
    clean = series()
    path = write_csv(clean, tmp_path / "half.csv", clean.index + pd.Timedelta(minutes=30))
    with caplog.at_level(logging.WARNING, logger="signalcast.data.validation"):
        candles = load_candles(path, timeframe="1h", repair=True)
    assert candles.index.equals(clean.index.as_unit("us"))
    assert "moved 48 candles by -0 days 00:30:00 onto the 1h grid" in caplog.text


def test_a_few_off_grid_rows_are_refused_or_dropped_with_a_count(tmp_path, caplog):
    clean = series()
    extra = clean.iloc[[5, 9]].copy()
    extra.index = extra.index + pd.Timedelta(minutes=30)
    mixed = pd.concat([clean, extra]).sort_index()
    path = write_csv(mixed, tmp_path / "mixed.csv")
    with pytest.raises(DataError, match=r"2 candles not on the 1h grid \(2024-03-04 05:30, "
                                        r"2024-03-04 09:30\)"):
        load_candles(path, timeframe="1h")
    with caplog.at_level(logging.WARNING, logger="signalcast.data.validation"):
        candles = load_candles(path, timeframe="1h", repair=True)
    assert len(candles) == 48 and candles.index.equals(clean.index.as_unit("us"))
    assert "dropped 2 candles off the 1h grid: 2024-03-04 05:30, 2024-03-04 09:30" in caplog.text


# -- stored history never changes silently -------------------------------------------------------

@pytest.fixture
def engine(tmp_path):
    return init_db(f"sqlite:///{tmp_path / 'c.db'}")


def test_a_shifted_reingest_is_refused_naming_the_count_and_the_first(engine, tmp_path):
    clean = series(400)
    with session_scope(engine) as session:
        assert store_candles(session, "EUR/USD", "1h", clean, NOW) == 400
    # The same candles in New York local time (UTC-5 in March 2024 before the 10th), read as UTC.
    local = clean.index.tz_convert("America/New_York").tz_localize(None)
    path = write_csv(clean, tmp_path / "ny.csv", local)
    shifted = load_candles(path, timeframe="1h")  # on the grid: only the stored rows tell
    with pytest.raises(DataError) as err, session_scope(engine) as session:
        store_candles(session, "EUR/USD", "1h", shifted, NOW)
    message = str(err.value)
    assert message.startswith("EUR/USD 1h: 395 stored candle(s) would change, first "
                              "2024-03-04 00:00 UTC (stored o=100 ")
    assert "nothing was written" in message and "--overwrite" in message
    with session_scope(engine) as session:
        pd.testing.assert_frame_equal(read_candles(session, "EUR/USD", "1h"), clean,
                                      check_freq=False, check_index_type=False)


def test_an_identical_reingest_passes_and_overwrite_changes_with_a_log(engine, caplog):
    clean = series(24)
    fixed = clean.copy()
    fixed.iloc[3, fixed.columns.get_loc("close")] *= 1.01
    fixed.iloc[3, fixed.columns.get_loc("high")] *= 1.01
    with session_scope(engine) as session:
        store_candles(session, "BTC/USDT", "1h", clean, NOW)
        assert store_candles(session, "BTC/USDT", "1h", clean, NOW) == 24  # nothing changes
    changed = "1 stored candle.s. would change, first 2024-03-04 03:00"
    with pytest.raises(DataError, match=changed), session_scope(engine) as session:
        store_candles(session, "BTC/USDT", "1h", fixed, NOW)
    with caplog.at_level(logging.WARNING, logger="signalcast.db.candles"), \
            session_scope(engine) as session:
        store_candles(session, "BTC/USDT", "1h", fixed, NOW, overwrite=True)
    assert "overwriting 1 stored candle(s) with new values (first 2024-03-04 03:00)" in caplog.text
    with session_scope(engine) as session:
        stored = read_candles(session, "BTC/USDT", "1h")
    assert stored["close"].iloc[3] == pytest.approx(fixed["close"].iloc[3])
