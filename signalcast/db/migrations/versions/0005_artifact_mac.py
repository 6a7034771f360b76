"""artifact_mac: the keyed MAC that authenticates each model artifact

Artifacts stored before this revision keep a NULL MAC and are refused when loaded (retrain).

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-29 10:00:00.000000
"""

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("model_versions", schema=None) as batch_op:
        batch_op.add_column(sa.Column("artifact_mac", sqlmodel.sql.sqltypes.AutoString(length=64),
                                      nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("model_versions", schema=None) as batch_op:
        batch_op.drop_column("artifact_mac")
