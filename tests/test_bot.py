"""The Telegram bot end to end: the real python-telegram-bot Application polling the fake Bot
API server, a real `signalcast worker` process on the real Redis, one SQLite file shared by all.

The bot and the worker are started once for the module; each test speaks to the bot as a
Telegram user would (``push_message``) and reads the bot's answers on the fake server.
"""

from __future__ import annotations

import asyncio
import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import redis
from sqlalchemy import func
from sqlmodel import select

from signalcast.alerts.rules import queue_signal_alerts
from signalcast.bot.app import build_application, serve
from signalcast.config import Settings, load_settings
from signalcast.db.engine import init_db, session_scope
from signalcast.db.tables import ModelEvent, TaskRun
from signalcast.lifecycle.train import train_model
from signalcast.tasks import tasks
from signalcast.tasks.app import app
from tests.conftest import REDIS_URL, SMALL_CONFIG, seed_history, write_config
from tests.fakes.broker import use_broker
from tests.fakes.telegram_checks import gaps, signal_counts
from tests.fakes.telegram_server import FakeTelegram
from tests.processes import signalcast_env, workers

pytestmark = pytest.mark.integration

ADMIN, VIEWER = 1001, 1002  # user ids; each also talks to the bot in its private chat
GROUP, OTHER = -5005, -6006  # the alert chats; an admin types /pause in GROUP
CONFIG = {
    "assets": [{"symbol": "BTC/USDT"}],
    "targets": [{"pct": 0.01, "horizon": 24, "alert_threshold": 0.6}],
    # the alerts here are of 2024 candles: the age limit is tested in test_delivery_drills
    "alerts": {"console": False, "charts": False, "chat_interval_seconds": 0.05,
               "max_signal_age_seconds": 10**9},
    "bot": {"poll_timeout_seconds": 1, "command_max_age_seconds": 60},
    # about the bot, not skill: every target may alert (the skill gate is tested apart)
    "models": {**SMALL_CONFIG["models"], "alert_without_skill": ["*"]},
}
HELP_HEADLINE = "<b>signalcast bot</b>"


@dataclass
class System:
    tg: FakeTelegram
    engine: Any
    settings: Settings


@pytest.fixture(scope="module")
def system(tmp_path_factory) -> Iterator[System]:
    folder = tmp_path_factory.mktemp("bot")
    config = write_config(folder / "bot.yaml", CONFIG)
    db_url = f"sqlite:///{folder / 'bot.db'}"
    redis.Redis.from_url(REDIS_URL).flushdb()
    chats = f"{GROUP},{OTHER}"
    with FakeTelegram() as tg:
        settings = load_settings(
            config, database_url=db_url, broker_url=REDIS_URL, telegram_token=tg.token,
            telegram_api_url=tg.base_url, telegram_chat_ids=chats,
            telegram_admins=str(ADMIN), telegram_viewers=str(VIEWER))
        engine = init_db(db_url)
        now = seed_history(engine, settings)  # v1 (champion), then v2 (challenger)
        train_model(engine, settings, "BTC/USDT", "1pct_24", "lightgbm", now=now)
        now = seed_history(engine, settings, days=151)
        train_model(engine, settings, "BTC/USDT", "1pct_24", "lightgbm", now=now)
        use_broker(settings)
        env = signalcast_env(config, db_url, REDIS_URL, SIGNALCAST_TELEGRAM_TOKEN=tg.token,
                             SIGNALCAST_TELEGRAM_API_URL=tg.base_url,
                             SIGNALCAST_TELEGRAM_CHAT_IDS=chats)
        with workers(env, app, count=1, log_dir=folder):
            stop = threading.Event()
            application = build_application(settings, engine)
            bot = threading.Thread(target=lambda: asyncio.run(serve(application, stop)),
                                   daemon=True)
            bot.start()
            try:
                tg.wait_for(lambda t: bool(t.calls_to("getUpdates")), timeout=20)
                yield System(tg, engine, settings)
            finally:
                stop.set()
                bot.join(20)
        assert not bot.is_alive(), "the bot did not stop"


def ask(tg: FakeTelegram, user: int, text: str, *, chat: int | None = None,
        **push: Any) -> str:
    """Send ``text`` as ``user`` and return the bot's answer (raw HTML)."""
    chat = user if chat is None else chat
    before = len(tg.sent_messages(chat))
    tg.push_message(user, chat, text, **push)
    tg.wait_for(lambda t: len(t.sent_messages(chat)) > before, timeout=20)
    return tg.sent_messages(chat)[before]["text"]


def confirmed(tg: FakeTelegram, user: int, text: str) -> str:
    """Send a command that asks for confirmation, press its Confirm button as ``user``, and
    return the bot's answer after the press (raw HTML)."""
    before = len(tg.sent_messages(user))
    tg.push_message(user, user, text)
    tg.wait_for(lambda t: len(t.sent_messages(user)) > before, timeout=20)
    question = tg.sent_messages(user)[before]
    [[yes, _no]] = tg.bot_message(question["message_id"])["reply_markup"]["inline_keyboard"]
    tg.push_callback_query(user, user, yes["callback_data"], message_id=question["message_id"])
    tg.wait_for(lambda t: len(t.sent_messages(user)) > before + 1, timeout=20)
    return tg.sent_messages(user)[before + 1]["text"]


