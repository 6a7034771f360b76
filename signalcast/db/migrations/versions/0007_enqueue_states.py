"""enqueue states: pending -> sent -> landed/expired, the published signature, redos, deadline

The scheduler commits a ``pending`` row before it publishes and marks it ``sent`` after, so no
database transaction stays open while the broker is called; the reconciler publishes pending
rows again and re-enqueues ticks whose work never landed. Rows stored before this revision are
``sent`` with no signature (nothing to publish again).

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-21 10:00:00.000000
"""

import sqlalchemy as sa
import sqlmodel
from alembic import op

from signalcast.db.tables import UTCDateTime

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("scheduled_enqueues", schema=None) as batch_op:
        batch_op.add_column(sa.Column("status", sqlmodel.sql.sqltypes.AutoString(length=16),
                                      nullable=False, server_default="sent"))
        batch_op.add_column(sa.Column("sent_at", UTCDateTime(), nullable=True))
        batch_op.add_column(sa.Column("deadline", UTCDateTime(), nullable=True))
        batch_op.add_column(sa.Column("redos", sa.Integer(), nullable=False, server_default="0"))
        batch_op.add_column(sa.Column("signature", sa.JSON(), nullable=False,
                                      server_default="{}"))
        batch_op.create_index("ix_scheduled_enqueues_status", ["status"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("scheduled_enqueues", schema=None) as batch_op:
        batch_op.drop_index("ix_scheduled_enqueues_status")
        for column in ("signature", "redos", "deadline", "sent_at", "status"):
            batch_op.drop_column(column)
