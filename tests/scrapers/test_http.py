"""HttpClient through a real local HTTP server (pytest-httpserver): retries, limits, errors."""

from __future__ import annotations

import datetime as dt
import email.utils
import json
import socket
import threading

import pytest
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from scrapers.base import FetchError, QueryError
from scrapers.http import HttpClient, make_session, parse_retry_after

from .support import USER_AGENT, SleepRecorder, fixture_json, make_client, respond_json


def test_user_agent_is_sent_and_required(httpserver: HTTPServer) -> None:
    httpserver.expect_request("/ok", headers={"User-Agent": USER_AGENT}).respond_with_json({"a": 1})
    with make_client() as client:
        reply = client.get_json(httpserver.url_for("/ok"))
    assert reply.data == {"a": 1}
    with pytest.raises(ValueError, match="User-Agent"):
        make_session("  ")


def test_429_with_retry_after_seconds_then_success(httpserver: HTTPServer) -> None:
    httpserver.expect_ordered_request("/r").respond_with_json(
        {"busy": True}, status=429, headers={"Retry-After": "7"}
    )
    httpserver.expect_ordered_request("/r").respond_with_json({"ok": True})
    sleep = SleepRecorder()
    with make_client(sleep) as client:
        reply = client.get_json(httpserver.url_for("/r"))
    assert reply.data == {"ok": True}
    assert sleep.waits == [7.0]  # exactly what the server asked for, no jitter


def test_retry_after_http_date_and_cap(httpserver: HTTPServer) -> None:
    now = dt.datetime(2026, 11, 28, 8, 0, tzinfo=dt.UTC)
    later = email.utils.format_datetime(now + dt.timedelta(seconds=30), usegmt=True)
    httpserver.expect_ordered_request("/d").respond_with_data("", status=503, headers={"Retry-After": later})
    httpserver.expect_ordered_request("/d").respond_with_data(
        "", status=429, headers={"Retry-After": "86400"}
    )
    httpserver.expect_ordered_request("/d").respond_with_json([])
    sleep = SleepRecorder()
    with make_client(sleep, now=lambda: now, max_wait=120.0) as client:
        client.get_json(httpserver.url_for("/d"))
    assert sleep.waits == [30.0, 120.0]  # HTTP date honoured; one day capped by max_wait


def test_parse_retry_after() -> None:
    now = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    assert parse_retry_after("12", now) == 12.0
    assert parse_retry_after("Thu, 01 Jan 2026 00:01:00 GMT", now) == 60.0
    assert parse_retry_after("Wed, 31 Dec 2025 00:00:00 GMT", now) == 0.0
    assert parse_retry_after("soon", now) is None


def test_500_storm_gives_fetch_error_with_status_and_url(httpserver: HTTPServer) -> None:
    httpserver.expect_request("/storm").respond_with_data("oops", status=500)
    sleep = SleepRecorder()
    url = httpserver.url_for("/storm")
    with make_client(sleep, max_tries=4) as client, pytest.raises(FetchError) as caught:
        client.get_json(url)
    assert caught.value.status == 500
    assert caught.value.url == url
    assert "after 4 tries" in str(caught.value)
    assert len(httpserver.log) == 4
    assert sleep.waits == [1.0, 2.0, 4.0]  # exponential back-off (jitter pinned to its maximum)


def test_backoff_has_jitter_and_a_ceiling(httpserver: HTTPServer) -> None:
    httpserver.expect_request("/j").respond_with_data("", status=502)
    sleep = SleepRecorder()
    with (
        make_client(sleep, max_tries=5, jitter=lambda: 0.0, backoff_max=3.0) as client,
        pytest.raises(FetchError),
    ):
        client.get(httpserver.url_for("/j"))
    assert sleep.waits == [0.5, 1.0, 1.5, 1.5]  # half of min(ceiling, 1·2ⁿ) with jitter 0


def test_read_timeout_is_retried_then_fails() -> None:
    release = threading.Event()

    def slow(request: Request) -> Response:
        release.wait(5)
        return Response("{}", content_type="application/json")

    server = HTTPServer(threaded=True)
    server.expect_request("/slow").respond_with_handler(slow)
    server.start()
    try:
        sleep = SleepRecorder()
        with (
            make_client(sleep, timeout=(1.0, 0.05), max_tries=2) as client,
            pytest.raises(FetchError) as caught,
        ):
            client.get_json(server.url_for("/slow"))
        assert caught.value.status is None
        assert "ReadTimeout" in str(caught.value)
        assert len(sleep.waits) == 1
    finally:
        release.set()
        server.clear()
        server.stop()


