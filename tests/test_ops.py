"""Operations: /healthz, the operations page, expiring-document reminders, retention, logs, `jobs list`."""

from __future__ import annotations

import datetime as dt
import json
import logging
import secrets
import zlib
from typing import Any

import pytest
from click.testing import CliRunner
from flask.testing import FlaskClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from tenderpool import logs, migrate
from tenderpool.db import utcnow
from tenderpool.firms.models import FirmDocument
from tenderpool.notices.models import Publication, ScrapeRun
from tenderpool.ops import services
from tenderpool.ops.models import DocumentReminder, JobRequest, JobRun, SchedulerInstance
from tests.conftest import Seed, SeedNotice, body_text, login_as, post_form, text_of

NOW = dt.datetime(2026, 11, 28, 9, 0, tzinfo=dt.UTC)


def _instance(
    session: Session, *, seen: dt.datetime, started: dt.datetime | None = None, jobs: Any = None
) -> None:
    session.add(
        SchedulerInstance(
            instance="host-a:100", role="active", started_at=started or seen, seen_at=seen, jobs=jobs or {}
        )
    )
    session.commit()


# --------------------------------------------------------------------------- /healthz


def test_healthz_without_any_scheduler_is_503(client: FlaskClient) -> None:
    response = client.get("/healthz")
    assert response.status_code == 503
    assert response.json == {
        "status": "error",
        "database": "ok",
        "scheduler": {"status": "missing", "heartbeat_age_seconds": None},
        "sources": {},
    }


def test_healthz_reads_the_heartbeat_and_the_scraped_sources(client: FlaskClient, session: Session) -> None:
    now = utcnow()
    _instance(session, seen=now - dt.timedelta(seconds=20), jobs={"heartbeat": None})
    body = client.get("/healthz").json
    assert body["status"] == "ok" and body["scheduler"]["status"] == "ok"
    assert 19 <= body["scheduler"]["heartbeat_age_seconds"] <= 600
    assert "host-a" not in json.dumps(body)  # no host names

    instance = session.get(SchedulerInstance, "host-a:100")
    assert instance is not None
    instance.seen_at = now - dt.timedelta(minutes=10)  # past health.heartbeat_max_age_seconds (300)
    session.commit()
    response = client.get("/healthz")
    assert response.status_code == 503 and response.json["scheduler"]["status"] == "stale"

    # Scraping BOAMP for two days without one complete run: stale.
    instance.seen_at, instance.started_at = now, now - dt.timedelta(days=2)
    instance.jobs = {"scrape_boamp": None, "heartbeat": None}
    session.commit()
    response = client.get("/healthz")
    assert response.status_code == 503
    assert response.json["sources"] == {"boamp": {"status": "stale", "last_success": None}}
    done = now - dt.timedelta(hours=3)
    session.add(ScrapeRun(source="boamp", started_at=done, finished_at=done, status="ok", errors=[]))
    session.commit()
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json["sources"]["boamp"]["status"] == "ok"


# --------------------------------------------------------------------------- the operations page


def test_operations_page_and_run_now(client: FlaskClient, session: Session, seed: Seed) -> None:
    _instance(session, seen=utcnow(), jobs={"heartbeat": (utcnow() + dt.timedelta(seconds=30)).isoformat()})
    finished = NOW + dt.timedelta(seconds=2)
    trace = "Traceback (most recent call last):\n…"
    session.add(
        JobRun(job="digests", scheduled_for=NOW, started_at=NOW, finished_at=finished, status="failed",
               summary="SMTPServerDisconnected: boom", error=trace, instance="host-a:100")
    )  # fmt: skip
    session.commit()
    login_as(client, session, seed.staff77_id)
    page = text_of(client.get("/equipe/operations"))
    assert "Résumés par e-mail" in page and "SMTPServerDisconnected: boom" in page
    assert "Lancer maintenant" not in page  # staff see, admins act
    assert "/equipe/collectes" in page

    login_as(client, session, seed.admin_id)
    page = text_of(client.get("/equipe/operations"))
    assert "Lancer maintenant" in page
    response = post_form(client, "/equipe/operations/heartbeat/lancer")
    assert response.status_code == 302
    (request,) = session.scalars(select(JobRequest)).all()
    assert (request.job, request.requested_by_id, request.picked_at) == ("heartbeat", seed.admin_id, None)
    assert "Battement de cœur" in text_of(client.get("/equipe/operations"))
    assert post_form(client, "/equipe/operations/nope/lancer").status_code == 404


