"""The scheduler in-process: settings of the jobs, failures recorded and retried, run-now requests."""

from __future__ import annotations

import datetime as dt
import secrets
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from apscheduler.triggers.cron import CronTrigger
from sqlalchemy import select
from sqlalchemy.orm import Session

from tenderpool import migrate
from tenderpool.config import ConfigError, load_settings
from tenderpool.db import Database
from tenderpool.ops.models import JobRequest, JobRun
from tenderpool.scheduler import (
    INTERVAL_ORIGIN,
    JOBS,
    FileLock,
    JobContext,
    JobSpec,
    Scheduler,
    build_trigger,
    check_job_settings,
    latest_fire_time,
)
from tests.conftest import TempDatabase

PARIS = "Europe/Paris"


def test_default_job_tables_match_the_registry() -> None:
    settings = load_settings(environ={})
    check_job_settings(settings)
    assert settings.jobs["heartbeat"].interval_seconds == 60
    assert settings.jobs["digests"].interval_seconds == 300
    boamp = build_trigger(settings.jobs["scrape_boamp"], PARIS)
    first = boamp.get_next_fire_time(None, dt.datetime(2026, 11, 28, 5, 0, tzinfo=dt.UTC))  # 06:00 Paris
    assert first.hour == 6 and first.minute == 0
    after_last = boamp.get_next_fire_time(None, dt.datetime(2026, 11, 28, 21, 30, tzinfo=dt.UTC))
    assert (after_last.day, after_last.hour) == (29, 6)  # nothing between 22:00 and 06:00
    assert len(settings.jobs["scrape_ted"].cron.split()[1].split(",")) == 2  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ({"heartbeat": {"every": 5}}, "unknown key(s) every"),
        ({"heartbeat": {"interval_seconds": 0}}, "interval_seconds must be"),
        ({"heartbeat": {"cron": "61 * * * *"}}, "is not a crontab line"),
        ({"heartbeat": {"enabled": "yes"}}, "enabled must be true or false"),
        ({"heartbeat": "often"}, "must be a table"),
    ],
)
def test_bad_job_settings_are_refused(table: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        load_settings(environ={}, overrides={"jobs": table})


def test_a_later_layer_swaps_cron_for_an_interval_and_unknown_jobs_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "local.toml"
    path.write_text('[jobs.scrape_boamp]\ninterval_seconds = 600\n[jobs.heartbeat]\ncron = "* * * * *"\n')
    settings = load_settings(environ={"TENDERPOOL_CONFIG": str(path)})
    assert (settings.jobs["scrape_boamp"].cron, settings.jobs["scrape_boamp"].interval_seconds) == (None, 600)
    assert (settings.jobs["heartbeat"].cron, settings.jobs["heartbeat"].interval_seconds) == (
        "* * * * *",
        None,
    )
    path.write_text("[jobs.sned_digests]\ninterval_seconds = 60\n")
    typo = load_settings(environ={"TENDERPOOL_CONFIG": str(path)})
    with pytest.raises(ConfigError, match=r"jobs\.sned_digests: no such job"):
        check_job_settings(typo)
    path.write_text("[scheduler]\npoll_second = 1\n")
    with pytest.raises(ConfigError, match=r"unknown setting 'scheduler\.poll_second'"):
        load_settings(environ={"TENDERPOOL_CONFIG": str(path)})


def test_periods_are_the_same_in_every_instance() -> None:
    settings = load_settings(environ={}, overrides={"jobs": {"heartbeat": {"interval_seconds": 90}}})
    trigger = build_trigger(settings.jobs["heartbeat"], PARIS)
    now = dt.datetime(2026, 11, 28, 10, 0, 40, tzinfo=dt.UTC)
    slot = latest_fire_time(trigger, now, lookback=dt.timedelta(minutes=5))
    assert slot <= now and (slot - INTERVAL_ORIGIN).total_seconds() % 90 == 0
    assert latest_fire_time(trigger, now + dt.timedelta(seconds=30), lookback=dt.timedelta(minutes=5)) == slot
    cron = CronTrigger.from_crontab("0 6-22/2 * * *", timezone=PARIS)
    late = dt.datetime(2026, 11, 28, 9, 3, tzinfo=dt.UTC)  # 10:03 Paris, fired 3 minutes late
    assert latest_fire_time(cron, late, lookback=dt.timedelta(minutes=10)) == dt.datetime(
        2026, 11, 28, 9, 0, tzinfo=dt.UTC
    )


# --------------------------------------------------------------------------- a scheduler in this process


@pytest.fixture(scope="module")
def job_db(temp_db_factory: Any) -> TempDatabase:
    db: TempDatabase = temp_db_factory(f"jobs_{secrets.token_hex(3)}")
    migrate.upgrade(db.engine)
    return db


class Flaky:
    """Fails its first ``failures`` calls, then succeeds."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.calls = 0

    def __call__(self, ctx: JobContext) -> str:
        self.calls += 1
        if self.calls <= self.failures:
            raise RuntimeError(f"source indisponible (appel {self.calls})")
        return f"fait au {self.calls}e appel"


@pytest.fixture
def make_scheduler(job_db: TempDatabase, tmp_path: Path) -> Iterator[Any]:
    from tenderpool.app import build_app

    made: list[Scheduler] = []

    def make(extra_jobs: dict[str, Any], *, max_attempts: int = 3) -> Scheduler:
        jobs = {name: {"enabled": False} for name in JOBS}
        jobs.update({name: {"interval_seconds": 3600} for name in extra_jobs})
        overrides = {
            "env": "test",
            "database_url": job_db.url,
            "app": {"instance_path": str(tmp_path / "instance")},
            "jobs": jobs,
            "scheduler": {
                "retry_seconds": 1,
                "max_attempts": max_attempts,
                "poll_seconds": 0.2,
                "standby_retry_seconds": 0.2,
            },
        }
        settings = load_settings(environ={}, overrides=overrides)
        database = Database(job_db.url, engine=job_db.engine)
        # The app (templates, mailer) knows the real registry only: build it without the test jobs.
        app = build_app({**overrides, "jobs": {}}, database=database)
        registry = {**JOBS, **{name: JobSpec(name, name, func) for name, func in extra_jobs.items()}}
        scheduler = Scheduler(
            settings, database, app, jobs=registry, lock=FileLock(tmp_path / "test.lock"),
            instance=f"test:{secrets.token_hex(3)}",
        )  # fmt: skip
        made.append(scheduler)
        return scheduler

    yield make
    for scheduler in made:
        scheduler.stopping.set()
        scheduler.active_lock.release()


def _runs(job_db: TempDatabase, job: str) -> list[JobRun]:
    with Session(job_db.engine) as session:
        return list(session.scalars(select(JobRun).where(JobRun.job == job).order_by(JobRun.attempt)))


def _wait(check: Any, timeout: float = 30) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if value := check():
            return value
        time.sleep(0.05)
    raise AssertionError("timed out")


def _active(scheduler: Scheduler) -> threading.Thread:
    assert scheduler.active_lock.try_acquire()
    thread = threading.Thread(target=scheduler._active_loop, daemon=True)
    thread.start()
    _wait(lambda: scheduler.is_active)
    return thread


def test_a_failing_job_is_recorded_with_its_traceback_and_retried(
    make_scheduler: Any, job_db: TempDatabase
) -> None:
    name = f"flaky_{secrets.token_hex(2)}"
    flaky = Flaky(failures=1)
    scheduler = make_scheduler({name: flaky})
    thread = _active(scheduler)
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    assert scheduler.execute(name, trigger="schedule", scheduled_for=now) == "failed"
    first, retried = _wait(lambda: len(runs := _runs(job_db, name)) == 2 and runs[1].status == "ok" and runs)
    scheduler.stopping.set()
    thread.join(timeout=30)
    assert (first.status, first.attempt, first.trigger) == ("failed", 1, "schedule")
    assert "RuntimeError: source indisponible (appel 1)" in (first.error or "")
    assert "Traceback" in (first.error or "") and "nouvel essai dans 1 s" in (first.summary or "")
    assert (retried.attempt, retried.trigger, retried.scheduled_for) == (2, "retry", now)
    assert retried.summary == "fait au 2e appel" and retried.error is None
    assert retried.instance == scheduler.instance


def test_retries_stop_after_max_attempts_and_a_period_runs_once(
    make_scheduler: Any, job_db: TempDatabase
) -> None:
    name = f"broken_{secrets.token_hex(2)}"
    broken = Flaky(failures=99)
    scheduler = make_scheduler({name: broken}, max_attempts=2)
    thread = _active(scheduler)
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    scheduler.execute(name, trigger="schedule", scheduled_for=now)
    _wait(lambda: len(_runs(job_db, name)) == 2 and _runs(job_db, name)[1].status == "failed")
    # The same period again (a second instance that believes it is active): refused, not run.
    assert scheduler.execute(name, trigger="schedule", scheduled_for=now) is None
    scheduler.stopping.set()
    thread.join(timeout=30)
    runs = _runs(job_db, name)
    assert [(r.attempt, r.status) for r in runs] == [(1, "failed"), (2, "failed")]
    assert "abandon après 2 essai(s)" in (runs[1].summary or "")
    assert broken.calls == 2


def test_run_now_requests_are_picked_up_by_the_active_scheduler(
    make_scheduler: Any, job_db: TempDatabase
) -> None:
    name = f"manual_{secrets.token_hex(2)}"
    job = Flaky(failures=0)
    scheduler = make_scheduler({name: job})
    with Session(job_db.engine) as session:
        session.add(JobRequest(job=name, requested_at=dt.datetime.now(dt.UTC)))
        session.commit()
    thread = _active(scheduler)
    (run,) = _wait(lambda: [r for r in _runs(job_db, name) if r.status == "ok"])
    scheduler.stopping.set()
    thread.join(timeout=30)
    assert run.trigger == "manual" and job.calls == 1
    with Session(job_db.engine) as session:
        request = session.scalars(select(JobRequest).where(JobRequest.job == name)).one()
        assert request.picked_by == scheduler.instance and request.picked_at is not None


def test_a_scheduler_without_its_lock_only_waits(make_scheduler: Any, tmp_path: Path) -> None:
    holder = FileLock(tmp_path / "test.lock")
    assert holder.try_acquire()
    scheduler = make_scheduler({})
    thread = threading.Thread(target=scheduler.run, daemon=True)
    thread.start()
    time.sleep(0.5)
    assert not scheduler.is_active
    holder.release()
    _wait(lambda: scheduler.is_active)
    scheduler.stopping.set()
    thread.join(timeout=30)
    assert not thread.is_alive()


def test_a_stop_waits_for_a_running_job_that_publishes_the_next_runs(
    make_scheduler: Any, job_db: TempDatabase
) -> None:
    """A job that beats (asks APScheduler for the next runs) after the stop began: the scheduler
    lets it finish, then stops. Shutting APScheduler down first hung here: its shutdown waits for
    the running jobs while holding the job store's lock, which the beat needs."""
    name = f"beating_{secrets.token_hex(2)}"
    started, release, beaten = threading.Event(), threading.Event(), threading.Event()

    def job(ctx: JobContext) -> str:
        started.set()
        release.wait(30)
        ctx.beat()
        beaten.set()
        return "publié"

    scheduler = make_scheduler({name: job})
    with Session(job_db.engine) as session:
        session.add(JobRequest(job=name, requested_at=dt.datetime.now(dt.UTC)))
        session.commit()
    thread = _active(scheduler)
    assert started.wait(30)
    scheduler.stopping.set()
    _wait(lambda: not scheduler.is_active)  # the stop has begun…
    time.sleep(0.5)  # …and got as far as it can while the job runs
    release.set()
    thread.join(timeout=30)
    assert not thread.is_alive() and beaten.is_set()
    assert [(r.status, r.summary) for r in _runs(job_db, name)] == [("ok", "publié")]
