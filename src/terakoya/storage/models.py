"""The tables. Machine suggestions and human answers live apart; every label can be traced.

- ``items``: the data, split into ``pool`` and ``test``; ``gold_label`` is the recorded label from the
  import (on the test split it is the expert-checked truth; on the pool it is only read by ``simulate``).
- ``teacher_calls``: the teacher cache, one row per distinct (model, prompt version, inputs, params).
- ``suggestions``: what a model said about an item (teacher or student), with cost and latency.
- ``answers``: what a person said about an item, with who, task kind, rationale and active seconds.
- ``route_runs`` / ``tasks`` / ``auto_accepts``: routing decisions and the expert queue.
- ``assignments``: who holds, answered or skipped which task; a task takes ``answers_wanted`` answers, each
  from a different person (the rules are in :mod:`terakoya.workqueue.assignments`).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, ClassVar

from sqlalchemy import (
    JSON,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

__all__ = [
    "Answer",
    "Assignment",
    "AutoAccept",
    "Base",
    "GlossaryTerm",
    "Import",
    "Item",
    "Job",
    "Pause",
    "Person",
    "Project",
    "RouteRun",
    "StudentRun",
    "Suggestion",
    "Task",
    "TeacherCall",
    "TrainingLabel",
    "utcnow",
]


def utcnow() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


class Base(DeclarativeBase):
    type_annotation_map: ClassVar[dict[Any, Any]] = {dict[str, Any]: JSON, list[Any]: JSON}


class Project(Base):
    __tablename__ = "projects"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)


class Import(Base):
    """One import of one file: where items came from."""

    __tablename__ = "imports"
    id: Mapped[int] = mapped_column(primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"), index=True)
    source: Mapped[str] = mapped_column(Text)
    format: Mapped[str] = mapped_column(String(20))
    file_sha256: Mapped[str] = mapped_column(String(64))
    columns: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    rows_read: Mapped[int] = mapped_column(Integer, default=0)
    items_added: Mapped[int] = mapped_column(Integer, default=0)
    duplicates: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)


class Item(Base):
    __tablename__ = "items"
    __table_args__ = (
        UniqueConstraint("project_id", "text_hash", name="uq_items_project_hash"),
        UniqueConstraint("project_id", "external_id", name="uq_items_project_external"),
        Index("ix_items_project_split", "project_id", "split"),
    )
    id: Mapped[int] = mapped_column(primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    import_id: Mapped[int | None] = mapped_column(ForeignKey("imports.id", ondelete="SET NULL"), nullable=True)
    external_id: Mapped[str] = mapped_column(String(200))
    text: Mapped[str] = mapped_column(Text)
    text_hash: Mapped[str] = mapped_column(String(64))
    split: Mapped[str] = mapped_column(String(10), default="pool")  # pool | test
    gold_label: Mapped[str | None] = mapped_column(String(200), nullable=True)
    #: the known answer as the task kind's value (classify.v1: ``{"label": ...}``); gold_label is its label
    gold: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    meta: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)


class TeacherCall(Base):
    """The teacher cache: one stored call per distinct key."""

    __tablename__ = "teacher_calls"
    id: Mapped[int] = mapped_column(primary_key=True)
    key: Mapped[str] = mapped_column(String(64), unique=True)
    model: Mapped[str] = mapped_column(String(300))
    prompt_version: Mapped[str] = mapped_column(String(100))
    request: Mapped[dict[str, Any]] = mapped_column(JSON)
    response: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)


class Suggestion(Base):
    """What a model said about an item."""

    __tablename__ = "suggestions"
    __table_args__ = (Index("ix_suggestions_item_agent", "item_id", "agent", "prompt_version"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    item_id: Mapped[int] = mapped_column(ForeignKey("items.id", ondelete="CASCADE"))
    agent_kind: Mapped[str] = mapped_column(String(20))  # teacher | student
    agent: Mapped[str] = mapped_column(String(300))  # model name / student run id
    prompt_version: Mapped[str] = mapped_column(String(100), default="")
    label: Mapped[str | None] = mapped_column(String(200), nullable=True)
    probabilities: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    confidence: Mapped[float | None] = mapped_column(Float, nullable=True)  # None: unknown
    confidence_known: Mapped[bool] = mapped_column(Boolean, default=True)
    #: what the model said beyond the label and its probabilities, as the task kind's value (None: nothing more)
    value: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    raw_output: Mapped[str] = mapped_column(Text, default="")
    prompt_tokens: Mapped[int] = mapped_column(Integer, default=0)
    completion_tokens: Mapped[int] = mapped_column(Integer, default=0)
    latency_ms: Mapped[float] = mapped_column(Float, default=0.0)
    cost_usd: Mapped[float] = mapped_column(Float, default=0.0)
    cached: Mapped[bool] = mapped_column(Boolean, default=False)
    call_key: Mapped[str | None] = mapped_column(String(64), nullable=True)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    #: how the probabilities were calibrated ("batch", "bias", "vector", "matrix"); None: as the model gave them
    calibration: Mapped[str | None] = mapped_column(String(100), nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    item: Mapped[Item] = relationship()


class Person(Base):
    __tablename__ = "people"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    email: Mapped[str | None] = mapped_column(String(300), nullable=True, unique=True)
    role: Mapped[str] = mapped_column(String(20), default="trainer")  # owner | reviewer | trainer
    password_hash: Mapped[str | None] = mapped_column(String(300), nullable=True)
    tags: Mapped[list[Any]] = mapped_column(JSON, default=list)
    languages: Mapped[list[Any]] = mapped_column(JSON, default=list)
    simulated: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)


class RouteRun(Base):
    __tablename__ = "route_runs"
    id: Mapped[int] = mapped_column(primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"), index=True)
    strategy: Mapped[str] = mapped_column(String(30))
    budget_items: Mapped[int] = mapped_column(Integer)
    params: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    routed: Mapped[int] = mapped_column(Integer, default=0)
    gold: Mapped[int] = mapped_column(Integer, default=0)
    auto_accepted: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)


class Task(Base):
    """One item queued for experts: ``answers_wanted`` answers, each from a different person.

    Who holds or answered it is in ``assignments``; ``status`` is the task-level summary that routing, the
    dashboard and exports read (queued | leased | answered | flagged), kept in step with the assignments by
    :func:`terakoya.workqueue.assignments.settle`. ``leased_to`` / ``lease_expires_at`` are part of that summary: the
    lease that frees a slot first, while every slot is taken (kept for compatibility; None otherwise).
    """

    __tablename__ = "tasks"
    __table_args__ = (
        Index("ix_tasks_project_status", "project_id", "status"),
        UniqueConstraint("item_id", "route_run_id", name="uq_tasks_item_run"),
    )
    id: Mapped[int] = mapped_column(primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    item_id: Mapped[int] = mapped_column(ForeignKey("items.id", ondelete="CASCADE"), index=True)
    route_run_id: Mapped[int | None] = mapped_column(ForeignKey("route_runs.id", ondelete="SET NULL"), nullable=True)
    kind: Mapped[str] = mapped_column(String(20), default="label")  # label | verify
    reason: Mapped[str] = mapped_column(String(20), default="routed")  # routed | gold | random
    score: Mapped[float] = mapped_column(Float, default=0.0)
    components: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    priority: Mapped[int] = mapped_column(Integer, default=0)  # lower first
    status: Mapped[str] = mapped_column(String(20), default="queued")  # queued | leased | answered | flagged
    leased_to: Mapped[int | None] = mapped_column(ForeignKey("people.id", ondelete="SET NULL"), nullable=True)
    lease_expires_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)
    #: k: answers the task takes, each from a different person
    answers_wanted: Mapped[int] = mapped_column(Integer, default=1, server_default="1")
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    item: Mapped[Item] = relationship()


class Assignment(Base):
    """One person's part in one task: leased, answered, flagged, skipped or expired (never two per person)."""

    __tablename__ = "assignments"
    __table_args__ = (
        UniqueConstraint("task_id", "person_id", name="uq_assignments_task_person"),
        Index("ix_assignments_person_status", "person_id", "status"),
        Index("ix_assignments_answer", "answer_id"),
    )
    id: Mapped[int] = mapped_column(primary_key=True)
    task_id: Mapped[int] = mapped_column(ForeignKey("tasks.id", ondelete="CASCADE"))
    person_id: Mapped[int] = mapped_column(ForeignKey("people.id", ondelete="CASCADE"))
    status: Mapped[str] = mapped_column(String(20), default="leased")  # leased | answered | flagged | skipped | expired
    lease_expires_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)
    answer_id: Mapped[int | None] = mapped_column(ForeignKey("answers.id", ondelete="SET NULL"), nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)


