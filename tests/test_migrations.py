"""The hand-written migrations build exactly the schema the models describe, on SQLite and
Postgres, and the newest one can be undone and redone."""

from __future__ import annotations

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect
from sqlmodel import SQLModel

import signalcast.db.tables  # noqa: F401  (registers every table)
from signalcast.db.engine import init_db
from signalcast.db.migrate import alembic_config, current_revision, head_revision, upgrade

TELEGRAM_TABLES = {"chat_prefs", "alert_last_sent", "model_events", "worker_heartbeats"}


def schema_differences(engine) -> list:
    with engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        return compare_metadata(context, SQLModel.metadata)


def test_schema_after_upgrade_matches_the_models(db_url):
    engine = init_db(db_url)
    assert current_revision(engine) == head_revision()
    assert schema_differences(engine) == []


def test_the_telegram_migration_downgrades_and_upgrades_cleanly(db_url):
    engine = init_db(db_url)
    command.downgrade(alembic_config(engine), "0002")
    assert current_revision(engine) == "0002"
    assert not TELEGRAM_TABLES & set(inspect(engine).get_table_names())
    assert "ix_alert_outbox_sent_at" not in {
        ix["name"] for ix in inspect(engine).get_indexes("alert_outbox")}
    assert upgrade(engine) == head_revision()
    assert TELEGRAM_TABLES <= set(inspect(engine).get_table_names())
    assert schema_differences(engine) == []
