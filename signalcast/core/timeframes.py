"""Timeframe strings ("15m", "1h", "4h", "1d") and candle-close arithmetic.

A candle is identified by its *open* time (UTC). It is closed once ``open + timeframe`` has passed.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from signalcast.core.errors import ConfigError

if TYPE_CHECKING:
    import pandas as pd

_UNITS = {"m": "minutes", "h": "hours", "d": "days"}
_PATTERN = re.compile(r"^(\d+)([mhd])$")


def timeframe_to_timedelta(timeframe: str) -> timedelta:
    """``"1h"`` -> ``timedelta(hours=1)``.

    >>> timeframe_to_timedelta("15m")
    datetime.timedelta(seconds=900)
    """
    match = _PATTERN.match(timeframe)
    if not match or int(match.group(1)) == 0:
        raise ConfigError(
            f"timeframe must look like 15m, 1h, 4h or 1d, got {timeframe!r}"
        )
    return timedelta(**{_UNITS[match.group(2)]: int(match.group(1))})


# Timeframes whose candles close at the same UTC times every day, so that a cron trigger (and
# the epoch-aligned candle grid) places every close: minutes dividing an hour, hours dividing a
# day, or one day. 45m, 90m, 5h or 3d would drift against the clock and are refused.
ALLOWED_TIMEFRAMES = ("1m", "2m", "3m", "4m", "5m", "6m", "10m", "12m", "15m", "20m", "30m",
                      "1h", "2h", "3h", "4h", "6h", "8h", "12h", "1d")


def check_schedulable(timeframe: str) -> timedelta:
    """The timeframe's length, if its candles close at the same UTC times every day.

    >>> check_schedulable("4h")
    datetime.timedelta(seconds=14400)
    >>> check_schedulable("90m")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    signalcast.core.errors.ConfigError: timeframe '90m' does not divide a day evenly, ...
    """
    step = timeframe_to_timedelta(timeframe)
    minutes = step.total_seconds() / 60
    fits = (minutes < 60 and 60 % minutes == 0) or (
        minutes < 1440 and minutes % 60 == 0 and 24 % (minutes // 60) == 0) or minutes == 1440
    if not fits:
        raise ConfigError(
            f"timeframe {timeframe!r} does not divide a day evenly, so candle closes would drift "
            f"against the clock; use one of {', '.join(ALLOWED_TIMEFRAMES)}"
        )
    return step


def utc(ts: datetime | pd.Timestamp | str) -> datetime:
    """Any timestamp -> timezone-aware UTC ``datetime`` (naive input is taken as UTC)."""
    if type(ts) is datetime:  # the common case, without importing pandas
        return ts.replace(tzinfo=UTC) if ts.tzinfo is None else ts.astimezone(UTC)
    import pandas as pd

    stamp = pd.Timestamp(ts)
    stamp = stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")
    return stamp.to_pydatetime()


def last_closed_open_time(now: datetime, timeframe: str) -> datetime:
    """Open time of the newest candle that is closed at ``now``.

    >>> last_closed_open_time(datetime(2024, 1, 1, 10, 30, tzinfo=UTC), "1h")
    datetime.datetime(2024, 1, 1, 9, 0, tzinfo=datetime.timezone.utc)
    """
    step = timeframe_to_timedelta(timeframe)
    now = utc(now)
    epoch = datetime(1970, 1, 1, tzinfo=UTC)
    closes = (now - epoch) // step  # number of whole candles closed since the epoch
    return epoch + (closes - 1) * step
