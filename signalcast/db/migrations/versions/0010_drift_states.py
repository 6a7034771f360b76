"""drift_states: the incremental drift detector of each champion (block CUSUM)

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-01 14:10:00.000000
"""

import sqlalchemy as sa
from alembic import op

from signalcast.db.tables import UTCDateTime

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "drift_states",
        sa.Column("model_version_id", sa.Integer(), nullable=False),
        sa.Column("last_block", sa.Integer(), nullable=False),
        sa.Column("blocks", sa.Integer(), nullable=False),
        sa.Column("alarms", sa.Integer(), nullable=False),
        sa.Column("state", sa.JSON(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(["model_version_id"], ["model_versions.id"]),
        sa.PrimaryKeyConstraint("model_version_id"),
    )


def downgrade() -> None:
    op.drop_table("drift_states")
