"""Walk-forward evaluation: no leakage (permutation, future shift, purge, embargo, calibration
order), hand-checked metrics, the oracle as a sanity anchor, and the JSON/HTML/CLI outputs.

Every registered family is run, with small parameters (:func:`quick_params`), on one short
synthetic series; the expensive walk-forward is computed once per module.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Self

import numpy as np
import pytest
import typer
import yaml
from sklearn.metrics import roc_auc_score
from typer.testing import CliRunner

from signalcast.cli.evaluate import evaluate
from signalcast.config import TargetConfig
from signalcast.data import SyntheticMarket
from signalcast.evaluation import (
    Fold,
    FoldPlan,
    TestBlock,
    WalkForwardConfig,
    default_test_blocks,
    evaluate_series,
    plan_folds,
    score,
    walk_forward,
)
from signalcast.evaluation.metrics import alert_stats, null_auc_sd, reliability_curve
from signalcast.evaluation.report import regime_figure, write_html, write_json
from signalcast.evaluation.suite import quick_params
from signalcast.evaluation.walkforward import fit_fold
from signalcast.features.dataset import TrainingSet, build_training_set
from signalcast.models import registry
from signalcast.models.base import SignalModel
from signalcast.models.calibration import SigmoidCalibrator

ASSET = "BTC/USDT"
PERIODS = 2400
TARGET = TargetConfig(pct=0.015, horizon=48, alert_threshold=0.6)
CONFIG = WalkForwardConfig(folds=3)
FAMILIES = sorted(registry.families())


@pytest.fixture(scope="module")
def market() -> SyntheticMarket:
    return SyntheticMarket([ASSET], seed=11)


@pytest.fixture(scope="module")
def candles(market):
    return market.generate(PERIODS)[ASSET]


@pytest.fixture(scope="module")
def training_set(candles) -> TrainingSet:
    return build_training_set(candles, "1h", TARGET)


@pytest.fixture(scope="module")
def evaluation(market, candles):
    """Every registered family walked forward once, with the oracle."""
    oracle = market.oracle_probability(ASSET, TARGET.pct, TARGET.horizon, PERIODS)
    return evaluate_series(candles, "1h", TARGET, {f: quick_params(f) for f in FAMILIES},
                           CONFIG, asset=ASSET, oracle=oracle)


# ------------------------------------------------------------------------------ (1) permutation
def _shuffled(data: TrainingSet, seed: int = 0) -> TrainingSet:
    labels = np.random.default_rng(seed).permutation(data.y)
    return TrainingSet(data.X, labels, data.times, data.positions)


def _chance_bound(y: np.ndarray) -> float:
    """4 standard deviations of the AUC of an uninformative score: shuffled labels are
    exchangeable, so the Mann-Whitney null holds exactly (0.059 at the 1,560 OOF rows here; a
    false alarm has probability ~6e-5 per family)."""
    return 4 * null_auc_sd(int(y.sum()), int((1 - y).sum()))


@pytest.mark.parametrize("family", [  # the ensembles' fits take seconds: full suite only
    pytest.param(family, marks=pytest.mark.slow) if family.endswith("_ensemble") else family
    for family in FAMILIES])
def test_shuffled_labels_give_chance_auc_for_every_family(training_set, family):
    data = _shuffled(training_set)
    plan = plan_folds(data.positions, data.y, TARGET.horizon, CONFIG)
    run = walk_forward(data, plan, family, quick_params(family))
    y = data.y[plan.test_rows]
    assert len(y) > 1000
    assert abs(roc_auc_score(y, run.p_up) - 0.5) < _chance_bound(y)  # served (calibrated)
    assert abs(roc_auc_score(y, run.p_raw) - 0.5) < _chance_bound(y)  # the model's own


@pytest.mark.slow
def test_permutation_bound_catches_a_model_that_trained_on_its_test_rows(training_set):
    """The bound has teeth: the same check fails when test rows leak into training."""
    data = _shuffled(training_set)
    plan = plan_folds(data.positions, data.y, TARGET.horizon, CONFIG)
    leaky = FoldPlan(plan.horizon, plan.embargo, [
        Fold(f.index, f.block, np.sort(np.concatenate([f.fit, f.test])), f.calibration, f.test)
        for f in plan.folds])
    params = {"n_estimators": 30, "num_leaves": 63, "min_child_samples": 5}
    run = walk_forward(data, leaky, "lightgbm", params)
    y = data.y[plan.test_rows]
    assert roc_auc_score(y, run.p_raw) - 0.5 > 0.3  # memorised
    assert roc_auc_score(y, run.p_up) - 0.5 > _chance_bound(y)


# ------------------------------------------------------------------------------ (2) future shift
@pytest.mark.slow
def test_predictions_before_a_cut_do_not_change_when_later_candles_are_removed(
        evaluation, candles):
    """Truncate the history inside the last test fold and rerun with the same fold boundaries:
    every row whose label resolves before the cut keeps exactly its prediction, in every family
    (models see only earlier rows, and a sequence filter sees only rows up to its own)."""
    last = evaluation.plan.folds[-1].block
    cut = (last.start + last.stop) // 2
    truncated = evaluate_series(
        candles.iloc[:cut], "1h", TARGET, {f: quick_params(f) for f in FAMILIES}, CONFIG,
        asset=ASSET, blocks=[f.block for f in evaluation.plan.folds])
    full = evaluation.oof[evaluation.oof["position"] < cut - TARGET.horizon]
    short = truncated.oof[truncated.oof["position"] < cut - TARGET.horizon]
    assert (full["fold"] == len(evaluation.plan.folds) - 1).any()  # the cut fold is compared
    assert len(full) == len(short) > 0
    for column in ("family", "time", "y", "fold"):
        assert full[column].tolist() == short[column].tolist()
    np.testing.assert_array_equal(full["p_up"].to_numpy(), short["p_up"].to_numpy())


# ------------------------------------------------------------------------------ (3) purge
def _gappy_positions(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Positions with holes (expired rows), and alternating labels."""
    rng = np.random.default_rng(seed)
    positions = np.flatnonzero(rng.random(n) > 0.2) + 168
    return positions, np.arange(len(positions)) % 2


