"""jobs claimed by worker processes

A job row carries what it needs to run (``args``: the route budget) and who runs it (``claimed_by``, with a
``heartbeat_at`` the runner refreshes), so that `terakoya worker` processes, or any web process, can claim
queued jobs from the table, and a restart fails only the jobs whose runner has really gone.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-30 15:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.add_column(sa.Column("args", sa.JSON(), nullable=False, server_default="{}"))
        batch.add_column(sa.Column("claimed_by", sa.String(length=200), nullable=True))
        batch.add_column(sa.Column("heartbeat_at", sa.DateTime(), nullable=True))
    op.create_index("ix_jobs_status", "jobs", ["status", "id"])


def downgrade() -> None:
    op.drop_index("ix_jobs_status", table_name="jobs")
    with op.batch_alter_table("jobs") as batch:
        batch.drop_column("heartbeat_at")
        batch.drop_column("claimed_by")
        batch.drop_column("args")
