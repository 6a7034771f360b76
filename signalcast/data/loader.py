"""Load candles from CSV or Parquet files in the common OHLCV layouts, with no code to write.

Why: people bring candles from exchanges, notebooks and data vendors, each with its own column
names and time format. This module accepts the usual variations and turns everything else into a
:class:`~signalcast.core.errors.DataError` that names the file, the line (as a user sees it in the
file) or column, and the fix. The result is validated by
:func:`~signalcast.data.validation.validate_candles`, so it meets the candle-frame contract.

Accepted without configuration:

* files ``.csv``, ``.csv.gz`` (comma, or semicolon/tab when the file uses one), ``.parquet``,
  ``.pq``;
* price columns ``open, high, low, close`` or ``o, h, l, c`` in any case; ``volume`` (or ``v``,
  ``vol``) is optional and becomes 0 when absent;
* the candle open time in a column named ``timestamp``, ``open_time``, ``datetime``, ``date`` or
  ``time`` (any case, first match in that order), otherwise in the first column (the index of a
  Parquet file counts as a column);
* times as ISO 8601 strings or dates (naive ones are UTC; offsets are converted to UTC), or epoch
  numbers whose unit (seconds, milliseconds, microseconds, nanoseconds) is told by magnitude;
  an epoch time must fall between 1990 and 2100, which also rejects numbers such as 20240131.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

from signalcast.core.errors import DataError
from signalcast.data.validation import COLUMNS, validate_candles

logger = logging.getLogger(__name__)

TIME_NAMES = ("timestamp", "open_time", "datetime", "date", "time")
ALIASES = {
    "open": ("open", "o"),
    "high": ("high", "h"),
    "low": ("low", "l"),
    "close": ("close", "c"),
    "volume": ("volume", "v", "vol"),
}
_EPOCH_UNITS = ("s", "ms", "us", "ns")
_EPOCH_NAMES = ("seconds", "milliseconds", "microseconds", "nanoseconds")
_EPOCH_RANGE = (631_152_000, 4_102_444_800)  # 1990-01-01 and 2100-01-01 in epoch seconds
_TIME_HINT = (
    "Write times as ISO 8601 (e.g. 2024-01-31 13:00:00 or 2024-01-31T13:00:00Z) "
    "or as epoch seconds/milliseconds."
)

Where = Callable[[int], str]  # 0-based data row -> "line 7" / "row 6"


def load_candles(
    path: str | Path, *, timeframe: str | None = None, repair: bool = False,
    calendar: str = "24/7",
) -> pd.DataFrame:
    """Read a candle file and return a validated contract frame.

    ``timeframe`` (e.g. ``"1h"``) enables the spacing check (gaps are logged, off-grid times are
    an error); ``repair`` lets validation fix what it safely can (see ``validate_candles``);
    ``calendar`` (``24/7``, ``fx``, ``equity``) keeps closed-market hours out of the gaps.
    """
    path = Path(path)
    name = path.name
    kind = _kind(path)
    if not path.exists():
        raise DataError(f"{name}: file not found at {path.resolve()}. Check the path.")
    if path.is_dir():
        raise DataError(f"{name}: is a directory, not a candle file. Give the file's path.")

    raw, where = _read_csv(path) if kind == "csv" else _read_parquet(path)
    if raw.empty:
        raise DataError(f"{name}: the file has no data rows. Export the candles again.")

    columns = _match_columns(raw, name)
    time_col, by_position = _time_column(raw, name, used=set(columns.values()))
    try:
        index = _parse_times(raw[time_col], str(time_col), name, where)
    except DataError as exc:
        if not by_position:
            raise
        raise DataError(
            f"{exc} (No column is named {', '.join(TIME_NAMES)}, so the first column "
            f"'{time_col}' was taken as the time.)"
        ) from exc
    frame = pd.DataFrame(index=index)
    for field in COLUMNS:
        if field in columns:
            frame[field] = _parse_numbers(raw[columns[field]], str(columns[field]), name, where)
        else:
            logger.warning("%s: no volume column; volume set to 0", name)
            frame[field] = 0.0
    candles, report = validate_candles(frame, timeframe=timeframe, repair=repair,
                                       source=name, calendar=calendar)
    logger.info("%s", report.summary())
    return candles


def _kind(path: Path) -> str:
    lower = path.name.lower()
    if lower.endswith((".csv", ".csv.gz")):
        return "csv"
    if lower.endswith((".parquet", ".pq")):
        return "parquet"
    raise DataError(
        f"{path.name}: unsupported file type. Use a .csv, .csv.gz, .parquet or .pq file."
    )


def _read_csv(path: Path) -> tuple[pd.DataFrame, Where]:
    """Line numbers count the header as line 1 (blank lines in the file would shift them)."""
    try:
        raw = pd.read_csv(path)
        if raw.shape[1] == 1 and any(sep in str(raw.columns[0]) for sep in (";", "\t", "|")):
            raw = pd.read_csv(path, sep=None, engine="python")  # sniff the separator
    except pd.errors.EmptyDataError as exc:
        raise DataError(f"{path.name}: the file is empty. Export the candles again.") from exc
    except (pd.errors.ParserError, UnicodeDecodeError, OSError, EOFError) as exc:
        raise DataError(f"{path.name}: cannot be read as CSV ({exc}). Is it a CSV file?") from exc
    return raw, lambda i: f"line {i + 2}"


def _read_parquet(path: Path) -> tuple[pd.DataFrame, Where]:
    try:
        raw = pd.read_parquet(path)
    except (OSError, ValueError) as exc:  # pyarrow's ArrowInvalid is a ValueError
        raise DataError(
            f"{path.name}: cannot be read as Parquet ({exc}). Is it a Parquet file?"
        ) from exc
    if not (isinstance(raw.index, pd.RangeIndex) and raw.index.name is None):
        raw = raw.reset_index()  # a saved index (often the time) becomes the first column
    return raw, lambda i: f"row {i + 1}"


def _normalised(raw: pd.DataFrame, name: str) -> dict[str, object]:
    """Lower-cased, stripped column name -> original column name."""
    found: dict[str, object] = {}
    for col in raw.columns:
        key = str(col).strip().lower()
        if key in found:
            raise DataError(
                f"{name}: columns {found[key]!r} and {col!r} have the same name apart from case "
                "or spaces. Keep only one of them."
            )
        found[key] = col
    return found


def _match_columns(raw: pd.DataFrame, name: str) -> dict[str, object]:
    """Contract field -> original column, for every field found; prices are required."""
    found = _normalised(raw, name)
    columns: dict[str, object] = {}
    for field, aliases in ALIASES.items():
        match = next((found[alias] for alias in aliases if alias in found), None)
        if match is not None:
            columns[field] = match
        elif field != "volume":
            listed = ", ".join(map(str, raw.columns))
            raise DataError(
                f"{name}: no '{field}' column (columns found: {listed}). "
                f"Rename the {field}-price column to '{field}'."
            )
    return columns


def _time_column(raw: pd.DataFrame, name: str, used: set[object]) -> tuple[object, bool]:
    """The time column, and whether it was chosen by position (no column named for time)."""
    found = _normalised(raw, name)
    for candidate in TIME_NAMES:
        if candidate in found:
            return found[candidate], False
    first = raw.columns[0]
    if first in used:
        raise DataError(
            f"{name}: no time column (columns found: {', '.join(map(str, raw.columns))}). "
            "Name the candle open-time column 'timestamp' (or time, date, datetime, open_time) "
            "or make it the first column."
        )
    return first, True


def _parse_times(values: pd.Series, column: str, name: str, where: Where) -> pd.DatetimeIndex:
    """Candle open times as a UTC DatetimeIndex named ``time``."""
    missing = values.isna().to_numpy()
    if missing.any():
        row = int(np.argmax(missing))
        raise DataError(
            f"{name}: {where(row)}: no time in column '{column}'. "
            "Every row needs its candle's open time."
        )
    if pd.api.types.is_datetime64_any_dtype(values):
        times = pd.DatetimeIndex(values)
        times = times.tz_localize("UTC") if times.tz is None else times.tz_convert("UTC")
    else:
        numeric = values if pd.api.types.is_numeric_dtype(values) else None
        if numeric is None:
            as_number = pd.to_numeric(values, errors="coerce")
            numeric = as_number if as_number.notna().all() else None
        if numeric is not None and not pd.api.types.is_bool_dtype(numeric):
            times = _from_epoch(numeric.to_numpy(), column, name, where)  # ints stay exact
        else:
            times = _from_text(values, column, name, where)
    return times.as_unit("us").rename("time")


def _from_epoch(numbers: np.ndarray, column: str, name: str, where: Where) -> pd.DatetimeIndex:
    """Epoch numbers -> times; the unit is told by magnitude and must be the same on all rows.

    A number is accepted only if, in some unit, it falls between 1990 and 2100: this tells the
    units apart (their ranges are 1000x apart) and rejects numbers that are not epoch times at
    all, such as 20240131 (a date written as YYYYMMDD), instead of reading them as 1970.
    """
    units = np.full(len(numbers), -1)
    with np.errstate(invalid="ignore"):
        for k in range(len(_EPOCH_UNITS)):
            low, high = _EPOCH_RANGE[0] * 1000**k, _EPOCH_RANGE[1] * 1000**k
            units[(numbers >= low) & (numbers < high)] = k
    if (units < 0).any():
        row = int(np.argmax(units < 0))
        raise DataError(
            f"{name}: {where(row)}: time {_number_repr(numbers[row])} in column '{column}' is "
            "not an epoch time between 1990 and 2100 in seconds, milliseconds, microseconds or "
            "nanoseconds. " + _TIME_HINT
        )
    mixed = units != units[0]
    if mixed.any():
        row = int(np.argmax(mixed))
        raise DataError(
            f"{name}: {where(row)}: time {_number_repr(numbers[row])} in column '{column}' looks "
            f"like epoch {_EPOCH_NAMES[units[row]]} but {where(0)} looks like epoch "
            f"{_EPOCH_NAMES[units[0]]}. Use one unit for the whole column."
        )
    return pd.DatetimeIndex(pd.to_datetime(numbers, unit=_EPOCH_UNITS[units[0]], utc=True))


def _number_repr(number: float) -> str:
    """12345.0 -> '12345' (times are usually whole numbers)."""
    return f"{number:.0f}" if np.isfinite(number) and number == int(number) else repr(number)


def _from_text(values: pd.Series, column: str, name: str, where: Where) -> pd.DatetimeIndex:
    """ISO 8601 strings or date objects -> times (naive ones are UTC)."""
    parsed = pd.to_datetime(values, utc=True, errors="coerce", format="ISO8601")
    bad = parsed.isna().to_numpy()
    if bad.any():
        row = int(np.argmax(bad))
        raise DataError(
            f"{name}: {where(row)}: cannot read time {values.iloc[row]!r} in column "
            f"'{column}'. " + _TIME_HINT
        )
    return pd.DatetimeIndex(parsed)


def _parse_numbers(values: pd.Series, column: str, name: str, where: Where) -> np.ndarray:
    """A price/volume column as float64; text that is not a number is an error naming the line."""
    numbers = pd.to_numeric(values, errors="coerce")
    bad = numbers.isna().to_numpy() & values.notna().to_numpy()
    if bad.any():
        row = int(np.argmax(bad))
        raise DataError(
            f"{name}: {where(row)}: column '{column}' holds {values.iloc[row]!r}, "
            "not a number. Fix the value or remove the row."
        )
    return numbers.to_numpy(dtype=np.float64)
