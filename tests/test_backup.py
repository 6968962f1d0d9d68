"""`tenderpool backup` and `tenderpool restore`: a round trip of the database and the uploads."""

from __future__ import annotations

import secrets
import tarfile
from pathlib import Path
from typing import Any

from click.testing import CliRunner
from sqlalchemy import func, select, text
from sqlalchemy.orm import Session

from tenderpool import migrate
from tenderpool.accounts.models import User
from tenderpool.cli import main
from tests.conftest import BACKEND, TempDatabase


def test_backup_then_restore_round_trip(temp_db_factory: Any, tmp_path: Path) -> None:
    db: TempDatabase = temp_db_factory(f"backup_{secrets.token_hex(3)}")
    uploads = tmp_path / "uploads"
    env = {
        "TENDERPOOL_DATABASE_URL": db.url,
        "TENDERPOOL_APP_INSTANCE_PATH": str(tmp_path / "instance"),
        "TENDERPOOL_UPLOADS_PATH": str(uploads),
        "TENDERPOOL_ENV": "development",
        "TENDERPOOL_CONFIG": "",
    }
    runner = CliRunner()

    def invoke(*args: str) -> Any:
        result = runner.invoke(main, list(args), env=env, catch_exceptions=False)
        assert result.exit_code == 0, result.output
        return result

    migrate.upgrade(db.engine)
    invoke("demo", "load")
    uploads.mkdir()
    (uploads / ("a" * 32)).write_bytes(b"%PDF-1.4 kbis")
    (uploads / ("b" * 32)).write_bytes(b"\x89PNG attestation")
    with Session(db.engine) as session:
        users = session.scalar(select(func.count()).select_from(User))
    archive = tmp_path / "out" / "tenderpool.tar.gz"
    result = invoke("backup", str(archive))
    assert "2 fichier(s)" in result.output
    with tarfile.open(archive) as tar:
        names = set(tar.getnames())
    assert {"manifest.json", f"uploads/{'a' * 32}"} <= names
    assert ("database.sqlite3" if BACKEND == "sqlite" else "database.pgdump") in names

    # Damage everything, then restore.
    with db.engine.begin() as conn:
        conn.execute(text("DELETE FROM firm_memberships"))
        conn.execute(text("DELETE FROM users WHERE role = 'firm'"))
    (uploads / ("a" * 32)).unlink()
    (uploads / ("c" * 32)).write_bytes(b"added after the backup")
    refused = runner.invoke(main, ["restore", str(archive)], env=env, input="n\n")
    assert refused.exit_code == 1  # asked, answered no: nothing touched
    invoke("restore", "--yes", str(archive))

    with Session(db.engine) as session:
        assert session.scalar(select(func.count()).select_from(User)) == users
    assert sorted(p.name for p in uploads.iterdir()) == ["a" * 32, "b" * 32]
    assert (uploads / ("a" * 32)).read_bytes() == b"%PDF-1.4 kbis"
    assert migrate.current_revision(db.engine) == migrate.head_revision(db.engine)


def test_restore_refuses_what_is_not_a_backup(tmp_path: Path) -> None:
    bogus = tmp_path / "x.tar.gz"
    with tarfile.open(bogus, "w:gz") as tar:
        tar.add(__file__, arcname="evil.py")
    env = {"TENDERPOOL_DATABASE_URL": f"sqlite:///{tmp_path / 'x.db'}", "TENDERPOOL_CONFIG": ""}
    result = CliRunner().invoke(main, ["restore", "--yes", str(bogus)], env=env)
    assert result.exit_code == 1 and "is not a TenderPool backup" in result.output
