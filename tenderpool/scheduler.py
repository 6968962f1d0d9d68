"""The scheduler: when jobs run, and that exactly one process runs them.

``tenderpool scheduler`` runs it as its own process (``tenderpool run`` starts one beside the
development server); it is never started inside a web worker.

**Jobs.** :data:`JOBS` maps a job name to a :class:`JobSpec`: a French label for the operations
page and a function ``func(ctx: JobContext) -> str | None`` returning a one-line summary
(raise to fail: the run is recorded failed, with its traceback, and retried with back-off).
Timing comes from the settings, one table per job: ``[jobs.<name>]`` with ``enabled`` and
either ``cron`` (read in ``app.timezone``) or ``interval_seconds``. A job without its table, or
a table without its job, stops start-up with a message.

Adding a job takes two steps. For the consortium deadline reminders, for example::

    @register_job("consortium_reminders", "Rappels d'échéance des groupements")
    def consortium_reminders(ctx: JobContext) -> str:
        from tenderpool.consortia.services import send_deadline_reminders

        with ctx.db.session_scope() as session:  # the boundary commits; emails leave after it
            count = send_deadline_reminders(session, ctx.settings, now=ctx.now)
        return f"{count} rappel(s) envoyé(s)"

and in ``config/default.toml``::

    [jobs.consortium_reminders]
    enabled = true
    cron = "0 8 * * *"

**One active scheduler.** Any number of ``tenderpool scheduler`` processes may run; one is
*active* and runs jobs, the others are *standbys* that try to take over every
``scheduler.standby_retry_seconds``. On PostgreSQL the active one holds a session-level
advisory lock on a dedicated connection (``pg_try_advisory_lock``); the server releases it when
that connection dies, whatever killed the process (TCP keepalives bound how long a vanished
machine keeps it). On SQLite an exclusive ``flock`` on ``<database>.scheduler.lock`` does the
same on one machine. As a second guard a run is recorded before it starts, unique per
``(job, scheduled_for, attempt)``, and interval triggers are aligned on a fixed origin so
every instance computes the same periods.

**No overlap, no pile-up.** A job never overlaps itself (``max_instances`` 1 and a lock per job
shared with "run now" and retries); missed runs are coalesced into one, started if still
within ``scheduler.misfire_grace_seconds``. SIGTERM (or SIGINT) stops picking new runs, lets
the running ones finish (long jobs checkpoint when ``ctx.stopping`` is set: retention does;
a scrape commits page by page and its cursor only moves once its window is complete, so
even a kill -9 loses nothing) and exits with status 0.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import hashlib
import logging
import math
import os
import signal
import socket
import threading
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Protocol

from sqlalchemy import Connection, create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlalchemy.pool import NullPool

from tenderpool import logs
from tenderpool.config import ConfigError, JobSettings, Settings
from tenderpool.db import Database, utcnow

if TYPE_CHECKING:
    from flask import Flask

log = logging.getLogger(__name__)

# Interval jobs fire at origin + k × interval, the same instants in every instance.
INTERVAL_ORIGIN = dt.datetime(2000, 1, 1, tzinfo=dt.UTC)
# A manual or retry run that finds its job busy tries again this much later.
BUSY_DELAY = dt.timedelta(seconds=30)
_LOCK_NAME = "tenderpool.scheduler"
# pg_try_advisory_lock takes a bigint: a stable one derived from the name.
ADVISORY_LOCK_KEY = int.from_bytes(hashlib.sha256(_LOCK_NAME.encode()).digest()[:8], "big", signed=True)


# --------------------------------------------------------------------------- the registry


@dataclass
class JobContext:
    """What a job gets: settings, database, the app (templates, mailer), the time, a stop flag."""

    settings: Settings
    db: Database
    app: Flask
    now: dt.datetime  # when the run started
    scheduled_for: dt.datetime  # the period it is for
    instance: str
    stopping: threading.Event  # set on SIGTERM: a long job may checkpoint and return early
    beat: Callable[[], None] = lambda: None  # the heartbeat's own action (records the instance)

    @property
    def mailer(self) -> Any:
        return self.app.extensions["tenderpool.mailer"]


JobFunc = Callable[[JobContext], "str | None"]


@dataclass(frozen=True)
class JobSpec:
    name: str
    label: str  # French, for the operations page
    func: JobFunc
    source: str | None = None  # scrape jobs: the source whose freshness /healthz checks


JOBS: dict[str, JobSpec] = {}


def register_job(name: str, label: str, *, source: str | None = None) -> Callable[[JobFunc], JobFunc]:
    """Add a job to :data:`JOBS` (its timing is the ``[jobs.<name>]`` table of the settings)."""

    def decorate(func: JobFunc) -> JobFunc:
        if name in JOBS:
            raise ValueError(f"job {name!r} registered twice")
        JOBS[name] = JobSpec(name, label, func, source)
        return func

    return decorate


def check_job_settings(settings: Settings, jobs: dict[str, JobSpec] | None = None) -> None:
    """Every ``[jobs.<name>]`` table names a registered job and every job has its table."""
    jobs = JOBS if jobs is None else jobs
    problems = [
        f"jobs.{name}: no such job (known jobs: {', '.join(sorted(jobs))})"
        for name in settings.jobs
        if name not in jobs
    ]
    problems += [
        f"job {name!r} has no [jobs.{name}] table in the settings"
        for name in jobs
        if name not in settings.jobs
    ]
    if problems:
        raise ConfigError("invalid settings:\n  - " + "\n  - ".join(problems))


def scrape_sources(jobs: dict[str, JobSpec] | None = None) -> dict[str, str]:
    """Scrape job name -> source name."""
    return {name: spec.source for name, spec in (JOBS if jobs is None else jobs).items() if spec.source}


# --------------------------------------------------------------------------- the jobs


class JobFailed(Exception):
    """A job that ran to its end but did not do its work (a scrape that failed): retry it."""


def _scrape_job(source: str) -> JobFunc:
    def scrape(ctx: JobContext) -> str:
        from tenderpool.notices.scrape import build_source, default_window, run_scrape

        with ctx.db.session_scope() as session:
            since, until = default_window(session, ctx.settings, source, now=ctx.now)
        run = run_scrape(
            ctx.db, source, build_source(ctx.settings, source), since=since, until=until, now=utcnow
        )
        summary = (
            f"collecte n° {run.id} {run.status} ({since:%d/%m/%Y} → {until:%d/%m/%Y}) : reçus {run.fetched}"
            + (f"/{run.expected}" if run.expected is not None else "")
            + f", créés {run.created}, mis à jour {run.updated}, rejetés {run.rejected}"
        )
        if run.status == "failed":
            raise JobFailed(summary + (" — " + "; ".join(run.errors[:3]) if run.errors else ""))
        return summary

    return scrape


register_job("scrape_boamp", "Collecte BOAMP", source="boamp")(_scrape_job("boamp"))
register_job("scrape_ted", "Collecte TED", source="ted")(_scrape_job("ted"))


@register_job("digests", "Résumés par e-mail")
def send_digests(ctx: JobContext) -> str:
    from tenderpool.digests.services import send_due_digests

    report = send_due_digests(ctx.db, ctx.mailer, settings=ctx.settings, now=ctx.now)
    summary = (
        f"envoyés {report.sent}, vides {report.empty}, en échec {report.failed}, renvois {report.retried}"
    )
    if report.failed:
        # Each failed digest is retried by the digest service itself (its own back-off); the job
        # says so but does not fail, or every digest would be re-evaluated on top of that.
        log.warning("digests: %s failed to send", report.failed)
    return summary


@register_job("document_reminders", "Rappels de documents qui expirent")
def document_reminders(ctx: JobContext) -> str:
    from tenderpool.ops.services import send_document_reminders

    with ctx.db.session_scope() as session:
        count = send_document_reminders(session, ctx.settings, now=ctx.now)
    return f"{count} e-mail(s) de rappel"


@register_job("retention", "Rétention (données brutes, historique des travaux)")
def retention(ctx: JobContext) -> str:
    from tenderpool.accounts.services import prune_sessions
    from tenderpool.ops.services import prune_job_records, recompress_payloads

    with ctx.db.session_scope() as session:
        pruned = prune_job_records(session, ctx.settings, now=ctx.now)
        sessions = prune_sessions(session, ctx.settings, now=ctx.now)
    # One transaction per batch, and a checkpoint in each: a stop (SIGTERM) between two
    # batches keeps what was done, and the next run goes on from there.
    total, finished = 0, False
    while not finished and not ctx.stopping.is_set():
        with ctx.db.session_scope() as session:
            done, finished = recompress_payloads(session, ctx.settings, now=ctx.now, max_batches=1)
        total += done
    interrupted = "" if finished else " (interrompu : reprendra au prochain passage)"
    return (
        f"{total} donnée(s) brute(s) recompressée(s){interrupted} ; supprimés :"
        f" {pruned['job_runs']} exécution(s), {pruned['job_requests']} demande(s),"
        f" {pruned['instances']} instance(s), {sessions} session(s) expirée(s)"
    )


@register_job("prune_api_usage", "Purge des compteurs de l'API")
def prune_api_usage(ctx: JobContext) -> str:
    from tenderpool.api.services import prune_api_usage as prune

    with ctx.db.session_scope() as session:
        count = prune(session, now=ctx.now)
    return f"{count} compteur(s) supprimé(s)"


@register_job("consortia_sync", "Groupements : avis annulés, attribués ou rectifiés")
def consortia_sync(ctx: JobContext) -> str:
    from tenderpool.consortia.services import sync_with_notices
    from tenderpool.consortia.workspace import announce_moved_deadlines

    with ctx.db.session_scope() as session:
        moved = sync_with_notices(session, now=ctx.now)
        shifted = announce_moved_deadlines(session, now=ctx.now)
    return f"{len(moved)} groupement(s) mis à jour, {shifted} checklist(s) décalée(s)"


@register_job("consortium_reminders", "Rappels d'échéance des groupements")
def consortium_reminders(ctx: JobContext) -> str:
    from tenderpool.consortia.services import send_deadline_reminders

    with ctx.db.session_scope() as session:  # the emails leave after the commit
        count = send_deadline_reminders(session, now=ctx.now)
    return f"{count} rappel(s) envoyé(s)"


@register_job("dossiers", "Génération des dossiers de réponse")
def build_dossiers(ctx: JobContext) -> str:
    from tenderpool.dossiers.services import process_pending_dossiers

    built = process_pending_dossiers(ctx.db, ctx.settings, now=ctx.now)
    return f"{built} dossier(s) généré(s)"


@register_job("heartbeat", "Battement de cœur")
def heartbeat(ctx: JobContext) -> str:
    ctx.beat()
    return "en vie"


# --------------------------------------------------------------------------- the lock


class ActiveLock(Protocol):
    def try_acquire(self) -> bool: ...

    def still_held(self) -> bool: ...

    def release(self) -> None: ...


class PostgresLock:
    """A session-level advisory lock on a connection of its own, kept open while active."""

    def __init__(self, url: str) -> None:
        # NullPool: this connection is never shared, recycled or pinged by a pool behind our back.
        self.engine = create_engine(
            url,
            poolclass=NullPool,
            # The client notices a dead server within about a minute (libpq keepalives).
            connect_args={
                "keepalives": 1,
                "keepalives_idle": 20,
                "keepalives_interval": 10,
                "keepalives_count": 3,
            },
        )
        self.conn: Connection | None = None
        self.held = False

    def _connect(self) -> Connection:
        if self.conn is None:
            conn = self.engine.connect().execution_options(isolation_level="AUTOCOMMIT")
            # The server notices a vanished client (a dead machine) within about a minute and
            # releases the lock; a killed process is noticed at once (its socket closes).
            for setting, value in (
                ("tcp_keepalives_idle", 20),
                ("tcp_keepalives_interval", 10),
                ("tcp_keepalives_count", 3),
            ):
                conn.execute(text(f"SET {setting} = {value}"))
            self.conn = conn
        return self.conn

    def try_acquire(self) -> bool:
        try:
            got = bool(
                self._connect()
                .execute(text("SELECT pg_try_advisory_lock(:key)"), {"key": ADVISORY_LOCK_KEY})
                .scalar()
            )
        except SQLAlchemyError as exc:
            log.warning("scheduler lock: database unreachable (%s)", exc.__class__.__name__)
            self._drop()
            return False
        self.held = got
        return got

    def still_held(self) -> bool:
        if self.conn is None or not self.held:
            return False
        try:
            # A session-level lock lives as long as its session: the session answering is the
            # lock still held (only pg_advisory_unlock, which we never call while active, drops it).
            self.conn.execute(text("SELECT 1"))
        except SQLAlchemyError:
            self._drop()
            return False
        return True

    def _drop(self) -> None:
        self.held = False
        if self.conn is not None:
            try:
                self.conn.invalidate()
                self.conn.close()
            except SQLAlchemyError:
                pass
            self.conn = None

    def release(self) -> None:
        if self.conn is not None and self.held:
            with contextlib.suppress(SQLAlchemyError):
                self.conn.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": ADVISORY_LOCK_KEY})
        self.held = False
        if self.conn is not None:
            with contextlib.suppress(SQLAlchemyError):
                self.conn.close()
            self.conn = None
        self.engine.dispose()


class FileLock:
    """An exclusive ``flock`` on a file beside the SQLite database (released when the process dies)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.handle: IO[str] | None = None

    def try_acquire(self) -> bool:
        if self.handle is not None:
            return True
        self.path.parent.mkdir(parents=True, exist_ok=True)
        handle = self.path.open("a+", encoding="utf-8")
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            handle.close()
            return False
        handle.seek(0)
        handle.truncate()
        handle.write(f"{socket.gethostname()}:{os.getpid()}\n")
        handle.flush()
        self.handle = handle
        return True

    def still_held(self) -> bool:
        return self.handle is not None

    def release(self) -> None:
        if self.handle is not None:
            fcntl.flock(self.handle.fileno(), fcntl.LOCK_UN)
            self.handle.close()
            self.handle = None


