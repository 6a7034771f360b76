"""model_states: online learning appends signed states instead of overwriting a version's
artifact; predictions.model_sha256 names the exact artifact (state) that made each prediction

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-01 16:20:00.000000
"""

import sqlalchemy as sa
import sqlmodel
from alembic import op

from signalcast.db.tables import UTCDateTime

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "model_states",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("model_version_id", sa.Integer(), nullable=False),
        sa.Column("state", sa.Integer(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("learned", sa.Integer(), nullable=False),
        sa.Column("last_candle", UTCDateTime(), nullable=True),
        sa.Column("sha256", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("artifact_mac", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True),
        sa.Column("artifact", sa.LargeBinary(), nullable=True),
        sa.ForeignKeyConstraint(["model_version_id"], ["model_versions.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("model_version_id", "state"),
    )
    op.create_index("ix_model_states_sha256", "model_states", ["model_version_id", "sha256"],
                    unique=False)
    with op.batch_alter_table("predictions") as batch:
        batch.add_column(sa.Column("model_sha256", sqlmodel.sql.sqltypes.AutoString(length=64),
                                   nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("predictions") as batch:
        batch.drop_column("model_sha256")
    op.drop_index("ix_model_states_sha256", table_name="model_states")
    op.drop_table("model_states")