@pytest.mark.parametrize("config", [
    WalkForwardConfig(folds=4),
    WalkForwardConfig(folds=5, embargo=100),
    WalkForwardConfig(folds=4, window="rolling"),
    WalkForwardConfig(folds=3, window="rolling", rolling_rows=900, embargo=0),
])
def test_no_training_label_window_overlaps_its_test_fold(config):
    horizon = 72
    positions, labels = _gappy_positions(6000, seed=3)
    plan = plan_folds(positions, labels, horizon, config)
    assert len(plan.folds) == config.folds
    embargo = horizon if config.embargo is None else config.embargo
    for k, fold in enumerate(plan.folds):
        train = positions[np.concatenate([fold.fit, fold.calibration])]
        test = positions[fold.test]
        # label window of a training row: candles position+1 .. position+horizon
        assert (train + horizon).max() < fold.block.start <= test.min()
        assert test.max() < fold.block.stop
        # the purge is exactly the horizon: the newest row allowed is start - horizon - 1
        newest = positions[positions + horizon < fold.block.start].max()
        assert train.max() == newest
        for earlier in plan.folds[:k]:  # embargo after every earlier test fold
            stop = earlier.block.stop
            assert not ((train >= stop) & (train < stop + embargo)).any()
    if config.window == "rolling":
        sizes = {len(f.fit) + len(f.calibration) for f in plan.folds}
        assert max(sizes) - min(sizes) <= horizon  # a fixed window less its inner purge


def test_default_test_blocks_cover_the_newest_rows_in_equal_parts():
    positions = np.arange(100, 1100)
    blocks = default_test_blocks(positions, folds=4)
    assert blocks == [TestBlock(300, 500), TestBlock(500, 700), TestBlock(700, 900),
                      TestBlock(900, 1100)]


