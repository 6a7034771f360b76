"""Deliver one alert text to one chat: Telegram (python-telegram-bot) or the console.

Both transports share one synchronous contract, ``send(chat_id, text, *, photo=None)``, because
the caller is the outbox drainer running in a Celery task. Its outcome is one of three:

- ``SendResult(message_id)``: delivered;
- ``RetryLater(seconds, reason)``: flood control (429), a timeout, a network error or a 5xx:
  keep the outbox row and try again after ``seconds``;
- ``PermanentFailure(reason)``: 400/401/403 (bad chat, blocked bot, bad token, unparsable
  text): retrying cannot help, so the drainer marks the row failed instead of looping.

python-telegram-bot is asyncio-only and a ``Bot`` breaks when used from two event loops, so a
``TelegramTransport`` owns one private event loop and one ``Bot`` created inside it, and reuses
both for every send until ``close()``. Create it in the process that uses it (after a fork).

The bot token is a password that PTB writes into every request URL. It never reaches our logs
or exception messages: ``httpx`` request logging is raised to WARNING, and a redacting filter on
the PTB and httpx loggers replaces the token in anything they do log.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import warnings
from collections.abc import Callable, Coroutine, Iterator, Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Protocol, TypeVar

import httpx
from telegram import Bot
from telegram.constants import ParseMode
from telegram.error import (
    BadRequest,
    ChatMigrated,
    EndPointNotFound,
    Forbidden,
    InvalidToken,
    RetryAfter,
    TelegramError,
    TimedOut,
)
from telegram.request import HTTPXRequest
from telegram.warnings import PTBDeprecationWarning

from signalcast.core.errors import ConfigError, SignalcastError, TemporaryError
from signalcast.notifier.redaction import (  # noqa: F401  (bot_api_base_url: re-exported)
    DEFAULT_BASE_URL,
    bot_api_base_url,
    redact,
    redact_token_in_logs,
)

__all__ = [
    "DEFAULT_BASE_URL",
    "ConsoleTransport",
    "PermanentFailure",
    "RetryLater",
    "SendResult",
    "TelegramTransport",
    "Transport",
    "bot_api_base_url",
    "redact_token_in_logs",
]

log = logging.getLogger(__name__)

# Backoff after a timeout, a network error or a 5xx, when Telegram gave no retry_after.
DEFAULT_NETWORK_BACKOFF = 15.0

T = TypeVar("T")


@dataclass(frozen=True)
class SendResult:
    """A delivered message; ``message_id`` is Telegram's id (or the console's counter)."""

    message_id: int


class RetryLater(TemporaryError):
    """Not delivered now; try again after ``seconds``.

    ``maybe_delivered`` is True when the request may have reached Telegram and only its answer
    was lost (a read timeout, a connection dropped after the request was written): Telegram
    may have delivered the message, and the Bot API has no idempotency key, so a retry can
    duplicate it. ``flood`` is True for a 429: Telegram asked the bot to send nothing for
    ``seconds``.
    """

    def __init__(self, seconds: float, reason: str, *, maybe_delivered: bool = False,
                 flood: bool = False):
        super().__init__(f"{reason} (retry in {seconds:g}s)")
        self.seconds = float(seconds)
        self.reason = reason
        self.maybe_delivered = maybe_delivered
        self.flood = flood


class PermanentFailure(SignalcastError):
    """Telegram refused the message for good (bad chat, blocked bot, bad token, bad text)."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


class Transport(Protocol):
    """What the outbox drainer needs from a transport."""

    html: bool  # True: ``send`` expects Telegram HTML; False: plain text
    # False: the drainer does not pace this transport's sends (the rate limits it keeps are a
    # messaging service's; a transport without the attribute is paced)
    rate_limited: bool

    def send(self, chat_id: str, text: str, *, photo: bytes | None = None,
             silent: bool = False) -> SendResult: ...

    def close(self) -> None: ...


# -- transports --------------------------------------------------------------------------------


