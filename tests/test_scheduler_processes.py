"""Real `tenderpool scheduler` processes against one database (the engine under test).

On PostgreSQL this exercises the advisory lock, on SQLite the file lock. Intervals are
short; every wait has a generous timeout and no test depends on how fast a machine is.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import secrets
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from pytest_httpserver import HTTPServer
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session
from werkzeug import Request, Response

from tenderpool import migrate
from tenderpool.notices.models import Publication, ScrapeRun, SourceCursor
from tenderpool.ops.models import JobRequest, JobRun, SchedulerInstance
from tests.conftest import TempDatabase
from tests.scrapers.support import FakeOds, boamp_records

pytestmark = pytest.mark.slow
TIMEOUT = 60.0
FAST = """
[scheduler]
standby_retry_seconds = 0.5
poll_seconds = 0.3
retry_seconds = 1
[jobs.scrape_boamp]
enabled = false
[jobs.scrape_ted]
enabled = false
[jobs.digests]
enabled = false
[jobs.document_reminders]
enabled = false
[jobs.retention]
enabled = false
[jobs.prune_api_usage]
interval_seconds = 2
[jobs.heartbeat]
interval_seconds = 1
"""


def wait_for(check: Callable[[], Any], what: str, timeout: float = TIMEOUT) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture
def sched_db(temp_db_factory: Any) -> TempDatabase:
    db: TempDatabase = temp_db_factory(f"sched_{secrets.token_hex(3)}")  # SQLite: one file per test
    migrate.upgrade(db.engine)
    return db


class Processes:
    def __init__(self, db: TempDatabase, tmp_path: Path) -> None:
        self.db = db
        self.tmp_path = tmp_path
        self.started: list[subprocess.Popen[bytes]] = []

    def env(self, config: str, **extra: str) -> dict[str, str]:
        path = self.tmp_path / "scheduler.toml"
        path.write_text(config, encoding="utf-8")
        env = {k: v for k, v in os.environ.items() if not k.startswith("TENDERPOOL_")}
        env.update(
            TENDERPOOL_CONFIG=str(path),
            TENDERPOOL_DATABASE_URL=self.db.url,
            TENDERPOOL_APP_INSTANCE_PATH=str(self.tmp_path / "instance"),
            TENDERPOOL_SCRAPERS_POLITENESS_DELAY_SECONDS="0",
            TENDERPOOL_SCRAPERS_MAX_TRIES="1",
        )
        env.update(extra)
        return env

    def start(self, config: str = FAST, **extra: str) -> subprocess.Popen[bytes]:
        with (self.tmp_path / f"scheduler-{len(self.started)}.log").open("wb") as log:
            process = subprocess.Popen(
                [
                    sys.executable,
                    "-c",
                    "import sys; from tenderpool.cli import main; sys.exit(main())",
                    "scheduler",
                ],
                env=self.env(config, **extra),
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        self.started.append(process)
        return process

    def logs(self) -> str:
        return "\n".join(p.read_text(errors="replace") for p in sorted(self.tmp_path.glob("scheduler-*.log")))


@pytest.fixture
def procs(sched_db: TempDatabase, tmp_path: Path) -> Iterator[Processes]:
    processes = Processes(sched_db, tmp_path)
    yield processes
    for process in processes.started:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=30)


def _runs(engine: Engine, **where: Any) -> list[JobRun]:
    with Session(engine) as session:
        query = select(JobRun).order_by(JobRun.id)
        for key, value in where.items():
            query = query.where(getattr(JobRun, key) == value)
        return list(session.scalars(query))


def _role(engine: Engine, pid: int) -> str | None:
    with Session(engine) as session:
        rows = session.scalars(
            select(SchedulerInstance).where(SchedulerInstance.instance.endswith(f":{pid}"))
        )
        row = rows.first()
        return row.role if row is not None else None


def test_two_schedulers_run_each_period_once_and_the_standby_takes_over(procs: Processes) -> None:
    engine = procs.db.engine
    first = procs.start()
    wait_for(lambda: _role(engine, first.pid) == "active", "the first scheduler to be active")
    second = procs.start()
    wait_for(lambda: _role(engine, second.pid) == "standby", "the second scheduler to wait as a standby")
    # Let both run side by side for a few periods of each job.
    wait_for(lambda: len(_runs(engine, job="prune_api_usage", status="ok")) >= 2, "two periods")
    assert _role(engine, second.pid) == "standby"

    first.send_signal(signal.SIGKILL)
    first.wait(timeout=30)
    killed_at = dt.datetime.now(dt.UTC)
    wait_for(
        lambda: any(
            r.instance.endswith(f":{second.pid}") for r in _runs(engine, job="prune_api_usage", status="ok")
        ),
        "the standby to take over and run the next period",
    )
    assert _role(engine, second.pid) == "active"
    second.send_signal(signal.SIGTERM)
    assert second.wait(timeout=TIMEOUT) == 0

    runs = _runs(engine)
    assert {r.instance.rsplit(":", 1)[1] for r in runs} == {str(first.pid), str(second.pid)}
    for job in ("heartbeat", "prune_api_usage"):
        mine = [r for r in runs if r.job == job and r.trigger == "schedule"]
        slots = [r.scheduled_for for r in mine]
        assert len(slots) == len(set(slots)), f"{job}: a period ran twice"
        by_first = [r.scheduled_for for r in mine if r.instance.endswith(f":{first.pid}")]
        by_second = [r.scheduled_for for r in mine if r.instance.endswith(f":{second.pid}")]
        assert by_first and by_second
        # Never both at once: every period of the standby comes after the active one's last.
        assert max(by_first) < min(by_second)
        assert min(r.started_at for r in mine if r.instance.endswith(f":{second.pid}")) > killed_at
    assert "Traceback" not in procs.logs()


def _count(engine: Engine, model: Any, *where: Any) -> int:
    with Session(engine) as session:
        return int(session.scalar(select(func.count()).select_from(model).where(*where)) or 0)


def _scrape_run(engine: Engine) -> ScrapeRun | None:
    with Session(engine) as session:
        return session.scalars(select(ScrapeRun).order_by(ScrapeRun.id.desc()).limit(1)).first()


@dataclass
class SlowBoamp:
    url: str
    # Closed once 100 records are served: the next page waits until the test has seen the run
    # half-way and opens it. Without the gate, a loaded machine could let the scrape run past
    # "half-way" between two polls of the test.
    gate: threading.Event


@pytest.fixture
def slow_boamp(httpserver: HTTPServer) -> Iterator[SlowBoamp]:
    """A fake BOAMP API (the real scraper's protocol) with 350 records over two days, 0.2 s a page."""
    today = dt.datetime.now(dt.UTC).date()
    fake = FakeOds(
        days={today - dt.timedelta(days=1): [("FNS", 250)], today: [("MAPA", 100)]},
        templates=list(boamp_records().values()),
    )
    gate = threading.Event()
    served = [0]

    def slow(request: Request) -> Response:
        if served[0] >= 100:
            gate.wait(TIMEOUT)
        time.sleep(0.2)
        response = fake.handler(request)
        served[0] += len(json.loads(response.get_data()).get("results", []))
        return response

    httpserver.expect_request("/api/explore/v2.1/catalog/datasets/boamp/records").respond_with_handler(slow)
    yield SlowBoamp(httpserver.url_for("/api/explore/v2.1"), gate)
    gate.set()  # never leave the server thread waiting


SCRAPE = FAST.replace("[jobs.scrape_boamp]\nenabled = false", "[jobs.scrape_boamp]\nenabled = true")


def _request_scrape(engine: Engine) -> None:
    with Session(engine) as session:
        session.add(JobRequest(job="scrape_boamp", requested_at=dt.datetime.now(dt.UTC)))
        session.commit()


def test_sigterm_during_a_scrape_lets_it_finish_then_exits(procs: Processes, slow_boamp: SlowBoamp) -> None:
    engine = procs.db.engine
    _request_scrape(engine)
    process = procs.start(SCRAPE, TENDERPOOL_SCRAPERS_BOAMP_BASE_URL=slow_boamp.url)
    wait_for(
        lambda: (run := _scrape_run(engine)) is not None and run.status == "running" and run.fetched >= 100,
        "the scrape to be half-way",
    )
    process.send_signal(signal.SIGTERM)
    slow_boamp.gate.set()
    assert process.wait(timeout=TIMEOUT) == 0
    run = _scrape_run(engine)
    assert run is not None and (run.status, run.fetched, run.expected) == ("ok", 350, 350)
    assert _count(engine, Publication) == 350
    with Session(engine) as session:
        assert session.get(SourceCursor, "boamp") is not None
    (job_run,) = _runs(engine, job="scrape_boamp")
    assert (job_run.status, job_run.trigger) == ("ok", "manual")
    assert "ok" in (job_run.summary or "")


def test_a_killed_scrape_resumes_without_loss(procs: Processes, slow_boamp: SlowBoamp) -> None:
    engine = procs.db.engine
    _request_scrape(engine)
    first = procs.start(SCRAPE, TENDERPOOL_SCRAPERS_BOAMP_BASE_URL=slow_boamp.url)
    wait_for(
        lambda: (run := _scrape_run(engine)) is not None and run.status == "running" and run.fetched >= 100,
        "the scrape to be half-way",
    )
    first.send_signal(signal.SIGKILL)
    first.wait(timeout=30)
    slow_boamp.gate.set()
    stored = _count(engine, Publication)
    assert 100 <= stored < 350
    with Session(engine) as session:
        assert session.get(SourceCursor, "boamp") is None  # the window is not complete: no cursor

    _request_scrape(engine)
    procs.start(SCRAPE, TENDERPOOL_SCRAPERS_BOAMP_BASE_URL=slow_boamp.url)
    wait_for(lambda: _runs(engine, job="scrape_boamp", status="ok"), "the resumed scrape")
    assert _count(engine, Publication) == 350
    with Session(engine) as session:
        refs = list(session.scalars(select(Publication.source_ref)))
        assert session.get(SourceCursor, "boamp") is not None
    assert len(refs) == len(set(refs)) == 350
    killed = _runs(engine, job="scrape_boamp", status="failed")
    assert len(killed) == 1 and "interrompu" in (killed[0].error or "")
