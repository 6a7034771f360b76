"""Confirm buttons of the dangerous admin commands and the registered command menu: the real
python-telegram-bot Application polling the fake Bot API server, presses pushed as Telegram
pushes them (``callback_query`` updates), a real Redis broker (no worker: a confirmed retrain
leaves its train tasks on the queue, where the test counts them).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import pytest
import redis
from sqlmodel import select

from signalcast.bot.app import build_application, serve
from signalcast.bot.handlers import COMMANDS
from signalcast.config import Settings, load_settings
from signalcast.db.engine import init_db, session_scope
from signalcast.db.tables import ModelEvent, ModelVersion
from signalcast.lifecycle.train import train_model
from signalcast.tasks.app import app
from tests.conftest import REDIS_URL, SMALL_CONFIG, seed_history, write_config
from tests.fakes.broker import forget_broker, use_broker
from tests.fakes.telegram_server import FakeTelegram

pytestmark = pytest.mark.integration

ADMIN, SECOND_ADMIN, VIEWER = 2001, 2003, 2002
GROUP = -7007
CONFIG = {
    "assets": [{"symbol": "BTC/USDT"}],
    "targets": [{"pct": 0.01, "horizon": 24, "alert_threshold": 0.6},
                {"pct": 0.02, "horizon": 24, "alert_threshold": 0.6}],
    "alerts": {"console": False, "charts": False},
    "bot": {"poll_timeout_seconds": 1, "confirm_seconds": 30, "health_check_minutes": 0,
            "progress_timeout_minutes": 0.1},  # no worker here: the retrain reply gives up
    "models": SMALL_CONFIG["models"],
}


@dataclass
class System:
    tg: FakeTelegram
    engine: Any
    settings: Settings
    application: Any


@pytest.fixture(scope="module")
def system(tmp_path_factory) -> Iterator[System]:
    folder = tmp_path_factory.mktemp("confirm")
    config = write_config(folder / "bot.yaml", CONFIG)
    db_url = f"sqlite:///{folder / 'bot.db'}"
    redis.Redis.from_url(REDIS_URL).flushdb()
    with FakeTelegram() as tg:
        settings = load_settings(
            config, database_url=db_url, broker_url=REDIS_URL, telegram_token=tg.token,
            telegram_api_url=tg.base_url, telegram_chat_ids=str(GROUP),
            telegram_admins=f"{ADMIN},{SECOND_ADMIN}", telegram_viewers=str(VIEWER))
        engine = init_db(db_url)
        now = seed_history(engine, settings)  # v1 (champion), then v2 (challenger) of 1pct_24
        train_model(engine, settings, "BTC/USDT", "1pct_24", "lightgbm", now=now)
        now = seed_history(engine, settings, days=151)
        train_model(engine, settings, "BTC/USDT", "1pct_24", "lightgbm", now=now)
        use_broker(settings)
        stop = threading.Event()
        application = build_application(settings, engine)
        bot = threading.Thread(target=lambda: asyncio.run(serve(application, stop)), daemon=True)
        bot.start()
        try:
            tg.wait_for(lambda t: bool(t.calls_to("getUpdates")), timeout=20)
            yield System(tg, engine, settings, application)
        finally:
            stop.set()
            bot.join(20)
            forget_broker(app)
    assert not bot.is_alive(), "the bot did not stop"


def question(tg: FakeTelegram, user: int, text: str, chat: int | None = None) -> dict:
    """Send a command and return the bot's question (a message with Confirm / Cancel)."""
    chat = user if chat is None else chat
    before = len(tg.sent_messages(chat))
    tg.push_message(user, chat, text)
    tg.wait_for(lambda t: len(t.sent_messages(chat)) > before, timeout=20)
    asked = tg.sent_messages(chat)[before]
    asked["reply_markup"] = tg.bot_message(asked["message_id"]).get("reply_markup")
    assert asked["reply_markup"] is not None, asked["text"]
    return asked


def buttons(asked: dict) -> dict[str, str]:
    """Button text -> callback data."""
    [row] = asked["reply_markup"]["inline_keyboard"]
    return {b["text"]: b["callback_data"] for b in row}


def press(tg: FakeTelegram, user: int, asked: dict, button: str) -> dict:
    """Press ``button`` on the question as ``user``; return the bot's answer to the press."""
    before = len(tg.answered_callbacks)
    update = tg.push_callback_query(user, asked["chat_id"], buttons(asked)[button],
                                    message_id=asked["message_id"])
    tg.wait_for(lambda t: len(t.answered_callbacks) > before, timeout=20)
    [answer] = [a for a in tg.answered_callbacks
                if a["callback_query_id"] == update["callback_query"]["id"]]
    return answer


def outcome(tg: FakeTelegram, asked: dict) -> str:
    """The question's last line once the bot edited it to what became of it."""
    tg.wait_for(lambda t: not t.message_text(asked["message_id"]).endswith(
        "or nothing happens.</i>"), timeout=20)
    return tg.message_text(asked["message_id"]).splitlines()[-1]


def model_events(engine) -> list[ModelEvent]:
    with session_scope(engine, readonly=True) as session:
        return list(session.exec(select(ModelEvent).order_by(ModelEvent.id)).all())


def roles(engine) -> dict[int, str]:
    with session_scope(engine, readonly=True) as session:
        return {v.version: v.role for v in session.exec(select(ModelVersion).where(
            ModelVersion.target == "1pct_24")).all()}


def queued_train_tasks() -> int:
    client = redis.Redis.from_url(REDIS_URL)
    return sum(client.llen(key) for key in client.scan_iter("train*")
               if client.type(key) == b"list")


