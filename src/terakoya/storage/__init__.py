"""Storage: SQLAlchemy models and the database handle (migrations applied on open)."""

from terakoya.storage.db import Database, open_database

__all__ = ["Database", "open_database"]
