"""Which transport serves which chat, one set per process (a Telegram Bot is tied to its
event loop and cannot cross a fork, so each worker process builds its own lazily)."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable

from signalcast.config import Settings
from signalcast.notifier import CONSOLE_CHAT
from signalcast.notifier.telegram import ConsoleTransport, TelegramTransport, Transport

_lock = threading.Lock()
_telegram: dict[tuple, TelegramTransport] = {}
_console_write: list[Callable[[str], None]] = [print]
_console = ConsoleTransport(lambda text: _console_write[0](text))


def set_console_writer(write: Callable[[str], None] | None) -> None:
    """Where console alerts go in this process (the demo sends them to its own console)."""
    _console_write[0] = write or print


def transports_for(settings: Settings) -> Callable[[str], Transport | None]:
    """``chat_id -> transport``: the console pseudo-chat prints; every other chat goes to
    Telegram when a token is configured (else it waits in the outbox)."""
    telegram = None
    if settings.env.telegram_token is not None:
        token = settings.env.telegram_token.get_secret_value()
        topics = settings.bot.topics  # forum chat -> message_thread_id
        key = (os.getpid(), token, settings.env.telegram_api_url, tuple(sorted(topics.items())))
        with _lock:
            telegram = _telegram.get(key)
            if telegram is None:
                telegram = _telegram[key] = TelegramTransport(
                    token, settings.env.telegram_api_url, topics=topics)

    http: dict[str, Transport] = {}
    if settings.notifiers.chat_ids:  # webhook:<name> and discord:<name> (notifiers section)
        from signalcast.notifier.webhook import http_transports

        http = http_transports(settings)

    def route(chat_id: str) -> Transport | None:
        if chat_id.startswith(("webhook:", "discord:")):  # the notifiers section's chats
            return http.get(chat_id)
        return _console if chat_id == CONSOLE_CHAT else telegram

    return route
