"""The outbox drainer against the fake Bot API server, through the real TelegramTransport:
every alert once per chat, 429 waited out, outages survived, 400 not retried, rate limits kept,
charts sent as photos, paused chats skipped."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlmodel import select

from signalcast.alerts.drain import SendRateLimiter, drain_outbox
from signalcast.alerts.rules import queue_signal_alerts
from signalcast.alerts.subscriptions import pause_alerts, resume_alerts, subscribe
from signalcast.config import load_settings
from signalcast.db.engine import init_db, session_scope
from signalcast.db.tables import AlertOutbox
from signalcast.notifier.format import format_alert
from signalcast.notifier.telegram import ConsoleTransport, SendResult, TelegramTransport
from tests.conftest import SMALL_CONFIG, seed_history, write_config
from tests.fakes.telegram_checks import deliveries, gaps, signal_counts
from tests.fakes.telegram_server import FakeTelegram

pytestmark = pytest.mark.integration  # a local HTTP server and real client

PRIVATE, GROUP = "101", "-202"
T0 = datetime(2024, 3, 1, 12, tzinfo=UTC)
OLD_SIGNALS_MAY_GO = 10**9  # these tests' signals are from 2024; the age limit is tested apart


@pytest.fixture
def tg() -> Iterator[FakeTelegram]:
    with FakeTelegram() as server:
        yield server


@pytest.fixture
def transport(tg: FakeTelegram) -> Iterator[TelegramTransport]:
    with TelegramTransport(tg.token, tg.base_url, timeout=2.0, network_backoff=0.2) as sender:
        yield sender


@pytest.fixture
def alerting(tmp_path: Path, tg: FakeTelegram):
    """``alerting(db_url, **alerts_config)`` -> (engine, settings) sending to two chats."""

    def make(db_url: str, **alerts: Any):
        config = write_config(tmp_path / "alerts.yaml", {"alerts": {
            "console": False, "charts": False, "chat_interval_seconds": 0.05,
            "max_signal_age_seconds": OLD_SIGNALS_MAY_GO, **alerts},
            # about delivery, not skill: every target may alert (the skill gate is tested apart)
            "models": {**SMALL_CONFIG["models"], "alert_without_skill": ["*"]}})
        settings = load_settings(config, database_url=db_url, broker_url=None,
                                 telegram_token=tg.token, telegram_api_url=tg.base_url,
                                 telegram_chat_ids=f"{PRIVATE},{GROUP}")
        return init_db(db_url), settings

    return make


def signal(n: int = 0, *, asset: str = "BTC/USDT", direction: str = "UP",
           probability: float = 0.8, candle: datetime | None = None) -> dict[str, Any]:
    """Signal ``n``: candles 25 h apart, beyond the 24-candle horizon (never a repeat)."""
    candle = candle or T0 + timedelta(hours=25 * n)
    return {"asset": asset, "target": "1pct_24", "pct": 0.01, "horizon": 24, "timeframe": "1h",
            "direction": direction, "probability": probability, "threshold": 0.6,
            "model": "lightgbm v1", "candle_time": candle.isoformat(), "price": 100.0,
            "up_level": 101.0, "down_level": 99.0, "fallback": None, "conflict": False}


def queue(engine, settings, *payloads: dict[str, Any]) -> int:
    with session_scope(engine) as session:
        return sum(queue_signal_alerts(session, settings, p) for p in payloads)


def statuses(engine) -> dict[str, int]:
    with session_scope(engine, readonly=True) as session:
        rows = session.exec(select(AlertOutbox.status)).all()
    return {s: rows.count(s) for s in set(rows)}


def test_each_alert_reaches_each_chat_once_even_when_drained_again(db_url, alerting, tg,
                                                                    transport):
    engine, settings = alerting(db_url)
    assert queue(engine, settings, *(signal(n) for n in range(3))) == 6
    first = drain_outbox(engine, lambda chat: transport, settings=settings)
    second = drain_outbox(engine, lambda chat: transport, settings=settings)
    assert (first.sent, second.sent) == (6, 0)
    counts = signal_counts(tg)
    assert len(counts) == 6 and set(counts.values()) == {1}
    assert statuses(engine) == {"sent": 6}
    assert queue(engine, settings, signal(0)) == 0  # a redelivered prediction queues nothing


def test_a_429_burst_is_waited_out_and_no_alert_is_lost_or_doubled(sqlite_url, alerting, tg,
                                                                    transport):
    engine, settings = alerting(sqlite_url)
    queue(engine, settings, *(signal(n) for n in range(4)))
    tg.fail("sendMessage", 429, retry_after=1, times=3)
    result = drain_outbox(engine, lambda chat: transport, settings=settings)
    assert (result.sent, result.retry, result.failed) == (8, 3, 0)
    assert set(signal_counts(tg).values()) == {1} and len(signal_counts(tg)) == 8
    calls = tg.calls_to("sendMessage")
    for i, call in enumerate(calls[:-1]):
        if call.status == 429:  # Telegram said: nothing for 1 s
            assert calls[i + 1].at - call.at >= 0.95
    assert statuses(engine) == {"sent": 8}


def test_an_outage_holds_alerts_and_all_arrive_once_after_it(sqlite_url, alerting, tg,
                                                             transport):
    engine, settings = alerting(sqlite_url, max_wait_seconds=0.5)
    queue(engine, settings, *(signal(n) for n in range(3)))
    tg.outage(True)
    for _ in range(3):  # the scheduler's drain job keeps trying; each drain stops at once
        result = drain_outbox(engine, lambda chat: transport, settings=settings)
        assert (result.sent, result.retry) == (0, 1)
    assert deliveries(tg) == [] and statuses(engine) == {"pending": 6}
    tg.outage(False)
    deadline = datetime.now(UTC) + timedelta(seconds=20)
    while statuses(engine).get("sent", 0) < 6 and datetime.now(UTC) < deadline:
        drain_outbox(engine, lambda chat: transport, settings=settings)
        time.sleep(0.1)
    assert statuses(engine) == {"sent": 6}
    assert len(signal_counts(tg)) == 6 and set(signal_counts(tg).values()) == {1}


def test_a_400_marks_the_alert_failed_and_it_is_never_retried(sqlite_url, alerting, tg,
                                                              transport):
    engine, settings = alerting(sqlite_url)
    queue(engine, settings, signal(0))
    tg.fail("sendMessage", 400)
    result = drain_outbox(engine, lambda chat: transport, settings=settings)
    assert (result.sent, result.failed, result.retry) == (1, 1, 0)
    calls_before = len(tg.calls_to("sendMessage"))
    assert drain_outbox(engine, lambda chat: transport, settings=settings).to_dict() == {
        "sent": 0, "retry": 0, "failed": 0, "skipped": 0}
    assert len(tg.calls_to("sendMessage")) == calls_before == 2
    with session_scope(engine, readonly=True) as session:
        failed = session.exec(select(AlertOutbox).where(AlertOutbox.status == "failed")).one()
    assert "Chat not found" in failed.last_error and failed.attempts == 1


def test_a_5xx_is_retried_after_a_backoff(sqlite_url, alerting, tg, transport):
    engine, settings = alerting(sqlite_url, max_wait_seconds=0.1)
    queue(engine, settings, signal(0))
    tg.fail("sendMessage", 500)
    first = drain_outbox(engine, lambda chat: transport, settings=settings)
    assert first.retry == 1
    with session_scope(engine, readonly=True) as session:
        retried = session.exec(select(AlertOutbox).where(AlertOutbox.attempts == 1)).one()
    assert retried.status == "pending" and retried.next_attempt_at > datetime.now(UTC)
    assert "Internal Server Error" in retried.last_error
    deadline = datetime.now(UTC) + timedelta(seconds=10)
    while statuses(engine).get("sent", 0) < 2 and datetime.now(UTC) < deadline:
        drain_outbox(engine, lambda chat: transport, settings=settings)
        time.sleep(0.1)
    assert statuses(engine) == {"sent": 2}
    assert set(signal_counts(tg).values()) == {1}


def test_one_chat_gets_at_most_one_message_per_interval_without_holding_up_others(
        sqlite_url, alerting, tg, transport):
    engine, settings = alerting(sqlite_url, chat_interval_seconds=0.5)
    queue(engine, settings, *(signal(n) for n in range(4)))
    drain_outbox(engine, lambda chat: transport, settings=settings)
    private, group = deliveries(tg, PRIVATE), deliveries(tg, GROUP)
    assert len(private) == len(group) == 4
    assert min(gaps(private)) >= 0.48 and min(gaps(group)) >= 0.48
    # the two chats are served side by side, not one after the other
    assert group[0].at < private[1].at and private[0].at < group[1].at


def test_rate_limiter_keeps_group_chats_to_their_per_minute_limit_and_all_chats_to_30_a_second():
    limiter = SendRateLimiter(chat_interval=1.0, group_per_minute=3, global_per_second=5)
    for t in (0.0, 1.0, 2.0):
        limiter.record("-100", t)
    assert limiter.wait("-100", 3.0) == pytest.approx(57.0)  # 3 in this minute: wait for t=60
    assert limiter.wait("100", 3.0) == 0.0  # a private chat is not held back
    for chat in ("a", "b", "c", "d", "e"):
        limiter.record(chat, 10.0)
    assert limiter.wait("f", 10.2) == pytest.approx(0.8)  # 5 sends in the last second
    limiter.pause_until(20.0)
    assert limiter.wait("g", 12.0) == pytest.approx(8.0)  # a 429's retry_after holds everyone


def test_a_signal_goes_as_a_chart_photo_with_its_text_as_caption(sqlite_url, alerting, tg,
                                                                  transport):
    engine, settings = alerting(sqlite_url, charts=True, chart_candles=48)
    now = seed_history(engine, settings, days=5)
    candle = now.replace(minute=0, second=0, microsecond=0) - timedelta(hours=1)
    payload = signal(candle=candle)
    queue(engine, settings, payload)
    assert drain_outbox(engine, lambda chat: transport, settings=settings).sent == 2
    photos = tg.sent_photos(PRIVATE)
    assert len(photos) == 1 and photos[0]["photo_size"] > 5_000
    with session_scope(engine, readonly=True) as session:
        row = session.exec(select(AlertOutbox).where(AlertOutbox.chat_id == PRIVATE)).one()
    assert photos[0]["text"] == format_alert("signal", row.payload, html=True)
    assert len(photos[0]["text"]) <= 1024 and tg.sent_messages(PRIVATE) == photos


def test_alerts_queued_before_a_pause_are_skipped_and_resume_restores_delivery(
        sqlite_url, alerting, tg, transport):
    engine, settings = alerting(sqlite_url)
    queue(engine, settings, signal(0))
    pause_alerts(engine, settings, GROUP, actor="test")
    assert queue(engine, settings, signal(1)) == 1  # only the private chat gets new rows
    result = drain_outbox(engine, lambda chat: transport, settings=settings)
    assert (result.sent, result.skipped) == (2, 1)
    assert deliveries(tg, GROUP) == []
    resume_alerts(engine, settings, GROUP, actor="test")
    assert queue(engine, settings, signal(2)) == 2
    drain_outbox(engine, lambda chat: transport, settings=settings)
    assert len(deliveries(tg, GROUP)) == 1 and len(deliveries(tg, PRIVATE)) == 3


class SilentAwareTransport:
    """A transport whose ``send`` takes ``silent`` (what the drainer asks for)."""

    html = True

    def __init__(self) -> None:
        self.sent: list[tuple[str, bool]] = []

    def send(self, chat_id: str, text: str, *, photo: bytes | None = None,
             silent: bool = False) -> SendResult:
        self.sent.append((text.splitlines()[0], silent))
        return SendResult(len(self.sent))


def test_a_kind_set_to_silent_is_sent_without_notification(sqlite_url, alerting):
    engine, settings = alerting(sqlite_url, kinds={"signal": "silent"})
    queue(engine, settings, signal(0))
    subscribe(engine, settings, PRIVATE, ["signal:on"], actor="test")
    transport = SilentAwareTransport()
    drain_outbox(engine, lambda chat: transport, settings=settings)
    assert sorted(silent for _, silent in transport.sent) == [False, True]


def _served_week(engine, until: datetime) -> None:
    """A champion's served predictions over the week to ``until``, each resolved (hits, misses
    and an expired one), for the summary's figures and chart."""
    from signalcast.db.tables import Outcome, Prediction
    from tests.test_alert_rules import add_version

    with session_scope(engine) as session:
        version = add_version(session)
        for i in range(60):
            candle = until - timedelta(days=6, hours=-i)
            prob_up = 0.32 + 0.4 * (i % 5) / 4  # bin centres, not edges
            label = 1 if i % 3 else (0 if i % 7 else -1)
            session.add(Prediction(asset="BTC/USDT", target="1pct_24", candle_time=candle,
                                   model_version_id=version.id, prob_up=prob_up,
                                   prob_down=0.95 - prob_up))
            session.add(Outcome(asset="BTC/USDT", target="1pct_24", candle_time=candle,
                                label=label, bars=3, resolved_at=candle + timedelta(hours=3)))


