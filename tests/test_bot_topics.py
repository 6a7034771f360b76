"""Forum topics: a chat listed in ``bot.topics`` gets its alerts in that topic
(``message_thread_id``), through the transport the drain uses, against the fake Bot API."""

from __future__ import annotations

import pytest

from signalcast.config import load_settings
from signalcast.core.errors import ConfigError
from signalcast.notifier.transports import transports_for
from tests.conftest import write_config
from tests.fakes.telegram_server import FakeTelegram

FORUM, PLAIN = -1001234567890, -5005


def test_a_forum_chat_gets_alerts_and_charts_in_its_topic_and_other_chats_do_not(tmp_path):
    config = write_config(tmp_path / "topics.yaml", {
        "assets": [{"symbol": "BTC/USDT"}], "bot": {"topics": {FORUM: 7}}})  # YAML: a number
    with FakeTelegram() as tg:
        settings = load_settings(config, database_url=f"sqlite:///{tmp_path / 't.db'}",
                                 broker_url=None, telegram_token=tg.token,
                                 telegram_api_url=tg.base_url)
        assert settings.bot.topics == {str(FORUM): 7}
        route = transports_for(settings)
        route(str(FORUM)).send(str(FORUM), "<b>BTC/USDT</b> in the topic")
        route(str(FORUM)).send(str(FORUM), "chart", photo=b"\x89PNG fake")
        route(str(PLAIN)).send(str(PLAIN), "<b>BTC/USDT</b> in the main thread")
        forum = tg.sent_messages(FORUM)
        assert [tg.bot_message(m["message_id"])["message_thread_id"] for m in forum] == [7, 7]
        assert [m["kind"] for m in forum] == ["text", "photo"]
        [plain] = tg.sent_messages(PLAIN)
        assert "message_thread_id" not in tg.bot_message(plain["message_id"])
        assert "message_thread_id" not in tg.calls_to("sendMessage")[-1].params


@pytest.mark.parametrize(("topics", "problem"), [
    ({"general": 5}, "a key must be a numeric Telegram chat id"),
    ({"-100123": 0}, "a message_thread_id is a positive number"),
])
def test_a_wrong_topic_setting_is_refused_at_start_saying_what_to_fix(tmp_path, topics,
                                                                      problem):
    config = write_config(tmp_path / "bad.yaml", {"assets": [{"symbol": "BTC/USDT"}],
                                                   "bot": {"topics": topics}})
    with pytest.raises(ConfigError, match=problem):
        load_settings(config, database_url="sqlite://", broker_url=None)
