"""species taxonomy (GBIF backbone), crawl warnings, unwrapped page links

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-01 09:20:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("species", schema=None) as batch_op:
        batch_op.add_column(sa.Column("taxon_status", sa.String(length=16), nullable=True))
        batch_op.add_column(sa.Column("taxon_match", sa.String(length=16), nullable=True))
        batch_op.add_column(sa.Column("gbif_key", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("accepted_name", sa.String(length=128), nullable=True))
        # existing rows (and raw inserts) get an empty list; the model always writes one
        batch_op.add_column(sa.Column("synonyms", sa.JSON(), nullable=False,
                                      server_default=sa.text("'[]'")))
        batch_op.add_column(sa.Column("taxon_class", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("taxon_order", sa.String(length=64), nullable=True))
    with op.batch_alter_table("crawl_jobs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("warning", sa.Text(), nullable=True))
    with op.batch_alter_table("image_sources", schema=None) as batch_op:
        batch_op.add_column(sa.Column("link_url", sa.String(length=2048), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("image_sources", schema=None) as batch_op:
        batch_op.drop_column("link_url")
    with op.batch_alter_table("crawl_jobs", schema=None) as batch_op:
        batch_op.drop_column("warning")
    with op.batch_alter_table("species", schema=None) as batch_op:
        for column in ("taxon_order", "taxon_class", "synonyms", "accepted_name", "gbif_key",
                       "taxon_match", "taxon_status"):
            batch_op.drop_column(column)
