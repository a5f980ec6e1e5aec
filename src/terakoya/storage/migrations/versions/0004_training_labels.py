"""training labels with provenance

Every ``train`` writes one row per training target: the item, the target distribution, where it came
from (the experts' aggregate, the teacher, an auto-accepted teacher label, the student's own confident
prediction), the weight it had, the answer ids and the suggestion id behind it, and the aggregator.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-30 12:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "training_labels",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("student_run_id", sa.Integer(), nullable=False),
        sa.Column("item_id", sa.Integer(), nullable=False),
        sa.Column("label", sa.String(length=200), nullable=False),
        sa.Column("target", sa.JSON(), nullable=False),
        sa.Column("source", sa.String(length=30), nullable=False),
        sa.Column("weight", sa.Float(), nullable=False),
        sa.Column("answer_ids", sa.JSON(), nullable=False),
        sa.Column("suggestion_id", sa.Integer(), nullable=True),
        sa.Column("aggregator", sa.String(length=50), nullable=True),
        sa.ForeignKeyConstraint(["student_run_id"], ["student_runs.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["item_id"], ["items.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["suggestion_id"], ["suggestions.id"], ondelete="SET NULL"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_training_labels_run", "training_labels", ["student_run_id"])
    op.create_index("ix_training_labels_item", "training_labels", ["item_id"])


def downgrade() -> None:
    op.drop_index("ix_training_labels_item", table_name="training_labels")
    op.drop_index("ix_training_labels_run", table_name="training_labels")
    op.drop_table("training_labels")
