"""Who may run which command, and whether a command is still fresh: one decorator for all.

Roles come from the environment: ``SIGNALCAST_TELEGRAM_ADMINS`` may do everything (retrain,
promote, roll back, pause), ``SIGNALCAST_TELEGRAM_VIEWERS`` may read. Anyone else gets one
polite refusal per bot run (then silence, so a stranger cannot make the bot spam), is logged,
and nothing runs.

A command older than ``bot.command_max_age_seconds`` (by the message's date: it arrived while
the bot was down and Telegram kept it) is answered as expired and not run, so a restart never
replays a stale /retrain or /promote.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import IntEnum
from typing import Any

from telegram import Update
from telegram.ext import ContextTypes

from signalcast.bot.reply import reply
from signalcast.config import Settings

log = logging.getLogger(__name__)

Handler = Callable[[Update, ContextTypes.DEFAULT_TYPE], Awaitable[Any]]

REFUSAL = ("Sorry, this bot only answers the people who run signalcast. If that is you, ask an "
           "admin to add your Telegram user id ({user_id}) to SIGNALCAST_TELEGRAM_VIEWERS or "
           "SIGNALCAST_TELEGRAM_ADMINS.")


class Role(IntEnum):
    NONE = 0
    VIEWER = 1
    ADMIN = 2


def role_of(settings: Settings, user_id: int | str) -> Role:
    user = str(user_id)
    if user in settings.telegram_admins:
        return Role.ADMIN
    return Role.VIEWER if user in settings.telegram_viewers else Role.NONE


@dataclass
class Access:
    """Per bot run: the settings, the age limit, and who was refused already."""

    settings: Settings
    refused: set[int] = field(default_factory=set)
    now: Callable[[], datetime] = lambda: datetime.now(UTC)

    @property
    def max_age(self) -> timedelta:
        return timedelta(seconds=self.settings.bot.command_max_age_seconds)


def command_word(text: str | None) -> str:
    """``"/retrain@my_bot BTC"`` -> ``"retrain"``."""
    return (text or "").split(maxsplit=1)[0].lstrip("/").split("@")[0] if text else ""


def requires(role: Role) -> Callable[[Handler], Handler]:
    """Run the handler only for a user with ``role`` or more, and only for a fresh command."""

    def decorate(handler: Handler) -> Handler:
        @functools.wraps(handler)
        async def guarded(update: Update, context: ContextTypes.DEFAULT_TYPE) -> Any:
            access: Access = context.bot_data["access"]
            message, user = update.effective_message, update.effective_user
            if message is None or user is None:
                return None
            command = command_word(message.text)
            have = role_of(access.settings, user.id)
            if have is Role.NONE:
                log.warning("refused /%s from unknown user %s in chat %s", command, user.id,
                            message.chat_id)
                if user.id not in access.refused:
                    access.refused.add(user.id)
                    await reply(message, REFUSAL.format(user_id=user.id), html=False)
                return None
            if have < role:
                log.info("viewer %s may not /%s", user.id, command)
                await reply(message, f"Only admins may use /{command}. You may read: "
                                     "/status, /signals, /models, /help.", html=False)
                return None
            age = access.now() - message.date
            if age > access.max_age:
                log.info("expired /%s from %s: %.0f s old", command, user.id,
                         age.total_seconds())
                await reply(message, f"Your /{command} of {message.date:%H:%M:%S} UTC arrived "
                            f"while I was away ({age.total_seconds():.0f} s ago) and has "
                            "expired; it was not run. Send it again if you still want it.",
                            html=False)
                return None
            return await handler(update, context)

        return guarded

    return decorate