def test_the_weekly_summary_carries_the_reliability_chart_of_what_was_served(
        sqlite_url, alerting, tg, transport):
    from signalcast.alerts.summary import queue_summary_alerts

    engine, settings = alerting(sqlite_url)  # summary_chart: weekly (the default)
    monday = datetime(2024, 3, 4, 8, tzinfo=UTC)
    _served_week(engine, monday)
    with session_scope(engine) as session:
        assert queue_summary_alerts(session, settings, monday) == 2
        assert queue_summary_alerts(session, settings, monday + timedelta(days=1)) == 2
    assert drain_outbox(engine, lambda chat: transport, settings=settings).sent == 4
    photos = tg.sent_photos(PRIVATE)
    assert len(photos) == 1 and photos[0]["photo_size"] > 5_000  # Monday's; Tuesday's is text
    assert "chart: reliability of 60 served" in photos[0]["text"]
    with session_scope(engine, readonly=True) as session:
        monday_row = session.exec(select(AlertOutbox).where(
            AlertOutbox.chat_id == PRIVATE, AlertOutbox.candle_time == monday.replace(
                hour=0))).one()
    bins = monday_row.payload["reliability"]["reliability_up"]
    assert sum(b["n"] for b in bins) == 60  # every served prediction, expired ones too
    up_bin = next(b for b in bins if b["lo"] <= 0.32 < b["hi"])  # i % 5 == 0
    rows_in = [i for i in range(60) if i % 5 == 0]
    assert up_bin["n"] == len(rows_in)
    assert up_bin["observed"] == pytest.approx(
        sum(1 for i in rows_in if i % 3) / len(rows_in))
    assert len(tg.sent_messages(PRIVATE)) == 2


