"""BoampSource.fetch against a local fake of the ODS records endpoint.

The fake (``support.FakeOds``) serves records built from the real fixture records
with varied idweb/dateparution/famille, and enforces the real API rules
(``order_by``, ``limit`` ≤ 100, ``offset + limit`` ≤ cap): a request breaking them
gets an ODS-style HTTP 400, which the client raises as ``QueryError``.
"""

from __future__ import annotations

import datetime as dt
import json
import time
from typing import Any

import pytest
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from scrapers.base import FetchError, FetchPage, QueryError
from scrapers.boamp import BoampSource
from scrapers.http import HttpClient

from .support import FakeOds, boamp_records, make_client, respond_json, slim

RECORDS_PATH = "/api/explore/v2.1/catalog/datasets/boamp/records"


def source_for(httpserver: HTTPServer, client: HttpClient, **options: Any) -> BoampSource:
    return BoampSource(client, base_url=httpserver.url_for("/api/explore/v2.1"), **options)


def all_records(pages: list[FetchPage]) -> list[str]:
    return [r.source_ref for page in pages for r in page.records]


def test_paging_sends_the_documented_query_and_yields_pages(httpserver: HTTPServer) -> None:
    fake = FakeOds(days={dt.date(2026, 1, 21): [("FNS", 250)]}, templates=list(boamp_records().values()))
    httpserver.expect_request(RECORDS_PATH).respond_with_handler(fake.handler)
    with make_client() as client:
        source = source_for(httpserver, client)
        pages = list(source.fetch(dt.date(2026, 1, 20), dt.date(2026, 1, 22)))
        first = pages[0].records[0]
        notice = source.parse(first)

    assert [len(p.records) for p in pages] == [100, 100, 50]
    assert {p.total_count for p in pages} == {250}
    assert {p.window for p in pages} == {(dt.date(2026, 1, 20), dt.date(2026, 1, 22))}
    assert all(p.partial_reason is None and p.scope is None for p in pages)
    refs = all_records(pages)
    assert len(set(refs)) == 250
    assert [r["offset"] for r in fake.requests] == ["0", "100", "200"]
    assert fake.requests[0] == {
        "where": "dateparution >= date'2026-01-20' and dateparution <= date'2026-01-22' "
        'and code_departement in ("77","91")',
        "order_by": "dateparution asc, idweb asc",
        "limit": "100",
        "offset": "0",
    }
    # the payload is the record's JSON object, the ref its idweb, and it parses
    assert first.source == "boamp" and first.content_type == "application/json"
    assert json.loads(first.payload)["idweb"] == first.source_ref
    assert first.url is not None and "offset=0" in first.url
    assert first.fetched_at.tzinfo is not None
    assert notice.source_ref == first.source_ref
    assert notice.published_at == dt.date(2026, 1, 21)


def test_empty_window_yields_one_empty_page(httpserver: HTTPServer) -> None:
    fake = FakeOds(days={}, templates=[slim(r) for r in boamp_records().values()])
    httpserver.expect_request(RECORDS_PATH).respond_with_handler(fake.handler)
    with make_client() as client:
        pages = list(source_for(httpserver, client).fetch(dt.date(2026, 1, 1), dt.date(2026, 1, 1)))
    assert len(pages) == 1 and pages[0].records == [] and pages[0].total_count == 0


def test_windows_over_the_cap_are_halved_recursively(httpserver: HTTPServer) -> None:
    days = {dt.date(2026, 1, d): [("MAPA", 25)] for d in range(1, 5)}
    fake = FakeOds(days=days, templates=list(boamp_records().values()), cap=30)
    httpserver.expect_request(RECORDS_PATH).respond_with_handler(fake.handler)
    with make_client() as client:
        source = source_for(httpserver, client, page_size=10, offset_cap=30)
        pages = list(source.fetch(dt.date(2026, 1, 1), dt.date(2026, 1, 4)))
        parsed = [source.parse(page.records[0]) for page in pages if page.records]
    refs = all_records(pages)
    assert len(refs) == len(set(refs)) == 100
    windows = [p.window for p in pages if p.window]
    assert windows == sorted(windows)
    assert set(windows) == {(dt.date(2026, 1, d), dt.date(2026, 1, d)) for d in range(1, 5)}
    assert all(p.total_count == 25 for p in pages)
    assert all(p.partial_reason is None for p in pages)
    assert {n.published_at for n in parsed} == {dt.date(2026, 1, d) for d in range(1, 5)}


