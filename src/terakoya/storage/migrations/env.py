"""Alembic environment: run with the connection handed over by terakoya.storage.db."""

from __future__ import annotations

from alembic import context

import terakoya.storage.web_models  # noqa: F401  (registers the web tables on Base.metadata)
from terakoya.storage.models import Base

config = context.config
connection = config.attributes.get("connection")
if connection is None:  # pragma: no cover - only when alembic is run by hand
    from sqlalchemy import create_engine

    engine = create_engine(config.get_main_option("sqlalchemy.url") or "sqlite:///terakoya.db")
    connection = engine.connect()

context.configure(
    connection=connection,
    target_metadata=Base.metadata,
    render_as_batch=True,
    compare_type=True,
)
with context.begin_transaction():
    context.run_migrations()