def settle(tg: FakeTelegram) -> None:
    """Wait until the bot handled every update pushed so far (it answers them in order)."""
    def helps(t: FakeTelegram) -> int:
        return sum(m["text"].startswith(HELP_HEADLINE) for m in t.sent_messages(ADMIN))

    before = helps(tg)
    tg.push_message(ADMIN, ADMIN, "/help")
    tg.wait_for(lambda t: helps(t) > before, timeout=20)


def train_runs(engine) -> int:
    with session_scope(engine, readonly=True) as session:
        return session.exec(select(func.count()).select_from(TaskRun).where(
            TaskRun.name == "train")).one()


def model_events(engine) -> list[ModelEvent]:
    with session_scope(engine, readonly=True) as session:
        return list(session.exec(select(ModelEvent).order_by(ModelEvent.id)).all())


def test_an_admin_retrain_starts_train_tasks_and_its_reply_is_edited_to_completion(system):
    tg, engine = system.tg, system.engine
    seed_history(engine, system.settings, days=152)  # a day of new candles: a real fit
    before = train_runs(engine)
    first = ask(tg, ADMIN, "/retrain BTC/USDT")
    assert first.splitlines()[:2] == ["<b>Retrain BTC/USDT</b>", "1pct_24 lightgbm: queued"]
    reply_id = tg.sent_messages(ADMIN)[-1]["message_id"]
    tg.wait_for(lambda t: "Finished in" in t.message_text(reply_id), timeout=120)
    final = tg.message_text(reply_id)
    assert re.search(r"1pct_24 lightgbm: done: v3, AUC 0\.\d{3} \(challenger\)", final), final
    assert "1 trained, 0 failed" in final
    with session_scope(engine, readonly=True) as session:
        [run] = session.exec(select(TaskRun).where(
            TaskRun.task_id.startswith("train:BTC/USDT:1pct_24:lightgbm:"),
            TaskRun.started_at > datetime.now(UTC) - timedelta(minutes=5))).all()
    assert run.status == "done" and train_runs(engine) == before + 1
    edits = [c for c in tg.calls_to("editMessageText") if c.params["message_id"] == reply_id]
    assert edits and {c.status for c in edits} == {200}  # never an identical, refused edit
    assert all(gap >= 0.95 for gap in gaps(edits))  # at most about one edit a second
    order = ["queued", "running", "done"]
    states = [order.index(re.search(r"lightgbm: (\w+)", c.params["text"])[1]) for c in edits]
    assert states == sorted(states) and states[-1] == 2  # forward only, ending done


def test_an_unauthorised_user_gets_one_polite_refusal_and_nothing_runs(system, caplog):
    tg, engine = system.tg, system.engine
    stranger = 4242
    runs, events = train_runs(engine), len(model_events(engine))
    for text in ("/retrain BTC/USDT", "/promote BTC/USDT 1pct_24 1", "/status"):
        tg.push_message(stranger, stranger, text)
    settle(tg)
    [refusal] = tg.sent_messages(stranger)
    assert refusal["text"].startswith("Sorry, this bot only answers the people who run")
    assert "(4242)" in refusal["text"]
    assert train_runs(engine) == runs and len(model_events(engine)) == events
    refused = [r.getMessage() for r in caplog.records if "refused" in r.getMessage()]
    assert refused == [f"refused /{c} from unknown user 4242 in chat 4242"
                       for c in ("retrain", "promote", "status")]


def test_a_viewer_can_read_signals_and_models_but_not_retrain(system):
    tg, engine = system.tg, system.engine
    runs = train_runs(engine)
    assert ask(tg, VIEWER, "/retrain BTC/USDT").startswith("Only admins may use /retrain.")
    signals = ask(tg, VIEWER, "/signals")
    assert signals.startswith("<b>Latest signals</b>\nBTC/USDT 1pct_24: ")
    models = ask(tg, VIEWER, "/models BTC/USDT")
    assert "<b>BTC/USDT 1pct_24</b>" in models and re.search(r"lightgbm v\d champion", models)
    assert train_runs(engine) == runs


def test_an_edited_retrain_does_nothing(system):
    tg, engine = system.tg, system.engine
    runs, answers = train_runs(engine), len(tg.sent_messages(ADMIN))
    tg.push_message(ADMIN, ADMIN, "/retrain BTC/USDT", edited=True)
    settle(tg)
    assert len(tg.sent_messages(ADMIN)) == answers + 1  # only the answer to /help
    assert train_runs(engine) == runs


def test_a_command_older_than_the_age_limit_is_answered_as_expired_and_not_run(system):
    tg, engine = system.tg, system.engine
    runs = train_runs(engine)
    sent_at = datetime.now(UTC) - timedelta(minutes=5)
    answer = ask(tg, ADMIN, "/retrain BTC/USDT", date=sent_at)
    assert answer.startswith(f"Your /retrain of {sent_at:%H:%M:%S} UTC arrived while I was away")
    assert "has expired; it was not run" in answer
    settle(tg)
    assert train_runs(engine) == runs