# --------------------------------------------------------------------------- expiring documents


def _document(session: Session, firm_id: int, kind: str, expires_on: dt.date, title: str) -> FirmDocument:
    document = FirmDocument(
        firm_id=firm_id, kind=kind, title=title, original_name="a.pdf", storage_key=f"{kind}{expires_on:%j}",
        content_type="application/pdf", size=10, sha256="0" * 64, expires_on=expires_on, uploaded_at=NOW,
    )  # fmt: skip
    session.add(document)
    session.flush()
    return document


def test_document_reminders_once_per_threshold(
    session: Session, settings: Any, seed: Seed, outbox: Any
) -> None:
    today = NOW.date()
    kbis = _document(session, seed.firm_id, "kbis", today + dt.timedelta(days=25), "Kbis 2026")
    _document(session, seed.firm_id, "urssaf", today - dt.timedelta(days=200), "URSSAF ancienne")
    _document(session, seed.pending_firm_id, "kbis", today + dt.timedelta(days=3), "Kbis (firme en attente)")
    session.commit()

    assert services.send_document_reminders(session, settings, now=NOW) == 1
    session.commit()
    (message,) = outbox()
    assert message["To"] == "owner@example.com"  # owners only, not the other member
    assert "Kbis 2026" in body_text(message) and "dans 25 jours" in body_text(message)
    assert services.send_document_reminders(session, settings, now=NOW + dt.timedelta(hours=5)) == 0

    later = NOW + dt.timedelta(days=20)  # 5 days left: the 7-day reminder, once
    assert services.send_document_reminders(session, settings, now=later) == 1
    assert services.send_document_reminders(session, settings, now=later + dt.timedelta(days=1)) == 0
    expired = NOW + dt.timedelta(days=26)
    assert services.send_document_reminders(session, settings, now=expired) == 1
    session.commit()
    (last,) = [m for m in outbox() if "a expiré" in m["Subject"]]
    assert "a expiré le 23/12/2026" in body_text(last)
    sent = session.scalars(
        select(DocumentReminder.threshold_days).where(DocumentReminder.document_id == kbis.id)
    )
    assert sorted(sent) == [0, 7, 30]


# --------------------------------------------------------------------------- retention


def test_retention_recompresses_old_payloads_and_prunes_old_runs(
    session: Session, settings: Any, seed_notice: SeedNotice
) -> None:
    publication = session.get(Publication, seed_notice.publication_id)
    assert publication is not None
    raw = zlib.decompress(publication.payload)
    old_size = len(publication.payload)
    session.add(JobRun(job="heartbeat", scheduled_for=NOW, started_at=NOW - dt.timedelta(days=200),
                       finished_at=NOW, status="ok", instance="x:1"))  # fmt: skip
    session.commit()
    young = publication.fetched_at + dt.timedelta(days=1)
    assert services.recompress_payloads(session, settings, now=young) == (0, True)  # not old enough
    old = publication.fetched_at + dt.timedelta(days=31)
    done, finished = services.recompress_payloads(session, settings, now=old)
    session.commit()
    session.expire_all()
    assert (done, finished) == (1, True)
    assert zlib.decompress(publication.payload) == raw and len(publication.payload) < old_size
    assert services.recompress_payloads(session, settings, now=old) == (0, True)  # checkpointed
    pruned = services.prune_job_records(session, settings, now=NOW)
    assert pruned["job_runs"] == 1
    assert session.scalar(select(func.count()).select_from(JobRun)) == 0


