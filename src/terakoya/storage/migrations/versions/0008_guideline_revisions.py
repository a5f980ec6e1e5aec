"""guideline revisions

The owner edits the guidelines and the label descriptions in the web app; each edit is a row (the newest
wins over terakoya.toml), kept with the version stamp that answers given under it carry.

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-30 14:45:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "guideline_revisions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("project_id", sa.Integer(), nullable=False),
        sa.Column("guidelines", sa.Text(), nullable=False),
        sa.Column("label_descriptions", sa.JSON(), nullable=False),
        sa.Column("version", sa.String(length=64), nullable=False),
        sa.Column("set_by", sa.Integer(), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(["project_id"], ["projects.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["set_by"], ["people.id"], ondelete="SET NULL"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_guideline_revisions_project_id", "guideline_revisions", ["project_id"])


def downgrade() -> None:
    op.drop_index("ix_guideline_revisions_project_id", table_name="guideline_revisions")
    op.drop_table("guideline_revisions")
