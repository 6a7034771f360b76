"""telegram: chat preferences, signal debounce, model events audit, worker heartbeats

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-22 10:00:00.000000
"""

import sqlalchemy as sa
import sqlmodel
from alembic import op

import signalcast.db.tables

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

_STR = sqlmodel.sql.sqltypes.AutoString
_TIME = signalcast.db.tables.UTCDateTime


def upgrade() -> None:
    op.create_table(
        "chat_prefs",
        sa.Column("chat_id", _STR(length=64), nullable=False),
        sa.Column("enrolled", sa.Boolean(), nullable=True),
        sa.Column("paused", sa.Boolean(), nullable=False),
        sa.Column("kinds", sa.JSON(), nullable=False),
        sa.Column("muted_assets", sa.JSON(), nullable=False),
        sa.Column("muted_targets", sa.JSON(), nullable=False),
        sa.Column("updated_at", _TIME(), nullable=False),
        sa.Column("updated_by", _STR(length=80), nullable=True),
        sa.PrimaryKeyConstraint("chat_id"),
    )
    op.create_table(
        "alert_last_sent",
        sa.Column("chat_id", _STR(length=64), nullable=False),
        sa.Column("asset", _STR(length=40), nullable=False),
        sa.Column("target", _STR(length=40), nullable=False),
        sa.Column("direction", _STR(length=8), nullable=False),
        sa.Column("band", _STR(length=16), nullable=False),
        sa.Column("candle_time", _TIME(), nullable=False),
        sa.Column("until", _TIME(), nullable=False),
        sa.Column("sent_at", _TIME(), nullable=False),
        sa.PrimaryKeyConstraint("chat_id", "asset", "target"),
    )
    op.create_table(
        "model_events",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("asset", _STR(length=40), nullable=False),
        sa.Column("target", _STR(length=40), nullable=False),
        sa.Column("event", _STR(length=24), nullable=False),
        sa.Column("from_version_id", sa.Integer(), nullable=True),
        sa.Column("to_version_id", sa.Integer(), nullable=True),
        sa.Column("from_label", _STR(length=80), nullable=True),
        sa.Column("to_label", _STR(length=80), nullable=True),
        sa.Column("actor", _STR(length=80), nullable=False),
        sa.Column("reason", _STR(length=500), nullable=False),
        sa.Column("stats", sa.JSON(), nullable=False),
        sa.Column("created_at", _TIME(), nullable=False),
        sa.ForeignKeyConstraint(["from_version_id"], ["model_versions.id"]),
        sa.ForeignKeyConstraint(["to_version_id"], ["model_versions.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("model_events", schema=None) as batch_op:
        batch_op.create_index("ix_model_events_lookup", ["asset", "target", "created_at"],
                              unique=False)
    op.create_table(
        "worker_heartbeats",
        sa.Column("worker", _STR(length=200), nullable=False),
        sa.Column("first_seen", _TIME(), nullable=False),
        sa.Column("last_seen", _TIME(), nullable=False),
        sa.PrimaryKeyConstraint("worker"),
    )
    with op.batch_alter_table("alert_outbox", schema=None) as batch_op:
        batch_op.create_index("ix_alert_outbox_sent_at", ["sent_at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("alert_outbox", schema=None) as batch_op:
        batch_op.drop_index("ix_alert_outbox_sent_at")
    op.drop_table("worker_heartbeats")
    with op.batch_alter_table("model_events", schema=None) as batch_op:
        batch_op.drop_index("ix_model_events_lookup")
    op.drop_table("model_events")
    op.drop_table("alert_last_sent")
    op.drop_table("chat_prefs")
