"""Champion/challenger routing: what serves each (asset, target, candle), shadows, the A/B split,
the fallback chain with circuit breakers, run-time changes and rollback.

Model versions are stored directly (tiny test families registered in the registry for the test),
so each probability is known and a failure is exactly the one planted. Everything that touches
SQL runs on SQLite and on Postgres.
"""

from __future__ import annotations

import math
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import func
from sqlmodel import select

from signalcast.config import load_settings
from signalcast.config.environment import EnvConfig
from signalcast.config.keys import resolve_artifact_keys
from signalcast.config.settings import RoutePolicy
from signalcast.core.timeframes import last_closed_open_time
from signalcast.db.engine import init_db, session_scope
from signalcast.db.tables import (
    AlertOutbox,
    ModelBreaker,
    ModelVersion,
    Prediction,
    RoutingOverride,
)
from signalcast.features import FEATURE_SET, feature_names
from signalcast.lifecycle import admin as model_admin
from signalcast.models import registry
from signalcast.models.artifact import ArtifactIdentity, ServedModel, sha256, sign
from signalcast.models.base import SignalModel
from signalcast.models.calibration import SigmoidCalibrator
from signalcast.pipeline.predict import (
    plan_predictions,
    predict_asset,
    predict_candle,
    store_predictions,
)
from signalcast.routing.breaker import CLOSED, HALF_OPEN, OPEN, Breakers, state_at
from signalcast.routing.overrides import clear_override, set_override
from tests.conftest import SMALL_CONFIG, seed_history, write_config

BTC, T1, T2 = "BTC/USDT", "1pct_24", "2pct_48"

# -- tiny model families with known answers --------------------------------------------------------


class ConstModel(SignalModel):
    """P(UP) = ``p`` for every row."""

    family = "const"
    calls = 0  # predict_proba calls, all instances (to see whether a model was tried)

    def __init__(self, *, seed: int = 0, p: float = 0.5):
        super().__init__(seed=seed, p=p)
        self.fitted_: bool | None = None

    def fit(self, X, y):
        self._check_fit_input(X, y)
        self.fitted_ = True
        return self

    def predict_proba(self, X):
        self._check_fitted(self.fitted_)
        type(self).calls += 1
        return np.full(len(np.asarray(X)), float(self.params["p"]))

    def to_bytes(self) -> bytes:
        self._check_fitted(self.fitted_)
        return b"const"

    @classmethod
    def from_bytes(cls, data, params):
        model = cls(**params)
        model.fitted_ = True
        return model


class ConstB(ConstModel):
    family = "const_b"


class ConstC(ConstModel):
    family = "const_c"


class ExplodingModel(ConstModel):
    """Raises on every prediction (a broken model, a library bug)."""

    family = "exploding"

    def predict_proba(self, X):
        type(self).calls += 1
        raise RuntimeError("model exploded")


TEST_FAMILIES = {"const": "ConstModel", "const_b": "ConstB", "const_c": "ConstC",
                 "exploding": "ExplodingModel"}


def register_test_families(monkeypatch) -> None:
    """Register the tiny families above by import path, like any built-in."""
    for name, cls in TEST_FAMILIES.items():
        monkeypatch.setitem(registry.BUILTIN, name, f"tests.test_routing:{cls}")


@pytest.fixture
def test_families(monkeypatch):
    register_test_families(monkeypatch)
    return TEST_FAMILIES


