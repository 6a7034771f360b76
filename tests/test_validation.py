"""Candle validation: each check with and without repair, and the input is never modified."""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
import pytest

from signalcast.core.errors import DataError
from signalcast.data.validation import Gap, ValidationReport, validate_candles

HOUR = pd.Timedelta(hours=1)


def candles(n: int = 6) -> pd.DataFrame:
    """A clean hourly frame: open 100, 101, ...; high/low one above/below."""
    index = pd.DatetimeIndex(
        pd.date_range("2024-03-01", periods=n, freq="1h", tz="UTC", unit="us"),
        name="time",
        freq=None,
    )
    opens = 100.0 + np.arange(n)
    return pd.DataFrame(
        {"open": opens, "high": opens + 1.5, "low": opens - 1.0, "close": opens + 1.0,
         "volume": np.full(n, 10.0)},
        index=index,
    )


def validate_keeps_input(df: pd.DataFrame, **kwargs) -> tuple[pd.DataFrame, ValidationReport]:
    """Validate and assert the input frame is untouched (values, index and dtypes)."""
    before = df.copy(deep=True)
    try:
        return validate_candles(df, **kwargs)
    finally:
        pd.testing.assert_frame_equal(df, before, check_exact=True)


def error_of(df: pd.DataFrame, **kwargs) -> str:
    with pytest.raises(DataError) as info:
        validate_keeps_input(df, **kwargs)
    return str(info.value)


def test_clean_frame_passes_unchanged_with_an_empty_report():
    df = candles()
    out, report = validate_keeps_input(df, timeframe="1h", source="btc.csv")
    pd.testing.assert_frame_equal(out, df, check_exact=True)
    assert out is not df
    assert not report.repaired and report.gaps == [] and report.rows_out == 6
    assert report.summary() == (
        "btc.csv: 6 candles 2024-03-01 00:00 .. 2024-03-01 05:00; no problems"
    )


def test_output_meets_the_contract_from_loose_input():
    df = candles().astype({"volume": "int64"})
    df["extra"] = "x"
    df.index = df.index.tz_convert("Europe/Berlin").rename("ts")
    out, _ = validate_keeps_input(df)
    assert list(out.columns) == ["open", "high", "low", "close", "volume"]
    assert (out.dtypes == np.float64).all()
    assert str(out.index.tz) == "UTC" and out.index.name == "time"
    assert out.index.equals(candles().index)


def test_naive_times_are_read_as_utc_and_reported():
    df = candles()
    df.index = df.index.tz_localize(None)
    out, report = validate_keeps_input(df)
    assert out.index.equals(candles().index)
    assert report.naive_times_as_utc and "read as UTC" in report.summary()


def test_missing_column_and_non_numeric_values_are_errors():
    assert "missing column(s) volume" in error_of(candles().drop(columns="volume"))
    df = candles().astype({"close": object})
    df.iloc[2, 3] = "abc"
    assert "column 'close' holds values that are not numbers at 2024-03-01 02:00" in error_of(df)
    assert "DatetimeIndex" in error_of(candles().reset_index())


def test_identical_duplicates_are_an_error_without_repair():
    df = candles()
    df = pd.concat([df, df.iloc[[2]]]).sort_index(kind="stable")
    message = error_of(df, source="btc.csv")
    assert message.startswith("btc.csv: 1 problem in the candles:")
    assert "1 row exactly repeat" in message and "(2024-03-01 02:00)" in message
    assert "Pass repair=True (CLI: --repair) to drop the copies" in message


def test_identical_duplicates_are_dropped_with_repair_and_logged(caplog):
    df = candles()
    df = pd.concat([df, df.iloc[[2, 2]]]).sort_index(kind="stable")
    with caplog.at_level(logging.WARNING, logger="signalcast.data.validation"):
        out, report = validate_keeps_input(df, repair=True)
    pd.testing.assert_frame_equal(out, candles(), check_exact=True)
    assert report.duplicates_dropped == 2 and "2 duplicate rows dropped" in report.summary()
    assert "dropped 2 duplicate rows" in caplog.text


def test_conflicting_duplicates_are_an_error_even_with_repair():
    df = candles()
    copy = df.iloc[[3]].copy()
    copy["close"] += 0.5
    df = pd.concat([df, copy]).sort_index(kind="stable")
    message = error_of(df, repair=True)
    assert "conflicting duplicates: 1 timestamp" in message
    assert "(2024-03-01 03:00, 2024-03-01 03:00)" in message
    assert "repair cannot choose" in message


def test_unordered_timestamps_are_an_error_without_repair():
    df = candles().iloc[[0, 1, 3, 2, 4, 5]]
    message = error_of(df)
    assert "not in increasing order: 2024-03-01 02:00 comes after 2024-03-01 03:00" in message
    assert "to sort the rows" in message


def test_unordered_timestamps_are_sorted_with_repair():
    out, report = validate_keeps_input(candles().iloc[[5, 0, 1, 3, 2, 4]], repair=True)
    pd.testing.assert_frame_equal(out, candles(), check_exact=True)
    assert report.sorted_rows and report.repaired


