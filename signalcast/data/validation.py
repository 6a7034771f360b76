"""Check a candle frame against the project's contract, and repair what can be repaired safely.

Why: every later stage (features, labels, models) trusts its candles. A duplicated or unordered
timestamp, a missing price or a high below the close would give silently wrong labels, so each
problem is either a clear :class:`~signalcast.core.errors.DataError` or, with ``repair=True``
(CLI ``--repair``), a logged fix. Missing candles (gaps) are reported and logged, never invented.

The returned frame always meets the contract: a tz-aware UTC ``DatetimeIndex`` named ``time``
(candle open times), sorted and unique, columns exactly ``open, high, low, close, volume`` as
float64. The input frame is never modified.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from signalcast.core.errors import DataError
from signalcast.core.timeframes import timeframe_to_timedelta
from signalcast.data.calendars import expected_slots

logger = logging.getLogger(__name__)

COLUMNS = ["open", "high", "low", "close", "volume"]
PRICES = ["open", "high", "low", "close"]
_SHOW = 5  # how many offending timestamps a message lists
_REPAIR_HINT = "Pass repair=True (CLI: --repair) to {action}."


@dataclass(frozen=True)
class Gap:
    """Candles missing between two consecutive candles ``after`` and ``before``."""

    after: pd.Timestamp  # open time of the last candle before the gap
    before: pd.Timestamp  # open time of the first candle after the gap
    missing: int  # number of candles that would fit in between


@dataclass
class ValidationReport:
    """What validation found and repaired; ``summary()`` is one line for logs and the CLI."""

    source: str
    rows_in: int = 0
    rows_out: int = 0
    first: pd.Timestamp | None = None
    last: pd.Timestamp | None = None
    naive_times_as_utc: bool = False
    duplicates_dropped: int = 0
    sorted_rows: bool = False
    missing_rows_dropped: int = 0
    volume_filled: int = 0
    ohlc_widened: int = 0
    off_grid_snapped: int = 0
    off_grid_dropped: int = 0
    gaps: list[Gap] = field(default_factory=list)

    @property
    def missing_candles(self) -> int:
        return sum(gap.missing for gap in self.gaps)

    @property
    def repaired(self) -> bool:
        return bool(
            self.duplicates_dropped or self.sorted_rows or self.missing_rows_dropped
            or self.volume_filled or self.ohlc_widened or self.off_grid_snapped
            or self.off_grid_dropped
        )

    def summary(self) -> str:
        if self.rows_out:
            head = f"{self.source}: {self.rows_out} candles {_fmt(self.first)} .. {_fmt(self.last)}"
        else:
            head = f"{self.source}: 0 candles"
        notes = []
        if self.naive_times_as_utc:
            notes.append("times without a timezone read as UTC")
        if self.duplicates_dropped:
            notes.append(f"{_plural(self.duplicates_dropped, 'duplicate row')} dropped")
        if self.sorted_rows:
            notes.append("rows sorted by time")
        if self.missing_rows_dropped:
            notes.append(f"{_plural(self.missing_rows_dropped, 'row')} with missing prices dropped")
        if self.volume_filled:
            notes.append(f"{_plural(self.volume_filled, 'missing volume')} set to 0")
        if self.ohlc_widened:
            widened = _plural(self.ohlc_widened, "row")
            notes.append(f"high/low widened to include open/close in {widened}")
        if self.off_grid_snapped:
            notes.append(f"{_plural(self.off_grid_snapped, 'candle')} snapped onto the grid")
        if self.off_grid_dropped:
            notes.append(f"{_plural(self.off_grid_dropped, 'off-grid candle')} dropped")
        if self.gaps:
            notes.append(
                f"{_plural(len(self.gaps), 'gap')} "
                f"({_plural(self.missing_candles, 'missing candle')})"
            )
        return head + ("; " + "; ".join(notes) if notes else "; no problems")


def _plural(count: int, noun: str) -> str:
    """``_plural(1, "row")`` -> '1 row', ``_plural(3, "row")`` -> '3 rows'."""
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


def _fmt(stamp: pd.Timestamp | None) -> str:
    return "-" if stamp is None else stamp.strftime("%Y-%m-%d %H:%M")


def _times(index: pd.Index, mask: np.ndarray) -> str:
    """'2023-01-01 00:00, 2023-01-01 01:00, ... (7 in all)' for the rows where mask is true."""
    chosen = index[mask]
    shown = ", ".join("NaT" if pd.isna(t) else _fmt(t) for t in chosen[:_SHOW])
    return shown + (f", ... ({len(chosen)} in all)" if len(chosen) > _SHOW else "")


def _structure(df: pd.DataFrame, source: str, report: ValidationReport) -> pd.DataFrame:
    """A float64 copy with the contract's columns and a UTC index named ``time``."""
    if not isinstance(df, pd.DataFrame):
        raise DataError(
            f"{source}: expected a pandas DataFrame of candles, got {type(df).__name__}"
        )
    if not isinstance(df.index, pd.DatetimeIndex):
        raise DataError(
            f"{source}: the index must hold candle open times (a DatetimeIndex), "
            f"got {type(df.index).__name__}. Set it with df.set_index('time')."
        )
    missing = [col for col in COLUMNS if col not in df.columns]
    if missing:
        raise DataError(
            f"{source}: missing column(s) {', '.join(missing)} "
            f"(columns found: {', '.join(map(str, df.columns)) or 'none'})."
        )
    out = pd.DataFrame(index=df.index.copy())
    for col in COLUMNS:
        values = pd.to_numeric(df[col], errors="coerce")
        bad = values.isna().to_numpy() & df[col].notna().to_numpy()
        if bad.any():
            raise DataError(
                f"{source}: column '{col}' holds values that are not numbers at "
                f"{_times(df.index, bad)}. Fix or remove those rows."
            )
        out[col] = values.to_numpy(dtype=np.float64)
    index = out.index
    if index.tz is None:
        report.naive_times_as_utc = True
        index = index.tz_localize("UTC")
    else:
        index = index.tz_convert("UTC")
    out.index = index.rename("time")
    return out


