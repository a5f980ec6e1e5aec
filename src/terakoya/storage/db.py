"""The database handle: engine, sessions, migrations applied on open, and SQLite's one writer.

SQLite by default (WAL mode, foreign keys on, a busy timeout so several processes can share the
file); any SQLAlchemy URL works, PostgreSQL included (``postgresql+psycopg://...``). On every backend a text
with a NUL character is refused with a :class:`~terakoya.errors.DataError` before it reaches the database.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event, select
from sqlalchemy.exc import ArgumentError, DatabaseError, NoSuchModuleError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from terakoya.errors import ConfigError, DataError, MissingDependency
from terakoya.storage.models import Project

__all__ = ["Database", "open_database"]

MIGRATIONS = Path(__file__).parent / "migrations"


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    # FULL: a committed answer survives a crash of the process *and* of the machine
    cursor.execute("PRAGMA synchronous=FULL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


_NUL = "\x00"
_COMPARED = re.compile(r"_\d+$")


def _refuse_nul(_conn: Any, _cursor: Any, _statement: str, parameters: Any, context: Any, _executemany: bool) -> None:
    """No text with a NUL character (``\\x00``) goes to the database, on any backend.

    PostgreSQL refuses such text, in a value stored or compared, and that was a 500 from the web app (a
    glossary term, a token name, a pay currency, a sign-in name with ``\\x00``); SQLite stored it. Both now
    refuse it the same way, naming the value, so SQLite tests catch what PostgreSQL would refuse. The
    importers remove NUL from files first (with a note); a value nested in a JSON column is sent escaped.
    Only the values sent are read (one batch of a bulk insert at a time), the names only for the message.
    """
    rows = parameters if isinstance(parameters, list) else [parameters]
    for row in rows:
        for value in row.values() if isinstance(row, dict) else row or ():
            if isinstance(value, str) and _NUL in value:
                raise DataError(
                    f"{_text_named(value, context)} holds a NUL character (\\x00), which the database cannot "
                    "store; remove the character and try again"
                )


def _text_named(value: str, context: Any) -> str:
    """How the message names ``value``: "the text for 'currency'" when it is stored in a column of that name, else
    "a text" (a value compared in a look-up is bound as "email_1", "lower_1"...: no name a person would know)."""
    for row in getattr(context, "compiled_parameters", None) or ():
        for name, bound in row.items():
            if bound == value and not _COMPARED.search(str(name)):
                return f"the text for {name!r}"
    return "a text"


def _make_engine(url: str) -> Engine:
    try:
        if url.startswith("sqlite"):
            engine = create_engine(url, connect_args={"timeout": 30, "check_same_thread": False})
            event.listen(engine, "connect", _sqlite_pragmas)
            # let SQLite's own BEGIN IMMEDIATE-free locking work with pysqlite's transaction handling
        else:
            engine = create_engine(url, pool_pre_ping=True)
        event.listen(engine, "before_cursor_execute", _refuse_nul)
        return engine
    except NoSuchModuleError as exc:
        raise ConfigError(
            f"database URL {url!r} names an unknown dialect; use sqlite:///path or postgresql+psycopg://..."
        ) from exc
    except ArgumentError as exc:
        raise ConfigError(
            f"database URL {url!r} is not valid ({exc}); use sqlite:///path or postgresql+psycopg://..."
        ) from exc
    except ModuleNotFoundError as exc:
        raise MissingDependency.for_extra(exc.name or "psycopg", "postgres", f"database URL {url!r}") from exc


def _upgrade(engine: Engine) -> None:
    from alembic import command
    from alembic.config import Config
    from alembic.runtime.migration import MigrationContext
    from alembic.script import ScriptDirectory

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    script = ScriptDirectory.from_config(cfg)
    with engine.begin() as conn:
        current = MigrationContext.configure(conn).get_current_revision()
        if current == script.get_current_head():
            return
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "head")


class Database:
    """An open database: ``with db.session() as s: ...`` commits on success, rolls back on error.

    Code that writes under contention (the expert queue) wraps its session in ``with db.writing():``.
    """

    def __init__(self, url: str) -> None:
        self.url = url
        self.engine = _make_engine(url)
        try:
            _upgrade(self.engine)
        except OperationalError as exc:
            raise ConfigError(
                f"cannot open the database {self.safe_url}: {exc.orig}; check --db / TERAKOYA_DB "
                "and that the server is running"
            ) from exc
        except DatabaseError as exc:  # e.g. SQLite's "file is not a database"
            raise ConfigError(
                f"cannot open the database {self.safe_url}: {exc.orig}; point --db / TERAKOYA_DB (or db in "
                "terakoya.toml) at a Terakoya database, or at a file that does not exist yet"
            ) from exc
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)
        # SQLite has one writer per file; PostgreSQL orders concurrent writes itself
        self._write_lock = threading.Lock() if self.dialect == "sqlite" else None

    def file(self) -> Path | None:
        """The SQLite database file, or None for a server database (or SQLite in memory)."""
        database = self.engine.url.database if self.dialect == "sqlite" else None
        return Path(database) if database and database != ":memory:" else None

    @property
    def safe_url(self) -> str:
        return self.engine.url.render_as_string(hide_password=True)

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    @contextmanager
    def session(self) -> Iterator[Session]:
        session = self._sessions()
        try:
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise
        finally:
            session.close()

    @contextmanager
    def writing(self) -> Iterator[None]:
        """On SQLite, one writing thread at a time per process (per open database); a no-op elsewhere.

        Threads then wait their turn on a lock and go at once, instead of in SQLite's busy handler, which sleeps
        up to 100 ms between tries (that made the slowest requests slow). Other processes still queue in SQLite.
        The lock is not re-entrant: take it once, around the session that reads and writes.
        """
        if self._write_lock is None:
            yield
            return
        with self._write_lock:
            yield

    def project_id(self, name: str) -> int:
        """The id of the project called ``name``, created on first use."""
        with self.session() as s:
            found = s.scalar(select(Project.id).where(Project.name == name))
            if found is not None:
                return found
            project = Project(name=name)
            s.add(project)
            s.flush()
            return project.id

    def close(self) -> None:
        self.engine.dispose()


def open_database(url: str) -> Database:
    if url.startswith("sqlite:///"):
        path = Path(url.removeprefix("sqlite:///"))
        if str(path) not in {"", ":memory:"} and not path.parent.exists():
            raise ConfigError(f"folder {path.parent} for the database does not exist; create it or fix --db")
    return Database(url)
