"""The commands a user runs: the demo end to end, and the CLI's handling of bad input."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import func
from sqlmodel import select

from signalcast.cli.demo import run_demo
from signalcast.db.engine import get_engine, session_scope
from signalcast.db.tables import AlertOutbox, Candle, ModelVersion, Outcome, Prediction, TaskRun
from tests.conftest import SMALL_CONFIG, write_config

pytestmark = pytest.mark.slow


def cli(*args: str, env: dict | None = None, cwd: Path | None = None):
    import os

    full_env = {**{k: v for k, v in os.environ.items() if not k.startswith("SIGNALCAST_")},
                **(env or {})}
    return subprocess.run([sys.executable, "-m", "signalcast.cli", *args], env=full_env,
                          cwd=cwd, capture_output=True, text=True, timeout=600)


def test_short_demo_fills_every_table_and_prints_a_summary(tmp_path):
    from rich.console import Console

    # the pipeline end to end, not skill: every target may alert (the gate is tested apart)
    config = write_config(tmp_path / "demo.yaml", {
        "targets": [{"pct": 0.01, "horizon": 24, "alert_threshold": 0.55},
                    {"pct": 0.02, "horizon": 48, "alert_threshold": 0.6}],
        "models": {**SMALL_CONFIG["models"], "alert_without_skill": ["*"]}})
    console = Console(record=True, width=120)
    report = run_demo(tmp_path / "demo", ticks=30, history_days=150, config=config,
                      console=console, lifecycle=False)  # the loop: test_demo_shows_the_loop
    engine = get_engine(f"sqlite:///{report.database}")
    with session_scope(engine, readonly=True) as session:
        rows = {t.__tablename__: session.exec(select(func.count()).select_from(t)).one()
                for t in (Candle, ModelVersion, Prediction, Outcome, AlertOutbox, TaskRun)}
        sent = session.exec(select(func.count()).select_from(AlertOutbox)
                            .where(AlertOutbox.status == "sent")).one()
    assert rows["model_versions"] == 4
    assert rows["predictions"] == 30 * 4
    assert rows["outcomes"] > 0 and rows["alert_outbox"] > 0
    assert sent == rows["alert_outbox"]  # the console transport delivered every alert
    # ingest and train at the start; per tick: ingest, predict, resolve per asset, one drain
    assert rows["task_runs"] == 2 + 4 + 30 * (2 * 3 + 1)
    assert report.failed_tasks == 0
    text = console.export_text()
    assert "signalcast demo summary" in text and str(report.database) in text
    assert "[alert -> console]" in text or "chance of touching" in text
    # the summary counts signal alerts only (not their hit / miss follow-ups), shows the
    # highest served chance, and says why a quiet target sent none
    with session_scope(engine, readonly=True) as session:
        signals = dict(session.exec(select(AlertOutbox.asset + " " + AlertOutbox.target,
                                           func.count()).where(
            AlertOutbox.status == "sent", AlertOutbox.kind == "signal").group_by(
            AlertOutbox.asset, AlertOutbox.target)).all())
        served = session.exec(select(Prediction).where(Prediction.served)).all()
    for s in report.targets:
        key = f"{s.asset} {s.target}"
        assert s.alerts_sent == signals.get(key, 0)
        assert s.top == pytest.approx(max(max(p.prob_up, p.prob_down) for p in served
                                          if (p.asset, p.target) == (s.asset, s.target)))
        assert (f"no signal alert for {key}:" in text) == (s.alerts_sent == 0)


def test_a_quiet_demo_says_why_each_target_sent_nothing():
    from signalcast.cli.demo import DemoReport, silent_reasons
    from signalcast.ops.summary import TargetSummary

    def target(name: str, top: float, held: int, sent: int) -> TargetSummary:
        return TargetSummary("BTC/USDT", name, 10, 8, 0, 5, sent, 4, top=top, held=held)

    report = DemoReport(Path("x.db"), 1.0, 10, 40, 0, targets=[
        target("1pct_72", 0.58, 0, 0), target("2pct_72", 0.66, 10, 0),
        target("5pct_72", 0.61, 0, 0), target("3pct_72", 0.70, 0, 2)],
        thresholds={"1pct_72": 0.6, "2pct_72": 0.6, "5pct_72": 0.55, "3pct_72": 0.6})
    assert silent_reasons(report) == [
        "no signal alert for BTC/USDT 1pct_72: its highest served chance, 58%, stayed below "
        "the threshold 60%",
        "no signal alert for BTC/USDT 2pct_72: the skill gate held 10 of its 10 served "
        "predictions",
        "no signal alert for BTC/USDT 5pct_72: no chat receives signal alerts, or each was a "
        "repeat within its horizon"]


def test_ingesting_a_malformed_csv_fails_clearly_and_keeps_stored_candles(tmp_path):
    config = write_config(tmp_path / "c.yaml", {"data": {"source": "stored"}})
    env = {"SIGNALCAST_CONFIG": str(config),
           "SIGNALCAST_DATABASE_URL": f"sqlite:///{tmp_path / 'x.db'}"}
    good = tmp_path / "good.csv"
    good.write_text("timestamp,open,high,low,close,volume\n"
                    "2024-01-01T00:00:00Z,100,101,99,100.5,10\n"
                    "2024-01-01T01:00:00Z,100.5,102,100,101,12\n")
    done = cli("ingest", "--file", str(good), "--asset", "BTC/USDT", env=env)
    assert done.returncode == 0, done.stderr
    assert "2 closed candles stored" in done.stdout

    bad = tmp_path / "bad.csv"
    bad.write_text("timestamp,open,high,low,close,volume\n"
                   "2024-01-01T02:00:00Z,101,102,100,abc,10\n")
    failed = cli("ingest", "--file", str(bad), "--asset", "BTC/USDT", env=env)
    assert failed.returncode == 2
    assert "error:" in failed.stdout and "bad.csv" in failed.stdout and "close" in failed.stdout
    assert "Traceback" not in failed.stdout + failed.stderr

    unknown = cli("ingest", "--file", str(good), "--asset", "DOGE/USDT", env=env)
    assert unknown.returncode == 2 and "Known: BTC/USDT, ETH/USDT" in unknown.stdout

    engine = get_engine(env["SIGNALCAST_DATABASE_URL"])
    with session_scope(engine, readonly=True) as session:
        assert session.exec(select(func.count()).select_from(Candle)).one() == 2


def test_invalid_config_stops_start_up_with_the_field_and_the_fix(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("assets: [{symbol: BTC/USDT}]\ntargets: [{pct: -0.02, horizon: 72}]\n")
    done = cli("status", env={"SIGNALCAST_CONFIG": str(bad),
                              "SIGNALCAST_DATABASE_URL": f"sqlite:///{tmp_path / 'x.db'}"})
    assert done.returncode == 2
    assert "targets[0].pct must be > 0, got -0.02" in done.stdout


def test_config_show_masks_secrets(tmp_path):
    done = cli("config", "show", env={"SIGNALCAST_TELEGRAM_TOKEN": "12345:VERYSECRET",
                                      "SIGNALCAST_DATABASE_URL": "postgresql://u:pw123@db/x"})
    assert done.returncode == 0, done.stderr
    assert "VERYSECRET" not in done.stdout and "pw123" not in done.stdout
    assert "BTC/USDT" in done.stdout and "********" in done.stdout


def test_db_upgrade_and_status_on_a_fresh_database(tmp_path):
    env = {"SIGNALCAST_DATABASE_URL": f"sqlite:///{tmp_path / 'fresh.db'}"}
    from signalcast.db.migrate import head_revision

    upgraded = cli("db", "upgrade", env=env)
    assert upgraded.returncode == 0 and f"revision {head_revision()}" in upgraded.stdout
    status = cli("status", "--json", env=env)
    assert status.returncode == 0
    assert '"last_candle": null' in status.stdout


def test_models_group_lists_families_and_champions(tmp_path):
    env = {"SIGNALCAST_DATABASE_URL": f"sqlite:///{tmp_path / 'm.db'}"}
    families = cli("models", "families", env=env)
    assert families.returncode == 0 and "lightgbm" in families.stdout
    listing = cli("models", "list", env=env)
    assert listing.returncode == 0, listing.stdout + listing.stderr


def test_replay_command_in_two_processes_replays_every_asset_with_progress(tmp_path):
    from datetime import timedelta

    from signalcast.config import load_settings
    from signalcast.db.engine import init_db
    from signalcast.lifecycle.train import train_model
    from tests.conftest import seed_history

    config = write_config(tmp_path / "c.yaml", {"data": {**SMALL_CONFIG["data"],
                                                         "source": "stored"}})
    url = f"sqlite:///{tmp_path / 'r.db'}"
    key = "replay-test-key-" + "1" * 48
    settings = load_settings(config, database_url=url, broker_url=None, telegram_token=None,
                             artifact_key=key)
    engine = init_db(url)
    synthetic = load_settings(write_config(tmp_path / "s.yaml"), database_url=url,
                              broker_url=None, telegram_token=None, artifact_key=key)
    start = seed_history(engine, synthetic) - timedelta(hours=12)  # 12 stored hours to replay
    for asset in settings.assets:
        train_model(engine, settings, asset.symbol, "1pct_24", "lightgbm", now=start)
    engine.dispose()
    env = {"SIGNALCAST_CONFIG": str(config), "SIGNALCAST_DATABASE_URL": url,
           "SIGNALCAST_ARTIFACT_KEY": key}

    done = cli("replay", "--from", start.isoformat(), "--ticks", "6", "--no-train",
               "--processes", "2", env=env)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "replay" in done.stdout and "6/6" in done.stdout
    with session_scope(get_engine(url), readonly=True) as session:
        served = session.exec(select(Prediction.asset, func.count()).where(
            Prediction.served).group_by(Prediction.asset)).all()
    assert dict(served) == {"BTC/USDT": 6, "ETH/USDT": 6}  # 6 ticks, the one trained target

    refused = cli("replay", "--from", start.isoformat(), "--ticks", "2", "--no-train",
                  "--processes", "2", "--through-workers", env=env)
    assert refused.returncode == 2
    assert "--processes is for the in-process replay" in refused.stdout


def test_the_demo_fast_path_selects_among_two_families_with_a_lighter_lightgbm(tmp_path):
    from signalcast.cli.demo import DEMO_CANDIDATES, demo_settings, quick_selection
    from signalcast.models.registry import create

    quick = quick_selection(demo_settings(tmp_path / "d.db"))
    assert quick.models.candidates == DEMO_CANDIDATES and quick.training.folds == 4
    lightgbm = quick.models.params["lightgbm"]
    assert (lightgbm["n_estimators"], lightgbm["learning_rate"]) == (100, 0.1)
    assert create("lightgbm", **lightgbm).params["n_estimators"] == 100
    # an operator's own choice is left alone
    config = write_config(tmp_path / "own.yaml", {"models": {"candidates": ["lightgbm"]}})
    loaded = demo_settings(tmp_path / "e.db", config)
    assert quick_selection(loaded).models == loaded.models