def validate_candles(
    df: pd.DataFrame,
    *,
    timeframe: str | None = None,
    repair: bool = False,
    source: str = "candles",
    calendar: str = "24/7",
) -> tuple[pd.DataFrame, ValidationReport]:
    """Validate (and with ``repair`` fix) a candle frame; return the clean frame and a report.

    Checks, in order: missing values (NaN/inf prices, missing times; repair drops the rows;
    missing volume becomes 0), duplicated timestamps (identical copies dropped by repair,
    conflicting ones are always an error), order (repair sorts), non-positive prices (error),
    high/low inconsistent with open/close (repair widens them), negative volume (error), and,
    when ``timeframe`` is given, the grid: open times off the epoch-aligned grid are an error
    (repair snaps a uniformly shifted series or drops a few off-grid rows), spacing that is not
    a whole number of candles is an error (wrong timeframe?), and gaps are reported, counting
    only slots in which the market of ``calendar`` (:mod:`signalcast.data.calendars`) trades.
    Unrepaired problems are gathered into one :class:`DataError`, each with its first times.
    """
    report = ValidationReport(source=source, rows_in=len(df))
    out = _structure(df, source, report)
    if report.naive_times_as_utc:
        logger.info("%s: times have no timezone; reading them as UTC", source)
    problems: list[str] = []

    out = _check_missing(out, repair, source, report, problems)
    out = _check_duplicates(out, repair, source, report, problems)
    out = _check_order(out, repair, source, report, problems)
    positive = _check_positive(out, problems)
    out = _check_ohlc(out, positive, repair, source, report, problems)
    _check_volume(out, problems)
    if timeframe is not None and not problems:
        out = _check_spacing(out, timeframe, calendar, repair, source, report, problems)

    if problems:
        listed = "\n".join(f"  - {problem}" for problem in problems)
        count = "1 problem" if len(problems) == 1 else f"{len(problems)} problems"
        raise DataError(f"{source}: {count} in the candles:\n{listed}")
    report.rows_out = len(out)
    if len(out):
        report.first, report.last = out.index[0], out.index[-1]
    return out, report


