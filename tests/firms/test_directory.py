"""Partner directory: opt-in, the parts each firm chooses, never a turnover, search, pagination."""

from __future__ import annotations

import datetime as dt
import re
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy.orm import Session

from tenderpool.firms import profile
from tenderpool.firms.models import Firm, FirmCertification, FirmCpv, FirmReference, FirmYear
from tenderpool.firms.services import department_of_postcode
from tests import factories
from tests.conftest import Seed, login_as, text_of

TODAY = dt.datetime.now(ZoneInfo("Europe/Paris")).date()
Y1 = TODAY.year - 1
ALL_FIELDS = list(profile.DIRECTORY_FIELDS)


def _listed_firm(
    session: Session,
    settings: Any,
    name: str,
    *,
    postcode: str = "77100",
    opt_in: bool = True,
    fields: list[str] | None = None,
    cpv: list[str] | None = None,
    status: str = "approved",
    **attributes: Any,
) -> Firm:
    # Firm rows only: the directory needs no accounts (and hashing passwords is slow).
    department = department_of_postcode(postcode)
    siret = factories.valid_siret()
    firm = Firm(
        siret=siret,
        siren=siret[:9],
        name=name,
        address="2 place de l'Hôtel de Ville",
        postcode=postcode,
        city="Meaux" if department == "77" else "Évry",
        department=department,
        chamber_slug=settings.chamber_for_department(department).slug,
        status=status,
    )
    session.add(firm)
    firm.directory_opt_in = opt_in
    firm.directory_fields = ALL_FIELDS if fields is None else fields
    firm.cpv_links = [FirmCpv(cpv=code) for code in cpv or []]
    for key, value in attributes.items():
        setattr(firm, key, value)
    session.flush()
    return firm


@pytest.fixture
def firms(app: Flask, session: Session) -> dict[str, Firm]:
    settings = app.extensions["tenderpool.settings"]
    made = {
        # Shows everything it may: skills, zone, certifications, a headcount band, references.
        "alpha": _listed_firm(
            session,
            settings,
            "Alpha Bâtiment",
            cpv=["45210000"],
            description="Gros œuvre et charpente traditionnelle.",
            keywords=["charpente", "monuments historiques"],
            zone_departments=["77", "93"],
            website="https://alpha.example",
            years=[FirmYear(year=Y1, turnover=Decimal("8765432.19"), headcount=23)],
            certifications=[
                FirmCertification(name="Qualibat RGE", valid_until=TODAY + dt.timedelta(days=300)),
                FirmCertification(name="ISO 9001", valid_until=TODAY - dt.timedelta(days=1)),
            ],
            references=[
                FirmReference(
                    buyer="Commune de Provins",
                    object="Restauration des remparts",
                    year=Y1,
                    amount=Decimal("2718281"),
                    is_public=True,
                    role="mandataire",
                ),
                FirmReference(
                    buyer="Acheteur confidentiel", object="Marché secret", year=Y1, is_public=False
                ),
            ],
        ),
        # Listed, but shows nothing beyond its name and town (its skills and text stay private).
        "bravo": _listed_firm(
            session,
            settings,
            "Bravo Ingénierie",
            postcode="91000",
            fields=[],
            cpv=["71000000"],
            description="Charpente métallique et bureau d'études.",
            keywords=["charpente"],
            years=[FirmYear(year=Y1, turnover=Decimal("3141592"), headcount=3)],
        ),
        # A whole division: found by a search for any works code below it.
        "charlie": _listed_firm(
            session,
            settings,
            "Charlie Travaux",
            cpv=["45000000"],
            fields=["skills", "headcount_band"],
            years=[FirmYear(year=Y1, headcount=4)],
            zone_radius_km=30,
        ),
        # Not opted in, or not approved: never listed.
        "hidden": _listed_firm(session, settings, "Delta Caché", opt_in=False, cpv=["45210000"]),
        "pending": _listed_firm(
            session, settings, "Echo En Attente", postcode="91000", status="pending", cpv=["45210000"]
        ),
    }
    session.commit()
    return made


