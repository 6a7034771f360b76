"""A fake Binance spot market-data server, so tests can drive the real ccxt client.

No exchange is reachable from tests, and mocking ccxt would not catch a wrong request, a
pagination bug or an unmapped error. So this module serves the part of the Binance REST API that
``ccxt.binance`` calls for public candles, on 127.0.0.1 (stdlib only: ``ThreadingHTTPServer`` in
a background thread), and the real ccxt client is pointed at it through its ``urls`` option::

    with FakeExchange() as ex:
        client = ccxt.binance(ex.ccxt_options())   # every API base URL -> http://127.0.0.1:PORT
        client.fetch_ohlcv("BTC/USDT", "1h", since=ms, limit=1000)
        assert ex.count("klines") == 1

What ccxt calls, found by reading ``ccxt/binance.py`` (``load_markets`` -> ``fetch_markets``;
``fetch_currencies`` needs API keys and returns ``{}`` without them; ``fetch_ohlcv``):

- ``GET /api/v3/exchangeInfo`` (spot markets), ``/fapi/v1/exchangeInfo`` and
  ``/dapi/v1/exchangeInfo`` (USD-M and COIN-M futures; served empty: no futures here);
- ``GET /api/v3/klines?symbol=BTCUSDT&interval=1h&startTime=..&endTime=..&limit=..``: candles
  with open time in [startTime, endTime], oldest first, at most ``limit`` (default 500) and at
  most ``page_limit`` per answer; without startTime the newest ones; rows are Binance's
  12-field arrays with prices as strings;
- ``/api/v3/ping`` and ``/api/v3/time`` are stubbed (ccxt calls them only for clock sync).

Candles come from a deterministic :class:`signalcast.data.SyntheticMarket` (per interval) that
starts at ``start`` (the listing time: nothing earlier exists) and runs to ``now`` (settable;
None follows the real clock):
the candle containing ``now`` is still forming and is served with partial values, as Binance does.

Test controls: ``fail`` answers the next N matching calls with a status (429 with Retry-After,
418, 500, 503, ...); ``delay`` holds them (client timeouts); ``down`` answers 503 to everything;
``add_gap`` removes candles (for good, or ``once``: missing from the first answer that would
include them, served afterwards); ``tamper`` rewrites the rows of every klines answer (bad
candles); symbols in ``invalid_symbols`` are listed but klines answers -1121 "Invalid symbol".
Every call is recorded in ``requests`` (path, parameters, status, time); ``count`` counts them;
a path the fake does not know answers 404 and is kept in ``unexpected``.
"""

from __future__ import annotations

import json
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import numpy as np
import pandas as pd

from signalcast.core.timeframes import timeframe_to_timedelta, utc
from signalcast.data import SyntheticMarket

DEFAULT_SYMBOLS = ("BTC/USDT", "ETH/USDT", "SOL/USDT", "BTC/USDC")
DEFAULT_START = datetime(2024, 1, 1, tzinfo=UTC)
DEFAULT_NOW = datetime(2024, 3, 1, 10, 30, tzinfo=UTC)  # mid-candle for 15m/1h/4h/1d
BINANCE_MAX_LIMIT = 1000
_INTERVALS = {"1m", "3m", "5m", "15m", "30m", "1h", "2h", "4h", "6h", "8h", "12h", "1d"}

Row = list[Any]  # one Binance kline: [open ms, "o", "h", "l", "c", "v", close ms, ...]