def test_connection_refused_is_retried_then_fails() -> None:
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    sleep = SleepRecorder()
    with make_client(sleep, max_tries=2) as client, pytest.raises(FetchError) as caught:
        client.get(f"http://127.0.0.1:{port}/x")
    assert caught.value.status is None
    assert "ConnectionError" in str(caught.value)
    assert sleep.waits == [1.0]


def test_truncated_json_gives_a_clear_error(httpserver: HTTPServer) -> None:
    httpserver.expect_request("/t").respond_with_data(
        '{"total_count": 3, "results": [{"idweb": "26-72', content_type="application/json"
    )
    with make_client(max_tries=2) as client, pytest.raises(FetchError) as caught:
        client.get_json(httpserver.url_for("/t"))
    message = str(caught.value)
    assert "not valid JSON" in message and "truncated" in message
    assert len(httpserver.log) == 2  # retried once: a cut body may be a network accident


def test_ods_400_is_a_query_error_with_the_ods_message_and_is_not_retried(httpserver: HTTPServer) -> None:
    # the real 400 of the sample, as the API sends it (the sample wraps it as "HTTP_400: <message>")
    details = fixture_json("boamp/jpbenga_error-400_unknown-field.json")["details"]
    ods_message = details.removeprefix("HTTP_400: ")
    httpserver.expect_request("/records").respond_with_json(
        {"error_code": "ODSQLError", "message": ods_message}, status=400
    )
    with make_client() as client, pytest.raises(QueryError) as caught:
        client.get_json(httpserver.url_for("/records"), params={"where": 'departement="69"'})
    assert "ODSQL query is malformed: Unknown field: departement" in str(caught.value)
    assert caught.value.status == 400
    assert caught.value.code == "ODSQLError"
    assert len(httpserver.log) == 1


def test_400_body_of_the_sample_wrapper_is_understood(httpserver: HTTPServer) -> None:
    body = fixture_json("boamp/jpbenga_error-400_unknown-field.json")
    httpserver.expect_request("/w").respond_with_json(body, status=400)
    with make_client() as client, pytest.raises(QueryError, match="Unknown field: departement"):
        client.get_json(httpserver.url_for("/w"))


def test_ted_400_type_is_kept_as_code(httpserver: HTTPServer) -> None:
    httpserver.expect_request("/s", method="POST").respond_with_json(
        {"type": "QUERY_SYNTAX_ERROR", "location": {"beginLine": 1, "beginColumn": 8}}, status=400
    )
    with make_client() as client, pytest.raises(QueryError) as caught:
        client.post_json(httpserver.url_for("/s"), {"query": "bad("})
    assert caught.value.code == "QUERY_SYNTAX_ERROR"
    assert "QUERY_SYNTAX_ERROR" in str(caught.value)


def test_other_4xx_are_not_retried(httpserver: HTTPServer) -> None:
    httpserver.expect_request("/missing").respond_with_data("no such dataset", status=404)
    with make_client() as client, pytest.raises(FetchError) as caught:
        client.get(httpserver.url_for("/missing"))
    assert caught.value.status == 404
    assert not isinstance(caught.value, QueryError)
    assert "no such dataset" in str(caught.value)
    assert len(httpserver.log) == 1


def test_politeness_delay_between_requests(httpserver: HTTPServer) -> None:
    httpserver.expect_request("/p").respond_with_json({})
    sleep = SleepRecorder()
    client = HttpClient(USER_AGENT, politeness_delay=1.5, sleep=sleep, clock=lambda: 100.0)
    with client:
        client.get(httpserver.url_for("/p"))
        client.get(httpserver.url_for("/p"))
        client.get(httpserver.url_for("/p"))
    assert sleep.waits == [1.5, 1.5]  # none before the first request
    assert client.request_count == 3


def test_post_json_sends_the_body(httpserver: HTTPServer) -> None:
    def echo(request: Request) -> Response:
        return respond_json({"got": json.loads(request.data)})

    httpserver.expect_request("/e", method="POST").respond_with_handler(echo)
    with make_client() as client:
        assert client.post_json(httpserver.url_for("/e"), {"q": 1}).data == {"got": {"q": 1}}
