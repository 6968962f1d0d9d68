"""Password reset by emailed link (expiry, reuse, tampering, enumeration) and password change."""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

import pytest
from flask.testing import FlaskClient
from sqlalchemy.orm import Session

from tenderpool.accounts import services
from tenderpool.accounts.models import User
from tenderpool.errors import InvalidToken, ValidationError
from tests.conftest import PASSWORD, SEED_EMAILS, Seed, body_text, login_as, post_form, text_of

NEW_PASSWORD = "nouveau-secret-42"


def _request_link(client: FlaskClient, outbox: Any, email: str) -> str:
    response = post_form(client, "/mot-de-passe/oublie", {"email": email})
    assert response.status_code == 302
    messages = [m for m in outbox() if m["To"] == email]
    assert messages, "no reset email sent"
    match = re.search(r"http://tenderpool\.test(/mot-de-passe/reinitialiser/\S+)", body_text(messages[-1]))
    assert match
    return match.group(1)


def test_reset_link_changes_the_password_once(client: FlaskClient, outbox: Any, session: Session) -> None:
    path = _request_link(client, outbox, SEED_EMAILS["owner"])
    message = outbox()[-1]
    assert message["Subject"] == "Réinitialisation de votre mot de passe TenderPool"
    assert message.get_body(preferencelist=("html",)) is not None
    assert client.get(path).status_code == 200
    response = post_form(client, path, {"password": NEW_PASSWORD, "confirm": NEW_PASSWORD})
    assert response.status_code == 302
    login = post_form(client, "/connexion", {"email": SEED_EMAILS["owner"], "password": NEW_PASSWORD})
    assert login.status_code == 302
    post_form(client, "/deconnexion")
    # The same link a second time
    reused = client.get(path)
    assert reused.status_code == 400
    assert "déjà été utilisé" in text_of(reused)


def test_tampered_link_is_refused(client: FlaskClient, outbox: Any) -> None:
    path = _request_link(client, outbox, SEED_EMAILS["owner"])
    tampered = path[:-3] + ("AAA" if not path.endswith("AAA") else "BBB")
    response = client.get(tampered)
    assert response.status_code == 400
    assert "n'est pas valide" in text_of(response)
    response = post_form(client, tampered, {"password": NEW_PASSWORD, "confirm": NEW_PASSWORD})
    assert response.status_code == 400


def test_expired_link_is_refused(session: Session, settings: Any) -> None:
    now = dt.datetime.now(dt.UTC)
    token = services.request_password_reset(
        session, settings, email=SEED_EMAILS["owner"], ip="127.0.0.1", now=now
    )
    assert token
    services.check_reset_token(session, settings, token, now=now + dt.timedelta(minutes=59))
    with pytest.raises(InvalidToken, match="expiré"):
        services.reset_password(
            session,
            settings,
            token=token,
            new_password=NEW_PASSWORD,
            ip="127.0.0.1",
            now=now + dt.timedelta(minutes=61),
        )


def test_link_of_another_deployment_is_refused(session: Session, settings: Any) -> None:
    from itsdangerous import URLSafeSerializer

    now = dt.datetime.now(dt.UTC)
    forged = URLSafeSerializer("another-secret", salt=services.RESET_SALT).dumps({"u": 1, "j": "x"})
    with pytest.raises(InvalidToken):
        services.check_reset_token(session, settings, forged, now=now)


def test_forgot_password_does_not_reveal_which_emails_exist(client: FlaskClient, outbox: Any) -> None:
    known = post_form(client, "/mot-de-passe/oublie", {"email": SEED_EMAILS["owner"]}, follow_redirects=True)
    unknown = post_form(
        client, "/mot-de-passe/oublie", {"email": "personne@example.com"}, follow_redirects=True
    )
    assert known.status_code == unknown.status_code == 200
    strip = re.compile(r'<meta name="csrf-token"[^>]*>|name="csrf_token"[^>]*>')
    assert strip.sub("", text_of(known)) == strip.sub("", text_of(unknown))
    assert [m["To"] for m in outbox()] == [SEED_EMAILS["owner"]]


def test_weak_new_password_is_refused(client: FlaskClient, outbox: Any) -> None:
    path = _request_link(client, outbox, SEED_EMAILS["owner"])
    response = post_form(client, path, {"password": "court", "confirm": "court"})
    assert response.status_code == 200
    assert "au moins 10 caractères" in text_of(response)


def test_change_password_logs_out_other_sessions(app: Any, session: Session, seed: Seed) -> None:
    first, second = app.test_client(), app.test_client()
    for c in (first, second):
        post_form(c, "/connexion", {"email": SEED_EMAILS["staff91"], "password": PASSWORD})
        assert c.get("/compte").status_code == 200
    response = post_form(
        first,
        "/compte/mot-de-passe",
        {"current_password": PASSWORD, "new_password": NEW_PASSWORD, "confirm": NEW_PASSWORD},
    )
    assert response.status_code == 302
    assert first.get("/compte").status_code == 200, "the session that changed it stays logged in"
    assert second.get("/compte").status_code == 302, "every other session is logged out"


def test_change_password_needs_the_current_one(client: FlaskClient, session: Session, seed: Seed) -> None:
    login_as(client, session, seed.staff91_id)
    response = post_form(
        client,
        "/compte/mot-de-passe",
        {"current_password": "pas-le-bon-1", "new_password": NEW_PASSWORD, "confirm": NEW_PASSWORD},
    )
    assert response.status_code == 200
    assert "Le mot de passe actuel est incorrect" in text_of(response)


def test_passwords_are_hashed_with_scrypt(session: Session, seed: Seed) -> None:
    user = session.get(User, seed.admin_id)
    assert user is not None
    assert user.password_hash.startswith("scrypt:")
    assert PASSWORD not in user.password_hash


def test_password_policy(settings: Any) -> None:
    for weak in ("court1", "0123456789012", "abcdefghijkl", "aaaaaaaaaaaa"):
        with pytest.raises(ValidationError):
            services.check_password_policy(weak, settings.security)
    services.check_password_policy("chantier-2026", settings.security)


def test_reset_is_audited(session: Session, settings: Any) -> None:
    from sqlalchemy import select

    from tenderpool.accounts.models import AuditEvent

    now = dt.datetime.now(dt.UTC)
    token = services.request_password_reset(
        session, settings, email=SEED_EMAILS["owner"], ip="127.0.0.1", now=now
    )
    assert token
    services.reset_password(
        session, settings, token=token, new_password=NEW_PASSWORD, ip="127.0.0.1", now=now
    )
    actions = set(session.scalars(select(AuditEvent.action)))
    assert {"password_reset_requested", "password_reset"} <= actions