class AutoAccept(Base):
    """A pool item whose teacher label was taken without an expert (teacher confident)."""

    __tablename__ = "auto_accepts"
    __table_args__ = (UniqueConstraint("item_id", name="uq_auto_accepts_item"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    item_id: Mapped[int] = mapped_column(ForeignKey("items.id", ondelete="CASCADE"))
    suggestion_id: Mapped[int] = mapped_column(ForeignKey("suggestions.id", ondelete="CASCADE"))
    route_run_id: Mapped[int | None] = mapped_column(ForeignKey("route_runs.id", ondelete="SET NULL"), nullable=True)
    label: Mapped[str] = mapped_column(String(200))
    confidence: Mapped[float] = mapped_column(Float)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)


class Answer(Base):
    """What a person said about an item."""

    __tablename__ = "answers"
    __table_args__ = (
        Index("ix_answers_item", "item_id"),
        UniqueConstraint("idempotency_key", name="uq_answers_idempotency"),
    )
    id: Mapped[int] = mapped_column(primary_key=True)
    item_id: Mapped[int] = mapped_column(ForeignKey("items.id", ondelete="CASCADE"))
    person_id: Mapped[int] = mapped_column(ForeignKey("people.id", ondelete="RESTRICT"), index=True)
    task_id: Mapped[int | None] = mapped_column(ForeignKey("tasks.id", ondelete="SET NULL"), nullable=True)
    kind: Mapped[str] = mapped_column(String(20), default="label")  # label | verify | flag | ...
    label: Mapped[str | None] = mapped_column(String(200), nullable=True)
    value: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)  # room for other task kinds
    rationale: Mapped[str | None] = mapped_column(Text, nullable=True)
    active_seconds: Mapped[float | None] = mapped_column(Float, nullable=True)
    simulated: Mapped[bool] = mapped_column(Boolean, default=False)
    source: Mapped[str] = mapped_column(String(30), default="file")  # file | web | api | simulate
    guideline_version: Mapped[str | None] = mapped_column(String(64), nullable=True)
    idempotency_key: Mapped[str | None] = mapped_column(String(100), nullable=True)
    superseded: Mapped[bool] = mapped_column(Boolean, default=False)  # undone by its author
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    item: Mapped[Item] = relationship()
    person: Mapped[Person] = relationship()