def add_version(engine, family: str, *, asset: str = BTC, target: str = T1,
                role: str = "challenger", corrupt: bool = False,
                train_end: datetime | None = None, **params) -> ModelVersion:
    """Store a fitted version of ``family`` (constructor ``params``) with a verified artifact;
    ``corrupt`` stores a wrong sha256 (the artifact fails its checksum)."""
    width = len(feature_names())
    rng = np.random.default_rng(0)
    model = registry.create(family, **params).fit(rng.normal(size=(40, width)),
                                                  np.arange(40) % 2)
    blob = ServedModel(model, SigmoidCalibrator(), FEATURE_SET, feature_names()).to_bytes()
    start = datetime(2023, 1, 1, tzinfo=UTC)
    with session_scope(engine) as session:
        latest = session.exec(select(func.max(ModelVersion.version)).where(
            ModelVersion.asset == asset, ModelVersion.target == target,
            ModelVersion.family == family)).one()
        if role == "champion":
            for old in session.exec(select(ModelVersion).where(
                    ModelVersion.asset == asset, ModelVersion.target == target,
                    ModelVersion.role == "champion")).all():
                old.role = "retired"
                session.add(old)
        row = ModelVersion(
            asset=asset, target=target, family=family, version=(latest or 0) + 1, role=role,
            feature_set=FEATURE_SET, features=feature_names(), params=model.get_params(),
            metrics={}, lib_versions={}, train_start=start, train_end=train_end or start,
            n_rows=40, data_fingerprint=uuid.uuid4().hex,
            sha256="0" * 64 if corrupt else sha256(blob), artifact=blob)
        row.artifact_mac = sign(blob, ArtifactIdentity.of(row), engine_keys(engine))
        session.add(row)
        session.flush()
        session.expunge(row)
    return row


def engine_keys(engine):
    """The artifact keys the settings of ``engine``'s database resolve to."""
    url = engine.url.render_as_string(hide_password=False)
    return resolve_artifact_keys(EnvConfig(database_url=url))


def make_env(db_url: str, tmp_path: Path, routing: dict | None = None, days: int = 9,
             **overrides):
    """(engine, settings, now) on the small config plus ``routing``; ``days`` of candles."""
    # routing tests are about who serves, not skill: the admin override lets signals out
    config = {"routing": routing or {},
              "alerts": {"console_kinds": ["signal", "outcome", "model"]},
              "models": {**SMALL_CONFIG["models"], "alert_without_skill": ["*"]}, **overrides}
    settings = load_settings(write_config(tmp_path / "routing.yaml", config),
                             database_url=db_url, broker_url=None, telegram_token=None)
    engine = init_db(db_url)
    return engine, settings, seed_history(engine, settings, days=days)


def predict(engine, settings, candle, asset: str = BTC):
    """As the predict task does: decided in a read-only transaction, written in a short one."""
    return predict_candle(engine, settings, asset, candle)


def rows_at(engine, candle, target: str = T1) -> dict[int, Prediction]:
    with session_scope(engine, readonly=True) as session:
        return {p.model_version_id: p for p in session.exec(select(Prediction).where(
            Prediction.asset == BTC, Prediction.target == target,
            Prediction.candle_time == candle)).all()}


def outbox(engine, kind: str) -> list[AlertOutbox]:
    with session_scope(engine, readonly=True) as session:
        return list(session.exec(select(AlertOutbox).where(AlertOutbox.kind == kind)
                                 .order_by(AlertOutbox.id)).all())


# -- the decision ----------------------------------------------------------------------------------


def test_champion_serves_and_shadows_predict_unserved_and_unalerted(db_url, tmp_path,
                                                                    test_families):
    engine, settings, now = make_env(db_url, tmp_path, {"default": {"shadows": ["const_b",
                                                                                 "const_c"]}})
    champion = add_version(engine, "const", role="champion", p=0.9)
    shadow_b = add_version(engine, "const_b", p=0.95)
    shadow_c = add_version(engine, "const_c", p=0.05)
    candle = last_closed_open_time(now, "1h")
    result = predict(engine, settings, candle)

    rows = rows_at(engine, candle)
    assert set(rows) == {champion.id, shadow_b.id, shadow_c.id}
    assert (rows[champion.id].served, rows[champion.id].role) == (True, "champion")
    assert rows[champion.id].prob_up == pytest.approx(0.9)
    for shadow, p in ((shadow_b, 0.95), (shadow_c, 0.05)):
        assert (rows[shadow.id].served, rows[shadow.id].role) == (False, "shadow")
        assert rows[shadow.id].prob_up == pytest.approx(p)
    signals = [a for a in outbox(engine, "signal") if a.target == T1]
    assert [a.payload["model"] for a in signals] == ["const v1"]  # one alert: the champion's
    assert signals[0].payload["fallback"] is None and signals[0].payload["conflict"] is False
    assert result.served[T1] == "const v1 (champion)" and not result.fallbacks
    assert T2 in result.skipped  # no model for the other target: skipped, nothing else


