"""No state change on GET: every GET route of the matrix, as the most privileged role allowed to
use it, runs without a single INSERT, UPDATE or DELETE reaching the database; and its security
headers hold (the CSP without inline script, no caching of HTML pages).

The matrix (tests/test_route_matrix.py) proves that every POST refuses a missing CSRF token; this
is the other half: a GET (a link, an <img src>, a prefetch) can be forged by any site, so it must
change nothing. Statements are counted on the test's connection, which every session of the app
uses, so nothing escapes the count.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
from flask.testing import FlaskClient
from sqlalchemy import Connection, event
from sqlalchemy.orm import Session

from tenderpool.web import WRITING_GETS
from tests.conftest import Seed, SeedNotice, csrf_token, login_as
from tests.routes import ROLE_USER, ROLES
from tests.test_route_matrix import ROUTES, _extra, _fill

# Most privileged first: admins and staff reach the most data, so their pages do the most work.
PRIVILEGE = ("admin", "staff77", "owner", "member", "staff91", "pending", "anonymous")
assert set(PRIVILEGE) == set(ROLES)

# GETs that write on purpose, each with its reason. Nothing else may write.
LEGITIMATE_WRITES: dict[str, tuple[set[str], str]] = {
    "api.list_notices": (
        {"api_usage"},
        "the public API counts requests per client for its rate limit (ApiUsage), in the database "
        "so that the limit holds across worker processes",
    ),
    "api.get_notice": ({"api_usage"}, "same rate-limit counter as api.list_notices"),
    "api.openapi": ({"api_usage"}, "same rate-limit counter as api.list_notices"),
}

GET_ROUTES = sorted(endpoint for endpoint, case in ROUTES.items() if case.method == "GET")


def _role_for(endpoint: str) -> str:
    case = ROUTES[endpoint]
    allowed = [role for role in PRIVILEGE if case.expect[role] < 400]
    return allowed[0] if allowed else "admin"


class WriteCounter:
    def __init__(self) -> None:
        self.active = False
        self.writes: list[str] = []

    def __call__(self, conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        words = statement.lstrip().split(None, 3)
        verb = words[0].upper() if words else ""
        if self.active and verb in ("INSERT", "UPDATE", "DELETE", "REPLACE", "MERGE", "TRUNCATE"):
            self.writes.append(" ".join(statement.split())[:160])

    def tables(self) -> set[str]:
        out = set()
        for statement in self.writes:
            words = statement.replace('"', "").split()
            verb = words[0].upper()
            name = words[2] if verb in ("INSERT", "DELETE") and len(words) > 2 else words[1]
            out.add(name.split("(")[0])
        return out


@pytest.fixture
def writes(connection: Connection) -> Iterator[WriteCounter]:
    counter = WriteCounter()
    event.listen(connection, "before_cursor_execute", counter)
    yield counter
    event.remove(connection, "before_cursor_execute", counter)


def test_every_get_route_is_checked() -> None:
    assert len(GET_ROUTES) > 40
    assert set(LEGITIMATE_WRITES) <= set(GET_ROUTES), "stale entries in LEGITIMATE_WRITES"
    # On SQLite a GET's session takes no write lock, except in these blueprints (tenderpool.web):
    # a GET that writes anywhere else could fail with "database is locked" under load.
    assert {endpoint.split(".")[0] for endpoint in LEGITIMATE_WRITES} <= WRITING_GETS


@pytest.mark.parametrize("endpoint", GET_ROUTES)
def test_get_changes_nothing(
    endpoint: str,
    client: FlaskClient,
    session: Session,
    seed: Seed,
    seed_notice: SeedNotice,
    writes: WriteCounter,
    request: pytest.FixtureRequest,
) -> None:
    case = ROUTES[endpoint]
    extra = _extra(case, request)
    role = _role_for(endpoint)
    if role != "anonymous":
        login_as(client, session, getattr(seed, ROLE_USER[role]))
    url = _fill(case.path, seed, seed_notice, extra)
    client.get("/")  # warm the session cookie: only the request under test is counted
    writes.active = True
    response = client.get(url)
    response.close()
    writes.active = False
    assert response.status_code == case.expect[role], f"GET {url} as {role}: {response.status_code}"
    allowed, _reason = LEGITIMATE_WRITES.get(endpoint, (set(), ""))
    unexpected = writes.tables() - allowed
    assert not unexpected, f"GET {url} as {role} wrote to {sorted(unexpected)}: {writes.writes}"
    # A listed exception that no longer writes is stale: remove it.
    assert writes.tables() == allowed, f"{endpoint} no longer writes {sorted(allowed)}"
    _check_headers(url, response)


def _check_headers(url: str, response: Any) -> None:
    """The CSP holds on every page (no inline script anywhere), and HTML is never cached: pages
    may show private data (a shared proxy or the browser's back button must not keep them)."""
    policy = response.headers.get("Content-Security-Policy", "")
    directives = dict([*part.strip().split(" ", 1), ""][:2] for part in policy.split(";") if part.strip())
    if directives.get("default-src") == "'none'" and "sandbox" in directives:
        pass  # a downloaded file: nothing may load or run at all, stricter than the pages' policy
    else:
        assert directives.get("script-src") == "'self'", f"{url}: script-src {directives.get('script-src')!r}"
        assert directives.get("object-src") == "'none'" and directives.get("frame-ancestors") == "'none'", url
    assert "unsafe" not in policy, f"{url}: {policy}"
    assert response.headers.get("X-Content-Type-Options") == "nosniff", url
    if response.mimetype == "text/html":
        assert response.headers.get("Cache-Control") == "no-store", (
            f"{url}: {response.headers.get('Cache-Control')}"
        )
        body = response.get_data(as_text=True)
        # No inline script the CSP would have to allow: every <script> has a src.
        assert all("src=" in tag for tag in re.findall(r"<script\b[^>]*>", body)), f"{url}: inline <script>"


def test_the_counter_sees_writes(
    client: FlaskClient, session: Session, seed: Seed, writes: WriteCounter
) -> None:
    """The probe works: a real POST (log out) is seen writing its audit row."""
    login_as(client, session, seed.owner_id)
    token = csrf_token(client)
    writes.active = True
    assert client.post("/deconnexion", data={"csrf_token": token}).status_code == 302
    writes.active = False
    assert "audit_events" in writes.tables()
