"""Loading candle files: the common layouts load as-is, malformed files give clear errors."""

from __future__ import annotations

import gzip
import logging
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from signalcast.core.errors import DataError
from signalcast.data.loader import load_candles

TIMES = pd.DatetimeIndex(
    pd.date_range("2024-01-01", periods=4, freq="1h", tz="UTC", name="time", unit="us"), freq=None
)
PRICES = {
    "open": [100.0, 101.0, 102.0, 101.5],
    "high": [101.5, 102.5, 102.5, 102.0],
    "low": [99.5, 100.5, 101.0, 100.0],
    "close": [101.0, 102.0, 101.5, 100.5],
    "volume": [10.0, 12.5, 8.0, 9.0],
}
EXPECTED = pd.DataFrame(PRICES, index=TIMES)
HEADER = "timestamp,open,high,low,close,volume"
ROWS = [
    "{t},100,101.5,99.5,101,10",
    "{t},101,102.5,100.5,102,12.5",
    "{t},102,102.5,101,101.5,8",
    "{t},101.5,102,100,100.5,9",
]


def write(path: Path, header: str, times: list[str], rows: list[str] = ROWS) -> Path:
    lines = [header] + [row.format(t=t) for row, t in zip(rows, times, strict=True)]
    path.write_text("\n".join(lines) + "\n")
    return path


def assert_contract(frame: pd.DataFrame) -> None:
    pd.testing.assert_frame_equal(frame, EXPECTED, check_exact=True)


def test_iso_strings_load_into_the_contract_frame(tmp_path):
    times = ["2024-01-01 00:00:00", "2024-01-01T01:00:00Z", "2024-01-01 02:00", "2024-01-01 03:00"]
    assert_contract(load_candles(write(tmp_path / "c.csv", HEADER, times), timeframe="1h"))


def test_iso_strings_with_offsets_are_converted_to_utc(tmp_path):
    times = [f"2024-01-01T{h + 2:02d}:00:00+02:00" for h in range(4)]
    assert_contract(load_candles(write(tmp_path / "c.csv", HEADER, times)))


def test_epoch_seconds_and_milliseconds_are_told_apart(tmp_path):
    seconds = [str(int(t.timestamp())) for t in TIMES]
    millis = [str(int(t.timestamp()) * 1000) for t in TIMES]
    assert_contract(load_candles(write(tmp_path / "s.csv", HEADER, seconds)))
    assert_contract(load_candles(write(tmp_path / "ms.csv", HEADER, millis)))


def test_column_names_are_case_insensitive_and_short_names_work(tmp_path):
    times = [t.isoformat() for t in TIMES]
    upper = write(tmp_path / "upper.csv", "Date,Open,HIGH,Low,Close,Volume", times)
    short = write(tmp_path / "short.csv", "open_time,o,h,l,c,v", times)
    assert_contract(load_candles(upper))
    assert_contract(load_candles(short))


def test_extra_columns_are_ignored_and_columns_may_come_in_any_order(tmp_path):
    frame = EXPECTED.reset_index()[["close", "volume", "time", "low", "high", "open"]]
    frame["trades"] = [1, 2, 3, 4]
    frame.to_csv(tmp_path / "c.csv", index=False)
    assert_contract(load_candles(tmp_path / "c.csv"))


def test_first_column_is_the_time_when_no_column_is_named_for_it(tmp_path):
    EXPECTED.rename_axis(None).to_csv(tmp_path / "unnamed_index.csv")  # header starts with ","
    EXPECTED.rename_axis("when").to_csv(tmp_path / "other_name.csv")
    assert_contract(load_candles(tmp_path / "unnamed_index.csv"))
    assert_contract(load_candles(tmp_path / "other_name.csv"))


def test_missing_volume_becomes_zero_and_is_logged(tmp_path, caplog):
    EXPECTED.drop(columns="volume").to_csv(tmp_path / "novol.csv")
    with caplog.at_level(logging.WARNING, logger="signalcast.data.loader"):
        frame = load_candles(tmp_path / "novol.csv")
    assert (frame["volume"] == 0.0).all() and frame["volume"].dtype == np.float64
    assert "no volume column" in caplog.text