def test_ab_coin_is_reproducible_and_its_share_matches_within_four_sigma():
    from signalcast.routing.router import ab_bucket, serves_challenger

    start, n, share = datetime(2024, 1, 1, tzinfo=UTC), 5000, 0.2
    candles = [start + timedelta(hours=h) for h in range(n)]
    chosen = sum(serves_challenger(BTC, T1, c, share) for c in candles)
    # Binomial(n, share): sd = sqrt(n p (1 - p)) = 28.3; a fair hash lands within 4 sd with
    # probability 1 - 6e-5, and a biased coin (say 0.22) would be 3.5 sd out on average.
    assert abs(chosen - n * share) <= 4 * math.sqrt(n * share * (1 - share))
    assert [serves_challenger(BTC, T1, c, share) for c in candles[:50]] == [
        serves_challenger(BTC, T1, c, share) for c in candles[:50]]
    other_target = [ab_bucket(BTC, T2, c) < share for c in candles]
    assert other_target != [ab_bucket(BTC, T1, c) < share for c in candles]
    assert not any(serves_challenger(BTC, T1, c, 0.0) for c in candles)
    assert all(serves_challenger(BTC, T1, c, 1.0) for c in candles)


def test_ab_candle_is_served_by_the_challenger_and_the_champion_kept_unserved(db_url, tmp_path,
                                                                              test_families):
    from signalcast.routing.router import serves_challenger

    engine, settings, now = make_env(db_url, tmp_path, {"default": {
        "ab_share": 0.5, "ab_challenger": "const_b"}})
    champion = add_version(engine, "const", role="champion", p=0.8)
    challenger = add_version(engine, "const_b", p=0.3)
    newest = last_closed_open_time(now, "1h")
    candles = [newest - timedelta(hours=h) for h in range(12)]
    ab_candle = next(c for c in candles if serves_challenger(BTC, T1, c, 0.5))
    plain_candle = next(c for c in candles if not serves_challenger(BTC, T1, c, 0.5))
    for candle in (ab_candle, plain_candle):
        predict(engine, settings, candle)

    ab_rows, plain_rows = rows_at(engine, ab_candle), rows_at(engine, plain_candle)
    assert (ab_rows[challenger.id].served, ab_rows[challenger.id].role) == (True, "ab")
    assert (ab_rows[champion.id].served, ab_rows[champion.id].role) == (False, "champion")
    assert (plain_rows[champion.id].served, plain_rows[champion.id].role) == (True, "champion")
    assert (plain_rows[challenger.id].served, plain_rows[challenger.id].role) == (False,
                                                                                   "shadow")
    signal = next(a for a in outbox(engine, "signal") if a.candle_time == ab_candle)
    assert signal.payload["model"] == "const_b v1" and signal.payload["direction"] == "DOWN"


# -- the fallback chain and the breaker ------------------------------------------------------------


