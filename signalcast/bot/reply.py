"""The one way the bot answers: every reply and edit goes through here, within Telegram's limit.

Telegram refuses a message over 4,096 characters (counted in UTF-16 code units, after the HTML
is parsed) with ``400 Bad Request: message is too long``, and a reply can echo what a user typed
(an unknown name, a command word) of any length. So every text is fitted here before it goes:
whole lines are dropped from the end (each line of our HTML closes its own tags, so what is
left stays valid); a single overlong line loses its tags and is cut. A note says it was trimmed.

>>> len(fit_message("x" * 5000))
4096
>>> fit_message("<b>ok</b>")
'<b>ok</b>'
"""

from __future__ import annotations

import re
from typing import Any

from telegram import Message

MESSAGE_LIMIT = 4096
_TRIMMED_HTML = "\n<i>(trimmed to Telegram's message limit)</i>"
_TRIMMED_TEXT = "\n(trimmed to Telegram's message limit)"


def telegram_length(text: str) -> int:
    """Length as Telegram counts it: UTF-16 code units (an emoji counts two)."""
    return len(text.encode("utf-16-le")) // 2


def _cut(text: str, budget: int) -> str:
    while telegram_length(text) > budget:
        text = text[: max(0, len(text) - max(1, (telegram_length(text) - budget) // 2))]
    return text


def fit_message(text: str, *, html: bool = True, limit: int = MESSAGE_LIMIT) -> str:
    """``text`` unchanged when it fits, else trimmed to ``limit`` with a note saying so."""
    if telegram_length(text) <= limit:
        return text
    note = _TRIMMED_HTML if html else _TRIMMED_TEXT
    budget = limit - telegram_length(note)
    kept: list[str] = []
    for line in text.split("\n"):
        used = telegram_length("\n".join([*kept, ""]))
        if used + telegram_length(line) <= budget:
            kept.append(line)
            continue
        if budget - used > 40:  # room for the start of the overlong line: cut it, tags dropped
            plain = re.sub(r"<[^>]*>", "", line) if html else line
            cut = _cut(plain, budget - used - 3)
            kept.append((re.sub(r"&[#\w]*$", "", cut) if html else cut) + "...")
        break
    return "\n".join(kept) + note


async def reply(message: Message, text: str, *, html: bool = True, **kwargs: Any) -> Message:
    """Answer ``message`` with ``text`` (Telegram HTML unless ``html=False``), fitted."""
    fitted = fit_message(text, html=html)
    if html:
        return await message.reply_html(fitted, disable_web_page_preview=True, **kwargs)
    return await message.reply_text(fitted, **kwargs)