def _names(page: str) -> list[str]:
    return re.findall(r'<h3 id="firme-\d+"><a href="/annuaire/\d+">([^<]+)</a>', page)


def _search(client: FlaskClient, query: str = "") -> list[str]:
    response = client.get("/annuaire" + (f"?{query}" if query else ""))
    assert response.status_code == 200, text_of(response)
    return _names(text_of(response))


def test_only_approved_firms_that_opted_in_are_listed(
    client: FlaskClient, session: Session, seed: Seed, firms: dict[str, Firm]
) -> None:
    login_as(client, session, seed.member_id)
    assert _search(client) == ["Alpha Bâtiment", "Bravo Ingénierie", "Charlie Travaux"]
    assert client.get(f"/annuaire/{firms['hidden'].id}").status_code == 404
    assert client.get(f"/annuaire/{firms['pending'].id}").status_code == 404
    login_as(client, session, seed.staff91_id)
    assert _search(client) == ["Alpha Bâtiment", "Bravo Ingénierie", "Charlie Travaux"]


def test_turnover_is_never_shown_and_headcount_only_as_a_band(
    client: FlaskClient, session: Session, seed: Seed, firms: dict[str, Firm]
) -> None:
    login_as(client, session, seed.owner_id)
    pages = [text_of(client.get("/annuaire"))] + [
        text_of(client.get(f"/annuaire/{firms[key].id}")) for key in ("alpha", "bravo", "charlie")
    ]
    for page in pages:
        # Neither turnover (8 765 432, 3 141 592) nor a reference amount (2 718 281), in any format.
        for figure in (r"8\D?765\D?432", r"3\D?141\D?592", r"2\D?718\D?281"):
            assert not re.search(figure, page)
        assert "23 salariés" not in page and ">23<" not in page
    alpha = pages[1]
    assert "10 à 49 salariés" in alpha
    assert "Restauration des remparts" in alpha and "Mandataire d'un groupement" in alpha
    assert "Marché secret" not in alpha  # a private reference
    assert "Qualibat RGE" in alpha and "ISO 9001" not in alpha  # an expired certification
    assert "Seine-et-Marne (77), Seine-Saint-Denis (93)" in alpha
    assert "45210000 — Travaux de construction de bâtiments" in alpha
    assert "https://alpha.example" in alpha
    charlie = pages[3]
    assert "1 à 9 salariés" in charlie and "km autour de" not in charlie  # zone not chosen


def test_each_firm_shows_only_the_parts_it_chose(
    client: FlaskClient, session: Session, seed: Seed, firms: dict[str, Firm]
) -> None:
    login_as(client, session, seed.member_id)
    bravo = text_of(client.get(f"/annuaire/{firms['bravo'].id}"))
    assert "Bravo Ingénierie" in bravo and "Évry" in bravo
    assert "Charpente métallique" not in bravo and "71000000" not in bravo and "salarié" not in bravo
    assert "ne montre que son nom et sa commune" in bravo
    card = profile.directory_card(firms["bravo"], today=TODAY)
    assert (card.description, card.skills, card.keywords, card.headcount_band) == (None, [], [], None)
    assert not hasattr(card, "turnover")


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        # CPV: a division finds the codes below it, a precise code finds the division above it.
        ("cpv=45000000", ["Alpha Bâtiment", "Charlie Travaux"]),
        ("cpv=45210000-2", ["Alpha Bâtiment", "Charlie Travaux"]),
        ("cpv=45211000", ["Alpha Bâtiment", "Charlie Travaux"]),
        ("cpv=45300000", ["Charlie Travaux"]),
        ("cpv=71000000", []),  # Bravo keeps its skills private
        # Keywords: only in what the firm shows (Bravo's "charpente" is private).
        ("q=charpente", ["Alpha Bâtiment"]),
        ("q=CHARPENTE+traditionnelle", ["Alpha Bâtiment"]),
        ("q=monuments", ["Alpha Bâtiment"]),
        ("q=batiment", ["Alpha Bâtiment"]),
        ("q=ingenierie", ["Bravo Ingénierie"]),
        # Département: the zone it shows, or where it is.
        ("dep=93", ["Alpha Bâtiment"]),
        ("dep=91", ["Bravo Ingénierie"]),
        ("dep=77", ["Alpha Bâtiment", "Charlie Travaux"]),
        ("dep=13", []),
        # Certification (valid ones only) and headcount band.
        ("cert=qualibat", ["Alpha Bâtiment"]),
        ("cert=ISO+9001", []),
        ("band=10-49", ["Alpha Bâtiment"]),
        ("band=1-9", ["Charlie Travaux"]),
        ("band=250%2B", []),
        ("cpv=45000000&dep=77&band=1-9", ["Charlie Travaux"]),
    ],
)
def test_search_filters(
    client: FlaskClient,
    session: Session,
    seed: Seed,
    firms: dict[str, Firm],
    query: str,
    expected: list[str],
) -> None:
    login_as(client, session, seed.member_id)
    assert _search(client, query) == expected


