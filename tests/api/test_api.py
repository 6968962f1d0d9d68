"""The public JSON API: list, filters, cursor pagination, detail, errors, caching, rate limit, OpenAPI."""

from __future__ import annotations

import datetime as dt
import json
from decimal import Decimal
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import Connection, event, func, select
from sqlalchemy.orm import Session

from tenderpool.api import services
from tenderpool.config import ConfigError
from tenderpool.notices.models import ApiUsage, Notice
from tenderpool.notices.search import SearchQuery
from tenderpool.notices.services import EXPORT_KEYS, notice_to_dict
from tests.api.conftest import NOW

API = "/api/v1"


def _visible_ids(session: Session) -> set[int]:
    return set(
        session.scalars(
            select(Notice.id).where(Notice.is_rejected.is_(False), Notice.merged_into_id.is_(None))
        )
    )


def _walk(client: FlaskClient, url: str) -> tuple[list[int], list[dict[str, Any]]]:
    """Follow links.next from ``url`` to the last page; every id seen, in order, and every page."""
    ids: list[int] = []
    pages: list[dict[str, Any]] = []
    next_url: str | None = url
    while next_url:
        response = client.get(next_url)
        assert response.status_code == 200, response.get_data(as_text=True)
        body = response.get_json()
        pages.append(body)
        ids += [item["id"] for item in body["items"]]
        assert len(pages) < 100, "the cursor walk does not end"
        next_url = body["links"]["next"]
        assert (next_url is None) == (body["next_cursor"] is None)
    return ids, pages


def _error_of(response: Any) -> dict[str, Any]:
    assert response.mimetype == "application/json", response.get_data(as_text=True)[:200]
    body = response.get_json()
    assert set(body) == {"error"}
    return dict(body["error"])


# --------------------------------------------------------------------------- list and filters


def test_list_gives_export_keys_and_never_rejected_or_merged(
    client: FlaskClient, session: Session, notices: list[Notice]
) -> None:
    rejected, merged, survivor = notices[1], notices[2], notices[3]
    rejected.is_rejected = True
    merged.merged_into_id = survivor.id
    session.commit()

    response = client.get(f"{API}/notices?limit=100")
    assert response.status_code == 200 and response.mimetype == "application/json"
    body = response.get_json()
    assert set(body) == {"items", "total", "next_cursor", "links"}
    ids = [item["id"] for item in body["items"]]
    assert set(ids) == _visible_ids(session) and len(ids) == len(set(ids)) == body["total"]
    assert rejected.id not in ids and merged.id not in ids and survivor.id in ids
    assert body["next_cursor"] is None and body["links"] == {"next": None}
    first = body["items"][0]
    assert tuple(first) == EXPORT_KEYS
    notice = session.get(Notice, first["id"])
    assert notice is not None and first == notice_to_dict(notice, now=NOW)


def test_default_limit_is_20(client: FlaskClient, notices: list[Notice]) -> None:
    body = client.get(f"{API}/notices").get_json()
    assert len(notices) > 20
    assert len(body["items"]) == 20 and body["total"] == len(notices) and body["next_cursor"]


@pytest.mark.parametrize(
    ("args", "check"),
    [
        ("dep=77", lambda n: "77" in n["departments"]),
        ("dep=13,75", lambda n: {"13", "75"} & set(n["departments"])),
        ("type=works", lambda n: n["contract_type"] == "works"),
        ("status=open", lambda n: n["status"] == "open"),
        ("status=closed&type=services",
         lambda n: n["status"] == "closed" and n["contract_type"] == "services"),
        ("cpv=45000000", lambda n: any(c.startswith("45") for c in n["cpv"])),
        ("nuts=FR10", lambda n: any(c.startswith("FR10") for c in n["nuts"])),
        ("min=60000", lambda n: n["estimated_value"] is not None and n["estimated_value"] >= 60000),
        ("deadline_from=2026-02-16&deadline_to=2026-02-27",
         lambda n: "2026-02-16" <= n["deadline_at"][:10] <= "2026-02-27"),
        ("closing=30", lambda n: n["deadline_at"] and n["deadline_at"][:10] <= "2026-02-24"),
        ("source=boamp-xml", lambda n: any(p["source"] == "boamp-xml" for p in n["publications"])),
    ],
)  # fmt: skip
def test_filters_are_those_of_the_web_search(
    client: FlaskClient, notices: list[Notice], args: str, check: Any
) -> None:
    body = client.get(f"{API}/notices?limit=100&{args}").get_json()
    assert body["items"], f"{args}: the samples should match something"
    assert body["total"] == len(body["items"]) < len(notices)
    for item in body["items"]:
        assert check(item), (args, item)