def test_corrupted_artifact_falls_back_to_the_previous_champion_and_says_why(db_url, tmp_path,
                                                                             test_families):
    engine, settings, now = make_env(db_url, tmp_path)
    previous = add_version(engine, "const", role="champion", p=0.7)
    broken = add_version(engine, "const", role="champion", corrupt=True, p=0.9)
    candle = last_closed_open_time(now, "1h")
    result = predict(engine, settings, candle)

    rows = rows_at(engine, candle)
    assert set(rows) == {previous.id}
    served = rows[previous.id]
    assert (served.served, served.role, served.prob_up) == (True, "fallback", pytest.approx(0.7))
    assert "const v2 failed" in served.fallback and "checksum mismatch" in served.fallback
    assert result.fallbacks[T1] == served.fallback
    signal = next(a for a in outbox(engine, "signal") if a.target == T1)
    assert signal.payload["model"] == "const v1" and "checksum" in signal.payload["fallback"]
    with session_scope(engine, readonly=True) as session:
        breaker = session.get(ModelBreaker, broken.id)
    assert (breaker.state, breaker.failures, breaker.last_candle) == (CLOSED, 1, candle)


def test_raising_model_falls_back_to_the_online_river_baseline(db_url, tmp_path, test_families):
    engine, settings, now = make_env(db_url, tmp_path)
    add_version(engine, "exploding", role="champion")
    river = add_version(engine, "river")
    candle = last_closed_open_time(now, "1h")
    predict(engine, settings, candle)

    rows = rows_at(engine, candle)
    assert list(rows) == [river.id]
    assert (rows[river.id].served, rows[river.id].role) == (True, "fallback")
    assert rows[river.id].fallback == "exploding v1 failed: RuntimeError: model exploded"


def test_nothing_left_to_serve_means_no_signal_and_one_operator_alert(db_url, tmp_path,
                                                                      test_families):
    engine, settings, now = make_env(db_url, tmp_path)
    add_version(engine, "exploding", role="champion")
    candle = last_closed_open_time(now, "1h")
    first = predict(engine, settings, candle)
    second = predict(engine, settings, candle)

    assert rows_at(engine, candle) == {}
    assert "model exploded" in first.skipped[T1]
    alerts = outbox(engine, "model")
    assert len(alerts) == 1 and (first.alerts, second.alerts) == (1, 0)
    assert alerts[0].payload["event"] == "fallback"
    assert alerts[0].payload["reason"].startswith("no signal: exploding v1 failed")
    assert outbox(engine, "signal") == []


def test_breaker_opens_after_k_failures_half_opens_once_and_closes_on_success(db_url, tmp_path,
                                                                              test_families):
    engine, _settings, now = make_env(db_url, tmp_path, days=1)
    version = add_version(engine, "const", p=0.6)
    policy = RoutePolicy(breaker_failures=3, breaker_cooldown_minutes=60)
    t0 = datetime(2024, 1, 1, tzinfo=UTC)

    def step(action: str, at: datetime, *args):
        with session_scope(engine) as session:
            return getattr(Breakers(session, [version.id]), action)(version.id, at, *args)

    def state(at: datetime) -> str:
        with session_scope(engine, readonly=True) as session:
            return state_at(Breakers(session, [version.id], lock=False).get(version.id), at,
                            policy)

    assert step("failure", t0, "boom", policy) is False
    assert step("failure", t0, "boom", policy) is False  # the same candle again: not counted
    assert step("failure", t0 + timedelta(hours=1), "boom", policy) is False
    assert state(t0 + timedelta(hours=1)) == CLOSED
    assert step("failure", t0 + timedelta(hours=2), "boom", policy) is True  # third: opens
    assert state(t0 + timedelta(hours=2, minutes=59)) == OPEN
    allowed, why = step("allows", t0 + timedelta(hours=2, minutes=30), policy)
    assert not allowed and "circuit open after 3 failures" in why and "boom" in why
    assert state(t0 + timedelta(hours=3)) == HALF_OPEN  # cooldown over: one trial
    assert step("allows", t0 + timedelta(hours=3), policy) == (True, "")
    assert step("failure", t0 + timedelta(hours=3), "again", policy) is True  # trial failed
    assert state(t0 + timedelta(hours=3, minutes=30)) == OPEN
    step("success", t0 + timedelta(hours=4))  # the next trial works
    assert state(t0 + timedelta(hours=4)) == CLOSED
    with session_scope(engine, readonly=True) as session:
        row = session.get(ModelBreaker, version.id)
    assert (row.state, row.failures, row.opened_at) == (CLOSED, 0, None)


