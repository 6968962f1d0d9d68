"""Engine, sessions and the declarative base.

Web requests get one session each (opened lazily, closed at teardown); the CLI
and scheduled jobs use :func:`session_scope`. Services only ``flush``; the
boundary (a view after a successful POST, ``session_scope`` on exit) commits.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import DateTime, Engine, MetaData, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.orm import DeclarativeBase, Session, sessionmaker
from sqlalchemy.types import TypeDecorator

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class UTCDateTime(TypeDecorator[dt.datetime]):
    """An aware datetime stored as UTC.

    SQLite keeps no offset, so values are stored as naive UTC there and come back
    aware; PostgreSQL uses ``timestamptz``. Naive values are refused on the way in,
    because a naive time is a bug waiting to show a deadline one hour off.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: dt.datetime | None, dialect: Any) -> dt.datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value!r}: pass an aware datetime")
        value = value.astimezone(dt.UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: dt.datetime | None, dialect: Any) -> dt.datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=dt.UTC)
        return value.astimezone(dt.UTC)


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    # pysqlite's own transaction handling breaks SAVEPOINT and transactional DDL;
    # take it over (SQLAlchemy docs, "Serializable isolation / Savepoints").
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.close()


# Execution option of the engine behind Database.session(reads=True): see _sqlite_begin.
_READS = "tenderpool_reads"


def _sqlite_begin(conn: Any) -> None:
    # IMMEDIATE takes the write lock at the start, so two writers queue on busy_timeout instead
    # of failing with "database is locked" half-way. A session that only reads (a GET page)
    # takes no lock: in WAL mode it reads its snapshot while a writer works, and readers no
    # longer queue behind each other nor behind a scrape.
    conn.exec_driver_sql("BEGIN" if conn.get_execution_options().get(_READS) else "BEGIN IMMEDIATE")


def make_engine(url: str, **kwargs: Any) -> Engine:
    """Create an engine with the settings TenderPool relies on for each backend."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, **kwargs)
        event.listen(engine, "connect", _sqlite_pragmas)
        event.listen(engine, "begin", _sqlite_begin)
        return engine
    kwargs.setdefault("pool_pre_ping", True)
    return create_engine(url, **kwargs)


class Database:
    """The engine and session factory of one app (or one CLI invocation)."""

    def __init__(self, url: str, *, engine: Engine | None = None) -> None:
        self.url = url
        self.engine = engine if engine is not None else make_engine(url)
        self.session_factory = sessionmaker(bind=self.engine, expire_on_commit=False)
        self._reader: Engine = self.engine.execution_options(**{_READS: True})

    def session(self, *, reads: bool = False) -> Session:
        """A new session. ``reads``: it is not meant to write (a GET request), so on SQLite its
        transactions take no lock; a write would still work, but could fail with "database is
        locked" if another connection wrote meanwhile."""
        if reads and self.is_sqlite and self.session_factory.kw.get("bind") is self.engine:
            return self.session_factory(bind=self._reader)
        return self.session_factory()

    @contextmanager
    def session_scope(self) -> Iterator[Session]:
        """A session that commits on success and rolls back on error (CLI and jobs)."""
        session = self.session_factory()
        try:
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise
        finally:
            session.close()

    @property
    def is_sqlite(self) -> bool:
        return self.engine.dialect.name == "sqlite"