def test_the_console_is_not_paced_by_the_messaging_rate_limits(sqlite_url, alerting):
    """A terminal takes alerts as fast as they come: the chat interval is a messaging
    service's limit (the demo waited a second per alert for it); a transport that is rate
    limited, or says nothing, is still paced."""
    engine, settings = alerting(sqlite_url, chat_interval_seconds=1.0)
    printed: list[str] = []
    console = ConsoleTransport(printed.append)
    queue(engine, settings, *(signal(n) for n in range(3)))  # 3 alerts for each of two chats
    slept: list[float] = []
    result = drain_outbox(engine, lambda chat: console, settings=settings, sleep=slept.append)
    assert (result.sent, len(printed), slept) == (6, 6, [])

    class Paced:  # a third-party transport without the attribute
        html = False

        def send(self, chat_id, text, *, photo=None, silent=False):
            return console.send(chat_id, text)

    engine2, settings2 = alerting(sqlite_url.replace(".db", "-paced.db"), chat_interval_seconds=1.0)
    queue(engine2, settings2, *(signal(n) for n in range(3)))
    slept.clear()
    result = drain_outbox(engine2, lambda chat: Paced(), settings=settings2,
                          sleep=lambda s: (slept.append(s), time.sleep(s)))
    assert result.sent == 6 and len(slept) >= 2 and max(slept) > 0.5