def test_open_breaker_skips_the_champion_without_calling_it(db_url, tmp_path, test_families):
    engine, settings, now = make_env(db_url, tmp_path, {"default": {
        "breaker_failures": 2, "breaker_cooldown_minutes": 180}})
    add_version(engine, "exploding", role="champion")
    online = add_version(engine, "river")
    newest = last_closed_open_time(now, "1h")
    candles = [newest - timedelta(hours=h) for h in (5, 4, 3, 2)]
    exploding = registry.family_class("exploding")  # the class the registry serves
    exploding.calls = 0
    for candle in candles:
        predict(engine, settings, candle)

    # two failures open the breaker; the next two candles skip the champion without calling it
    assert exploding.calls == 2
    fallbacks = [rows_at(engine, c)[online.id].fallback for c in candles]
    assert all("failed: RuntimeError" in f for f in fallbacks[:2])
    assert all("skipped: circuit open after 2 failures" in f for f in fallbacks[2:])
    opened = [a for a in outbox(engine, "model") if a.payload["event"] == "breaker_open"]
    assert len(opened) == 1 and opened[0].candle_time == candles[1]


def test_shadow_failure_does_not_change_the_served_prediction(db_url, tmp_path, test_families):
    engine, settings, now = make_env(db_url, tmp_path, {"default": {
        "shadows": ["exploding", "const_b"]}})
    champion = add_version(engine, "const", role="champion", p=0.8)
    broken_shadow = add_version(engine, "exploding")
    shadow = add_version(engine, "const_b", p=0.4)
    candle = last_closed_open_time(now, "1h")
    result = predict(engine, settings, candle)

    rows = rows_at(engine, candle)
    assert set(rows) == {champion.id, shadow.id}  # the failed shadow has no row
    assert (rows[champion.id].served, rows[champion.id].fallback) == (True, None)
    assert rows[champion.id].prob_up == pytest.approx(0.8)
    assert T1 not in result.fallbacks and result.served[T1] == "const v1 (champion)"
    assert [a.payload["probability"] for a in outbox(engine, "signal")] == [0.8]
    with session_scope(engine, readonly=True) as session:
        assert session.get(ModelBreaker, broken_shadow.id).failures == 1  # counted all the same


# -- run-time changes, rollback, idempotency -------------------------------------------------------


def test_runtime_override_changes_shadows_and_ab_without_a_restart(db_url, tmp_path,
                                                                   test_families):
    from signalcast.routing.router import serves_challenger

    engine, settings, now = make_env(db_url, tmp_path)
    # older than the champion: not a challenger policy of its own, shadows only when configured
    shadow = add_version(engine, "const_b", p=0.3)
    champion = add_version(engine, "const", role="champion", p=0.8)
    newest = last_closed_open_time(now, "1h")
    first, second, third = (newest - timedelta(hours=h) for h in (2, 1, 0))
    predict(engine, settings, first)
    assert set(rows_at(engine, first)) == {champion.id}

    policy = set_override(engine, settings, BTC, T1, actor="test", shadows=["const_b"])
    assert policy.shadows == ["const_b"]
    predict(engine, settings, second)  # same settings object: read from the database
    assert rows_at(engine, second)[shadow.id].role == "shadow"

    set_override(engine, settings, BTC, T1, actor="test", ab_share=1.0, ab_challenger="const_b")
    predict(engine, settings, third)
    assert serves_challenger(BTC, T1, third, 1.0)
    assert (rows_at(engine, third)[shadow.id].served, rows_at(engine, third)[shadow.id].role) \
        == (True, "ab")

    assert clear_override(engine, settings, BTC, T1) is True
    with session_scope(engine, readonly=True) as session:
        assert session.get(RoutingOverride, (BTC, T1)) is None


