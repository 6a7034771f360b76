"""Follow a /retrain: edit the bot's reply as the train tasks advance.

The state comes from the TaskRun rows of the job's task ids. Telegram refuses an edit that
changes nothing and limits how often a message may be edited, so the reply is edited only when
its text changes and at most once per ``bot.progress_interval_seconds``.
"""

from __future__ import annotations

import asyncio
import logging
import warnings
from collections.abc import Callable
from datetime import timedelta

from sqlalchemy.engine import Engine
from telegram import Bot
from telegram.constants import ParseMode
from telegram.error import BadRequest, NetworkError, RetryAfter
from telegram.warnings import PTBDeprecationWarning

from signalcast.bot import render
from signalcast.bot.reply import fit_message
from signalcast.lifecycle.retrain import RetrainJob, retrain_progress

log = logging.getLogger(__name__)


def retry_after_seconds(exc: RetryAfter) -> float:
    """``retry_after`` is an int or (``PTB_TIMEDELTA=true``) a timedelta; PTB warns on the
    int form, which we accept knowingly."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PTBDeprecationWarning)
        value = exc.retry_after
    return value.total_seconds() if isinstance(value, timedelta) else float(value)


async def follow_retrain(bot: Bot, chat_id: int, message_id: int, job: RetrainJob, *,
                         engine: Engine, shown: str, interval: float, timeout_min: float,
                         still_retrying: Callable[[str], bool] | None = None) -> str:
    """Edit message ``message_id`` (now showing ``shown``) until every task finished or
    ``timeout_min`` passed; returns the last text shown."""
    loop = asyncio.get_running_loop()
    started = last_edit = loop.time()
    elapsed: float | None = None  # fixed when first seen finished, so the text stays stable
    while True:
        progress = await asyncio.to_thread(retrain_progress, engine, job,
                                           still_retrying=still_retrying)
        gave_up = loop.time() - started > timeout_min * 60
        if progress.finished and elapsed is None:
            elapsed = loop.time() - started
        text = render.retrain(progress, elapsed_s=elapsed,
                              gave_up_after_min=timeout_min if gave_up else None)
        if text != shown:
            wait = last_edit + interval - loop.time()
            if wait > 0:
                await asyncio.sleep(wait)
                continue  # read the state again: it may have moved on while we waited
            try:
                await bot.edit_message_text(fit_message(text), chat_id=chat_id,
                                            message_id=message_id, parse_mode=ParseMode.HTML)
            except RetryAfter as exc:
                await asyncio.sleep(retry_after_seconds(exc))
                continue
            except BadRequest as exc:
                if "not modified" not in str(exc).lower():
                    log.warning("cannot edit the /retrain reply: %s", exc)
                    return shown
            except NetworkError as exc:  # timeouts and 5xx: try again on the next round
                log.info("editing the /retrain reply failed (%s); will retry", exc)
                await asyncio.sleep(interval)
                continue
            shown, last_edit = text, loop.time()
        if progress.finished or gave_up:
            return shown
        await asyncio.sleep(interval / 2)
