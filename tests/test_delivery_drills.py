"""Delivery drills: the outbox drain through the real TelegramTransport against the fake Bot API,
with the faults Telegram really has. Each drill counts what was lost, doubled, reordered or late.

- timeouts (the fake answers after the client gave up, and still delivers): no alert twice;
- 429 and 5xx bursts: each chat's alerts arrive in the order they were queued;
- a 150-alert backlog in a rate-limited group: another chat's alert goes out at once;
- signals older than their age: never sent, the operator told once.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlmodel import select

from signalcast.alerts.drain import drain_outbox
from signalcast.config import load_settings
from signalcast.db.engine import init_db, session_scope
from signalcast.db.tables import AlertOutbox
from signalcast.notifier.telegram import TelegramTransport
from tests.conftest import write_config
from tests.fakes.telegram_checks import deliveries, signal_counts, signal_key
from tests.fakes.telegram_server import FakeTelegram

pytestmark = pytest.mark.integration  # a local HTTP server and the real client

PRIVATE, GROUP, NOWHERE = "101", "-202", "303"
HOUR = timedelta(hours=1)


@pytest.fixture
def tg() -> Iterator[FakeTelegram]:
    with FakeTelegram() as server:
        yield server


@pytest.fixture
def transport(tg: FakeTelegram) -> Iterator[TelegramTransport]:
    with TelegramTransport(tg.token, tg.base_url, timeout=0.5, network_backoff=0.2) as sender:
        yield sender


@pytest.fixture
def drill(tmp_path: Path, tg: FakeTelegram, sqlite_url: str):
    """``drill(**alerts_config)`` -> (engine, settings) with chats PRIVATE and GROUP."""

    def make(**alerts: Any):
        config = write_config(tmp_path / "drill.yaml", {"alerts": {
            "console": False, "charts": False, "chat_interval_seconds": 0.02, **alerts}})
        settings = load_settings(config, database_url=sqlite_url, broker_url=None,
                                 telegram_token=tg.token, telegram_api_url=tg.base_url,
                                 telegram_chat_ids=f"{PRIVATE},{GROUP}")
        return init_db(sqlite_url), settings

    return make


def hour(n: int) -> datetime:
    """The n-th candle of a run of 1h candles ending with the last closed one."""
    now = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    return now - HOUR + n * HOUR


def signal(candle: datetime, asset: str = "BTC/USDT") -> dict[str, Any]:
    return {"asset": asset, "target": "1pct_24", "pct": 0.01, "horizon": 24, "timeframe": "1h",
            "direction": "UP", "probability": 0.8, "threshold": 0.6, "model": "lightgbm v1",
            "candle_time": candle.isoformat(), "price": 100.0, "up_level": 101.0,
            "down_level": 99.0, "fallback": None, "conflict": False}


def put(engine, chat: str, candles: list[datetime], kind: str = "signal",
        asset: str = "BTC/USDT") -> list[int]:
    """Queue one alert per candle to ``chat`` (in this order); returns their ids."""
    with session_scope(engine) as session:
        rows = [AlertOutbox(chat_id=chat, asset=asset if kind == "signal" else "system",
                            target="1pct_24" if kind == "signal" else f"check:{c:%H%M}",
                            candle_time=c, kind=kind,
                            payload=signal(c, asset) if kind == "signal" else {
                                "check": "scheduler_silent", "last_tick": c.isoformat()})
                for c in candles]
        session.add_all(rows)
        session.flush()
        return [row.id for row in rows]


def rows(engine, **where: Any) -> list[AlertOutbox]:
    with session_scope(engine, readonly=True) as session:
        query = select(AlertOutbox).order_by(AlertOutbox.id)
        for column, value in where.items():
            query = query.where(getattr(AlertOutbox, column) == value)
        return list(session.exec(query).all())


def drain_until_done(engine, settings, transport_for, rounds: int = 40) -> None:
    """What the scheduler's drain job does: drain again until nothing is unfinished."""
    for _ in range(rounds):
        drain_outbox(engine, transport_for, settings=settings)
        if not [r for r in rows(engine) if r.status in ("pending", "sending")]:
            return
    raise AssertionError(f"outbox not drained: {Counter(r.status for r in rows(engine))}")


def candles_delivered(tg: FakeTelegram, chat: str) -> list[str]:
    """The candle of each signal delivered to ``chat``, in the order the server stored them."""
    return [signal_key(m["text"])[2] for m in tg.sent_messages(chat)
            if signal_key(m["text"]) is not None]


# -- 3. timeouts: never sent twice ------------------------------------------------------------


