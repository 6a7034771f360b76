"""``signalcast bot``: one process polling Telegram with a python-telegram-bot ``Application``.

Only one process may poll a bot token (a second one gets ``Conflict``). The token comes from
``SIGNALCAST_TELEGRAM_TOKEN`` and never reaches the log; ``SIGNALCAST_TELEGRAM_API_URL`` points
the bot at a self-hosted Bot API server (or at the tests' fake one). Commands enqueue work on the
broker's queues (retraining needs ``SIGNALCAST_BROKER_URL``); reading commands work without one.

Updates that waited while the bot was down are fetched (not dropped) but every command is aged
by its message date, so a stale one is answered as expired instead of being run
(:mod:`signalcast.bot.access`).

**A bot that stopped polling stops.** python-telegram-bot ends its polling loop on a 401 (the
token is wrong or revoked) but keeps the process alive, answering nothing; on a 409 Conflict
(another process polls the same token) it retries forever. :class:`PollWatch`, the request
object of ``getUpdates``, sees every answer: a 401/404, or a Conflict lasting
``bot.conflict_grace_seconds``, ends :func:`serve` with :class:`BotStopped` (a clear log line,
exit status 2). Each answered poll touches ``bot.liveness_file``; ``signalcast health --bot``
fails when it is older than ``bot.liveness_seconds`` (the bot is not polling) or missing.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy.engine import Engine
from telegram import BotCommand, BotCommandScopeChat, BotCommandScopeDefault, Update
from telegram.error import InvalidToken, TelegramError
from telegram.ext import (
    Application,
    ApplicationBuilder,
    CallbackQueryHandler,
    CommandHandler,
    MessageHandler,
    filters,
)
from telegram.request import HTTPXRequest

from signalcast.bot import confirm
from signalcast.bot.access import Access, Role, requires
from signalcast.bot.context import BotContext
from signalcast.bot.handlers import COMMANDS, UNKNOWN, on_error
from signalcast.config import Settings
from signalcast.core.errors import ConfigError, SignalcastError
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


class BotStopped(SignalcastError):
    """The bot cannot poll Telegram any more; the message says why and what to do."""


class PollWatch(HTTPXRequest):
    """The ``getUpdates`` request object: records each answer's status for the liveness file
    and notices the answers polling cannot recover from."""

    def __init__(self, settings: Settings, clock=time.monotonic):
        cfg = settings.bot
        super().__init__(connection_pool_size=1)  # PTB adds the long-poll timeout itself
        self.liveness = Path(cfg.liveness_file)
        self.conflict_grace = cfg.conflict_grace_seconds
        self.clock = clock
        self.fatal: str | None = None
        self._conflict_since: float | None = None

    async def do_request(self, url: str, method: str, *args: Any, **kwargs: Any,
                         ) -> tuple[int, bytes]:
        code, payload = await super().do_request(url, method, *args, **kwargs)
        if url.rsplit("/", 1)[-1].lower() == "getupdates":
            self.saw(code)
        return code, payload

    def saw(self, code: int) -> None:
        """One ``getUpdates`` answer with HTTP status ``code``."""
        if code == 200:
            self._conflict_since = None
            self.touch()
        elif code in (401, 404):
            self.fatal = (f"Telegram refused getUpdates with {code} "
                          f"{'Unauthorized' if code == 401 else 'Not Found'}: the bot token "
                          "is wrong or was revoked; put a valid SIGNALCAST_TELEGRAM_TOKEN "
                          "(from @BotFather) and restart")
        elif code == 409:
            now = self.clock()
            self._conflict_since = self._conflict_since or now
            if now - self._conflict_since >= self.conflict_grace:
                self.fatal = ("Telegram answered 409 Conflict to getUpdates for "
                              f"{now - self._conflict_since:.0f} s: another process polls this "
                              "bot token (or a webhook is set); run one `signalcast bot` per "
                              "token")

    def touch(self) -> None:
        try:
            self.liveness.touch()
        except OSError as exc:  # health then fails: better than a silent bot
            log.warning("cannot touch the liveness file %s: %s", self.liveness, exc)

    def forget(self) -> None:
        """No liveness any more: the bot does not poll."""
        self.liveness.unlink(missing_ok=True)


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
    watch = PollWatch(settings)
    application = (ApplicationBuilder().token(token)
                   .base_url(bot_api_base_url(settings.env.telegram_api_url))
                   .get_updates_request(watch).build())
    application.bot_data["watch"] = watch
    application.bot_data["ctx"] = BotContext(
        settings=settings, engine=engine or init_db(settings.env.database_url),
        celery=celery, redact=_redactor(token))
    application.bot_data["access"] = Access(settings)
    for command in COMMANDS:
        application.add_handler(CommandHandler(
            command.name, requires(command.role)(command.callback), filters=NEW_MESSAGES))
    application.add_handler(MessageHandler(filters.COMMAND & NEW_MESSAGES, UNKNOWN))
    application.add_handler(CallbackQueryHandler(confirm.on_press, pattern=confirm.PATTERN))
    application.add_error_handler(on_error)
    return application


async def _announce_commands(application: Application) -> None:
    """The command menu Telegram clients show, from :data:`COMMANDS`: the viewers' commands
    for everyone (the default scope), every command in each admin's private chat (a chat
    scope per admin; in groups admins see the viewers' menu and may still type the rest)."""
    def menu(role: Role) -> list[BotCommand]:
        return [BotCommand(c.name, c.description[:256]) for c in COMMANDS if c.role <= role]

    ctx: BotContext = application.bot_data["ctx"]
    scopes = [(BotCommandScopeDefault(), Role.VIEWER)] + [
        (BotCommandScopeChat(int(admin)), Role.ADMIN) for admin in sorted(
            ctx.settings.telegram_admins)]
    for scope, role in scopes:
        try:
            await application.bot.set_my_commands(menu(role), scope=scope)
        except TelegramError as exc:  # a menu is a nicety: the commands work without it
            log.warning("cannot register the command menu (%s): %s", scope.type,
                        ctx.redact(str(exc)))


