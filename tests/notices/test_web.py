"""The shared pool on the web: browse, notice page, following, saved searches, and staff curation."""

from __future__ import annotations

import datetime as dt
import json
import re
from typing import Any

from flask.testing import FlaskClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from scrapers.base import RawRecord
from tenderpool.accounts.models import AuditEvent
from tenderpool.notices.ingest import ingest_records
from tenderpool.notices.models import Notice, NoticeTag, Publication
from tests import factories
from tests.conftest import Seed, SeedNotice, login_as, post_form, text_of
from tests.notices.conftest import FETCHED, boamp_raw, boamp_records

NOW = dt.datetime(2026, 1, 25, 9, 0, tzinfo=dt.UTC)


def _record(idweb: str) -> dict[str, Any]:
    return next(r for r in boamp_records() if r["idweb"] == idweb)


def test_browse_filters_and_bad_parameters(
    client: FlaskClient, session: Session, seed: Seed, seed_notice: SeedNotice
) -> None:
    login_as(client, session, seed.member_id)
    page = text_of(client.get("/avis?dep=77"))
    assert "DOULAINCOURT" in page and "1 avis" in page
    assert "DOULAINCOURT" not in text_of(client.get("/avis?dep=91"))
    bad = client.get("/avis?cpv=pas-un-code")
    assert bad.status_code == 400 and "Recherche incorrecte (cpv)" in text_of(bad)
    injected = client.get("/avis?q=%27%20OR%201%3D1%20--&dep=77")
    assert injected.status_code == 200


def test_browse_row_shows_departments_sources_and_lots(
    client: FlaskClient, session: Session, seed: Seed, seed_notice: SeedNotice
) -> None:
    notice = session.get(Notice, seed_notice.notice_id)
    assert notice is not None and notice.lots and notice.departments and notice.publications
    login_as(client, session, seed.member_id)
    html = client.get("/avis?dep=77").get_data(as_text=True)
    start = html.index(f'id="n-{notice.id}"')
    row = html[start : html.index("</article>", start)]
    assert f"<span>· {', '.join(notice.departments)}</span>" in row
    assert row.count('class="badge badge-boamp"') == 1
    assert f"<dt>Lots</dt><dd>{len(notice.lots)}</dd>" in row


def test_notice_page_shows_lots_cpv_labels_and_history(
    client: FlaskClient, session: Session, seed: Seed, seed_notice: SeedNotice
) -> None:
    login_as(client, session, seed.owner_id)
    page = text_of(client.get(f"/avis/{seed_notice.notice_id}"))
    assert "Rénovation de la caserne de gendarmerie" in page
    assert "45443000 — Travaux de façade" in page
    assert "Lots" in page and "TOITURE" in page
    assert "Procédure ouverte" in page
    assert "Historique des modifications" in page and "Aucune modification" in page
    assert "Curation (équipe CCI)" not in page
    assert "Entreprises de la chambre qui correspondent" not in page


def test_staff_see_which_firms_of_their_chamber_match(
    client: FlaskClient, session: Session, seed: Seed, seed_notice: SeedNotice
) -> None:
    from tenderpool.firms.models import Firm, FirmCpv

    firm = session.get(Firm, seed.firm_id)
    assert firm is not None
    firm.cpv_links = [FirmCpv(cpv="45000000")]
    session.commit()
    login_as(client, session, seed.staff77_id)
    page = text_of(client.get(f"/avis/{seed_notice.notice_id}"))
    assert "Entreprises de la chambre qui correspondent" in page
    assert firm.name in page and "45000000" in page


def test_follow_and_watchlist_shared_by_the_firm(
    app: Any, client: FlaskClient, session: Session, seed: Seed, seed_notice: SeedNotice
) -> None:
    login_as(client, session, seed.owner_id)
    assert post_form(client, f"/avis/{seed_notice.notice_id}/suivre").status_code == 302
    colleague = app.test_client()
    login_as(colleague, session, seed.member_id)
    assert "Rénovation de la caserne" in text_of(colleague.get("/suivis"))
    post_form(client, f"/avis/{seed_notice.notice_id}/ne-plus-suivre")
    assert "Aucun avis suivi" in text_of(colleague.get("/suivis"))


