"""The ``data`` section: where closed candles come from (synthetic, stored or an exchange)."""

from __future__ import annotations

import difflib
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import Field, ValidationInfo, field_validator

from signalcast.config.base import Section

_SECRET_OPTION_WORDS = ("apikey", "secret", "password", "privatekey", "token", "uid")
LIVE_INSTALL = "pip install 'signalcast[live]'"


class DataConfig(Section):
    """Where closed candles come from on each tick.

    ``synthetic``: the seeded synthetic market (demo, tests); ``stored``: nothing is fetched, the
    ticks use candles already in the database (loaded with ``signalcast ingest --file``);
    ``exchange``: a real exchange through ccxt (the optional ``live`` extra): ``exchange`` is the
    ccxt id, ``exchange_options`` go to the ccxt constructor as they are (e.g. ``urls``,
    ``rateLimit``, ``options``). A candle counts as closed once its end time has passed by
    ``close_grace_seconds`` (keep it below ``schedule.predict_delay_seconds``). Failed calls are
    retried ``max_retries`` times, waiting ``retry_backoff_seconds`` doubled each time up to
    ``retry_backoff_max_seconds`` (or the exchange's Retry-After, when it asks for longer and
    that is within the maximum). With nothing stored for an asset, the first ingest fetches
    ``backfill_days`` of history.
    """

    source: Literal["synthetic", "stored", "exchange"] = "synthetic"
    seed: int = 7
    start: datetime = datetime(2023, 1, 1, tzinfo=UTC)
    exchange: str = Field(default="binance", min_length=1)
    exchange_options: dict[str, Any] = Field(default_factory=dict)
    close_grace_seconds: float = Field(default=5.0, ge=0, le=3600)
    max_retries: int = Field(default=4, ge=0, le=20)
    retry_backoff_seconds: float = Field(default=1.0, gt=0, le=300)
    retry_backoff_max_seconds: float = Field(default=30.0, gt=0, le=3600)
    request_timeout_seconds: float = Field(default=10.0, gt=0, le=300)
    backfill_days: int = Field(default=365, ge=1, le=3650)

    @field_validator("start")
    @classmethod
    def _aware(cls, value: datetime) -> datetime:
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)

    @field_validator("source")
    @classmethod
    def _live_extra_installed(cls, value: str) -> str:
        if value == "exchange":
            try:
                import ccxt  # noqa: F401
            except ImportError:
                raise ValueError(
                    "is 'exchange', which needs the optional ccxt package: install it with "
                    f"{LIVE_INSTALL} (or pip install ccxt), or set data.source to 'synthetic' "
                    "or 'stored'"
                ) from None
        return value

    @field_validator("exchange")
    @classmethod
    def _known_exchange(cls, value: str, info: ValidationInfo) -> str:
        if info.data.get("source") != "exchange":
            return value
        import ccxt

        if value not in ccxt.exchanges:
            close = difflib.get_close_matches(value.lower(), ccxt.exchanges, n=3)
            hint = f"did you mean {', '.join(map(repr, close))}? " if close else ""
            raise ValueError(
                f"{value!r} is not an exchange ccxt {ccxt.__version__} knows; {hint}"
                "use a ccxt id such as binance, bybit, kraken, okx or coinbase"
            )
        return value

    @field_validator("exchange_options")
    @classmethod
    def _no_credentials(cls, value: dict[str, Any]) -> dict[str, Any]:
        for key in value:
            if any(word in str(key).lower().replace("_", "") for word in _SECRET_OPTION_WORDS):
                raise ValueError(
                    f"must not hold credentials ({key!r}): public candles need no API key, and "
                    f"the configuration is shown by `signalcast config show`; remove "
                    f"data.exchange_options.{key}"
                )
        return value
