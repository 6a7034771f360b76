"""``signalcast report``: the served-prediction report, on a database filled by real training,
predict and resolve runs (SQLite), checked against figures recomputed from the stored rows."""

from __future__ import annotations

import io
from datetime import timedelta

import numpy as np
import pytest
from sqlmodel import select
from typer.testing import CliRunner

from signalcast.config import load_settings
from signalcast.core.timeframes import last_closed_open_time
from signalcast.db.engine import init_db, session_scope
from signalcast.db.tables import AlertOutbox, Outcome, Prediction
from signalcast.lifecycle.train import train_model
from signalcast.ops.report import _alerts, reliability, served_report
from signalcast.pipeline.ingest import ingest_asset
from signalcast.pipeline.predict import predict_asset
from signalcast.pipeline.resolve import resolve_outcomes
from tests.conftest import SMALL_CONFIG, seed_history, write_config

BTC = "BTC/USDT"
TICKS = 120  # hourly predictions served (the newest still pending)


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """(engine, settings, config path, url): BTC/USDT champions trained, then TICKS hourly
    candles each ingested, predicted and resolved as the tick does."""
    tmp = tmp_path_factory.mktemp("report")
    # thresholds low enough that every target alerts: the report's alert figures are checked
    targets = [{**t, "alert_threshold": 0.51} for t in SMALL_CONFIG["targets"]]
    config = write_config(tmp / "signalcast.yaml",
                          {"targets": targets,
                           "models": {"champion": "lightgbm", "alert_without_skill": ["*"],
                                      "params": {"lightgbm": {"n_estimators": 30}}}})
    url = f"sqlite:///{tmp / 'signalcast.db'}"
    settings = load_settings(config, database_url=url, broker_url=None, telegram_token=None)
    engine = init_db(url)
    now = seed_history(engine, settings)
    for target in settings.targets:
        train_model(engine, settings, BTC, target.key, "lightgbm", now=now)
    for i in range(1, TICKS + 1):
        at = now + timedelta(hours=i)
        with session_scope(engine) as session:
            ingest_asset(session, settings, BTC, at)
        with session_scope(engine) as session:
            predict_asset(session, settings, BTC, last_closed_open_time(at, "1h"))
        with session_scope(engine) as session:
            resolve_outcomes(session, settings, BTC, at)
    return engine, settings, config, url


def stored(engine, target: str):
    with session_scope(engine, readonly=True) as session:
        preds = session.exec(select(Prediction).where(
            Prediction.asset == BTC, Prediction.target == target, Prediction.served)).all()
        outcomes = {o.candle_time: o.label for o in session.exec(select(Outcome).where(
            Outcome.asset == BTC, Outcome.target == target)).all()}
        alerts = session.exec(select(AlertOutbox).where(
            AlertOutbox.kind == "signal", AlertOutbox.asset == BTC,
            AlertOutbox.target == target)).all()
    return preds, outcomes, alerts


@pytest.mark.slow
def test_report_figures_equal_those_recomputed_from_the_stored_rows(served):
    engine, settings, *_ = served
    report = served_report(engine, settings, assets=[BTC])
    assert [s["target"] for s in report["series"]] == [t.key for t in settings.targets]
    total = 0
    for section in report["series"]:
        preds, outcomes, alerts = stored(engine, section["target"])
        resolved = sorted((p for p in preds if p.candle_time in outcomes),
                          key=lambda p: p.candle_time)
        assert section["served"] == len(preds) == TICKS
        # an outcome resolves at its first touch, at the latest after its horizon
        assert section["pending"] == TICKS - len(resolved) <= section["horizon"]
        sc = section["scores"]
        assert sc["n"] == len(resolved) > 0
        y_up = np.array([outcomes[p.candle_time] == 1 for p in resolved], float)
        p_up = np.array([p.prob_up for p in resolved])
        assert sc["brier_up"] == pytest.approx(np.mean((p_up - y_up) ** 2))
        assert sc["frequency"]["up"] == pytest.approx(y_up.mean())
        assert sc["skill_up"] == pytest.approx(1 - sc["brier_up"] / sc["base_brier_up"])
        assert sc["skill_up_lower"] <= sc["skill_up"]
        # every resolved prediction sits in exactly one bin, for both directions
        assert sum(b["n"] for b in sc["reliability_up"]) == len(resolved)
        assert sum(b["n"] for b in sc["reliability_down"]) == len(resolved)
        # alerts: one per alerted candle; realised = hits among resolved, an expired one a miss
        candles = {a.candle_time: a.payload for a in alerts}
        assert section["alerts"]["sent"] == len(candles) > 0
        done = {t: p for t, p in candles.items() if t in outcomes}
        hits = sum((outcomes[t] == 1) == (p["direction"] == "UP") and outcomes[t] != -1
                   for t, p in done.items())
        assert section["alerts"]["resolved"] == len(done)
        assert section["alerts"]["hits"] == hits
        if done:
            assert section["alerts"]["stated"] == pytest.approx(
                np.mean([p["probability"] for p in done.values()]))
        total += len(resolved)
    pooled = report["pooled"]
    assert pooled["scores"]["n"] == total
    assert pooled["alerts"]["sent"] == sum(s["alerts"]["sent"] for s in report["series"])
    assert pooled["scores"]["block"] == max(t.horizon for t in settings.targets)


