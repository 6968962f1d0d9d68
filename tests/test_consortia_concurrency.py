"""Two members editing the same thing never silently overwrite each other (optimistic locking)."""

from __future__ import annotations

import pytest
from flask import Flask
from sqlalchemy import update
from sqlalchemy.orm import Session

from tenderpool.accounts.models import User
from tenderpool.consortia import services
from tenderpool.consortia.models import Consortium, ConsortiumLot, MemoireSection
from tenderpool.firms.models import Firm
from tests.conftest import Seed, login_as, post_form, text_of
from tests.consortia_helpers import NOW, consortium_of, join, partner, two_lot_notice


def _setup(app: Flask, session: Session, seed: Seed) -> tuple[Consortium, Firm, User]:
    settings = app.extensions["tenderpool.settings"]
    with app.app_context():
        notice = two_lot_notice(session)
        owner_a = session.get_one(User, seed.owner_id)
        b, owner_b = partner(session, settings, name="Plomberie Essonne", cpv=["45330000"])
        consortium = consortium_of(session, owner_a, notice)
        join(session, consortium, b, owner_b, owner_a)
        session.commit()
    return consortium, b, owner_b


def test_second_save_of_a_section_is_refused_with_what_changed(
    app: Flask, session: Session, seed: Seed
) -> None:
    consortium, _b, owner_b = _setup(app, session, seed)
    section = consortium.sections[0]
    url = f"/groupements/{consortium.id}/memoire/{section.id}"
    alice, bob = app.test_client(), app.test_client()
    login_as(alice, session, seed.owner_id)
    login_as(bob, session, owner_b.id)
    # Both open the form at the same version.
    loaded = section.version
    assert f'name="version" value="{loaded}"' in alice.get(url).get_data(as_text=True)
    assert f'name="version" value="{loaded}"' in bob.get(url).get_data(as_text=True)
    form = {"version": str(loaded), "title": section.title, "status": "draft", "assignee_firm_id": ""}
    assert post_form(alice, url, {**form, "body": "Texte d'Alice : méthodologie BIM."}).status_code == 302
    response = post_form(bob, url, {**form, "body": "Texte de Bob : planning en 3 phases."})
    assert response.status_code == 409
    page = text_of(response)
    assert "pendant que vous la modifiiez" in page
    assert "Texte d'Alice : méthodologie BIM." in page  # what the other member saved
    assert "Texte de Bob : planning en 3 phases." in page  # the draft is kept in the form
    session.expire_all()
    assert session.get_one(MemoireSection, section.id).body == "Texte d'Alice : méthodologie BIM."


def test_second_save_of_a_repartition_is_refused(app: Flask, session: Session, seed: Seed) -> None:
    consortium, b, owner_b = _setup(app, session, seed)
    lot = next(x for x in consortium.lots if x.lot_number == "2")
    url = f"/groupements/{consortium.id}/repartition"
    alice, bob = app.test_client(), app.test_client()
    login_as(alice, session, seed.owner_id)
    login_as(bob, session, owner_b.id)
    base = {"lot": "2", "version": str(lot.version), "offer_amount": "300000"}
    assert (
        post_form(alice, url, {**base, f"share_{b.id}": "100", f"amount_{b.id}": "300000"}).status_code == 302
    )
    response = post_form(bob, url, {**base, f"share_{b.id}": "50", f"amount_{b.id}": "150000"})
    assert response.status_code == 409
    assert "un autre membre a enregistré la répartition" in text_of(response)
    session.expire_all()
    shares = [s for s in session.get_one(Consortium, consortium.id).shares if s.lot_number == "2"]
    assert [str(s.share) for s in shares] == ["100.00"]


def test_racing_saves_cannot_both_win(app: Flask, session: Session, seed: Seed) -> None:
    """Both saves passed the version check; the versioned UPDATE lets only the first through.

    The other transaction is simulated by an UPDATE behind the ORM's back, committed between
    this session's read and its write, as a concurrent request would."""
    consortium, b, _owner_b = _setup(app, session, seed)
    with app.app_context():
        owner_a = session.get_one(User, seed.owner_id)
        lot = session.get_one(ConsortiumLot, (consortium.id, "2"))
        loaded = lot.version
        session.execute(
            update(ConsortiumLot.__table__)
            .where(
                ConsortiumLot.__table__.c.consortium_id == consortium.id,
                ConsortiumLot.__table__.c.lot_number == "2",
            )
            .values(version=loaded + 1, offer_amount=123)
        )
        session.commit()  # the other request's transaction ends first
        rows = [services.ShareInput(b.id, "Plomberie", "300000", "100")]
        with pytest.raises(services.EditConflict, match="rien n'a été écrasé"):
            services.save_repartition(
                session,
                consortium,
                lot_number="2",
                version=loaded,
                offer_amount="300000",
                rows=rows,
                by=owner_a,
                now=NOW,
            )
        session.rollback()
        assert session.get_one(ConsortiumLot, (consortium.id, "2")).offer_amount == 123
