"""TedSource: search-result parsing, and fetch through a local fake of the search API."""

from __future__ import annotations

import copy
import datetime as dt
import json
from collections.abc import Callable
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from scrapers.base import FetchError, Nature, QueryError
from scrapers.ted import SEARCH_FIELDS, TedSource, parse_ted_record

from .support import fixture_bytes, fixture_json, make_client, raw_json, raw_xml, respond_json

PARIS = ZoneInfo("Europe/Paris")
SEARCH = "/v3/notices/search"


# ----------------------------------------------------------------------------- parse


def test_parse_the_real_search_response() -> None:
    response = fixture_json("ted/ted-rdf-conversion-pipeline_ted_api_response.json")
    notice = parse_ted_record(raw_json(response["notices"][0], source="ted", ref="67623-2022"))
    assert notice.source == "ted"
    assert notice.source_ref == "67623-2022"
    assert notice.published_at == dt.date(2022, 2, 7)  # PD 2022-02-06T23:00:00Z is 7 Feb in Brussels
    assert notice.url == "https://ted.europa.eu/fr/notice/-/detail/67623-2022"  # links.html.FRA
    assert notice.title == "Avis TED 67623-2022"
    assert any("notice-title absent" in w for w in notice.warnings)


def test_parse_search_fields_i18n_and_lots() -> None:
    notice_json = {
        "publication-number": "00047522-2024",
        "notice-identifier": "A638AB6B-7005-48A9-A9C7-B91BFC6142F1",
        "notice-version": "1",
        "procedure-identifier": "240d1ad9-b2d8-45ec-bea9-d11e7a75b28e",
        "notice-type": "cn-standard",
        "publication-date": "2024-01-24+01:00",
        "notice-title": {"eng": "France – Refuse collection", "fra": "France – Services de collecte"},
        "buyer-name": {"fra": ["Communauté de Communes du Piémont Cévenol"]},
        "buyer-country": ["FRA"],
        "organisation-identifier-buyer": ["20003441100013"],
        "place-of-performance": ["FRJ12", "FRA"],
        "classification-cpv": ["90511100", "90511400", "90511100"],
        "contract-nature": ["services"],
        "identifier-lot": ["LOT-0001", "LOT-0002"],
        "title-lot": {"fra": ["Collecte du verre", "Collecte du papier"]},
        "deadline-receipt-tender-date-lot": ["2024-02-28+02:00", "2024-03-01+02:00"],
        "deadline-receipt-tender-time-lot": ["12:00:00+02:00", "10:00:00+02:00"],
        "estimated-value-lot": [100000, 50000.5],
        "estimated-value-cur-lot": ["EUR", "EUR"],
    }
    notice = parse_ted_record(raw_json(notice_json, source="ted"))
    assert notice.source_ref == "47522-2024"
    assert notice.title == "France – Services de collecte"
    assert notice.nature is Nature.INITIAL
    assert notice.buyer_name == "Communauté de Communes du Piémont Cévenol"
    assert notice.buyer_siret == "20003441100013"
    assert notice.notice_uuid == "a638ab6b-7005-48a9-a9c7-b91bfc6142f1"
    assert notice.notice_version == "01"
    assert notice.cpv == ("90511100", "90511400")
    assert notice.nuts == ("FRJ12",)
    assert notice.departments == ("30",)
    assert notice.deadline_at == dt.datetime(2024, 2, 28, 12, 0, tzinfo=PARIS)
    assert [(lot.number, lot.title, lot.deadline_at) for lot in notice.lots] == [
        ("1", "Collecte du verre", dt.datetime(2024, 2, 28, 12, 0, tzinfo=PARIS)),
        ("2", "Collecte du papier", dt.datetime(2024, 3, 1, 10, 0, tzinfo=PARIS)),
    ]
    assert str(notice.estimated_value) == "150000.5" and notice.currency == "EUR"


def test_parse_change_and_award_search_results() -> None:
    change = parse_ted_record(
        raw_json(
            {
                "publication-number": "1234-2026",
                "notice-type": "cn-standard",
                "change-notice-version-identifier": "C4C415EE-ac08-4465-8fa6-57568cf69462-01",
                "notice-title": {"pol": "Tytuł"},
            },
            source="ted",
        )
    )
    assert change.nature is Nature.CORRIGENDUM
    assert change.previous_refs == ("c4c415ee-ac08-4465-8fa6-57568cf69462-01",)
    assert change.title == "Tytuł"  # any language when neither fra nor eng
    award = parse_ted_record(
        raw_json(
            {
                "publication-number": "5678-2026",
                "notice-type": "can-standard",
                "notice-title": {"fra": "Résultat"},
                "winner-name": {"fra": ["ACME", "ACME", "Beta"]},
            },
            source="ted",
        )
    )
    assert award.nature is Nature.AWARD
    assert [a.winner_name for a in award.awards] == ["ACME", "Beta"]


