"""Firm profile: identity, skills, capacities, references, certifications, completeness, staff view."""

from __future__ import annotations

import datetime as dt
import io
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select
from sqlalchemy.orm import Session
from stdnum import luhn

from tenderpool.accounts.models import AuditEvent
from tenderpool.errors import ValidationError
from tenderpool.firms import documents, profile
from tenderpool.firms.models import Firm, FirmCertification, FirmDocument, FirmReference, FirmYear
from tenderpool.storage import upload_settings
from tests import factories
from tests.conftest import Seed, login_as, post_form, text_of

TODAY = dt.datetime.now(ZoneInfo("Europe/Paris")).date()
Y1, Y2, Y3 = TODAY.year - 1, TODAY.year - 2, TODAY.year - 3

IDENTITY = {
    "name": "Maçonnerie Briarde",
    "legal_form_code": "5499",
    "naf_code": "4399c",
    "address": "5 rue des Tanneurs",
    "postcode": "77100",
    "city": "Meaux",
    "website": "www.maconnerie-briarde.example",
    "description": "Maçonnerie générale, pierre de taille.",
    "is_sme": "yes",
}


def _firm(session: Session, seed: Seed) -> Firm:
    firm = session.get(Firm, seed.firm_id)
    assert firm is not None
    return firm


# --------------------------------------------------------------------------- identity


def test_vat_number_is_computed_from_the_siren() -> None:
    assert profile.vat_number("404833048") == "FR83404833048"
    assert profile.vat_number("732829320") == "FR44732829320"
    assert profile.vat_number("123456789") is None  # bad Luhn key
    assert profile.vat_number("") is None


def test_profile_page_shows_the_vat_number_without_storing_it(
    app: Flask, client: FlaskClient, session: Session
) -> None:
    head = "404833048" + "0001"
    firm, owner = factories.make_firm(
        session, app.extensions["tenderpool.settings"], siret=head + luhn.calc_check_digit(head)
    )
    session.commit()
    login_as(client, session, owner.id)
    page = text_of(client.get("/entreprise/profil"))
    assert "FR83404833048" in page and "calculé à partir du SIREN" in page
    assert "FR83404833048" in text_of(client.get("/entreprise/profil/identite"))
    assert not hasattr(firm, "vat_number")


def test_identity_is_saved_and_normalised(client: FlaskClient, session: Session, seed: Seed) -> None:
    login_as(client, session, seed.member_id)
    page = text_of(client.get("/entreprise/profil/identite"))
    assert "EURL, SARL — Société à responsabilité limitée (sans autre indication) (5499)" in page
    assert "5710" in page and "Toutes les catégories juridiques INSEE" in page
    response = post_form(client, "/entreprise/profil/identite", IDENTITY)
    assert response.status_code == 302, text_of(response)
    firm = _firm(session, seed)
    session.refresh(firm)
    assert (firm.name, firm.legal_form_code, firm.naf_code, firm.is_sme) == (
        "Maçonnerie Briarde",
        "5499",
        "43.99C",
        True,
    )
    assert firm.website == "https://www.maconnerie-briarde.example"
    assert firm.profile_updated_at is not None
    event = session.scalar(select(AuditEvent).where(AuditEvent.action == "firm_profile_updated"))
    assert event is not None and event.detail == {"section": "identity"}
    shown = text_of(client.get("/entreprise/profil"))
    assert "Société à responsabilité limitée (sans autre indication) (5499)" in shown and "43.99C" in shown


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"legal_form_code": "9999"}, "Choisissez la forme juridique dans la liste"),
        ({"legal_form_code": "SARL"}, "Choisissez la forme juridique dans la liste"),
        ({"naf_code": "43-21"}, "deux chiffres, un point, deux chiffres et une lettre"),
        ({"postcode": "91000"}, "hors du territoire de votre chambre"),
        ({"postcode": "7710"}, "Un code postal compte 5 chiffres"),
        ({"website": "pas un site"}, "Adresse du site invalide"),
        ({"name": ""}, "Ce champ est obligatoire"),
    ],
)
def test_identity_validation_errors(
    client: FlaskClient, session: Session, seed: Seed, change: dict[str, str], message: str
) -> None:
    login_as(client, session, seed.owner_id)
    before = _firm(session, seed).name
    response = post_form(client, "/entreprise/profil/identite", {**IDENTITY, **change})
    assert response.status_code == 400
    assert message in text_of(response)
    assert 'aria-invalid="true"' in response.get_data(as_text=True)
    session.expire_all()
    assert _firm(session, seed).name == before