async def serve(application: Application, stop: threading.Event) -> None:
    """Poll and answer until ``stop`` is set, then shut down cleanly; raise
    :class:`BotStopped` when Telegram refuses polling for good."""
    ctx: BotContext = application.bot_data["ctx"]
    watch: PollWatch = application.bot_data["watch"]
    try:
        await _serve(application, ctx, watch, stop)
    except InvalidToken as exc:  # at start-up (getMe): the token is refused before any poll
        watch.fatal = watch.fatal or (f"Telegram refused the bot token ({exc}); put a valid "
                                      "SIGNALCAST_TELEGRAM_TOKEN (from @BotFather) and restart")
    finally:
        watch.forget()
    if watch.fatal:
        log.critical("bot stopped polling: %s", ctx.redact(watch.fatal))
        raise BotStopped(ctx.redact(watch.fatal))
    log.info("bot stopped")


async def _serve(application: Application, ctx: BotContext, watch: PollWatch,
                 stop: threading.Event) -> None:
    async with application:
        await application.start()
        await _announce_commands(application)  # post_init runs only under run_polling()
        await application.updater.start_polling(
            timeout=ctx.settings.bot.poll_timeout_seconds, allowed_updates=Update.ALL_TYPES,
            drop_pending_updates=False)
        watch.touch()
        log.info("bot @%s is polling", application.bot.username)
        health = (asyncio.create_task(_health_checks(ctx, stop))
                  if ctx.settings.bot.health_check_minutes else None)
        try:
            while not stop.is_set() and watch.fatal is None:
                await asyncio.sleep(0.1)
        finally:
            if health is not None:
                health.cancel()
            watch.forget()
            try:
                await application.updater.stop()
            except TelegramError as exc:  # the polling loop ended on the refused token
                log.debug("polling ended with %s", ctx.redact(str(exc)))
            await application.stop()


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
