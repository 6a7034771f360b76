"""candle gaps: candles an exchange did not deliver

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-21 22:00:00.000000
"""

import sqlalchemy as sa
import sqlmodel
from alembic import op

import signalcast.db.tables

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "candle_gaps",
        sa.Column("asset", sqlmodel.sql.sqltypes.AutoString(length=40), nullable=False),
        sa.Column("timeframe", sqlmodel.sql.sqltypes.AutoString(length=8), nullable=False),
        sa.Column("first_missing", signalcast.db.tables.UTCDateTime(), nullable=False),
        sa.Column("last_missing", signalcast.db.tables.UTCDateTime(), nullable=False),
        sa.Column("missing", sa.Integer(), nullable=False),
        sa.Column("status", sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
        sa.Column("reason", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
        sa.Column("checks", sa.Integer(), nullable=False),
        sa.Column("first_seen", signalcast.db.tables.UTCDateTime(), nullable=False),
        sa.Column("last_checked", signalcast.db.tables.UTCDateTime(), nullable=False),
        sa.Column("filled_at", signalcast.db.tables.UTCDateTime(), nullable=True),
        sa.PrimaryKeyConstraint("asset", "timeframe", "first_missing"),
    )


def downgrade() -> None:
    op.drop_table("candle_gaps")