def test_legal_forms_come_from_the_insee_list() -> None:
    forms = profile.legal_forms()
    assert forms["5499"] == "Société à responsabilité limitée (sans autre indication)"
    assert forms["5710"] == "SAS, société par actions simplifiée"
    assert all(len(code) == 4 and code.isdigit() for code in forms)
    assert ("5710", "SCOP (SAS), SAS, SASU") in profile.common_legal_forms()


# --------------------------------------------------------------------------- skills


def test_skills_cpv_codes_and_keywords(client: FlaskClient, session: Session, seed: Seed) -> None:
    login_as(client, session, seed.member_id)
    page = text_of(client.get("/entreprise/profil/competences"))
    assert "data-cpv-picker" in page and "couvre tous les codes en dessous" in page
    assert "js/cpv-picker.js" in page and "<script>" not in page
    response = post_form(
        client,
        "/entreprise/profil/competences",
        {
            "cpv": "45210000-2, 45262500 45210000",
            "keywords": "pierre de taille; Pierre de taille, ravalement",
        },
    )
    assert response.status_code == 302, text_of(response)
    firm = _firm(session, seed)
    session.refresh(firm)
    assert firm.cpv == ["45210000", "45262500"]
    assert firm.keywords == ["pierre de taille", "ravalement"]
    shown = text_of(client.get("/entreprise/profil"))
    assert "45262500 — Travaux de maçonnerie" in shown

    for bad, message in [
        ("45210000-3", "Codes CPV inconnus : 45210000-3"),
        ("12345678", "Codes CPV inconnus : 12345678"),
        ("maçonnerie", "Codes CPV inconnus"),
    ]:
        refused = post_form(client, "/entreprise/profil/competences", {"cpv": bad, "keywords": ""})
        assert refused.status_code == 400 and message in text_of(refused)
    session.expire_all()
    assert _firm(session, seed).cpv == ["45210000", "45262500"]


# --------------------------------------------------------------------------- capacities

CAPACITIES = {
    "y1_turnover": "1 250 000,50",
    "y1_headcount": "12",
    "y1_by_field": "45 : 900 000\n71 = 100000",
    "y2_turnover": "1.100.000",
    "y2_headcount": "11",
    "y2_by_field": "",
    "y3_turnover": "980000 €",
    "y3_headcount": "9",
    "y3_by_field": "",
    "equipment": "Deux mini-pelles, un camion-grue.",
    "zone_kind": "departments",
    "zone_departments": "77, 93 91",
    "zone_radius_km": "",
}


def test_capacities_for_the_last_three_years(client: FlaskClient, session: Session, seed: Seed) -> None:
    login_as(client, session, seed.member_id)
    page = text_of(client.get("/entreprise/profil/capacites"))
    assert f"Chiffre d'affaires {Y1} (€ HT)" in page and f"Exercice {Y3}" in page
    response = post_form(client, "/entreprise/profil/capacites", CAPACITIES)
    assert response.status_code == 302, text_of(response)
    firm = _firm(session, seed)
    session.refresh(firm)
    years = {row.year: row for row in firm.years}
    assert sorted(years) == [Y3, Y2, Y1]
    assert years[Y1].turnover == Decimal("1250000.50") and years[Y1].headcount == 12
    assert years[Y1].turnover_by_field == {"45": "900000.00", "71": "100000.00"}
    assert years[Y2].turnover == Decimal("1100000.00") and years[Y3].turnover == Decimal("980000.00")
    assert firm.zone_departments == ["77", "93", "91"] and firm.zone_radius_km is None
    assert firm.equipment == "Deux mini-pelles, un camion-grue."

    # A radius instead of départements; blanking a year removes it.
    radius = {
        **CAPACITIES,
        "zone_kind": "radius",
        "zone_radius_km": "40",
        "y3_turnover": "",
        "y3_headcount": "",
    }
    assert post_form(client, "/entreprise/profil/capacites", radius).status_code == 302
    session.refresh(firm)
    assert (firm.zone_departments, firm.zone_radius_km) == ([], 40)
    assert sorted(row.year for row in firm.years) == [Y2, Y1]
    assert "40 km autour de" in text_of(client.get("/entreprise/profil"))


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"y1_turnover": "beaucoup"}, f"Chiffre d'affaires {Y1} : montant invalide"),
        ({"y1_turnover": "-5"}, "montant invalide"),
        ({"y2_headcount": "onze"}, f"Effectif {Y2} : un nombre entier"),
        ({"y1_by_field": "45 : 2 000 000"}, "la somme des parts dépasse le chiffre d'affaires global"),
        ({"y1_by_field": "maçonnerie 900000"}, "ne se lit pas"),
        ({"y1_by_field": "00 : 5"}, "ne se lit pas"),
        ({"y2_turnover": "", "y2_by_field": "45 : 5"}, "indiquez d'abord le chiffre d'affaires global"),
        ({"zone_departments": "77, 99"}, "« 99 » n'est pas un numéro de département"),
        ({"zone_departments": ""}, "au moins un département"),
        ({"zone_kind": "radius", "zone_radius_km": "5000"}, "entre 1 et 1000"),
    ],
)
def test_capacities_validation_errors(
    client: FlaskClient, session: Session, seed: Seed, change: dict[str, str], message: str
) -> None:
    login_as(client, session, seed.member_id)
    response = post_form(client, "/entreprise/profil/capacites", {**CAPACITIES, **change})
    assert response.status_code == 400
    assert message in text_of(response)
    assert session.scalars(select(FirmYear).where(FirmYear.firm_id == seed.firm_id)).all() == []