def test_not_interested_with_a_reason(
    client: FlaskClient, session: Session, seed: Seed, seed_notice: SeedNotice
) -> None:
    login_as(client, session, seed.owner_id)
    bad = post_form(
        client, f"/avis/{seed_notice.notice_id}/pas-interesse", {"reason": "whatever"}, follow_redirects=True
    )
    assert "Choisissez une raison" in text_of(bad)
    post_form(
        client,
        f"/avis/{seed_notice.notice_id}/pas-interesse",
        {"reason": "too_far", "comment": "Haute-Marne"},
    )
    page = text_of(client.get(f"/avis/{seed_notice.notice_id}"))
    assert "Trop loin de notre zone" in page and "Haute-Marne" in page


def test_saved_searches_are_private(
    app: Any, client: FlaskClient, session: Session, seed: Seed, seed_notice: SeedNotice
) -> None:
    login_as(client, session, seed.owner_id)
    post_form(client, "/recherches", {"name": "Travaux en 77", "query": "type=works&dep=77&page=3"})
    listing = client.get("/recherches").get_data(as_text=True)
    assert "Travaux en 77" in listing and 'href="/avis?dep=77&amp;type=works"' in listing
    from tenderpool.notices.models import SavedSearch

    saved = session.scalars(select(SavedSearch)).one()
    assert saved.query == "dep=77&type=works"  # canonical, without page
    other = app.test_client()
    login_as(other, session, seed.staff91_id)
    assert post_form(other, f"/recherches/{saved.id}/supprimer").status_code == 404
    invalid = post_form(client, "/recherches", {"name": "x", "query": "cpv=abc"}, follow_redirects=True)
    assert "n'est pas un code CPV" in text_of(invalid)


def test_cpv_picker_lookup(
    client: FlaskClient, session: Session, seed: Seed, seed_notice: SeedNotice
) -> None:
    login_as(client, session, seed.member_id)
    by_label = client.get("/cpv?q=beton arme").json
    assert by_label and all("béton" in item["label"].lower() for item in by_label)
    by_code = client.get("/cpv?q=4521").json
    assert by_code and all(item["code"].startswith("4521") for item in by_code)
    assert client.get("/cpv?q=a").json == []


def test_staff_feature_reject_and_tag_are_audited_with_the_chamber(
    client: FlaskClient, session: Session, seed: Seed, seed_notice: SeedNotice
) -> None:
    other, _ = factories.make_notice(session, idweb="26-7109", code_departement=["77"])
    login_as(client, session, seed.staff77_id)
    queue = text_of(client.get("/equipe/avis"))
    assert "Rénovation de la caserne" in queue
    post_form(
        client,
        f"/equipe/avis/{seed_notice.notice_id}/feature",
        {"note": "Quatre lots : idéal en groupement."},
    )
    response = post_form(
        client,
        "/equipe/avis/actions",
        {"action": "tag", "tags": "BTP, Rénovation", "ids": [str(seed_notice.notice_id), str(other.id)]},
    )
    assert response.status_code == 302
    post_form(
        client,
        "/equipe/avis/actions",
        {"action": "reject", "reason": "Hors territoire", "ids": [str(other.id)]},
    )
    session.expire_all()
    notice = session.get(Notice, seed_notice.notice_id)
    assert notice is not None and notice.is_featured and notice.featured_chamber == "cci77"
    assert set(session.scalars(select(NoticeTag.tag).where(NoticeTag.notice_id == other.id))) == {
        "BTP",
        "Rénovation",
    }
    events = session.scalars(select(AuditEvent).where(AuditEvent.target_type == "notice")).all()
    assert {(e.action, e.actor_chamber) for e in events} >= {
        ("notice_featured", "cci77"),
        ("notice_tagged", "cci77"),
        ("notice_rejected", "cci77"),
    }
    # Rejected notices leave the pool for firms but stay visible to staff.
    firm = client.application.test_client()
    login_as(firm, session, seed.member_id)
    assert firm.get(f"/avis/{other.id}").status_code == 404
    assert client.get(f"/avis/{other.id}").status_code == 200
    assert "Mis en avant pour un groupement" in text_of(firm.get(f"/avis/{seed_notice.notice_id}"))
    assert "1 avis" in text_of(firm.get("/avis?featured=1"))


