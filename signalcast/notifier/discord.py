"""Alerts to a Discord channel through its webhook (``discord:<name>`` chats).

Discord's execute-webhook call: a JSON POST of ``content`` (at most 2,000 characters, so a
longer text is cut with an ellipsis) to the webhook URL with ``?wait=true``, which answers the
created message (its ``id`` becomes the outbox row's message id). Mentions are disabled
(``allowed_mentions``), so an alert never pings ``@everyone``; a silent alert is sent with the
``SUPPRESS_NOTIFICATIONS`` flag. A 429 is retried after Discord's ``retry_after``, like
Telegram's flood control, through the outbox's backoff (:func:`.webhook.post_json`).
"""

from __future__ import annotations

import json
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from signalcast.notifier.telegram import SendResult
from signalcast.notifier.webhook import post_json

CONTENT_LIMIT = 2000
SUPPRESS_NOTIFICATIONS = 1 << 12


def fit_content(text: str, limit: int = CONTENT_LIMIT) -> str:
    """``text`` within Discord's limit, cut at a line end where one is near.

    >>> fit_content("a" * 10, limit=5)
    'aaaa…'
    """
    if len(text) <= limit:
        return text
    cut = text[:limit - 1]
    line_end = cut.rfind("\n")
    return (cut[:line_end] if line_end > limit // 2 else cut) + "…"


def _with_wait(url: str) -> str:
    parts = urlsplit(url)
    query = dict(parse_qsl(parts.query))
    query["wait"] = "true"
    return urlunsplit(parts._replace(query=urlencode(query)))


class DiscordTransport:
    html = False  # Discord renders its own markdown; the plain-text alert reads well there
    rate_limited = True  # paced by the drainer (alerts.chat_interval_seconds, ...)

    def __init__(self, url: str, *, timeout: float = 10.0, name: str = "discord"):
        self._url, self._timeout, self.name = _with_wait(url), timeout, name

    def __repr__(self) -> str:  # the URL holds the webhook's token
        return f"DiscordTransport(name={self.name!r})"

    def send(self, chat_id: str, text: str, *, photo: bytes | None = None,
             silent: bool = False) -> SendResult:
        payload = {"content": fit_content(text), "allowed_mentions": {"parse": []}}
        if silent:
            payload["flags"] = SUPPRESS_NOTIFICATIONS
        answer = post_json(self._url, payload, timeout=self._timeout,
                           name=f"discord {self.name!r}")
        try:
            message_id = int(json.loads(answer)["id"])
        except (ValueError, KeyError, TypeError):
            message_id = 0  # delivered (2xx) without the message in the answer
        return SendResult(message_id=message_id)

    def close(self) -> None:
        pass
