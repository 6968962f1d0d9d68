"""Fault tests: the database restarted under a running job, the mail server down for an hour, the
disk full in the middle of an upload. Marked ``faults``: tests/security/conftest.py moves them
to the very end of the run (a restart must never land in another test), and CI still runs them.

The PostgreSQL restarts (``pg_ctlcluster … restart``) hit the local cluster on 127.0.0.1:5432 in
the middle of a database transaction of the job, which is the case a connection pool's
pre-ping cannot hide: the job fails cleanly (recorded as failed, nothing half-committed), the
scheduler's retry runs it again, and in the end no notice is lost or doubled and no email is
sent twice. They run in the PostgreSQL pass only; the SMTP and disk tests run on both engines.
"""

from __future__ import annotations

import datetime as dt
import errno
import io
import secrets
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, BinaryIO

import pytest
from aiosmtpd.controller import Controller
from flask import Flask
from pytest_httpserver import HTTPServer
from sqlalchemy import create_engine, func, select, text
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session
from werkzeug.datastructures import FileStorage, MultiDict
from werkzeug.test import encode_multipart

from tenderpool import migrate
from tenderpool.consortia.models import SharedDocument, SharedDocumentVersion
from tenderpool.db import Database
from tenderpool.digests.models import DigestRun
from tenderpool.notices.models import Notice, Publication, ScrapeRun, SourceCursor
from tenderpool.ops.models import JobRun
from tenderpool.storage import LocalStorage
from tests import factories
from tests.conftest import (
    BACKEND,
    PG_ADMIN_URL,
    Seed,
    SeedConsortium,
    TempDatabase,
    csrf_token,
    login_as,
    text_of,
)
from tests.digests.conftest import NOW, SmtpServer, free_port, run_job
from tests.scrapers.support import FakeOds, boamp_records

pytestmark = pytest.mark.faults

_admin = make_url(PG_ADMIN_URL)
restarts_postgres = pytest.mark.skipif(
    BACKEND != "postgres" or _admin.host not in ("127.0.0.1", "localhost") or (_admin.port or 5432) != 5432,
    reason="restarts the local PostgreSQL cluster: PostgreSQL pass on 127.0.0.1:5432 only",
)


# --------------------------------------------------------------------------- the cluster


def _cluster() -> tuple[str, str]:
    listing = subprocess.run(["pg_lsclusters", "--no-header"], capture_output=True, text=True, check=True)
    for line in listing.stdout.splitlines():
        version, name, port = line.split()[:3]
        if port == "5432":
            return version, name
    raise AssertionError(f"no cluster on port 5432: {listing.stdout}")


def _answers() -> bool:
    engine = create_engine(PG_ADMIN_URL, pool_pre_ping=False)
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        return True
    except Exception:
        return False
    finally:
        engine.dispose()


