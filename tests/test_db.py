"""SQLite transactions: writers take the lock at BEGIN and queue; a session that only reads (a GET
request) takes none, so pages keep being served while a scrape or another request writes.

These run on a SQLite file whatever TENDERPOOL_TEST_DB says: the embedded engine's locking is
what they are about. The lock is held or probed through the sqlite3 module with no busy timeout,
so that a wrong lock fails at once instead of after TenderPool's 10 s busy_timeout.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest
from flask import Flask
from sqlalchemy import text

from tenderpool.db import Database
from tenderpool.web import _reads_only


@pytest.fixture
def lite(tmp_path: Path) -> Iterator[tuple[Database, Path]]:
    path = tmp_path / "locks.db"
    db = Database(f"sqlite:///{path}")
    with db.engine.begin() as conn:
        conn.execute(text("CREATE TABLE t (x INTEGER)"))
        conn.execute(text("INSERT INTO t VALUES (1)"))
    yield db, path
    db.engine.dispose()


def _other(path: Path) -> sqlite3.Connection:
    return sqlite3.connect(path, timeout=0, isolation_level=None)


def test_a_writing_session_holds_the_write_lock_from_its_first_statement(lite: tuple[Database, Path]) -> None:
    db, path = lite
    with db.session() as session:
        session.execute(text("SELECT count(*) FROM t"))  # a read, but BEGIN IMMEDIATE came first
        other = _other(path)
        with pytest.raises(sqlite3.OperationalError, match="locked"):
            other.execute("BEGIN IMMEDIATE")
        other.close()


def test_a_reading_session_takes_no_lock_and_reads_while_another_writes(lite: tuple[Database, Path]) -> None:
    db, path = lite
    with db.session(reads=True) as session:
        assert session.execute(text("SELECT count(*) FROM t")).scalar() == 1
        other = _other(path)
        other.execute("BEGIN IMMEDIATE")  # the reader's transaction is open: no lock in the way
        other.execute("INSERT INTO t VALUES (2)")
        # Its snapshot, while the writer still holds the lock: no wait, no "database is locked".
        assert session.execute(text("SELECT count(*) FROM t")).scalar() == 1
        other.execute("COMMIT")
        other.close()
    with db.session(reads=True) as session:
        assert session.execute(text("SELECT count(*) FROM t")).scalar() == 2


def test_a_reading_session_can_still_write_when_nobody_else_does(lite: tuple[Database, Path]) -> None:
    db, _ = lite
    with db.session(reads=True) as session:
        session.execute(text("INSERT INTO t VALUES (3)"))
        session.commit()
    with db.session() as session:
        assert session.execute(text("SELECT count(*) FROM t")).scalar() == 2


@pytest.mark.parametrize(
    ("method", "path", "reads"),
    [
        ("GET", "/avis", True),
        ("HEAD", "/avis", True),
        ("POST", "/avis/1/suivre", False),
        ("GET", "/api/v1/notices", False),  # counted for the rate limit: it writes
        ("POST", "/connexion", False),
    ],
)
def test_which_requests_only_read(app: Flask, method: str, path: str, reads: bool) -> None:
    with app.test_request_context(path, method=method):
        assert _reads_only() is reads
