"""Tables of the web workbench: who belongs to which project, invites, API tokens, skips, pay.

- ``memberships``: a person's role in one project (owner | reviewer | trainer), with the tags and languages
  the invite asked for (used to match projects to a trainer's profile) and the time of their last action
  (for active-time accounting).
- ``invites``: an invite link; only a hash of its token is stored.
- ``api_tokens``: Bearer tokens for scripts; only a hash is stored.
- ``task_skips``: items a trainer skipped, never shown to them again.
- ``pay_rates``: pay set by the owner in the web app; the newest row wins over ``settings.pay``.
- ``web_secrets``: the key that signs a project's session cookies, generated once.

One index is added to an existing table: ``ix_tasks_queue_order`` on ``tasks (project_id, status, priority, id)``,
so the next queued task is read in queue order from the index instead of sorting every queued task.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Boolean, DateTime, Float, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from terakoya.storage.models import Base, Task, utcnow

__all__ = ["ApiToken", "Invite", "Membership", "PayRate", "TaskSkip", "WebSecret", "WebSession"]


class Membership(Base):
    __tablename__ = "memberships"
    __table_args__ = (UniqueConstraint("project_id", "person_id", name="uq_memberships_project_person"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"), index=True)
    person_id: Mapped[int] = mapped_column(ForeignKey("people.id", ondelete="CASCADE"), index=True)
    role: Mapped[str] = mapped_column(String(20), default="trainer")  # owner | reviewer | trainer
    tags: Mapped[list[Any]] = mapped_column(JSON, default=list)
    languages: Mapped[list[Any]] = mapped_column(JSON, default=list)
    last_action_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)


class Invite(Base):
    __tablename__ = "invites"
    id: Mapped[int] = mapped_column(primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"), index=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    role: Mapped[str] = mapped_column(String(20), default="trainer")
    email: Mapped[str | None] = mapped_column(String(300), nullable=True)
    note: Mapped[str] = mapped_column(String(300), default="")
    tags: Mapped[list[Any]] = mapped_column(JSON, default=list)
    languages: Mapped[list[Any]] = mapped_column(JSON, default=list)
    created_by: Mapped[int | None] = mapped_column(ForeignKey("people.id", ondelete="SET NULL"), nullable=True)
    expires_at: Mapped[datetime] = mapped_column(DateTime)
    used_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)
    used_by: Mapped[int | None] = mapped_column(ForeignKey("people.id", ondelete="SET NULL"), nullable=True)
    revoked: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)


class ApiToken(Base):
    __tablename__ = "api_tokens"
    id: Mapped[int] = mapped_column(primary_key=True)
    person_id: Mapped[int] = mapped_column(ForeignKey("people.id", ondelete="CASCADE"), index=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    name: Mapped[str] = mapped_column(String(100), default="")
    revoked: Mapped[bool] = mapped_column(Boolean, default=False)
    last_used_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)


class WebSession(Base):
    """A signed-in browser: the session cookie names it (only its SHA-256 is stored); signing out revokes it."""

    __tablename__ = "web_sessions"
    id: Mapped[int] = mapped_column(primary_key=True)
    person_id: Mapped[int] = mapped_column(ForeignKey("people.id", ondelete="CASCADE"), index=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)


class TaskSkip(Base):
    __tablename__ = "task_skips"
    __table_args__ = (
        UniqueConstraint("item_id", "person_id", name="uq_task_skips_item_person"),
        Index("ix_task_skips_person", "person_id"),
    )
    id: Mapped[int] = mapped_column(primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    item_id: Mapped[int] = mapped_column(ForeignKey("items.id", ondelete="CASCADE"))
    person_id: Mapped[int] = mapped_column(ForeignKey("people.id", ondelete="CASCADE"))
    task_id: Mapped[int | None] = mapped_column(ForeignKey("tasks.id", ondelete="SET NULL"), nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)


class PayRate(Base):
    __tablename__ = "pay_rates"
    id: Mapped[int] = mapped_column(primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"), index=True)
    mode: Mapped[str] = mapped_column(String(20))  # per_item | per_hour
    per_item: Mapped[float] = mapped_column(Float)
    per_hour: Mapped[float] = mapped_column(Float)
    currency: Mapped[str] = mapped_column(String(10))
    set_by: Mapped[int | None] = mapped_column(ForeignKey("people.id", ondelete="SET NULL"), nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)


class GuidelineRevision(Base):
    """Guidelines and label descriptions as the owner edited them in the web app (the newest wins over
    terakoya.toml); each revision is kept, with the version stamp answers given under it carry."""

    __tablename__ = "guideline_revisions"
    id: Mapped[int] = mapped_column(primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"), index=True)
    guidelines: Mapped[str] = mapped_column(Text)
    label_descriptions: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    version: Mapped[str] = mapped_column(String(64))
    set_by: Mapped[int | None] = mapped_column(ForeignKey("people.id", ondelete="SET NULL"), nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)


class SignInLimit(Base):
    """Sign-in attempts counted per (project, account, address) in a fixed window, shared by every server
    process (the key is a hash: no login or address is stored)."""

    __tablename__ = "sign_in_limits"
    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    count: Mapped[int] = mapped_column(Integer, default=0)
    window_start: Mapped[datetime] = mapped_column(DateTime, index=True)


class WebSecret(Base):
    __tablename__ = "web_secrets"
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"), primary_key=True)
    secret: Mapped[str] = mapped_column(String(128))
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)


# the queue's order, read straight from an index (declared here, next to the queue's other tables)
Index("ix_tasks_queue_order", Task.project_id, Task.status, Task.priority, Task.id)