def lock_for(database_url: str) -> ActiveLock:
    url = make_url(database_url)
    if url.get_backend_name() == "sqlite":
        if not url.database or url.database == ":memory:":
            raise ConfigError("the scheduler needs a database file or PostgreSQL (not an in-memory SQLite)")
        return FileLock(Path(url.database + ".scheduler.lock"))
    return PostgresLock(database_url)


# --------------------------------------------------------------------------- timing


def build_trigger(job: JobSettings, timezone: str) -> Any:
    from apscheduler.triggers.cron import CronTrigger
    from apscheduler.triggers.interval import IntervalTrigger

    if job.cron:
        return CronTrigger.from_crontab(job.cron, timezone=timezone)
    return IntervalTrigger(seconds=job.interval_seconds or 60, start_date=INTERVAL_ORIGIN, timezone=timezone)


def latest_fire_time(trigger: Any, now: dt.datetime, *, lookback: dt.timedelta) -> dt.datetime:
    """The period a run fired at ``now`` belongs to: the trigger's latest fire time not after ``now``."""
    from apscheduler.triggers.interval import IntervalTrigger

    if isinstance(trigger, IntervalTrigger):
        step = trigger.interval.total_seconds()
        count = math.floor((now - INTERVAL_ORIGIN).total_seconds() / step + 1e-6)
        return (INTERVAL_ORIGIN + dt.timedelta(seconds=count * step)).astimezone(dt.UTC)
    fire = trigger.get_next_fire_time(None, now - lookback)
    latest = None
    while fire is not None and fire <= now + dt.timedelta(seconds=1):
        latest = fire
        fire = trigger.get_next_fire_time(fire, fire + dt.timedelta(seconds=1))
    return (latest or now.replace(microsecond=0)).astimezone(dt.UTC)