def test_gaps_are_reported_and_logged_never_filled(caplog):
    df = candles(10).drop(candles(10).index[[3, 4, 7]])
    with caplog.at_level(logging.WARNING, logger="signalcast.data.validation"):
        out, report = validate_keeps_input(df, timeframe="1h")
    assert len(out) == 7  # nothing invented
    start = candles(10).index[0]
    assert report.gaps == [
        Gap(after=start + 2 * HOUR, before=start + 5 * HOUR, missing=2),
        Gap(after=start + 6 * HOUR, before=start + 8 * HOUR, missing=1),
    ]
    assert report.missing_candles == 3 and not report.repaired
    assert "2 gaps (3 missing candles)" in report.summary()
    assert "2 gaps, 3 missing 1h candles" in caplog.text


def test_gaps_are_not_checked_without_a_timeframe():
    _, report = validate_keeps_input(candles(10).drop(candles(10).index[[3]]))
    assert report.gaps == []


def test_spacing_off_the_timeframe_grid_is_an_error():
    message = error_of(candles(), timeframe="4h")
    assert "2024-03-01 00:00 and 2024-03-01 01:00" in message
    assert "not a whole number of 4h candles" in message and "timeframe" in message


def test_nan_prices_are_an_error_naming_the_rows():
    df = candles(12)
    df.iloc[[1, 3, 4, 5, 6, 8, 9], 2] = np.nan
    df.iloc[10, 0] = np.inf
    message = error_of(df)
    assert "missing/infinite price in 8 rows" in message
    assert "(2024-03-01 01:00, 2024-03-01 03:00, 2024-03-01 04:00, 2024-03-01 05:00, " \
           "2024-03-01 06:00, ... (8 in all))" in message
    assert "to drop those rows" in message


def test_nan_prices_are_dropped_with_repair_and_logged(caplog):
    df = candles()
    df.iloc[2, 3] = np.nan
    with caplog.at_level(logging.WARNING, logger="signalcast.data.validation"):
        out, report = validate_keeps_input(df, repair=True, timeframe="1h")
    assert len(out) == 5 and candles().index[2] not in out.index
    assert report.missing_rows_dropped == 1
    assert report.gaps == [Gap(candles().index[1], candles().index[3], 1)]  # reported as a gap
    assert "dropped 1 rows with a missing time or price: 2024-03-01 02:00" in caplog.text


def test_missing_volume_is_an_error_or_zero_with_repair():
    df = candles()
    df.iloc[1, 4] = np.nan
    assert "missing volume in 1 row (2024-03-01 01:00)" in error_of(df)
    out, report = validate_keeps_input(df, repair=True)
    assert out["volume"].iloc[1] == 0.0 and report.volume_filled == 1


def test_non_positive_prices_are_an_error_even_with_repair():
    df = candles()
    df.iloc[2, 3] = 0.0
    df.iloc[4, 2] = -1.0
    message = error_of(df, repair=True)
    assert "price <= 0 in 2 rows (2024-03-01 02:00, 2024-03-01 04:00)" in message
    assert "repair cannot guess a price" in message


@pytest.mark.parametrize(
    ("column", "value", "why"),
    [("high", 100.5, "high below close"), ("low", 101.5, "low above open"),
     ("high", 98.0, "high below low")],
)
def test_inconsistent_high_low_is_an_error_without_repair(column, value, why):
    df = candles()
    df.loc[df.index[0], column] = value
    message = error_of(df)
    assert "high/low do not contain open and close (or high < low) in 1 row" in message, why
    assert "(2024-03-01 00:00)" in message and "--repair" in message


def test_inconsistent_high_low_is_widened_with_repair_and_logged(caplog):
    df = candles()
    df.iloc[0, 1] = 100.5  # high below close (101)
    df.iloc[1, 2] = 101.5  # low above open (101)
    df.iloc[2, [1, 2]] = [101.0, 103.0]  # high < low; open 102, close 103
    with caplog.at_level(logging.WARNING, logger="signalcast.data.validation"):
        out, report = validate_keeps_input(df, repair=True)
    assert out.iloc[0][["high", "low"]].tolist() == [101.0, 99.0]
    assert out.iloc[1][["high", "low"]].tolist() == [102.5, 101.0]
    assert out.iloc[2][["high", "low"]].tolist() == [103.0, 101.0]
    pd.testing.assert_frame_equal(out.iloc[3:], candles().iloc[3:], check_exact=True)
    assert report.ohlc_widened == 3
    assert "widened high/low of 3 rows" in caplog.text


def test_negative_volume_is_an_error_even_with_repair():
    df = candles()
    df.iloc[5, 4] = -3.0
    message = error_of(df, repair=True)
    assert "negative volume in 1 row (2024-03-01 05:00)" in message


def test_several_problems_are_reported_together():
    df = candles()
    df.iloc[1, 0] = -5.0
    df.iloc[3, 4] = -1.0
    message = error_of(df, source="eth.parquet")
    assert message.startswith("eth.parquet: 2 problems in the candles:\n  - price <= 0")
    assert "\n  - negative volume" in message


def test_empty_frame_is_valid_and_summarised():
    out, report = validate_keeps_input(candles().iloc[:0], timeframe="1h")
    assert out.empty and report.summary() == "candles: 0 candles; no problems"
