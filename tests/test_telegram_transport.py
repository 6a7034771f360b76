"""TelegramTransport: synchronous sends through real PTB, with outcomes the drainer acts on.

The integration tests drive the real python-telegram-bot client against the fake Bot API server.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import warnings
from collections.abc import Iterator

import pytest
from telegram.warnings import PTBDeprecationWarning

from signalcast.core.errors import ConfigError, TemporaryError
from signalcast.notifier.format import format_signal_html
from signalcast.notifier.telegram import (
    ConsoleTransport,
    PermanentFailure,
    RetryLater,
    SendResult,
    TelegramTransport,
    bot_api_base_url,
)
from tests.fakes.telegram_server import FakeTelegram

CHAT = "4242"


@pytest.fixture
def tg() -> Iterator[FakeTelegram]:
    with FakeTelegram() as server:
        yield server


@pytest.fixture
def transport(tg: FakeTelegram) -> Iterator[TelegramTransport]:
    with TelegramTransport(tg.token, tg.base_url, timeout=2.0, network_backoff=7.0) as sender:
        yield sender


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# -- delivery ----------------------------------------------------------------------------------


@pytest.mark.integration
def test_send_returns_the_message_id_and_the_text_arrives_as_html(
    tg: FakeTelegram, transport: TelegramTransport
) -> None:
    result = transport.send(CHAT, "<b>BTC/USDT</b>: 78% chance")
    [message] = tg.sent_messages(chat_id=CHAT)
    assert result == SendResult(message_id=message["message_id"])
    assert message["text"] == "<b>BTC/USDT</b>: 78% chance"
    assert message["parse_mode"] == "HTML"


@pytest.mark.integration
def test_a_silent_send_asks_telegram_for_no_notification(
    tg: FakeTelegram, transport: TelegramTransport
) -> None:
    transport.send(CHAT, "quiet", silent=True)
    transport.send(CHAT, "loud")
    quiet, loud = (call.params for call in tg.calls_to("sendMessage"))
    assert str(quiet.get("disable_notification")).lower() == "true"
    assert str(loud.get("disable_notification", "false")).lower() == "false"


@pytest.mark.integration
def test_one_transport_sends_many_times_on_its_own_loop(
    tg: FakeTelegram, transport: TelegramTransport
) -> None:
    ids = [transport.send(CHAT, f"alert {n}").message_id for n in range(3)]
    assert len(set(ids)) == 3
    assert [call.method for call in tg.calls] == ["sendMessage"] * 3  # no getMe round trip


@pytest.mark.integration
def test_a_formatted_signal_with_hostile_names_passes_telegrams_html_parser(
    tg: FakeTelegram, transport: TelegramTransport
) -> None:
    payload = {
        "asset": "A<B&C>/USDT", "target": "2pct_72", "pct": 0.02, "horizon": 6,
        "timeframe": "4h", "direction": "DOWN", "probability": 0.7, "threshold": 0.6,
        "model": "m<1>", "candle_time": "2024-05-01T12:00:00Z", "price": 1.0,
        "up_level": 1.02, "down_level": 0.98, "fallback": "x & y", "conflict": True,
    }  # fmt: skip
    transport.send(CHAT, format_signal_html(payload))
    assert tg.sent_messages()[0]["text"].startswith("<b>A&lt;B&amp;C&gt;/USDT</b>")


@pytest.mark.integration
def test_send_photo_records_a_photo_with_its_caption(
    tg: FakeTelegram, transport: TelegramTransport
) -> None:
    png = b"\x89PNG\r\n\x1a\n" + bytes(2048)
    result = transport.send(CHAT, "<b>chart</b>", photo=png)
    [photo] = tg.sent_photos(chat_id=CHAT)
    assert photo["message_id"] == result.message_id
    assert (photo["text"], photo["photo_size"]) == ("<b>chart</b>", len(png))


# -- failures ----------------------------------------------------------------------------------


@pytest.mark.integration
def test_flood_control_with_int_retry_after_means_retry_after_that_many_seconds(
    tg: FakeTelegram, transport: TelegramTransport, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("PTB_TIMEDELTA", raising=False)  # PTB reports an int
    tg.fail("sendMessage", status=429, retry_after=2)
    with warnings.catch_warnings():
        warnings.simplefilter("error", PTBDeprecationWarning)  # and we read it without a warning
        with pytest.raises(RetryLater) as raised:
            transport.send(CHAT, "hi")
    assert raised.value.seconds == 2.0
    assert not raised.value.maybe_delivered
    assert isinstance(raised.value, TemporaryError)
    assert transport.send(CHAT, "hi again").message_id  # the transport still works


@pytest.mark.integration
def test_flood_control_with_timedelta_retry_after_is_read_too(
    tg: FakeTelegram, transport: TelegramTransport, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PTB_TIMEDELTA", "true")  # PTB reports a timedelta
    tg.fail("sendMessage", status=429, retry_after=3)
    with pytest.raises(RetryLater) as raised:
        transport.send(CHAT, "hi")
    assert raised.value.seconds == 3.0


@pytest.mark.integration
@pytest.mark.parametrize("status", [500, 502])
def test_server_errors_mean_retry_after_the_network_backoff(
    tg: FakeTelegram, transport: TelegramTransport, status: int
) -> None:
    tg.fail("sendMessage", status=status)
    with pytest.raises(RetryLater) as raised:
        transport.send(CHAT, "hi")
    assert raised.value.seconds == 7.0
    assert tg.sent_messages() == []


@pytest.mark.integration
def test_outage_means_retry_later_until_it_ends(
    tg: FakeTelegram, transport: TelegramTransport
) -> None:
    tg.outage(True)
    for _ in range(2):
        with pytest.raises(RetryLater):
            transport.send(CHAT, "hi")
    tg.outage(False)
    transport.send(CHAT, "hi")
    assert len(tg.sent_messages()) == 1


@pytest.mark.integration
@pytest.mark.parametrize(
    ("status", "description"),
    [(400, None), (403, None), (400, "Bad Request: message is too long")],
)
def test_refusals_are_permanent_failures(
    tg: FakeTelegram, transport: TelegramTransport, status: int, description: str | None
) -> None:
    tg.fail("sendMessage", status=status, description=description)
    with pytest.raises(PermanentFailure) as raised:
        transport.send(CHAT, "hi")
    assert not isinstance(raised.value, TemporaryError)
    assert raised.value.reason


@pytest.mark.integration
def test_text_telegram_cannot_parse_is_a_permanent_failure(transport: TelegramTransport) -> None:
    with pytest.raises(PermanentFailure, match="(?i)can't parse entities"):
        transport.send(CHAT, "BTC<USDT")


@pytest.mark.integration
def test_a_rejected_token_is_a_permanent_failure(tg: FakeTelegram) -> None:
    with TelegramTransport("999:not-the-token", tg.base_url) as transport:
        with pytest.raises(PermanentFailure):
            transport.send(CHAT, "hi")


@pytest.mark.integration
def test_an_answer_slower_than_the_timeout_means_retry_later_maybe_delivered(
    tg: FakeTelegram,
) -> None:
    tg.fail("sendMessage", delay=0.8)
    with TelegramTransport(tg.token, tg.base_url, timeout=0.2) as transport:
        with pytest.raises(RetryLater) as raised:
            transport.send(CHAT, "slow")
        assert raised.value.maybe_delivered
        assert transport.send(CHAT, "next").message_id  # the loop survived the timeout


@pytest.mark.integration
def test_an_unreachable_server_means_retry_later() -> None:
    url = f"http://127.0.0.1:{free_port()}/bot"
    with TelegramTransport("1:abcdefghij", url, timeout=1.0) as transport:
        with pytest.raises(RetryLater):
            transport.send(CHAT, "hi")


@pytest.mark.integration
def test_a_refused_connection_or_a_server_error_was_not_delivered(tg: FakeTelegram) -> None:
    url = f"http://127.0.0.1:{free_port()}/bot"
    with TelegramTransport("1:abcdefghij", url, timeout=1.0) as transport:
        with pytest.raises(RetryLater) as refused:
            transport.send(CHAT, "hi")
    assert not refused.value.maybe_delivered and not refused.value.flood
    tg.fail("sendMessage", 502)
    with TelegramTransport(tg.token, tg.base_url, timeout=1.0) as transport:
        with pytest.raises(RetryLater) as answered:
            transport.send(CHAT, "hi")
    assert not answered.value.maybe_delivered  # Telegram answered: it did not take it
    assert tg.sent_messages(CHAT) == []


@pytest.mark.integration
def test_a_429_is_flood_control(tg: FakeTelegram, transport: TelegramTransport) -> None:
    tg.fail("sendMessage", status=429, retry_after=1)
    with pytest.raises(RetryLater) as raised:
        transport.send(CHAT, "hi")
    assert raised.value.flood and not raised.value.maybe_delivered


# -- token hygiene -----------------------------------------------------------------------------


@pytest.mark.integration
def test_the_token_never_appears_in_logs_or_exceptions(
    tg: FakeTelegram, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    secret = tg.token.partition(":")[2]
    errors: list[Exception] = []
    with TelegramTransport(tg.token, tg.base_url, timeout=0.2) as transport:
        transport.send(CHAT, "ok")
        transport.send(CHAT, "ok", photo=b"png")
        for status in (429, 400, 403, 500):
            tg.fail("sendMessage", status=status)
            with pytest.raises((RetryLater, PermanentFailure)) as raised:
                transport.send(CHAT, "fails")
            errors.append(raised.value)
        tg.fail("sendMessage", delay=0.6)
        with pytest.raises(RetryLater) as raised:
            transport.send(CHAT, "times out")
        errors.append(raised.value)
        shown = [repr(transport)]
    with TelegramTransport("7:wrong-token-secret", tg.base_url) as transport:
        with pytest.raises(PermanentFailure) as raised:
            transport.send(CHAT, "bad token")
        errors.append(raised.value)

    assert any(r.name.startswith(("telegram", "httpcore")) for r in caplog.records)  # PTB spoke
    shown += [r.getMessage() for r in caplog.records] + [caplog.text]
    for error in errors:
        assert error.__cause__ is None and error.__suppress_context__
        shown += [str(error), repr(error), str(error.args)]
    for text in shown:
        assert secret not in text
        assert "wrong-token-secret" not in text


def test_httpx_request_logging_is_raised_to_warning() -> None:
    assert logging.getLogger("httpx").getEffectiveLevel() >= logging.WARNING


# -- lifecycle and configuration ---------------------------------------------------------------


@pytest.mark.integration
def test_close_is_idempotent_and_a_closed_transport_refuses_to_send(tg: FakeTelegram) -> None:
    transport = TelegramTransport(tg.token, tg.base_url)
    transport.send(CHAT, "hi")
    transport.close()
    transport.close()
    with pytest.raises(RuntimeError, match="closed"):
        transport.send(CHAT, "hi")


def test_send_from_async_code_is_refused_with_a_hint() -> None:
    async def main() -> None:
        with TelegramTransport("1:abcdefghij") as transport:
            transport.send(CHAT, "hi")

    with pytest.raises(RuntimeError, match="synchronous"):
        asyncio.run(main())


def test_an_empty_token_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="token"):
        TelegramTransport("")


@pytest.mark.parametrize(
    ("configured", "expected"),
    [
        (None, "https://api.telegram.org/bot"),
        ("", "https://api.telegram.org/bot"),
        ("http://127.0.0.1:8081", "http://127.0.0.1:8081/bot"),
        ("http://127.0.0.1:8081/", "http://127.0.0.1:8081/bot"),
        ("http://127.0.0.1:8081/bot", "http://127.0.0.1:8081/bot"),
        ("https://api.telegram.org/bot{token}/test", "https://api.telegram.org/bot{token}/test"),
    ],
)
def test_bot_api_base_url_accepts_a_bare_server_address(
    configured: str | None, expected: str
) -> None:
    assert bot_api_base_url(configured) == expected


def test_console_transport_prints_plain_text_and_counts_messages() -> None:
    printed: list[str] = []
    with ConsoleTransport(printed.append) as console:
        first = console.send("42", "BTC/USDT: 78% chance")
        second = console.send("42", "chart", photo=b"1234")
    assert (first, second) == (SendResult(1), SendResult(2))
    assert printed[0] == "[alert -> 42] BTC/USDT: 78% chance"
    assert printed[1].endswith("[chart: 4 bytes]")
    assert ConsoleTransport.html is False and TelegramTransport.html is True
