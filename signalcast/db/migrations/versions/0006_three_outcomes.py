"""three outcomes on served predictions: prob_down beside prob_up, and why an alert was held

``prob_up`` keeps its meaning, the unconditional P(up level touched first); ``prob_down`` is
the unconditional P(down level touched first), so ``1 - prob_up - prob_down`` is P(neither
within the horizon). Rows stored before this revision keep a NULL ``prob_down`` (their model
could not say "neither": read it as ``1 - prob_up``). ``alert_held`` says why a prediction
that reached its threshold was not alerted (the skill gate), NULL otherwise.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-20 10:00:00.000000
"""

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("predictions", schema=None) as batch_op:
        batch_op.add_column(sa.Column("prob_down", sa.Float(), nullable=True))
        batch_op.add_column(sa.Column("alert_held", sqlmodel.sql.sqltypes.AutoString(length=200),
                                      nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("predictions", schema=None) as batch_op:
        batch_op.drop_column("alert_held")
        batch_op.drop_column("prob_down")