class GlossaryTerm(Base):
    """A glossary entry taught by an expert (proposed), approved by the owner."""

    __tablename__ = "glossary_terms"
    id: Mapped[int] = mapped_column(primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"), index=True)
    term: Mapped[str] = mapped_column(String(200))
    definition: Mapped[str] = mapped_column(Text)
    example: Mapped[str | None] = mapped_column(Text, nullable=True)
    status: Mapped[str] = mapped_column(String(20), default="proposed")  # proposed | approved | rejected
    proposed_by: Mapped[int | None] = mapped_column(ForeignKey("people.id", ondelete="SET NULL"), nullable=True)
    decided_by: Mapped[int | None] = mapped_column(ForeignKey("people.id", ondelete="SET NULL"), nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)


class StudentRun(Base):
    """A trained student: where it is saved and how it did."""

    __tablename__ = "student_runs"
    id: Mapped[int] = mapped_column(primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"), index=True)
    run_id: Mapped[str] = mapped_column(String(100), unique=True)
    kind: Mapped[str] = mapped_column(String(50))
    path: Mapped[str] = mapped_column(Text)
    metrics: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)


class TrainingLabel(Base):
    """One training target of a student run, and where it came from.

    ``source``: ``expert`` (the aggregate of the live expert answers ``answer_ids``, by ``aggregator``),
    ``teacher`` (the teacher's current suggestion ``suggestion_id``), ``auto_accept`` (a teacher label
    taken without an expert at routing time), ``review`` (a reviewer's standing decision, which wins over the
    answers' aggregate; ``answer_ids`` starts with the decision) or ``self_training`` (the student's own
    confident prediction).
    """

    __tablename__ = "training_labels"
    __table_args__ = (
        Index("ix_training_labels_run", "student_run_id"),
        Index("ix_training_labels_item", "item_id"),
    )
    id: Mapped[int] = mapped_column(primary_key=True)
    student_run_id: Mapped[int] = mapped_column(ForeignKey("student_runs.id", ondelete="CASCADE"))
    item_id: Mapped[int] = mapped_column(ForeignKey("items.id", ondelete="CASCADE"))
    label: Mapped[str] = mapped_column(String(200))
    target: Mapped[dict[str, float]] = mapped_column(JSON)
    source: Mapped[str] = mapped_column(String(30))
    weight: Mapped[float] = mapped_column(Float)
    answer_ids: Mapped[list[int]] = mapped_column(JSON, default=list)
    suggestion_id: Mapped[int | None] = mapped_column(ForeignKey("suggestions.id", ondelete="SET NULL"), nullable=True)
    aggregator: Mapped[str | None] = mapped_column(String(50), nullable=True)


class Pause(Base):
    """A trainer paused on a project because their answers on check (gold) items fell below the bar; the owner
    may lift it (``lifted_at``, ``lifted_by``). Only gold answers after the last lift count towards a new pause."""

    __tablename__ = "pauses"
    __table_args__ = (Index("ix_pauses_project_person", "project_id", "person_id"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    person_id: Mapped[int] = mapped_column(ForeignKey("people.id", ondelete="CASCADE"))
    reason: Mapped[str] = mapped_column(Text)
    gold_answers: Mapped[int] = mapped_column(Integer)
    gold_correct: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    lifted_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)
    lifted_by: Mapped[int | None] = mapped_column(ForeignKey("people.id", ondelete="SET NULL"), nullable=True)


class Job(Base):
    """A long-running job (teach, route, train, evaluate) with progress, for the web app."""

    __tablename__ = "jobs"
    __table_args__ = (Index("ix_jobs_status", "status", "id"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"), index=True)
    kind: Mapped[str] = mapped_column(String(30))
    status: Mapped[str] = mapped_column(String(20), default="queued")  # queued | running | done | failed
    done: Mapped[int] = mapped_column(Integer, default=0)
    total: Mapped[int] = mapped_column(Integer, default=0)
    message: Mapped[str] = mapped_column(Text, default="")
    result: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)
    #: what the owner chose (e.g. a route budget), so that any process can run the job from the row alone
    args: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    #: the process running it, and when it last said it was alive (a stale heartbeat means it died)
    claimed_by: Mapped[str | None] = mapped_column(String(200), nullable=True)
    heartbeat_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)
