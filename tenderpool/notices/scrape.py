"""Scrape runs: fetch a source's window, ingest page by page, record the run, advance the cursor.

This is a boundary (called by the CLI and the scheduler): it commits after every
page, so that a run killed at any point keeps what it stored, and it advances the
source's cursor only once the whole window is committed and complete. Running
the same window again is harmless: publications are upserted on
``(source, source_ref)``.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable
from dataclasses import dataclass
from zoneinfo import ZoneInfo

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from scrapers.base import FetchError, ParseError, ScraperError, Source
from scrapers.http import HttpClient
from scrapers.registry import make_source, parse_raw
from tenderpool.config import Settings
from tenderpool.db import Database
from tenderpool.notices.ingest import IngestStats, ingest_records
from tenderpool.notices.models import ScrapeRun, SourceCursor

log = logging.getLogger(__name__)
PARIS = ZoneInfo("Europe/Paris")
STALE_AFTER = dt.timedelta(hours=6)


@dataclass
class Progress:
    """Callback hooks for a progress display (a bar on a terminal, log lines otherwise)."""

    on_page: Callable[[int, int | None], None] = lambda fetched, expected: None


def build_source(settings: Settings, name: str, client: HttpClient | None = None) -> Source:
    """The configured source adapter, with the shared HTTP client settings."""
    conf = settings.scrapers
    source_conf = conf.sources[name]
    client = client or HttpClient(
        conf.user_agent,
        timeout=(conf.connect_timeout_seconds, conf.read_timeout_seconds),
        max_tries=conf.max_tries,
        politeness_delay=conf.politeness_delay_seconds,
    )
    options: dict[str, object] = {"base_url": source_conf.base_url, "page_size": source_conf.page_size}
    if name == "boamp":
        departments = tuple(source_conf.options.get("departments") or settings.chamber_departments)
        options["departments"] = departments
    elif name == "ted":
        options["nuts"] = tuple(source_conf.options.get("nuts") or ("FR102", "FR104"))
        options["fetch_xml"] = bool(source_conf.options.get("fetch_xml", True))
    return make_source(name, client, **options)


def default_window(
    session: Session, settings: Settings, source: str, *, now: dt.datetime
) -> tuple[dt.date, dt.date]:
    """From the cursor minus the overlap (or ``initial_days`` back) to today, in Paris time."""
    today = now.astimezone(PARIS).date()
    cursor = session.get(SourceCursor, source)
    if cursor is None:
        return today - dt.timedelta(days=settings.scrapers.initial_days), today
    return min(cursor.complete_until, today) - dt.timedelta(days=settings.scrapers.overlap_days), today


def _close_stale_runs(session: Session, source: str, now: dt.datetime) -> None:
    """Runs still "running" long after they started were killed: say so."""
    session.execute(
        update(ScrapeRun)
        .where(
            ScrapeRun.source == source,
            ScrapeRun.status == "running",
            ScrapeRun.started_at < now - STALE_AFTER,
        )
        .values(status="failed", finished_at=now, errors=["interrompu (processus arrêté avant la fin)"])
    )


def run_scrape(
    db: Database,
    source_name: str,
    source: Source,
    *,
    since: dt.date,
    until: dt.date,
    now: Callable[[], dt.datetime],
    dry_run: bool = False,
    progress: Progress | None = None,
    advance_cursor: bool = True,
) -> ScrapeRun:
    """Fetch ``[since, until]`` from ``source`` and store it; returns the finished run record."""
    progress = progress or Progress()
    with db.session_scope() as session:
        _close_stale_runs(session, source_name, now())
        run = ScrapeRun(
            source=source_name,
            started_at=now(),
            status="running",
            window_start=since,
            window_end=until,
            errors=[],
            is_dry_run=dry_run,
        )
        session.add(run)
        session.flush()
        run_id = run.id

    totals = IngestStats()
    window_totals: dict[object, int] = {}
    errors: list[str] = []
    partial_reasons: list[str] = []
    failed = False
    try:
        for page in source.fetch(since, until):
            key = (page.window or (since, until), page.scope)
            if page.total_count is not None:
                window_totals[key] = page.total_count
            if page.partial_reason and page.partial_reason not in partial_reasons:
                partial_reasons.append(page.partial_reason)
            if dry_run:
                stats = IngestStats(read=len(page.records))
                for raw in page.records:
                    try:
                        parse_raw(raw)
                    except ParseError as exc:
                        stats.rejected += 1
                        stats.rejections.append((f"{raw.source}:{raw.source_ref}", exc.reason))
            else:
                with db.session_scope() as session:
                    stats = ingest_records(session, page.records, now=now())
                    _save_counts(session, run_id, totals, stats)
            totals.add(stats)
            expected = sum(window_totals.values()) if window_totals else None
            progress.on_page(totals.read, expected)
    except FetchError as exc:
        failed = True
        errors.append(f"{type(exc).__name__}: {exc}" + (f" (HTTP {exc.status})" if exc.status else ""))
        log.warning("scrape %s stopped: %s", source_name, exc)
    except ScraperError as exc:
        failed = True
        errors.append(f"{type(exc).__name__}: {exc}")
        log.warning("scrape %s stopped: %s", source_name, exc)
    except Exception as exc:
        # The database went away (a restart, a failover) or anything unforeseen: the pages
        # committed so far stay, the run is recorded as failed rather than left "running", and the
        # error goes up to the caller (the scheduler retries the job; the window is idempotent).
        _record_failure(db, run_id, totals, f"{type(exc).__name__}: {exc}", now())
        raise

    expected = sum(window_totals.values()) if window_totals else None
    errors.extend(f"{ref} : {reason}" for ref, reason in totals.rejections[:200])
    shortfall = (expected is not None and totals.read < expected) or bool(partial_reasons)
    errors[:0] = partial_reasons
    if failed:
        status = "partial" if totals.read else "failed"
    elif shortfall:
        status = "partial"
        if expected is not None and totals.read < expected:
            errors.insert(0, f"{totals.read} avis reçus sur {expected} annoncés par la source")
    else:
        status = "ok"
    with db.session_scope() as session:
        final = session.get(ScrapeRun, run_id)
        if final is None:
            raise RuntimeError(f"scrape run {run_id} vanished")
        run = final
        _save_counts(session, run_id, IngestStats(), IngestStats(), final=totals)
        run.expected = expected
        run.status = status
        run.errors = errors
        run.finished_at = now()
        if status == "ok" and advance_cursor and not dry_run:
            cursor = session.get(SourceCursor, source_name)
            if cursor is None:
                session.add(SourceCursor(source=source_name, complete_until=until, updated_at=now()))
            elif until > cursor.complete_until:
                cursor.complete_until = until
                cursor.updated_at = now()
        session.flush()
        session.expunge(run)
    return run


def _record_failure(db: Database, run_id: int, totals: IngestStats, error: str, at: dt.datetime) -> None:
    """Best effort: the database may still be unreachable, and the original error matters more."""
    try:
        with db.session_scope() as session:
            _save_counts(session, run_id, IngestStats(), IngestStats(), final=totals)
            run = session.get(ScrapeRun, run_id)
            if run is not None:
                run.status = "partial" if totals.read else "failed"
                run.errors = [error[:500]]
                run.finished_at = at
    except Exception:
        log.warning("scrape run %s could not be recorded as failed", run_id, exc_info=True)


def _save_counts(
    session: Session, run_id: int, before: IngestStats, page: IngestStats, final: IngestStats | None = None
) -> None:
    """Write the run's running totals in the same transaction as the page they count."""
    total = final
    if total is None:
        total = IngestStats()
        total.add(before)
        total.add(page)
    run = session.get(ScrapeRun, run_id)
    if run is None:
        raise RuntimeError(f"scrape run {run_id} vanished")
    run.fetched = total.read
    run.created = total.created
    run.updated = total.updated
    run.linked = total.linked
    run.unchanged = total.unchanged
    run.rejected = total.rejected


def last_runs(session: Session, source: str | None = None, limit: int = 20) -> list[ScrapeRun]:
    query = select(ScrapeRun).order_by(ScrapeRun.started_at.desc(), ScrapeRun.id.desc()).limit(limit)
    if source:
        query = query.where(ScrapeRun.source == source)
    return list(session.scalars(query))
