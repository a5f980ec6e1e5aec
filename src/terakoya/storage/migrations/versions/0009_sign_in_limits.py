"""sign-in limits shared by server processes

Failed sign-ins were counted in each server process's memory; with several processes each allowed its own
five. They are now counted in the database, per (project, account, address), under a hashed key.

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-30 15:05:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "sign_in_limits",
        sa.Column("key", sa.String(length=64), nullable=False),
        sa.Column("count", sa.Integer(), nullable=False),
        sa.Column("window_start", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("key"),
    )
    op.create_index("ix_sign_in_limits_window_start", "sign_in_limits", ["window_start"])


def downgrade() -> None:
    op.drop_index("ix_sign_in_limits_window_start", table_name="sign_in_limits")
    op.drop_table("sign_in_limits")