def test_the_command_menu_is_registered_for_viewers_and_for_each_admin(system):
    tg = system.tg
    viewers = [c.name for c in COMMANDS if not c.admin]
    assert [c["command"] for c in tg.commands_for()] == viewers
    for admin in (ADMIN, SECOND_ADMIN):
        menu = tg.commands_for({"type": "chat", "chat_id": admin})
        assert [c["command"] for c in menu] == [c.name for c in COMMANDS]
    assert "promote" in [c.name for c in COMMANDS] and "promote" not in viewers


def test_promote_asks_first_a_viewer_press_is_refused_and_a_double_confirm_runs_once(system):
    tg, engine = system.tg, system.engine
    events = len(model_events(engine))
    asked = question(tg, ADMIN, "/promote BTC/USDT 1pct_24 lightgbm:2 canary")
    assert asked["text"].startswith("<b>Promote BTC/USDT 1pct_24?</b>\nlightgbm v2 "
                                    "(challenger) becomes the champion, replacing lightgbm v1")
    assert "Reason: canary" in asked["text"] and "Confirm within 30 s" in asked["text"]
    assert set(buttons(asked)) == {"Confirm", "Cancel"}
    assert len(model_events(engine)) == events  # nothing ran yet

    refused = press(tg, VIEWER, asked, "Confirm")
    assert refused["text"] == "Only admins may confirm /promote." and refused["show_alert"]
    assert len(model_events(engine)) == events

    before = len(tg.sent_messages(ADMIN))
    assert press(tg, SECOND_ADMIN, asked, "Confirm")["text"] == "Confirmed."
    tg.wait_for(lambda t: len(t.sent_messages(ADMIN)) > before, timeout=20)
    assert tg.sent_messages(ADMIN)[before]["text"].startswith(
        "BTC/USDT 1pct_24: lightgbm v2 is the champion now (was lightgbm v1).")
    assert outcome(tg, asked) == "<i>Confirmed by Tester.</i>"
    again = press(tg, ADMIN, asked, "Confirm")
    assert again["text"].startswith("This question is no longer open")
    [promoted] = model_events(engine)[events:]
    assert (promoted.event, promoted.actor, promoted.reason) == (
        "promoted", f"telegram:{ADMIN}", "canary")  # who typed it; the confirmer is logged
    assert roles(engine)[2] == "champion"


def test_cancel_and_an_expired_question_run_nothing(system):
    tg, engine = system.tg, system.engine
    events = len(model_events(engine))
    asked = question(tg, ADMIN, "/rollback BTC/USDT 1pct_24", chat=GROUP)
    assert asked["text"].startswith("<b>Roll back BTC/USDT 1pct_24?</b>")
    assert press(tg, ADMIN, asked, "Cancel")["text"] == "Cancelled."
    assert outcome(tg, asked) == "<i>Cancelled by Tester: not run.</i>"
    assert press(tg, ADMIN, asked, "Confirm")["text"].startswith("This question is no longer")

    asked = question(tg, ADMIN, "/rollback BTC/USDT 1pct_24", chat=GROUP)
    access = system.application.bot_data["access"]
    real_now = access.now
    access.now = lambda: real_now() + timedelta(seconds=31)  # the bot's clock, 31 s later
    try:
        late = press(tg, ADMIN, asked, "Confirm")
    finally:
        access.now = real_now
    assert late["text"].startswith("Too late: this question expired") and late["show_alert"]
    assert outcome(tg, asked) == "<i>Expired: not run.</i>"
    assert len(model_events(engine)) == events


def test_a_press_the_bot_never_asked_for_is_answered_and_ignored(system):
    """What a press after a restart looks like: a token this run does not hold."""
    tg, engine = system.tg, system.engine
    events = len(model_events(engine))
    asked = question(tg, ADMIN, "/rollback BTC/USDT 1pct_24")
    forged = {**asked, "reply_markup": {"inline_keyboard": [[
        {"text": "Confirm", "callback_data": "confirm:not-a-pending-token:yes"}]]}}
    assert press(tg, ADMIN, forged, "Confirm")["text"].startswith("This question is no longer")
    assert len(model_events(engine)) == events
    assert press(tg, ADMIN, asked, "Cancel")["text"] == "Cancelled."


def test_bad_arguments_are_answered_before_any_question(system):
    tg = system.tg
    before = len(tg.sent_messages(ADMIN))
    tg.push_message(ADMIN, ADMIN, "/promote BTC/USDT 1pct_24 lightgbm:9")
    tg.wait_for(lambda t: len(t.sent_messages(ADMIN)) > before, timeout=20)
    answer = tg.sent_messages(ADMIN)[before]
    assert answer["text"].startswith("Usage: <code>/promote ASSET TARGET VERSION [REASON]")
    assert "Known: lightgbm:1, lightgbm:2" in answer["text"]
    assert "reply_markup" not in tg.bot_message(answer["message_id"])  # no buttons


def test_a_retrain_of_several_targets_asks_and_a_confirmed_one_queues_one_task_each(system):
    tg = system.tg
    queued = queued_train_tasks()
    asked = question(tg, ADMIN, "/retrain BTC/USDT")
    assert asked["text"].startswith("<b>Retrain BTC/USDT: all 2 targets?</b>")
    assert queued_train_tasks() == queued
    before = len(tg.sent_messages(ADMIN))
    press(tg, ADMIN, asked, "Confirm")
    tg.wait_for(lambda t: len(t.sent_messages(ADMIN)) > before, timeout=20)
    reply = tg.sent_messages(ADMIN)[before]["text"]
    assert reply.splitlines()[:3] == ["<b>Retrain BTC/USDT</b>", "1pct_24 lightgbm: queued",
                                      "2pct_24 lightgbm: queued"]
    assert queued_train_tasks() == queued + 2