class TelegramTransport:
    """Sends HTML messages and photos through the Telegram Bot API, synchronously::

        with TelegramTransport(token, base_url) as transport:
            transport.send("12345", "<b>BTC/USDT</b>: 78% ...").message_id   # -> 17

    ``timeout`` bounds each phase (connect, upload, answer) of one call; ``network_backoff`` is
    the wait suggested by ``RetryLater`` when Telegram did not say how long to wait.
    """

    html = True
    rate_limited = True  # paced by the drainer (alerts.chat_interval_seconds, ...)

    def __init__(
        self,
        token: str,
        base_url: str | None = None,
        *,
        timeout: float = 10.0,
        network_backoff: float = DEFAULT_NETWORK_BACKOFF,
        topics: Mapping[str, int] | None = None,
    ):
        if not token:
            raise ConfigError("Telegram token is empty: set SIGNALCAST_TELEGRAM_TOKEN")
        redact_token_in_logs(token)  # before the Bot exists: it logs its URL when built
        self._token = token
        self._base_url = bot_api_base_url(base_url)
        self._timeout = timeout
        self._network_backoff = network_backoff
        self._topics = dict(topics or {})  # forum chat id -> message_thread_id (bot.topics)
        self._loop: asyncio.AbstractEventLoop | None = None  # created by the first send
        self._closed = False
        self._lock = threading.Lock()  # one loop, one call at a time
        self._bot: Bot | None = None
        self._request: HTTPXRequest | None = None

    def __repr__(self) -> str:
        return f"TelegramTransport(base_url={redact(self._base_url)!r})"

    def send(self, chat_id: str, text: str, *, photo: bytes | None = None,
             silent: bool = False) -> SendResult:
        """Send ``text`` (Telegram HTML) to ``chat_id``; with ``photo``, as its caption;
        ``silent`` delivers without a notification sound.

        Raises ``RetryLater`` or ``PermanentFailure``; see the module docstring.
        """
        thread = self._topics.get(str(chat_id))  # a forum chat's topic (bot.topics), or None
        if photo is not None:
            message = self._run(
                chat_id,
                lambda bot: bot.send_photo(
                    chat_id=chat_id, photo=photo, caption=text, parse_mode=ParseMode.HTML,
                    disable_notification=silent, message_thread_id=thread,
                ),
            )
        else:
            message = self._run(
                chat_id,
                lambda bot: bot.send_message(chat_id=chat_id, text=text, parse_mode=ParseMode.HTML,
                                             disable_notification=silent, message_thread_id=thread),
            )
        return SendResult(message_id=message.message_id)

    def close(self) -> None:
        """Close the HTTP connections and the event loop (idempotent)."""
        with self._lock:
            self._closed = True
            loop, self._loop = self._loop, None
            if loop is None:
                return
            try:
                if self._request is not None:
                    loop.run_until_complete(self._request.shutdown())
                loop.run_until_complete(loop.shutdown_asyncgens())
            finally:
                loop.close()
                self._bot = self._request = None

    def __enter__(self) -> TelegramTransport:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- internals -----------------------------------------------------------------------------

    def _run(self, chat_id: str, call: Callable[[Bot], Coroutine[Any, Any, T]]) -> T:
        """Run one Bot call on the private loop; translate PTB errors into our vocabulary."""
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            pass
        else:
            raise RuntimeError(
                "TelegramTransport.send is synchronous; from async code use telegram.Bot directly"
            )
        with self._lock, _quiet_retry_after_deprecation():
            if self._closed:
                raise RuntimeError("TelegramTransport is closed")
            if self._loop is None:
                self._loop = asyncio.new_event_loop()
            try:
                return self._loop.run_until_complete(self._call(call))
            except TelegramError as exc:
                outcome = self._translate(exc)
                level = logging.INFO if isinstance(outcome, RetryLater) else logging.WARNING
                log.log(level, "Telegram send to chat %s failed: %s", chat_id, outcome)
                raise outcome from None  # the PTB chain may hold URLs; our message is enough

    async def _call(self, call: Callable[[Bot], Coroutine[Any, Any, T]]) -> T:
        if self._bot is None:
            # Built inside the loop that will run it. We skip Bot.initialize(): it only adds a
            # getMe round trip (and its InvalidToken message embeds the token); the HTTP client
            # is ready once built, and close() shuts it down itself.
            self._request = HTTPXRequest(
                connection_pool_size=4,
                connect_timeout=self._timeout,
                read_timeout=self._timeout,
                write_timeout=self._timeout,
                pool_timeout=self._timeout,
                media_write_timeout=self._timeout,
            )
            self._bot = Bot(
                self._token,
                base_url=self._base_url,
                request=self._request,
                get_updates_request=self._request,
            )
        return await call(self._bot)

    def _translate(self, exc: TelegramError) -> RetryLater | PermanentFailure:
        """Map a PTB error to RetryLater or PermanentFailure (BadRequest is a NetworkError
        subclass, so the permanent ones must be checked before the network ones)."""
        reason = redact(f"{type(exc).__name__}: {exc}")
        if isinstance(exc, RetryAfter):
            return RetryLater(_retry_after_seconds(exc), reason, flood=True)
        if isinstance(exc, ChatMigrated):
            return PermanentFailure(f"{reason} (update the configured chat id)")
        if isinstance(exc, BadRequest | Forbidden | InvalidToken | EndPointNotFound):
            return PermanentFailure(reason)
        # TimedOut, NetworkError (connection refused or dropped, 5xx, bad gateway), Conflict,
        # unparsable answers: all are Telegram-side or transient.
        return RetryLater(self._network_backoff, reason, maybe_delivered=_maybe_delivered(exc))


