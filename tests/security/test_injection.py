"""SQL-shaped and malformed input in every search filter and API parameter: a 400 naming the
parameter, or results (none, usually), never a 500; and the API parameters fuzzed (hypothesis)."""

from __future__ import annotations

from typing import Any

import pytest
from flask.testing import FlaskClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from tenderpool.api.services import PAGINATION_PARAMETERS, SEARCH_PARAMETERS
from tenderpool.notices.models import Notice
from tests.conftest import Seed, SeedNotice, login_as


@pytest.fixture
def overrides(overrides: dict[str, Any]) -> dict[str, Any]:
    """A rate limit high enough for hundreds of requests from one test client."""
    return {**overrides, "api": {"rate_limit_per_minute": 100_000}}


PARAMETERS = [p["name"] for p in (*SEARCH_PARAMETERS, *PAGINATION_PARAMETERS)]
HOSTILE = [
    "' OR '1'='1",
    "1; DROP TABLE notices; --",
    "45000000' UNION SELECT password_hash FROM users --",
    '") OR 1=1 --',
    "%",
    "_",
    "\\",
    "\x00",
    "NEAR(a b)",
    '"unterminated',
    "*",
    "-",
    "9" * 400,
    "é" * 2000,
    "2026-13-45",
    "-1",
    "1e309",
    "NaN",
]


def test_hostile_values_in_every_filter_never_give_a_500(
    client: FlaskClient, session: Session, seed: Seed, seed_notice: SeedNotice
) -> None:
    before = session.scalar(select(func.count()).select_from(Notice))
    login_as(client, session, seed.owner_id)
    for name in [*PARAMETERS, "page"]:
        for value in HOSTILE:
            page = client.get("/avis", query_string={name: value})
            assert page.status_code in (200, 400), (name, value, page.status_code)
            api = client.get("/api/v1/notices", query_string={name: value})
            assert api.status_code in (200, 400), (name, value, api.status_code)
            if api.status_code == 400:
                assert api.get_json()["error"]["param"] == name, (name, value, api.get_json())
    assert session.scalar(select(func.count()).select_from(Notice)) == before  # nothing dropped
    # The seed notice is still found normally: the filters were not broken by what came before.
    assert client.get("/api/v1/notices", query_string={"q": "collège"}).status_code == 200


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    params=st.dictionaries(
        st.sampled_from([*PARAMETERS, "unknown"]),
        st.one_of(st.text(max_size=40), st.integers().map(str), st.sampled_from(HOSTILE)),
        max_size=4,
    )
)
def test_api_parameters_fuzzed(client: FlaskClient, seed_notice: SeedNotice, params: dict[str, Any]) -> None:
    response = client.get("/api/v1/notices", query_string=params)
    assert response.status_code in (200, 400), (params, response.status_code)
    body = response.get_json()
    assert body is not None, params
    if response.status_code == 400:
        assert body["error"]["param"] in params, (params, body)
    elif response.status_code == 200:
        assert isinstance(body["items"], list)