@pytest.mark.parametrize(("command", "usage", "problem", "choices"), [
    ("/retrain XRP/USDT", "/retrain ASSET [TARGET] [FAMILY]", "Unknown asset 'XRP/USDT'.",
     "Known: BTC/USDT"),
    ("/retrain BTC/USDT 3pct_9", "/retrain ASSET [TARGET] [FAMILY]",
     "Unknown target '3pct_9'.", "Known: 1pct_24"),
    ("/retrain BTC/USDT 1pct_24 lgbm", "/retrain ASSET [TARGET] [FAMILY]",
     "Unknown model family 'lgbm'. Did you mean 'lightgbm'?", "Known: hmm, "),
    ("/promote BTC/USDT 1pct_24 lightgbm:9", "/promote ASSET TARGET VERSION [REASON]",
     "Unknown version of BTC/USDT 1pct_24 'lightgbm:9'.", "Known: lightgbm:1, lightgbm:2"),
    ("/promote BTC/USDT", "/promote ASSET TARGET VERSION [REASON]",
     "expected 3+ argument(s), got 1", ""),
    ("/subscribe DOGE", "/subscribe [ASSET|TARGET|KIND[:silent]] ...",
     "Unknown asset, target or alert kind 'DOGE'.",
     "Known: 1pct_24, BTC/USDT, model, outcome, signal, summary, system"),
])
def test_bad_arguments_get_the_usage_line_and_the_valid_choices(system, command, usage,
                                                                 problem, choices):
    answer = ask(system.tg, ADMIN, command)
    first, second = answer.split("\n", 1)
    assert first == f"Usage: <code>{usage}</code>"
    assert second.startswith(problem) and choices in second


def test_pause_stops_this_chats_alerts_and_resume_restores_them(system):
    tg, engine, settings = system.tg, system.engine, system.settings
    candle = datetime(2024, 6, 1, 12, tzinfo=UTC)

    def signal_at(hours: int) -> None:
        payload = {"asset": "BTC/USDT", "target": "1pct_24", "pct": 0.01, "horizon": 24,
                   "timeframe": "1h", "direction": "UP", "probability": 0.8, "threshold": 0.6,
                   "model": "lightgbm v2", "price": 100.0, "up_level": 101.0,
                   "down_level": 99.0, "candle_time": (candle + timedelta(hours=hours))
                   .isoformat()}
        with session_scope(engine) as session:
            queue_signal_alerts(session, settings, payload)
        tasks.send_alerts.delay().get(timeout=60)  # the alerts worker drains the outbox

    def signals_to(chat: int) -> list[tuple]:
        return [key[1:] for key in signal_counts(tg) if key[0] == str(chat)]

    assert ask(tg, ADMIN, "/pause", chat=GROUP).startswith("Alerts to this chat are paused")
    signal_at(0)
    assert signals_to(OTHER) == [("BTC/USDT", "1pct_24", "2024-06-01 12:00")]
    assert signals_to(GROUP) == []
    assert ask(tg, ADMIN, "/resume", chat=GROUP).startswith("This chat receives: signal on")
    signal_at(25)
    assert signals_to(GROUP) == [("BTC/USDT", "1pct_24", "2024-06-02 13:00")]
    assert len(signals_to(OTHER)) == 2 and set(signal_counts(tg).values()) == {1}


def test_status_shows_workers_queue_depths_last_tick_and_alerts_today(system):
    answer = ask(system.tg, ADMIN, "/status")
    assert re.search(r"^Workers: 1 \(w0@", answer, re.M), answer
    assert re.search(r"^Queues: predict \d+, train \d+, alerts \d+$", answer, re.M), answer
    assert "Last tick: never" in answer and "Champions: 1 of 1" in answer
    assert re.search(r"^Alerts today: .*\d+ sent", answer, re.M), answer


def test_promote_and_rollback_from_the_bot_are_audited_and_announced(system):
    tg, engine = system.tg, system.engine
    answer = confirmed(tg, ADMIN, "/promote BTC/USDT 1pct_24 lightgbm:3 canary run")
    assert answer.startswith("BTC/USDT 1pct_24: lightgbm v3 is the champion now "
                             "(was lightgbm v1).")
    promoted = model_events(engine)[-1]
    assert (promoted.event, promoted.actor, promoted.reason) == (
        "promoted", f"telegram:{ADMIN}", "canary run")
    assert f"model event #{promoted.id}" in answer
    tg.wait_for(lambda t: any(m["text"].startswith("<b>Model promoted: BTC/USDT 1pct_24</b>")
                              for m in t.sent_messages(OTHER)), timeout=30)

    answer = confirmed(tg, ADMIN, "/rollback BTC/USDT 1pct_24")
    assert answer.startswith("BTC/USDT 1pct_24: rolled back to lightgbm v1 (from lightgbm v3)")
    rolled = model_events(engine)[-1]
    assert (rolled.event, rolled.from_label, rolled.to_label) == (
        "rolled_back", "lightgbm v3", "lightgbm v1")