def _check_missing(
    out: pd.DataFrame, repair: bool, source: str, report: ValidationReport, problems: list[str]
) -> pd.DataFrame:
    prices = out[PRICES].to_numpy()
    bad = ~np.isfinite(prices).all(axis=1) | out.index.isna()
    if bad.any():
        if repair:
            logger.warning(
                "%s: dropped %d rows with a missing time or price: %s",
                source, bad.sum(), _times(out.index, bad),
            )
            report.missing_rows_dropped = int(bad.sum())
            out = out[~bad]
        else:
            problems.append(
                f"missing time or missing/infinite price in {_plural(bad.sum(), 'row')} "
                f"({_times(out.index, bad)}). " + _REPAIR_HINT.format(action="drop those rows")
            )
    no_volume = ~np.isfinite(out["volume"].to_numpy())
    if no_volume.any():
        if repair:
            logger.warning(
                "%s: set %d missing volumes to 0: %s",
                source, no_volume.sum(), _times(out.index, no_volume),
            )
            report.volume_filled = int(no_volume.sum())
            out = out.copy()
            out.loc[no_volume, "volume"] = 0.0
        else:
            problems.append(
                f"missing volume in {_plural(no_volume.sum(), 'row')} "
                f"({_times(out.index, no_volume)}). " + _REPAIR_HINT.format(action="set it to 0")
            )
    return out


def _check_duplicates(
    out: pd.DataFrame, repair: bool, source: str, report: ValidationReport, problems: list[str]
) -> pd.DataFrame:
    dup_time = out.index.duplicated(keep=False)
    if not dup_time.any():
        return out
    keyed = out.reset_index()
    identical = keyed.duplicated(keep="first").to_numpy()  # a copy of an earlier row
    conflicting = dup_time & ~keyed.duplicated(keep=False).to_numpy()
    if conflicting.any():
        problems.append(
            f"conflicting duplicates: {_plural(len(out.index[conflicting].unique()), 'timestamp')} "
            f"appear more than once with different values ({_times(out.index, conflicting)}). "
            "Keep one row per candle; repair cannot choose which is right."
        )
    if identical.any():
        if repair:
            logger.warning(
                "%s: dropped %d duplicate rows: %s",
                source, identical.sum(), _times(out.index, identical),
            )
            report.duplicates_dropped = int(identical.sum())
            out = out[~identical]
        else:
            problems.append(
                f"duplicated timestamps: {_plural(identical.sum(), 'row')} exactly repeat an "
                f"earlier row ({_times(out.index, identical)}). "
                + _REPAIR_HINT.format(action="drop the copies")
            )
    return out


def _check_order(
    out: pd.DataFrame, repair: bool, source: str, report: ValidationReport, problems: list[str]
) -> pd.DataFrame:
    stamps = out.index.to_numpy()
    backwards = np.concatenate([[False], stamps[1:] < stamps[:-1]])
    if not backwards.any():
        return out
    if repair:
        logger.warning("%s: rows were not in time order; sorted them", source)
        report.sorted_rows = True
        return out.sort_index(kind="stable")
    first = int(np.argmax(backwards))
    problems.append(
        f"timestamps are not in increasing order: {_fmt(out.index[first])} comes after "
        f"{_fmt(out.index[first - 1])} ({_plural(backwards.sum(), 'place')}). "
        + _REPAIR_HINT.format(action="sort the rows")
    )
    return out


def _check_positive(out: pd.DataFrame, problems: list[str]) -> np.ndarray:
    """Report rows with a price <= 0; return the mask of rows whose prices are all positive."""
    bad = (out[PRICES].to_numpy() <= 0).any(axis=1)
    if bad.any():
        problems.append(
            f"price <= 0 in {_plural(bad.sum(), 'row')} ({_times(out.index, bad)}). "
            "Prices must be positive; fix or remove those rows (repair cannot guess a price)."
        )
    return ~bad


