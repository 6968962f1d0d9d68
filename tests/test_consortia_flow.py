"""The whole groupement journey through the web, as the firms and their chambers live it.

Firm A (77) forms a groupement on a two-lot notice, invites firm B (91) from the partner
suggestions and firm C by email; C signs up, is approved by its chamber and claims the
invitation; B and C accept; the répartition sums to 100 %, the mémoire is written, the
groupement becomes ready, is submitted, and the outcome is recorded.
"""

from __future__ import annotations

import re
from decimal import Decimal
from typing import Any

from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from tenderpool.accounts.models import User
from tenderpool.consortia.models import Consortium, ConsortiumEvent, MemberState
from tenderpool.firms.models import Firm
from tests import factories
from tests.conftest import Seed, body_text, login_as, post_form, text_of
from tests.consortia_helpers import partner, two_lot_notice


def test_groupement_from_notice_to_outcome(
    app: Flask, client: FlaskClient, session: Session, seed: Seed, outbox: Any
) -> None:
    # No app context around the requests: flask-login caches the user in it.
    settings = app.extensions["tenderpool.settings"]
    notice = two_lot_notice(session)
    firm_a = session.get(Firm, seed.firm_id)
    assert firm_a is not None
    factories.set_profile(session, firm_a, cpv=["45210000"])
    firm_b, owner_b = partner(
        session, settings, name="Plomberie Essonne SARL", cpv=["45330000"], headcount=12
    )
    session.commit()

    # A forms the groupement from the notice page.
    login_as(client, session, seed.owner_id)
    page = client.get(f"/avis/{notice.id}")
    assert "Former un groupement sur cet avis" in text_of(page)
    response = post_form(
        client,
        f"/avis/{notice.id}/groupement",
        {"name": "Groupement Jean Jaurès", "form": "conjoint", "visibility": "open", "lots": ["1", "2"]},
    )
    assert response.status_code == 302
    consortium = session.scalars(select(Consortium).where(Consortium.notice_id == notice.id)).one()
    cid = consortium.id
    assert consortium.mandataire is not None and consortium.mandataire.firm_id == firm_a.id
    assert consortium.status == "forming"

    # The suggestions name B, which covers the plumbing lot, with an explanation.
    page = text_of(client.get(f"/groupements/{cid}/partenaires"))
    assert "Plomberie Essonne SARL" in page
    assert "Complète le groupement" in page and "45330000" in page

    response = post_form(
        client, f"/groupements/{cid}/inviter", {"firm_id": str(firm_b.id), "message": "Lot 2 ?"}
    )
    assert response.status_code == 302
    invitation_mail = next(m for m in outbox() if owner_b.email in m["To"])
    assert "Groupement Jean Jaurès" in body_text(invitation_mail)

    # C is not on TenderPool: invited by email, it signs up through the link.
    response = post_form(
        client,
        f"/groupements/{cid}/inviter-par-courriel",
        {
            "email": "contact@electricite-sud.example",
            "firm_name": "Électricité Sud",
            "message": "Courants faibles",
        },
    )
    assert response.status_code == 302
    email_mail = next(m for m in outbox() if "contact@electricite-sud.example" in m["To"])
    link = re.search(r"https?://\S+/groupements/invitation/(\S+)", body_text(email_mail))
    assert link is not None
    token = link.group(1)

    client = app.test_client()  # a visitor who is not logged in
    landing = client.get(f"/groupements/invitation/{token}")
    assert landing.status_code == 200, text_of(landing)
    assert "Inscrire mon entreprise" in text_of(landing), text_of(landing)[-3000:]
    siret_c = factories.valid_siret()
    response = post_form(
        client,
        "/inscription",
        {
            "siret": siret_c,
            "name": "Électricité Sud",
            "address": "3 avenue de l'Europe",
            "postcode": "91000",
            "city": "Évry-Courcouronnes",
            "full_name": "Chloé Martin",
            "email": "contact@electricite-sud.example",
            "password": "courant-faible-2026",
            "confirm": "courant-faible-2026",
        },
    )
    assert response.status_code == 302
    firm_c = session.scalars(select(Firm).where(Firm.siret == siret_c)).one()
    owner_c = session.scalars(select(User).where(User.email == "contact@electricite-sud.example")).one()
    # Pending firms cannot claim yet; their chamber approves them.
    login_as(client, session, owner_c.id)
    assert "validée par sa CCI" in text_of(client.get(f"/groupements/invitation/{token}"))
    login_as(client, session, seed.staff91_id)
    assert post_form(client, f"/equipe/entreprises/{firm_c.id}/valider").status_code == 302
    login_as(client, session, owner_c.id)
    response = post_form(client, f"/groupements/invitation/{token}")
    assert response.status_code == 302 and response.headers["Location"].endswith(f"/groupements/{cid}")
    card = text_of(client.get(f"/groupements/{cid}"))
    assert "Votre entreprise est invitée" in card and "Courants faibles" in card
    assert post_form(client, f"/groupements/{cid}/reponse", {"decision": "accept"}).status_code == 302

    # B accepts from its card.
    login_as(client, session, owner_b.id)
    assert "Votre entreprise est invitée" in text_of(client.get(f"/groupements/{cid}"))
    assert (
        post_form(
            client, f"/groupements/{cid}/reponse", {"decision": "accept", "message": "Avec plaisir"}
        ).status_code
        == 302
    )
    session.expire_all()
    consortium = session.get_one(Consortium, cid)
    assert {m.firm_id for m in consortium.active_members} == {firm_a.id, firm_b.id, firm_c.id}
    assert consortium.status == "assembling"
    # The mandataire was emailed the answers at once.
    assert any("accepte votre invitation" in str(m["Subject"]) for m in outbox())

    # Répartition: lot 1 A 80 % + C 20 %, lot 2 B 100 %.
    login_as(client, session, seed.owner_id)
    plan = {
        "1": {
            "offer": "500000",
            firm_a.id: ("Gros œuvre, maçonnerie", "400000", "80"),
            firm_c.id: ("Électricité", "100000", "20"),
        },
        "2": {"offer": "250000", firm_b.id: ("Plomberie, sanitaires", "250000", "100")},
    }
    for lot, rows in plan.items():
        lot_row = next(x for x in consortium.lots if x.lot_number == lot)
        data = {"lot": lot, "version": str(lot_row.version), "offer_amount": rows["offer"]}
        for firm_id, (tasks, amount, share) in ((k, v) for k, v in rows.items() if k != "offer"):
            data |= {f"tasks_{firm_id}": tasks, f"amount_{firm_id}": amount, f"share_{firm_id}": share}
        assert post_form(client, f"/groupements/{cid}/repartition", data).status_code == 302
    assert "La répartition est cohérente" in text_of(client.get(f"/groupements/{cid}/repartition"))

    # Not ready yet: the mémoire sections are still to write.
    response = post_form(client, f"/groupements/{cid}/statut", {"action": "ready"}, follow_redirects=True)
    assert "n'est pas prête" in text_of(response)
    session.expire_all()
    consortium = session.get_one(Consortium, cid)
    for section in consortium.sections:
        response = post_form(
            client,
            f"/groupements/{cid}/memoire/{section.id}",
            {
                "version": str(section.version),
                "title": section.title,
                "body": f"## {section.title}\n\nNotre **méthode** en trois points.",
                "status": "ready",
                "assignee_firm_id": str(firm_a.id),
            },
        )
        assert response.status_code == 302
    memoire = client.get(f"/groupements/{cid}/memoire").get_data(as_text=True)
    assert "<strong>méthode</strong>" in memoire

    assert post_form(client, f"/groupements/{cid}/statut", {"action": "ready"}).status_code == 302
    session.expire_all()
    assert session.get_one(Consortium, cid).status == "ready"
    assert post_form(client, f"/groupements/{cid}/statut", {"action": "submit"}).status_code == 302
    session.expire_all()
    consortium = session.get_one(Consortium, cid)
    assert consortium.status == "submitted"
    assert consortium.submitted_snapshot is not None
    assert len(consortium.submitted_snapshot["members"]) == 3

    # Frozen: nobody joins or leaves any more.
    login_as(client, session, owner_b.id)
    response = post_form(client, f"/groupements/{cid}/quitter", follow_redirects=True)
    assert "composition est figée" in text_of(response)

    login_as(client, session, seed.owner_id)
    response = post_form(client, f"/groupements/{cid}/resultat", {"won": "1", "amount": "742 000"})
    assert response.status_code == 302
    session.expire_all()
    consortium = session.get_one(Consortium, cid)
    assert consortium.status == "won" and consortium.outcome_amount == Decimal("742000.00")
    kinds = [
        e.kind for e in session.scalars(select(ConsortiumEvent).where(ConsortiumEvent.consortium_id == cid))
    ]
    assert kinds.count("status") >= 3 and "outcome" in kinds
    assert all(m.state != MemberState.INVITED for m in consortium.members)
