"""Digest pages: one-click unsubscribe from the emailed link (no login, no CSRF token), the
preferences page and the preview."""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from tenderpool.db import Database
from tenderpool.digests import services
from tenderpool.digests.models import DigestAnnouncement, DigestPreference, DigestRun
from tenderpool.firms.models import Firm
from tests import factories
from tests.conftest import SEED_EMAILS, Seed, login_as, post_form, text_of
from tests.digests.conftest import NOW, run_job


def _emailed_digest(app: Flask, database: Database, session: Session, seed: Seed, outbox: Any) -> Any:
    firm = session.get(Firm, seed.firm_id)
    assert firm is not None
    factories.set_profile(session, firm, cpv=["45000000"])
    factories.make_plain_notice(
        session, title="École", cpv=["45210000"], departments=["77"], created_at=NOW - dt.timedelta(hours=1)
    )
    session.commit()
    assert run_job(app, database, only_email=SEED_EMAILS["owner"]).sent == 1
    (message,) = outbox()
    return message


def test_one_click_unsubscribe_from_the_emailed_link(
    app: Flask, client: FlaskClient, database: Database, session: Session, seed: Seed, outbox: Any
) -> None:
    message = _emailed_digest(app, database, session, seed, outbox)
    url = re.match(r"<([^>]+)>", message["List-Unsubscribe"]).group(1)  # type: ignore[union-attr]
    path = url.removeprefix("http://tenderpool.test")
    assert path.startswith("/desabonnement/")
    # GET only asks (a link preview or a prefetch must not unsubscribe anyone).
    page = client.get(path)
    assert page.status_code == 200
    assert "Me désabonner" in text_of(page) and SEED_EMAILS["owner"] in text_of(page)
    assert session.get(DigestPreference, seed.owner_id) is None
    # The mail client's one-click POST (RFC 8058): no session, no CSRF token.
    done = client.post(path, data={"List-Unsubscribe": "One-Click"})
    assert done.status_code == 200
    assert "ne recevra plus le résumé" in text_of(done)
    session.expire_all()
    pref = session.get(DigestPreference, seed.owner_id)
    assert pref is not None and pref.frequency == "off"
    again = client.get(path)
    assert "ne reçoit déjà plus" in text_of(again)
    # And no more digest for this user.
    factories.make_plain_notice(
        session,
        title="Collège",
        cpv=["45210000"],
        departments=["77"],
        created_at=NOW + dt.timedelta(hours=20),
    )
    session.commit()
    report = run_job(app, database, now=NOW + dt.timedelta(days=1), only_email=SEED_EMAILS["owner"])
    assert report.sent == 0 and len(outbox()) == 1


def test_the_confirmation_form_works_without_login(
    client: FlaskClient, session: Session, seed: Seed, settings: Any
) -> None:
    token = services.unsubscribe_token(settings.secret_key, seed.staff77_id)
    page = client.get(f"/desabonnement/{token}")
    assert '<form method="post">' in page.get_data(as_text=True)
    assert client.post(f"/desabonnement/{token}").status_code == 200
    session.expire_all()
    assert services.preference_of(session, seed.staff77_id).frequency == "off"


def test_bad_tokens_are_refused(client: FlaskClient, session: Session, seed: Seed, settings: Any) -> None:
    good = services.unsubscribe_token(settings.secret_key, seed.owner_id)
    forged = services.unsubscribe_token("another-secret", seed.owner_id)
    other_salt = services.URLSafeSerializer(settings.secret_key, salt="password-reset").dumps(
        {"u": seed.owner_id}
    )
    for token in (good[:-2] + "xx", forged, other_salt, "not-a-token"):
        assert client.post(f"/desabonnement/{token}").status_code == 400
        assert client.get(f"/desabonnement/{token}").status_code == 400
    assert session.get(DigestPreference, seed.owner_id) is None


def test_other_forms_still_need_their_csrf_token(client: FlaskClient, session: Session, seed: Seed) -> None:
    login_as(client, session, seed.owner_id)
    response = client.post("/compte/resume", data={"frequency": "off", "hour": "7", "weekday": "0"})
    assert response.status_code == 400
    assert session.get(DigestPreference, seed.owner_id) is None


def test_preferences_page(client: FlaskClient, session: Session, seed: Seed) -> None:
    login_as(client, session, seed.member_id)
    page = client.get("/compte/resume")
    assert page.status_code == 200
    html = text_of(page)
    assert re.search(r'<input checked[^>]*value="daily"', html)
    assert re.search(r'<option selected value="7">07 h 00</option>', html)
    saved = post_form(client, "/compte/resume", {"frequency": "weekly", "hour": "18", "weekday": "2"})
    assert saved.status_code == 302
    assert "vous recevrez le résumé chaque mercredi à 18 h" in text_of(client.get("/compte/resume"))
    session.expire_all()
    pref = session.get(DigestPreference, seed.member_id)
    assert pref is not None and (pref.frequency, pref.hour, pref.weekday) == ("weekly", 18, 2)
    wrong = post_form(client, "/compte/resume", {"frequency": "hourly", "hour": "25", "weekday": "9"})
    assert wrong.status_code == 200
    assert "Choisissez une fréquence." in text_of(wrong) and "Choisissez une heure." in text_of(wrong)
    session.expire_all()
    pref = session.get(DigestPreference, seed.member_id)
    assert pref is not None and (pref.frequency, pref.hour) == ("weekly", 18)


def test_preview_shows_without_recording(client: FlaskClient, session: Session, seed: Seed) -> None:
    firm = session.get(Firm, seed.firm_id)
    assert firm is not None
    factories.set_profile(session, firm, cpv=["45000000"], turnover=100_000)
    notice = factories.make_plain_notice(
        session, title="Réhabilitation du gymnase", cpv=["45210000"], departments=["77"],
        estimated_value=900_000, created_at=dt.datetime.now(dt.UTC) - dt.timedelta(hours=1),
    )  # fmt: skip
    session.commit()
    login_as(client, session, seed.owner_id)
    page = client.get("/compte/resume/apercu")
    assert page.status_code == 200
    html = text_of(page)
    assert "Réhabilitation du gymnase" in html and f"/avis/{notice.id}" in html
    assert "groupement conseillé" in html
    assert "Objet :" in html
    assert session.scalar(select(func.count()).select_from(DigestRun)) == 0
    assert session.scalar(select(func.count()).select_from(DigestAnnouncement)) == 0


def test_preview_of_an_empty_digest(client: FlaskClient, session: Session, seed: Seed) -> None:
    login_as(client, session, seed.staff91_id)
    html = text_of(client.get("/compte/resume/apercu"))
    assert "ce résumé ne serait pas envoyé" in html