def test_bulk_action_needs_a_selection_and_a_note(
    client: FlaskClient, session: Session, seed: Seed, seed_notice: SeedNotice
) -> None:
    login_as(client, session, seed.staff91_id)
    empty = post_form(
        client, "/equipe/avis/actions", {"action": "feature", "note": "x"}, follow_redirects=True
    )
    assert "Sélectionnez au moins un avis" in text_of(empty)
    short = post_form(
        client,
        "/equipe/avis/actions",
        {"action": "feature", "note": "", "ids": str(seed_notice.notice_id)},
        follow_redirects=True,
    )
    assert "pourquoi cet avis se prête à un groupement" in text_of(short)


def test_edit_is_kept_until_the_source_changes_the_field(
    client: FlaskClient, session: Session, seed: Seed, seed_notice: SeedNotice
) -> None:
    login_as(client, session, seed.staff77_id)
    form = {
        "title": "Caserne de Doulaincourt : rénovation (titre corrigé)",
        "buyer_name": "SGAMI Est",
        "deadline_date": "2026-02-27",
        "deadline_time": "12:00",
        "departments": "52, 77",
        "cpv": "45443000, 45261900",
        "contract_type": "works",
    }
    assert post_form(client, f"/equipe/avis/{seed_notice.notice_id}/modifier", form).status_code == 302
    notice = session.get(Notice, seed_notice.notice_id)
    assert notice is not None
    session.refresh(notice)
    assert notice.title.endswith("(titre corrigé)") and "title" in notice.locked_fields
    assert notice.deadline_at == dt.datetime(2026, 2, 27, 11, 0, tzinfo=dt.UTC)

    # The same publication scraped again (a changed payload elsewhere): the edits stay.
    original = _record("26-7113")
    ingest_records(session, [boamp_raw({**original, "datefindiffusion": "2026-03-01"})], now=NOW)
    session.refresh(notice)
    assert notice.title.endswith("(titre corrigé)") and not notice.conflicts

    # A corrigendum moves the deadline again: the source wins and the conflict is shown.
    donnees = original["donnees"].replace("2026-02-20", "2026-03-13")
    corrigendum = {
        **original,
        "idweb": "26-9999",
        "nature": "RECTIFICATIF",
        "annonce_lie": ["26-7113"],
        "dateparution": "2026-01-28",
        "donnees": donnees,
        "datelimitereponse": "2026-03-13T11:00:00+00:00",
    }
    ingest_records(session, [boamp_raw(corrigendum)], now=NOW)
    session.refresh(notice)
    assert "deadline_at" in notice.conflicts and "deadline_at" not in notice.locked_fields
    assert notice.deadline_at is not None and notice.deadline_at.date() == dt.date(2026, 3, 13)
    page = text_of(client.get(f"/avis/{seed_notice.notice_id}"))
    assert "Conflit" in page and "date limite" in page
    post_form(client, f"/equipe/avis/{seed_notice.notice_id}/conflit/deadline_at", {"keep": "edit"})
    session.refresh(notice)
    assert notice.deadline_at == dt.datetime(2026, 2, 27, 11, 0, tzinfo=dt.UTC) and not notice.conflicts


