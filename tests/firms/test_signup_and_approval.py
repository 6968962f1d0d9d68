"""Firm sign-up with a SIRET, approval or refusal by the chamber's staff, colleagues."""

from __future__ import annotations

import re
from typing import Any

import pytest
from flask.testing import FlaskClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from tenderpool.accounts.models import AuditEvent, User
from tenderpool.errors import ValidationError
from tenderpool.firms import services
from tenderpool.firms.models import Firm, FirmMembership
from tests.conftest import PASSWORD, SEED_EMAILS, Seed, body_text, login_as, post_form, text_of
from tests.factories import valid_siret

SIGNUP = {
    "name": "Maçonnerie Briarde",
    "address": "5 rue des Tanneurs",
    "postcode": "77100",
    "city": "Meaux",
    "full_name": "Paul Durand",
    "email": "paul.durand@maconnerie-briarde.example",
    "password": "chantier-2026",
    "confirm": "chantier-2026",
}


def test_signup_creates_a_pending_firm_in_the_right_chamber(
    client: FlaskClient, session: Session, outbox: Any
) -> None:
    siret = valid_siret()
    response = post_form(
        client, "/inscription", {**SIGNUP, "siret": f"{siret[:3]} {siret[3:6]} {siret[6:9]} {siret[9:]}"}
    )
    assert response.status_code == 302
    assert response.headers["Location"] == "/entreprise/en-attente"
    firm = session.scalar(select(Firm).where(Firm.siret == siret))
    assert firm is not None
    assert (firm.status, firm.chamber_slug, firm.department, firm.siren) == (
        "pending",
        "cci77",
        "77",
        siret[:9],
    )
    page = text_of(client.get("/entreprise/en-attente"))
    assert "en attente de validation" in page and "CCI Seine-et-Marne" in page
    # Pending firms cannot use firm pages yet.
    assert client.get("/entreprise").headers["Location"] == "/entreprise/en-attente"
    assert [m["To"] for m in outbox()] == [SIGNUP["email"]]


@pytest.mark.parametrize(
    ("siret", "message"),
    [
        ("12345678901234", "clé de contrôle incorrecte"),
        ("1234", "14 chiffres"),
        ("1234567890123A", "que des chiffres"),
    ],
)
def test_invalid_siret_is_refused_with_a_clear_message(client: FlaskClient, siret: str, message: str) -> None:
    response = post_form(client, "/inscription", {**SIGNUP, "siret": siret})
    assert response.status_code == 400
    assert message in text_of(response)


def test_la_poste_siret_passes_despite_luhn() -> None:
    # La Poste establishments (SIREN 356 000 000) follow a digit-sum rule instead of Luhn.
    assert services.clean_siret("356 000 000 00048") == "35600000000048"
    with pytest.raises(ValidationError):
        services.clean_siret("35600000000049")


def test_firm_outside_the_chambers_territory_is_refused(client: FlaskClient) -> None:
    response = post_form(client, "/inscription", {**SIGNUP, "siret": valid_siret(), "postcode": "75011"})
    assert response.status_code == 400
    text = text_of(response)
    assert "CCI Seine-et-Marne (77)" in text and "CCI Essonne (91)" in text and "département 75" in text


def test_duplicate_siret_is_refused(client: FlaskClient, session: Session, seed: Seed) -> None:
    firm = session.get(Firm, seed.firm_id)
    assert firm is not None
    response = post_form(client, "/inscription", {**SIGNUP, "siret": firm.siret})
    assert response.status_code == 400
    assert "déjà inscrite" in text_of(response)


@pytest.mark.parametrize(
    ("postcode", "department"),
    [("77100", "77"), ("91000", "91"), ("20000", "2A"), ("20200", "2B"), ("97400", "974"), ("01000", "01")],
)
def test_department_of_postcode(postcode: str, department: str) -> None:
    assert services.department_of_postcode(postcode) == department