def test_uneven_split_keeps_windows_under_the_cap(httpserver: HTTPServer) -> None:
    days = {
        dt.date(2026, 1, 1): [("MAPA", 12)],
        dt.date(2026, 1, 2): [("FNS", 15)],
        dt.date(2026, 1, 3): [("MAPA", 9)],
    }
    days[dt.date(2026, 1, 4)] = [("MAPA", 20)]
    fake = FakeOds(days=days, templates=[slim(r) for r in boamp_records().values()], cap=30)
    httpserver.expect_request(RECORDS_PATH).respond_with_handler(fake.handler)
    with make_client() as client:
        pages = list(
            source_for(httpserver, client, page_size=10, offset_cap=30).fetch(
                dt.date(2026, 1, 1), dt.date(2026, 1, 4)
            )
        )
    assert len(all_records(pages)) == 56
    assert {(p.window, p.total_count) for p in pages} == {
        ((dt.date(2026, 1, 1), dt.date(2026, 1, 2)), 27),
        ((dt.date(2026, 1, 3), dt.date(2026, 1, 4)), 29),
    }


def test_a_day_over_10000_is_split_by_famille_and_reported_partial(httpserver: HTTPServer) -> None:
    day, next_day = dt.date(2026, 1, 5), dt.date(2026, 1, 6)
    fake = FakeOds(
        days={day: [("MAPA", 10_150), ("FNS", 1_850)], next_day: [("FNS", 40)]},
        templates=[slim(r) for r in boamp_records().values()],
    )
    httpserver.expect_request(RECORDS_PATH).respond_with_handler(fake.handler)
    started = time.monotonic()
    with make_client() as client:
        pages = list(source_for(httpserver, client).fetch(day, next_day))
    assert time.monotonic() - started < 10

    refs = all_records(pages)
    assert len(refs) == len(set(refs)) == 10_000 + 1_850 + 40
    mapa = [p for p in pages if p.scope == 'famille="MAPA"']
    fns = [p for p in pages if p.scope == 'famille="FNS"']
    rest = [p for p in pages if p.scope is None]
    assert {p.total_count for p in mapa} == {10_150} and len(mapa) == 100
    assert {p.total_count for p in fns} == {1_850}
    assert [p.window for p in rest] == [(next_day, next_day)]
    partial = [p for p in pages if p.partial_reason]
    assert partial == [mapa[-1]]
    assert partial[0].partial_reason is not None
    assert "10150 records counted" in partial[0].partial_reason
    assert 'famille="MAPA"' in partial[0].partial_reason
    assert "2026-01-05" in partial[0].partial_reason
    # the fake answers 400 to any offset + limit over 10 000: none was sent
    assert max(int(r["offset"]) + int(r["limit"]) for r in fake.requests if "offset" in r) <= 10_000
    assert any(r.get("group_by") == "famille" for r in fake.requests)


def test_duplicate_idweb_across_pages_is_dropped(httpserver: HTTPServer) -> None:
    records = [slim(r) for r in boamp_records().values()][:3]

    def shifting(request: Request) -> Response:
        offset = int(request.args["offset"])
        if offset == 0:
            return respond_json({"total_count": 4, "results": records[:2]})
        if offset == 2:  # a record was inserted before: the page repeats one
            return respond_json({"total_count": 4, "results": records[1:3]})
        return respond_json({"total_count": 4, "results": []})

    httpserver.expect_request(RECORDS_PATH).respond_with_handler(shifting)
    with make_client() as client:
        pages = list(
            source_for(httpserver, client, page_size=2).fetch(dt.date(2026, 1, 21), dt.date(2026, 1, 21))
        )
    assert all_records(pages) == [r["idweb"] for r in records]


def test_query_error_of_the_source_reaches_the_caller(httpserver: HTTPServer) -> None:
    fake = FakeOds(days={}, templates=[])
    httpserver.expect_request(RECORDS_PATH).respond_with_handler(fake.handler)
    with make_client() as client, pytest.raises(QueryError, match="unexpected where clause"):
        list(
            source_for(httpserver, client, departments=("69",)).fetch(
                dt.date(2026, 1, 1), dt.date(2026, 1, 1)
            )
        )


def test_department_filter_sends_both_forms_of_leading_zero_codes() -> None:
    with make_client() as client:
        source = BoampSource(client, departments=("2", "91", "2A"))
    assert source.departments == ("02", "91", "2A")
    assert source.department_filter() == 'code_departement in ("02","2","91","2A")'


def test_invalid_arguments() -> None:
    with make_client() as client:
        with pytest.raises(ValueError):
            BoampSource(client, page_size=101)
        with pytest.raises(ValueError):
            BoampSource(client, departments=("999",))
        with pytest.raises(ValueError):
            list(BoampSource(client).fetch(dt.date(2026, 1, 2), dt.date(2026, 1, 1)))


def test_a_response_without_results_is_a_fetch_error(httpserver: HTTPServer) -> None:
    httpserver.expect_request(RECORDS_PATH).respond_with_json({"total_count": 3})
    with make_client() as client, pytest.raises(FetchError, match="no 'results' list"):
        list(source_for(httpserver, client).fetch(dt.date(2026, 1, 1), dt.date(2026, 1, 1)))