def test_text_search(client: FlaskClient, notices: list[Notice]) -> None:
    body = client.get(f"{API}/notices", query_string={"q": "gendarmerie", "limit": 100}).get_json()
    assert body["items"] and all("gendarmerie" in item["title"].lower() for item in body["items"])


def test_sort_by_deadline(client: FlaskClient, notices: list[Notice]) -> None:
    body = client.get(f"{API}/notices?sort=deadline&limit=100").get_json()
    deadlines = [dt.datetime.fromisoformat(n["deadline_at"]) for n in body["items"] if n["deadline_at"]]
    assert deadlines and deadlines == sorted(deadlines)


def test_queries_do_not_grow_with_the_page_size(
    client: FlaskClient, connection: Connection, notices: list[Notice]
) -> None:
    def statements_for(url: str) -> int:
        seen: list[str] = []

        def count(*args: Any) -> None:
            seen.append(args[2])

        event.listen(connection, "before_cursor_execute", count)
        try:
            assert client.get(url).status_code == 200
        finally:
            event.remove(connection, "before_cursor_execute", count)
        return len(seen)

    client.get(f"{API}/openapi.json")  # the first request of a minute also prunes the rate-limit rows
    assert statements_for(f"{API}/notices?limit=100") == statements_for(f"{API}/notices?limit=2")


def test_unknown_parameters_are_ignored(client: FlaskClient, notices: list[Notice]) -> None:
    plain = client.get(f"{API}/notices").get_json()
    noisy = client.get(f"{API}/notices?page=3&foo=bar&utm_source=x%00y").get_json()
    assert noisy == plain


# --------------------------------------------------------------------------- cursor pagination


@pytest.mark.parametrize(
    "args", ["", "sort=deadline", "type=services", "q=travaux", "q=travaux&sort=published"]
)
@pytest.mark.parametrize("limit", [1, 3, 7])
def test_cursor_walk_sees_every_notice_once(
    client: FlaskClient, notices: list[Notice], args: str, limit: int
) -> None:
    everything = client.get(f"{API}/notices?limit=100&{args}").get_json()
    expected = [item["id"] for item in everything["items"]]
    ids, pages = _walk(client, f"{API}/notices?limit={limit}&{args}")
    assert ids == expected, "same order, no duplicates, none missing"
    assert all(page["total"] == everything["total"] for page in pages)
    assert all(len(page["items"]) == limit for page in pages[:-1])


def test_next_link_is_absolute_and_keeps_the_filters(client: FlaskClient, notices: list[Notice]) -> None:
    body = client.get(f"{API}/notices?type=services&dep=75&limit=1&foo=bar").get_json()
    link = urlsplit(body["links"]["next"])
    assert (link.scheme, link.netloc, link.path) == ("http", "tenderpool.test", f"{API}/notices")
    params = parse_qs(link.query)
    assert params == {"type": ["services"], "dep": ["75"], "limit": ["1"], "cursor": [body["next_cursor"]]}


# --------------------------------------------------------------------------- one notice


def test_detail(client: FlaskClient, session: Session, notices: list[Notice]) -> None:
    notice = notices[-1]
    response = client.get(f"{API}/notices/{notice.id}")
    assert response.status_code == 200
    assert response.get_json() == notice_to_dict(notice, now=NOW)


def test_unknown_and_rejected_notices_are_404(
    client: FlaskClient, session: Session, notices: list[Notice]
) -> None:
    missing = client.get(f"{API}/notices/999999")
    assert missing.status_code == 404
    assert _error_of(missing) == {"code": "not_found", "message": "Avis introuvable."}
    notices[0].is_rejected = True
    session.commit()
    assert client.get(f"{API}/notices/{notices[0].id}").status_code == 404
    assert client.get(f"{API}/notices/not-a-number").status_code == 404


def test_merged_notice_redirects_to_its_survivor(
    client: FlaskClient, session: Session, notices: list[Notice]
) -> None:
    merged, survivor = notices[0], notices[1]
    merged.merged_into_id = survivor.id
    session.commit()
    response = client.get(f"{API}/notices/{merged.id}")
    assert response.status_code == 301
    assert response.headers["Location"] == f"{API}/notices/{survivor.id}"
    assert response.get_json() == {"id": merged.id, "merged_into_id": survivor.id}
    followed = client.get(f"{API}/notices/{merged.id}", follow_redirects=True)
    assert followed.status_code == 200 and followed.get_json()["id"] == survivor.id


# --------------------------------------------------------------------------- bad parameters


