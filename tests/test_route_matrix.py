"""Every registered route × every role: the expected status, declared here explicitly.

A new route without an entry in ROUTES fails ``test_every_route_has_expectations``:
whoever adds a view must decide who may use it. POSTs carry a valid CSRF token
so that the answer reflects authorisation, not CSRF.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy.orm import Session

from tests.conftest import Seed, csrf_token, login_as, text_of

ROLES = ("anonymous", "pending", "member", "owner", "staff77", "staff91", "admin")
ROLE_USER = {
    "pending": "pending_id",
    "member": "member_id",
    "owner": "owner_id",
    "staff77": "staff77_id",
    "staff91": "staff91_id",
    "admin": "admin_id",
}


@dataclass(frozen=True)
class Case:
    method: str
    path: str  # may use {firm_id}, {pending_firm_id}, {staff77_id}
    expect: dict[str, int]  # role -> status
    data: dict[str, str] | None = None


def everyone(status: int) -> dict[str, int]:
    return dict.fromkeys(ROLES, status)


def logged_in(status: int, anonymous: int = 302) -> dict[str, int]:
    return {**dict.fromkeys(ROLES, status), "anonymous": anonymous}


def only(allowed: dict[str, int], others: int = 403) -> dict[str, int]:
    return {**dict.fromkeys(ROLES, others), "anonymous": 302, **allowed}


STAFF_OK = {"staff77": 200, "staff91": 200, "admin": 200}
FIRM_PENDING_REDIRECT = {"pending": 302}

ROUTES: dict[str, Case] = {
    "static": Case("GET", "/static/css/app.css", everyone(200)),
    "main.home": Case("GET", "/", everyone(200)),
    "main.healthz": Case("GET", "/healthz", everyone(200)),
    # accounts
    "accounts.login": Case("GET", "/connexion", {**everyone(302), "anonymous": 200}),
    "accounts.logout": Case("POST", "/deconnexion", everyone(302)),
    "accounts.forgot_password": Case("GET", "/mot-de-passe/oublie", everyone(200)),
    "accounts.reset_password": Case("GET", "/mot-de-passe/reinitialiser/not-a-token", everyone(400)),
    "accounts.account": Case("GET", "/compte", logged_in(200)),
    "accounts.change_password": Case("GET", "/compte/mot-de-passe", logged_in(200)),
    "accounts.users": Case("GET", "/admin/utilisateurs", only({"admin": 200})),
    "accounts.user_detail": Case("GET", "/admin/utilisateurs/{staff77_id}", only({"admin": 200})),
    "accounts.audit_log": Case("GET", "/admin/journal", only({"admin": 200})),
    # firms
    "firms.signup": Case("GET", "/inscription", {**everyone(302), "anonymous": 200}),
    "firms.pending": Case("GET", "/entreprise/en-attente", {**logged_in(302), "pending": 200}),
    "firms.my_firm": Case("GET", "/entreprise", only({"member": 200, "owner": 200, **FIRM_PENDING_REDIRECT})),
    "firms.invite": Case(
        "POST",
        "/entreprise/inviter",
        only({"owner": 302, **FIRM_PENDING_REDIRECT}),
        data={"email": "nouveau.collegue@example.com"},
    ),
    "firms.revoke_invitation": Case(
        "POST", "/entreprise/invitations/999999/retirer", only({"owner": 404, **FIRM_PENDING_REDIRECT})
    ),
    "firms.accept_invitation": Case("GET", "/invitation/not-a-token", {**everyone(302), "anonymous": 400}),
    "firms.approval_queue": Case("GET", "/equipe/entreprises", only(STAFF_OK)),
    # The pending firm is in 91: staff of 77 cannot see it at all.
    "firms.approve": Case(
        "POST",
        "/equipe/entreprises/{pending_firm_id}/valider",
        only({"staff77": 404, "staff91": 302, "admin": 302}),
    ),
    "firms.refuse": Case(
        "POST",
        "/equipe/entreprises/{pending_firm_id}/refuser",
        only({"staff77": 404, "staff91": 302, "admin": 302}),
        data={"reason": "SIRET fermé au répertoire Sirene"},
    ),
}


def test_every_route_has_expectations(app: Flask) -> None:
    endpoints = {rule.endpoint for rule in app.url_map.iter_rules()}
    missing = sorted(endpoints - set(ROUTES))
    stale = sorted(set(ROUTES) - endpoints)
    assert not missing, f"routes without an authorisation expectation in ROUTES: {missing}"
    assert not stale, f"ROUTES lists endpoints that no longer exist: {stale}"
    for endpoint, case in ROUTES.items():
        assert set(case.expect) == set(ROLES), f"{endpoint}: give a status for every role"


def _fill(path: str, seed: Seed) -> str:
    return path.format(**vars(seed))


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("endpoint", sorted(ROUTES))
def test_route_role(endpoint: str, role: str, client: FlaskClient, session: Session, seed: Seed) -> None:
    case = ROUTES[endpoint]
    if role != "anonymous":
        login_as(client, session, getattr(seed, ROLE_USER[role]))
    url = _fill(case.path, seed)
    kwargs: dict[str, Any] = {}
    if case.method == "POST":
        kwargs["data"] = {"csrf_token": csrf_token(client), **(case.data or {})}
    response = client.open(url, method=case.method, **kwargs)
    response.close()  # static files are streamed from disk
    assert response.status_code == case.expect[role], (
        f"{case.method} {url} as {role}: got {response.status_code}, expected {case.expect[role]}"
    )


@pytest.mark.parametrize("endpoint", sorted(e for e, c in ROUTES.items() if c.method == "POST"))
def test_post_without_csrf_token_is_refused(
    endpoint: str, client: FlaskClient, session: Session, seed: Seed
) -> None:
    """Every state-changing route refuses a POST without a CSRF token, whatever the role."""
    case = ROUTES[endpoint]
    allowed = [r for r in ROLES if case.expect[r] not in (403, 404) and r != "anonymous"] or ["admin"]
    login_as(client, session, getattr(seed, ROLE_USER[allowed[-1]]))
    response = client.post(_fill(case.path, seed), data=case.data or {})
    assert response.status_code == 400
    assert "formulaire a expiré" in text_of(response)
