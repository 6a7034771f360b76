"""Champion administration shared by the bot and the CLI: promote, roll back, and the audit
log (``model_events``) of every champion change, on SQLite and Postgres."""

from __future__ import annotations

import sqlite3
from datetime import timedelta
from pathlib import Path

import pytest
from sqlmodel import select
from typer.testing import CliRunner

from signalcast.cli.models import models_cli as admin_models_cli
from signalcast.config import load_settings
from signalcast.core.errors import SignalcastError, UnknownNameError
from signalcast.db.engine import init_db, session_scope
from signalcast.db.tables import AlertOutbox, ModelEvent, ModelVersion
from signalcast.lifecycle import admin as model_admin
from signalcast.lifecycle.train import train_model
from tests.conftest import seed_history, write_config
from tests.fakes.telegram_server import DEFAULT_TOKEN

ONE = {"assets": [{"symbol": "BTC/USDT"}],
       "targets": [{"pct": 0.01, "horizon": 24, "alert_threshold": 0.6}],
       "alerts": {"console": False}}


def train_two_versions(db_url: str, config: Path):
    """Two trained versions of BTC/USDT 1pct_24: v1 (the first: champion), then v2 on a day
    more of data (a challenger)."""
    settings = load_settings(config, database_url=db_url, broker_url=None,
                             telegram_token=DEFAULT_TOKEN, telegram_chat_ids="101")
    engine = init_db(db_url)
    now = seed_history(engine, settings)
    v1 = train_model(engine, settings, "BTC/USDT", "1pct_24", "lightgbm", now=now)
    now = seed_history(engine, settings, days=151)
    v2 = train_model(engine, settings, "BTC/USDT", "1pct_24", "lightgbm", now=now)
    assert (v1.version, v2.version) == (1, 2)
    return engine, settings


@pytest.fixture(scope="module")
def template(tmp_path_factory) -> tuple[Path, Path]:
    """A SQLite file with the two versions, trained once for the module."""
    folder = tmp_path_factory.mktemp("admin")
    config = write_config(folder / "one.yaml", ONE)
    database = folder / "template.db"
    train_two_versions(f"sqlite:///{database}", config)
    return database, config


@pytest.fixture
def trained(template, tmp_path):
    """A copy of the template database: (engine, settings, config)."""
    database, config = template
    copy = tmp_path / "trained.db"
    with sqlite3.connect(database) as source, sqlite3.connect(copy) as target:
        source.backup(target)  # reads through the WAL, unlike a file copy
    settings = load_settings(config, database_url=f"sqlite:///{copy}", broker_url=None,
                             telegram_token=DEFAULT_TOKEN, telegram_chat_ids="101")
    return init_db(settings.env.database_url), settings, config


def roles(engine) -> dict[int, str]:
    with session_scope(engine, readonly=True) as session:
        return {v.version: v.role for v in session.exec(select(ModelVersion)).all()}


def events(engine) -> list[tuple[str, str | None, str | None, str]]:
    with session_scope(engine, readonly=True) as session:
        return [(e.event, e.from_label, e.to_label, e.actor) for e in
                session.exec(select(ModelEvent).order_by(ModelEvent.id)).all()]


def model_alerts(engine) -> list[dict]:
    with session_scope(engine, readonly=True) as session:
        return [r.payload for r in session.exec(select(AlertOutbox).where(
            AlertOutbox.kind == "model").order_by(AlertOutbox.id)).all()]


@pytest.mark.slow
def test_a_training_that_becomes_champion_is_audited_and_a_new_challenger_is_not(trained):
    engine, _settings, _ = trained
    assert roles(engine) == {1: "champion", 2: "challenger"}
    assert events(engine) == [("retrained", None, "lightgbm v1", "training")]
    assert [(a["event"], a["to"]) for a in model_alerts(engine)] == [("retrained", "lightgbm v1")]


