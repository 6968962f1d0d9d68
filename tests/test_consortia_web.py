"""Consortium pages and their edges: notice panel, solo bids, documents, settings, XSS, feed, CLI."""

from __future__ import annotations

import datetime as dt
import io
import json
import re
from typing import Any

from click.testing import CliRunner
from flask import Flask
from flask.testing import FlaskClient
from icalendar import Calendar
from sqlalchemy.orm import Session

from tenderpool.accounts.models import User
from tenderpool.consortia import services
from tenderpool.consortia.models import Consortium, SharedDocument, SoloBid
from tenderpool.firms.models import Firm
from tenderpool.notices.calendar import regenerate_ics_token
from tenderpool.notices.models import Notice
from tests import factories
from tests.conftest import Seed, SeedConsortium, login_as, post_form, text_of
from tests.consortia_helpers import NOW, consortium_of, join, partner, two_lot_notice


def test_notice_page_offers_to_form_a_groupement_and_staff_record_the_rule(
    client: FlaskClient, session: Session, seed: Seed, seed_consortium: SeedConsortium
) -> None:
    url = f"/avis/{seed_consortium.consortium_notice_id}"
    login_as(client, session, seed_consortium.outsider_id)
    page = text_of(client.get(url))
    assert "Former un groupement sur cet avis" in page
    assert "Groupement Jean Jaurès" not in page  # invitation only: not listed to outsiders
    login_as(client, session, seed.staff77_id)
    page = text_of(client.get(url))
    assert "Groupement Jean Jaurès" in page  # staff see their territory's groupements
    response = post_form(client, f"{url}/offres-multiples", {"forbidden": "1"}, follow_redirects=True)
    assert "interdit les candidatures multiples" in text_of(response)
    session.expire_all()
    assert session.get_one(Notice, seed_consortium.consortium_notice_id).multiple_bids_forbidden


def test_solo_bid_then_groupement_is_refused_when_forbidden(
    client: FlaskClient, session: Session, seed: Seed, seed_consortium: SeedConsortium
) -> None:
    notice_id = seed_consortium.consortium_notice_id
    login_as(client, session, seed_consortium.outsider_id)
    response = post_form(
        client, f"/avis/{notice_id}/candidature-seule", {"lots": ["1"]}, follow_redirects=True
    )
    assert "répond seule" in text_of(response)
    assert session.get(SoloBid, (seed_consortium.outsider_firm_id, notice_id, "1")) is not None
    session.get_one(Notice, notice_id).multiple_bids_forbidden = True
    session.commit()
    response = post_form(
        client,
        f"/avis/{notice_id}/groupement",
        {"name": "Autre", "form": "solidaire", "visibility": "open", "lots": ["1"]},
    )
    assert response.status_code == 200 and "R2142-21" in text_of(response)
    response = post_form(
        client,
        f"/avis/{notice_id}/groupement",
        {"name": "Autre", "form": "solidaire", "visibility": "open", "lots": ["2"]},
    )
    assert response.status_code == 302  # another lot is another marché


def test_shared_documents_keep_their_versions_and_refuse_hostile_files(
    client: FlaskClient, session: Session, seed: Seed, seed_consortium: SeedConsortium
) -> None:
    cid = seed_consortium.consortium_id
    login_as(client, session, seed.member_id)
    document = session.query(SharedDocument).filter_by(consortium_id=cid).one()
    response = post_form(
        client,
        f"/groupements/{cid}/documents",
        {"document_id": str(document.id), "file": (io.BytesIO(factories.pdf_bytes()), "planning-v2.pdf")},
        content_type="multipart/form-data",
    )
    assert response.status_code == 302
    session.expire_all()
    versions = session.get_one(SharedDocument, document.id).versions
    assert [v.number for v in versions] == [1, 2]
    first = client.get(f"/groupements/{cid}/documents/{versions[0].id}")
    assert first.status_code == 200 and first.data.startswith(b"%PDF")
    assert first.headers["Content-Security-Policy"] == "default-src 'none'; sandbox"
    hostile = post_form(
        client,
        f"/groupements/{cid}/documents",
        {"title": "Script", "file": (io.BytesIO(factories.pdf_bytes(javascript=True)), "../../etc/x.pdf")},
        content_type="multipart/form-data",
        follow_redirects=True,
    )
    assert "JavaScript" in text_of(hostile) or "refus" in text_of(hostile).lower()
    session.expire_all()
    assert session.query(SharedDocument).filter_by(consortium_id=cid).count() == 1


def test_settings_edit_is_versioned_and_mandataire_only(
    client: FlaskClient, session: Session, seed: Seed, seed_consortium: SeedConsortium
) -> None:
    cid = seed_consortium.consortium_id
    consortium = session.get_one(Consortium, cid)
    data = {
        "version": str(consortium.version),
        "name": "Groupement renommé",
        "form": "solidaire",
        "visibility": "open",
        "lots": ["1"],
        "skills_cpv": "45330000",
        "required_turnover": "1 200 000",
    }
    login_as(client, session, seed.owner_id)
    assert post_form(client, f"/groupements/{cid}/parametres", data).status_code == 302
    stale = post_form(client, f"/groupements/{cid}/parametres", {**data, "name": "Trop tard"})
    assert stale.status_code == 409 and "Un autre membre a modifié le groupement" in text_of(stale)
    session.expire_all()
    consortium = session.get_one(Consortium, cid)
    assert consortium.name == "Groupement renommé" and consortium.lot_numbers == ["1"]
    assert consortium.form == "solidaire" and consortium.skills_cpv == ["45330000"]
    page = text_of(client.get(f"/groupements/{cid}"))
    # 1 200 000 € asked on a lot worth 600 000 €: above the 1.5 × cap.
    assert "l'art. R2142-7 impose à l'acheteur de le justifier" in page


