"""When a market trades, so that a closed market is never reported as missing candles.

A candle slot (its open time, on the epoch-aligned grid) is *expected* when the market is open
at that time; only expected slots without a candle are gaps. A candle present while the market
is "closed" is kept as it is (some venues trade a little longer), it is just never demanded.
The calendars (``assets[].calendar``):

* ``24/7``: always open (crypto). Every slot is expected.
* ``fx``: the interbank week, Sunday 17:00 to Friday 17:00 New York time (22:00 UTC in winter,
  21:00 UTC in summer: daylight saving is followed), closed on 25 December and 1 January (the
  trading day that ends at 17:00 New York time on that date).
* ``equity``: US equities (NYSE rules): Monday to Friday, 09:30-16:00 New York time, closed on
  New Year's Day, Martin Luther King Jr. Day, Presidents' Day, Good Friday, Memorial Day,
  Juneteenth (from 2022), Independence Day, Labor Day, Thanksgiving and Christmas (moved to the
  nearest weekday as the exchange does), and on the unscheduled closures listed in
  ``NYSE_CLOSURES``. An intraday candle is expected when it overlaps the session; a daily (or
  longer) candle when its UTC date is a trading day.

>>> import pandas as pd
>>> times = pd.DatetimeIndex(["2024-01-05 21:00", "2024-01-06 12:00", "2024-01-07 22:00"],
...                          tz="UTC")
>>> expected_slots(times, "fx", pd.Timedelta("1h")).tolist()
[True, False, True]
"""

from __future__ import annotations

from functools import cache

import numpy as np
import pandas as pd

CALENDARS = ("24/7", "fx", "equity")
NEW_YORK = "America/New_York"
# Unscheduled whole-day NYSE closures (September 11, state funerals, Hurricane Sandy).
NYSE_CLOSURES = ("2001-09-11", "2001-09-12", "2001-09-13", "2001-09-14", "2004-06-11",
                 "2007-01-02", "2012-10-29", "2012-10-30", "2018-12-05", "2025-01-09")
_SESSION = (pd.Timedelta(hours=9, minutes=30), pd.Timedelta(hours=16))  # New York time


def expected_slots(times: pd.DatetimeIndex, calendar: str, step: pd.Timedelta) -> np.ndarray:
    """For each candle open time (UTC), whether the market is open for it under ``calendar``."""
    if calendar == "24/7":
        return np.ones(len(times), dtype=bool)
    if calendar == "fx":
        return _fx(times)
    if calendar == "equity":
        return _equity(times, step)
    raise ValueError(f"unknown calendar {calendar!r}; use one of {', '.join(CALENDARS)}")


def _fx(times: pd.DatetimeIndex) -> np.ndarray:
    # 17:00 New York time starts the next trading day: shifted by 7 hours, the FX trading day
    # is the calendar date, and the week is Monday to Friday.
    day = (times.tz_convert(NEW_YORK).tz_localize(None) + pd.Timedelta(hours=7)).normalize()
    closed = (day.month == 12) & (day.day == 25) | (day.month == 1) & (day.day == 1)
    return np.asarray((day.day_of_week < 5) & ~closed)


def _equity(times: pd.DatetimeIndex, step: pd.Timedelta) -> np.ndarray:
    if step >= pd.Timedelta(days=1):
        return _trading_day(times.tz_convert("UTC").tz_localize(None).normalize())
    local = times.tz_convert(NEW_YORK).tz_localize(None)
    day = local.normalize()
    start, end = local - day, local - day + step
    return _trading_day(day) & np.asarray((end > _SESSION[0]) & (start < _SESSION[1]))


def _trading_day(days: pd.DatetimeIndex) -> np.ndarray:
    if not len(days):
        return np.zeros(0, dtype=bool)
    holidays = _nyse_holidays(days.min().year, days.max().year)
    return np.asarray((days.day_of_week < 5) & ~days.isin(holidays))


@cache
def _nyse_holidays(first_year: int, last_year: int) -> pd.DatetimeIndex:
    from pandas.tseries.holiday import (
        AbstractHolidayCalendar,
        GoodFriday,
        Holiday,
        USLaborDay,
        USMartinLutherKingJr,
        USMemorialDay,
        USPresidentsDay,
        USThanksgivingDay,
        nearest_workday,
        sunday_to_monday,
    )

    class NYSE(AbstractHolidayCalendar):
        rules = [  # noqa: RUF012 - pandas' own attribute
            Holiday("New Year's Day", month=1, day=1, observance=sunday_to_monday),
            USMartinLutherKingJr, USPresidentsDay, GoodFriday, USMemorialDay,
            Holiday("Juneteenth", month=6, day=19, start_date="2022-01-01",
                    observance=nearest_workday),
            Holiday("Independence Day", month=7, day=4, observance=nearest_workday),
            USLaborDay, USThanksgivingDay,
            Holiday("Christmas", month=12, day=25, observance=nearest_workday),
        ]

    found = NYSE().holidays(f"{first_year}-01-01", f"{last_year}-12-31")
    return found.union(pd.DatetimeIndex(NYSE_CLOSURES))