def test_staff_approves_a_firm_of_their_chamber(
    client: FlaskClient, session: Session, seed: Seed, outbox: Any
) -> None:
    login_as(client, session, seed.staff91_id)
    queue = text_of(client.get("/equipe/entreprises"))
    pending_firm = session.get(Firm, seed.pending_firm_id)
    assert pending_firm is not None and pending_firm.name in queue
    response = post_form(client, f"/equipe/entreprises/{seed.pending_firm_id}/valider")
    assert response.status_code == 302
    session.expire_all()
    assert pending_firm.status == "approved" and pending_firm.decided_by_id == seed.staff91_id
    message = outbox()[-1]
    assert message["To"] == SEED_EMAILS["pending"]
    assert "validée" in message["Subject"]
    assert "http://tenderpool.test/" in body_text(message)
    event = session.scalars(select(AuditEvent).where(AuditEvent.action == "firm_approved")).one()
    assert (event.actor_chamber, event.target_id) == ("cci91", str(seed.pending_firm_id))
    # The owner can now use the firm pages.
    login_as(client, session, seed.pending_id)
    assert client.get("/entreprise").status_code == 200


def test_staff_of_another_chamber_neither_sees_nor_approves(
    client: FlaskClient, session: Session, seed: Seed
) -> None:
    login_as(client, session, seed.staff77_id)
    pending_firm = session.get(Firm, seed.pending_firm_id)
    assert pending_firm is not None
    assert pending_firm.name not in text_of(client.get("/equipe/entreprises"))
    assert post_form(client, f"/equipe/entreprises/{seed.pending_firm_id}/valider").status_code == 404
    session.expire_all()
    assert pending_firm.status == "pending"


def test_refusal_needs_a_reason_and_emails_it(
    client: FlaskClient, session: Session, seed: Seed, outbox: Any
) -> None:
    login_as(client, session, seed.staff91_id)
    post_form(client, f"/equipe/entreprises/{seed.pending_firm_id}/refuser", {"reason": ""})
    pending_firm = session.get(Firm, seed.pending_firm_id)
    assert pending_firm is not None
    session.expire_all()
    assert pending_firm.status == "pending"
    reason = "Établissement fermé au répertoire Sirene"
    post_form(client, f"/equipe/entreprises/{seed.pending_firm_id}/refuser", {"reason": reason})
    session.expire_all()
    assert (pending_firm.status, pending_firm.status_reason) == ("refused", reason)
    assert reason in body_text(outbox()[-1])
    login_as(client, session, seed.pending_id)
    page = text_of(client.get("/entreprise/en-attente"))
    assert "refusée" in page and reason in page


def test_owner_invites_a_colleague_who_joins(
    app: Any, client: FlaskClient, session: Session, seed: Seed, outbox: Any
) -> None:
    login_as(client, session, seed.owner_id)
    response = post_form(client, "/entreprise/inviter", {"email": "Collegue@Example.com"})
    assert response.status_code == 302
    message = outbox()[-1]
    assert message["To"] == "collegue@example.com"
    match = re.search(r"http://tenderpool\.test(/invitation/\S+)", body_text(message))
    assert match
    assert "collegue@example.com" in text_of(client.get("/entreprise"))

    newcomer = app.test_client()
    assert newcomer.get(match.group(1)).status_code == 200
    joined = post_form(
        newcomer,
        match.group(1),
        {"full_name": "Léa Martin", "password": "collegue-2026", "confirm": "collegue-2026"},
    )
    assert joined.status_code == 302
    assert newcomer.get("/entreprise").status_code == 200
    user = session.scalar(select(User).where(User.email == "collegue@example.com"))
    assert user is not None
    membership = session.get(FirmMembership, user.id)
    assert membership is not None and membership.firm_id == seed.firm_id and not membership.is_owner
    # The invitation is spent.
    again = app.test_client().get(match.group(1))
    assert again.status_code == 400


def test_member_cannot_invite(client: FlaskClient, session: Session, seed: Seed) -> None:
    login_as(client, session, seed.member_id)
    assert post_form(client, "/entreprise/inviter", {"email": "x@example.com"}).status_code == 403


def test_inviting_an_existing_account_is_refused(client: FlaskClient, session: Session, seed: Seed) -> None:
    login_as(client, session, seed.owner_id)
    response = post_form(
        client, "/entreprise/inviter", {"email": SEED_EMAILS["staff77"]}, follow_redirects=True
    )
    assert "déjà un compte" in text_of(response)


def test_signup_then_login_with_the_chosen_password(app: Any, client: FlaskClient) -> None:
    post_form(client, "/inscription", {**SIGNUP, "siret": valid_siret()})
    post_form(client, "/deconnexion")
    response = post_form(client, "/connexion", {"email": SIGNUP["email"], "password": SIGNUP["password"]})
    assert response.status_code == 302
    assert SIGNUP["password"] != PASSWORD
