"""The plain functions the tasks wrap: train, predict, resolve, alert delivery.

Each runs on SQLite and on Postgres, and each is shown to be idempotent: running it twice
changes nothing the second time.
"""

from __future__ import annotations

from datetime import timedelta

import numpy as np
import pytest
from sqlalchemy import func
from sqlmodel import select

from signalcast.alerts.drain import drain_outbox
from signalcast.config import Settings
from signalcast.core.errors import DataError, UnknownNameError
from signalcast.core.timeframes import last_closed_open_time
from signalcast.db.engine import session_scope
from signalcast.db.tables import AlertOutbox, Candle, ModelVersion, Outcome, Prediction
from signalcast.features.dataset import purged_split
from signalcast.lifecycle.train import train_model
from signalcast.pipeline.predict import predict_asset
from signalcast.pipeline.resolve import resolve_outcomes
from tests.conftest import seed_history


def count(engine, table) -> int:
    with session_scope(engine, readonly=True) as session:
        return session.exec(select(func.count()).select_from(table)).one()


def train_all(engine, settings, now):
    return [train_model(engine, settings, a.symbol, t.key, "lightgbm", now=now)
            for a in settings.assets for t in settings.targets]


def test_purged_split_leaves_a_gap_of_the_horizon_before_calibration():
    positions = np.arange(1000)
    train, cal = purged_split(positions, calibration_fraction=0.2, horizon=48)
    assert positions[cal].min() == 800
    # a train row's label looks at candles pos+1 .. pos+H: all before the calibration fold
    assert positions[train].max() + 48 < positions[cal].min()
    assert not (train & cal).any()


def without_skill_gate(settings: Settings) -> Settings:
    """``settings`` with the admin override that lets every target alert without skill."""
    models = settings.file.models.model_copy(update={"alert_without_skill": ["*"]})
    return Settings(settings.file.model_copy(update={"models": models}), settings.env,
                    settings.source)


@pytest.mark.slow
def test_training_twice_on_the_same_data_returns_the_same_version(engine_and_settings):
    engine, settings = engine_and_settings
    now = seed_history(engine, settings)
    first = train_model(engine, settings, "BTC/USDT", "1pct_24", "lightgbm", now=now)
    second = train_model(engine, settings, "BTC/USDT", "1pct_24", "lightgbm", now=now)
    assert (first.id, first.version) == (second.id, 1)
    assert count(engine, ModelVersion) == 1
    assert first.role == "champion"
    assert first.metrics["n_train"] >= settings.training.min_rows
    assert 0.0 < first.metrics["brier"] < 0.3
    assert len(first.sha256) == 64 and first.artifact


@pytest.mark.slow
def test_retraining_adds_a_challenger_and_keeps_the_champion_serving(engine_and_settings):
    engine, settings = engine_and_settings
    now = seed_history(engine, settings)
    old = train_model(engine, settings, "BTC/USDT", "1pct_24", "lightgbm", now=now)
    later = now + timedelta(days=2)
    with session_scope(engine) as session:
        from signalcast.pipeline.ingest import ingest_asset

        ingest_asset(session, settings, "BTC/USDT", later)
    new = train_model(engine, settings, "BTC/USDT", "1pct_24", "lightgbm", now=later)
    assert new.version == 2 and new.role == "challenger"
    with session_scope(engine) as session:
        assert session.get(ModelVersion, old.id).role == "champion"
        predict_asset(session, settings, "BTC/USDT", last_closed_open_time(later, "1h"))
    with session_scope(engine, readonly=True) as session:
        rows = {p.model_version_id: p for p in session.exec(select(Prediction)).all()}
    # the champion serves; the retrained version shadows it (recorded, never served)
    assert rows[old.id].served and not rows[new.id].served
    assert rows[new.id].role == "shadow"


def test_training_with_too_little_history_says_how_much_is_needed(engine_and_settings):
    engine, settings = engine_and_settings
    now = seed_history(engine, settings, days=10)
    with pytest.raises(DataError, match="ingest more history"):
        train_model(engine, settings, "BTC/USDT", "1pct_24", "lightgbm", now=now)


def test_unknown_family_asset_and_target_name_the_known_ones(engine_and_settings):
    engine, settings = engine_and_settings
    now = seed_history(engine, settings, days=10)
    with pytest.raises(UnknownNameError, match="Did you mean 'lightgbm'"):
        train_model(engine, settings, "BTC/USDT", "1pct_24", "lgbm", now=now)
    with pytest.raises(UnknownNameError, match="Known: BTC/USDT, ETH/USDT"):
        train_model(engine, settings, "DOGE/USDT", "1pct_24", "lightgbm", now=now)
    with pytest.raises(UnknownNameError, match="Known: 1pct_24, 2pct_48"):
        train_model(engine, settings, "BTC/USDT", "3pct_24", "lightgbm", now=now)


