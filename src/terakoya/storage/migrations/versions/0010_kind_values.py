"""values as the task kind writes them: an item's known answer and a suggestion's output beyond its label

``items.gold`` holds an item's known answer as the task kind's JSON value (for classify.v1
``{"label": ...}``, the value an expert's answer has); ``items.gold_label`` stays, indexed, for the queries
that compare labels. ``suggestions.value`` holds what a model said beyond the label and its probabilities
(a generated text, a reason); None when those say it all. Existing known labels are copied into ``gold``.

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-30 17:45:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_CHUNK = 5000


def upgrade() -> None:
    with op.batch_alter_table("items") as batch:
        batch.add_column(sa.Column("gold", sa.JSON(), nullable=True))
    with op.batch_alter_table("suggestions") as batch:
        batch.add_column(sa.Column("value", sa.JSON(), nullable=True))
    items = sa.table(
        "items", sa.column("id", sa.Integer), sa.column("gold_label", sa.String), sa.column("gold", sa.JSON)
    )
    bind = op.get_bind()
    last = 0
    while True:
        rows = bind.execute(
            sa.select(items.c.id, items.c.gold_label)
            .where(items.c.gold_label.is_not(None), items.c.id > last)
            .order_by(items.c.id)
            .limit(_CHUNK)
        ).all()
        if not rows:
            break
        bind.execute(
            items.update().where(items.c.id == sa.bindparam("item_id")).values(gold=sa.bindparam("value")),
            [{"item_id": row.id, "value": {"label": row.gold_label}} for row in rows],
        )
        last = rows[-1].id


def downgrade() -> None:
    with op.batch_alter_table("suggestions") as batch:
        batch.drop_column("value")
    with op.batch_alter_table("items") as batch:
        batch.drop_column("gold")