def test_fold_without_enough_fit_rows_is_skipped_with_its_reason():
    positions, labels = np.arange(1000), np.arange(1000) % 2
    plan = plan_folds(positions, labels, 48, WalkForwardConfig(min_fit_rows=200),
                      blocks=[TestBlock(150, 400), TestBlock(400, 700)])
    assert [f.block for f in plan.folds] == [TestBlock(400, 700)]
    assert "fit rows" in plan.skipped[0]


# ------------------------------------------------------------------------------ (4) metrics
def test_metrics_match_hand_computed_values():
    y = np.array([1, 0, 1, 0, 1, 0])
    p = np.array([0.9, 0.1, 0.6, 0.6, 0.2, 0.3])
    s = score(y, p, threshold=0.75)
    assert s.n == 6 and s.base_rate_up == 0.5
    assert s.auc == pytest.approx(6.5 / 9)  # 9 (up, down) pairs, one tie at 0.6
    assert s.brier == pytest.approx(1.27 / 6)
    assert s.log_loss == pytest.approx(-np.log([0.9, 0.9, 0.6, 0.4, 0.2, 0.7]).mean())
    assert s.ece == pytest.approx(1.5 / 6)


def test_alerts_count_both_directions_at_the_threshold():
    y = np.array([1, 0, 1, 0, 1, 0])
    a = alert_stats(y, np.array([0.9, 0.1, 0.6, 0.6, 0.2, 0.3]), threshold=0.75)
    assert (a.up.n_alerts, a.up.precision, a.up.recall) == (1, 1.0, pytest.approx(1 / 3))
    assert (a.down.n_alerts, a.down.precision, a.down.recall) == (2, 0.5, pytest.approx(1 / 3))
    assert (a.n_alerts, a.precision, a.recall) == (3, pytest.approx(2 / 3), pytest.approx(1 / 3))
    # exactly at the threshold both directions alert, as live (1 - 0.8 != 0.2 in floats)
    edge = alert_stats(np.array([1, 0]), np.array([0.8, 0.2]), threshold=0.8)
    assert (edge.up.n_alerts, edge.down.n_alerts, edge.precision) == (1, 1, 1.0)


def test_reliability_bins_hold_their_predictions_and_outcomes():
    bins = reliability_curve(np.array([1, 0, 1, 0, 1, 0]),
                             np.array([0.9, 0.1, 0.6, 0.6, 0.2, 1.0]), bins=10)
    assert [b.n for b in bins] == [0, 1, 1, 0, 0, 0, 2, 0, 0, 2]
    assert (bins[6].mean_predicted, bins[6].fraction_up) == (pytest.approx(0.6), 0.5)
    assert bins[9].mean_predicted == pytest.approx(0.95)  # 1.0 lands in the last bin
    assert bins[0].mean_predicted is None


def test_metrics_without_two_classes_or_alerts_report_none():
    s = score(np.array([1, 1, 1]), np.array([0.5, 0.55, 0.6]), threshold=0.8)
    assert s.auc is None
    assert s.alerts.n_alerts == 0 and s.alerts.precision is None
    assert s.alerts.down.recall is None  # no DOWN outcome to catch


# ------------------------------------------------------------------------------ (5) oracle
@pytest.mark.slow
def test_oracle_beats_a_coin_and_a_constant_base_rate(evaluation):
    oracle = evaluation.oracle
    y = evaluation.oof.drop_duplicates("time")["y"].to_numpy()
    assert oracle is not None and oracle.n == len(y)
    assert oracle.auc - 0.5 > _chance_bound(y)
    base_rate_brier = float(np.mean((y - y.mean()) ** 2))  # best constant, chosen in hindsight
    assert oracle.brier < base_rate_brier