def test_manual_notice_is_joined_by_a_later_scraped_publication(
    client: FlaskClient, session: Session, seed: Seed, seed_notice: SeedNotice
) -> None:
    record = _record("26-7308")
    login_as(client, session, seed.staff91_id)
    response = post_form(
        client,
        "/equipe/avis/nouveau",
        {
            "url": "https://www.journal-annonces.example/avis/123",
            "title": record["objet"],
            "buyer_name": record["nomacheteur"],
            "deadline_date": "2026-02-27",
            "deadline_time": "12:00",
            "departments": "91",
            "cpv": "55520000",
            "contract_type": "services",
            "lots": "1 ; Déjeuners ; 55520000 ; 20000\n2 ; Cocktails ; ; ",
        },
    )
    assert response.status_code == 302, text_of(response)
    manual = session.scalars(select(Notice).where(Notice.is_manual.is_(True))).one()
    assert [lot.number for lot in manual.lots] == ["1", "2"] and manual.lots[0].estimated_value == 20000
    stats = ingest_records(session, [boamp_raw(record)], now=NOW)
    assert stats.linked == 1 and stats.created == 0
    publication = session.scalars(select(Publication).where(Publication.source_ref == "26-7308")).one()
    assert publication.notice_id == manual.id


def test_merge_and_split(client: FlaskClient, session: Session, seed: Seed, seed_notice: SeedNotice) -> None:
    duplicate, pub = factories.make_notice(session, idweb="26-7298")
    login_as(client, session, seed.staff77_id)
    post_form(client, f"/equipe/avis/{seed_notice.notice_id}/fusionner", {"duplicate_id": f"#{duplicate.id}"})
    session.expire_all()
    assert session.get(Publication, pub.id).notice_id == seed_notice.notice_id  # type: ignore[union-attr]
    assert client.get(f"/avis/{duplicate.id}").status_code == 301
    response = post_form(client, f"/equipe/avis/{seed_notice.notice_id}/scinder/{pub.id}")
    assert response.status_code == 302
    session.expire_all()
    moved = session.get(Publication, pub.id)
    assert moved is not None and moved.notice_id not in (seed_notice.notice_id, duplicate.id)
    assert moved.notice is not None and "TRAVAUX D'AMENAGEMENTS" in moved.notice.title
    survivor = session.get(Notice, seed_notice.notice_id)
    assert survivor is not None and [p.source_ref for p in survivor.publications] == ["26-7113"]
    assert "Rénovation de la caserne" in survivor.title


def test_quarantine_shows_the_raw_payload_and_retries(
    client: FlaskClient, session: Session, seed: Seed, monkeypatch: Any
) -> None:
    bad = dict(_record("26-7109"), idweb="26-55555", donnees=json.dumps({"PLUTON": {"x": "<b>1</b>"}}))
    ingest_records(session, [boamp_raw(bad)], now=NOW)
    pub = session.scalars(select(Publication).where(Publication.source_ref == "26-55555")).one()
    login_as(client, session, seed.staff91_id)
    listing = text_of(client.get("/equipe/quarantaine"))
    assert "26-55555" in listing and "PLUTON" in listing
    raw_page = client.get(f"/equipe/quarantaine/{pub.id}").get_data(as_text=True)
    assert "&lt;b&gt;1&lt;/b&gt;" in raw_page and "<b>1</b>" not in raw_page

    # "After a parser fix": a parser that now understands the record.
    from scrapers import registry
    from scrapers.base import Nature, ParsedNotice

    def fixed_parser(raw: RawRecord) -> ParsedNotice:
        return ParsedNotice(
            source="boamp",
            source_ref=raw.source_ref,
            nature=Nature.INITIAL,
            title="Avis réparé",
            departments=("91",),
        )

    fixed = registry.SourceInfo("boamp", "fixed", fixed_parser)
    monkeypatch.setitem(registry.SOURCES, "boamp", fixed)
    post_form(client, "/equipe/quarantaine/reessayer", {"publication_id": str(pub.id)})
    session.refresh(pub)
    assert pub.state == "linked" and pub.notice is not None and pub.notice.title == "Avis réparé"


