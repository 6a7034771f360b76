"""Promotion on live outcomes: the autocorrelation-aware Diebold-Mariano test, and the job that
promotes a truly better challenger (with an audit row), keeps one that is not, notifies in
``command`` mode, and changes nothing when run twice."""

from __future__ import annotations

from datetime import timedelta

import numpy as np
import pytest
from sqlmodel import select

from signalcast.db.engine import session_scope
from signalcast.db.tables import (
    AlertOutbox,
    ModelEvent,
    ModelVersion,
    Outcome,
    Prediction,
    PromotionCheck,
)
from signalcast.db.upsert import upsert
from signalcast.lifecycle.promote import promotion_round as evaluate_promotions
from signalcast.stats.diebold_mariano import diebold_mariano, newey_west_variance
from tests.test_routing import BTC, T1, add_version, make_env, register_test_families

HORIZON = 24  # of target 1pct_24


def overlapping(rng: np.random.Generator, n: int, h: int) -> np.ndarray:
    """Mean-zero losses whose neighbours share ``h`` shocks, as outcomes of overlapping
    horizons do."""
    return np.convolve(rng.normal(size=n + h), np.ones(h), "valid")[:n] / h


def test_newey_west_sees_the_autocorrelation_of_overlapping_outcomes():
    rng = np.random.default_rng(0)
    iid, overlapped = rng.normal(size=5000), overlapping(rng, 5000, 12)
    assert newey_west_variance(iid, 24) / iid.var() == pytest.approx(1.0, abs=0.15)
    # the true long-run variance of a 12-wide moving average is 12x its variance
    assert 8 < newey_west_variance(overlapped, 24) / overlapped.var() < 14


def test_diebold_mariano_keeps_its_size_where_the_naive_test_does_not():
    rng = np.random.default_rng(1)
    n, h, runs = 400, 24, 300
    nulls = [overlapping(rng, n, h) for _ in range(runs)]
    zero = np.zeros(n)
    corrected = np.mean([diebold_mariano(d, zero, lags=2 * h).p_value < 0.05 for d in nulls])
    naive = np.mean([diebold_mariano(d, zero, lags=0).p_value < 0.05 for d in nulls])
    assert corrected < 0.10 < 0.25 < naive  # nominal 5%: overlap fools the naive test
    better = diebold_mariano(np.full(n, 0.20) + nulls[0] * 0.01, np.full(n, 0.25), lags=2 * h)
    assert better.p_value < 1e-6 and better.mean_diff == pytest.approx(-0.05, abs=0.005)
    margin = diebold_mariano(np.full(n, 0.20) + nulls[0] * 0.01, np.full(n, 0.25),
                             lags=2 * h, margin=0.06)
    assert margin.p_value > 0.5  # better, but not by the required margin


# -- the job ---------------------------------------------------------------------------------------


def plant_outcomes(engine, now, champion_id: int, challenger_id: int, n: int, *,
                   challenger_noise: float, champion_noise: float = 0.25, seed: int = 0):
    """``n`` resolved candles before ``now``: the truth q_t, y ~ Bernoulli(q_t), and each model's
    P(UP) = q_t + its noise. Plus candles the test must ignore: expired ones, and ones only the
    champion predicted."""
    rng = np.random.default_rng(seed)
    q = np.clip(0.5 + 0.3 * np.sin(np.arange(n + 20) / 9.0), 0.05, 0.95)
    y = (rng.random(n + 20) < q).astype(int)
    candles = [now - timedelta(hours=HORIZON + 1 + k) for k in range(n + 20)][::-1]
    predictions, outcomes = [], []
    for i, candle in enumerate(candles):
        p_champ = float(np.clip(q[i] + rng.normal(0, champion_noise), 0.01, 0.99))
        p_chal = float(np.clip(q[i] + rng.normal(0, challenger_noise), 0.01, 0.99))
        predictions.append((champion_id, candle, p_champ, True, "champion"))
        if i < n:  # the newest 20 candles: the challenger did not predict
            predictions.append((challenger_id, candle, p_chal, False, "shadow"))
        label = -1 if i % 50 == 0 else y[i]  # some expire (no direction)
        outcomes.append({"asset": BTC, "target": T1, "candle_time": candle, "label": int(label),
                         "bars": 3, "resolved_at": candle + timedelta(hours=HORIZON)})
    with session_scope(engine) as session:
        upsert(session, Prediction, [
            {"asset": BTC, "target": T1, "model_version_id": vid, "candle_time": t,
             "prob_up": p, "served": served, "role": role}
            for vid, t, p, served, role in predictions],
            keys=["asset", "target", "model_version_id", "candle_time"])
        upsert(session, Outcome, outcomes, keys=["asset", "target", "candle_time"])
    return n  # shared resolved outcomes (expired ones count: three outcomes)


def routed(db_url, tmp_path, monkeypatch, **policy):
    register_test_families(monkeypatch)
    engine, settings, now = make_env(db_url, tmp_path, {"default": {
        "shadows": ["const_b"], "promote_min_outcomes": 200, **policy}}, days=1)
    champion = add_version(engine, "const", role="champion", p=0.5)
    challenger = add_version(engine, "const_b", p=0.5)
    return engine, settings, now, champion, challenger


def table(engine, model):
    with session_scope(engine, readonly=True) as session:
        return session.exec(select(model)).all()


def roles(engine) -> dict[str, str]:
    return {f"{v.family} v{v.version}": v.role for v in table(engine, ModelVersion)}