@pytest.mark.slow
def test_promote_makes_a_version_champion_and_records_who_why_and_the_statistics(db_url,
                                                                                 template):
    engine, settings = train_two_versions(db_url, template[1])
    event = model_admin.promote_version(engine, settings, "btc/usdt", "1pct_24", "lightgbm:2",
                                        actor="telegram:42", reason="v2 shadowed well")
    assert roles(engine) == {1: "retired", 2: "champion"}
    assert (event.event, event.from_label, event.to_label) == (
        "promoted", "lightgbm v1", "lightgbm v2")
    assert (event.actor, event.reason) == ("telegram:42", "v2 shadowed well")
    assert set(event.stats) == {"from", "to"} and "auc" in event.stats["to"]
    [newest, *_] = model_admin.history(engine, settings, "BTC/USDT", "1pct_24")
    assert newest.id == event.id and newest.created_at.tzinfo is not None
    assert model_alerts(engine)[-1]["event"] == "promoted"


@pytest.mark.slow
def test_rollback_returns_to_the_version_the_champion_replaced_and_is_audited(trained):
    engine, settings, _ = trained
    model_admin.promote_version(engine, settings, "BTC/USDT", "1pct_24", "2", actor="cli:ops")
    event = model_admin.rollback(engine, settings, "BTC/USDT", "1pct_24", actor="cli:ops")
    assert roles(engine) == {1: "champion", 2: "retired"}
    assert events(engine)[-1] == ("rolled_back", "lightgbm v2", "lightgbm v1", "cli:ops")
    assert event.reason == "rolled back by hand"
    with pytest.raises(SignalcastError, match="no earlier version"):  # v1 was the first
        model_admin.rollback(engine, settings, "BTC/USDT", "1pct_24", actor="cli:ops")


@pytest.mark.slow
def test_promoting_a_wrong_version_lists_the_versions_that_exist(trained):
    engine, settings, _ = trained
    with pytest.raises(UnknownNameError, match=r"Known: lightgbm:1, lightgbm:2"):
        model_admin.promote_version(engine, settings, "BTC/USDT", "1pct_24", "xgboost:1", "me")
    with pytest.raises(SignalcastError, match="lightgbm v1 is already the champion"):
        model_admin.promote_version(engine, settings, "BTC/USDT", "1pct_24", "v1", "me")
    with pytest.raises(UnknownNameError, match="Known: 1pct_24"):
        model_admin.promote_version(engine, settings, "BTC/USDT", "2pct_24", "1", "me")
    assert len(events(engine)) == 1  # nothing was recorded


@pytest.mark.slow
def test_cli_lists_promotes_rolls_back_and_shows_the_history(trained, monkeypatch):
    engine, settings, config = trained
    monkeypatch.setenv("SIGNALCAST_CONFIG", str(config))
    monkeypatch.setenv("SIGNALCAST_DATABASE_URL", settings.env.database_url)
    runner = CliRunner()

    listed = runner.invoke(admin_models_cli, ["list", "BTC/USDT"])
    assert listed.exit_code == 0, listed.output
    assert "lightgbm:2" in listed.output and "challenger" in listed.output

    promoted = runner.invoke(admin_models_cli, ["promote", "BTC/USDT", "1pct_24", "2",
                                                "--reason", "canary"])
    assert promoted.exit_code == 0, promoted.output
    assert "lightgbm v2 is the champion (was lightgbm v1)" in promoted.output
    assert roles(engine) == {1: "retired", 2: "champion"}

    rolled = runner.invoke(admin_models_cli, ["rollback", "BTC/USDT", "1pct_24"])
    assert rolled.exit_code == 0 and "rolled back to lightgbm v1" in rolled.output

    shown = runner.invoke(admin_models_cli, ["history", "BTC/USDT", "1pct_24"])
    assert shown.exit_code == 0
    assert shown.output.index("rolled_back") < shown.output.index("promoted") < \
        shown.output.index("retrained")
    assert "canary" in shown.output and events(engine)[-2][3].startswith("cli")

    bad = runner.invoke(admin_models_cli, ["promote", "BTC/USDT", "1pct_24", "7"])
    assert bad.exit_code != 0 and isinstance(bad.exception, UnknownNameError)


@pytest.mark.slow
def test_a_later_training_of_the_same_data_records_no_second_event(trained):
    engine, settings, _ = trained
    now = settings.data.start + timedelta(days=151)
    again = train_model(engine, settings, "BTC/USDT", "1pct_24", "lightgbm", now=now)
    assert again.version == 2 and len(events(engine)) == 1