# --------------------------------------------------------------------------- the process


def instance_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


@dataclass
class Scheduler:
    """One scheduler process: standby until it holds the lock, then runs the planned jobs."""

    settings: Settings
    db: Database
    app: Flask
    live_sources: bool = True
    jobs: dict[str, JobSpec] = field(default_factory=lambda: dict(JOBS))
    instance: str = field(default_factory=instance_name)
    lock: ActiveLock | None = None
    parent_pid: int | None = None  # stop when this process is gone (the dev server's child)
    stopping: threading.Event = field(default_factory=threading.Event)

    def __post_init__(self) -> None:
        check_job_settings(self.settings, self.jobs)
        self.active_lock: ActiveLock = self.lock or lock_for(self.settings.database_url)
        self.started_at = utcnow()
        self._guards = {name: threading.Lock() for name in self.jobs}
        self._aps: Any = None
        self._triggers: dict[str, Any] = {}
        self.is_active = False

    # ----- planning

    def planned(self) -> dict[str, JobSettings]:
        """The jobs this instance schedules: enabled, and for scrapes an enabled source when live."""
        planned = {}
        for name, spec in self.jobs.items():
            job = self.settings.jobs[name]
            if not job.enabled:
                continue
            if spec.source is not None:
                source = self.settings.scrapers.sources.get(spec.source)
                if not self.live_sources or source is None or not source.enabled:
                    continue
            planned[name] = job
        return planned

    def _start_aps(self) -> None:
        from apscheduler.executors.pool import ThreadPoolExecutor
        from apscheduler.schedulers.background import BackgroundScheduler

        conf = self.settings.scheduler
        aps = BackgroundScheduler(
            executors={"default": ThreadPoolExecutor(conf.threads)},
            job_defaults={
                "coalesce": True,
                "max_instances": 1,
                "misfire_grace_time": conf.misfire_grace_seconds,
            },
            timezone=self.settings.timezone,
        )
        for name, job in self.planned().items():
            trigger = build_trigger(job, self.settings.timezone)
            self._triggers[name] = trigger
            aps.add_job(self._fire, trigger, args=[name], id=name, name=name)
        aps.start()
        self._aps = aps

    def next_runs(self) -> dict[str, str | None]:
        if self._aps is None:
            return {}
        out: dict[str, str | None] = {}
        for name in self._triggers:
            job = self._aps.get_job(name)
            when = getattr(job, "next_run_time", None) if job is not None else None
            out[name] = when.astimezone(dt.UTC).isoformat() if when is not None else None
        return out

    # ----- running one job

    def _fire(self, name: str) -> None:
        now = utcnow()
        lookback = dt.timedelta(seconds=self.settings.scheduler.misfire_grace_seconds + 60)
        slot = latest_fire_time(self._triggers[name], now, lookback=lookback)
        self.execute(name, trigger="schedule", scheduled_for=slot)

    def execute(
        self,
        name: str,
        *,
        trigger: str,
        scheduled_for: dt.datetime,
        attempt: int = 1,
        requested_by_id: int | None = None,
    ) -> str | None:
        """Run job ``name`` once for ``scheduled_for`` and record it; returns the run's status
        (None when it did not run: busy, or that period already recorded)."""
        spec = self.jobs[name]
        guard = self._guards[name]
        if not guard.acquire(blocking=False):
            if trigger != "schedule" and self._aps is not None:
                # "Run now" or a retry while the job runs: after it, not beside it.
                self._add_one_off(
                    name, trigger, scheduled_for, attempt, requested_by_id, utcnow() + BUSY_DELAY
                )
            else:
                log.info("job %s still running: this period is skipped", name)
            return None
        try:
            run_id = self._claim(name, trigger, scheduled_for, attempt, requested_by_id)
            if run_id is None:
                return None
            status, summary, error = "ok", None, None
            with logs.log_context(job=name, run=run_id, instance=self.instance):
                log.info("job %s started (%s, attempt %d)", name, trigger, attempt)
                context = JobContext(
                    settings=self.settings,
                    db=self.db,
                    app=self.app,
                    now=utcnow(),
                    scheduled_for=scheduled_for,
                    instance=self.instance,
                    stopping=self.stopping,
                    beat=self._beat,
                )
                try:
                    with self.app.app_context():
                        summary = spec.func(context)
                except Exception as exc:
                    status, error = "failed", traceback.format_exc()
                    summary = f"{type(exc).__name__}: {exc}"[:500]
                    log.exception("job %s failed (attempt %d)", name, attempt)
                retry_at = None
                if status == "failed":
                    if attempt < self.settings.scheduler.max_attempts and not self.stopping.is_set():
                        delay = self.settings.scheduler.retry_seconds * 2 ** (attempt - 1)
                        retry_at = utcnow() + dt.timedelta(seconds=delay)
                        summary = f"{summary} — nouvel essai dans {delay} s"
                    else:
                        summary = f"{summary} — abandon après {attempt} essai(s)"
                self._finish(run_id, status, summary, error)
                log.info("job %s %s: %s", name, status, summary)
                if retry_at is not None:
                    self._add_one_off(name, "retry", scheduled_for, attempt + 1, requested_by_id, retry_at)
            return status
        finally:
            guard.release()
            self._publish_quietly()

    def _add_one_off(
        self,
        name: str,
        trigger: str,
        scheduled_for: dt.datetime,
        attempt: int,
        by: int | None,
        at: dt.datetime,
    ) -> None:
        if self._aps is None or self.stopping.is_set():
            return
        suffix = f"{trigger}:{scheduled_for.isoformat()}"
        self._aps.add_job(
            self.execute,
            "date",
            run_date=at,
            args=[name],
            kwargs={
                "trigger": trigger,
                "scheduled_for": scheduled_for,
                "attempt": attempt,
                "requested_by_id": by,
            },
            id=f"{name}:{suffix}",
            replace_existing=True,
            misfire_grace_time=None,  # a retry or a request is never dropped for being late
        )

    def _claim(
        self, name: str, trigger: str, scheduled_for: dt.datetime, attempt: int, by: int | None
    ) -> int | None:
        from tenderpool.ops.models import JobRun

        try:
            with self.db.session_scope() as session:
                run = JobRun(
                    job=name,
                    trigger=trigger,
                    scheduled_for=scheduled_for,
                    attempt=attempt,
                    started_at=utcnow(),
                    status="running",
                    instance=self.instance,
                    requested_by_id=by,
                )
                session.add(run)
                session.flush()
                return run.id
        except IntegrityError:
            log.warning(
                "job %s: the period %s was already run (another instance?)", name, scheduled_for.isoformat()
            )
            return None

    def _finish(self, run_id: int, status: str, summary: str | None, error: str | None) -> None:
        from tenderpool.ops.models import JobRun

        with self.db.session_scope() as session:
            run = session.get(JobRun, run_id)
            if run is None:  # pruned meanwhile: nothing left to record
                return
            run.status, run.summary, run.error, run.finished_at = status, summary, error, utcnow()

    # ----- instance records

    def _save_instance(self, role: str) -> None:
        from tenderpool.ops.services import save_instance

        with self.db.session_scope() as session:
            save_instance(
                session,
                instance=self.instance,
                role=role,
                now=utcnow(),
                started_at=self.started_at,
                jobs=self.next_runs() if role == "active" else {},
            )

    def _beat(self) -> None:
        self._save_instance("active")

    def _publish_quietly(self) -> None:
        """Refresh the next runs the operations page shows (after each run; a failure only logs)."""
        if not self.is_active:
            return
        try:
            self._save_instance("active")
        except SQLAlchemyError as exc:
            log.warning("could not record the scheduler state: %s", exc.__class__.__name__)

    def _pick_requests(self) -> None:
        from tenderpool.ops.services import claim_requests

        with self.db.session_scope() as session:
            requests = claim_requests(session, instance=self.instance, now=utcnow())
            picked = [(r.id, r.job, r.requested_at, r.requested_by_id) for r in requests]
        for request_id, name, at, by in picked:
            if name not in self.jobs:
                log.warning("run-now request %d names an unknown job %r: ignored", request_id, name)
                continue
            log.info("run-now request %d: %s", request_id, name)
            self._add_one_off(name, "manual", at, 1, by, utcnow())

    # ----- the main loop

    def _install_signals(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return

        def stop(signum: int, _frame: Any) -> None:
            log.info("signal %s: finishing the running jobs, then stopping", signal.Signals(signum).name)
            self.stopping.set()

        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)

    def _parent_gone(self) -> bool:
        return self.parent_pid is not None and os.getppid() != self.parent_pid

    def run(self) -> int:
        """Standby until the lock is ours, then run jobs until stopped; returns the exit status."""
        self._install_signals()
        conf = self.settings.scheduler
        log.info(
            "scheduler %s starting (%s)",
            self.instance,
            "live sources" if self.live_sources else "no live sources",
        )
        announced_standby = False
        try:
            while not self.stopping.is_set():
                if self._parent_gone():
                    break
                if self.active_lock.try_acquire():
                    self._active_loop()
                    announced_standby = False
                    continue
                if not announced_standby:
                    log.info("scheduler %s is a standby: another instance is active", self.instance)
                    announced_standby = True
                try:
                    self._save_instance("standby")
                except SQLAlchemyError as exc:
                    log.warning("could not record the standby: %s", exc.__class__.__name__)
                self.stopping.wait(conf.standby_retry_seconds)
        finally:
            self.active_lock.release()
            with contextlib.suppress(SQLAlchemyError):
                self._save_instance("stopped")
            log.info("scheduler %s stopped", self.instance)
        return 0

    def _active_loop(self) -> None:
        from tenderpool.ops.services import interrupt_orphan_runs

        log.info("scheduler %s is now active", self.instance)
        with self.db.session_scope() as session:
            interrupted = interrupt_orphan_runs(session, instance=self.instance, now=utcnow())
        if interrupted:
            log.warning("%d job run(s) of a previous instance were cut short", interrupted)
        self._start_aps()
        self.is_active = True
        self._publish_quietly()  # the first heartbeat: alive at once, not a minute later
        try:
            while not self.stopping.wait(self.settings.scheduler.poll_seconds):
                if self._parent_gone():
                    self.stopping.set()
                    break
                if not self.active_lock.still_held():
                    log.error("scheduler %s lost its lock: stopping its jobs, back to standby", self.instance)
                    break
                try:
                    self._pick_requests()
                except SQLAlchemyError as exc:
                    log.warning("could not read the run-now requests: %s", exc.__class__.__name__)
        finally:
            self.is_active = False
            if self._aps is not None:
                # Nothing new starts, then the running jobs finish, and only then is APScheduler
                # shut down: its shutdown(wait=True) waits for the jobs while holding the lock of
                # its job store, which a running job takes to publish the next runs (a heartbeat
                # started just before a SIGTERM hung the scheduler that way).
                self._aps.pause()
                for guard in self._guards.values():  # a job holds its guard while it runs
                    guard.acquire()
                try:
                    self._aps.shutdown(wait=True)
                finally:
                    for guard in self._guards.values():
                        guard.release()
                self._aps = None
            self._triggers = {}


def run_scheduler(
    settings: Settings, db: Database, *, live_sources: bool = True, parent_pid: int | None = None
) -> int:
    """``tenderpool scheduler``: build the app (templates, mailer) and run until SIGTERM."""
    from tenderpool.app import build_app

    app = build_app(database=db)
    return Scheduler(settings, db, app, live_sources=live_sources, parent_pid=parent_pid).run()