@pytest.mark.slow
def test_bad_runtime_override_is_refused_with_the_reason(db_url, tmp_path, test_families):
    from signalcast.core.errors import ConfigError, UnknownNameError

    engine, settings, _now = make_env(db_url, tmp_path, days=1)
    with pytest.raises(ConfigError, match="unknown model family 'xgbost'"):
        set_override(engine, settings, BTC, T1, actor="test", shadows=["xgbost"])
    with pytest.raises(ConfigError, match="needs an A/B challenger"):
        set_override(engine, settings, BTC, T1, actor="test", ab_share=0.2)
    with pytest.raises(UnknownNameError, match="Known: 1pct_24, 2pct_48"):
        set_override(engine, settings, BTC, "9pct_1", actor="test", shadows=[])
    with session_scope(engine, readonly=True) as session:
        assert session.exec(select(RoutingOverride)).all() == []


def test_rollback_restores_the_old_champion_and_the_router_serves_it_at_once(db_url, tmp_path,
                                                                             test_families):
    engine, settings, now = make_env(db_url, tmp_path)
    old = add_version(engine, "const", role="champion", p=0.7)
    new = add_version(engine, "const_b", p=0.9)
    model_admin.promote_version(engine, settings, BTC, T1, "const_b:1", actor="test")
    newest = last_closed_open_time(now, "1h")
    before, after = newest - timedelta(hours=1), newest
    predict(engine, settings, before)  # loads and caches the new champion in this process
    model_admin.rollback(engine, settings, BTC, T1, actor="test", reason="worse live")
    predict(engine, settings, after)

    assert rows_at(engine, before)[new.id].served is True
    served = rows_at(engine, after)
    assert set(served) == {old.id} and served[old.id].served is True
    assert served[old.id].prob_up == pytest.approx(0.7) and served[old.id].role == "champion"


def test_predicting_twice_changes_nothing_with_shadows_ab_and_fallbacks(db_url, tmp_path,
                                                                        test_families):
    engine, settings, now = make_env(db_url, tmp_path, {
        "default": {"shadows": ["const_c", "exploding"], "ab_share": 0.5,
                    "ab_challenger": "const_b", "breaker_failures": 2},
        "targets": [{"target": T2, "ab_share": 0.0, "shadows": []}]})
    add_version(engine, "const", role="champion", p=0.2)
    add_version(engine, "const", role="champion", corrupt=True, p=0.9)  # fails: falls back
    add_version(engine, "const_b", p=0.85)
    add_version(engine, "const_c", p=0.5)
    add_version(engine, "exploding")
    add_version(engine, "const", target=T2, role="champion", p=0.75)
    newest = last_closed_open_time(now, "1h")
    candles = [newest - timedelta(hours=h) for h in range(6, -1, -1)]

    def snapshot():
        with session_scope(engine, readonly=True) as session:
            return ([(p.target, p.model_version_id, p.candle_time, p.prob_up, p.served, p.role,
                      p.fallback) for p in session.exec(select(Prediction)
                                                        .order_by(Prediction.id)).all()],
                    [(a.chat_id, a.kind, a.candle_time, a.payload) for a in
                     session.exec(select(AlertOutbox).order_by(AlertOutbox.id)).all()],
                    [(b.model_version_id, b.state, b.failures, b.opened_at, b.last_candle)
                     for b in session.exec(select(ModelBreaker)).all()])

    firsts = [predict(engine, settings, c) for c in candles]
    once = snapshot()
    seconds = [predict(engine, settings, c) for c in candles]
    assert snapshot() == once
    assert sum(r.predictions for r in seconds) == 0 and sum(r.alerts for r in seconds) == 0
    assert sum(r.predictions for r in firsts) == len(once[0]) > 2 * len(candles)
    served = [(t, c) for t, _, c, _, s, _, _ in once[0] if s]
    assert len(served) == len(set(served)) == 2 * len(candles)  # one served row per target
    assert {role for *_, role, _ in once[0]} >= {"ab", "fallback", "shadow", "champion"}


