"""Alerts on the production path: scheduler ticks enqueue ingest -> predict | resolve and one
drain per tick on a real `signalcast worker` process (Redis broker), which sends charts and texts
to the fake Bot API server through a 429 burst. Every alert arrives once per chat, also when a
predict and a drain are redelivered."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlmodel import select

from signalcast.config import load_settings
from signalcast.core.timeframes import last_closed_open_time
from signalcast.db.engine import init_db, session_scope
from signalcast.db.tables import AlertOutbox
from signalcast.lifecycle.train import train_model
from signalcast.scheduler.jobs import candle_close_tick
from signalcast.tasks import tasks
from signalcast.tasks.app import app
from signalcast.tasks.runner import wait_tick
from tests.conftest import seed_history, write_config
from tests.fakes.broker import forget_broker, use_broker
from tests.fakes.telegram_checks import signal_counts
from tests.fakes.telegram_server import FakeTelegram
from tests.processes import signalcast_env, workers

pytestmark = pytest.mark.integration

CHATS = ("777", "-888")
CONFIG = {
    "assets": [{"symbol": "BTC/USDT"}],
    "targets": [{"pct": 0.01, "horizon": 24, "alert_threshold": 0.51},
                {"pct": 0.02, "horizon": 48, "alert_threshold": 0.51}],
    # about delivery, not skill: every target may alert (the skill gate is tested apart)
    "models": {"champion": "lightgbm", "params": {"lightgbm": {"n_estimators": 20}},
               "alert_without_skill": ["*"]},
    "training": {"history_candles": 3000, "min_rows": 300},
    "alerts": {"console": False, "charts": True, "chart_candles": 48,
               "chat_interval_seconds": 0.2,
               # the ticks replay candles of 2023: old signals may still go out here
               "max_signal_age_seconds": 10 * 365 * 86400},
}


@pytest.fixture(autouse=True)
def _forget_broker_afterwards():
    yield
    forget_broker()  # the next test configures its own broker from scratch


def test_ticks_on_a_worker_deliver_every_alert_once_per_chat_through_a_429_burst(
        sqlite_url, redis_url, tmp_path):
    config = write_config(tmp_path / "workers.yaml", CONFIG)
    with FakeTelegram() as tg:
        settings = load_settings(config, database_url=sqlite_url, broker_url=redis_url,
                                 telegram_token=tg.token, telegram_api_url=tg.base_url,
                                 telegram_chat_ids=",".join(CHATS))
        engine = init_db(sqlite_url)
        now = seed_history(engine, settings)
        for target in settings.targets:
            train_model(engine, settings, "BTC/USDT", target.key, "lightgbm", now=now)
        use_broker(settings)
        env = signalcast_env(config, sqlite_url, redis_url, SIGNALCAST_TELEGRAM_TOKEN=tg.token,
                             SIGNALCAST_TELEGRAM_API_URL=tg.base_url,
                             SIGNALCAST_TELEGRAM_CHAT_IDS=",".join(CHATS))
        tg.fail(None, 429, retry_after=1, times=2)  # flood control on the first sends
        with workers(env, app, count=1, log_dir=tmp_path, queues="predict,alerts"):
            for hour in (1, 2, 3):
                tick = now + timedelta(hours=hour, seconds=20)
                results = candle_close_tick(engine, settings, tick)
                assert len(results) == 1  # one asset
                assert wait_tick(results, timeout=120) == []  # its work and the tick's drain
            # redelivered tasks: the last predict and a drain run again, nothing new is sent
            candle = last_closed_open_time(tick, "1h").isoformat()
            assert tasks.predict.delay("BTC/USDT", candle).get(timeout=60)["alerts"] == 0
            assert tasks.send_alerts.delay().get(timeout=60)["sent"] == 0

    with session_scope(engine, readonly=True) as session:
        signals = session.exec(select(AlertOutbox).where(AlertOutbox.kind == "signal")).all()
    assert signals and {row.status for row in signals} == {"sent"}
    counts = signal_counts(tg)
    assert set(counts.values()) == {1}  # none doubled
    assert sorted(counts) == sorted(  # none lost
        (row.chat_id, row.asset, row.target, f"{row.candle_time:%Y-%m-%d %H:%M}")
        for row in signals)
    assert len([c for c in tg.calls if c.status == 429]) == 2
    photos = tg.sent_photos()
    assert len(photos) == len(signals) and min(p["photo_size"] for p in photos) > 5_000