def test_parquet_with_time_index_or_time_column_loads(tmp_path):
    EXPECTED.to_parquet(tmp_path / "indexed.parquet")
    naive = EXPECTED.reset_index()
    naive["time"] = naive["time"].dt.tz_localize(None)
    naive.to_parquet(tmp_path / "column.pq", index=False)
    assert_contract(load_candles(tmp_path / "indexed.parquet"))
    assert_contract(load_candles(tmp_path / "column.pq"))


def test_parquet_with_epoch_milliseconds_loads(tmp_path):
    frame = EXPECTED.reset_index(drop=True)
    frame.insert(0, "timestamp", TIMES.asi8 // 1000)  # microseconds -> milliseconds
    frame.to_parquet(tmp_path / "ms.parquet", index=False)
    assert_contract(load_candles(tmp_path / "ms.parquet"))


def test_gzipped_csv_loads(tmp_path):
    path = tmp_path / "c.csv.gz"
    with gzip.open(path, "wt") as handle:
        EXPECTED.to_csv(handle)
    assert_contract(load_candles(path))


def test_semicolon_separated_csv_loads(tmp_path):
    EXPECTED.to_csv(tmp_path / "c.csv", sep=";")
    assert_contract(load_candles(tmp_path / "c.csv"))


def test_timeframe_and_repair_are_passed_to_validation(tmp_path):
    times = [t.isoformat() for t in TIMES]
    shuffled = write(tmp_path / "c.csv", HEADER, [times[1], times[0], times[2], times[3]],
                     [ROWS[1], ROWS[0], ROWS[2], ROWS[3]])
    with pytest.raises(DataError, match=r"(?s)c\.csv: .*not in increasing order.*--repair"):
        load_candles(shuffled)
    assert_contract(load_candles(shuffled, timeframe="1h", repair=True))
    with pytest.raises(DataError, match="not a whole number of 4h candles"):
        load_candles(shuffled, timeframe="4h", repair=True)


def test_missing_price_column_names_file_columns_and_fix(tmp_path):
    path = write(tmp_path / "prices.csv", "timestamp,open,high,low,last,volume",
                 [t.isoformat() for t in TIMES])
    with pytest.raises(DataError) as info:
        load_candles(path)
    assert str(info.value) == (
        "prices.csv: no 'close' column (columns found: timestamp, open, high, low, last, "
        "volume). Rename the close-price column to 'close'."
    )


def test_unreadable_first_column_says_it_was_taken_as_the_time(tmp_path):
    frame = EXPECTED.reset_index(drop=True)
    frame.insert(0, "symbol", "BTC/USDT")
    frame.to_csv(tmp_path / "sym.csv", index=False)
    with pytest.raises(DataError) as info:
        load_candles(tmp_path / "sym.csv")
    message = str(info.value)
    assert message.startswith("sym.csv: line 2: cannot read time 'BTC/USDT' in column 'symbol'")
    assert message.endswith("so the first column 'symbol' was taken as the time.)")


def test_no_time_column_is_a_clear_error(tmp_path):
    EXPECTED.to_csv(tmp_path / "notime.csv", index=False)
    with pytest.raises(DataError, match=r"notime\.csv: no time column .*'timestamp'"):
        load_candles(tmp_path / "notime.csv")


def test_unparseable_time_names_the_line_and_the_value(tmp_path):
    times = ["2024-01-01 00:00", "2024-01-01 01:00", "yesterday", "2024-01-01 03:00"]
    with pytest.raises(DataError) as info:
        load_candles(write(tmp_path / "t.csv", HEADER, times))
    message = str(info.value)
    assert message.startswith("t.csv: line 4: cannot read time 'yesterday' in column 'timestamp'")
    assert "ISO 8601" in message


def test_missing_time_names_the_line(tmp_path):
    times = ["2024-01-01 00:00", "", "2024-01-01 02:00", "2024-01-01 03:00"]
    with pytest.raises(DataError, match=r"^t\.csv: line 3: no time in column 'timestamp'"):
        load_candles(write(tmp_path / "t.csv", HEADER, times))


def test_number_that_is_no_epoch_time_is_rejected_not_read_as_1970(tmp_path):
    times = ["20240101", "20240102", "20240103", "20240104"]  # YYYYMMDD, not epoch seconds
    with pytest.raises(DataError, match=r"line 2: time 20240101 .* not an epoch time"):
        load_candles(write(tmp_path / "d.csv", HEADER, times))


def test_mixed_epoch_units_are_rejected(tmp_path):
    seconds = [str(int(t.timestamp())) for t in TIMES]
    seconds[2] += "000"
    with pytest.raises(DataError, match=r"line 4: .*milliseconds but line 2 .*seconds"):
        load_candles(write(tmp_path / "mixed.csv", HEADER, seconds))


def test_text_in_a_price_column_names_the_line_column_and_value(tmp_path):
    rows = list(ROWS)
    rows[1] = "{t},101,102.5,100.5,n/a?,12.5"
    with pytest.raises(DataError) as info:
        load_candles(write(tmp_path / "p.csv", HEADER, [t.isoformat() for t in TIMES], rows))
    assert str(info.value) == (
        "p.csv: line 3: column 'close' holds 'n/a?', not a number. "
        "Fix the value or remove the row."
    )


def test_parquet_errors_name_rows_not_lines(tmp_path):
    frame = EXPECTED.reset_index()
    frame["time"] = frame["time"].astype(str)
    frame.loc[1, "time"] = "soon"
    frame.to_parquet(tmp_path / "bad.parquet", index=False)
    with pytest.raises(DataError, match=r"^bad\.parquet: row 2: cannot read time 'soon'"):
        load_candles(tmp_path / "bad.parquet")


def test_empty_file_and_header_only_file_are_clear_errors(tmp_path):
    (tmp_path / "empty.csv").write_text("")
    (tmp_path / "header.csv").write_text(HEADER + "\n")
    with pytest.raises(DataError, match=r"^empty\.csv: the file is empty"):
        load_candles(tmp_path / "empty.csv")
    with pytest.raises(DataError, match=r"^header\.csv: the file has no data rows"):
        load_candles(tmp_path / "header.csv")


def test_missing_file_is_a_clear_error(tmp_path):
    with pytest.raises(DataError, match=r"^nowhere\.csv: file not found at .*Check the path"):
        load_candles(tmp_path / "nowhere.csv")


def test_unsupported_suffix_and_corrupt_files_are_clear_errors(tmp_path):
    (tmp_path / "c.xlsx").write_text("x")
    (tmp_path / "c.parquet").write_text("not parquet at all")
    (tmp_path / "c.csv.gz").write_text("not gzip")
    with pytest.raises(DataError, match=r"c\.xlsx: unsupported file type. Use a \.csv"):
        load_candles(tmp_path / "c.xlsx")
    with pytest.raises(DataError, match=r"c\.parquet: cannot be read as Parquet"):
        load_candles(tmp_path / "c.parquet")
    with pytest.raises(DataError, match=r"c\.csv\.gz: cannot be read as CSV"):
        load_candles(tmp_path / "c.csv.gz")


def test_columns_differing_only_in_case_are_ambiguous(tmp_path):
    frame = EXPECTED.copy()
    frame["Close"] = frame["close"]
    frame.to_csv(tmp_path / "twice.csv")
    with pytest.raises(DataError, match=r"'close' and 'Close' have the same name"):
        load_candles(tmp_path / "twice.csv")


def test_bad_rows_found_by_validation_are_reported_with_the_file_name(tmp_path):
    rows = list(ROWS)
    rows[2] = "{t},102,100,101,101.5,8"  # high below low
    with pytest.raises(DataError, match=r"(?s)^bad\.csv: 1 problem .*2024-01-01 02:00.*--repair"):
        load_candles(write(tmp_path / "bad.csv", HEADER, [t.isoformat() for t in TIMES], rows))
