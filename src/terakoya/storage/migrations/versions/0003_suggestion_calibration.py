"""suggestion calibration

A teacher suggestion records how its probabilities were calibrated ("batch", "vector", "matrix", or
NULL for the model's own probabilities). Calibrated versions are new rows that re-use the stored
log-probabilities: re-calibrating never calls the model again.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-30 09:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("suggestions", schema=None) as batch_op:
        batch_op.add_column(sa.Column("calibration", sa.String(length=100), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("suggestions", schema=None) as batch_op:
        batch_op.drop_column("calibration")