def test_truly_better_challenger_is_promoted_with_an_audit_row(db_url, tmp_path, monkeypatch):
    engine, settings, now, champion, challenger = routed(db_url, tmp_path, monkeypatch,
                                                         promote_mode="auto")
    shared = plant_outcomes(engine, now, champion.id, challenger.id, 400, challenger_noise=0.03)
    first = evaluate_promotions(engine, settings, now)

    decision = next(d for d in first if d["target"] == T1)
    assert decision["decision"] == "promoted" and decision["n_shared"] == shared
    assert decision["stats"]["p_value"] < 0.005
    assert decision["stats"]["brier_challenger"] < decision["stats"]["brier_champion"]
    assert decision["stats"]["lags"] == 3 * HORIZON
    assert roles(engine) == {"const v1": "retired", "const_b v1": "champion"}
    [event] = table(engine, ModelEvent)
    assert (event.event, event.actor, event.from_label, event.to_label) == (
        "promoted", "promotion", "const v1", "const_b v1")
    assert event.stats["promotion_test"]["p_value"] == decision["stats"]["p_value"]
    assert decision["stats"]["e_value"] >= decision["stats"]["threshold"]
    assert "Diebold-Mariano" in event.reason and "always-valid test: e-value" in event.reason
    [check] = table(engine, PromotionCheck)
    assert (check.decision, check.n_shared) == ("promoted", shared)
    model_alerts = [a for a in table(engine, AlertOutbox) if a.kind == "model"]
    assert [a.payload["event"] for a in model_alerts] == ["promoted"]

    second = evaluate_promotions(engine, settings, now)  # again: nothing left to compare
    assert [d for d in second if d["target"] == T1] == []
    assert len(table(engine, ModelEvent)) == 1 and len(table(engine, PromotionCheck)) == 1
    assert len(table(engine, AlertOutbox)) == len(model_alerts)


def test_challenger_that_is_not_better_is_kept(db_url, tmp_path, monkeypatch):
    engine, settings, now, champion, challenger = routed(db_url, tmp_path, monkeypatch,
                                                         promote_mode="auto")
    plant_outcomes(engine, now, champion.id, challenger.id, 400, challenger_noise=0.25,
                   champion_noise=0.25)
    for _ in range(2):
        results = evaluate_promotions(engine, settings, now)
    decision = next(d for d in results if d["target"] == T1)
    assert decision["decision"] == "kept" and decision["stats"]["p_value"] > 0.05
    assert decision["stats"]["e_value"] < decision["stats"]["threshold"]
    assert roles(engine) == {"const v1": "champion", "const_b v1": "challenger"}
    assert table(engine, ModelEvent) == []
    assert [c.decision for c in table(engine, PromotionCheck)] == ["kept"]  # once, not twice


def test_command_mode_notifies_once_and_leaves_the_champion(db_url, tmp_path, monkeypatch):
    engine, settings, now, champion, challenger = routed(db_url, tmp_path, monkeypatch,
                                                         promote_mode="command")
    plant_outcomes(engine, now, champion.id, challenger.id, 400, challenger_noise=0.03)
    first = evaluate_promotions(engine, settings, now)
    plant_outcomes(engine, now, champion.id, challenger.id, 450, challenger_noise=0.03)
    second = evaluate_promotions(engine, settings, now)  # more (older) outcomes: qualified again

    assert [d["decision"] for d in first + second if d["target"] == T1] == ["qualified"] * 2
    assert roles(engine) == {"const v1": "champion", "const_b v1": "challenger"}
    ready = [a.payload for a in table(engine, AlertOutbox) if a.kind == "model"]
    assert len(ready) == 1 and ready[0]["event"] == "promotion_ready"
    assert ready[0]["to"] == "const_b v1" and "/promote" in ready[0]["reason"]
    assert first[0]["n_shared"] < second[0]["n_shared"]
    assert len(table(engine, PromotionCheck)) == 2  # one per sample size


def test_too_few_shared_outcomes_decide_nothing(db_url, tmp_path, monkeypatch):
    engine, settings, now, champion, challenger = routed(db_url, tmp_path, monkeypatch,
                                                         promote_mode="auto")
    shared = plant_outcomes(engine, now, champion.id, challenger.id, 150, challenger_noise=0.03)
    results = evaluate_promotions(engine, settings, now)
    decision = next(d for d in results if d["target"] == T1)
    assert (decision["decision"], decision["n_shared"]) == ("too_few", shared)
    assert shared == 150  # expired outcomes count; candles only one model predicted do not
    assert table(engine, PromotionCheck) == [] and roles(engine)["const v1"] == "champion"


def test_a_drift_alarm_on_the_champion_restarts_the_record_with_its_own_level(
        db_url, tmp_path, monkeypatch):
    from signalcast.stats.sequential import epoch_alpha

    engine, settings, now, champion, challenger = routed(db_url, tmp_path, monkeypatch,
                                                         promote_mode="command")
    plant_outcomes(engine, now, champion.id, challenger.id, 400, challenger_noise=0.03)
    oldest = now - timedelta(hours=HORIZON + 420)  # the first planted candle
    alarm_at = oldest + timedelta(hours=100)
    with session_scope(engine) as session:
        session.add(ModelEvent(event="drift", asset=BTC, target=T1, from_version_id=None,
                               to_version_id=champion.id, actor="drift", reason="test",
                               stats={"candle_time": alarm_at.isoformat()}))
    decision = next(d for d in evaluate_promotions(engine, settings, now) if d["target"] == T1)
    assert decision["n_shared"] == 300  # only the candles from the alarm's block on
    assert decision["stats"]["epoch"] == 1 and decision["stats"]["since"] == alarm_at.isoformat()
    stats = decision["stats"]
    assert stats["level"] == pytest.approx(epoch_alpha(1, 0.05))
    assert stats["threshold"] == pytest.approx(1 / stats["level"])
    assert decision["decision"] == ("qualified" if stats["e_value"] >= stats["threshold"]
                                    else "kept")
