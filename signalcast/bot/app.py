"""``signalcast bot``: one process polling Telegram with a python-telegram-bot ``Application``.

Only one process may poll a bot token (a second one gets ``Conflict``). The token comes from
``SIGNALCAST_TELEGRAM_TOKEN`` and never reaches the log; ``SIGNALCAST_TELEGRAM_API_URL`` points
the bot at a self-hosted Bot API server (or at the tests' fake one). Commands enqueue work on the
broker's queues (retraining needs ``SIGNALCAST_BROKER_URL``); reading commands work without one.

Updates that waited while the bot was down are fetched (not dropped) but every command is aged
by its message date, so a stale one is answered as expired instead of being run
(:mod:`signalcast.bot.access`).
"""

from __future__ import annotations

import asyncio
import logging
import signal
import threading
from datetime import UTC, datetime

from sqlalchemy.engine import Engine
from telegram import BotCommand, Update
from telegram.ext import Application, ApplicationBuilder, CommandHandler, MessageHandler, filters

from signalcast.bot.access import Access, requires
from signalcast.bot.context import BotContext
from signalcast.bot.handlers import COMMANDS, UNKNOWN, on_error
from signalcast.config import Settings
from signalcast.core.errors import ConfigError
from signalcast.db.engine import init_db
from signalcast.notifier.telegram import bot_api_base_url, redact_token_in_logs

log = logging.getLogger(__name__)

# New messages only: an edited "/retrain" must not retrain again (docs/reliability.md).
NEW_MESSAGES = filters.UpdateType.MESSAGE & ~filters.UpdateType.EDITED_MESSAGE


def _redactor(token: str):
    secret = token.partition(":")[2]

    def redact(text: str) -> str:
        text = text.replace(token, "<redacted-token>")
        return text.replace(secret, "<redacted-token>") if len(secret) >= 8 else text

    return redact


def build_application(settings: Settings, engine: Engine | None = None) -> Application:
    """The Application with every command registered, the one error handler, and the
    services it needs in ``bot_data``."""
    if settings.env.telegram_token is None:
        raise ConfigError("signalcast bot needs SIGNALCAST_TELEGRAM_TOKEN (the token "
                          "@BotFather gave you)")
    token = settings.env.telegram_token.get_secret_value()
    redact_token_in_logs(token)  # before anything can log a request URL
    celery = None
    if settings.env.broker_url is not None:
        from signalcast.tasks.app import app, configure

        celery = configure(settings, app)
    application = (ApplicationBuilder().token(token)
                   .base_url(bot_api_base_url(settings.env.telegram_api_url))
                   .post_init(_announce_commands).build())
    application.bot_data["ctx"] = BotContext(
        settings=settings, engine=engine or init_db(settings.env.database_url),
        celery=celery, redact=_redactor(token))
    application.bot_data["access"] = Access(settings)
    for command in COMMANDS:
        application.add_handler(CommandHandler(
            command.name, requires(command.role)(command.callback), filters=NEW_MESSAGES))
    application.add_handler(MessageHandler(filters.COMMAND & NEW_MESSAGES, UNKNOWN))
    application.add_error_handler(on_error)
    return application


async def _announce_commands(application: Application) -> None:
    """The command menu Telegram clients show."""
    await application.bot.set_my_commands(
        [BotCommand(c.name, c.description[:256]) for c in COMMANDS])


async def serve(application: Application, stop: threading.Event) -> None:
    """Poll and answer until ``stop`` is set, then shut down cleanly."""
    ctx: BotContext = application.bot_data["ctx"]
    async with application:
        await application.start()
        await application.updater.start_polling(
            timeout=ctx.settings.bot.poll_timeout_seconds, allowed_updates=Update.ALL_TYPES,
            drop_pending_updates=False)
        me = application.bot.username
        log.info("bot @%s is polling", me)
        health = (asyncio.create_task(_health_checks(ctx, stop))
                  if ctx.settings.bot.health_check_minutes else None)
        try:
            while not stop.is_set():
                await asyncio.sleep(0.1)
        finally:
            if health is not None:
                health.cancel()
            await application.updater.stop()
            await application.stop()
    log.info("bot stopped")


async def _health_checks(ctx: BotContext, stop: threading.Event) -> None:
    """The system check from this process too: it notices a scheduler that went silent."""
    from signalcast.scheduler.jobs import system_check

    period = ctx.settings.bot.health_check_minutes * 60
    while not stop.is_set():
        await asyncio.sleep(period)
        try:
            await asyncio.to_thread(system_check, ctx.engine, ctx.settings, datetime.now(UTC))
        except Exception as exc:
            log.warning("system check failed: %s", ctx.redact(str(exc)))


def run_bot(settings: Settings, stop: threading.Event | None = None) -> None:
    """Run the bot until SIGINT/SIGTERM (or ``stop``)."""
    stop = stop or threading.Event()
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda *_: stop.set())
    asyncio.run(serve(build_application(settings), stop))