@pytest.mark.slow
def test_predict_twice_writes_one_prediction_and_one_alert_per_chat(engine_and_settings):
    engine, settings = engine_and_settings
    settings = without_skill_gate(settings)  # about idempotency, not skill
    now = seed_history(engine, settings)
    train_all(engine, settings, now)
    candle = last_closed_open_time(now, "1h")
    results = []
    for _ in range(2):
        with session_scope(engine) as session:
            results.append(predict_asset(session, settings, "BTC/USDT", candle))
    assert results[0].predictions == len(settings.targets) and results[1].predictions == 0
    assert results[1].alerts == 0
    with session_scope(engine, readonly=True) as session:
        preds = session.exec(select(Prediction).where(Prediction.asset == "BTC/USDT")).all()
        alerts = session.exec(select(AlertOutbox)).all()
    assert len(preds) == len(settings.targets)
    assert all(0.0 <= p.prob_up <= 1.0 and p.candle_time == candle for p in preds)
    # an alert exists exactly for the predictions that crossed their threshold
    # (P(down first) is stored unconditionally since three outcomes; it was 1 - P(up) before)
    crossing = {p.target for p in preds
                if max(p.prob_up, p.prob_down) >= settings.target(p.target).alert_threshold}
    assert {a.target for a in alerts} == crossing
    assert results[0].alerts == len(crossing)


def test_predict_refuses_a_candle_that_is_not_stored(engine_and_settings):
    engine, settings = engine_and_settings
    now = seed_history(engine, settings)
    with session_scope(engine) as session, pytest.raises(DataError, match="is not stored"):
        predict_asset(session, settings, "BTC/USDT", now + timedelta(hours=5))


@pytest.mark.slow
def test_outcomes_resolve_once_and_only_from_candles_closed_by_now(engine_and_settings):
    engine, settings = engine_and_settings
    now = seed_history(engine, settings)
    train_all(engine, settings, now)
    candle = last_closed_open_time(now, "1h")
    with session_scope(engine) as session:
        predict_asset(session, settings, "BTC/USDT", candle)
    later = now + timedelta(hours=60)  # past both horizons (24 and 48 candles)
    with session_scope(engine) as session:
        from signalcast.pipeline.ingest import ingest_asset

        ingest_asset(session, settings, "BTC/USDT", later)
    # at `now` nothing after the prediction candle has closed: nothing can resolve
    with session_scope(engine) as session:
        assert resolve_outcomes(session, settings, "BTC/USDT", now) == 0
    with session_scope(engine) as session:
        assert resolve_outcomes(session, settings, "BTC/USDT", later) == len(settings.targets)
    with session_scope(engine) as session:
        assert resolve_outcomes(session, settings, "BTC/USDT", later) == 0
    with session_scope(engine, readonly=True) as session:
        outcomes = session.exec(select(Outcome)).all()
    assert {o.label for o in outcomes} <= {-1, 0, 1}
    assert all(o.bars <= settings.target(o.target).horizon for o in outcomes)


class RecordingTransport:
    html = False

    def __init__(self):
        self.sent: list[tuple[str, str]] = []

    def send(self, chat_id, text, *, photo=None):
        from signalcast.notifier.telegram import SendResult

        self.sent.append((chat_id, text))
        return SendResult(len(self.sent))


def _outbox_row(**overrides):
    row = {"chat_id": "console", "asset": "BTC/USDT", "target": "1pct_24",
           "candle_time": last_closed_open_time(  # a recent candle: within a signal's age
               __import__("datetime").datetime.now(__import__("datetime").UTC), "1h"),
           "kind": "signal", "payload": {"asset": "BTC/USDT", "note": "x"}}
    return {**row, **overrides}


def test_drained_alerts_are_sent_once_even_when_drained_twice(engine_and_settings):
    engine, _settings = engine_and_settings
    with session_scope(engine) as session:
        for chat in ("console", "42"):
            session.add(AlertOutbox(**_outbox_row(chat_id=chat)))
    transport = RecordingTransport()
    first = drain_outbox(engine, lambda chat: transport)
    second = drain_outbox(engine, lambda chat: transport)
    assert (first.sent, second.sent) == (2, 0)
    assert sorted(chat for chat, _ in transport.sent) == ["42", "console"]
    with session_scope(engine, readonly=True) as session:
        assert {a.status for a in session.exec(select(AlertOutbox)).all()} == {"sent"}


def test_candle_upsert_is_idempotent_and_keeps_utc(engine_and_settings):
    engine, settings = engine_and_settings
    seed_history(engine, settings, days=3)
    before = count(engine, Candle)
    seed_history(engine, settings, days=3)
    assert count(engine, Candle) == before == 2 * 3 * 24
    with session_scope(engine, readonly=True) as session:
        first = session.exec(select(Candle).order_by(Candle.time)).first()
    assert first.time == settings.data.start and first.time.tzinfo is not None