def ms(stamp: datetime | pd.Timestamp) -> int:
    return int(pd.Timestamp(utc(stamp)).value // 1_000_000)


def market_id(symbol: str) -> str:
    """``BTC/USDT`` -> ``BTCUSDT`` (Binance's id)."""
    return symbol.replace("/", "")


@dataclass
class Request:
    path: str
    params: dict[str, str]
    status: int  # 0 while the answer is still being made (a delayed call)
    at: float  # time.monotonic() when it arrived


@dataclass
class _Failure:
    status: int
    times: int
    path: str
    retry_after: int | None = None
    body: Any = None
    after: int = 0  # matching calls to let through first


@dataclass
class _Delay:
    seconds: float
    times: int
    path: str
    after: int = 0


@dataclass
class _Gap:
    symbol: str
    first: int  # ms, inclusive
    last: int  # ms, inclusive
    once: bool
    served: set[tuple[str, int]] = field(default_factory=set)  # (interval, open ms) seen once


class FakeExchange:
    """A Binance spot klines server on a free port; use as a context manager."""

    def __init__(self, symbols: Iterable[str] = DEFAULT_SYMBOLS, *, seed: int = 5,
                 start: datetime = DEFAULT_START, now: datetime | None = DEFAULT_NOW,
                 page_limit: int = 500, invalid_symbols: Iterable[str] = ()):
        self.symbols = list(symbols)
        self.invalid_symbols = set(invalid_symbols)
        self.seed, self.start, self.page_limit = seed, utc(start), page_limit
        self.now = now
        self.down = False
        self.tamper: Callable[[str, str, list[Row]], list[Row]] | None = None
        self.requests: list[Request] = []
        self.unexpected: list[str] = []
        self._failures: list[_Failure] = []
        self._delays: list[_Delay] = []
        self._gaps: list[_Gap] = []
        self._markets: dict[str, SyntheticMarket] = {}
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------------------ life cycle
    def __enter__(self) -> FakeExchange:
        self.start_server()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start_server(self) -> None:
        handler = type("Handler", (_Handler,), {"fake": self})
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._server.daemon_threads = True
        self._server.block_on_close = False
        self._thread = threading.Thread(target=self._server.serve_forever,
                                        kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    @property
    def base_url(self) -> str:
        assert self._server is not None, "start the server first (use it as a context manager)"
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def ccxt_options(self, **extra: Any) -> dict[str, Any]:
        """ccxt constructor options that send every Binance API call here."""
        import ccxt

        urls = {name: self.base_url + "/" + url.split("/", 3)[3]
                for name, url in ccxt.binance().urls["api"].items()}
        return {"urls": {"api": urls}, **extra}

    @property
    def now(self) -> datetime:
        """The exchange's clock: fixed (settable) or, when set to None, the real time."""
        return datetime.now(UTC) if self._now is None else self._now

    @now.setter
    def now(self, value: datetime | None) -> None:
        self._now = None if value is None else utc(value)

    # ------------------------------------------------------------------------ controls
    def fail(self, status: int, times: int = 1, *, path: str = "klines", after: int = 0,
             retry_after: int | None = None, body: Any = None) -> None:
        """Answer ``times`` calls whose path ends with ``path`` with ``status``, after letting
        ``after`` of them through. Failures queue up: each waits for the ones before it."""
        with self._lock:
            self._failures.append(_Failure(status, times, path, retry_after, body, after))

    def delay(self, seconds: float, times: int = 1, *, path: str = "klines",
              after: int = 0) -> None:
        """Hold ``times`` matching calls (after ``after`` of them) for ``seconds``."""
        with self._lock:
            self._delays.append(_Delay(seconds, times, path, after))

    def add_gap(self, symbol: str, first: datetime, last: datetime, *, once: bool = False) -> None:
        """Candles of ``symbol`` opening in [first, last] are never served (``once``: only
        left out of the first answer that would include them)."""
        with self._lock:
            self._gaps.append(_Gap(symbol, ms(first), ms(last), once))

    def clear_gaps(self) -> None:
        with self._lock:
            self._gaps.clear()

    def count(self, path: str = "klines", *, symbol: str | None = None,
              status: int | None = None) -> int:
        with self._lock:
            return sum(1 for r in self.requests if r.path.endswith(path)
                       and (symbol is None or r.params.get("symbol") == market_id(symbol))
                       and (status is None or r.status == status))

    def klines_requests(self) -> list[Request]:
        with self._lock:
            return [r for r in self.requests if r.path.endswith("klines")]

    # ------------------------------------------------------------------------ the data
    def _market(self, interval: str) -> SyntheticMarket:
        if interval not in self._markets:
            self._markets[interval] = SyntheticMarket(self.symbols, seed=self.seed,
                                                      timeframe=interval, start=self.start)
        return self._markets[interval]

    def series(self, symbol: str, interval: str, until: datetime | None = None) -> pd.DataFrame:
        """Final (closed) values of every candle that opens from ``start`` up to ``until``
        (default ``now``); the true data the tests compare with. Gaps are not applied."""
        step = timeframe_to_timedelta(interval)
        until = utc(until or self.now)
        periods = max(0, int((until - self.start) // step) + 1)
        if periods == 0:
            return self._market(interval).generate(1)[symbol].iloc[:0]
        return self._market(interval).generate(periods)[symbol]

    def closed(self, symbol: str, interval: str, first: datetime | None = None,
               last: datetime | None = None) -> pd.DataFrame:
        """The closed candles at ``now`` with open time in [first, last]."""
        step = pd.Timedelta(timeframe_to_timedelta(interval))
        frame = self.series(symbol, interval)
        frame = frame[frame.index + step <= pd.Timestamp(self.now)]
        if first is not None:
            frame = frame[frame.index >= pd.Timestamp(utc(first))]
        if last is not None:
            frame = frame[frame.index <= pd.Timestamp(utc(last))]
        return frame

    def _klines(self, symbol: str, interval: str, start: int | None, end: int | None,
                limit: int) -> list[Row]:
        step_ms = int(timeframe_to_timedelta(interval).total_seconds() * 1000)
        frame = self.series(symbol, interval)
        now_ms = ms(self.now)
        opens = frame.index.as_unit("ms").asi8
        values = frame.to_numpy(float)
        lo_i = 0 if start is None else int(np.searchsorted(opens, start, side="left"))
        hi_i = len(opens) if end is None else int(np.searchsorted(opens, end, side="right"))
        newest_first = start is None  # no startTime: Binance answers the newest candles
        order = range(hi_i - 1, lo_i - 1, -1) if newest_first else range(lo_i, hi_i)
        rows: list[Row] = []
        for i in order:
            t = int(opens[i])
            if self._gaps and self._hidden(symbol, interval, t):
                continue
            o, h, lo, c, v = values[i]
            if t + step_ms > now_ms:  # forming: only part of the candle has happened
                frac = (now_ms - t) / step_ms
                c = o + (c - o) * frac
                h, lo, v = max(o, c), min(o, c), v * frac
            rows.append([t, f"{o:.8f}", f"{h:.8f}", f"{lo:.8f}", f"{c:.8f}", f"{v:.8f}",
                         t + step_ms - 1, f"{v * c:.8f}", 100, f"{v / 2:.8f}",
                         f"{v * c / 2:.8f}", "0"])
            if len(rows) >= limit:
                break
        rows = rows[::-1] if newest_first else rows
        if self.tamper is not None:
            rows = self.tamper(symbol, interval, rows)
        return rows

    def _hidden(self, symbol: str, interval: str, open_ms: int) -> bool:
        for gap in self._gaps:
            if gap.symbol == symbol and gap.first <= open_ms <= gap.last:
                if not gap.once:
                    return True
                if (interval, open_ms) not in gap.served:
                    gap.served.add((interval, open_ms))
                    return True
        return False

    def _exchange_info(self) -> dict[str, Any]:
        return {
            "timezone": "UTC", "serverTime": ms(self.now),
            "rateLimits": [{"rateLimitType": "REQUEST_WEIGHT", "interval": "MINUTE",
                            "intervalNum": 1, "limit": 6000}],
            "exchangeFilters": [],
            "symbols": [_symbol_info(s) for s in self.symbols + sorted(self.invalid_symbols)],
        }

    # ------------------------------------------------------------------------ dispatch
    def _take(self, items: list, path: str) -> Any:
        """The head of a queue of injected failures (or delays) that matches ``path``."""
        for item in items:
            if path.endswith(item.path) and item.times > 0:
                if item.after > 0:
                    item.after -= 1
                    return None
                item.times -= 1
                return item
        return None

    def handle(self, path: str, params: dict[str, str]) -> tuple[int, Any, dict[str, str]]:
        """(status, JSON body or text, extra headers) for one call."""
        with self._lock:
            delay = self._take(self._delays, path)
        if delay is not None:
            time.sleep(delay.seconds)
        with self._lock:
            if self.down:
                return 503, "Service Unavailable", {}
            failure = self._take(self._failures, path)
            if failure is not None:
                return _failure_answer(failure)
            if path in ("/api/v3/ping", "/fapi/v1/ping", "/dapi/v1/ping"):
                return 200, {}, {}
            if path in ("/api/v3/time", "/fapi/v1/time", "/dapi/v1/time"):
                return 200, {"serverTime": ms(self.now)}, {}
            if path == "/api/v3/exchangeInfo":
                return 200, self._exchange_info(), {}
            if path in ("/fapi/v1/exchangeInfo", "/dapi/v1/exchangeInfo"):
                return 200, {"timezone": "UTC", "serverTime": ms(self.now), "rateLimits": [],
                             "exchangeFilters": [], "symbols": []}, {}
            if path == "/api/v3/klines":
                return self._klines_answer(params)
            self.unexpected.append(path)
            return 404, {"code": -1, "msg": f"unknown path {path}"}, {}

    def _klines_answer(self, params: dict[str, str]) -> tuple[int, Any, dict[str, str]]:
        by_id = {market_id(s): s for s in self.symbols}
        symbol = by_id.get(params.get("symbol", ""))
        if symbol is None:
            return 400, {"code": -1121, "msg": "Invalid symbol."}, {}
        interval = params.get("interval", "")
        if interval not in _INTERVALS:
            return 400, {"code": -1120, "msg": "Invalid interval."}, {}
        try:
            limit = int(params.get("limit", 500))
            start = int(params["startTime"]) if "startTime" in params else None
            end = int(params["endTime"]) if "endTime" in params else None
        except ValueError:
            return 400, {"code": -1100, "msg": "Illegal characters found in a parameter."}, {}
        if not 1 <= limit <= BINANCE_MAX_LIMIT:
            return 400, {"code": -1130, "msg": "Invalid data sent for a parameter."}, {}
        return 200, self._klines(symbol, interval, start, end, min(limit, self.page_limit)), {}


def _symbol_info(symbol: str) -> dict[str, Any]:
    base, quote = symbol.split("/")
    return {
        "symbol": market_id(symbol), "status": "TRADING", "baseAsset": base,
        "baseAssetPrecision": 8, "quoteAsset": quote, "quotePrecision": 8,
        "quoteAssetPrecision": 8, "orderTypes": ["LIMIT", "MARKET"], "icebergAllowed": True,
        "ocoAllowed": True, "isSpotTradingAllowed": True, "isMarginTradingAllowed": False,
        "permissions": ["SPOT"],
        "filters": [
            {"filterType": "PRICE_FILTER", "minPrice": "0.01000000",
             "maxPrice": "1000000.00000000", "tickSize": "0.01000000"},
            {"filterType": "LOT_SIZE", "minQty": "0.00001000", "maxQty": "9000.00000000",
             "stepSize": "0.00001000"},
        ],
    }


def _failure_answer(failure: _Failure) -> tuple[int, Any, dict[str, str]]:
    headers = {} if failure.retry_after is None else {"Retry-After": str(failure.retry_after)}
    if failure.body is not None:
        return failure.status, failure.body, headers
    if failure.status == 429:
        body: Any = {"code": -1003, "msg": "Too much request weight used; current limit is "
                     "6000 request weight per 1 MINUTE. Please use WebSocket Streams."}
    elif failure.status == 418:
        body = {"code": -1003, "msg": "Way too much request weight used; IP banned until "
                f"{int(time.time() * 1000) + 1000 * (failure.retry_after or 60)}."}
    elif failure.status >= 500:
        body = "Service Unavailable" if failure.status == 503 else "Internal Server Error"
    else:
        body = {"code": -1000, "msg": "An unknown error occurred while processing the request."}
    return failure.status, body, headers


class _Handler(BaseHTTPRequestHandler):
    fake: FakeExchange
    protocol_version = "HTTP/1.1"

    def log_message(self, *args: object) -> None:  # keep test output quiet
        pass

    def do_GET(self) -> None:  # noqa: N802 - http.server naming
        parsed = urllib.parse.urlsplit(self.path)
        params = dict(urllib.parse.parse_qsl(parsed.query))
        record = Request(parsed.path, params, 0, time.monotonic())  # status 0: in progress
        with self.fake._lock:
            self.fake.requests.append(record)
        status, body, headers = self.fake.handle(parsed.path, params)
        record.status = status
        data = (json.dumps(body) if not isinstance(body, str) else body).encode()
        try:
            self.send_response(status)
            content_type = "application/json" if not isinstance(body, str) else "text/plain"
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(data)))
            for name, value in headers.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):  # the client timed out and left
            pass
