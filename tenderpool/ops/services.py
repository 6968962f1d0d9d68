"""Operations services: job runs and requests, scheduler instances, health, reminders, retention.

Verbs taking the session first; they only flush. The boundaries (the scheduler, the CLI,
the views) commit. Which jobs exist and when they run is tenderpool.scheduler's business:
these functions take job names and settings as arguments.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import delete, func, select, update
from sqlalchemy.orm import Session

from tenderpool.accounts.models import User
from tenderpool.config import Settings
from tenderpool.errors import NotFound
from tenderpool.ops.models import DocumentReminder, JobRequest, JobRun, JobState, SchedulerInstance

log = logging.getLogger(__name__)

# A standby or stopped instance not seen for this long is forgotten (retention).
INSTANCE_FORGET_AFTER = dt.timedelta(days=7)
# An expired document is announced ("0 days") only this long after its expiry: a document that
# expired months before the feature existed is not worth an email.
EXPIRED_GRACE_DAYS = 7


# --------------------------------------------------------------------------- job runs and requests


def request_run(
    session: Session, job: str, *, known_jobs: Iterable[str], by: User, now: dt.datetime
) -> JobRequest:
    """Queue "run ``job`` now" for the active scheduler (it never runs inside the web request)."""
    if job not in set(known_jobs):
        raise NotFound("Ce travail n'existe pas.")
    request = JobRequest(job=job, requested_at=now, requested_by_id=by.id)
    session.add(request)
    session.flush()
    return request


def pending_requests(session: Session) -> list[JobRequest]:
    """Requests no scheduler has picked up yet, oldest first."""
    return list(
        session.scalars(select(JobRequest).where(JobRequest.picked_at.is_(None)).order_by(JobRequest.id))
    )


def claim_requests(session: Session, *, instance: str, now: dt.datetime, limit: int = 20) -> list[JobRequest]:
    """Mark up to ``limit`` waiting requests as picked by ``instance`` and return them.

    The conditional UPDATE makes the claim safe even if two schedulers looked at once.
    """
    claimed: list[JobRequest] = []
    for request in pending_requests(session)[:limit]:
        result: Any = session.execute(
            update(JobRequest)
            .where(JobRequest.id == request.id, JobRequest.picked_at.is_(None))
            .values(picked_at=now, picked_by=instance)
            .execution_options(synchronize_session=False)
        )
        if result.rowcount == 1:
            claimed.append(request)
    session.flush()
    return claimed


def recent_runs(session: Session, *, job: str | None = None, limit: int = 50) -> list[JobRun]:
    """The latest job runs, newest first (optionally of one job)."""
    query = select(JobRun).order_by(JobRun.started_at.desc(), JobRun.id.desc()).limit(limit)
    if job:
        query = query.where(JobRun.job == job)
    return list(session.scalars(query))


def interrupt_orphan_runs(session: Session, *, instance: str, now: dt.datetime) -> int:
    """Runs still "running" that another instance started: it died before finishing them.

    Only the active scheduler runs jobs, so when an instance becomes active every run of
    another instance still marked running was cut short (kill -9, lost machine).
    """
    result: Any = session.execute(
        update(JobRun)
        .where(JobRun.status == "running", JobRun.instance != instance)
        .values(
            status="failed",
            finished_at=now,
            error="interrompu : l'instance du planificateur s'est arrêtée pendant ce travail",
        )
        .execution_options(synchronize_session=False)
    )
    return int(result.rowcount or 0)


@dataclass(frozen=True)
class JobOverview:
    """One row of the operations page."""

    name: str
    label: str
    enabled: bool
    timing: str  # "cron 0 6-22/2 * * *" or "toutes les 60 s"
    next_run: dt.datetime | None
    last: JobRun | None
    last_error: JobRun | None  # latest failed run (maybe older than ``last``)


def active_instance(session: Session) -> SchedulerInstance | None:
    """The instance that says it is active and was seen last."""
    return session.scalars(
        select(SchedulerInstance)
        .where(SchedulerInstance.role == "active")
        .order_by(SchedulerInstance.seen_at.desc())
        .limit(1)
    ).first()


def instances(session: Session) -> list[SchedulerInstance]:
    return list(
        session.scalars(select(SchedulerInstance).order_by(SchedulerInstance.seen_at.desc()).limit(20))
    )


def _timing(settings: Settings, name: str) -> tuple[bool, str]:
    job = settings.jobs.get(name)
    if job is None:
        return False, "non configuré"
    if job.cron:
        return job.enabled, f"cron « {job.cron} » ({settings.timezone})"
    return job.enabled, f"toutes les {job.interval_seconds} s"


def job_overview(session: Session, settings: Settings, jobs: Sequence[tuple[str, str]]) -> list[JobOverview]:
    """Per job (name, label): timing, next run as the active scheduler plans it, last run, last error."""
    active = active_instance(session)
    planned = dict(active.jobs) if active is not None else {}
    rows = []
    for name, label in jobs:
        enabled, timing = _timing(settings, name)
        last = session.scalars(
            select(JobRun)
            .where(JobRun.job == name)
            .order_by(JobRun.started_at.desc(), JobRun.id.desc())
            .limit(1)
        ).first()
        last_error = session.scalars(
            select(JobRun)
            .where(JobRun.job == name, JobRun.status == "failed")
            .order_by(JobRun.started_at.desc(), JobRun.id.desc())
            .limit(1)
        ).first()
        next_text = planned.get(name)
        next_run = dt.datetime.fromisoformat(next_text) if isinstance(next_text, str) else None
        rows.append(JobOverview(name, label, enabled and name in planned, timing, next_run, last, last_error))
    return rows


def save_instance(
    session: Session,
    *,
    instance: str,
    role: str,
    now: dt.datetime,
    started_at: dt.datetime,
    jobs: dict[str, str | None] | None = None,
) -> SchedulerInstance:
    """Record that ``instance`` is alive in ``role`` (its heartbeat), with its planned jobs."""
    row = session.get(SchedulerInstance, instance)
    if row is None:
        row = SchedulerInstance(instance=instance, started_at=started_at, jobs={})
        session.add(row)
    row.role = role
    row.seen_at = now
    if jobs is not None:
        row.jobs = jobs
    session.flush()
    return row


# --------------------------------------------------------------------------- health


def health_report(
    session: Session, settings: Settings, *, now: dt.datetime, sources_of_jobs: dict[str, str]
) -> tuple[bool, dict[str, Any]]:
    """What /healthz says beyond the database: the heartbeat's age, each scraped source's last success.

    ``sources_of_jobs`` maps a scrape job to its source. A source counts when the active
    scheduler plans its job; it is stale when its last complete run (or, never having run,
    the active scheduler's start) is older than ``health.source_max_age_hours``. Three small
    queries; nothing secret (no host names, no errors).
    """
    from tenderpool.notices.models import ScrapeRun

    ops = settings.ops
    ok = True
    active = active_instance(session)
    scheduler: dict[str, Any] = {"status": "missing", "heartbeat_age_seconds": None}
    if active is not None:
        age = max(0, int((now - active.seen_at).total_seconds()))
        stale = bool(ops.heartbeat_max_age_seconds) and age > ops.heartbeat_max_age_seconds
        scheduler = {"status": "stale" if stale else "ok", "heartbeat_age_seconds": age}
    if ops.heartbeat_max_age_seconds and scheduler["status"] != "ok":
        ok = False
    sources: dict[str, Any] = {}
    planned = dict(active.jobs) if active is not None else {}
    for job, source in sorted(sources_of_jobs.items()):
        if job not in planned:
            continue
        last_ok = session.scalar(
            select(func.max(ScrapeRun.finished_at)).where(
                ScrapeRun.source == source, ScrapeRun.status == "ok", ScrapeRun.is_dry_run.is_(False)
            )
        )
        reference = last_ok or (active.started_at if active is not None else now)
        max_age = dt.timedelta(hours=ops.source_max_age_hours)
        stale = bool(ops.source_max_age_hours) and now - reference > max_age
        sources[source] = {
            "status": "stale" if stale else "ok",
            "last_success": last_ok.isoformat() if last_ok else None,
        }
        ok = ok and not stale
    return ok, {"scheduler": scheduler, "sources": sources}


# --------------------------------------------------------------------------- expiring documents


def _threshold(days_left: int, thresholds: Sequence[int]) -> int | None:
    """The tightest threshold the document has reached (7 for 5 days left with (30, 7, 0))."""
    reached = [t for t in thresholds if days_left <= t]
    if not reached:
        return None
    tightest = min(reached)
    if tightest == 0 and days_left < -EXPIRED_GRACE_DAYS:
        return None
    if days_left < 0 and 0 not in thresholds:
        return None
    return tightest


def send_document_reminders(session: Session, settings: Settings, *, now: dt.datetime) -> int:
    """Email the owners of approved firms whose documents expire soon; once per document and threshold.

    With thresholds (30, 7, 0), a Kbis expiring in 25 days gets the 30-day reminder, then the
    7-day one, then "expired"; one uploaded 5 days before its expiry gets only the 7-day one.
    A replaced document (a newer one of the same kind) is not reminded. The reminder is
    recorded in the same transaction as the queued email, which leaves after the commit.
    Needs an application context (the email templates). Returns the number of emails queued.
    """
    from tenderpool import mail
    from tenderpool.firms.documents import DOCUMENT_KINDS, current_documents
    from tenderpool.firms.models import Firm, FirmDocument, FirmMembership, FirmStatus

    thresholds = settings.ops.document_reminder_days
    if not thresholds:
        return 0
    today = now.astimezone(settings.tz).date()
    horizon = today + dt.timedelta(days=max(thresholds))
    earliest = today - dt.timedelta(days=EXPIRED_GRACE_DAYS)
    firm_ids = list(
        session.scalars(
            select(FirmDocument.firm_id)
            .join(Firm, Firm.id == FirmDocument.firm_id)
            .where(
                Firm.status == FirmStatus.APPROVED.value,
                FirmDocument.expires_on.is_not(None),
                FirmDocument.expires_on <= horizon,
                FirmDocument.expires_on >= earliest,
            )
            .distinct()
            .order_by(FirmDocument.firm_id)
        )
    )
    sent = 0
    for firm_id in firm_ids:
        firm = session.get(Firm, firm_id)
        if firm is None:
            continue
        documents = list(session.scalars(select(FirmDocument).where(FirmDocument.firm_id == firm_id)))
        due: list[tuple[FirmDocument, int, int]] = []
        for document in current_documents(documents):
            if document.expires_on is None:
                continue
            days_left = (document.expires_on - today).days
            threshold = _threshold(days_left, thresholds)
            if threshold is None:
                continue
            done = session.scalar(
                select(func.count())
                .select_from(DocumentReminder)
                .where(
                    DocumentReminder.document_id == document.id, DocumentReminder.threshold_days <= threshold
                )
            )
            if done:
                continue  # this reminder, or a tighter one, was already sent
            due.append((document, threshold, days_left))
        if not due:
            continue
        owners = list(
            session.scalars(
                select(User)
                .join(FirmMembership, FirmMembership.user_id == User.id)
                .where(
                    FirmMembership.firm_id == firm_id,
                    FirmMembership.is_owner.is_(True),
                    User.is_active.is_(True),
                )
                .order_by(User.id)
            )
        )
        for document, threshold, _days in due:
            session.add(DocumentReminder(document_id=document.id, threshold_days=threshold, sent_at=now))
        if not owners:
            continue
        expired = any(days < 0 for _d, _t, days in due)
        subject = (
            f"{firm.name} : un document a expiré"
            if expired
            else f"{firm.name} : {len(due)} document(s) expire(nt) bientôt"
        )
        items = [
            {
                "title": document.title,
                "kind": DOCUMENT_KINDS[document.kind].label
                if document.kind in DOCUMENT_KINDS
                else document.kind,
                "expires_on": document.expires_on,
                "days_left": days,
            }
            for document, _t, days in due
        ]
        link = settings.base_url + "/entreprise/profil/documents"
        mail.queue(
            session,
            mail.compose(
                "document_expiring", [u.email for u in owners], subject, firm=firm, items=items, link=link
            ),
        )
        sent += 1
    session.flush()
    return sent


# --------------------------------------------------------------------------- retention

RECOMPRESS_BATCH = 200


def recompress_payloads(
    session: Session, settings: Settings, *, now: dt.datetime, max_batches: int | None = None
) -> tuple[int, bool]:
    """Compress again, harder (zlib level 9), the raw payloads older than the retention setting.

    Ingestion compresses fast (level 1); once a payload is old it is rarely read and disk matters
    more. Payloads stay zlib streams, so ``notices reparse`` reads them as before. Progress is a
    checkpoint (``job_states``: the last publication id done), so the work resumes where a
    stopped run left it. Returns (payloads rewritten, whether every old payload is done).
    """
    from tenderpool.notices.models import Publication

    days = settings.ops.recompress_payloads_after_days
    if not days:
        return 0, True
    state = session.get(JobState, "retention")
    if state is None:
        state = JobState(job="retention", data={}, updated_at=now)
        session.add(state)
    after_id = int(state.data.get("recompressed_until_id", 0))
    cutoff = now - dt.timedelta(days=days)
    done = batches = 0
    while max_batches is None or batches < max_batches:
        batches += 1
        batch = list(
            session.execute(
                select(Publication.id, Publication.payload, Publication.fetched_at)
                .where(Publication.id > after_id)
                .order_by(Publication.id)
                .limit(RECOMPRESS_BATCH)
            )
        )
        if not batch:
            return done, True
        for pub_id, payload, fetched_at in batch:
            if fetched_at > cutoff:
                # Ids grow with time: what follows is younger still; come back another day.
                _checkpoint(session, state, after_id, now)
                return done, True
            smaller = zlib.compress(zlib.decompress(payload), 9)
            if len(smaller) < len(payload):
                session.execute(
                    update(Publication)
                    .where(Publication.id == pub_id)
                    .values(payload=smaller)
                    .execution_options(synchronize_session=False)
                )
                done += 1
            after_id = pub_id
        _checkpoint(session, state, after_id, now)
    return done, False


def _checkpoint(session: Session, state: JobState, after_id: int, now: dt.datetime) -> None:
    state.data = {**state.data, "recompressed_until_id": after_id}
    state.updated_at = now
    session.flush()


def prune_job_records(session: Session, settings: Settings, *, now: dt.datetime) -> dict[str, int]:
    """Delete job runs older than ``retention.job_runs_days``, picked requests as old, and
    scheduler instances not seen for a week (never the active one)."""
    cutoff = now - dt.timedelta(days=settings.ops.job_runs_days)
    runs: Any = session.execute(delete(JobRun).where(JobRun.started_at < cutoff, JobRun.status != "running"))
    requests: Any = session.execute(
        delete(JobRequest).where(JobRequest.picked_at.is_not(None), JobRequest.picked_at < cutoff)
    )
    forgotten: Any = session.execute(
        delete(SchedulerInstance).where(
            SchedulerInstance.seen_at < now - INSTANCE_FORGET_AFTER, SchedulerInstance.role != "active"
        )
    )
    return {
        "job_runs": int(runs.rowcount or 0),
        "job_requests": int(requests.rowcount or 0),
        "instances": int(forgotten.rowcount or 0),
    }


def runs_as_jsonl(runs: Iterable[JobRun]) -> Iterable[str]:
    """One JSON object a line per run (``tenderpool jobs list --format jsonl``)."""
    for run in runs:
        yield json.dumps(
            {
                "id": run.id,
                "job": run.job,
                "trigger": run.trigger,
                "attempt": run.attempt,
                "scheduled_for": run.scheduled_for.isoformat(),
                "started_at": run.started_at.isoformat(),
                "finished_at": run.finished_at.isoformat() if run.finished_at else None,
                "duration_seconds": run.duration_seconds,
                "status": run.status,
                "summary": run.summary,
                "error": run.error,
                "instance": run.instance,
            },
            ensure_ascii=False,
        )
