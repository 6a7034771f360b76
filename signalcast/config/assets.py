"""The ``assets`` section: which markets are followed, and on which timeframe."""

from __future__ import annotations

from pydantic import Field, field_validator

from signalcast.config.base import Section, require_unique
from signalcast.core.errors import ConfigError
from signalcast.core.timeframes import timeframe_to_timedelta


class AssetConfig(Section):
    symbol: str = Field(min_length=1)
    timeframe: str = "1h"
    # The exchange's name for the market when it differs from ``symbol`` (data.source exchange),
    # e.g. symbol "BTC/USD" stored and shown, exchange_symbol "BTC/USDT" fetched.
    exchange_symbol: str | None = Field(default=None, min_length=1)

    @field_validator("timeframe")
    @classmethod
    def _known_timeframe(cls, value: str) -> str:
        try:
            timeframe_to_timedelta(value)
        except ConfigError as exc:  # pydantic attaches the field path to ValueError only
            raise ValueError(str(exc).removeprefix("timeframe ")) from None
        return value


def check_assets(assets: list[AssetConfig]) -> list[AssetConfig]:
    """The list as a whole: each symbol listed once."""
    require_unique([a.symbol for a in assets], "symbol once")
    return assets