# ------------------------------------------------------------------------------ OOF frame
@pytest.mark.slow
def test_oof_frame_has_one_prediction_per_family_and_test_row(evaluation, candles):
    oof = evaluation.oof
    rows = evaluation.plan.test_rows
    assert sorted(oof["family"].unique()) == FAMILIES
    assert (oof.groupby("family").size() == len(rows)).all()
    assert oof["time"].isin(candles.index).all()
    assert oof["p_up"].between(0, 1).all()
    wide = evaluation.predictions()
    assert list(wide.columns) == [*FAMILIES, "y"] and len(wide) == len(rows)


# ------------------------------------------------------------------------------ (7) calibration
@pytest.mark.slow
def test_calibration_fold_lies_between_fit_rows_and_test_fold(evaluation):
    h = TARGET.horizon
    assert len(evaluation.fold_records) == len(evaluation.plan.folds) == CONFIG.folds
    for rec in evaluation.fold_records:
        fit, cal, test = rec["fit"], rec["calibration"], rec["test"]
        assert fit["last_position"] + h < cal["first_position"]
        assert cal["last_position"] + h < test["first_position"]
        assert cal["last_time"] < test["first_time"]
    for result in evaluation.results:
        assert len(result.calibrators) == CONFIG.folds


@pytest.mark.slow
def test_served_probabilities_use_the_calibrator_fitted_on_the_calibration_fold(
        evaluation, training_set):
    fold = evaluation.plan.folds[0]
    params = quick_params("lightgbm")
    model, calibrator = fit_fold("lightgbm", params, training_set, fold.fit, fold.calibration)
    assert calibrator == evaluation.result("lightgbm").calibrators[0]
    raw_test = model.predict_proba(training_set.X[fold.test])
    on_test = SigmoidCalibrator.fit(raw_test, training_set.y[fold.test])
    assert on_test != calibrator  # it was not fitted on the test fold
    served = evaluation.oof.query("family == 'lightgbm' and fold == 0")["p_up"].to_numpy()
    np.testing.assert_allclose(served, calibrator(raw_test))


# ------------------------------------------------------------------------------ (6) outputs
@pytest.mark.slow
def test_json_and_html_hold_every_family_row_and_the_oracle(evaluation, tmp_path):
    data = json.loads(write_json([evaluation], tmp_path / "eval.json").read_text())
    families = [r["family"] for r in data["rows"]]
    assert families == [*FAMILIES, "oracle"]
    assert len(data["series"][0]["folds"]) == CONFIG.folds
    assert len(data["series"][0]["families"][FAMILIES[0]]["scores"]["reliability"]) == 10
    page = write_html([evaluation], tmp_path / "eval.html").read_text()
    for family in [*FAMILIES, "oracle"]:
        assert f"<td>{family}</td>" in page
    assert "data:image/png;base64," in page
    has_regimes = "hmm" in FAMILIES and evaluation.oof.query("family == 'hmm'")["regime"].notna(
    ).any()
    assert ("HMM regime plot omitted" in page) is not has_regimes
    assert page.count("<img") == 1 + has_regimes


class RegimeStub(SignalModel):
    """Two 'regimes' from the sign of the 6-candle return (row-causal): enough to plot."""

    family = "regime_stub"

    def fit(self, X: np.ndarray, y: np.ndarray) -> Self:
        self.rate_ = float(np.mean(y))
        return self

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        return np.full(len(X), self.rate_)

    def regime_probabilities(self, X: np.ndarray) -> np.ndarray:
        up = (X[:, 0] > 0).astype(float)
        return np.column_stack([1 - up, up])

    regime_names = ("falling", "rising")

    def to_bytes(self) -> bytes:
        return b""

    @classmethod
    def from_bytes(cls, data: bytes, params: dict[str, Any]) -> Self:
        return cls(**params)


