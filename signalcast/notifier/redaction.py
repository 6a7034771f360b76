"""The bot token never reaches our logs: python-telegram-bot writes it into every request URL,
so ``httpx`` request logging is raised to WARNING and a redacting filter on the PTB and httpx
loggers replaces the token in anything they do log. Also: the Bot API base URL PTB needs."""

from __future__ import annotations

import logging
import threading
import urllib.parse

DEFAULT_BASE_URL = "https://api.telegram.org/bot"

# Loggers that may print a request URL (and so the token): httpx logs every request at INFO,
# telegram.Bot logs its API URL at DEBUG when constructed.
_URL_LOGGERS = (
    "httpx",
    "telegram.Bot",
    "telegram.ext.ExtBot",
    "telegram.ext.Application",
    "telegram.ext.Updater",
    "telegram.request.BaseRequest",
    "telegram.request.HTTPXRequest",
)
if logging.getLogger("httpx").level == logging.NOTSET:  # an explicit setting is respected
    logging.getLogger("httpx").setLevel(logging.WARNING)


class _TokenRedactor(logging.Filter):
    """Rewrites log records so that no registered token survives in their message."""

    def __init__(self) -> None:
        super().__init__("signalcast.token-redactor")
        self._secrets: set[str] = set()
        self._lock = threading.Lock()

    def add(self, token: str) -> None:
        with self._lock:
            self._secrets.update(_secret_forms(token))

    def redact(self, text: str) -> str:
        with self._lock:
            secrets = sorted(self._secrets, key=len, reverse=True)
        for secret in secrets:
            text = text.replace(secret, "<redacted-token>")
        return text

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        redacted = self.redact(message)
        if redacted != message:
            record.msg, record.args = redacted, None
        return True


_REDACTOR = _TokenRedactor()


def _secret_forms(token: str) -> set[str]:
    """The token as written in URLs and messages: whole, URL-quoted, and its secret half."""
    forms = {token, urllib.parse.quote(token, safe="")}
    secret_half = token.partition(":")[2]
    if len(secret_half) >= 8:
        forms.add(secret_half)
    return {form for form in forms if form}


def redact_token_in_logs(token: str) -> None:
    """Hide ``token`` in every record of the PTB and httpx loggers (idempotent).

    A filter attached to a logger only sees records logged to that very logger, so it is
    attached to each logger that may print a request URL. The bot process calls this too.
    """
    _REDACTOR.add(token)
    for name in _URL_LOGGERS:
        logger = logging.getLogger(name)
        if _REDACTOR not in logger.filters:
            logger.addFilter(_REDACTOR)


def bot_api_base_url(url: str | None) -> str:
    """The ``base_url`` python-telegram-bot needs, from a configured Bot API address.

    PTB builds request URLs as ``base_url + token + "/" + method`` unless ``base_url`` holds a
    ``{token}`` placeholder, so a bare server address needs ``/bot`` appended.

    >>> bot_api_base_url("http://127.0.0.1:8081/")
    'http://127.0.0.1:8081/bot'
    >>> bot_api_base_url(None)
    'https://api.telegram.org/bot'
    """
    if not url:
        return DEFAULT_BASE_URL
    if "{token}" in url:
        return url
    url = url.rstrip("/")
    return url if url.endswith("/bot") else f"{url}/bot"


def redact(text: str) -> str:
    """``text`` with every registered token replaced."""
    return _REDACTOR.redact(text)
