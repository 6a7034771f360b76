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
