"""Exactly once, the hard way: `tenderpool digests send` runs in a subprocess against a committed
database and a real SMTP server, which kills it (SIGKILL) while it sends the second digest. The
next runs must deliver every digest, none twice. Also: `--dry-run` prints and records nothing."""

from __future__ import annotations

import datetime as dt
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from tenderpool import migrate
from tenderpool.config import load_settings
from tenderpool.digests.models import DigestAnnouncement, DigestRun
from tests import factories
from tests.conftest import TempDatabase
from tests.digests.conftest import NOW, SmtpServer

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]
EMAILS = [f"gerant{i}@kill-test.example" for i in (1, 2, 3)]


@pytest.fixture(scope="module")
def committed(temp_db_factory: Any, base_overrides: dict[str, Any]) -> TempDatabase:
    """A database of its own, committed (a subprocess cannot see a test's rolled-back transaction):
    three firms of the 77, each with an owner, and one new notice matching them all."""
    db: TempDatabase = temp_db_factory("digests_exactly_once")
    migrate.upgrade(db.engine)
    settings = load_settings(environ={}, overrides=base_overrides)
    with Session(db.engine) as session:
        for email in EMAILS:
            firm, _owner = factories.make_firm(session, settings, owner_email=email, postcode="77100")
            factories.set_profile(session, firm, cpv=["45000000"], turnover=500_000)
        factories.make_plain_notice(
            session, title="Rénovation thermique de la médiathèque", cpv=["45321000"], departments=["77"],
            created_at=NOW - dt.timedelta(hours=2), deadline_at=NOW + dt.timedelta(days=30),
        )  # fmt: skip
        session.commit()
    return db


def _command(
    db: TempDatabase, port: int, instance: Path, now: dt.datetime, *extra: str
) -> tuple[list[str], dict[str, str]]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TENDERPOOL_")}
    env.update(
        TENDERPOOL_ENV="test",
        TENDERPOOL_DATABASE_URL=db.url,
        TENDERPOOL_SECRET_KEY="test-secret-key",
        TENDERPOOL_APP_BASE_URL="http://tenderpool.test",
        TENDERPOOL_APP_INSTANCE_PATH=str(instance),
        TENDERPOOL_MAIL_HOST="127.0.0.1",
        TENDERPOOL_MAIL_PORT=str(port),
        TENDERPOOL_MAIL_SECURITY="none",
        TENDERPOOL_MAIL_TIMEOUT_SECONDS="5",
    )
    args = [sys.executable, "-m", "tenderpool.cli", "digests", "send", "--now", now.isoformat(), *extra]
    return args, env


def _run(
    db: TempDatabase, port: int, instance: Path, now: dt.datetime, *extra: str
) -> subprocess.CompletedProcess[str]:
    args, env = _command(db, port, instance, now, *extra)
    return subprocess.run(args, env=env, cwd=ROOT, capture_output=True, text=True, timeout=120, check=False)


def _runs(db: TempDatabase) -> dict[str, DigestRun]:
    from tenderpool.accounts.models import User

    with Session(db.engine) as session:
        rows = session.execute(select(User.email, DigestRun).join(DigestRun, DigestRun.user_id == User.id))
        out = {row[0]: row[1] for row in rows}
        session.expunge_all()
        return out


def test_killed_mid_run_then_resumed(committed: TempDatabase, smtp: SmtpServer, tmp_path: Path) -> None:
    # A dry run prints who would get what, and records nothing.
    dry = _run(committed, smtp.port, tmp_path, NOW, "--dry-run")
    assert dry.returncode == 0, dry.stderr
    for email in EMAILS:
        assert email in dry.stdout
    assert dry.stdout.count("Rénovation thermique de la médiathèque") == 3
    assert _runs(committed) == {} and smtp.messages == []

    # The real run, killed by the server while it receives the second digest (before answering it).
    args, env = _command(committed, smtp.port, tmp_path, NOW)
    process = subprocess.Popen(
        args, env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    seen: list[str] = []

    def kill_on_second(message: Any) -> str:
        seen.append(str(message["To"]))
        if len(seen) == 2:
            process.send_signal(signal.SIGKILL)
            process.wait(timeout=30)
            return "drop"
        return "ok"

    smtp.mode = kill_on_second
    try:
        out, err = process.communicate(timeout=120)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == -signal.SIGKILL, (out, err)
    assert [str(m["To"]) for m in smtp.messages] == [EMAILS[0]]
    runs = _runs(committed)
    assert runs[EMAILS[0]].status == "sent"
    assert runs[EMAILS[1]].status == "sending"  # interrupted: recorded before sending, never confirmed
    assert EMAILS[2] not in runs

    # A run within the lease sends what was never started, and leaves the interrupted one alone.
    smtp.mode = "ok"
    soon = _run(committed, smtp.port, tmp_path, NOW + dt.timedelta(minutes=1))
    assert soon.returncode == 0, soon.stderr
    assert [str(m["To"]) for m in smtp.messages] == [EMAILS[0], EMAILS[2]]
    assert _runs(committed)[EMAILS[1]].status == "sending"

    # Once the lease has passed, the interrupted digest goes, with the Message-ID it was given.
    later = _run(committed, smtp.port, tmp_path, NOW + dt.timedelta(minutes=10))
    assert later.returncode == 0, later.stderr
    again = _run(committed, smtp.port, tmp_path, NOW + dt.timedelta(minutes=30))
    assert again.returncode == 0, again.stderr
    received = sorted(str(m["To"]) for m in smtp.messages)
    assert received == sorted(EMAILS)  # each exactly once
    runs = _runs(committed)
    by_address = {str(m["To"]): m for m in smtp.messages}
    for email in EMAILS:
        assert runs[email].status == "sent"
        assert by_address[email]["Message-ID"] == runs[email].message_id
    assert runs[EMAILS[1]].attempts == 2
    with Session(committed.engine) as session:
        assert len(session.scalars(select(DigestAnnouncement)).all()) == 3
