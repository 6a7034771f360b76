"""Candles from a real exchange through ccxt (any ccxt exchange id; Binance spot by default).

ccxt is an optional dependency (``pip install 'signalcast[live]'``); it is imported when a source
is made, and settings validation already refused ``data.source: exchange`` without it.

What this module promises:

- **Pages**: :meth:`ExchangeSource.iter_range` walks ``fetch_ohlcv(symbol, timeframe, since,
  limit)`` from the first wanted open time to the last, one page per call, advancing past the
  newest candle the exchange returned (a page may be shorter than asked: exchanges cap it).
  ccxt's own rate limiter (``enableRateLimit``, on unless ``exchange_options`` turns it off)
  spaces the calls as the exchange asks.
- **Retries**: timeouts, 429/418 rate-limit answers, 5xx and connection failures (ccxt's
  ``NetworkError``/``BadResponse``) are retried ``max_retries`` times with exponential backoff,
  honouring ``Retry-After``; when that is longer than the backoff maximum (an IP ban) or the
  retries run out, :class:`~signalcast.core.errors.TemporaryError` says what failed. Permanent
  answers are not retried: an unknown symbol is a :class:`~signalcast.core.errors.DataError` listing
  the close symbols the exchange does list, authentication or unsupported features are a
  :class:`~signalcast.core.errors.ConfigError`.
- **Clean candles only**: every page goes through :func:`clean_ohlcv`: rows with a missing or
  non-positive price, high/low that do not contain open and close, negative volume, an open time
  off the timeframe's grid or a conflicting duplicate are dropped and logged, identical
  duplicates collapse to one, rows are sorted, and the result passes
  :func:`~signalcast.data.validation.validate_candles`. Bad candles are never returned.

The forming candle, gaps and storage are the caller's business
(:mod:`signalcast.pipeline.ingest`).
"""

from __future__ import annotations

import difflib
import json
import logging
import math
import os
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pandas as pd

from signalcast.core.errors import ConfigError, DataError, TemporaryError
from signalcast.core.timeframes import timeframe_to_timedelta, utc
from signalcast.data.validation import COLUMNS, validate_candles

log = logging.getLogger(__name__)

INSTALL_HINT = "pip install 'signalcast[live]'"
PAGE_LIMIT = 1000  # candles asked per call (Binance spot's maximum; others answer fewer)
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def import_ccxt() -> Any:
    """The ccxt module, or a :class:`ConfigError` with the install command."""
    try:
        import ccxt
    except ImportError:
        raise ConfigError(
            f"data.source 'exchange' needs the optional ccxt package: install it with "
            f"{INSTALL_HINT} (or pip install ccxt)"
        ) from None
    return ccxt


