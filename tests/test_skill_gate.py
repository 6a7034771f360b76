"""No alert without skill: a prediction that reaches its threshold is alerted only while the
serving model's walk-forward gate is open and its live record is not significantly worse than
the base rate; otherwise it is recorded with the reason, unless an admin overrides the target."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlmodel import select

from signalcast.alerts.gate import min_live_rows, signal_gate
from signalcast.core.timeframes import last_closed_open_time
from signalcast.db.engine import session_scope
from signalcast.db.tables import ModelVersion, Outcome, Prediction
from signalcast.features import DOWN, UP
from tests.conftest import SMALL_CONFIG
from tests.test_routing import (
    BTC,
    T1,
    add_version,
    make_env,
    outbox,
    predict,
    register_test_families,
    rows_at,
)

GATED = {"models": {**SMALL_CONFIG["models"], "alert_without_skill": []}}
OPEN = {"gate_open": True, "gate_reason": "direction skill +0.0500 >= lower bound +0.0100 > 0",
        "brier_skill": 0.05, "skill_lower": 0.01}
CLOSED = {"gate_open": False, "gate_reason": "direction skill -0.0100 (lower bound -0.0400, "
          "p=0.700) not shown", "brier_skill": -0.01, "skill_lower": -0.04}


def set_metrics(engine, version_id: int, metrics: dict) -> None:
    with session_scope(engine) as session:
        row = session.get(ModelVersion, version_id)
        row.metrics = metrics
        session.add(row)


@pytest.fixture
def families(monkeypatch):
    register_test_families(monkeypatch)


@pytest.fixture
def gated(tmp_path, sqlite_url, families):
    return make_env(sqlite_url, tmp_path, **GATED)


def test_a_closed_gate_records_the_prediction_and_holds_its_alert_with_the_reason(gated):
    engine, settings, now = gated
    champion = add_version(engine, "const", role="champion", p=0.9)
    set_metrics(engine, champion.id, CLOSED)
    candle = last_closed_open_time(now, "1h")
    result = predict(engine, settings, candle)
    served = rows_at(engine, candle)[champion.id]
    assert served.prob_up == pytest.approx(0.9) and served.served
    assert served.alert_held.startswith("walk-forward: direction skill -0.0100")
    assert result.held[T1] == served.alert_held and result.alerts == 0
    assert outbox(engine, "signal") == []


def test_an_open_gate_sends_the_alert(gated):
    engine, settings, now = gated
    champion = add_version(engine, "const", role="champion", p=0.9)
    set_metrics(engine, champion.id, OPEN)
    candle = last_closed_open_time(now, "1h")
    result = predict(engine, settings, candle)
    assert rows_at(engine, candle)[champion.id].alert_held is None and T1 not in result.held
    (signal,) = [a for a in outbox(engine, "signal") if a.target == T1]
    assert signal.payload["model_version_id"] == champion.id
    assert signal.payload["probability"] == pytest.approx(0.9)


def test_a_version_without_walk_forward_evidence_is_held_until_retrained(gated):
    engine, settings, now = gated
    add_version(engine, "const", role="champion", p=0.9)  # metrics {}: trained before the gate
    result = predict(engine, settings, last_closed_open_time(now, "1h"))
    assert "retrain" in result.held[T1] and outbox(engine, "signal") == []


def test_the_admin_override_lets_one_target_alert_and_says_so(tmp_path, sqlite_url,
                                                              families):
    models = {**SMALL_CONFIG["models"], "alert_without_skill": [T1]}
    engine, settings, now = make_env(sqlite_url, tmp_path, models=models)
    champion = add_version(engine, "const", role="champion", p=0.9)
    set_metrics(engine, champion.id, CLOSED)
    with session_scope(engine, readonly=True) as session:
        gate = signal_gate(session, settings, BTC, T1, champion.id)
        other = signal_gate(session, settings, BTC, "2pct_48")
    assert gate.open and gate.overridden and gate.reason.startswith("admin override")
    assert not other.open
    predict(engine, settings, last_closed_open_time(now, "1h"))
    assert [a.target for a in outbox(engine, "signal")] == [T1]


def test_live_outcomes_significantly_worse_than_the_base_rate_close_an_open_gate(gated):
    engine, settings, now = gated
    champion = add_version(engine, "const", role="champion", p=0.95)
    set_metrics(engine, champion.id, OPEN)
    n = min_live_rows(24) + 24
    start = now - timedelta(hours=n + 100)
    with session_scope(engine) as session:  # "95% up" on candles that all went down
        for i in range(n):
            t = start + timedelta(hours=i)
            session.add(Prediction(asset=BTC, target=T1, model_version_id=champion.id,
                                   candle_time=t, prob_up=0.95, prob_down=0.05))
            session.add(Outcome(asset=BTC, target=T1, candle_time=t,
                                label=DOWN if i % 10 else UP, bars=3))
    with session_scope(engine, readonly=True) as session:
        gate = signal_gate(session, settings, BTC, T1, champion.id)
        assert session.exec(select(Prediction)).first() is not None
    assert not gate.open and gate.reason.startswith("live: served skill")
    assert gate.live["n"] == n and gate.live["worse"]
