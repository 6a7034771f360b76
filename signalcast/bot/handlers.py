"""Telegram commands: parse the arguments, call one service function, reply.

Every command is one entry of :data:`COMMANDS` (name, handler, role, usage, description);
``bot.app`` registers them all the same way: new messages only (an edited message never runs
a command), behind :func:`signalcast.bot.access.requires`. /promote, /rollback and a /retrain
of several targets check their arguments, then ask for a Confirm press
(:mod:`signalcast.bot.confirm`); the audit log names the admin who typed the command. Domain
errors raised by the services reach the one error handler, :func:`on_error`, which answers
with the usage line and the error's message (an unknown name lists the valid choices).
"""

from __future__ import annotations

import asyncio
import logging
import traceback
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from telegram import Message, Update
from telegram.ext import ContextTypes

from signalcast.alerts import subscriptions
from signalcast.bot import confirm, previews, render
from signalcast.bot.access import Role, command_word, requires, role_of
from signalcast.bot.context import BotContext
from signalcast.bot.progress import follow_retrain
from signalcast.bot.render import escape
from signalcast.bot.reply import reply
from signalcast.core.errors import SignalcastError, UnknownNameError
from signalcast.lifecycle import admin as model_admin
from signalcast.lifecycle.retrain import RetrainProgress, TaskState, start_retrain
from signalcast.ops.signals import recent_signals
from signalcast.ops.status import collect_status

log = logging.getLogger(__name__)
Context = ContextTypes.DEFAULT_TYPE


class UsageError(SignalcastError):
    """A command got the wrong number of arguments."""


def _ctx(context: Context) -> BotContext:
    return context.bot_data["ctx"]


def _args(context: Context, least: int, most: int | None) -> list[str]:
    args = list(context.args or [])
    if len(args) < least or (most is not None and len(args) > most):
        wanted = f"{least}" if least == most else f"{least} to {most}" if most else f"{least}+"
        raise UsageError(f"expected {wanted} argument(s), got {len(args)}")
    return args


def _actor(update: Update) -> str:
    return f"telegram:{update.effective_user.id}"


async def _reply(update: Update, html: str) -> Message:
    return await reply(update.effective_message, html)


