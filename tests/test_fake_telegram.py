"""The fake Bot API server behaves like Telegram for the real python-telegram-bot client."""

from __future__ import annotations

import asyncio
import json
import threading
import time
import urllib.request
from collections.abc import Awaitable, Callable, Iterator
from datetime import timedelta
from typing import TypeVar

import pytest
from telegram import Bot
from telegram.error import BadRequest, InvalidToken, NetworkError, RetryAfter, TimedOut
from telegram.request import HTTPXRequest

from tests.fakes.telegram_server import FakeTelegram

T = TypeVar("T")


@pytest.fixture
def tg() -> Iterator[FakeTelegram]:
    with FakeTelegram() as server:
        yield server


def with_bot(tg: FakeTelegram, use: Callable[[Bot], Awaitable[T]], **request_kwargs: float) -> T:
    """Run ``use(bot)`` with an initialized real Bot pointed at the fake."""

    async def main() -> T:
        request = HTTPXRequest(**request_kwargs)  # one HTTP client for both kinds of call
        bot = Bot(tg.token, base_url=tg.base_url, request=request, get_updates_request=request)
        async with bot:
            return await use(bot)

    return asyncio.run(main())


def test_base_url_is_what_bot_appends_the_token_to(tg: FakeTelegram) -> None:
    bot = Bot(tg.token, base_url=tg.base_url)
    assert tg.base_url == f"http://127.0.0.1:{tg.port}/bot"
    assert bot.base_url == f"{tg.base_url}{tg.token}"


def test_get_me_returns_the_bot_user(tg: FakeTelegram) -> None:
    me = with_bot(tg, lambda bot: bot.get_me())
    assert me.is_bot
    assert me.username == "signalcast_test_bot"
    assert me.id == int(tg.token.split(":")[0])


def test_wrong_token_is_rejected(tg: FakeTelegram) -> None:
    async def main() -> None:
        async with Bot("42:wrong", base_url=tg.base_url) as bot:
            await bot.get_me()

    with pytest.raises(InvalidToken):
        asyncio.run(main())


def test_send_message_is_recorded(tg: FakeTelegram) -> None:
    message = with_bot(
        tg, lambda bot: bot.send_message(42, "<b>BTC/USDT</b> &amp; co", parse_mode="HTML")
    )
    assert message.text == "BTC/USDT & co"  # Telegram answers with the parsed text
    assert message.from_user.is_bot
    assert tg.sent_messages(chat_id=42) == [
        {
            "chat_id": 42,
            "message_id": message.message_id,
            "text": "<b>BTC/USDT</b> &amp; co",
            "parse_mode": "HTML",
            "kind": "text",
            "photo_size": None,
            "edits": 0,
        }
    ]
    assert tg.sent_messages(chat_id="42") == tg.sent_messages(chat_id=42)
    assert tg.sent_messages(chat_id=7) == []
    assert [call.method for call in tg.calls] == ["getMe", "sendMessage"]


def test_html_that_telegram_cannot_parse_is_refused(tg: FakeTelegram) -> None:
    for bad in ("BTC<USDT", "a & b", "<b>open", "<div>x</div>"):
        with pytest.raises(BadRequest, match="(?i)can't parse entities"):
            with_bot(tg, lambda bot, text=bad: bot.send_message(1, text, parse_mode="HTML"))
    assert tg.sent_messages() == []


def test_plain_text_is_taken_as_is(tg: FakeTelegram) -> None:
    message = with_bot(tg, lambda bot: bot.send_message(1, "a < b & c"))
    assert message.text == "a < b & c"


