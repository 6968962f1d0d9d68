"""Partner suggestions: a greedy cover of the missing skills, ranked and explained in French."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy.orm import Session

from tenderpool.accounts.models import User
from tenderpool.consortia.suggestions import consortium_needs, covers, missing_skills, suggest_partners
from tenderpool.firms.models import Firm, FirmReference
from tenderpool.notices.models import Award, NoticeDismissal
from tests import factories
from tests.conftest import Seed
from tests.consortia_helpers import NOW, consortium_of, join, partner, two_lot_notice

TERRITORY = {"77", "91"}


def test_cover_follows_the_cpv_tree() -> None:
    assert covers("45330000", "45330000") == 1.0
    assert covers("45331000", "45330000") == 1.0  # more precise than needed
    assert covers("45000000", "45330000") == 0.5  # more general: counts half
    assert covers("45310000", "45330000") == 0.0


def test_suggestions_cover_the_missing_lots_and_explain_why(
    session: Session, settings: Any, seed: Seed
) -> None:
    notice = two_lot_notice(
        session,
        lots=[
            {"number": "1", "title": "Gros œuvre", "cpv": ["45210000"], "estimated_value": 400000},
            {"number": "2", "title": "Plomberie", "cpv": ["45330000"], "estimated_value": 200000},
            {"number": "3", "title": "Électricité", "cpv": ["45310000"], "estimated_value": 100000},
        ],
    )
    a = session.get_one(Firm, seed.firm_id)
    factories.set_profile(session, a, cpv=["45210000"])
    both, _ = partner(
        session, settings, name="Fluides Réunis", postcode="77100", cpv=["45330000", "45310000"], headcount=25
    )
    plumber, _ = partner(session, settings, name="Plomberie Essonne", cpv=["45330000"], headcount=4)
    general, _ = partner(session, settings, name="Bâtiment Général", cpv=["45000000"])
    hidden, _ = partner(
        session, settings, name="Pas dans l'annuaire", cpv=["45330000", "45310000"], directory=False
    )
    dismissed, dismissed_owner = partner(
        session, settings, name="Pas intéressée", cpv=["45330000", "45310000"]
    )
    session.add(
        NoticeDismissal(firm_id=dismissed.id, notice_id=notice.id, reason="too_far", by_id=dismissed_owner.id)
    )
    plumber.references = [
        FirmReference(
            buyer="Commune d'Évry", object="Réfection des sanitaires du gymnase", year=2025, cpv=["45330000"]
        )
    ]
    session.flush()
    consortium = consortium_of(session, session.get_one(User, seed.owner_id), notice, lots=["1", "2", "3"])
    assert consortium_needs(consortium) == ["45210000", "45330000", "45310000"]  # 45000000 adds nothing

    missing, found = suggest_partners(session, consortium, territory=TERRITORY, today=NOW.date())
    assert missing == ["45330000", "45310000"]
    names = [s.firm.name for s in found]
    assert "Pas dans l'annuaire" not in names and "Pas intéressée" not in names
    assert names[0] == "Fluides Réunis"  # one firm covers both missing skills: the greedy pick
    assert [s.firm.name for s in found if s.in_cover] == ["Fluides Réunis"]
    top = found[0]
    assert top.explanation.startswith("Complète le groupement : Couvre ")
    assert "Proche : Seine-et-Marne (77)." in top.explanation
    assert "Effectif : 10 à 49 salariés." in top.explanation
    by_name = {s.firm.name: s for s in found}
    assert (
        "Une référence proche, dont « Réfection des sanitaires du gymnase »"
        in by_name["Plomberie Essonne"].explanation
    )
    # A general skill covers half as well as a precise one.
    assert by_name["Bâtiment Général"].score < by_name["Plomberie Essonne"].score
    assert found == sorted(found, key=lambda s: (not s.in_cover, -s.score, s.firm.name))
    _ = general, hidden, both


def test_greedy_cover_needs_two_firms_when_nobody_covers_everything(
    session: Session, settings: Any, seed: Seed
) -> None:
    notice = two_lot_notice(session)
    consortium = consortium_of(session, session.get_one(User, seed.owner_id), notice)
    structure, _ = partner(session, settings, name="Structure 91", cpv=["45210000"])
    plumber, _ = partner(session, settings, name="Plombier 91", cpv=["45330000"])
    missing, found = suggest_partners(session, consortium, territory=TERRITORY, today=NOW.date())
    assert set(missing) == {"45210000", "45330000"}
    assert {s.firm.name for s in found if s.in_cover} == {"Structure 91", "Plombier 91"}
    # Once the plumber joins, only the structural skill is missing.
    join(session, consortium, plumber, plumber.memberships[0].user, session.get_one(User, seed.owner_id))
    missing, found = suggest_partners(session, consortium, territory=TERRITORY, today=NOW.date())
    assert missing == ["45210000"] and [s.firm.name for s in found] == ["Structure 91"]
    assert missing_skills(consortium)[1] == {"45330000": ["Plombier 91"]}
    _ = structure


def test_local_award_winners_are_pointed_out(session: Session, settings: Any, seed: Seed) -> None:
    notice = two_lot_notice(session)
    consortium = consortium_of(session, session.get_one(User, seed.owner_id), notice, lots=["2"])
    winner, _ = partner(session, settings, name="Plombier Lauréat", cpv=["45330000"])
    other, _ = partner(session, settings, name="Plombier Débutant", cpv=["45330000"])
    past = factories.make_plain_notice(
        session,
        title="Rénovation des vestiaires du stade",
        cpv=["45330000"],
        departments=["91"],
        status="awarded",
        created_at=NOW - dt.timedelta(days=200),
    )
    past.awards.append(Award(lot_number=None, winner_name=winner.name, winner_siret=winner.siret))
    session.flush()
    _, found = suggest_partners(session, consortium, territory=TERRITORY, today=NOW.date())
    by_name = {s.firm.name: s for s in found}
    assert "A remporté un marché similaire sur le territoire : « Rénovation des vestiaires du stade »" in (
        by_name["Plombier Lauréat"].explanation
    )
    assert by_name["Plombier Lauréat"].score > by_name["Plombier Débutant"].score
    _ = other
