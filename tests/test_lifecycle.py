"""The champion lifecycle as a whole: a rolling retrain challenger whose record is the union of
its versions, promoted on evidence, rolled back within the champion history, the previous
champion serving as fallback after a long, purge-free history; one champion per (asset, target)
enforced by the database; promotions fenced by the champion they tested; version numbers that
stay unique with two train processes on Postgres."""

from __future__ import annotations

import multiprocessing
import uuid
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
from sqlalchemy.exc import IntegrityError
from sqlmodel import select

from signalcast.core.errors import SignalcastError
from signalcast.core.timeframes import last_closed_open_time
from signalcast.db.engine import dispose_engines, get_engine, init_db, session_scope
from signalcast.db.tables import ModelEvent, ModelVersion, Outcome, Prediction
from signalcast.db.upsert import upsert
from signalcast.lifecycle import admin as model_admin
from signalcast.lifecycle.promote import evaluate_promotions
from signalcast.lifecycle.train import _purge_old_artifacts
from signalcast.lifecycle.versioning import store_version
from signalcast.routing.promotion import compare_target
from tests.test_routing import (
    BTC,
    T1,
    add_version,
    make_env,
    predict,
    register_test_families,
    rows_at,
)

HORIZON = 24  # of target 1pct_24


@pytest.fixture
def test_families(monkeypatch):
    register_test_families(monkeypatch)


def roles(engine) -> dict[str, str]:
    with session_scope(engine, readonly=True) as session:
        return {f"{v.family} v{v.version}": v.role for v in session.exec(select(ModelVersion))}


def plant(engine, now, champion_id: int, segments: list[tuple[int, int]], *, seed: int = 0):
    """Resolved candles before ``now``, oldest first; ``segments`` [(version id, candles)]: each
    retrained version shadows its own stretch (a daily retrain replaces it after a day). The
    champion is noisy, the challenger policy close to the truth; one outcome in 40 expires."""
    rng = np.random.default_rng(seed)
    n = sum(count for _, count in segments)
    q = np.clip(0.5 + 0.3 * np.sin(np.arange(n) / 9.0), 0.05, 0.95)
    y = (rng.random(n) < q).astype(int)
    candles = [now - timedelta(hours=HORIZON + 1 + k) for k in range(n)][::-1]
    owners = [vid for vid, count in segments for _ in range(count)]
    predictions, outcomes = [], []
    for i, candle in enumerate(candles):
        p_champ = float(np.clip(q[i] + rng.normal(0, 0.25), 0.01, 0.99))
        p_chal = float(np.clip(q[i] + rng.normal(0, 0.03), 0.01, 0.99))
        predictions += [(champion_id, candle, p_champ, True, "champion"),
                        (owners[i], candle, p_chal, False, "shadow")]
        label = -1 if i % 40 == 0 else int(y[i])
        outcomes.append({"asset": BTC, "target": T1, "candle_time": candle, "label": label,
                         "bars": 0 if label == -1 else 3,
                         "resolved_at": candle + timedelta(hours=HORIZON)})
    with session_scope(engine) as session:
        upsert(session, Prediction, [
            {"asset": BTC, "target": T1, "model_version_id": vid, "candle_time": t,
             "prob_up": p, "prob_down": 1.0 - p, "served": served, "role": role}
            for vid, t, p, served, role in predictions],
            keys=["asset", "target", "model_version_id", "candle_time"])
        upsert(session, Outcome, outcomes, keys=["asset", "target", "candle_time"])