def test_user_text_is_escaped_everywhere_it_is_shown(
    app: Flask, client: FlaskClient, session: Session, seed: Seed
) -> None:
    settings = app.extensions["tenderpool.settings"]
    payload = '<script>alert("x")</script><img src=x onerror=alert(1)>'
    with app.app_context():
        notice = two_lot_notice(session)
        owner = session.get_one(User, seed.owner_id)
        consortium = consortium_of(session, owner, notice, name=payload, skills_text=payload)
        b, owner_b = partner(session, settings, name="B" + payload, cpv=["45330000"])
        services.invite_firm(session, consortium, firm=b, by=owner, message=payload, now=NOW)
        session.commit()
    login_as(client, session, owner_b.id)
    card = client.get(f"/groupements/{consortium.id}").get_data(as_text=True)
    assert "<script>alert" not in card and "onerror=alert" not in card.replace("onerror=alert(1)&gt;", "")
    assert "&lt;script&gt;" in card
    login_as(client, session, seed.owner_id)
    post_form(client, f"/groupements/{consortium.id}/discussion", {"body": payload})
    for path in ("", "/discussion", "/partenaires", "/memoire"):
        html = client.get(f"/groupements/{consortium.id}{path}").get_data(as_text=True)
        assert "<script>alert" not in html and "<img src=x" not in html, path


def test_calendar_feed_carries_the_deadlines_of_my_groupements(
    app: Flask, client: FlaskClient, session: Session, seed: Seed, seed_consortium: SeedConsortium
) -> None:
    member = session.get_one(User, seed.member_id)
    token = regenerate_ics_token(session, member, now=NOW)
    session.commit()
    response = client.get(f"/calendrier/{token}.ics")
    calendar = Calendar.from_ical(response.data)
    uids = [str(e["uid"]) for e in calendar.walk("VEVENT")]
    assert f"notice-{seed_consortium.consortium_notice_id}@tenderpool" in uids


def test_cli_lists_consortia(app: Flask, session: Session, seed: Seed, monkeypatch: Any) -> None:
    from tenderpool import cli

    settings = app.extensions["tenderpool.settings"]
    with app.app_context():
        notice = two_lot_notice(session)
        owner = session.get_one(User, seed.owner_id)
        consortium = consortium_of(session, owner, notice)
        b, owner_b = partner(session, settings, name="Plomberie Essonne", cpv=["45330000"])
        join(session, consortium, b, owner_b, owner)
        session.commit()
    database = app.extensions["tenderpool.db"]
    monkeypatch.setattr(cli.Context, "db", property(lambda self: database))
    result = CliRunner().invoke(cli.main, ["consortia", "list", "--format", "jsonl"])
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in result.output.splitlines() if line.startswith("{")]
    row = next(r for r in rows if r["id"] == consortium.id)
    assert row["lots"] == ["1", "2"] and row["form"] == "conjoint" and row["status"] == "assembling"
    assert row["mandataire"] == session.get_one(Firm, seed.firm_id).name
    assert [m["name"] for m in row["members"]][1] == "Plomberie Essonne"
    table = CliRunner().invoke(cli.main, ["consortia", "list"])
    assert table.exit_code == 0 and "assembling" in table.output and "Réhabilitation" in table.output


def test_groupement_lists_are_paginated_each_on_its_own(
    app: Flask, client: FlaskClient, session: Session, seed: Seed
) -> None:
    settings = app.extensions["tenderpool.settings"]
    owner = session.get_one(User, seed.owner_id)
    _other, other_owner = partner(session, settings, name="Voisins Réunis")
    # 27 groupements of the firm, formed one after the other; 26 open ones of a neighbour, soonest
    # deadline first; and one invitation waiting for the firm's answer.
    for k in range(27):
        consortium_of(
            session, owner, two_lot_notice(session), name=f"Mien {k:02d}", now=NOW + dt.timedelta(minutes=k)
        )
    for k in range(26):
        notice = two_lot_notice(session, deadline_at=NOW + dt.timedelta(days=10 + k))
        consortium_of(session, other_owner, notice, name=f"Ouvert {k:02d}", visibility="open")
    waiting = consortium_of(session, other_owner, two_lot_notice(session), name="En attente")
    with app.app_context():  # the invitation's email links to the workspace
        services.invite_firm(
            session, waiting, firm=session.get_one(Firm, seed.firm_id), by=other_owner, now=NOW
        )
    session.commit()
    login_as(client, session, seed.owner_id)

    def names(html: str, prefix: str) -> list[str]:
        return re.findall(rf">({prefix} \d\d)</a>", html)

    first = client.get("/groupements").get_data(as_text=True)
    assert "27 groupements — page 1 sur 2" in first
    assert names(first, "Mien") == [f"Mien {k:02d}" for k in range(26, 1, -1)]  # latest change first
    assert names(first, "Ouvert") == [f"Ouvert {k:02d}" for k in range(25)]
    assert "26 groupements ouverts" in first
    assert "En attente</a>" in first and "Invitations et demandes en attente" in first
    assert 'href="/groupements?page=2&amp;ouverts=1" rel="next"' in first
    assert 'href="/groupements?ouverts=2&amp;page=1" rel="next"' in first

    # Each list turns its own page and keeps the other's.
    both = client.get("/groupements?page=2&ouverts=2").get_data(as_text=True)
    assert names(both, "Mien") == ["Mien 01", "Mien 00"]
    assert names(both, "Ouvert") == ["Ouvert 25"]
    assert "En attente</a>" in both  # invitations are always shown, outside the pages
    assert 'href="/groupements?page=1&amp;ouverts=2" rel="prev"' in both
    assert 'href="/groupements?ouverts=1&amp;page=2" rel="prev"' in both
