"""Login, logout, throttling, session handling."""

from __future__ import annotations

import contextlib
import datetime as dt
from typing import Any

from flask.testing import FlaskClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from tenderpool.accounts import services
from tenderpool.accounts.models import AuditEvent, LoginAttempt
from tenderpool.errors import Throttled, ValidationError
from tests.conftest import PASSWORD, SEED_EMAILS, Seed, csrf_token, login_as, post_form, text_of


def _login(client: FlaskClient, email: str, password: str, **extra: Any) -> Any:
    return post_form(client, "/connexion", {"email": email, "password": password, **extra})


def test_login_success_redirects_and_audits(client: FlaskClient, session: Session) -> None:
    response = _login(client, SEED_EMAILS["staff77"].upper(), PASSWORD)
    assert response.status_code == 302
    assert response.headers["Location"] == "/"
    page = client.get("/compte").get_data(as_text=True)
    assert SEED_EMAILS["staff77"] in page
    actions = session.scalars(
        select(AuditEvent.action).where(AuditEvent.actor_email == SEED_EMAILS["staff77"])
    ).all()
    assert "login" in actions


def test_login_wrong_password_is_refused_and_audited(client: FlaskClient, session: Session) -> None:
    response = _login(client, SEED_EMAILS["staff77"], "mauvais-mot-de-passe")
    assert response.status_code == 401
    assert "Adresse e-mail ou mot de passe incorrect" in text_of(response)
    assert client.get("/compte").status_code == 302
    failed = session.scalars(select(AuditEvent).where(AuditEvent.action == "login_failed")).all()
    assert failed and failed[-1].detail == {"email": SEED_EMAILS["staff77"]}


def test_unknown_email_gets_the_same_answer(client: FlaskClient) -> None:
    known = _login(client, SEED_EMAILS["staff77"], "mauvais-mot-de-passe")
    unknown = _login(client, "personne@example.com", "mauvais-mot-de-passe")
    assert known.status_code == unknown.status_code == 401
    assert "Adresse e-mail ou mot de passe incorrect" in text_of(unknown)


def test_next_parameter_is_followed_only_within_the_site(client: FlaskClient) -> None:
    token = csrf_token(client)
    ok = client.post(
        "/connexion?next=/compte",
        data={"csrf_token": token, "email": SEED_EMAILS["admin"], "password": PASSWORD},
    )
    assert ok.headers["Location"] == "/compte"
    client.post("/deconnexion", data={"csrf_token": csrf_token(client)})
    token = csrf_token(client)
    evil = client.post(
        "/connexion?next=//evil.example/x",
        data={"csrf_token": token, "email": SEED_EMAILS["admin"], "password": PASSWORD},
    )
    assert evil.headers["Location"] == "/"


def test_account_throttled_after_five_failures_even_with_right_password(client: FlaskClient) -> None:
    for _ in range(5):
        assert _login(client, SEED_EMAILS["member"], "faux-mot-de-passe").status_code == 401
    response = _login(client, SEED_EMAILS["member"], PASSWORD)
    assert response.status_code == 429
    assert "Trop de tentatives de connexion" in text_of(response)
    assert client.get("/compte").status_code == 302


def test_ip_throttled_across_accounts(client: FlaskClient) -> None:
    for i in range(5):
        _login(client, f"inconnu{i}@example.com", "faux-mot-de-passe")
    response = _login(client, SEED_EMAILS["owner"], PASSWORD)
    assert response.status_code == 429


def test_throttle_window_expires(session: Session, settings: Any) -> None:
    now = dt.datetime(2026, 11, 28, 9, 0, tzinfo=dt.UTC)
    for i in range(5):
        with contextlib.suppress(ValidationError):
            services.authenticate(
                session,
                settings,
                email=SEED_EMAILS["member"],
                password="x" * 12,
                ip="10.9.9.9",
                now=now + dt.timedelta(seconds=i),
            )
    try:
        services.authenticate(
            session,
            settings,
            email=SEED_EMAILS["member"],
            password=PASSWORD,
            ip="10.9.9.8",
            now=now + dt.timedelta(minutes=14),
        )
    except Throttled:
        pass
    else:
        raise AssertionError("the sixth try within 15 minutes must be throttled")
    user = services.authenticate(
        session,
        settings,
        email=SEED_EMAILS["member"],
        password=PASSWORD,
        ip="10.9.9.8",
        now=now + dt.timedelta(minutes=16),
    )
    assert user.email == SEED_EMAILS["member"]


def test_successful_login_resets_the_account_counter(session: Session, settings: Any) -> None:
    now = dt.datetime(2026, 11, 28, 9, 0, tzinfo=dt.UTC)
    for i in range(4):
        with contextlib.suppress(ValidationError):
            services.authenticate(
                session, settings, email=SEED_EMAILS["member"], password="x" * 12, ip=f"10.0.0.{i}", now=now
            )
    services.authenticate(
        session,
        settings,
        email=SEED_EMAILS["member"],
        password=PASSWORD,
        ip="10.0.1.1",
        now=now + dt.timedelta(seconds=1),
    )
    assert not services.login_is_throttled(
        session,
        SEED_EMAILS["member"],
        "10.0.1.2",
        now=now + dt.timedelta(seconds=2),
        security=settings.security,
    )
    attempts = session.scalars(select(LoginAttempt).where(LoginAttempt.email == SEED_EMAILS["member"])).all()
    assert [a.success for a in attempts][-1] is True


def test_session_is_renewed_at_login(client: FlaskClient) -> None:
    with client.session_transaction() as sess:
        sess["planted"] = "by-an-attacker"
    _login(client, SEED_EMAILS["admin"], PASSWORD)
    with client.session_transaction() as sess:
        assert "planted" not in sess
        assert sess.get("_user_id")


def test_remember_me_sets_a_persistent_http_only_cookie(client: FlaskClient) -> None:
    response = _login(client, SEED_EMAILS["admin"], PASSWORD, remember="y")
    cookies = response.headers.getlist("Set-Cookie")
    remember = [c for c in cookies if c.startswith("remember_token=")]
    assert remember, cookies
    assert "HttpOnly" in remember[0] and "SameSite=Lax" in remember[0] and "Expires=" in remember[0]


def test_session_cookie_flags(client: FlaskClient) -> None:
    response = _login(client, SEED_EMAILS["admin"], PASSWORD)
    cookie = next(c for c in response.headers.getlist("Set-Cookie") if c.startswith("session="))
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie


def test_logout_requires_post_and_ends_the_session(client: FlaskClient, session: Session, seed: Seed) -> None:
    login_as(client, session, seed.admin_id)
    assert client.get("/deconnexion").status_code == 405
    assert client.get("/compte").status_code == 200
    response = post_form(client, "/deconnexion")
    assert response.status_code == 302
    assert client.get("/compte").status_code == 302


def test_inactive_account_cannot_log_in(client: FlaskClient, session: Session, seed: Seed) -> None:
    from tenderpool.accounts.models import User

    user = session.get(User, seed.staff91_id)
    assert user is not None
    user.is_active = False
    session.commit()
    response = _login(client, SEED_EMAILS["staff91"], PASSWORD)
    assert response.status_code == 401
    assert "désactivé" in text_of(response)
