"""Questions tests ask the fake Bot API server about what the bot delivered.

Kept apart from ``telegram_server`` (the server itself) so each stays small.
"""

from __future__ import annotations

import re
from collections import Counter

from tests.fakes.telegram_server import FakeTelegram, RecordedCall

SEND_METHODS = ("sendMessage", "sendPhoto")
_ASSET = re.compile(r"^<b>(?P<asset>[^<]+)</b>:")
_TARGET = re.compile(r"target (?P<target>\S+)")
_CANDLE = re.compile(r"candle (?P<candle>\d{4}-\d\d-\d\d \d\d:\d\d) UTC")


def deliveries(tg: FakeTelegram, chat_id: int | str | None = None) -> list[RecordedCall]:
    """Successful sendMessage/sendPhoto calls, oldest first (``at``: when the server took it)."""
    return [call for call in tg.calls if call.method in SEND_METHODS and call.status == 200
            and (chat_id is None or str(call.params.get("chat_id")) == str(chat_id))]


def signal_key(text: str) -> tuple[str, str, str] | None:
    """(asset, target, candle) of a signal alert's HTML, or None for another message."""
    asset, target, candle = _ASSET.match(text), _TARGET.search(text), _CANDLE.search(text)
    if not (asset and target and candle):
        return None
    return asset["asset"], target["target"], candle["candle"]


def signal_counts(tg: FakeTelegram) -> Counter:
    """How many times each (chat, asset, target, candle) signal was delivered."""
    counts: Counter = Counter()
    for message in tg.sent_messages():
        key = signal_key(message["text"])
        if key is not None:
            counts[(str(message["chat_id"]), *key)] += 1
    return counts


def gaps(calls: list[RecordedCall]) -> list[float]:
    """Seconds between consecutive calls."""
    return [b.at - a.at for a, b in zip(calls, calls[1:], strict=False)]
