"""Every registered route × every role: the expected status, declared here explicitly.

A new route without an entry in ROUTES fails ``test_every_route_has_expectations``:
whoever adds a view must decide who may use it. POSTs carry a valid CSRF token
so that the answer reflects authorisation, not CSRF.
"""

from __future__ import annotations

from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy.orm import Session

from tests.conftest import Seed, SeedNotice, csrf_token, login_as, text_of
from tests.routes import ROLE_USER, ROLES, Case
from tests.routes import api as api_routes
from tests.routes import core as core_routes
from tests.routes import digests as digests_routes
from tests.routes import notices as notices_routes
from tests.routes import profiles as profiles_routes

ROUTES: dict[str, Case] = {
    **core_routes.ROUTES,
    **notices_routes.ROUTES,
    **api_routes.ROUTES,
    **profiles_routes.ROUTES,
    **digests_routes.ROUTES,
}


def test_every_route_has_expectations(app: Flask) -> None:
    endpoints = {rule.endpoint for rule in app.url_map.iter_rules()}
    missing = sorted(endpoints - set(ROUTES))
    stale = sorted(set(ROUTES) - endpoints)
    assert not missing, f"routes without an authorisation expectation in ROUTES: {missing}"
    assert not stale, f"ROUTES lists endpoints that no longer exist: {stale}"
    for endpoint, case in ROUTES.items():
        assert set(case.expect) == set(ROLES), f"{endpoint}: give a status for every role"


def _fill(path: str, seed: Seed, notice: SeedNotice) -> str:
    return path.format(**vars(seed), **vars(notice))


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("endpoint", sorted(ROUTES))
def test_route_role(
    endpoint: str, role: str, client: FlaskClient, session: Session, seed: Seed, seed_notice: SeedNotice
) -> None:
    case = ROUTES[endpoint]
    if role != "anonymous":
        login_as(client, session, getattr(seed, ROLE_USER[role]))
    url = _fill(case.path, seed, seed_notice)
    kwargs: dict[str, Any] = {}
    if case.method == "POST":
        data = {key: _fill(value, seed, seed_notice) for key, value in (case.data or {}).items()}
        kwargs["data"] = {"csrf_token": csrf_token(client), **data}
    response = client.open(url, method=case.method, **kwargs)
    response.close()  # static files are streamed from disk
    assert response.status_code == case.expect[role], (
        f"{case.method} {url} as {role}: got {response.status_code}, expected {case.expect[role]}"
    )


@pytest.mark.parametrize("endpoint", sorted(e for e, c in ROUTES.items() if c.method == "POST"))
def test_post_without_csrf_token_is_refused(
    endpoint: str, client: FlaskClient, session: Session, seed: Seed, seed_notice: SeedNotice
) -> None:
    """Every state-changing route refuses a POST without a CSRF token, whatever the role."""
    case = ROUTES[endpoint]
    allowed = [r for r in ROLES if case.expect[r] not in (403, 404) and r != "anonymous"] or ["admin"]
    login_as(client, session, getattr(seed, ROLE_USER[allowed[-1]]))
    response = client.post(_fill(case.path, seed, seed_notice), data=case.data or {})
    assert response.status_code == 400
    assert "formulaire a expiré" in text_of(response)