BAD_PARAMETERS = [
    ("q", "x" * 301),
    ("q", "mot\x00nul"),
    ("cpv", "abc"),
    ("cpv", "4521"),
    ("dep", "7"),
    ("dep", "77' OR '1'='1"),
    ("nuts", "DE1"),
    ("type", "travaux"),
    ("min", "beaucoup"),
    ("min", "NaN"),
    ("max", "-1"),
    ("max", "1e13"),
    ("min", ("500", "100"), "max"),
    ("closing", "0"),
    ("closing", "366"),
    ("closing", "²"),
    ("closing", "9" * 5000),
    ("closing", ("1", "2")),
    ("deadline_from", "2026-13-01"),
    ("deadline_to", "demain"),
    ("deadline_from", ("2026-03-01", "2026-02-01"), "deadline_to"),
    ("status", "ouvert"),
    ("source", "google"),
    ("featured", "peut-être"),
    ("firm", "2"),
    ("tag", "<script>"),
    ("sort", "title; DROP TABLE notices"),
    ("limit", "0"),
    ("limit", "101"),
    ("limit", "dix"),
    ("limit", "1.5"),
    ("limit", "-1"),
    ("limit", "²"),
    ("limit", ("10", "20")),
    ("cursor", "pas un curseur!"),
    ("cursor", "a" * 1001),
    ("cursor", "' OR 1=1 --"),
]


def _bad_case_query(case: tuple[Any, ...]) -> tuple[str, list[tuple[str, str]]]:
    param, value = case[0], case[1]
    if isinstance(value, tuple) and len(case) == 3:  # two parameters that contradict each other
        return param, [(param, value[0]), (case[2], value[1])]
    if isinstance(value, tuple):  # one parameter given twice
        return param, [(param, v) for v in value]
    return param, [(param, value)]


@pytest.mark.parametrize("case", BAD_PARAMETERS, ids=lambda c: f"{c[0]}={str(c[1])[:20]!r}")
def test_bad_parameter_is_400_naming_it(client: FlaskClient, notices: list[Notice], case: Any) -> None:
    param, query = _bad_case_query(case)
    response = client.get(f"{API}/notices", query_string=query)
    assert response.status_code == 400
    error = _error_of(response)
    assert error["code"] == "invalid_parameter" and error["param"] == param
    assert error["message"] and response.headers["Cache-Control"] == "no-store"


def test_a_cursor_that_is_not_one_of_ours_is_400(client: FlaskClient, notices: list[Notice]) -> None:
    body = client.get(f"{API}/notices?limit=2").get_json()
    cursor = body["next_cursor"]
    for forged in ("AAAA", "eyJ0eXBlIjoiaGFjayJ9", cursor[:-3], cursor[::-1], cursor + "x"):
        response = client.get(f"{API}/notices", query_string={"cursor": forged, "limit": 2})
        assert response.status_code == 400, forged
        assert _error_of(response)["param"] == "cursor"
    # A cursor of another search is refused rather than applied to the wrong results.
    other = client.get(f"{API}/notices", query_string={"cursor": cursor, "limit": 2, "type": "works"})
    assert other.status_code == 400 and _error_of(other)["param"] == "cursor"


SQL_SHAPED = [
    "' OR '1'='1",
    "1; DROP TABLE notices; --",
    '" OR ""="',
    "%",
    "_",
    "\\",
    "*",
    "NEAR(a b)",
    "a AND OR NOT b",
    '"unterminated',
    "') UNION SELECT password_hash FROM users --",
    "$$; SELECT pg_sleep(1); $$",
    "é' ; --",
    '{"$gt": ""}',
]


@pytest.mark.parametrize(
    "param", [p["name"] for p in (*services.SEARCH_PARAMETERS, *services.PAGINATION_PARAMETERS)]
)
def test_sql_shaped_input_never_gives_500(
    client: FlaskClient, session: Session, notices: list[Notice], param: str
) -> None:
    for value in SQL_SHAPED:
        response = client.get(f"{API}/notices", query_string={param: value})
        assert response.status_code in (200, 400), (param, value, response.get_data(as_text=True)[:300])
        if response.status_code == 400:
            assert _error_of(response)["param"] == param
    assert session.scalar(select(func.count()).select_from(Notice)) == len(notices)


def test_text_search_finds_nothing_rather_than_failing(client: FlaskClient, notices: list[Notice]) -> None:
    for value in SQL_SHAPED:
        response = client.get(f"{API}/notices", query_string={"q": value})
        assert response.status_code == 200, value
        assert response.get_json()["total"] < len(notices)