def test_rolling_retrain_is_one_challenger_promoted_then_rolled_back(db_url, tmp_path,
                                                                     test_families):
    engine, settings, now = make_env(db_url, tmp_path, {"default": {
        "promote_min_outcomes": 300}}, days=1)
    champion = add_version(engine, "const", role="champion", p=0.5)
    retrains = [add_version(engine, "const", p=0.5) for _ in range(3)]  # daily retrains
    plant(engine, now, champion.id, [(v.id, 160) for v in retrains])  # 160 < 300 each

    [result] = [c for c in evaluate_promotions(engine, settings, now) if c.target == T1]
    assert result.decision == "promoted" and result.n_shared == 480  # the union of three
    assert result.challenger == "const v4" and result.champion == "const v1"
    assert result.stats["lineage"] == ["const v4", "const v3", "const v2"]
    assert result.stats["e_value"] >= result.stats["threshold"] > 1 / 0.05
    assert roles(engine) == {"const v1": "retired", "const v2": "challenger",
                             "const v3": "challenger", "const v4": "champion"}
    with session_scope(engine, readonly=True) as session:
        [event] = session.exec(select(ModelEvent)).all()
    assert event.event == "promoted" and event.stats["promotion_test"]["n"] == result.stats["n"]
    assert "three-outcome Brier" in event.reason

    back = model_admin.rollback(engine, settings, BTC, T1, actor="test")
    assert (back.from_label, back.to_label) == ("const v4", "const v1")
    assert roles(engine)["const v1"] == "champion"
    # the rolled-back version does not come back by itself (the policy's other versions are
    # still judged; promote_mode: command holds them for an operator)
    again = [c for c in evaluate_promotions(engine, settings, now) if c.target == T1]
    assert "const v4" not in {c.challenger for c in again}
    assert roles(engine)["const v4"] == "retired"


def test_the_last_champions_survive_the_purge_and_serve_as_fallback(db_url, tmp_path,
                                                                    test_families):
    engine, settings, now = make_env(db_url, tmp_path)
    settings.file = settings.file.model_copy(update={
        "models": settings.models.model_copy(update={"keep_versions": 2})})
    first = add_version(engine, "const", role="champion", p=0.6)
    second = add_version(engine, "const", p=0.7)
    model_admin.promote_version(engine, settings, BTC, T1, "2", actor="test")
    for _ in range(6):  # six daily retrains after the promotion
        newest = add_version(engine, "const", p=0.5)
    broken = add_version(engine, "const", p=0.5, corrupt=True)  # fails its checksum
    with session_scope(engine) as session:
        _purge_old_artifacts(session, settings, session.get(ModelVersion, newest.id))
        kept = {v.version for v in session.exec(select(ModelVersion).where(
            ModelVersion.artifact.is_not(None)))}
    assert kept == {first.version, second.version, newest.version, broken.version}

    model_admin.promote_version(engine, settings, BTC, T1, str(broken.version), actor="test")
    candle = last_closed_open_time(now, "1h")
    predict(engine, settings, candle)
    served = [p for p in rows_at(engine, candle).values() if p.served]
    assert [(p.model_version_id, p.role) for p in served] == [(second.id, "fallback")]

    model_admin.rollback(engine, settings, BTC, T1, actor="test")  # broken -> v2
    model_admin.rollback(engine, settings, BTC, T1, actor="test")  # v2 -> v1 (still has bytes)
    assert roles(engine)[f"const v{first.version}"] == "champion"
    with pytest.raises(SignalcastError, match="no earlier version"):
        model_admin.rollback(engine, settings, BTC, T1, actor="test")


def test_rollback_never_moves_to_a_shadow_that_never_served(db_url, tmp_path, test_families):
    engine, settings, _ = make_env(db_url, tmp_path, days=1)
    add_version(engine, "const_b", p=0.4)  # older, another family, never champion
    add_version(engine, "const", role="champion", p=0.6)
    with pytest.raises(SignalcastError, match="no earlier version"):
        model_admin.rollback(engine, settings, BTC, T1, actor="test")
    assert roles(engine) == {"const_b v1": "challenger", "const v1": "champion"}


def test_the_database_refuses_a_second_champion(db_url, tmp_path, test_families):
    engine, _, _ = make_env(db_url, tmp_path, days=1)
    add_version(engine, "const", role="champion")
    other = add_version(engine, "const_b")
    with pytest.raises(IntegrityError), session_scope(engine) as session:
        row = session.get(ModelVersion, other.id)
        row.role = "champion"
        session.add(row)
    assert roles(engine) == {"const v1": "champion", "const_b v1": "challenger"}