def test_429_raises_retry_after_with_its_delay(
    tg: FakeTelegram, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PTB_TIMEDELTA", "true")  # PTB >= 22.2: read it as a timedelta
    tg.fail("sendMessage", status=429, retry_after=2)
    with pytest.raises(RetryAfter) as raised:
        with_bot(tg, lambda bot: bot.send_message(1, "hi"))
    assert raised.value.retry_after == timedelta(seconds=2)
    assert tg.calls_to("sendMessage")[0].status == 429


def test_400_raises_bad_request_with_telegrams_description(tg: FakeTelegram) -> None:
    tg.fail("sendMessage", status=400)
    with pytest.raises(BadRequest, match="Chat not found"):  # PTB capitalises the description
        with_bot(tg, lambda bot: bot.send_message(1, "hi"))


@pytest.mark.parametrize("status", [500, 502])
def test_server_errors_raise_network_error(tg: FakeTelegram, status: int) -> None:
    tg.fail("sendMessage", status=status)
    with pytest.raises(NetworkError) as raised:
        with_bot(tg, lambda bot: bot.send_message(1, "hi"))
    assert not isinstance(raised.value, BadRequest)


def test_failures_last_for_the_given_number_of_calls(tg: FakeTelegram) -> None:
    tg.fail("sendMessage", status=500, times=2)

    async def send_three(bot: Bot) -> list[str]:
        outcomes = []
        for _ in range(3):
            try:
                await bot.send_message(1, "hi")
                outcomes.append("ok")
            except NetworkError:
                outcomes.append("error")
        return outcomes

    assert with_bot(tg, send_three) == ["error", "error", "ok"]
    assert len(tg.sent_messages()) == 1


def test_a_failure_for_every_method_hits_get_me_too(tg: FakeTelegram) -> None:
    tg.fail(status=500)
    with pytest.raises(NetworkError):
        with_bot(tg, lambda bot: bot.get_me())


def test_outage_answers_502_until_turned_off(tg: FakeTelegram) -> None:
    async def use(bot: Bot) -> None:
        tg.outage(True)
        for _ in range(2):
            with pytest.raises(NetworkError, match="Bad Gateway"):
                await bot.send_message(1, "hi")
        tg.outage(False)
        await bot.send_message(1, "back")

    with_bot(tg, use)
    assert [m["text"] for m in tg.sent_messages()] == ["back"]


def test_delay_trips_the_client_timeout_but_the_call_still_takes_effect(
    tg: FakeTelegram,
) -> None:
    tg.fail("sendMessage", delay=0.6)
    with pytest.raises(TimedOut):
        with_bot(tg, lambda bot: bot.send_message(1, "late"), read_timeout=0.2)
    tg.wait_for_messages(1, timeout=3)  # delivered after the client gave up, like Telegram
    assert tg.sent_messages()[0]["text"] == "late"


def test_edit_applies_to_the_stored_text(tg: FakeTelegram) -> None:
    async def use(bot: Bot) -> int:
        sent = await bot.send_message(5, "training 0%")
        edited = await bot.edit_message_text(
            "training <b>100%</b>", 5, sent.message_id, parse_mode="HTML"
        )
        assert edited.text == "training 100%"
        with pytest.raises(BadRequest, match="not modified"):
            await bot.edit_message_text(
                "training <b>100%</b>", 5, sent.message_id, parse_mode="HTML"
            )
        with pytest.raises(BadRequest, match="not found"):
            await bot.edit_message_text("x", 5, 999)
        return sent.message_id

    message_id = with_bot(tg, use)
    assert tg.message_text(message_id) == "training <b>100%</b>"
    assert tg.sent_messages()[0]["edits"] == 1


def test_send_photo_records_caption_and_size(tg: FakeTelegram) -> None:
    png = b"\x89PNG\r\n\x1a\n" + bytes(1000)
    message = with_bot(
        tg, lambda bot: bot.send_photo(3, photo=png, caption="<b>chart</b>", parse_mode="HTML")
    )
    assert message.caption == "chart"
    assert message.photo[-1].file_size == len(png)
    [photo] = tg.sent_photos(chat_id=3)
    assert (photo["text"], photo["photo_size"]) == ("<b>chart</b>", len(png))


def test_pushed_message_is_served_by_get_updates_and_offset_acknowledges(
    tg: FakeTelegram,
) -> None:
    pushed = tg.push_message(user_id=11, chat_id=11, text="/status BTC/USDT")

    async def use(bot: Bot) -> None:
        [update] = await bot.get_updates()
        assert update.update_id == pushed["update_id"]
        assert update.message.text == "/status BTC/USDT"
        assert update.message.from_user.id == 11
        assert update.message.chat.id == 11
        assert update.message.entities[0].type == "bot_command"
        assert update.message.entities[0].length == len("/status")
        # not acknowledged yet: served again
        assert len(await bot.get_updates()) == 1
        assert await bot.get_updates(offset=update.update_id + 1) == ()
        assert await bot.get_updates() == ()  # acknowledged updates are gone for good

    with_bot(tg, use)
    assert tg.pending_updates == 0


def test_edited_messages_come_as_edited_message_updates(tg: FakeTelegram) -> None:
    tg.push_message(user_id=11, chat_id=-100123, text="/retrain", edited=True)
    [update] = with_bot(tg, lambda bot: bot.get_updates())
    assert update.message is None
    assert update.edited_message.text == "/retrain"
    assert update.edited_message.chat.type == "supergroup"


def test_long_poll_returns_as_soon_as_an_update_arrives(tg: FakeTelegram) -> None:
    threading.Timer(0.2, tg.push_message, kwargs={"user_id": 1, "chat_id": 1, "text": "hi"}).start()
    started = time.monotonic()
    updates = with_bot(tg, lambda bot: bot.get_updates(timeout=5))
    assert [u.message.text for u in updates] == ["hi"]
    assert time.monotonic() - started < 3


def test_negative_offset_keeps_only_the_latest_updates(tg: FakeTelegram) -> None:
    for text in ("a", "b", "c"):
        tg.push_message(user_id=1, chat_id=1, text=text)
    updates = with_bot(tg, lambda bot: bot.get_updates(offset=-1))
    assert [u.message.text for u in updates] == ["c"]
    assert tg.pending_updates == 1


def test_delete_webhook_can_drop_pending_updates(tg: FakeTelegram) -> None:
    tg.push_message(user_id=1, chat_id=1, text="/retrain")
    with_bot(tg, lambda bot: bot.delete_webhook(drop_pending_updates=True))
    assert tg.pending_updates == 0


def test_commands_and_callback_answers_are_recorded(tg: FakeTelegram) -> None:
    pushed = tg.push_callback_query(user_id=2, chat_id=2, data="promote:7")

    async def use(bot: Bot) -> None:
        await bot.set_my_commands([("status", "Show status"), ("signals", "Latest signals")])
        [update] = await bot.get_updates()
        assert update.callback_query.data == "promote:7"
        await update.callback_query.answer("Promoted")

    with_bot(tg, use)
    assert [c["command"] for c in tg.commands] == ["status", "signals"]
    [answer] = tg.answered_callbacks
    assert answer["callback_query_id"] == pushed["callback_query"]["id"]
    assert answer["text"] == "Promoted"


def test_json_bodies_are_accepted(tg: FakeTelegram) -> None:
    request = urllib.request.Request(
        f"{tg.base_url}{tg.token}/sendMessage",
        data=json.dumps({"chat_id": 9, "text": "from json"}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=5) as response:
        answer = json.load(response)
    assert answer["ok"] is True
    assert answer["result"]["text"] == "from json"
    assert tg.sent_messages(chat_id=9)[0]["text"] == "from json"