async def _call(function: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Run a (blocking, database) service function off the event loop."""
    return await asyncio.to_thread(function, *args, **kwargs)


# -- readers -----------------------------------------------------------------------------------


async def help_command(update: Update, context: Context) -> None:
    can_admin = role_of(_ctx(context).settings, update.effective_user.id) is Role.ADMIN
    await _reply(update, render.help_text(COMMANDS, can_admin))


async def status_command(update: Update, context: Context) -> None:
    ctx = _ctx(context)
    _args(context, 0, 0)
    data = await _call(collect_status, ctx.engine, ctx.settings, probe=ctx.probe,
                       timeout=ctx.settings.bot.status_timeout_seconds)
    await _reply(update, render.status(data, context.bot_data["access"].now()))


async def signals_command(update: Update, context: Context) -> None:
    ctx = _ctx(context)
    asset = (_args(context, 0, 1) or [None])[0]
    await _reply(update, render.signals(
        await _call(recent_signals, ctx.engine, ctx.settings, asset)))


async def models_command(update: Update, context: Context) -> None:
    ctx = _ctx(context)
    asset = (_args(context, 0, 1) or [None])[0]
    await _reply(update, render.models(
        await _call(model_admin.list_models, ctx.engine, ctx.settings, asset)))


# -- admin -------------------------------------------------------------------------------------


async def retrain_command(update: Update, context: Context) -> None:
    ctx = _ctx(context)
    asset, target, family = (_args(context, 1, 3) + [None, None])[:3]

    async def run(update: Update, context: Context) -> None:
        job = await _call(start_retrain, ctx.settings, ctx.enqueuer, asset, target, family)
        shown = render.retrain(RetrainProgress(job, [TaskState(t, "queued") for t in job.tasks]))
        reply = await _reply(update, shown)
        context.application.create_task(follow_retrain(
            context.bot, reply.chat_id, reply.message_id, job, engine=ctx.engine, shown=shown,
            interval=ctx.settings.bot.progress_interval_seconds,
            timeout_min=ctx.settings.bot.progress_timeout_minutes,
            still_retrying=ctx.still_retrying), update=update)

    question = previews.retrain(ctx.settings, asset, target, family)
    if question is None:  # one target: runs at once
        await run(update, context)
    else:
        await confirm.ask(update, context, "retrain", question, run)


async def promote_command(update: Update, context: Context) -> None:
    ctx = _ctx(context)
    asset, target, version, *words = _args(context, 3, None)
    actor, reason = _actor(update), " ".join(words)
    question = await _call(previews.promotion, ctx.engine, ctx.settings, asset, target,
                           version, reason)

    async def run(update: Update, context: Context) -> None:
        event = await _call(model_admin.promote_version, ctx.engine, ctx.settings, asset,
                            target, version, actor=actor, reason=reason)
        await _call(ctx.request_drain)
        await _reply(update, render.model_event(event))

    await confirm.ask(update, context, "promote", question, run)


async def rollback_command(update: Update, context: Context) -> None:
    ctx = _ctx(context)
    asset, target, *words = _args(context, 2, None)
    actor, reason = _actor(update), " ".join(words)
    question = await _call(previews.rollback, ctx.engine, ctx.settings, asset, target, reason)

    async def run(update: Update, context: Context) -> None:
        event = await _call(model_admin.rollback, ctx.engine, ctx.settings, asset, target,
                            actor=actor, reason=reason)
        await _call(ctx.request_drain)
        await _reply(update, render.model_event(event))

    await confirm.ask(update, context, "rollback", question, run)


def _chat_command(change: Callable[..., subscriptions.ChatSettings], takes_items: bool,
                  ) -> Callable[[Update, Context], Awaitable[None]]:
    """/pause, /resume, /subscribe, /unsubscribe: change this chat's alerts, show the result."""

    async def handler(update: Update, context: Context) -> None:
        ctx = _ctx(context)
        items = _args(context, 0, None) if takes_items else _args(context, 0, 0)
        extra = (items,) if takes_items else ()
        result = await _call(change, ctx.engine, ctx.settings, str(update.effective_chat.id),
                             *extra, actor=_actor(update))
        await _reply(update, render.chat(result))

    return handler


async def unknown_command(update: Update, context: Context) -> None:
    await _reply(update, f"Unknown command /{escape(command_word(update.effective_message.text))}"
                         ". /help lists the commands.")


# -- the one list ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Command:
    name: str
    callback: Callable[[Update, Context], Awaitable[Any]]
    role: Role
    usage: str
    description: str

    @property
    def admin(self) -> bool:
        return self.role is Role.ADMIN


COMMANDS: tuple[Command, ...] = (
    Command("help", help_command, Role.VIEWER, "/help", "what I can do"),
    Command("status", status_command, Role.VIEWER, "/status",
            "workers, queues, last tick, alerts today"),
    Command("signals", signals_command, Role.VIEWER, "/signals [ASSET]",
            "the newest probability per asset and target"),
    Command("models", models_command, Role.VIEWER, "/models [ASSET]",
            "champions and other versions with their metrics"),
    Command("retrain", retrain_command, Role.ADMIN, "/retrain ASSET [TARGET] [FAMILY]",
            "train now; this reply shows the progress"),
    Command("promote", promote_command, Role.ADMIN, "/promote ASSET TARGET VERSION [REASON]",
            "make a version (e.g. lightgbm:3) the champion"),
    Command("rollback", rollback_command, Role.ADMIN, "/rollback ASSET TARGET [REASON]",
            "give the champion role back to the previous version"),
    Command("pause", _chat_command(subscriptions.pause_alerts, False), Role.ADMIN, "/pause",
            "hold back alerts to this chat"),
    Command("resume", _chat_command(subscriptions.resume_alerts, False), Role.ADMIN, "/resume",
            "send alerts to this chat again"),
    Command("subscribe", _chat_command(subscriptions.subscribe, True), Role.ADMIN,
            "/subscribe [ASSET|TARGET|KIND[:silent]] ...",
            "receive alerts here (all, or these assets, targets or kinds)"),
    Command("unsubscribe", _chat_command(subscriptions.unsubscribe, True), Role.ADMIN,
            "/unsubscribe [ASSET|TARGET|KIND] ...",
            "stop alerts here (all, or these assets, targets or kinds)"),
)


def command_for(text: str | None) -> Command | None:
    word = command_word(text).lower()
    return next((c for c in COMMANDS if c.name == word), None)


UNKNOWN = requires(Role.VIEWER)(unknown_command)


async def on_error(update: object, context: Context) -> None:
    """The one error handler: domain errors become a reply (usage line and choices for bad
    arguments); anything else is logged (token redacted) and answered with an apology."""
    error = context.error
    message = update.effective_message if isinstance(update, Update) else None
    if isinstance(error, SignalcastError):
        if message is None:
            log.warning("bot: %s", error)
            return
        pressed = isinstance(update, Update) and update.callback_query is not None
        command = None if pressed else command_for(message.text)  # a press: no usage line
        if command is not None and isinstance(error, UsageError | UnknownNameError):
            await reply(message, render.usage(command, str(error)))
        else:
            await reply(message, escape(str(error)))
        return
    ctx: BotContext | None = context.bot_data.get("ctx") if context.bot_data else None
    detail = "".join(traceback.format_exception(error)) if error else "unknown error"
    log.error("bot error: %s", ctx.redact(detail) if ctx else detail)
    if message is not None:
        await reply(message, "Sorry, that failed unexpectedly; the error is in the bot's log.",
                    html=False)