def test_amounts_are_read_the_french_way() -> None:
    def read(text: str) -> Decimal | None:
        return profile.parse_amount(text, field_name="x", label="Montant")

    assert read("1 234 567,89") == Decimal("1234567.89")
    assert read("1\u202f234\u00a0567") == Decimal("1234567.00")
    assert read("1.234.567") == Decimal("1234567.00")
    assert read("250000 € HT") == Decimal("250000.00")
    assert read("12.5") == Decimal("12.50")
    assert read("") is None
    with pytest.raises(ValidationError):
        read("1e400")


# --------------------------------------------------------------------------- references


REFERENCE = {
    "buyer": "Commune de Meaux",
    "object": "Réfection du préau de l'école Jean-Macé",
    "year": str(Y1),
    "amount": "85 000",
    "cpv": "45262500",
    "lot": "2",
    "role": "mandataire",
    "is_public": "y",
}


def test_references_crud_with_an_attestation(
    app: Flask, client: FlaskClient, session: Session, seed: Seed
) -> None:
    login_as(client, session, seed.member_id)
    form = text_of(client.get("/entreprise/profil/references/nouvelle"))
    assert 'enctype="multipart/form-data"' in form and "Mandataire d'un groupement" in form
    pdf = factories.pdf_bytes()
    response = post_form(
        client,
        "/entreprise/profil/references/nouvelle",
        {**REFERENCE, "attestation_file": (io.BytesIO(pdf), "attestation-preau.pdf")},
        content_type="multipart/form-data",
    )
    assert response.status_code == 302, text_of(response)
    reference = session.scalars(select(FirmReference).where(FirmReference.firm_id == seed.firm_id)).one()
    assert (reference.buyer, reference.year, reference.amount, reference.role, reference.lot) == (
        "Commune de Meaux",
        Y1,
        Decimal("85000.00"),
        "mandataire",
        "2",
    )
    assert reference.cpv == ["45262500"] and reference.is_public
    attestation = session.get(FirmDocument, reference.attestation_id)
    assert attestation is not None and attestation.kind == "reference"
    root = upload_settings(app.extensions["tenderpool.settings"]).root
    assert (root / attestation.storage_key).read_bytes() == pdf

    # Edit: made private, the attestation kept through the select.
    edit_page = text_of(client.get(f"/entreprise/profil/references/{reference.id}"))
    assert "Réfection du préau" in edit_page and "attestation-preau.pdf" in edit_page
    changed = {**REFERENCE, "object": "Réfection du préau (tranche 2)", "attestation_id": str(attestation.id)}
    del changed["is_public"]
    assert post_form(client, f"/entreprise/profil/references/{reference.id}", changed).status_code == 302
    session.refresh(reference)
    assert reference.object == "Réfection du préau (tranche 2)" and not reference.is_public
    assert reference.attestation_id == attestation.id

    reference_id, attestation_id = reference.id, attestation.id
    assert post_form(client, f"/entreprise/profil/references/{reference_id}/supprimer").status_code == 302
    session.expire_all()
    assert session.get(FirmReference, reference_id) is None
    assert session.get(FirmDocument, attestation_id) is not None  # the attestation stays a document


