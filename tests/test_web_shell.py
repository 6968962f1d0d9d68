"""The web shell: security headers, error pages, health check, French formatting, mail after commit."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

from flask.testing import FlaskClient
from sqlalchemy import text
from sqlalchemy.orm import Session

from tenderpool import formatting, mail
from tenderpool.web import Access
from tests.conftest import Seed, login_as, text_of


def test_security_headers_on_pages(client: FlaskClient) -> None:
    response = client.get("/")
    csp = response.headers["Content-Security-Policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp and "frame-ancestors 'none'" in csp
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["X-Frame-Options"] == "DENY"
    assert response.headers["Referrer-Policy"] == "same-origin"
    assert response.headers["Cache-Control"] == "no-store"
    assert response.headers["X-Request-Id"]
    assert "<script" not in response.get_data(as_text=True)


def test_french_accessible_layout(client: FlaskClient) -> None:
    page = client.get("/connexion").get_data(as_text=True)
    assert '<html lang="fr">' in page
    assert 'href="#contenu"' in page and '<main id="contenu"' in page
    assert 'role="banner"' in page and 'aria-label="Navigation principale"' in page
    assert '<label for="email">Adresse e-mail</label>' in page
    assert 'name="viewport"' in page


def test_navigation_depends_on_role(client: FlaskClient, session: Session, seed: Seed) -> None:
    anonymous = text_of(client.get("/"))
    assert "Se connecter" in anonymous and "Utilisateurs" not in anonymous
    login_as(client, session, seed.admin_id)
    admin = text_of(client.get("/"))
    assert "Utilisateurs" in admin and "Journal" in admin and "Se déconnecter" in admin
    login_as(client, session, seed.owner_id)
    owner = text_of(client.get("/"))
    assert "Mon entreprise" in owner and "Utilisateurs" not in owner


def test_french_error_pages(client: FlaskClient, session: Session, seed: Seed) -> None:
    missing = client.get("/pas-de-page-ici")
    assert missing.status_code == 404 and "Page introuvable" in text_of(missing)
    login_as(client, session, seed.member_id)
    forbidden = client.get("/admin/journal")
    assert forbidden.status_code == 403 and "Accès refusé" in text_of(forbidden)


def test_method_not_allowed_keeps_the_allow_header(client: FlaskClient) -> None:
    response = client.get("/deconnexion")
    assert response.status_code == 405
    assert "POST" in response.headers["Allow"]
    assert "Méthode non autorisée" in text_of(response)


def test_server_error_page(app: Any) -> None:
    app.config["PROPAGATE_EXCEPTIONS"] = False

    @app.route("/boom")
    def boom() -> str:
        raise RuntimeError("boom")

    boom.tenderpool_access = Access.PUBLIC  # type: ignore[attr-defined]
    response = app.test_client().get("/boom")
    assert response.status_code == 500
    assert "Erreur du serveur" in text_of(response)
    assert "boom" not in response.get_data(as_text=True)


def test_healthz(client: FlaskClient) -> None:
    response = client.get("/healthz")
    # The database answers; no scheduler ever ran here (the rest: tests/test_ops.py).
    assert response.status_code == 503
    assert response.json["database"] == "ok"
    assert response.json["scheduler"]["status"] == "missing"


def test_healthz_reports_an_unreachable_database(app: Any, monkeypatch: Any) -> None:
    from sqlalchemy.exc import OperationalError

    def broken(*_a: Any, **_k: Any) -> Any:
        raise OperationalError("SELECT 1", {}, Exception("connection refused"))

    monkeypatch.setattr(Session, "execute", broken)
    response = app.test_client().get("/healthz")
    assert response.status_code == 503
    assert response.json["database"] == "unreachable"


def test_french_formatting() -> None:
    assert formatting.date_fr(dt.date(2026, 11, 28)) == "28/11/2026"
    # 23:30 UTC on 31 March is already 1 April in Paris (summer time).
    assert formatting.date_fr(dt.datetime(2026, 3, 31, 23, 30, tzinfo=dt.UTC)) == "01/04/2026"
    assert formatting.datetime_fr(dt.datetime(2026, 2, 16, 11, 0, tzinfo=dt.UTC)) == "16/02/2026 à 12:00"
    assert formatting.money_fr(Decimal("1234567")) == "1\u202f234\u202f567 € HT"
    assert formatting.money_fr(None) == "non renseigné"


def test_mail_leaves_only_after_commit(app: Any, session: Session, outbox: Any) -> None:
    with app.app_context():
        message = mail.OutgoingMail(to=["a@example.com"], subject="Test", text="Bonjour")
        mail.queue(session, message)
        session.rollback()
        assert outbox() == []
        mail.queue(session, message)
        session.execute(text("SELECT 1"))
        assert outbox() == []
        session.commit()
    sent = outbox()
    assert len(sent) == 1 and sent[0]["Subject"] == "Test" and sent[0]["To"] == "a@example.com"


def test_nested_rollback_keeps_the_outer_queue(app: Any, session: Session, outbox: Any) -> None:
    with app.app_context():
        mail.queue(session, mail.OutgoingMail(to=["b@example.com"], subject="Gardé", text="x"))
        nested = session.begin_nested()
        nested.rollback()
        session.commit()
    assert [m["Subject"] for m in outbox()] == ["Gardé"]


def test_audit_log_names_actions_in_french(client: FlaskClient, session: Session, seed: Seed) -> None:
    from tenderpool.accounts.services import record_audit

    record_audit(session, "firm_approved", target_type="firm", target_id=seed.firm_id)
    session.commit()
    login_as(client, session, seed.admin_id)
    page = text_of(client.get("/admin/journal"))
    assert "entreprise validée" in page