def test_a_promotion_is_fenced_by_the_champion_it_tested(db_url, tmp_path, test_families):
    engine, settings, now = make_env(db_url, tmp_path, {"default": {
        "promote_min_outcomes": 300}}, days=1)
    champion = add_version(engine, "const", role="champion", p=0.5)
    retrain = add_version(engine, "const", p=0.5)
    plant(engine, now, champion.id, [(retrain.id, 400)])
    with session_scope(engine, readonly=True) as session:
        [tested] = compare_target(session, settings, BTC, T1, now)
    assert tested.decision == "qualified"
    # meanwhile an operator promotes another version: the tested champion no longer serves
    operator = add_version(engine, "const_b", p=0.5)
    model_admin.promote_version(engine, settings, BTC, T1, "const_b:1", actor="operator")
    with pytest.raises(model_admin.ChampionChanged, match="nothing decided"):
        model_admin.promote_version(engine, settings, BTC, T1, "const:2", actor="promotion",
                                    expect_champion_id=tested.champion_id)
    assert roles(engine)[f"const_b v{operator.version}"] == "champion"


# -- version numbers under concurrency (real processes, Postgres) --------------------------------


def _store_many(url: str, start, count: int, queue) -> None:
    """Child process: store ``count`` versions of one family as fast as it can."""
    dispose_engines()
    engine = get_engine(url)
    start.wait()
    got = []
    for _ in range(count):
        def build(number: int) -> ModelVersion:
            t = datetime(2024, 1, 1, tzinfo=UTC)
            return ModelVersion(asset=BTC, target=T1, family="const", version=number,
                                feature_set="x", features=[], params={}, metrics={},
                                lib_versions={}, train_start=t, train_end=t, n_rows=1,
                                data_fingerprint=uuid.uuid4().hex, sha256="0" * 64,
                                artifact=b"x")

        def placed(session, row: ModelVersion) -> None:
            session.add(row)
            session.flush()

        row = store_version(engine, BTC, T1, "const", build, placed,
                            find_existing=lambda _session: None)
        got.append(row.version)
    queue.put(got)


def test_two_train_processes_never_lose_a_version(postgres_url):
    init_db(postgres_url)
    dispose_engines()
    ctx = multiprocessing.get_context("spawn")
    start, queue = ctx.Barrier(2), ctx.Queue()
    procs = [ctx.Process(target=_store_many, args=(postgres_url, start, 25, queue))
             for _ in range(2)]
    for proc in procs:
        proc.start()
    results = [queue.get(timeout=120) for _ in procs]
    for proc in procs:
        proc.join(timeout=60)
        assert proc.exitcode == 0
    numbers = sorted(results[0] + results[1])
    assert numbers == list(range(1, 51))  # every fit stored, each under its own number


# -- the demo shows the loop ---------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.isolated
def test_demo_shows_the_loop(tmp_path):
    from rich.console import Console

    from signalcast.cli.demo import run_demo
    from signalcast.db.tables import PromotionCheck
    from tests.conftest import SMALL_CONFIG, write_config

    config = write_config(tmp_path / "demo.yaml", {
        "targets": [{"pct": 0.01, "horizon": 24, "alert_threshold": 0.55}],
        "models": SMALL_CONFIG["models"]})
    console = Console(record=True, width=120)
    report = run_demo(tmp_path / "demo", ticks=60, history_days=150, config=config,
                      console=console)
    assert report.failed_tasks == 0
    first = {c["asset"] for c in report.comparisons}
    assert first == {"BTC/USDT"}  # the first asset's champion is retrained every day
    [comparison] = report.comparisons
    assert comparison["challenger"].endswith("v3")  # two daily retrains: one rolling challenger
    assert comparison["n_shared"] >= 20 and comparison["decision"] in ("kept", "promoted")
    assert comparison["stats"]["lineage"][-1].endswith("v2")  # its record spans both versions
    text = console.export_text()
    assert "champion vs challengers" in text and "promotion decision BTC/USDT 1pct_24" in text
    assert f"p={comparison['stats']['p_value']:.3g}" in text
    assert f"always-valid e-value {comparison['stats']['e_value']:.3g}" in text
    engine = get_engine(f"sqlite:///{report.database}")
    with session_scope(engine, readonly=True) as session:
        checks = session.exec(select(PromotionCheck)).all()
    assert [c.decision for c in checks] == [comparison["decision"]]  # recorded, audited