# httpx failures that happen before the request leaves (nothing can have been delivered)
_NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout, httpx.UnsupportedProtocol)


def _maybe_delivered(exc: TelegramError) -> bool:
    """Whether the request may have reached Telegram although no answer came back.

    PTB raises ``TimedOut`` / ``NetworkError`` *from* the httpx error, so its cause says how
    far the request got: a connect or pool failure never left; an HTTP answer (a 5xx, which
    has no httpx cause) says it was not processed; a read timeout or a connection dropped
    after writing may have been delivered.
    """
    cause = exc.__cause__
    if isinstance(exc, TimedOut):
        return not (isinstance(cause, _NOT_SENT) or str(exc).startswith("Pool timeout"))
    return isinstance(cause, httpx.TransportError) and not isinstance(cause, _NOT_SENT)


@contextlib.contextmanager
def _quiet_retry_after_deprecation() -> Iterator[None]:
    """Silence PTB's warning about the int form of ``retry_after``.

    PTB >= 22.2 warns whenever ``RetryAfter.retry_after`` is read as an int (unless
    ``PTB_TIMEDELTA=true``), and reads it itself when building the exception. We accept both
    forms, so the warning is noise. (``catch_warnings`` is process-global: fine for one sending
    thread per process, as in a Celery prefork worker.)
    """
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", r".*`retry_after`", PTBDeprecationWarning)
        yield


def _retry_after_seconds(exc: RetryAfter) -> float:
    """``RetryAfter.retry_after`` is an int, or a timedelta with ``PTB_TIMEDELTA=true``."""
    with _quiet_retry_after_deprecation():
        value = exc.retry_after
    if isinstance(value, timedelta):
        return value.total_seconds()
    return float(value)


class ConsoleTransport:
    """Writes plain-text alerts through ``write`` (``print`` by default): the demo's transport.
    Not rate limited: a terminal takes a message as fast as it comes."""

    html = False
    rate_limited = False

    def __init__(self, write: Callable[[str], None] = print):
        self._write = write
        self._sent = 0

    def send(self, chat_id: str, text: str, *, photo: bytes | None = None,
             silent: bool = False) -> SendResult:
        self._sent += 1
        suffix = f"\n[chart: {len(photo)} bytes]" if photo is not None else ""
        self._write(f"[alert -> {chat_id}] {text}{suffix}")
        return SendResult(message_id=self._sent)

    def close(self) -> None:
        """Nothing to release; here for the common contract."""

    def __enter__(self) -> ConsoleTransport:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
