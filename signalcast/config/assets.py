"""The ``assets`` section: which markets are followed, on which timeframe, and when they trade.

Symbols are upper case (``btc/usdt`` is read as ``BTC/USDT``, so two entries differing only by
case are one asset listed twice). A timeframe must divide a day (see
:data:`~signalcast.core.timeframes.ALLOWED_TIMEFRAMES`). ``calendar`` says when the market is
open, so that a closed market is not reported as missing candles:

* ``24/7`` (default): always open (crypto);
* ``fx``: Sunday 17:00 to Friday 17:00 New York time (22:00 UTC in winter, 21:00 in summer),
  closed on 25 December and 1 January;
* ``equity``: US equity sessions, Monday to Friday 09:30-16:00 New York time, closed on NYSE
  holidays (see :mod:`signalcast.data.calendars`).
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

from signalcast.config.base import Section, require_unique
from signalcast.core.errors import ConfigError
from signalcast.core.timeframes import check_schedulable

CALENDARS = ("24/7", "fx", "equity")


class AssetConfig(Section):
    symbol: str = Field(min_length=1)
    timeframe: str = "1h"
    # The exchange's name for the market when it differs from ``symbol`` (data.source exchange),
    # e.g. symbol "BTC/USD" stored and shown, exchange_symbol "BTC/USDT" fetched.
    exchange_symbol: str | None = Field(default=None, min_length=1)
    calendar: Literal["24/7", "fx", "equity"] = "24/7"  # when the market trades (gap checks)

    @field_validator("symbol")
    @classmethod
    def _upper_case(cls, value: str) -> str:
        value = value.strip().upper()
        if not value:
            raise ValueError("must not be blank")
        return value

    @field_validator("timeframe")
    @classmethod
    def _known_timeframe(cls, value: str) -> str:
        try:
            check_schedulable(value)
        except ConfigError as exc:  # pydantic attaches the field path to ValueError only
            raise ValueError(str(exc).removeprefix("timeframe ")) from None
        return value


def check_assets(assets: list[AssetConfig]) -> list[AssetConfig]:
    """The list as a whole: each symbol listed once (symbols are upper case, so ``btc/usdt`` and
    ``BTC/USDT`` are the same asset)."""
    require_unique([a.symbol for a in assets], "symbol once (symbols are compared in upper case)")
    return assets