def test_an_expired_outcome_is_a_miss_of_the_stated_chance():
    alerts = _alerts([("UP", 0.8, 1), ("DOWN", 0.7, -1), ("UP", 0.9, 0), ("DOWN", 0.6, None)])
    assert (alerts["sent"], alerts["resolved"], alerts["hits"], alerts["expired"]) == (4, 3, 1, 1)
    assert alerts["stated"] == pytest.approx(0.8)
    assert alerts["realised"] == pytest.approx(1 / 3)
    assert alerts["stated_minus_realised"] == pytest.approx(0.8 - 1 / 3)


def test_reliability_judges_only_bins_with_enough_predictions():
    rng = np.random.default_rng(0)
    p = np.concatenate([np.full(200, 0.25), np.full(150, 0.75), np.full(20, 0.95)])
    y = np.concatenate([rng.random(200) < 0.25, np.zeros(150), np.ones(20)]).astype(float)
    bins = {round(b["lo"], 1): b for b in reliability(p, y)}
    assert bins[0.2]["n"] == 200 and bins[0.2]["within"] is True
    assert bins[0.7]["within"] is False  # predicted 0.75, observed 0
    assert bins[0.9]["n"] == 20 and bins[0.9]["within"] is None  # too few to judge
    assert bins[0.5]["n"] == 0 and bins[0.5]["predicted"] is None


@pytest.mark.slow
def test_report_command_prints_in_80_columns_and_writes_html_and_png(served, tmp_path):
    from signalcast.cli.app import cli

    _, _, config, url = served
    html, png = tmp_path / "served.html", tmp_path / "png"
    result = CliRunner().invoke(cli, [
        "report", "-C", str(config), "--asset", BTC, "--every-series", "--html", str(html),
        "--png", str(png), "--json", str(tmp_path / "served.json")],
        env={"COLUMNS": "80", "SIGNALCAST_DATABASE_URL": url})
    assert result.exit_code == 0, result.output
    # the report is stdout; stderr may carry other components' log lines (a stale Celery result
    # backend of an earlier test in this process logged its reconnect retries there once)
    lines = result.stdout.splitlines()
    wide = [line for line in lines if len(line) > 80]
    assert not wide, "\n".join(wide)
    assert "pooled" in result.stdout and "reliability" in result.stdout
    assert "data:image/png;base64," in html.read_text()
    files = sorted(p.name for p in png.iterdir())
    assert files == ["BTC-USDT_1pct_24_reliability.png", "BTC-USDT_2pct_48_reliability.png",
                     "pooled_reliability.png"]
    assert all((png / f).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for f in files)


@pytest.mark.slow
def test_report_names_an_unknown_target(served):
    from signalcast.core.errors import UnknownNameError

    engine, settings, *_ = served
    with pytest.raises(UnknownNameError, match="Known: 1pct_24, 2pct_48"):
        served_report(engine, settings, targets=["3pct_24"])