# --------------------------------------------------------------------------- errors are JSON under /api/


def test_routing_errors_are_json_under_api(client: FlaskClient) -> None:
    for url in (f"{API}/nothing-here", "/api/v2/notices", "/api/", "/api"):
        response = client.get(url)
        assert response.status_code == 404
        assert _error_of(response)["code"] == "not_found"
    wrong_method = client.post(f"{API}/notices")
    assert wrong_method.status_code == 405 and "GET" in wrong_method.headers["Allow"]
    assert _error_of(wrong_method)["code"] == "method_not_allowed"
    # Outside /api/ the pages stay HTML.
    assert client.get("/pas-de-page-ici").mimetype == "text/html"


def test_server_error_is_json_without_details(app: Flask, monkeypatch: pytest.MonkeyPatch) -> None:
    from tenderpool.api import views

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("secret internals")

    monkeypatch.setattr(views, "search_notices", broken)
    app.config["PROPAGATE_EXCEPTIONS"] = False
    response = app.test_client().get(f"{API}/notices")
    assert response.status_code == 500
    error = _error_of(response)
    assert error["code"] == "server_error" and "secret" not in response.get_data(as_text=True)


def test_json_answers_keep_the_security_headers(client: FlaskClient) -> None:
    for url in (f"{API}/notices", f"{API}/notices/999999", f"{API}/nothing"):
        headers = client.get(url).headers
        assert headers["X-Content-Type-Options"] == "nosniff"
        assert "frame-ancestors 'none'" in headers["Content-Security-Policy"]
        assert headers["X-Frame-Options"] == "DENY" and headers["X-Request-Id"]


# --------------------------------------------------------------------------- HTTP caching


def test_etag_and_304(client: FlaskClient, notices: list[Notice]) -> None:
    for url in (f"{API}/notices?dep=77", f"{API}/notices/{notices[0].id}", f"{API}/openapi.json"):
        first = client.get(url)
        etag = first.headers["ETag"]
        assert first.status_code == 200 and etag.startswith('"')
        assert first.headers["Cache-Control"] == "public, max-age=60"
        again = client.get(url, headers={"If-None-Match": etag})
        assert again.status_code == 304 and again.get_data() == b""
        assert again.headers["ETag"] == etag and again.headers["Cache-Control"] == "public, max-age=60"
        weak = client.get(url, headers={"If-None-Match": f'"other", W/{etag}'})
        assert weak.status_code == 304
        stale = client.get(url, headers={"If-None-Match": '"not-the-same"'})
        assert stale.status_code == 200 and stale.get_data() == first.get_data()
    assert (
        client.get(f"{API}/notices?dep=77").headers["ETag"]
        != client.get(f"{API}/notices?dep=91").headers["ETag"]
    )


def test_etag_changes_when_the_notice_changes(
    client: FlaskClient, session: Session, notices: list[Notice]
) -> None:
    url = f"{API}/notices/{notices[0].id}"
    before = client.get(url).headers["ETag"]
    notices[0].title = "Nouveau titre après rectificatif"
    session.commit()
    response = client.get(url, headers={"If-None-Match": before})
    assert response.status_code == 200 and response.headers["ETag"] != before


# --------------------------------------------------------------------------- rate limit


def test_rate_limit_answers_429_past_the_limit(limited_client: FlaskClient, session: Session) -> None:
    remaining = []
    for _ in range(3):
        response = limited_client.get(f"{API}/notices")
        assert response.status_code == 200
        assert response.headers["X-RateLimit-Limit"] == "3"
        remaining.append(response.headers["X-RateLimit-Remaining"])
    assert remaining == ["2", "1", "0"]
    refused = limited_client.get(f"{API}/notices/1")
    assert refused.status_code == 429
    assert _error_of(refused)["code"] == "rate_limited"
    assert refused.headers["Retry-After"] == "50"  # NOW is 10 s into its minute
    assert refused.headers["X-RateLimit-Remaining"] == "0"
    assert refused.headers["Cache-Control"] == "no-store"
    # Another client is counted apart; the count lives in the database (shared by workers).
    other = limited_client.get(f"{API}/notices", environ_base={"REMOTE_ADDR": "203.0.113.9"})
    assert other.status_code == 200 and other.headers["X-RateLimit-Remaining"] == "2"
    counts = {client: count for client, count in session.execute(select(ApiUsage.client, ApiUsage.count))}
    assert counts == {"127.0.0.1": 4, "203.0.113.9": 1}