def test_a_signal_whose_send_timed_out_is_not_sent_again_and_the_operator_is_told_once(
        drill, tg, transport):
    engine, settings = drill(max_signal_age_seconds=10 * 3600)
    for chat in (PRIVATE, GROUP):
        put(engine, chat, [hour(-n) for n in range(8, 0, -1)])
    tg.fail("sendMessage", delay=1.5, times=3)  # answered after the client gave up: delivered
    drain_until_done(engine, settings, lambda chat: transport)
    tg.wait_for(lambda t: len(signal_counts(t)) >= 16)  # the late answers land
    counts = signal_counts(tg)
    assert len(counts) == 16 and set(counts.values()) == {1}  # none lost, none doubled
    uncertain = rows(engine, status="maybe_delivered")
    assert len(uncertain) == 3 and all(r.attempts == 1 for r in uncertain)
    assert all("maybe delivered, not resent" in r.last_error for r in uncertain)
    assert {r.status for r in rows(engine, kind="signal")} == {"sent", "maybe_delivered"}
    notices = rows(engine, kind="system")  # one per uncertain alert, for each system chat
    assert len(notices) == 3 * 2 and {n.status for n in notices} == {"sent"}
    assert sorted(n.payload["alert"]["id"] for n in notices) == sorted(
        [r.id for r in uncertain] * 2)
    told = [m["text"] for m in tg.sent_messages() if "may have been delivered" in m["text"]]
    assert len(told) == 6 and len(set(told)) == 3


def test_a_timed_out_signal_telegram_dropped_is_reported_not_resent(drill, tg, transport):
    engine, settings = drill(max_signal_age_seconds=10 * 3600)
    put(engine, PRIVATE, [hour(0)])
    tg.fail("sendMessage", 500, delay=1.5)  # late, and then refused: never delivered
    drain_until_done(engine, settings, lambda chat: transport)
    tg.wait_for(lambda t: len(t.calls_to("sendMessage")) >= 2)  # the late refusal lands
    [row] = rows(engine, kind="signal")
    assert row.status == "maybe_delivered" and candles_delivered(tg, PRIVATE) == []
    assert len(tg.calls_to("sendMessage")) == 2  # the signal once, the notice once


def test_after_a_timeout_the_chats_next_alert_waits_out_the_backoff_across_drains(
        drill, tg, transport):
    engine, settings = drill(max_signal_age_seconds=10 * 3600, max_wait_seconds=0.1)
    first, second = put(engine, PRIVATE, [hour(-1), hour(0)])
    tg.fail("sendMessage", delay=1.5)
    result = drain_outbox(engine, lambda chat: transport if chat == PRIVATE else None,
                          settings=settings)
    assert result.maybe_delivered == 1 and result.sent == 0  # the drain ended: Telegram is slow
    [timed_out], [waiting] = rows(engine, id=first), rows(engine, id=second)
    assert timed_out.status == "maybe_delivered" and waiting.status == "pending"
    assert waiting.next_attempt_at >= timed_out.claimed_at + timedelta(seconds=0.2)


def test_a_system_alert_whose_send_timed_out_is_sent_again(drill, tg, transport):
    engine, settings = drill()
    [row_id] = put(engine, PRIVATE, [hour(0)], kind="system")
    tg.fail("sendMessage", delay=1.5)
    drain_until_done(engine, settings, lambda chat: transport)
    tg.wait_for(lambda t: len(t.sent_messages(PRIVATE)) >= 2)  # the late first copy lands
    [row] = rows(engine, id=row_id)
    assert row.status == "sent" and row.attempts == 2
    # the documented price of never losing one: a system alert may arrive twice
    assert len(tg.sent_messages(PRIVATE)) == 2


def test_a_signal_whose_sender_died_mid_send_is_not_sent_again(drill, tg, transport):
    engine, settings = drill(max_signal_age_seconds=10 * 3600)
    [signal_id] = put(engine, PRIVATE, [hour(0)])
    [system_id] = put(engine, GROUP, [hour(0)], kind="system")
    with session_scope(engine) as session:  # claimed by a worker killed before it marked them
        for row in session.exec(select(AlertOutbox)).all():
            row.status, row.attempts = "sending", 1
            row.claimed_at = datetime.now(UTC) - timedelta(minutes=5)
    drain_until_done(engine, settings, lambda chat: transport)
    assert rows(engine, id=signal_id)[0].status == "maybe_delivered"
    assert rows(engine, id=system_id)[0].status == "sent"
    assert candles_delivered(tg, PRIVATE) == []


# -- 4. per-chat order through 429 and 5xx bursts ----------------------------------------------