def test_xml_payload_goes_to_the_eforms_parser() -> None:
    raw = raw_xml(fixture_bytes("eforms/ted-published_2024-OJS017-00047522.xml"), "ted", "47522-2024")
    notice = parse_ted_record(raw)
    assert notice.source == "ted"
    assert notice.source_ref == "47522-2024"
    assert notice.deadline_at == dt.datetime(2024, 2, 28, 12, 0, tzinfo=PARIS)


# ----------------------------------------------------------------------------- fetch


def search_notice(server: HTTPServer, number: str) -> dict[str, Any]:
    """The real sample notice with another publication number and links to the local server."""
    notice: dict[str, Any] = copy.deepcopy(
        fixture_json("ted/ted-rdf-conversion-pipeline_ted_api_response.json")["notices"][0]
    )
    notice["publication-number"] = number
    notice["ND"] = number
    notice["links"]["xml"]["MUL"] = server.url_for(f"/notice/{number}/xml")
    return notice


class FakeTed:
    """Pages keyed by the iteration token sent (``None`` = first page)."""

    def __init__(self, pages: dict[str | None, tuple[list[dict[str, Any]], str | None]], total: Any) -> None:
        self.pages = pages
        self.total = total
        self.bodies: list[dict[str, Any]] = []
        self.failures: dict[str, Callable[[], Response]] = {}

    def handler(self, request: Request) -> Response:
        body = json.loads(request.data)
        self.bodies.append(body)
        token = body.get("iterationNextToken")
        if token in self.failures:
            return self.failures.pop(token)()
        notices, next_token = self.pages[token]
        return respond_json(
            {"notices": notices, "totalNoticeCount": self.total, "iterationNextToken": next_token}
        )


def ted_source(server: HTTPServer, client: Any, **options: Any) -> TedSource:
    return TedSource(client, base_url=server.url_for(""), **options)


def test_iteration_follows_tokens_dedupes_and_downloads_xml(httpserver: HTTPServer) -> None:
    a, b, c = (search_notice(httpserver, n) for n in ("47522-2024", "191534-2024", "219998-2024"))
    fake = FakeTed({None: ([a, b], "tok-1"), "tok-1": ([b, c], "tok-2"), "tok-2": ([], None)}, total="3")
    httpserver.expect_request(SEARCH, method="POST").respond_with_handler(fake.handler)
    for number, name in (
        ("47522-2024", "ted-published_2024-OJS017-00047522.xml"),
        ("191534-2024", "ted-published_2024-OJS065-00191534.xml"),
    ):
        httpserver.expect_request(f"/notice/{number}/xml").respond_with_data(
            fixture_bytes(f"eforms/{name}"), content_type="application/xml"
        )
    httpserver.expect_request("/notice/219998-2024/xml").respond_with_data("gone", status=404)

    with make_client() as client:
        source = ted_source(httpserver, client)
        pages = list(source.fetch(dt.date(2024, 1, 22), dt.date(2024, 4, 15)))
        notices = [source.parse(r) for p in pages for r in p.records]

    assert [[r.source_ref for r in p.records] for p in pages] == [
        ["47522-2024", "191534-2024"],
        ["219998-2024"],
    ]
    assert {p.total_count for p in pages} == {3}  # "3" coerced to int
    assert fake.bodies[0] == {
        "query": "place-of-performance IN (FR102 FR104) AND publication-date >= 20240122 "
        "AND publication-date <= 20240415",
        "fields": list(SEARCH_FIELDS),
        "limit": 100,
        "scope": "ALL",
        "paginationMode": "ITERATION",
    }
    assert [b.get("iterationNextToken") for b in fake.bodies] == [None, "tok-1", "tok-2"]
    records = [r for p in pages for r in p.records]
    assert [r.content_type for r in records] == ["application/xml", "application/xml", "application/json"]
    assert records[0].url == httpserver.url_for("/notice/47522-2024/xml")
    assert notices[0].deadline_at == dt.datetime(2024, 2, 28, 12, 0, tzinfo=PARIS)
    assert notices[1].nature is Nature.AWARD
    assert notices[2].source_ref == "219998-2024"  # XML missing: parsed from the search result


