"""assignments: a task takes k answers, each from a different person

A new table ``assignments`` holds one row per (task, person): leased, answered, flagged, skipped or
expired, with the lease's end and the answer it led to. ``tasks.answers_wanted`` (k) says how many
answers a task takes; existing tasks take one, as before.

The old task states carry over, nothing is dropped:

- an answered (or flagged) task: one ``answered`` (``flagged`` for a flag) assignment per person with a
  live answer to it (their newest), linked to that answer;
- a leased task: a ``leased`` assignment for ``leased_to``, with the lease's end;
- a skip recorded in ``task_skips`` (and a task left ``skipped`` with a holder): a ``skipped`` assignment.

``tasks.status``, ``leased_to`` and ``lease_expires_at`` stay as they were: they are the task-level summary.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01 12:00:00
"""

from collections.abc import Sequence
from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_tasks = sa.table(
    "tasks",
    sa.column("id", sa.Integer()),
    sa.column("status", sa.String()),
    sa.column("leased_to", sa.Integer()),
    sa.column("lease_expires_at", sa.DateTime()),
    sa.column("created_at", sa.DateTime()),
)
_answers = sa.table(
    "answers",
    sa.column("id", sa.Integer()),
    sa.column("task_id", sa.Integer()),
    sa.column("person_id", sa.Integer()),
    sa.column("kind", sa.String()),
    sa.column("superseded", sa.Boolean()),
    sa.column("created_at", sa.DateTime()),
)
_skips = sa.table(
    "task_skips",
    sa.column("task_id", sa.Integer()),
    sa.column("person_id", sa.Integer()),
    sa.column("created_at", sa.DateTime()),
)
_assignments = sa.table(
    "assignments",
    sa.column("task_id", sa.Integer()),
    sa.column("person_id", sa.Integer()),
    sa.column("status", sa.String()),
    sa.column("lease_expires_at", sa.DateTime()),
    sa.column("answer_id", sa.Integer()),
    sa.column("created_at", sa.DateTime()),
    sa.column("updated_at", sa.DateTime()),
)
_COLUMNS = ["task_id", "person_id", "status", "lease_expires_at", "answer_id", "created_at", "updated_at"]


def upgrade() -> None:
    op.create_table(
        "assignments",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("task_id", sa.Integer(), nullable=False),
        sa.Column("person_id", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("lease_expires_at", sa.DateTime(), nullable=True),
        sa.Column("answer_id", sa.Integer(), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(["task_id"], ["tasks.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["person_id"], ["people.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["answer_id"], ["answers.id"], ondelete="SET NULL"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("task_id", "person_id", name="uq_assignments_task_person"),
    )
    op.create_index("ix_assignments_person_status", "assignments", ["person_id", "status"])
    op.create_index("ix_assignments_answer", "assignments", ["answer_id"])
    with op.batch_alter_table("tasks", schema=None) as batch_op:
        batch_op.add_column(sa.Column("answers_wanted", sa.Integer(), server_default="1", nullable=False))
    _carry_task_states()


def _not_assigned(task_id: sa.ColumnElement[int], person_id: sa.ColumnElement[int]) -> sa.ColumnElement[bool]:
    existing = sa.table("assignments", sa.column("task_id"), sa.column("person_id")).alias("existing")
    return ~sa.exists().where(existing.c.task_id == task_id, existing.c.person_id == person_id)


def _carry_task_states() -> None:
    now = sa.literal(datetime.now(UTC).replace(tzinfo=None), sa.DateTime())
    # answered and flagged tasks: each person's newest live answer to the task
    newer = _answers.alias("newer")
    answered = (
        sa.select(
            _answers.c.task_id,
            _answers.c.person_id,
            sa.case((_answers.c.kind == "flag", sa.literal("flagged")), else_=sa.literal("answered")),
            sa.null(),
            _answers.c.id,
            _answers.c.created_at,
            _answers.c.created_at,
        )
        .select_from(_answers.join(_tasks, _tasks.c.id == _answers.c.task_id))
        .where(
            _tasks.c.status.in_(("answered", "flagged")),
            _answers.c.superseded.is_(False),
            ~sa.exists().where(
                newer.c.task_id == _answers.c.task_id,
                newer.c.person_id == _answers.c.person_id,
                newer.c.superseded.is_(False),
                newer.c.id > _answers.c.id,
            ),
        )
    )
    op.execute(sa.insert(_assignments).from_select(_COLUMNS, answered))
    # leased tasks: the holder keeps the lease, expired or not (as before, it is free for anyone once it ran out)
    leased = sa.select(
        _tasks.c.id, _tasks.c.leased_to, sa.literal("leased"), _tasks.c.lease_expires_at, sa.null(),
        _tasks.c.created_at, now,
    ).where(
        _tasks.c.status == "leased", _tasks.c.leased_to.is_not(None), _not_assigned(_tasks.c.id, _tasks.c.leased_to)
    )  # fmt: skip
    op.execute(sa.insert(_assignments).from_select(_COLUMNS, leased))
    # skips: recorded per item and person in task_skips (with the task), or a task left 'skipped' by its holder
    skipped = sa.select(
        _skips.c.task_id, _skips.c.person_id, sa.literal("skipped"), sa.null(), sa.null(), _skips.c.created_at, now
    ).where(_skips.c.task_id.is_not(None), _not_assigned(_skips.c.task_id, _skips.c.person_id))
    op.execute(sa.insert(_assignments).from_select(_COLUMNS, skipped))
    left = sa.select(
        _tasks.c.id, _tasks.c.leased_to, sa.literal("skipped"), sa.null(), sa.null(), _tasks.c.created_at, now
    ).where(
        _tasks.c.status == "skipped", _tasks.c.leased_to.is_not(None), _not_assigned(_tasks.c.id, _tasks.c.leased_to)
    )
    op.execute(sa.insert(_assignments).from_select(_COLUMNS, left))


def downgrade() -> None:
    op.drop_index("ix_assignments_answer", table_name="assignments")
    op.drop_index("ix_assignments_person_status", table_name="assignments")
    op.drop_table("assignments")
    with op.batch_alter_table("tasks", schema=None) as batch_op:
        batch_op.drop_column("answers_wanted")