def test_runs_page(client: FlaskClient, session: Session, seed: Seed, seed_notice: SeedNotice) -> None:
    from tenderpool.notices.models import ScrapeRun

    session.add(
        ScrapeRun(
            source="boamp",
            started_at=NOW,
            finished_at=NOW + dt.timedelta(seconds=42),
            status="partial",
            window_start=dt.date(2026, 1, 20),
            window_end=dt.date(2026, 1, 25),
            expected=120,
            fetched=100,
            errors=["100 avis reçus sur 120 annoncés par la source"],
        )
    )
    session.commit()
    login_as(client, session, seed.staff77_id)
    page = text_of(client.get("/equipe/collectes"))
    assert "La dernière collecte est partielle" in page and "100 / 120" in page and "42 s" in page


def test_raw_record_fixture_sanity() -> None:
    raw = boamp_raw(_record("26-7113"))
    assert isinstance(raw, RawRecord) and raw.fetched_at == FETCHED


def test_watchlist_is_paginated_soonest_deadline_first(
    client: FlaskClient, session: Session, seed: Seed
) -> None:
    from tenderpool.notices import services

    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    # 27 notices: 26 dated (given in a shuffled order) and one without a deadline, which comes last.
    days = [(7 * k) % 26 + 1 for k in range(26)]
    notices = [
        factories.make_plain_notice(
            session, title=f"Avis suivi J+{day:02d}", deadline_at=now + dt.timedelta(days=day)
        )
        for day in days
    ]
    notices.append(factories.make_plain_notice(session, title="Avis suivi sans date", deadline_at=None))
    for notice in notices:
        services.follow(session, seed.owner_id, notice, now=now)
    session.commit()
    login_as(client, session, seed.member_id)  # the firm's watch list: a colleague followed them

    first = client.get("/suivis").get_data(as_text=True)
    assert "27 avis suivis — page 1 sur 2" in first
    titles = [f"Avis suivi J+{day:02d}" for day in range(1, 27)] + ["Avis suivi sans date"]
    shown = [t for t in titles if f">{t}</a>" in first]
    assert shown == titles[:25]
    assert first.index(titles[0]) < first.index(titles[1]) < first.index(titles[24])
    assert 'href="/suivis?page=2" rel="next"' in first and 'rel="prev"' not in first

    second = client.get("/suivis?page=2").get_data(as_text=True)
    assert [t for t in titles if f">{t}</a>" in second] == titles[25:]
    assert 'href="/suivis?page=1" rel="prev"' in second and 'rel="next"' not in second
    # A page number out of range or not a number falls back to the nearest page.
    assert [
        t for t in titles if f">{t}</a>" in client.get("/suivis?page=9").get_data(as_text=True)
    ] == titles[25:]
    assert client.get("/suivis?page=abc").get_data(as_text=True).count("Avis suivi J+") == 25


def test_curation_queue_pages_keep_the_filters(client: FlaskClient, session: Session, seed: Seed) -> None:
    start = dt.datetime.now(dt.UTC).replace(microsecond=0) - dt.timedelta(days=1)
    for k in range(31):  # newest first: "File 30" … "File 00"
        factories.make_plain_notice(
            session, title=f"File {k:02d}", departments=["77"], created_at=start + dt.timedelta(minutes=k)
        )
    session.commit()
    login_as(client, session, seed.staff77_id)

    first = client.get("/equipe/avis?dep=77").get_data(as_text=True)
    assert "31 avis dans cette file" in first and "Page 1 sur 2" in first
    assert re.findall(r">(File \d\d)</a>", first) == [f"File {k:02d}" for k in range(30, 0, -1)]
    nav = first[first.index('aria-label="Pages de la file"') :]
    assert 'rel="next"' in nav and 'rel="prev"' not in nav
    assert re.search(r'href="/equipe/avis\?page=2&amp;[^"]*etat=new[^"]*" rel="next"', nav)
    assert re.search(r'href="/equipe/avis\?page=2&amp;[^"]*dep=77[^"]*" rel="next"', nav)

    second = client.get("/equipe/avis?dep=77&page=2").get_data(as_text=True)
    assert re.findall(r">(File \d\d)</a>", second) == ["File 00"]
    assert re.search(r'href="/equipe/avis\?page=1&amp;[^"]*dep=77[^"]*" rel="prev"', second)