# --------------------------------------------------------------------------- logs


def test_request_id_is_taken_or_made_and_echoed(client: FlaskClient) -> None:
    assert client.get("/", headers={"X-Request-ID": "lb-1234.abc"}).headers["X-Request-Id"] == "lb-1234.abc"
    forged = client.get("/", headers={"X-Request-ID": 'bad id" INFO forged'}).headers["X-Request-Id"]
    assert forged and " " not in forged and "forged" not in forged
    assert len(client.get("/").headers["X-Request-Id"]) == 16


def test_json_log_lines_carry_the_job_context() -> None:
    record = logging.LogRecord(
        "tenderpool.scheduler", logging.INFO, __file__, 1, "job %s ok", ("digests",), None
    )
    with logs.log_context(job="digests", run=12, instance="host:1"):
        logs.RequestIdFilter().filter(record)
    line = json.loads(logs.JsonFormatter().format(record))
    assert line["message"] == "job digests ok"
    assert (line["job"], line["run"], line["instance"], line["request_id"]) == (
        "digests",
        "12",
        "host:1",
        "-",
    )
    assert record.tags == "job=digests run=12 instance=host:1"  # type: ignore[attr-defined]


def test_log_format_auto_is_json_in_production() -> None:
    from tenderpool.config import load_settings

    assert load_settings(environ={}).log_format == "text"
    production = load_settings(environ={}, overrides={"env": "production", "secret_key": "k" * 40})
    assert production.log_format == "json"


# --------------------------------------------------------------------------- `tenderpool jobs list`


def test_jobs_list_table_and_jsonl(cli_env: dict[str, str], cli_engine: Any) -> None:
    engine = cli_engine.engine
    from tenderpool.cli import main

    with Session(engine) as session:
        for job, status in (("digests", "ok"), ("scrape_boamp", "failed")):
            error = "Traceback" if status == "failed" else None
            end = NOW + dt.timedelta(seconds=3)
            session.add(JobRun(job=job, scheduled_for=NOW, started_at=NOW, finished_at=end, status=status,
                               summary=f"{job} résumé", error=error, instance="host-b:42"))  # fmt: skip
        session.commit()
    runner = CliRunner()
    table = runner.invoke(main, ["jobs", "list"], env=cli_env, catch_exceptions=False)
    assert table.exit_code == 0 and "host-b:42" in table.output and "scrape_boamp" in table.output
    lines = runner.invoke(main, ["jobs", "list", "--format", "jsonl", "--job", "scrape_boamp"], env=cli_env)
    (row,) = [json.loads(line) for line in lines.output.splitlines()]
    assert (row["job"], row["status"], row["instance"], row["duration_seconds"]) == (
        "scrape_boamp", "failed", "host-b:42", 3.0,
    )  # fmt: skip
    assert row["error"] == "Traceback"
    bad = runner.invoke(main, ["jobs", "list", "--job", "nope"], env=cli_env)
    assert bad.exit_code == 2 and "no such job" in bad.output
    request = runner.invoke(main, ["jobs", "request", "digests"], env=cli_env)
    assert request.exit_code == 0
    with Session(engine) as session:
        assert session.scalars(select(JobRequest.job)).all() == ["digests"]


@pytest.fixture
def cli_engine(temp_db_factory: Any) -> Any:
    db = temp_db_factory(f"opscli_{secrets.token_hex(3)}")
    migrate.upgrade(db.engine)
    return db


@pytest.fixture
def cli_env(cli_engine: Any, tmp_path: Any) -> dict[str, str]:
    return {
        "TENDERPOOL_DATABASE_URL": cli_engine.url,
        "TENDERPOOL_APP_INSTANCE_PATH": str(tmp_path / "instance"),
        "TENDERPOOL_ENV": "development",
        "TENDERPOOL_CONFIG": "",
    }
