"""When something becomes an alert and who gets it: confidence bands, repeated signals,
subscriptions, outcome alerts, the daily summary and the system check."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlmodel import select

from signalcast.alerts.rules import (
    confidence_band,
    outcome_result,
    queue_signal_alerts,
    queue_system_alerts,
)
from signalcast.alerts.subscriptions import chat_settings, subscribe, unsubscribe
from signalcast.alerts.summary import performance
from signalcast.config import load_settings
from signalcast.core.errors import UnknownNameError
from signalcast.db.engine import init_db, session_scope
from signalcast.db.tables import (
    AlertOutbox,
    ModelVersion,
    Outcome,
    Prediction,
    ScheduledEnqueue,
    TaskRun,
)
from signalcast.notifier.format import format_alert
from signalcast.pipeline.resolve import resolve_outcomes
from signalcast.scheduler.jobs import daily_summary, system_check
from tests.conftest import SMALL_CONFIG, seed_history, write_config
from tests.fakes.broker import forget_broker, use_broker
from tests.fakes.telegram_server import DEFAULT_TOKEN

CHAT = "101"
WITHOUT_SKILL_GATE = {**SMALL_CONFIG["models"], "alert_without_skill": ["*"]}
T0 = datetime(2024, 3, 1, 12, tzinfo=UTC)


@pytest.fixture(autouse=True)
def _forget_broker_afterwards():
    yield
    forget_broker()  # the next test configures its own broker from scratch


@pytest.fixture
def rules(tmp_path: Path, sqlite_url: str):
    """``rules(**alerts_config)`` -> (engine, settings): one Telegram chat, no console."""

    def make(db_url: str = sqlite_url, broker_url: str | None = None, **alerts: Any):
        # these tests are about delivery rules, not skill: the admin override lets signals out
        config = write_config(tmp_path / "rules.yaml", {"alerts": {"console": False, **alerts},
                                                        "models": WITHOUT_SKILL_GATE})
        settings = load_settings(config, database_url=db_url, broker_url=broker_url,
                                 telegram_token=DEFAULT_TOKEN, telegram_chat_ids=CHAT)
        return init_db(db_url), settings

    return make


def signal(candle: datetime, direction: str = "UP", probability: float = 0.8,
           asset: str = "BTC/USDT") -> dict[str, Any]:
    return {"asset": asset, "target": "1pct_24", "pct": 0.01, "horizon": 24, "timeframe": "1h",
            "direction": direction, "probability": probability, "threshold": 0.6,
            "model": "lightgbm v1", "candle_time": candle.isoformat(), "price": 100.0,
            "up_level": 101.0, "down_level": 99.0, "fallback": None, "conflict": False}


def queued(engine, settings, payload: dict[str, Any]) -> int:
    with session_scope(engine) as session:
        return queue_signal_alerts(session, settings, payload)


def rows(engine, kind: str) -> list[AlertOutbox]:
    with session_scope(engine, readonly=True) as session:
        return list(session.exec(select(AlertOutbox).where(AlertOutbox.kind == kind)
                                 .order_by(AlertOutbox.id)).all())


def add_version(session) -> ModelVersion:
    version = ModelVersion(
        asset="BTC/USDT", target="1pct_24", family="lightgbm", version=1, role="champion",
        feature_set="test", features=[], params={}, metrics={}, lib_versions={},
        train_start=T0, train_end=T0, n_rows=1, data_fingerprint="f", sha256="0" * 64)
    session.add(version)
    session.flush()
    return version


def test_confidence_band_is_high_from_threshold_plus_margin_else_medium():
    assert confidence_band(0.70, 0.6, 0.1) == "high"
    assert confidence_band(0.69, 0.6, 0.1) == "medium"
    assert confidence_band(0.60, 0.6, 0.1) == "medium"
    assert confidence_band(0.55, 0.6, 0.1) == "low"


@pytest.mark.slow
def test_a_repeated_signal_is_not_queued_while_direction_and_band_hold_within_the_horizon(
        rules, tmp_path):
    engine, settings = rules()
    hour = timedelta(hours=1)
    steps = [  # (candle, direction, probability, queued?)
        (T0, "UP", 0.80, 1),  # high
        (T0 + hour, "UP", 0.85, 0),  # still UP and high: a repeat
        (T0 + 2 * hour, "UP", 0.65, 1),  # the band fell to medium: news
        (T0 + 3 * hour, "UP", 0.66, 0),  # medium again: a repeat
        (T0 + 4 * hour, "DOWN", 0.80, 1),  # the direction turned
        (T0 + 27 * hour, "DOWN", 0.80, 0),  # the last DOWN alert's 24 candles still run
        (T0 + 28 * hour, "DOWN", 0.80, 1),  # its horizon is over: a new signal
    ]
    assert [queued(engine, settings, signal(c, d, p)) for c, d, p, _ in steps] == [
        q for *_, q in steps]
    assert rows(engine, "signal")[1].payload["band"] == "medium"

    engine, settings = rules(debounce=False, db_url=f"sqlite:///{tmp_path / 'no-debounce.db'}")
    assert [queued(engine, settings, signal(c, d, p)) for c, d, p, _ in steps] == [1] * 7


def test_subscriptions_choose_the_assets_targets_and_kinds_a_chat_receives(rules):
    engine, settings = rules()
    unsubscribe(engine, settings, CHAT, ["ETH/USDT"], actor="test")
    assert queued(engine, settings, signal(T0, asset="ETH/USDT")) == 0
    assert queued(engine, settings, signal(T0)) == 1
    subscribe(engine, settings, CHAT, ["eth/usdt", "summary:silent"], actor="test")
    assert queued(engine, settings, signal(T0, asset="ETH/USDT")) == 1
    assert chat_settings(engine, settings, CHAT).kinds["summary"] == "silent"

    unsubscribe(engine, settings, CHAT, ["1pct_24"], actor="test")
    assert queued(engine, settings, signal(T0 + timedelta(days=3))) == 0
    subscribe(engine, settings, CHAT, ["1pct_24"], actor="test")
    unsubscribe(engine, settings, CHAT, [], actor="test")  # nothing at all
    assert not chat_settings(engine, settings, CHAT).receives
    assert queued(engine, settings, signal(T0 + timedelta(days=6))) == 0
    subscribe(engine, settings, CHAT, [], actor="test")
    subscribe(engine, settings, "303", [], actor="test")  # a chat that is not configured
    assert queued(engine, settings, signal(T0 + timedelta(days=9))) == 2

    with pytest.raises(UnknownNameError) as bad:
        subscribe(engine, settings, CHAT, ["XRP/USDT"], actor="test")
    assert "Known: 1pct_24, 2pct_48, BTC/USDT, ETH/USDT, model, outcome" in str(bad.value)


def test_a_resolved_signal_becomes_an_outcome_alert_saying_hit_miss_or_expired(rules):
    engine, settings = rules()
    now = seed_history(engine, settings, days=12)
    candles = [now - timedelta(hours=h) for h in (200, 170, 140, 110)]
    directions = ["UP", "DOWN", "UP", "DOWN"]
    with session_scope(engine) as session:
        version = add_version(session)
        for candle, direction in zip(candles, directions, strict=True):
            session.add(Prediction(asset="BTC/USDT", target="1pct_24", candle_time=candle,
                                   model_version_id=version.id,
                                   prob_up=0.8 if direction == "UP" else 0.2))
            queue_signal_alerts(session, settings, signal(candle, direction))
    with session_scope(engine) as session:
        assert resolve_outcomes(session, settings, "BTC/USDT", now) == 4
    with session_scope(engine, readonly=True) as session:
        labels = {o.candle_time: o.label for o in session.exec(select(Outcome)).all()}
    outcomes = rows(engine, "outcome")
    assert [o.candle_time for o in outcomes] == candles
    for row, direction in zip(outcomes, directions, strict=True):
        assert row.chat_id == CHAT
        assert row.payload["result"] == outcome_result(direction, labels[row.candle_time])
        assert row.payload["result"] in ("hit", "miss", "expired")
        headline = format_alert("outcome", row.payload, html=True).splitlines()[0]
        assert headline == f"<b>{row.payload['result'].title()}: BTC/USDT 1pct_24</b>"
    with session_scope(engine) as session:  # resolving again changes nothing
        assert resolve_outcomes(session, settings, "BTC/USDT", now) == 0
    assert len(rows(engine, "outcome")) == 4


def test_outcome_result_compares_the_signalled_direction_with_the_first_touch():
    assert outcome_result("UP", 1) == "hit" and outcome_result("DOWN", 0) == "hit"
    assert outcome_result("UP", 0) == "miss" and outcome_result("DOWN", 1) == "miss"
    assert outcome_result("UP", -1) == "expired"


@pytest.mark.integration  # the job enqueues on the real Redis
def test_summary_job_queues_hit_rate_and_live_auc_per_asset_and_target_once_a_day(rules,
                                                                                  redis_url):
    engine, settings = rules(broker_url=redis_url)
    use_broker(settings)  # the job enqueues a drain (no worker takes it here)
    now = T0 + timedelta(days=10)
    with session_scope(engine) as session:
        version = add_version(session)
        cases = [(0.9, 1), (0.7, 0), (0.4, 0), (0.8, 1), (0.6, -1)]
        for i, (prob_up, label) in enumerate(cases):
            candle = now - timedelta(days=3, hours=i)
            session.add(Prediction(asset="BTC/USDT", target="1pct_24", candle_time=candle,
                                   model_version_id=version.id, prob_up=prob_up))
            session.add(Outcome(asset="BTC/USDT", target="1pct_24", candle_time=candle,
                                label=label, bars=3, resolved_at=now - timedelta(days=1)))
        old = now - timedelta(days=30)  # resolved before the 7-day window: left out
        session.add(Prediction(asset="BTC/USDT", target="1pct_24", candle_time=old,
                               model_version_id=version.id, prob_up=0.9))
        session.add(Outcome(asset="BTC/USDT", target="1pct_24", candle_time=old, label=0,
                            bars=3, resolved_at=old))
    assert daily_summary(engine, settings, now) is not None
    assert daily_summary(engine, settings, now + timedelta(hours=1)) is None  # same day
    [row] = rows(engine, "summary")
    btc = next(r for r in row.payload["rows"] if r["asset"] == "BTC/USDT"
               and r["target"] == "1pct_24")
    assert (btc["resolved"], btc["hits"], btc["expired"]) == (4, 3, 1)
    assert btc["hit_rate"] == 0.75 and btc["auc"] == 1.0
    text = format_alert("summary", row.payload, html=False)
    assert btc["majority"] == 0.5 and btc["alerts_held"] is None  # admin override: not held
    assert ("BTC/USDT 1pct_24: hit rate 75% (3/4; always-majority 50%), live AUC 1.00, "
            "1 expired") in text
    assert "ETH/USDT 2pct_48: nothing resolved (0 expired)" in text
    assert "All: hit rate 75% (3/4; always-majority 50%)" in text


def test_the_summary_says_which_targets_alerts_are_held_and_why(tmp_path, sqlite_url):
    config = write_config(tmp_path / "gated.yaml", {"alerts": {"console": False}})
    settings = load_settings(config, database_url=sqlite_url, broker_url=None,
                             telegram_token=DEFAULT_TOKEN, telegram_chat_ids=CHAT)
    engine = init_db(sqlite_url)
    with session_scope(engine) as session:
        add_version(session)  # a champion trained before the skill gate: no evidence stored
        [btc] = [r for r in performance(session, settings, T0 - timedelta(days=7), T0)
                 if r["asset"] == "BTC/USDT" and r["target"] == "1pct_24"]
    assert btc["alerts_held"].startswith("no walk-forward skill evidence")
    text = format_alert("summary", {"since": T0.isoformat(), "until": T0.isoformat(),
                                    "days": 7, "rows": [btc]}, html=False)
    assert "BTC/USDT 1pct_24: nothing resolved (0 expired); alerts held: no walk-forward" in text


@pytest.mark.integration  # the job enqueues on the real Redis
def test_system_check_alerts_once_per_silent_worker_silent_scheduler_and_failure_burst(
        rules, redis_url):
    engine, settings = rules(worker_silent_minutes=10, task_failures=3)
    use_broker(rules(broker_url=redis_url)[1])  # the job enqueues a drain (no worker here)
    now = T0
    with session_scope(engine) as session:
        assert queue_system_alerts(session, settings, now, workers_seen=["w0@a", "w1@a"]) == 0
        session.add(ScheduledEnqueue(job="tick:BTC/USDT", fire_time=now, enqueued_at=now))
        for i in range(3):
            session.add(TaskRun(task_id=f"p{i}", name="predict", status="failed",
                                error=f"DataError: candle missing {i}\ntrace",
                                finished_at=now + timedelta(minutes=20 + i)))
        session.add(TaskRun(task_id="i0", name="ingest", status="failed",
                            finished_at=now + timedelta(minutes=20)))
    later = now + timedelta(minutes=30)
    with session_scope(engine) as session:
        assert queue_system_alerts(session, settings, later, workers_seen=["w0@a"]) == 2
    with session_scope(engine) as session:  # the same problems again: no new alerts
        assert queue_system_alerts(session, settings, later + timedelta(minutes=1),
                                   workers_seen=["w0@a"]) == 0
    much_later = now + timedelta(hours=3)  # no tick for 3 h: the scheduler went silent
    assert system_check(engine, settings, much_later) == 1  # no broker: workers not pinged
    texts = sorted(format_alert("system", r.payload, html=False) for r in rows(engine, "system"))
    assert texts == [
        "System: task predict failed 3 times in 60 min\nlast error: DataError: candle missing 2",
        "System: the scheduler is silent\nlast candle tick enqueued at 2024-03-01 12:00 UTC",
        "System: worker w1@a is silent\nlast answered a ping at 2024-03-01 12:00 UTC",
    ]


@pytest.mark.integration
def test_system_check_job_pings_workers_through_the_broker_and_enqueues_a_drain(rules,
                                                                                redis_url):
    engine, settings = rules(broker_url=redis_url)
    use_broker(settings)
    assert system_check(engine, settings, T0, ping=lambda: [{"w0@a": {"ok": "pong"}}]) == 0
    assert system_check(engine, settings, T0 + timedelta(minutes=11), ping=lambda: []) == 1
    import redis

    assert redis.Redis.from_url(redis_url).llen("alerts") == 1  # one drain is waiting
    [row] = rows(engine, "system")
    assert row.payload["worker"] == "w0@a" and row.chat_id == CHAT
