"""indexes for retention and for the lookups on growing tables

The outcome alert looks up its candle's signal alerts (asset, target, candle_time, kind), the
failed-task scan reads task runs by status and end time, and ``signalcast db prune`` deletes
alert_outbox rows by age and scheduled_enqueues by fire time.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-01 14:10:00.000000
"""

from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

INDEXES = (
    ("alert_outbox", "ix_alert_outbox_candle", ["asset", "target", "candle_time", "kind"]),
    ("alert_outbox", "ix_alert_outbox_created_at", ["created_at"]),
    ("task_runs", "ix_task_runs_status_finished", ["status", "finished_at"]),
    ("scheduled_enqueues", "ix_scheduled_enqueues_fire_time", ["fire_time"]),
)


def upgrade() -> None:
    for table, name, columns in INDEXES:
        op.create_index(name, table, columns, unique=False)


def downgrade() -> None:
    for table, name, _ in reversed(INDEXES):
        op.drop_index(name, table_name=table)