@pytest.mark.slow
def test_regime_plot_shades_a_family_that_exposes_filtered_regimes(candles, tmp_path,
                                                                   monkeypatch):
    monkeypatch.setitem(registry.BUILTIN, "regime_stub", f"{__name__}:RegimeStub")
    ev = evaluate_series(candles, "1h", TARGET, {"regime_stub": {}}, CONFIG, asset=ASSET)
    assert ev.result("regime_stub").regime_names == ["falling", "rising"]
    assert set(ev.oof["regime"].unique()) == {0.0, 1.0}
    assert regime_figure(ev, "regime_stub") is not None
    page = write_html([ev], tmp_path / "r.html", regime_family="regime_stub").read_text()
    assert page.count("<img") == 2 and "omitted" not in page


@pytest.mark.slow
def test_cli_prints_each_chosen_family_and_the_oracle_and_writes_json_and_html(tmp_path):
    """Two families keep it fast; every family's rows are checked on the report writers above."""
    chosen = ["hmm", "lightgbm"] if "hmm" in FAMILIES else ["lightgbm"]
    config = {
        "assets": [{"symbol": ASSET, "timeframe": "1h"}],
        "targets": [{"pct": 0.015, "horizon": 48, "alert_threshold": 0.6}],
        "models": {"params": {f: quick_params(f) for f in chosen}},
        "data": {"source": "synthetic", "seed": 11},
    }
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(config))
    app = typer.Typer()
    app.command()(evaluate)
    result = CliRunner().invoke(app, [
        "--synthetic", "1500", "--folds", "2", "--config", str(tmp_path / "c.yaml"),
        *[arg for f in chosen for arg in ("--family", f)],
        "--json", str(tmp_path / "out.json"), "--report", str(tmp_path / "out.html"),
    ], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    for family in [*chosen, "oracle"]:
        assert f" {family} " in result.output
    rows = json.loads((tmp_path / "out.json").read_text())["rows"]
    assert [(r["asset"], r["target"], r["family"]) for r in rows] == [
        (ASSET, "1.5pct_48", f) for f in [*chosen, "oracle"]]
    page = (tmp_path / "out.html").read_text()
    assert all(f"<td>{f}</td>" in page for f in [*chosen, "oracle"])


def test_cli_rejects_an_unknown_family_by_name(tmp_path):
    app = typer.Typer()
    app.command()(evaluate)
    result = CliRunner().invoke(app, ["--synthetic", "600", "--family", "lgbm"])
    assert result.exit_code != 0
    assert "Did you mean 'lightgbm'" in str(result.exception)


@pytest.mark.slow
def test_evaluation_writes_png_files_when_the_report_path_is_a_directory(evaluation, tmp_path):
    from signalcast.evaluation.report import write_report

    out = write_report([evaluation], tmp_path / "pngs")
    names = sorted(p.name for p in Path(out).iterdir())
    assert "BTC-USDT_1.5pct_48_calibration.png" in names
    assert all((Path(out) / n).stat().st_size > 1000 for n in names if n.endswith(".png"))


@pytest.mark.slow
def test_cli_evaluates_stored_candles_from_the_database_without_an_oracle(
        candles, sqlite_url, config_path):
    from datetime import UTC, datetime

    from signalcast.db.candles import store_candles
    from signalcast.db.engine import init_db, session_scope

    with session_scope(init_db(sqlite_url)) as session:
        store_candles(session, ASSET, "1h", candles.iloc[:1500], datetime(2030, 1, 1, tzinfo=UTC))
    app = typer.Typer()
    app.command()(evaluate)
    result = CliRunner().invoke(app, [
        "--asset", ASSET, "--target", "1pct_24", "--family", "lightgbm", "--folds", "2",
        "--config", str(config_path), "--json", str(config_path.parent / "db.json"),
    ], env={"COLUMNS": "200", "SIGNALCAST_DATABASE_URL": sqlite_url})
    assert result.exit_code == 0, result.output
    assert "stored candles" in result.output
    rows = json.loads((config_path.parent / "db.json").read_text())["rows"]
    assert [(r["family"], r["n"] > 500) for r in rows] == [("lightgbm", True)]
