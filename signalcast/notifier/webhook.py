"""Alerts as JSON POSTs to an HTTP endpoint (``webhook:<name>`` chats), optionally signed.

One request per alert, through the same outbox as Telegram: the drainer's kinds, preferences,
rate limits and backoff apply unchanged, because a failed POST raises the same
:class:`RetryLater` (429 with its Retry-After, 5xx, timeouts, refused connections) or
:class:`PermanentFailure` (any other 4xx: retrying cannot help) as the Telegram transport.

The body::

    {"source": "signalcast", "chat_id": "webhook:ops", "text": "BTC/USDT: 78% chance ...",
     "silent": false}

With a signing key (``secret_env``) two headers let the receiver check the body came from us
and is fresh: ``X-Signalcast-Timestamp`` (Unix seconds) and ``X-Signalcast-Signature:
sha256=<hex HMAC-SHA256 of "<timestamp>.<body>" under the key>``; see :func:`signature`.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from email.utils import parsedate_to_datetime
from typing import Any

from signalcast.notifier.telegram import PermanentFailure, RetryLater, SendResult

log = logging.getLogger(__name__)

SIGNATURE_HEADER = "X-Signalcast-Signature"
TIMESTAMP_HEADER = "X-Signalcast-Timestamp"
USER_AGENT = "signalcast-notifier"
DEFAULT_RETRY_S = 5.0


def signature(key: bytes, timestamp: str, body: bytes) -> str:
    """The signature header's value for ``body`` sent at ``timestamp``.

    >>> signature(b"k", "1700000000", b'{"text": "hi"}')[:15]
    'sha256=f19c8a66'
    """
    mac = hmac.new(key, timestamp.encode() + b"." + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


def _retry_after(headers: Mapping[str, str] | None, body: bytes) -> float:
    """Seconds the server asked us to wait: ``Retry-After`` (seconds or an HTTP date), or a
    JSON body's ``retry_after`` (Discord's form), else a default."""
    value = (headers or {}).get("Retry-After")
    if value:
        try:
            return max(0.0, float(value))
        except ValueError:
            try:
                return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
            except (TypeError, ValueError):
                pass
    try:
        return max(0.0, float(json.loads(body)["retry_after"]))
    except (ValueError, KeyError, TypeError):
        return DEFAULT_RETRY_S


def post_json(url: str, payload: Mapping[str, Any], *, timeout: float, name: str,
              headers: Mapping[str, str] | None = None,
              sign: Callable[[bytes], Mapping[str, str]] | None = None) -> bytes:
    """POST ``payload`` as JSON; the response body on 2xx, else the outbox's exceptions.
    ``name`` says which endpoint in messages (never the URL: it may hold a token)."""
    body = json.dumps(payload, separators=(",", ":")).encode()
    all_headers = {"Content-Type": "application/json", "User-Agent": USER_AGENT,
                   **(headers or {}), **(sign(body) if sign else {})}
    request = urllib.request.Request(url, data=body, headers=all_headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.read()
    except urllib.error.HTTPError as exc:
        answer = exc.read()[:2000]
        reason = f"{name} answered HTTP {exc.code}"
        if exc.code == 429:
            raise RetryLater(_retry_after(exc.headers, answer), reason, flood=True) from None
        if exc.code >= 500 or exc.code == 408:
            raise RetryLater(DEFAULT_RETRY_S, reason) from None
        detail = answer.decode(errors="replace").strip()[:200]
        raise PermanentFailure(f"{reason}: {detail}" if detail else reason) from None
    except TimeoutError as exc:  # sent, the answer did not come in time
        raise RetryLater(DEFAULT_RETRY_S, f"{name} did not answer within {timeout:g}s",
                         maybe_delivered=True) from exc
    except (urllib.error.URLError, ConnectionError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise RetryLater(DEFAULT_RETRY_S, f"{name} unreachable: {reason}") from None


class WebhookTransport:
    """Alerts as signed JSON POSTs to one URL::

        transport = WebhookTransport("https://hooks.example/x", secret=b"key", name="ops")
        transport.send("webhook:ops", "BTC/USDT: 78% chance ...")
    """

    html = False  # plain text
    rate_limited = True  # paced by the drainer (alerts.chat_interval_seconds, ...)

    def __init__(self, url: str, *, secret: bytes | None = None, timeout: float = 10.0,
                 name: str = "webhook", clock: Callable[[], float] = time.time):
        self._url, self._secret, self._timeout = url, secret, timeout
        self.name, self._clock = name, clock
        self._sent = 0

    def __repr__(self) -> str:  # the URL may hold a token
        return f"WebhookTransport(name={self.name!r}, signed={self._secret is not None})"

    def _sign(self, body: bytes) -> dict[str, str]:
        timestamp = str(int(self._clock()))
        return {TIMESTAMP_HEADER: timestamp,
                SIGNATURE_HEADER: signature(self._secret, timestamp, body)}

    def send(self, chat_id: str, text: str, *, photo: bytes | None = None,
             silent: bool = False) -> SendResult:
        post_json(self._url, {"source": "signalcast", "chat_id": chat_id, "text": text,
                              "silent": silent},
                  timeout=self._timeout, name=f"webhook {self.name!r}",
                  sign=self._sign if self._secret is not None else None)
        self._sent += 1
        return SendResult(message_id=self._sent)

    def close(self) -> None:
        pass


def http_transports(settings: Any) -> dict[str, Any]:
    """``chat_id -> transport`` for the ``notifiers`` section (webhooks and Discord). An
    endpoint whose URL or key variable is unset is logged and left out: its alerts wait in the
    outbox until it is set, and the other chats are served."""
    from signalcast.core.errors import ConfigError
    from signalcast.notifier.discord import DiscordTransport

    cfg = settings.notifiers
    out: dict[str, Any] = {}
    for chat_id, build in (
            *((f"webhook:{w.name}", lambda w=w: WebhookTransport(
                w.resolved_url(), secret=w.resolved_secret(), timeout=w.timeout_seconds,
                name=w.name)) for w in cfg.webhooks),
            *((f"discord:{d.name}", lambda d=d: DiscordTransport(
                d.resolved_url(), timeout=d.timeout_seconds, name=d.name))
              for d in cfg.discord)):
        try:
            out[chat_id] = build()
        except ConfigError as exc:
            log.error("alerts to %s wait: %s", chat_id, exc)
    return out