@pytest.mark.parametrize("query", ["cpv=pas-un-code", "dep=999", "band=immense", "cpv=45210000-9"])
def test_bad_search_parameters_are_reported(
    client: FlaskClient, session: Session, seed: Seed, firms: dict[str, Firm], query: str
) -> None:
    login_as(client, session, seed.member_id)
    response = client.get(f"/annuaire?{query}")
    assert response.status_code == 400
    assert "Recherche incorrecte" in text_of(response)


def test_pagination_keeps_the_query_and_works_without_javascript(
    app: Flask, client: FlaskClient, session: Session, seed: Seed
) -> None:
    settings = app.extensions["tenderpool.settings"]
    for n in range(25):
        _listed_firm(session, settings, f"Menuiserie {n:02d}", cpv=["45421000"], fields=["skills"])
    session.commit()
    login_as(client, session, seed.member_id)
    first = client.get("/annuaire?cpv=45420000")
    page = text_of(first)
    assert "25 entreprises" in page and "Page 1 sur 2" in page
    assert len(_names(page)) == 20
    assert 'href="/annuaire?page=2&amp;cpv=45420000"' in first.get_data(as_text=True)
    second = _search(client, "cpv=45420000&page=2")
    assert second == [f"Menuiserie {n:02d}" for n in range(20, 25)]
    assert _search(client, "cpv=45420000&page=99") == second  # past the end: the last page
    form = first.get_data(as_text=True)
    assert '<form method="get" action="/annuaire"' in form and "<script>" not in form


def test_a_firm_previews_its_own_page_and_publishes_it(
    client: FlaskClient, session: Session, seed: Seed
) -> None:
    login_as(client, session, seed.owner_id)
    preview = client.get(f"/annuaire/{seed.firm_id}")
    assert preview.status_code == 200 and "Aperçu" in text_of(preview)
    login_as(client, session, seed.staff77_id)
    assert client.get(f"/annuaire/{seed.firm_id}").status_code == 404

    firm = session.get(Firm, seed.firm_id)
    assert firm is not None
    owner = next(m for m in firm.memberships if m.is_owner)
    profile.update_directory_settings(
        session, owner, opt_in=True, fields=["website", "skills"], ip=None, now=dt.datetime.now(dt.UTC)
    )
    session.commit()
    assert firm.directory_fields == ["skills", "website"]  # kept in the list's order
    page = client.get(f"/annuaire/{seed.firm_id}")
    assert page.status_code == 200 and "Aperçu" not in text_of(page)
    assert firm.name in _search(client)


def test_directory_is_for_members_and_staff(client: FlaskClient, session: Session, seed: Seed) -> None:
    assert client.get("/annuaire").status_code == 302  # anonymous: to the login page
    login_as(client, session, seed.pending_id)
    assert client.get("/annuaire").headers["Location"] == "/entreprise/en-attente"
