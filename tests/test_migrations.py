"""Migrations and models agree (like `alembic check`) and downgrade, on the engine under test."""

from __future__ import annotations

from typing import Any

from sqlalchemy import inspect

from tenderpool import migrate
from tests.conftest import TempDatabase


def test_models_and_migrations_agree(test_db: TempDatabase) -> None:
    assert migrate.schema_differences(test_db.engine) == []
    assert migrate.current_revision(test_db.engine) == migrate.head_revision(test_db.engine)


def test_upgrade_downgrade_round_trip(temp_db_factory: Any) -> None:
    db: TempDatabase = temp_db_factory("roundtrip")
    migrate.upgrade(db.engine)
    assert "users" in inspect(db.engine).get_table_names()
    migrate.downgrade(db.engine, "base")
    assert set(inspect(db.engine).get_table_names()) <= {"alembic_version"}
    migrate.upgrade(db.engine)
    assert migrate.schema_differences(db.engine) == []


def test_sqlite_pragmas(test_db: TempDatabase) -> None:
    if test_db.engine.dialect.name != "sqlite":
        return
    with test_db.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
