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

from tests.conftest import Seed, SeedConsortium, SeedNotice, csrf_token, login_as, text_of
from tests.routes import ROLE_USER, ROLES, Case
from tests.routes import api as api_routes
from tests.routes import consortia as consortia_routes
from tests.routes import core as core_routes
from tests.routes import dashboard as dashboard_routes
from tests.routes import digests as digests_routes
from tests.routes import dossiers as dossiers_routes
from tests.routes import notices as notices_routes
from tests.routes import ops as ops_routes
from tests.routes import profiles as profiles_routes

ROUTES: dict[str, Case] = {
    **core_routes.ROUTES,
    **notices_routes.ROUTES,
    **api_routes.ROUTES,
    **profiles_routes.ROUTES,
    **digests_routes.ROUTES,
    **consortia_routes.ROUTES,
    **dossiers_routes.ROUTES,
    **ops_routes.ROUTES,
    **dashboard_routes.ROUTES,
}


def test_every_route_has_expectations(app: Flask) -> None:
    endpoints = {rule.endpoint for rule in app.url_map.iter_rules()}
    missing = sorted(endpoints - set(ROUTES))
    stale = sorted(set(ROUTES) - endpoints)
    assert not missing, f"routes without an authorisation expectation in ROUTES: {missing}"
    assert not stale, f"ROUTES lists endpoints that no longer exist: {stale}"
    for endpoint, case in ROUTES.items():
        assert set(case.expect) == set(ROLES), f"{endpoint}: give a status for every role"


def _fill(path: str, seed: Seed, notice: SeedNotice, extra: dict[str, Any] | None = None) -> str:
    return path.format(**vars(seed), **vars(notice), **(extra or {}))


def _extra(case: Case, request: pytest.FixtureRequest) -> dict[str, Any]:
    """The seed consortium's ids, built only for the routes that need them (it costs a notice)."""
    text = case.path + " ".join((case.data or {}).values())
    if "consortium" in text or "{version_id}" in text or "{outsider" in text or "{section_id}" in text:
        return vars(request.getfixturevalue("seed_consortium"))
    return {}


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("endpoint", sorted(ROUTES))
def test_route_role(
    endpoint: str,
    role: str,
    client: FlaskClient,
    session: Session,
    seed: Seed,
    seed_notice: SeedNotice,
    request: pytest.FixtureRequest,
) -> None:
    case = ROUTES[endpoint]
    extra = _extra(case, request)
    if role != "anonymous":
        login_as(client, session, getattr(seed, ROLE_USER[role]))
    url = _fill(case.path, seed, seed_notice, extra)
    kwargs: dict[str, Any] = {}
    if case.method == "POST":
        data = {key: _fill(value, seed, seed_notice, extra) for key, value in (case.data or {}).items()}
        kwargs["data"] = {"csrf_token": csrf_token(client), **data}
    response = client.open(url, method=case.method, **kwargs)
    response.close()  # static files are streamed from disk
    assert response.status_code == case.expect[role], (
        f"{case.method} {url} as {role}: got {response.status_code}, expected {case.expect[role]}"
    )


@pytest.mark.parametrize("endpoint", sorted(e for e, c in ROUTES.items() if c.method == "POST"))
def test_post_without_csrf_token_is_refused(
    endpoint: str,
    client: FlaskClient,
    session: Session,
    seed: Seed,
    seed_notice: SeedNotice,
    request: pytest.FixtureRequest,
) -> None:
    """Every state-changing route refuses a POST without a CSRF token, whatever the role."""
    case = ROUTES[endpoint]
    extra = _extra(case, request)
    allowed = [r for r in ROLES if case.expect[r] not in (403, 404) and r != "anonymous"] or ["admin"]
    login_as(client, session, getattr(seed, ROLE_USER[allowed[-1]]))
    response = client.post(_fill(case.path, seed, seed_notice, extra), data=case.data or {})
    assert response.status_code == 400
    assert "formulaire a expiré" in text_of(response)


@pytest.mark.parametrize("endpoint", sorted(consortia_routes.OUTSIDER))
def test_consortium_outsider(
    endpoint: str,
    client: FlaskClient,
    session: Session,
    seed: Seed,
    seed_notice: SeedNotice,
    seed_consortium: SeedConsortium,
) -> None:
    """An approved firm outside an invitation-only groupement: 404 on everything of it, so that
    guessing another consortium's ids reveals nothing."""
    case = ROUTES[endpoint]
    extra = vars(seed_consortium)
    login_as(client, session, seed_consortium.outsider_id)
    kwargs: dict[str, Any] = {}
    if case.method == "POST":
        data = {key: _fill(value, seed, seed_notice, extra) for key, value in (case.data or {}).items()}
        kwargs["data"] = {"csrf_token": csrf_token(client), **data}
    response = client.open(_fill(case.path, seed, seed_notice, extra), method=case.method, **kwargs)
    assert response.status_code == consortia_routes.OUTSIDER[endpoint], endpoint