def test_without_xml_the_payload_is_the_search_result(httpserver: HTTPServer) -> None:
    a = search_notice(httpserver, "67623-2022")
    fake = FakeTed({None: ([a, a], None)}, total=2)
    httpserver.expect_request(SEARCH, method="POST").respond_with_handler(fake.handler)
    with make_client() as client:
        pages = list(
            ted_source(httpserver, client, fetch_xml=False).fetch(dt.date(2022, 2, 7), dt.date(2022, 2, 7))
        )
    records = [r for p in pages for r in p.records]
    assert [r.source_ref for r in records] == ["67623-2022"]  # the sample's duplicate is dropped
    assert json.loads(records[0].payload)["publication-number"] == "67623-2022"
    assert records[0].content_type == "application/json"


def test_expired_token_restarts_the_iteration(httpserver: HTTPServer) -> None:
    a, b, c = (search_notice(httpserver, n) for n in ("1-2026", "2-2026", "3-2026"))
    fake = FakeTed({None: ([a, b], "tok-1"), "tok-1": ([c], None)}, total=3)
    fake.failures["tok-1"] = lambda: respond_json(
        {"message": "Iteration token expired", "error": {"type": "EXPIRED_ITERATION_TOKEN"}}, status=400
    )
    httpserver.expect_request(SEARCH, method="POST").respond_with_handler(fake.handler)
    with make_client() as client:
        source = ted_source(httpserver, client, fetch_xml=False)
        pages = list(source.fetch(dt.date(2026, 1, 1), dt.date(2026, 1, 2)))
    assert [r.source_ref for p in pages for r in p.records] == ["1-2026", "2-2026", "3-2026"]
    assert source.restarts == 1
    assert [b.get("iterationNextToken") for b in fake.bodies] == [None, "tok-1", None, "tok-1"]


def test_500_after_a_token_restarts_too(httpserver: HTTPServer) -> None:
    a, b = search_notice(httpserver, "1-2026"), search_notice(httpserver, "2-2026")
    fake = FakeTed({None: ([a], "tok-1"), "tok-1": ([b], None)}, total=2)
    fake.failures["tok-1"] = lambda: respond_json({"message": "Internal error", "error": {}}, status=500)
    httpserver.expect_request(SEARCH, method="POST").respond_with_handler(fake.handler)
    with make_client(max_tries=1) as client:
        source = ted_source(httpserver, client, fetch_xml=False)
        refs = [
            r.source_ref for p in source.fetch(dt.date(2026, 1, 1), dt.date(2026, 1, 1)) for r in p.records
        ]
    assert refs == ["1-2026", "2-2026"]
    assert source.restarts == 1


def test_restarts_are_bounded(httpserver: HTTPServer) -> None:
    a = search_notice(httpserver, "1-2026")

    def always_expired(request: Request) -> Response:
        if json.loads(request.data).get("iterationNextToken"):
            return respond_json({"type": "INVALID_ITERATION_TOKEN"}, status=400)
        return respond_json({"notices": [a], "totalNoticeCount": 1, "iterationNextToken": "tok"})

    httpserver.expect_request(SEARCH, method="POST").respond_with_handler(always_expired)
    with make_client() as client, pytest.raises(FetchError, match="restarted 2 times"):
        list(
            ted_source(httpserver, client, fetch_xml=False, max_restarts=2).fetch(
                dt.date(2026, 1, 1), dt.date(2026, 1, 1)
            )
        )


def test_query_error_is_not_restarted(httpserver: HTTPServer) -> None:
    httpserver.expect_request(SEARCH, method="POST").respond_with_json(
        {"type": "QUERY_UNKNOWN_FIELD", "fieldName": "place-of-performanc"}, status=400
    )
    with make_client() as client, pytest.raises(QueryError) as caught:
        list(ted_source(httpserver, client).fetch(dt.date(2026, 1, 1), dt.date(2026, 1, 1)))
    assert caught.value.code == "QUERY_UNKNOWN_FIELD"
    assert len(httpserver.log) == 1


def test_invalid_arguments() -> None:
    with make_client() as client:
        with pytest.raises(ValueError):
            TedSource(client, page_size=251)
        with pytest.raises(ValueError):
            TedSource(client, fields=())
        with pytest.raises(ValueError):
            TedSource(client, nuts=("not a nuts",))


def test_an_empty_result_still_yields_one_page_with_its_count(httpserver: HTTPServer) -> None:
    fake = FakeTed({None: ([], None)}, total=0)
    httpserver.expect_request(SEARCH, method="POST").respond_with_handler(fake.handler)
    with make_client() as client:
        pages = list(ted_source(httpserver, client).fetch(dt.date(2026, 1, 1), dt.date(2026, 1, 1)))
    assert [(p.records, p.total_count) for p in pages] == [([], 0)]