@pytest.mark.slow
def test_evaluate_table_fits_80_columns_with_each_figure_beside_its_benchmark():
    from rich.console import Console

    from signalcast.cli.evaluate import benchmarks, print_comparison
    from signalcast.config import TargetConfig
    from signalcast.data import SyntheticMarket
    from signalcast.evaluation import WalkForwardConfig, evaluate_series
    from signalcast.evaluation.report import comparison_rows
    from signalcast.evaluation.suite import quick_params

    market, target, periods = SyntheticMarket([BTC], seed=11), TargetConfig(
        pct=0.015, horizon=48, alert_threshold=0.6), 1500
    oracle = market.oracle_probability(BTC, target.pct, target.horizon, periods)
    ev = evaluate_series(market.generate(periods)[BTC], "1h", target,
                         {"lightgbm": quick_params("lightgbm")}, WalkForwardConfig(folds=2),
                         asset=BTC, oracle=oracle)
    bench = benchmarks([ev])
    rows = {r["family"]: r for r in comparison_rows([ev])}
    assert [b["family"] for b in bench] == ["lightgbm", "oracle"]
    for b in bench:  # the skill is the table's own Brier against the base rate's
        assert b["skill"] == pytest.approx(1 - rows[b["family"]]["brier"] / b["base_brier"])
        assert b["skill_lower"] <= b["skill"] and 0.3 < b["auc_null_mean"] < 0.7
    out = Console(width=80, record=True, file=io.StringIO())
    print_comparison([ev], out, bench=bench)
    text = out.export_text()
    assert max(len(line) for line in text.splitlines()) <= 80
    for family in ("lightgbm", "oracle"):
        line = next(line for line in text.splitlines() if f" {family} " in line)
        assert f"{bench[0 if family == 'lightgbm' else 1]['skill']:+.3f}" in line
    assert "…" not in text  # nothing truncated


@pytest.mark.slow
def test_only_the_asked_outbox_statuses_count_as_alerts(served):
    from signalcast.ops.report import QUEUED, UNDELIVERED

    engine, settings, *_ = served
    with session_scope(engine, readonly=True) as session:  # nothing drained: all still pending
        statuses = {a.status for a in session.exec(select(AlertOutbox)).all()}
    assert statuses <= set(QUEUED)
    sent = served_report(engine, settings, assets=[BTC])["pooled"]["alerts"]["sent"]
    stale = served_report(engine, settings, assets=[BTC], alert_statuses=UNDELIVERED)
    assert sent > 0 and stale["pooled"]["alerts"]["sent"] == 0
    assert stale["alert_statuses"] == ["expired"]


def test_reliability_interval_widens_with_overlapping_outcomes():
    """A bin's observed frequency gets a circular block-bootstrap interval: with outcomes that
    persist for a horizon (few independent episodes) it is much wider than with iid outcomes,
    and a calibrated forecast lies inside it."""
    rng = np.random.default_rng(0)
    n, h = 2400, 72
    p = np.full(n, 0.45)
    iid = (rng.random(n) < 0.45).astype(float)
    episodes = np.repeat(rng.random(n // h + 1) < 0.45, h)[:n].astype(float)  # 34 episodes
    wide = reliability(p, episodes, block=h, n_boot=300)[4]
    narrow = reliability(p, iid, block=1, n_boot=300)[4]
    assert wide["n"] == narrow["n"] == n and wide["n_eff"] == pytest.approx(n / h, abs=0.1)
    assert wide["observed_hi"] - wide["observed_lo"] > 3 * (narrow["observed_hi"]
                                                            - narrow["observed_lo"])
    assert narrow["consistent"] and narrow["observed_lo"] < 0.45 < narrow["observed_hi"]
    assert "observed_lo" not in reliability(p, iid)[4]  # no block: no interval (as before)


def test_alert_realised_share_has_an_interval_over_episodes():
    """Six alerts in two episodes are two outcomes' worth of evidence, not six."""
    rows = [("UP", 0.82, 1, "a"), ("UP", 0.81, 1, "a"), ("UP", 0.83, 1, "a"),
            ("UP", 0.80, -1, "b"), ("UP", 0.84, -1, "b"), ("UP", 0.82, 1, "b")]
    alerts = _alerts(rows, n_boot=500)
    assert alerts["episodes"] == 2 and alerts["realised"] == pytest.approx(4 / 6)
    assert alerts["realised_lo"] <= 1 / 3 + 1e-9 and alerts["realised_hi"] == pytest.approx(1.0)
    assert alerts["gap_lo"] < 0 < alerts["gap_hi"]