@pytest.mark.slow
def test_cli_changes_and_shows_routing_at_run_time(sqlite_url, tmp_path, test_families):
    from typer.testing import CliRunner

    from signalcast.cli.routing import routing_cli

    engine, settings, _now = make_env(sqlite_url, tmp_path, days=1)
    add_version(engine, "const", role="champion", p=0.8)
    add_version(engine, "const_b", p=0.4)
    config = str(tmp_path / "routing.yaml")
    env = {"SIGNALCAST_DATABASE_URL": sqlite_url, "COLUMNS": "200"}
    runner = CliRunner()

    def run(*args: str) -> str:
        result = runner.invoke(routing_cli, [*args, "-C", config], env=env)
        assert result.exit_code == 0, result.output
        return result.output

    assert "shadows const_b" in run("shadow", BTC, T1, "const_b")
    assert "A/B 20% const_b" in run("ab", BTC, "all", "--share", "0.2", "--challenger",
                                     "const_b")
    shown = run("show")
    assert "const_b v1" in shown and "20% const_b v1" in shown and "1pct_24 *" in shown
    with session_scope(engine, readonly=True) as session:
        overrides = {(o.asset, o.target): o for o in session.exec(select(RoutingOverride))}
    assert overrides[(BTC, T1)].shadows == ["const_b"] and overrides[(BTC, T2)].ab_share == 0.2
    assert "too_few" in run("promote-check")  # const_b shadows, no outcomes yet
    assert "back to the configuration" in run("reset", BTC, T1)
    refused = runner.invoke(routing_cli, ["ab", BTC, T1, "--share", "0.5", "-C", config],
                            env={**env, "SIGNALCAST_CONFIG": config})
    assert refused.exit_code != 0
    assert "needs an A/B challenger" in str(refused.exception)


def test_a_prediction_decided_while_another_run_stored_it_doubles_nothing(db_url, tmp_path,
                                                                           test_families):
    """The predict task decides in a read-only transaction and writes after: runs that store in
    between (a redelivery of the same candle, the next candle) win. One served row per target,
    one alert per chat, and the late run's breaker change does not undo a newer one (the
    exploding shadow's breaker, opened at the next candle, stays open)."""
    engine, settings, now = make_env(db_url, tmp_path, {
        "default": {"shadows": ["const_c", "exploding"], "breaker_failures": 2}})
    add_version(engine, "const", role="champion", p=0.9)
    add_version(engine, "const_c", p=0.5)
    exploding = add_version(engine, "exploding")
    candle = last_closed_open_time(now, "1h")
    earlier = candle - timedelta(hours=1)

    with session_scope(engine, readonly=True) as session:  # this run decides ...
        plan = plan_predictions(session, settings, BTC, earlier, defer=True)
    assert plan.breaker_writes  # the exploding shadow's failure, not written yet
    with session_scope(engine) as session:  # ... other runs decide and store meanwhile
        other = predict_asset(session, settings, BTC, earlier)
        predict_asset(session, settings, BTC, candle)  # the second failure opens the breaker
    with session_scope(engine) as session:  # ... then this one stores
        late = store_predictions(session, settings, plan)

    assert other.predictions > 0 and late.predictions == 0 and late.alerts == 0
    rows = rows_at(engine, earlier)
    assert sum(r.served for r in rows.values()) == 1 and len(rows) == 2  # + the const_c shadow
    signals = outbox(engine, "signal")
    assert len(signals) == len({(a.chat_id, a.target, a.candle_time) for a in signals}) > 0
    with session_scope(engine, readonly=True) as session:
        breaker = session.get(ModelBreaker, exploding.id)
    assert (breaker.state, breaker.failures, breaker.last_candle) == (OPEN, 2, candle)