def to_ms(stamp: datetime | pd.Timestamp) -> int:
    return int(pd.Timestamp(utc(stamp)).value // 1_000_000)


def align_up(stamp: datetime, timeframe: str) -> datetime:
    """The first candle open time at or after ``stamp`` (candles are aligned to the epoch)."""
    step = timeframe_to_timedelta(timeframe)
    elapsed = utc(stamp) - EPOCH
    return EPOCH + -(-elapsed // step) * step


def slots(first: datetime, last: datetime, timeframe: str) -> int:
    """How many candle open times lie in [first, last] (both on the grid)."""
    if last < first:
        return 0
    return (last - first) // timeframe_to_timedelta(timeframe) + 1


@dataclass(frozen=True)
class RetryPolicy:
    """``max_retries`` retries after the first call; waits ``backoff * 2**n`` up to
    ``backoff_max`` seconds, or the exchange's Retry-After if longer (and not above the max)."""

    max_retries: int = 4
    backoff: float = 1.0
    backoff_max: float = 30.0

    def wait(self, retry: int) -> float:
        return min(self.backoff * 2**retry, self.backoff_max)


@dataclass
class Page:
    """One answer of ``fetch_ohlcv``: its clean candles and what was dropped."""

    candles: pd.DataFrame  # clean candle frame, open times within the asked range
    dropped: int  # rows refused by clean_ohlcv
    newest_seen: pd.Timestamp | None  # newest open time in the answer (valid or not)


def _frame(rows: list[list[Any]]) -> tuple[pd.DataFrame, np.ndarray]:
    """Raw ccxt rows -> (float frame indexed by open time in ms, mask of rows with a time)."""
    times = np.full(len(rows), -1, dtype=np.int64)
    values = np.full((len(rows), 5), np.nan)
    for i, row in enumerate(rows):
        if not isinstance(row, list | tuple) or len(row) < 6:
            continue
        stamp = row[0]
        if isinstance(stamp, int | float) and not isinstance(stamp, bool) and math.isfinite(stamp):
            times[i] = int(stamp)
        for j in range(5):
            try:
                values[i, j] = float(row[j + 1]) if row[j + 1] is not None else np.nan
            except (TypeError, ValueError):
                values[i, j] = np.nan
    frame = pd.DataFrame(values, columns=COLUMNS)
    frame.insert(0, "ms", times)
    return frame, times >= 0


def clean_ohlcv(rows: list[list[Any]], timeframe: str, source: str) -> tuple[pd.DataFrame, int]:
    """ccxt OHLCV rows -> (valid candle frame, number of rows dropped). Never raises for bad
    rows: they are dropped and logged with the reason; what is returned passes validation."""
    step_ms = int(timeframe_to_timedelta(timeframe).total_seconds() * 1000)
    frame, timed = _frame(rows)
    o, h, lo, c, v = (frame[col].to_numpy() for col in COLUMNS)
    prices = frame[["open", "high", "low", "close"]].to_numpy()
    with np.errstate(invalid="ignore"):
        reasons = {
            "no open time": ~timed,
            "open time off the candle grid": timed & (frame["ms"].to_numpy() % step_ms != 0),
            "missing or infinite price": ~np.isfinite(prices).all(axis=1),
            "price <= 0": (prices <= 0).any(axis=1),
            "high/low do not contain open and close": (h < lo) | (h < np.maximum(o, c))
            | (lo > np.minimum(o, c)),
            "missing or negative volume": ~np.isfinite(v) | (v < 0),
        }
    bad = np.zeros(len(frame), dtype=bool)
    for reason, mask in reasons.items():
        new = mask & ~bad
        if new.any():
            shown = ", ".join(_fmt_ms(t) for t in frame["ms"].to_numpy()[new][:5])
            log.warning("%s: dropped %d candle(s) from the exchange: %s (%s)",
                        source, int(new.sum()), reason, shown)
        bad |= mask
    good = frame[~bad]
    # Duplicated open times: identical copies collapse to one; conflicting ones are all dropped
    # (nothing says which is right, and the slot is then re-fetched or reported as a gap).
    identical = good.duplicated(keep="first").to_numpy()
    good = good[~identical]
    conflicting = good["ms"].duplicated(keep=False).to_numpy()
    if conflicting.any():
        shown = ", ".join(_fmt_ms(t) for t in sorted(set(good["ms"].to_numpy()[conflicting]))[:5])
        log.warning("%s: dropped %d candle(s) from the exchange: the same open time with "
                    "different values (%s)", source, int(conflicting.sum()), shown)
        good = good[~conflicting]
    dropped = len(frame) - len(good) - int(identical.sum())
    good = good.sort_values("ms", kind="stable")
    index = pd.DatetimeIndex(pd.to_datetime(good["ms"].to_numpy(), unit="ms", utc=True),
                             name="time")
    candles = pd.DataFrame(good[COLUMNS].to_numpy(float), index=index, columns=COLUMNS)
    # The contract check (raises on anything left). No timeframe: spacing is on the grid by
    # construction, and missing candles are the caller's to re-fetch or record, not to log here.
    candles, _ = validate_candles(candles, source=source)
    return candles, dropped


def _fmt_ms(value: int) -> str:
    if value < 0:
        return "no time"
    return pd.Timestamp(int(value), unit="ms", tz="UTC").strftime("%Y-%m-%d %H:%M")


def _retry_after(headers: Any) -> float | None:
    """Seconds from a Retry-After header (a number of seconds; HTTP dates are ignored)."""
    if not headers:
        return None
    for name, value in dict(headers).items():
        if str(name).lower() == "retry-after":
            try:
                return max(0.0, float(value))
            except (TypeError, ValueError):
                return None
    return None


class ExchangeSource:
    """One ccxt client for one exchange, with retries, symbol checks and paging.

    ``options`` go to the ccxt constructor as they are (``urls``, ``rateLimit``,
    ``enableRateLimit``, ``options``...); ``sleep`` is injectable for tests."""

    def __init__(self, exchange_id: str = "binance", options: dict[str, Any] | None = None, *,
                 timeout: float = 10.0, retry: RetryPolicy | None = None,
                 page_limit: int = PAGE_LIMIT, sleep: Callable[[float], None] = time.sleep):
        self.ccxt = import_ccxt()
        cls = getattr(self.ccxt, exchange_id, None)
        if exchange_id not in self.ccxt.exchanges or cls is None:
            close = difflib.get_close_matches(exchange_id, self.ccxt.exchanges, n=3)
            raise ConfigError(f"data.exchange {exchange_id!r} is not an exchange ccxt knows"
                              + (f"; did you mean {', '.join(close)}?" if close else ""))
        config = {"enableRateLimit": True, "timeout": int(timeout * 1000), **(options or {})}
        self.id = exchange_id
        self.client = cls(config)
        self.retry = retry or RetryPolicy()
        self.page_limit = page_limit
        self.sleep = sleep
        self.calls = 0  # exchange calls made (attempts included), for reports and tests
        self._lock = threading.Lock()

    # ------------------------------------------------------------------------ calls
    def _call(self, what: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        ccxt = self.ccxt
        last: Exception | None = None
        attempts = self.retry.max_retries + 1
        for attempt in range(attempts):
            try:
                with self._lock:
                    self.calls += 1
                    return fn(*args, **kwargs)
            except ccxt.BadSymbol as exc:
                raise DataError(f"{self.id}: {what}: the exchange does not know this symbol "
                                f"({_short(exc)}); set assets[].symbol (or exchange_symbol) to "
                                "a symbol it lists") from None
            except (ccxt.AuthenticationError, ccxt.NotSupported) as exc:
                raise ConfigError(f"{self.id}: {what} was refused ({type(exc).__name__}: "
                                  f"{_short(exc)}); check data.exchange and "
                                  "data.exchange_options") from None
            except ccxt.OperationFailed as exc:  # NetworkError (timeouts, 429/418, 5xx), ...
                last = exc
                asked = None
                if isinstance(exc, ccxt.DDoSProtection | ccxt.RateLimitExceeded):
                    asked = _retry_after(getattr(self.client, "last_response_headers", None))
                if asked is not None and asked > self.retry.backoff_max:
                    raise TemporaryError(
                        f"{self.id}: {what}: the exchange asks to wait {asked:g} s "
                        f"({type(exc).__name__}: {_short(exc)}), longer than "
                        f"data.retry_backoff_max_seconds ({self.retry.backoff_max:g}); giving "
                        "up for now, a later run retries") from None
                if attempt + 1 == attempts:
                    break
                wait = max(self.retry.wait(attempt), asked or 0.0)
                log.warning("%s: %s failed (%s: %s); retry %d/%d in %.2f s", self.id, what,
                            type(exc).__name__, _short(exc), attempt + 1,
                            self.retry.max_retries, wait)
                self.sleep(wait)
            except ccxt.ExchangeError as exc:
                raise DataError(f"{self.id}: {what} was refused by the exchange "
                                f"({type(exc).__name__}: {_short(exc)})") from None
        raise TemporaryError(
            f"{self.id}: {what} failed {attempts} time(s); last error "
            f"{type(last).__name__}: {_short(last)}. The exchange is unreachable, slow or "
            "rate-limiting us; a later run retries"
        )

    def load_markets(self, reload: bool = False) -> dict[str, Any]:
        return self._call("loading markets", self.client.load_markets, reload)

    # ------------------------------------------------------------------------ checks
    def resolve_symbol(self, symbol: str, setting: str = "assets[].symbol") -> str:
        """The exchange's unified symbol for ``symbol`` (a unified symbol or a market id);
        unknown -> DataError naming the close symbols it does list and the setting to fix."""
        for reload in (False, True):  # a long-running worker's market list may be stale
            markets = self.load_markets(reload=reload)
            if symbol in markets:
                return symbol
            by_id = getattr(self.client, "markets_by_id", None) or {}
            if symbol in by_id:
                found = by_id[symbol]
                return (found[0] if isinstance(found, list) else found)["symbol"]
        listed = sorted(markets)
        raise DataError(
            f"{self.id} does not list {symbol!r}; {_close_symbols(symbol, listed)}. "
            f"Set {setting} (or exchange_symbol) to a symbol it lists"
        )

    def check_timeframe(self, timeframe: str, setting: str = "assets[].timeframe") -> None:
        offered = getattr(self.client, "timeframes", None) or {}
        if offered and timeframe not in offered:
            raise ConfigError(f"{self.id} has no {timeframe!r} candles; set {setting} to one of "
                              f"{', '.join(offered)}")
        if not self.client.has.get("fetchOHLCV"):
            raise ConfigError(f"{self.id} does not offer candles (fetchOHLCV) through ccxt; "
                              "choose another data.exchange")

    # ------------------------------------------------------------------------ candles
    def fetch_page(self, symbol: str, timeframe: str, since: datetime,
                   limit: int) -> list[list[Any]]:
        what = f"fetch_ohlcv({symbol}, {timeframe}, since {since:%Y-%m-%d %H:%M}, limit {limit})"
        rows = self._call(what, self.client.fetch_ohlcv, symbol, timeframe, to_ms(since), limit)
        if not isinstance(rows, list):
            raise TemporaryError(f"{self.id}: {what} answered {type(rows).__name__}, not a list")
        return rows

    def iter_range(self, symbol: str, timeframe: str, first: datetime,
                   last: datetime) -> Iterator[Page]:
        """Pages of clean candles with open times in [first, last], oldest first.

        Stops when the range is covered or the exchange has nothing more in it; candles it
        skipped (gaps) are simply absent: the caller compares with what it wanted."""
        step = timeframe_to_timedelta(timeframe)
        pos, last = utc(first), utc(last)
        source = f"{self.id} {symbol} {timeframe}"
        while pos <= last:
            limit = min(self.page_limit, slots(pos, last, timeframe))
            rows = self.fetch_page(symbol, timeframe, pos, limit)
            candles, dropped = clean_ohlcv(rows, timeframe, source)
            seen = [int(r[0]) for r in rows if isinstance(r, list | tuple) and r
                    and isinstance(r[0], int | float) and not isinstance(r[0], bool)
                    and math.isfinite(r[0])]
            lo_ms, hi_ms = to_ms(pos), to_ms(last)
            in_range = [t for t in seen if lo_ms <= t <= hi_ms]
            candles = candles[(candles.index >= pd.Timestamp(pos))
                              & (candles.index <= pd.Timestamp(last))]
            newest = pd.Timestamp(max(in_range), unit="ms", tz="UTC") if in_range else None
            yield Page(candles, dropped, newest)
            if newest is None:
                return
            pos = newest.to_pydatetime() + step


def _short(exc: BaseException | None, limit: int = 300) -> str:
    text = " ".join(str(exc).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _close_symbols(symbol: str, listed: list[str]) -> str:
    def key(s: str) -> str:
        return s.upper().replace("/", "").replace("-", "").replace("_", "").split(":")[0]

    by_key: dict[str, list[str]] = {}
    for s in listed:
        by_key.setdefault(key(s), []).append(s)
    close = [s for k in difflib.get_close_matches(key(symbol), list(by_key), n=5, cutoff=0.6)
             for s in by_key[k]]
    base = symbol.upper().replace("-", "/").replace("_", "/").split("/")[0]
    same_base = [s for s in listed if s.upper().startswith(base + "/")]
    picks = list(dict.fromkeys(close + same_base))[:8]
    if not picks:
        return f"it lists {len(listed)} markets, e.g. {', '.join(listed[:5]) or 'none'}"
    return f"close ones it lists: {', '.join(picks)}"


# ---------------------------------------------------------------------------- per process
_sources: dict[tuple, ExchangeSource] = {}
_sources_lock = threading.Lock()


def cached_source(exchange_id: str, options: dict[str, Any] | None = None, *,
                  timeout: float = 10.0, retry: RetryPolicy | None = None) -> ExchangeSource:
    """One source per (process, exchange, options, timeout, retry policy): its market list is
    loaded once, so a steady tick costs one candle call. A forked child makes its own."""
    key = (os.getpid(), exchange_id, json.dumps(options or {}, sort_keys=True, default=str),
           timeout, retry)
    with _sources_lock:
        source = _sources.get(key)
        if source is None:
            source = _sources[key] = ExchangeSource(exchange_id, options, timeout=timeout,
                                                    retry=retry)
        return source


def clear_sources() -> None:
    """Forget cached clients (tests; after a fork)."""
    with _sources_lock:
        _sources.clear()