def test_rate_limit_window_starts_again_next_minute(
    limited_client: FlaskClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tenderpool.api import views

    for _ in range(3):
        limited_client.get(f"{API}/openapi.json")
    assert limited_client.get(f"{API}/openapi.json").status_code == 429
    monkeypatch.setattr(views, "_now", lambda: NOW + dt.timedelta(seconds=50))
    response = limited_client.get(f"{API}/openapi.json")
    assert response.status_code == 200 and response.headers["X-RateLimit-Remaining"] == "2"


def test_count_request_service(session: Session) -> None:
    start = dt.datetime(2026, 1, 25, 9, 0, tzinfo=dt.UTC)
    first = services.count_request(session, "198.51.100.1", now=start + dt.timedelta(seconds=5), limit=2)
    assert (first.count, first.remaining, first.allowed) == (1, 1, True)
    assert first.window_end == start + dt.timedelta(minutes=1)
    services.count_request(session, "198.51.100.1", now=start + dt.timedelta(seconds=6), limit=2)
    third = services.count_request(session, "198.51.100.1", now=start + dt.timedelta(seconds=59), limit=2)
    assert (third.count, third.remaining, third.allowed) == (3, 0, False)
    assert third.retry_after(start + dt.timedelta(seconds=59, microseconds=500)) == 1
    services.count_request(session, "192.0.2.7", now=start, limit=2)
    later = services.count_request(session, "198.51.100.1", now=start + dt.timedelta(minutes=1), limit=2)
    assert later.count == 1
    rows = [(c, w) for c, w in session.execute(select(ApiUsage.client, ApiUsage.window_start))]
    # The client's finished window is gone; the other client's stays until the prune job.
    assert sorted(rows) == [("192.0.2.7", start), ("198.51.100.1", start + dt.timedelta(minutes=1))]
    assert services.prune_api_usage(session, now=start + dt.timedelta(minutes=1)) == 1


@pytest.mark.parametrize("value", [0, -5, "beaucoup", True, 1.5])
def test_rate_limit_setting_is_validated(make_app: Any, value: Any) -> None:
    with pytest.raises(ConfigError, match=r"api\.rate_limit_per_minute"):
        make_app(api={"rate_limit_per_minute": value})


def test_api_can_be_disabled(make_app: Any) -> None:
    client = make_app(api={"enabled": False}).test_client()
    for url in (f"{API}/notices", f"{API}/openapi.json"):
        response = client.get(url)
        assert response.status_code == 404 and _error_of(response)["code"] == "not_found"
    with pytest.raises(ConfigError, match=r"api\.enabled"):
        make_app(api={"enabled": "yes"})


# --------------------------------------------------------------------------- OpenAPI


def _resolve_refs(document: dict[str, Any], node: Any) -> None:
    if isinstance(node, dict):
        ref = node.get("$ref")
        if ref is not None:
            target: Any = document
            for part in ref.removeprefix("#/").split("/"):
                assert isinstance(target, dict) and part in target, f"dangling $ref {ref}"
                target = target[part]
        for value in node.values():
            _resolve_refs(document, value)
    elif isinstance(node, list):
        for value in node:
            _resolve_refs(document, value)


def test_openapi_describes_the_api(client: FlaskClient) -> None:
    response = client.get(f"{API}/openapi.json")
    assert response.status_code == 200
    document = json.loads(response.get_data(as_text=True))
    assert document["openapi"].startswith("3.1")
    assert document["servers"] == [{"url": "http://tenderpool.test/api/v1"}]
    assert {"/notices", "/notices/{id}"} <= set(document["paths"])
    _resolve_refs(document, document)

    listing = document["paths"]["/notices"]["get"]
    names = {p["name"] for p in listing["parameters"]}
    full = SearchQuery(
        text="x", cpv=("45000000",), departments=("77",), nuts=("FR102",), contract_types=("works",),
        value_min=Decimal(1), value_max=Decimal(2), closing_within_days=3, deadline_from=dt.date(2026, 1, 1),
        deadline_to=dt.date(2026, 2, 1), statuses=("open",), sources=("boamp",), featured_only=True,
        tags=("BTP",), matching_firm=True, sort="deadline",
    )  # fmt: skip
    assert {name for name, _ in full.to_args()} | {"limit", "cursor"} <= names
    assert all(p["description"] for p in listing["parameters"])
    assert {"200", "400", "429"} <= set(listing["responses"])
    assert tuple(document["components"]["schemas"]["Notice"]["properties"]) == EXPORT_KEYS
    headers = document["components"]["headers"]
    assert {"ETag", "X-RateLimit-Limit", "X-RateLimit-Remaining", "Retry-After"} <= set(headers)
    assert "120 requêtes par minute" in document["info"]["description"]