@pytest.mark.parametrize("burst", ["429", "5xx", "both"])
def test_each_chats_alerts_arrive_in_queue_order_through_429_and_5xx_bursts(
        drill, tg, transport, burst):
    engine, settings = drill(max_signal_age_seconds=20 * 3600)
    candles = [hour(-n) for n in range(12, 0, -1)]
    for chat in (PRIVATE, GROUP):
        put(engine, chat, candles)
    if burst in ("429", "both"):
        tg.fail("sendMessage", 429, retry_after=1, times=3)
    if burst in ("5xx", "both"):
        tg.fail("sendMessage", 502, times=2)
        tg.fail("sendMessage", 500, times=2)
    drain_until_done(engine, settings, lambda chat: transport)
    expected = [f"{c:%Y-%m-%d %H:%M}" for c in candles]
    assert candles_delivered(tg, PRIVATE) == expected  # none lost, doubled or reordered
    assert candles_delivered(tg, GROUP) == expected
    assert any(call.status in (429, 500, 502) for call in tg.calls)  # the burst happened


# -- 5. fairness: one chat's backlog never delays another's ------------------------------------


def test_a_private_alert_is_not_held_back_by_a_group_backlog_or_a_chat_without_transport(
        drill, tg, transport):
    engine, settings = drill(max_signal_age_seconds=200 * 3600, group_per_minute=20,
                             drain_seconds=2.0)
    put(engine, NOWHERE, [hour(-n) for n in range(5)])  # queued first, nobody can serve it
    backlog = put(engine, GROUP, [hour(-n) - timedelta(minutes=1) for n in range(150, 0, -1)])
    [private] = put(engine, PRIVATE, [hour(0)])  # queued last
    transports = {PRIVATE: transport, GROUP: transport}
    result = drain_outbox(engine, transports.get, settings=settings)
    assert rows(engine, id=private)[0].status == "sent"
    group = deliveries(tg, GROUP)
    assert len(group) == 20 and result.sent == 21  # the group kept to 20 a minute
    assert len(rows(engine, chat_id=GROUP, status="pending")) == 130  # backlog not finished
    first_private = deliveries(tg, PRIVATE)[0]
    assert first_private.at < group[-1].at  # served beside the backlog, not after it
    sent_ids = [r.id for r in rows(engine, chat_id=GROUP, status="sent")]
    assert sent_ids == backlog[:20]  # the group's oldest first, in order
    assert {r.status for r in rows(engine, chat_id=NOWHERE)} == {"pending"}


# -- 7. age: a stale signal is never sent -------------------------------------------------------


def test_a_signal_older_than_one_candle_expires_unsent_and_the_operator_is_told_once(
        drill, tg, transport):
    engine, settings = drill()  # default: one candle of the signal's timeframe (1h)
    stale = put(engine, PRIVATE, [hour(-3), hour(-2)])  # closed 2 h and 3 h ago
    [fresh] = put(engine, PRIVATE, [hour(0)])  # closed within the last hour
    drain_until_done(engine, settings, lambda chat: transport)
    for row in rows(engine, kind="signal"):
        if row.id in stale:
            assert row.status == "expired" and "max_signal_age_seconds" in row.last_error
    assert rows(engine, id=fresh)[0].status == "sent"
    assert candles_delivered(tg, PRIVATE) == [f"{hour(0):%Y-%m-%d %H:%M}"]
    notices = rows(engine, kind="system")
    assert len(notices) == 2 and {n.payload["count"] for n in notices} == {2}  # both chats
    assert {n.status for n in notices} == {"sent"}
    drain_until_done(engine, settings, lambda chat: transport)  # told once, not per drain
    assert len(rows(engine, kind="system")) == 2


def test_the_configured_age_applies_and_an_expired_signals_outcome_is_skipped(
        drill, tg, transport):
    engine, settings = drill(max_signal_age_seconds=5 * 3600)
    [kept] = put(engine, PRIVATE, [hour(-3)])  # closed 3-4 h ago: within 5 h
    [gone] = put(engine, PRIVATE, [hour(-6)])  # closed 6-7 h ago
    with session_scope(engine) as session:
        old = rows(engine, id=gone)[0]
        session.add(AlertOutbox(chat_id=PRIVATE, asset=old.asset, target=old.target,
                                candle_time=old.candle_time, kind="outcome",
                                payload={"result": "hit"}))
    drain_until_done(engine, settings, lambda chat: transport)
    assert rows(engine, id=kept)[0].status == "sent"
    assert rows(engine, id=gone)[0].status == "expired"
    [outcome] = rows(engine, kind="outcome")
    assert outcome.status == "skipped" and "expired" in outcome.last_error
