"""run promotions: the run `shoal serve` predicts with, pinned by `shoal runs promote`

Revision ID: 0004
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "run_promotions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("run_id", sa.Integer(), nullable=False),
        sa.Column("note", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["run_id"], ["training_runs.id"], name=op.f("fk_run_promotions_run_id_training_runs")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_run_promotions")),
    )
    with op.batch_alter_table("run_promotions", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_run_promotions_run_id"), ["run_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("run_promotions", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_run_promotions_run_id"))
    op.drop_table("run_promotions")