def _wait_until_up(timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while not _answers():
        assert time.monotonic() < deadline, "PostgreSQL did not come back"
        time.sleep(0.2)


def restart_postgres() -> None:
    version, name = _cluster()
    subprocess.run(
        ["pg_ctlcluster", "--skip-systemctl-redirect", version, name, "restart"],
        check=True,
        timeout=180,
        capture_output=True,
    )
    _wait_until_up()


@pytest.fixture
def cluster_left_running() -> Iterator[None]:
    """Whatever happens in the test, the cluster is running after it."""
    yield
    if not _answers():
        version, name = _cluster()
        subprocess.run(["pg_ctlcluster", "--skip-systemctl-redirect", version, name, "start"], check=False)
        _wait_until_up()


def _committed(temp_db_factory: Any, name: str) -> tuple[TempDatabase, Database]:
    temp: TempDatabase = temp_db_factory(f"{name}_{secrets.token_hex(3)}")
    migrate.upgrade(temp.engine)
    return temp, Database(temp.url, engine=temp.engine)


def _app(base_overrides: dict[str, Any], tmp_path: Path, db: Database, **more: Any) -> Flask:
    from tenderpool.app import build_app

    overrides = {
        **base_overrides,
        "database_url": db.url,
        "app": {**base_overrides["app"], "instance_path": str(tmp_path / "instance")},
        **more,
    }
    return build_app(overrides, database=db)


def _scheduler(app: Flask, db: Database) -> Any:
    from tenderpool.scheduler import Scheduler

    return Scheduler(settings=app.extensions["tenderpool.settings"], db=db, app=app, instance="faults-test")


def _restart_on_call(target: Callable[..., Any], call: int, before: Callable[..., Any]) -> Callable[..., Any]:
    """``target``, except that its ``call``-th call first runs ``before(*args)``."""
    calls = []

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        if len(calls) == call:
            before(*args, **kwargs)
        return target(*args, **kwargs)

    return wrapper


def _job_runs(db: Database, job: str) -> list[tuple[int, str, str]]:
    with Session(db.engine) as session:
        rows = session.scalars(select(JobRun).where(JobRun.job == job).order_by(JobRun.id)).all()
        return [(r.attempt, r.status, r.summary or "") for r in rows]


# --------------------------------------------------------------------------- restart mid-scrape

T0 = dt.datetime(2026, 11, 28, 6, 0, tzinfo=dt.UTC)
RECORDS_PATH = "/api/explore/v2.1/catalog/datasets/boamp/records"


@restarts_postgres
def test_postgres_restarted_in_the_middle_of_a_scrape(
    temp_db_factory: Any,
    base_overrides: dict[str, Any],
    tmp_path: Path,
    httpserver: HTTPServer,
    monkeypatch: pytest.MonkeyPatch,
    cluster_left_running: None,
) -> None:
    import tenderpool.notices.scrape as scrape_module
    import tenderpool.scheduler as scheduler_module

    _temp, db = _committed(temp_db_factory, "faults_scrape")
    day1, day2 = T0.date() - dt.timedelta(days=2), T0.date() - dt.timedelta(days=1)
    fake = FakeOds(
        days={day1: [("FNS", 130)], day2: [("MAPA", 120)]}, templates=list(boamp_records().values())
    )
    httpserver.expect_request(RECORDS_PATH).respond_with_handler(fake.handler)
    scrapers = {
        "politeness_delay_seconds": 0,
        "max_tries": 2,
        "boamp": {"base_url": httpserver.url_for("/api/explore/v2.1")},
    }
    app = _app(base_overrides, tmp_path, db, scrapers=scrapers)
    monkeypatch.setattr(scheduler_module, "utcnow", lambda: T0)

    def half_then_restart(session: Session, records: list[Any], *, now: dt.datetime) -> None:
        # Half of the second page is written in the open transaction, then the server restarts.
        original(session, records[: len(records) // 2], now=now)
        session.flush()
        restart_postgres()

    original = scrape_module.ingest_records
    monkeypatch.setattr(scrape_module, "ingest_records", _restart_on_call(original, 2, half_then_restart))
    scheduler = _scheduler(app, db)

    assert scheduler.execute("scrape_boamp", trigger="manual", scheduled_for=T0) == "failed"
    with Session(db.engine) as session:
        (first,) = session.scalars(select(ScrapeRun)).all()
        assert first.status == "partial" and first.finished_at is not None  # not left "running"
        assert "OperationalError" in first.errors[0]
        assert first.fetched == 100  # the first page, committed; the second rolled back whole
        assert session.scalar(select(func.count()).select_from(Publication)) == 100
        assert session.get(SourceCursor, "boamp") is None  # the window is not done

    # The scheduler's retry (attempt 2) covers the same window again.
    assert scheduler.execute("scrape_boamp", trigger="retry", scheduled_for=T0, attempt=2) == "ok"
    assert [(a, s) for a, s, _ in _job_runs(db, "scrape_boamp")] == [(1, "failed"), (2, "ok")]
    assert "OperationalError" in _job_runs(db, "scrape_boamp")[0][2]
    with Session(db.engine) as session:
        refs = session.scalars(select(Publication.source_ref)).all()
        assert len(refs) == len(set(refs)) == 250  # none lost, none doubled
        notices = session.scalar(select(func.count()).select_from(Notice))
        cursor = session.get(SourceCursor, "boamp")
        assert cursor is not None and cursor.complete_until == T0.date()
    # And a third pass over the window changes nothing.
    assert (
        scheduler.execute("scrape_boamp", trigger="manual", scheduled_for=T0 + dt.timedelta(hours=2)) == "ok"
    )
    with Session(db.engine) as session:
        assert session.scalar(select(func.count()).select_from(Publication)) == 250
        assert session.scalar(select(func.count()).select_from(Notice)) == notices


# --------------------------------------------------------------------------- restart mid-digest

DIGEST_EMAILS = [f"gerant{i}@faults.example" for i in range(6)]


@pytest.fixture
def smtp() -> Iterator[SmtpServer]:
    server = SmtpServer(port=free_port())
    controller = Controller(server, hostname="127.0.0.1", port=server.port)
    controller.start()
    try:
        yield server
    finally:
        controller.stop()


def _mail(port: int) -> dict[str, Any]:
    return {"host": "127.0.0.1", "port": port, "security": "none", "timeout_seconds": 5}


def _digest_world(session: Session, settings: Any, emails: list[str]) -> None:
    for email in emails:
        firm, _owner = factories.make_firm(session, settings, owner_email=email, postcode="77100")
        factories.set_profile(session, firm, cpv=["45000000"], turnover=500_000)
    factories.make_plain_notice(
        session,
        title="Rénovation thermique de la médiathèque",
        cpv=["45321000"],
        departments=["77"],
        created_at=NOW - dt.timedelta(hours=2),
        deadline_at=NOW + dt.timedelta(days=30),
    )


@restarts_postgres
def test_postgres_restarted_in_the_middle_of_a_digest_run(
    temp_db_factory: Any,
    base_overrides: dict[str, Any],
    tmp_path: Path,
    smtp: SmtpServer,
    monkeypatch: pytest.MonkeyPatch,
    cluster_left_running: None,
) -> None:
    import tenderpool.digests.services as digest_module
    import tenderpool.scheduler as scheduler_module

    _temp, db = _committed(temp_db_factory, "faults_digest")
    # Batches of two users: the restart hits the second batch's open transaction.
    app = _app(base_overrides, tmp_path, db, mail=_mail(smtp.port), digests={"batch_size": 2})
    with app.app_context(), Session(db.engine) as session:
        _digest_world(session, app.extensions["tenderpool.settings"], DIGEST_EMAILS)
        session.commit()
    monkeypatch.setattr(scheduler_module, "utcnow", lambda: NOW)
    original = digest_module.build_digests
    monkeypatch.setattr(
        digest_module, "build_digests", _restart_on_call(original, 2, lambda *a, **k: restart_postgres())
    )
    scheduler = _scheduler(app, db)

    assert scheduler.execute("digests", trigger="manual", scheduled_for=NOW) == "failed"
    sent_before_retry = len(smtp.messages)
    assert sent_before_retry == 2  # the first batch went out and was recorded
    assert scheduler.execute("digests", trigger="retry", scheduled_for=NOW, attempt=2) == "ok"
    assert scheduler.execute("digests", trigger="manual", scheduled_for=NOW + dt.timedelta(minutes=5)) == "ok"
    assert [(a, s) for a, s, _ in _job_runs(db, "digests")] == [(1, "failed"), (2, "ok"), (1, "ok")]

    recipients = sorted(str(m["To"]) for m in smtp.messages)
    assert recipients == sorted(DIGEST_EMAILS), "each digest delivered exactly once"
    with Session(db.engine) as session:
        statuses = session.scalars(select(DigestRun.status).where(DigestRun.status != "empty")).all()
        assert sorted(statuses) == ["sent"] * len(DIGEST_EMAILS)


# --------------------------------------------------------------------------- SMTP down for an hour


def test_smtp_down_for_an_hour_then_back(
    overrides: dict[str, Any], database: Database, session: Session, seed: Seed
) -> None:
    """The mail server refuses connections from 07:30 to 08:30; the digest job runs every five
    minutes (simulated clock). Every digest arrives once, after the server is back."""
    from tenderpool.app import build_app

    server = SmtpServer(port=free_port())
    app = build_app({**overrides, "mail": _mail(server.port)}, database=database)
    emails = [f"gerant{i}@smtp-down.example" for i in range(3)]
    with app.app_context():
        _digest_world(session, app.extensions["tenderpool.settings"], emails)
        session.commit()

    clock = NOW
    down_until = NOW + dt.timedelta(hours=1)
    while clock < down_until:  # nobody listens on the port
        report = run_job(app, database, now=clock)
        assert report.sent == 0
        clock += dt.timedelta(minutes=5)
    failed = session.scalars(select(DigestRun).where(DigestRun.status == "failed")).all()
    assert len(failed) >= len(emails) and all(r.next_attempt_at is not None for r in failed)
    assert all(
        "Connection refused" in (r.last_error or "") or "Errno" in (r.last_error or "") for r in failed
    )

    controller = Controller(server, hostname="127.0.0.1", port=server.port)
    controller.start()
    try:
        while clock < NOW + dt.timedelta(hours=3):
            run_job(app, database, now=clock)
            clock += dt.timedelta(minutes=5)
    finally:
        controller.stop()
    recipients = [str(m["To"]) for m in server.messages]
    assert sorted(r for r in recipients if r in emails) == sorted(emails)
    assert len(recipients) == len(set(recipients)), "a digest was sent twice"
    session.expire_all()
    runs = session.scalars(select(DigestRun).where(DigestRun.status != "empty")).all()
    assert runs and all(r.status == "sent" for r in runs)
    assert {r.message_id for r in runs} == {str(m["Message-ID"]) for m in server.messages}


# --------------------------------------------------------------------------- disk full


class QuotaStorage(LocalStorage):
    """A disk with ``quota`` bytes left: the write fills it, then fails with ENOSPC."""

    def __init__(self, root: Path, quota: int) -> None:
        super().__init__(root)
        self.left = quota

    def _write(self, fh: BinaryIO, data: bytes) -> None:
        part = data[: self.left]
        fh.write(part)
        fh.flush()
        self.left -= len(part)
        if len(part) < len(data):
            raise OSError(errno.ENOSPC, "No space left on device")


def _files(folder: Path) -> set[Path]:
    return {p for p in folder.rglob("*") if p.is_file()} if folder.exists() else set()


def test_disk_full_while_uploading_a_shared_document(
    app: Flask, client: Any, session: Session, seed: Seed, seed_consortium: SeedConsortium, tmp_path: Path
) -> None:
    root = tmp_path / "small-disk"
    pdf = factories.pdf_bytes()
    app.extensions["tenderpool.storage"] = QuotaStorage(root, quota=len(pdf) // 2)
    cid = seed_consortium.consortium_id
    document = session.scalars(select(SharedDocument).where(SharedDocument.consortium_id == cid)).one()
    versions = session.scalar(select(func.count()).select_from(SharedDocumentVersion))
    login_as(client, session, seed.member_id)
    for fields in ({"title": "Nouveau"}, {"document_id": str(document.id)}):  # a new one, a new version
        values = MultiDict(
            {
                "csrf_token": csrf_token(client),
                **fields,
                "file": FileStorage(io.BytesIO(pdf), filename="planning.pdf", content_type="application/pdf"),
            }
        )
        boundary, body = encode_multipart(values)
        response = client.post(
            f"/groupements/{cid}/documents",
            data=body,
            content_type=f"multipart/form-data; boundary={boundary}",
        )
        assert response.status_code == 302
        page = text_of(client.get(response.headers["Location"]))
        assert "l'espace de stockage du service est plein" in page
        assert _files(root) == set(), "a half-written file was left behind"
        session.expire_all()
        assert session.scalar(select(func.count()).select_from(SharedDocumentVersion)) == versions
    assert [v.number for v in session.get_one(SharedDocument, document.id).versions] == [1]