def _check_ohlc(
    out: pd.DataFrame,
    positive: np.ndarray,
    repair: bool,
    source: str,
    report: ValidationReport,
    problems: list[str],
) -> pd.DataFrame:
    """High/low must contain open and close; rows already reported as non-positive are skipped."""
    o, h, lo, c = (out[col].to_numpy() for col in PRICES)
    bad = ((h < lo) | (h < np.maximum(o, c)) | (lo > np.minimum(o, c))) & positive
    if not bad.any():
        return out
    if repair:
        logger.warning(
            "%s: widened high/low of %d rows to include open and close: %s",
            source, bad.sum(), _times(out.index, bad),
        )
        report.ohlc_widened = int(bad.sum())
        prices = out[PRICES].to_numpy()
        out = out.copy()
        out["high"] = prices.max(axis=1)
        out["low"] = prices.min(axis=1)
        return out
    problems.append(
        f"high/low do not contain open and close (or high < low) in "
        f"{_plural(bad.sum(), 'row')} ({_times(out.index, bad)}). "
        + _REPAIR_HINT.format(action="widen high/low to include open and close")
    )
    return out


def _check_volume(out: pd.DataFrame, problems: list[str]) -> None:
    bad = out["volume"].to_numpy() < 0
    if bad.any():
        problems.append(
            f"negative volume in {_plural(bad.sum(), 'row')} ({_times(out.index, bad)}). "
            "Fix or remove those rows."
        )


def _check_spacing(
    out: pd.DataFrame, timeframe: str, calendar: str, repair: bool, source: str,
    report: ValidationReport, problems: list[str],
) -> pd.DataFrame:
    """Open times must sit on the timeframe's epoch-aligned grid (00:00, 01:00, ... for 1h;
    midnight UTC for 1d) and be whole candles apart. Repair snaps a series shifted by one
    constant offset onto the grid, or drops the off-grid rows of a series that is mostly on it
    (logged, counted). Gaps go to the report (and a warning), counting only the slots the
    asset's ``calendar`` expects: a closed market is not a gap."""
    if not len(out):
        return out
    step = pd.Timedelta(timeframe_to_timedelta(timeframe))
    offsets = (out.index - pd.Timestamp(0, tz="UTC")) % step
    off = np.asarray(offsets != pd.Timedelta(0))
    if off.any() and repair:
        if off.all() and (offsets == offsets[0]).all():
            logger.warning("%s: moved %d candles by -%s onto the %s grid (their times were all "
                           "%s past it)", source, len(out), offsets[0], timeframe, offsets[0])
            report.off_grid_snapped = len(out)
            out = out.set_axis((out.index - offsets[0]).as_unit(out.index.unit).rename("time"))
            off = np.zeros(len(out), dtype=bool)
        elif off.sum() * 2 < len(out):
            logger.warning("%s: dropped %d candles off the %s grid: %s", source, off.sum(),
                           timeframe, _times(out.index, off))
            report.off_grid_dropped = int(off.sum())
            out = out[~off]
            off = np.zeros(len(out), dtype=bool)
    if off.any():
        problems.append(
            f"{_plural(int(off.sum()), 'candle')} not on the {timeframe} grid "
            f"({_times(out.index, off)}): open times must be whole {timeframe} steps from "
            f"00:00 UTC, e.g. {_fmt(out.index[0].floor(step))}. Times in a local timezone or "
            "marking the candle close? Fix the times, or pass repair=True (CLI: --repair) to "
            "snap a uniformly shifted series onto the grid or drop the few off-grid rows."
        )
    deltas = out.index[1:] - out.index[:-1]
    uneven = (deltas % step) != pd.Timedelta(0)
    if uneven.any():
        first = int(np.argmax(uneven))
        problems.append(
            f"candles {_fmt(out.index[first])} and {_fmt(out.index[first + 1])} are "
            f"{deltas[first]} apart, not a whole number of {timeframe} candles "
            f"({_plural(int(uneven.sum()), 'place')}). Is the timeframe right?"
        )
    if problems:
        return out
    for i in np.flatnonzero(deltas > step):
        slots = pd.date_range(out.index[i] + step, out.index[i + 1] - step, freq=step)
        missing = int(expected_slots(slots, calendar, step).sum())
        if missing:
            report.gaps.append(Gap(out.index[i], out.index[i + 1], missing))
    if report.gaps:
        first = report.gaps[0]
        logger.warning(
            "%s: %d gaps, %d missing %s candles (first after %s); they are not filled in",
            source, len(report.gaps), report.missing_candles, timeframe, _fmt(first.after),
        )
    return out
