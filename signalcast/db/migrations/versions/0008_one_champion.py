"""one champion per (asset, target), enforced by a partial unique index

Rows stored before this revision with more than one champion of an (asset, target) keep the
newest (highest id) as champion; the others become ``retired`` first, so the index can be built.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-01 14:00:00.000000
"""

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

WHERE = sa.text("role = 'champion'")


def upgrade() -> None:
    op.execute(sa.text(
        "UPDATE model_versions SET role = 'retired' WHERE role = 'champion' AND id < ("
        "SELECT max(m.id) FROM model_versions m WHERE m.role = 'champion' "
        "AND m.asset = model_versions.asset AND m.target = model_versions.target)"))
    op.create_index("uq_model_versions_one_champion", "model_versions", ["asset", "target"],
                    unique=True, sqlite_where=WHERE, postgresql_where=WHERE)


def downgrade() -> None:
    op.drop_index("uq_model_versions_one_champion", table_name="model_versions")