def test_reference_errors_keep_nothing(app: Flask, client: FlaskClient, session: Session, seed: Seed) -> None:
    login_as(client, session, seed.owner_id)
    root = upload_settings(app.extensions["tenderpool.settings"]).root
    cases = [
        ({"year": str(TODAY.year + 1)}, "Année : un nombre entier entre 1950"),
        ({"role": "chef"}, "Choisissez le rôle"),
        ({"cpv": "99999999"}, "Codes CPV inconnus"),
        ({"buyer": ""}, "Ce champ est obligatoire"),
        (
            {"attestation_file": (io.BytesIO(factories.pdf_bytes(javascript=True)), "attestation.pdf")},
            "JavaScript",
        ),
    ]
    for change, message in cases:
        response = post_form(
            client,
            "/entreprise/profil/references/nouvelle",
            {**REFERENCE, **change},
            content_type="multipart/form-data",
        )
        assert response.status_code == 400, change
        assert message in text_of(response)
    assert session.scalars(select(FirmReference).where(FirmReference.firm_id == seed.firm_id)).all() == []
    assert session.scalars(select(FirmDocument).where(FirmDocument.firm_id == seed.firm_id)).all() == []
    assert not root.exists() or not any(root.iterdir())


def test_another_firms_reference_and_certification_are_404(
    app: Flask, client: FlaskClient, session: Session, seed: Seed
) -> None:
    other, _owner = factories.make_firm(session, app.extensions["tenderpool.settings"], postcode="91000")
    reference = FirmReference(firm_id=other.id, buyer="Département", object="Voirie", year=Y1)
    certification = FirmCertification(firm_id=other.id, name="Qualibat")
    foreign_doc = factories.make_document(session, other, kind="reference")
    session.add_all([reference, certification])
    session.commit()
    login_as(client, session, seed.owner_id)
    assert client.get(f"/entreprise/profil/references/{reference.id}").status_code == 404
    assert post_form(client, f"/entreprise/profil/references/{reference.id}/supprimer").status_code == 404
    assert client.get(f"/entreprise/profil/certifications/{certification.id}").status_code == 404
    assert (
        post_form(client, f"/entreprise/profil/certifications/{certification.id}/supprimer").status_code
        == 404
    )
    # Nor can its attestation be attached to one of ours.
    stolen = post_form(
        client, "/entreprise/profil/references/nouvelle", {**REFERENCE, "attestation_id": str(foreign_doc.id)}
    )
    assert stolen.status_code == 400 and "attestation de bonne exécution de votre entreprise" in text_of(
        stolen
    )


# --------------------------------------------------------------------------- certifications


def test_certifications_crud(client: FlaskClient, session: Session, seed: Seed) -> None:
    login_as(client, session, seed.member_id)
    page = text_of(client.get("/entreprise/profil/certifications/nouvelle"))
    assert '<datalist id="certification-suggestions">' in page and 'value="Qualifelec"' in page
    created = post_form(
        client,
        "/entreprise/profil/certifications/nouvelle",
        {"name": "Qualibat RGE", "number": "E-E123456", "valid_until": "31/12/2027"},
    )
    assert created.status_code == 302, text_of(created)
    certification = session.scalars(
        select(FirmCertification).where(FirmCertification.firm_id == seed.firm_id)
    ).one()
    assert (certification.name, certification.number, certification.valid_until) == (
        "Qualibat RGE",
        "E-E123456",
        dt.date(2027, 12, 31),
    )
    bad = post_form(
        client,
        f"/entreprise/profil/certifications/{certification.id}",
        {"name": "ISO 9001", "valid_until": "bientôt"},
    )
    assert bad.status_code == 400 and "Valable jusqu'au : date invalide" in text_of(bad)
    expired = post_form(
        client,
        f"/entreprise/profil/certifications/{certification.id}",
        {"name": "ISO 9001", "number": "", "valid_until": "2020-01-31"},
    )
    assert expired.status_code == 302
    assert "expirée le 31/01/2020" in text_of(client.get("/entreprise/profil"))
    certification_id = certification.id
    deleted = post_form(client, f"/entreprise/profil/certifications/{certification_id}/supprimer")
    assert deleted.status_code == 302
    session.expire_all()
    assert session.get(FirmCertification, certification_id) is None


# --------------------------------------------------------------------------- completeness


def _complete(session: Session, firm: Firm) -> None:
    firm.legal_form_code, firm.naf_code, firm.is_sme = "5710", "43.21A", True
    firm.years = [FirmYear(year=y, turnover=Decimal(500000), headcount=6) for y in (Y1, Y2, Y3)]
    firm.references = [FirmReference(buyer="Ville d'Évry", object="Éclairage public", year=Y1)]
    for kind in ("kbis", "urssaf", "tax", "rc_pro"):
        factories.make_document(
            session, firm, kind=kind, issued_on=TODAY, expires_on=documents.default_expiry(kind, TODAY)
        )
    session.flush()
    session.refresh(firm)


