"""routing: run-time overrides, circuit breakers, online learning ledger, promotion checks

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-22 16:00:00.000000
"""

import sqlalchemy as sa
import sqlmodel
from alembic import op

import signalcast.db.tables

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

_STR = sqlmodel.sql.sqltypes.AutoString
_TIME = signalcast.db.tables.UTCDateTime


def upgrade() -> None:
    op.create_table(
        "routing_overrides",
        sa.Column("asset", _STR(length=40), nullable=False),
        sa.Column("target", _STR(length=40), nullable=False),
        sa.Column("shadows", sa.JSON(), nullable=True),
        sa.Column("ab_share", sa.Float(), nullable=True),
        sa.Column("ab_challenger", _STR(length=40), nullable=True),
        sa.Column("updated_at", _TIME(), nullable=False),
        sa.Column("updated_by", _STR(length=80), nullable=False),
        sa.PrimaryKeyConstraint("asset", "target"),
    )
    op.create_table(
        "model_breakers",
        sa.Column("model_version_id", sa.Integer(), nullable=False),
        sa.Column("state", _STR(length=16), nullable=False),
        sa.Column("failures", sa.Integer(), nullable=False),
        sa.Column("opened_at", _TIME(), nullable=True),
        sa.Column("last_candle", _TIME(), nullable=True),
        sa.Column("last_error", _STR(length=300), nullable=True),
        sa.Column("updated_at", _TIME(), nullable=False),
        sa.ForeignKeyConstraint(["model_version_id"], ["model_versions.id"]),
        sa.PrimaryKeyConstraint("model_version_id"),
    )
    op.create_table(
        "online_learned",
        sa.Column("model_version_id", sa.Integer(), nullable=False),
        sa.Column("candle_time", _TIME(), nullable=False),
        sa.Column("label", sa.Integer(), nullable=False),
        sa.Column("learned_at", _TIME(), nullable=False),
        sa.ForeignKeyConstraint(["model_version_id"], ["model_versions.id"]),
        sa.PrimaryKeyConstraint("model_version_id", "candle_time"),
    )
    op.create_table(
        "promotion_checks",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("asset", _STR(length=40), nullable=False),
        sa.Column("target", _STR(length=40), nullable=False),
        sa.Column("champion_version_id", sa.Integer(), nullable=False),
        sa.Column("challenger_version_id", sa.Integer(), nullable=False),
        sa.Column("n_shared", sa.Integer(), nullable=False),
        sa.Column("decision", _STR(length=16), nullable=False),
        sa.Column("stats", sa.JSON(), nullable=False),
        sa.Column("evaluated_at", _TIME(), nullable=False),
        sa.ForeignKeyConstraint(["champion_version_id"], ["model_versions.id"]),
        sa.ForeignKeyConstraint(["challenger_version_id"], ["model_versions.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("champion_version_id", "challenger_version_id", "n_shared"),
    )
    with op.batch_alter_table("promotion_checks", schema=None) as batch_op:
        batch_op.create_index("ix_promotion_checks_lookup", ["asset", "target", "evaluated_at"],
                              unique=False)


def downgrade() -> None:
    with op.batch_alter_table("promotion_checks", schema=None) as batch_op:
        batch_op.drop_index("ix_promotion_checks_lookup")
    op.drop_table("promotion_checks")
    op.drop_table("online_learned")
    op.drop_table("model_breakers")
    op.drop_table("routing_overrides")
