"""Confirm buttons for the dangerous admin commands (/promote, /rollback, a /retrain of several
targets): the command first answers with what it would do and two inline buttons.

The pending action is kept in ``application.bot_data`` under a random token carried by the
buttons' callback data (``confirm:<token>:yes`` / ``:no``); nothing is written anywhere else, so
**a bot restart forgets pending confirmations** (a later press is answered as no longer pending).

A press runs the action only when it comes from an admin (the role check of the commands),
within ``bot.confirm_seconds`` of the question, on the message that asked. The pending entry is
removed before anything is awaited, so a second press (or two admins pressing at once: PTB
handles one update at a time) finds nothing and runs nothing. Every press is answered (the
client's spinner stops) and the question is edited to say what became of it.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from telegram import InlineKeyboardButton, InlineKeyboardMarkup, Update
from telegram.constants import ParseMode
from telegram.error import BadRequest
from telegram.ext import ContextTypes

from signalcast.bot.access import Access, Role, role_of
from signalcast.bot.render import escape
from signalcast.bot.reply import fit_message, reply

log = logging.getLogger(__name__)
Context = ContextTypes.DEFAULT_TYPE
Action = Callable[[Update, Context], Awaitable[Any]]

PREFIX = "confirm:"
PATTERN = r"^confirm:"
_STORE = "confirmations"


@dataclass
class Pending:
    command: str
    summary: str  # Telegram HTML: what the action will do
    chat_id: int
    requested_by: int
    expires_at: datetime
    run: Action
    message_id: int | None = None


def pending(context: Context) -> dict[str, Pending]:
    """The pending confirmations of this bot run, by token."""
    return context.bot_data.setdefault(_STORE, {})


async def ask(update: Update, context: Context, command: str, summary: str,
              run: Action) -> str:
    """Answer the command with ``summary`` and Confirm / Cancel buttons; ``run`` is called with
    the press's update once an admin confirms. Returns the token."""
    access: Access = context.bot_data["access"]
    seconds = access.settings.bot.confirm_seconds
    now = access.now()
    store = pending(context)
    for token in [t for t, p in store.items() if p.expires_at < now]:  # forget old questions
        del store[token]
    token = secrets.token_urlsafe(12)  # 16 characters: callback data allows 64 bytes
    buttons = InlineKeyboardMarkup([[
        InlineKeyboardButton("Confirm", callback_data=f"{PREFIX}{token}:yes"),
        InlineKeyboardButton("Cancel", callback_data=f"{PREFIX}{token}:no")]])
    entry = Pending(command, summary, update.effective_chat.id, update.effective_user.id,
                    now + timedelta(seconds=seconds), run)
    store[token] = entry
    question = await reply(update.effective_message,
                           f"{summary}\n<i>Confirm within {seconds} s, or nothing happens.</i>",
                           reply_markup=buttons)
    entry.message_id = question.message_id
    return token


async def on_press(update: Update, context: Context) -> None:
    """A press on Confirm or Cancel."""
    query = update.callback_query
    if query is None or query.data is None:
        return
    token, _, choice = query.data.removeprefix(PREFIX).partition(":")
    access: Access = context.bot_data["access"]
    store = pending(context)
    entry = store.get(token)
    user = query.from_user
    where = query.message
    if entry is None or where is None or (where.chat.id, where.message_id) != (
            entry.chat_id, entry.message_id):
        log.info("press on an unknown confirmation from %s", user.id)
        await query.answer("This question is no longer open (answered, expired, or the bot "
                           "restarted since). Send the command again.", show_alert=True)
        return
    if role_of(access.settings, user.id) < Role.ADMIN:
        log.warning("refused a press on /%s's confirmation from non-admin %s", entry.command,
                    user.id)
        await query.answer(f"Only admins may confirm /{entry.command}.", show_alert=True)
        return
    del store[token]  # before any await: a second press finds nothing
    who = escape(user.full_name or str(user.id))
    if access.now() > entry.expires_at:
        log.info("expired confirmation of /%s pressed by %s", entry.command, user.id)
        await query.answer("Too late: this question expired. Send the command again.",
                           show_alert=True)
        await _settle(query, f"{entry.summary}\n<i>Expired: not run.</i>")
        return
    if choice != "yes":
        log.info("/%s cancelled by %s", entry.command, user.id)
        await query.answer("Cancelled.")
        await _settle(query, f"{entry.summary}\n<i>Cancelled by {who}: not run.</i>")
        return
    log.info("/%s of %s confirmed by %s", entry.command, entry.requested_by, user.id)
    await query.answer("Confirmed.")
    await _settle(query, f"{entry.summary}\n<i>Confirmed by {who}.</i>")
    await entry.run(update, context)


async def _settle(query: Any, text: str) -> None:
    """Edit the question to its outcome, without the buttons."""
    try:
        await query.edit_message_text(fit_message(text), parse_mode=ParseMode.HTML,
                                      disable_web_page_preview=True)
    except BadRequest as exc:  # the question was deleted: the outcome still holds
        log.info("cannot edit a confirmation question: %s", exc)
