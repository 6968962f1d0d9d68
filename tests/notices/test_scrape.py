"""Scrape runs end to end: the real BOAMP HTTP code against a local fake of the ODS API, into the database."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from typing import Any

import pytest
from pytest_httpserver import HTTPServer
from sqlalchemy import func, select
from sqlalchemy.orm import Session
from werkzeug import Response

from scrapers.base import FetchPage, ParsedNotice, RawRecord
from scrapers.boamp import BoampSource
from tenderpool.db import Database
from tenderpool.notices.models import Publication, ScrapeRun, SourceCursor
from tenderpool.notices.scrape import default_window, run_scrape
from tests.scrapers.support import FakeOds, boamp_records, make_client

RECORDS_PATH = "/api/explore/v2.1/catalog/datasets/boamp/records"
DAY1, DAY2 = dt.date(2026, 11, 26), dt.date(2026, 11, 27)
T0 = dt.datetime(2026, 11, 28, 6, 0, tzinfo=dt.UTC)


def clock() -> dt.datetime:
    return T0


def _fake() -> FakeOds:
    return FakeOds(
        days={DAY1: [("FNS", 130)], DAY2: [("MAPA", 120)]}, templates=list(boamp_records().values())
    )


def _source(httpserver: HTTPServer, **options: Any) -> BoampSource:
    return BoampSource(make_client(), base_url=httpserver.url_for("/api/explore/v2.1"), **options)


def _publications(session: Session) -> int:
    return int(session.scalar(select(func.count()).select_from(Publication)) or 0)


def test_complete_run_stores_everything_and_advances_the_cursor(
    httpserver: HTTPServer, database: Database, session: Session
) -> None:
    httpserver.expect_request(RECORDS_PATH).respond_with_handler(_fake().handler)
    run = run_scrape(database, "boamp", _source(httpserver), since=DAY1, until=DAY2, now=clock)
    assert (run.status, run.fetched, run.expected, run.rejected) == ("ok", 250, 250, 0)
    assert _publications(session) == 250
    cursor = session.get(SourceCursor, "boamp")
    assert cursor is not None and cursor.complete_until == DAY2

    again = run_scrape(database, "boamp", _source(httpserver), since=DAY1, until=DAY2, now=clock)
    assert (again.status, again.unchanged, again.created, again.linked) == ("ok", 250, 0, 0)
    assert _publications(session) == 250


class Killed(BaseException):
    """Stands for the process being killed in the middle of a run."""


class DiesAfterFirstPage:
    def __init__(self, inner: BoampSource) -> None:
        self.inner = inner
        self.name = "boamp"

    def fetch(self, since: dt.date, until: dt.date) -> Iterator[FetchPage]:
        pages = self.inner.fetch(since, until)
        yield next(pages)
        raise Killed

    def parse(self, raw: RawRecord) -> ParsedNotice:
        return self.inner.parse(raw)


def test_interrupted_run_then_resumed_loses_nothing_and_duplicates_nothing(
    httpserver: HTTPServer, database: Database, session: Session
) -> None:
    httpserver.expect_request(RECORDS_PATH).respond_with_handler(_fake().handler)
    with pytest.raises(Killed):
        run_scrape(
            database, "boamp", DiesAfterFirstPage(_source(httpserver)), since=DAY1, until=DAY2, now=clock
        )
    assert _publications(session) == 100  # the first page was committed
    assert session.get(SourceCursor, "boamp") is None  # the cursor did not move
    interrupted = session.scalars(select(ScrapeRun)).one()
    assert interrupted.status == "running" and interrupted.fetched == 100

    since, _until = default_window(session, _settings(database), "boamp", now=T0)
    assert since <= DAY1  # the next run starts before the interrupted window again
    resumed = run_scrape(
        database, "boamp", _source(httpserver), since=DAY1, until=DAY2, now=lambda: T0 + dt.timedelta(hours=7)
    )
    assert resumed.status == "ok" and resumed.unchanged == 100 and resumed.fetched == 250
    assert _publications(session) == 250
    refs = session.scalars(select(Publication.source_ref)).all()
    assert len(refs) == len(set(refs)) == 250
    session.expire_all()
    assert session.get(ScrapeRun, interrupted.id).status == "failed"  # type: ignore[union-attr]


def _settings(database: Database) -> Any:
    from tenderpool.config import load_settings

    return load_settings(environ={})


def test_server_error_storm_fails_the_run_and_keeps_the_cursor(
    httpserver: HTTPServer, database: Database, session: Session
) -> None:
    httpserver.expect_request(RECORDS_PATH).respond_with_response(Response("upstream down", status=500))
    run = run_scrape(database, "boamp", _source(httpserver), since=DAY1, until=DAY2, now=clock)
    assert run.status == "failed" and run.fetched == 0
    assert any("500" in error for error in run.errors)
    assert session.get(SourceCursor, "boamp") is None


def test_500_after_some_pages_makes_a_partial_run(
    httpserver: HTTPServer, database: Database, session: Session
) -> None:
    fake = _fake()
    calls = {"n": 0}

    def flaky(request: Any) -> Response:
        calls["n"] += 1
        if calls["n"] > 2:
            return Response("boom", status=503)
        return fake.handler(request)

    httpserver.expect_request(RECORDS_PATH).respond_with_handler(flaky)
    run = run_scrape(database, "boamp", _source(httpserver), since=DAY1, until=DAY2, now=clock)
    assert run.status == "partial" and 0 < run.fetched < 250
    assert _publications(session) == run.fetched
    assert session.get(SourceCursor, "boamp") is None


def test_window_over_the_offset_cap_is_split_and_a_shortfall_is_partial(
    httpserver: HTTPServer, database: Database, session: Session
) -> None:
    # One day of one famille larger than the cap cannot be split further: what cannot be
    # fetched is reported, and the run is partial rather than silently short.
    fake = FakeOds(
        days={DAY1: [("FNS", 150)], DAY2: [("FNS", 90)]}, templates=list(boamp_records().values()), cap=120
    )
    httpserver.expect_request(RECORDS_PATH).respond_with_handler(fake.handler)
    run = run_scrape(
        database,
        "boamp",
        _source(httpserver, offset_cap=120, page_size=30),
        since=DAY1,
        until=DAY2,
        now=clock,
    )
    assert run.status == "partial"
    assert run.expected == 240 and run.fetched == 210
    assert run.errors[0].startswith("210 avis reçus sur 240")
    assert len(run.errors) >= 2  # the source's own reason for the day it could not split
    assert session.get(SourceCursor, "boamp") is None


def test_dry_run_stores_nothing(httpserver: HTTPServer, database: Database, session: Session) -> None:
    httpserver.expect_request(RECORDS_PATH).respond_with_handler(_fake().handler)
    run = run_scrape(database, "boamp", _source(httpserver), since=DAY1, until=DAY2, now=clock, dry_run=True)
    assert run.status == "ok" and run.fetched == 250 and run.is_dry_run
    assert _publications(session) == 0
    assert session.get(SourceCursor, "boamp") is None