def test_completeness_lists_what_a_dc2_needs(session: Session, seed: Seed) -> None:
    firm = _firm(session, seed)
    percent, missing = profile.profile_completeness(firm, today=TODAY)
    assert percent == 0
    keys = [item.key for item in missing]
    assert keys == [
        "legal_form",
        "sme",
        "naf",
        "turnover",
        "headcount",
        "reference",
        "document_kbis",
        "document_urssaf",
        "document_tax",
        "document_rc_pro",
    ]
    by_key = {item.key: item for item in missing}
    assert by_key["legal_form"].url == "/entreprise/profil/identite#legal_form_code"
    assert by_key["turnover"].label.endswith(f"(manque : {Y3}, {Y2}, {Y1})")
    assert by_key["document_kbis"].url == "/entreprise/profil/documents?type=kbis#deposer"
    assert by_key["reference"].url == "/entreprise/profil/references/nouvelle"

    _complete(session, firm)
    assert profile.profile_completeness(firm, today=TODAY) == (100, [])

    # A works firm (CPV 45…) also needs its décennale; an expired Kbis no longer counts.
    owner = firm.memberships[0].user
    profile.update_skills(
        session, firm, by=owner, cpv="45310000", keywords="", ip=None, now=dt.datetime.now(dt.UTC)
    )
    kbis = documents.current_document(firm, "kbis")
    assert kbis is not None
    kbis.expires_on = TODAY - dt.timedelta(days=1)
    percent, missing = profile.profile_completeness(firm, today=TODAY)
    assert [item.key for item in missing] == ["document_kbis", "document_decennale"]
    assert f"a expiré le {kbis.expires_on:%d/%m/%Y}" in missing[0].label
    assert percent == 9 * 100 // 11


def test_profile_page_shows_the_gauge_with_links(client: FlaskClient, session: Session, seed: Seed) -> None:
    login_as(client, session, seed.member_id)
    page = client.get("/entreprise/profil").get_data(as_text=True)
    assert '<progress id="jauge-profil" max="100" value="0">' in page
    assert 'href="/entreprise/profil/identite#legal_form_code"' in page
    assert "<script" not in page


# --------------------------------------------------------------------------- who sees what


def test_staff_of_the_chamber_read_the_profile_with_its_figures(
    client: FlaskClient, session: Session, seed: Seed
) -> None:
    firm = _firm(session, seed)
    firm.years = [FirmYear(year=Y1, turnover=Decimal("765432"), headcount=4)]
    session.commit()
    login_as(client, session, seed.staff77_id)
    page = text_of(client.get(f"/equipe/entreprises/{seed.firm_id}/profil"))
    assert "lecture seule" in page and "765" in page
    assert "Modifier l'identité" not in page
    login_as(client, session, seed.staff91_id)
    assert client.get(f"/equipe/entreprises/{seed.firm_id}/profil").status_code == 404
    login_as(client, session, seed.admin_id)
    assert client.get(f"/equipe/entreprises/{seed.firm_id}/profil").status_code == 200


def test_members_edit_but_only_the_owner_sets_the_directory(
    client: FlaskClient, session: Session, seed: Seed
) -> None:
    login_as(client, session, seed.member_id)
    page = text_of(client.get("/entreprise/profil/annuaire"))
    assert "Seul le responsable de l'entreprise choisit" in page
    refused = post_form(client, "/entreprise/profil/annuaire", {"opt_in": "y", "parts": "skills"})
    assert refused.status_code == 403
    assert not _firm(session, seed).directory_opt_in

    login_as(client, session, seed.owner_id)
    ok = post_form(client, "/entreprise/profil/annuaire", {"opt_in": "y", "parts": ["skills", "zone"]})
    assert ok.status_code == 302
    firm = _firm(session, seed)
    session.refresh(firm)
    assert firm.directory_opt_in and firm.directory_fields == ["skills", "zone"]
    bad = post_form(client, "/entreprise/profil/annuaire", {"opt_in": "y", "parts": "turnover"})
    assert bad.status_code == 400 and "Choisissez les rubriques" in text_of(bad)
    assert session.scalar(select(AuditEvent).where(AuditEvent.action == "firm_directory_updated"))


def test_pending_firms_have_no_profile_pages(client: FlaskClient, session: Session, seed: Seed) -> None:
    login_as(client, session, seed.pending_id)
    for url in ("/entreprise/profil", "/entreprise/profil/identite", "/entreprise/profil/documents"):
        assert client.get(url).headers["Location"] == "/entreprise/en-attente"
