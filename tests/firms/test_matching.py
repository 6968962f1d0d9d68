"""Matching notices to firms (tenderpool.firms.matching) on both engines: CPV hierarchy, words,
saved searches, geography, size and groupements, feedback, the bulk index, the staff view and the
search filter ``firm=1``."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from sqlalchemy.orm import Session

from tenderpool.firms import matching
from tenderpool.firms.matching import (
    Match,
    match_notice_for_firm,
    match_notices_for_firms,
    matches_for_notice,
    money_short,
    staff_notice_matches,
)
from tenderpool.firms.models import Firm
from tenderpool.notices import services as notice_services
from tenderpool.notices.models import Notice, SavedSearch
from tenderpool.notices.search import SearchQuery, search_notices
from tests import factories
from tests.conftest import Seed

NOW = dt.datetime(2026, 11, 28, 7, 0, tzinfo=dt.UTC)


@pytest.fixture
def firm(session: Session, settings: Any) -> Firm:
    """A firm of Meaux (77) skilled in building works, with a turnover of 700 k€."""
    made, _owner = factories.make_firm(session, settings, postcode="77100", name="Bâtiments Briards")
    return factories.set_profile(session, made, cpv=["45000000"], turnover=700_000)


def notice(session: Session, **kw: Any) -> Notice:
    kw.setdefault("created_at", NOW)
    kw.setdefault("departments", ["77"])
    return factories.make_plain_notice(session, **kw)


def match(session: Session, n: Notice, f: Firm) -> Match | None:
    return match_notice_for_firm(session, n.id, f.id)


# --------------------------------------------------------------------------- CPV hierarchy


def test_a_code_below_a_skill_matches_but_scores_less_than_an_exact_class(
    session: Session, settings: Any, firm: Firm
) -> None:
    specialist, _ = factories.make_firm(session, settings, postcode="77100")
    factories.set_profile(session, specialist, cpv=["45210000"], turnover=700_000)
    building = notice(session, title="Construction d'un groupe scolaire", cpv=["45210000"])

    broad = match(session, building, firm)
    exact = match(session, building, specialist)
    assert broad is not None and exact is not None
    assert exact.score > broad.score
    assert broad.reasons[0] == (
        "CPV 45210000 Travaux de construction de bâtiments ⊂ votre compétence 45000000"
    )
    assert exact.reasons[0] == "CPV 45210000 Travaux de construction de bâtiments : votre compétence"


def test_the_deeper_the_code_the_lower_the_score(session: Session, firm: Firm) -> None:
    division = notice(session, title="Travaux divers", cpv=["45000000"])
    klass = notice(session, title="Travaux divers", cpv=["45210000"])
    deep = notice(session, title="Travaux divers", cpv=["45262660"])
    scores = [match(session, n, firm) for n in (division, klass, deep)]
    assert all(s is not None for s in scores)
    a, b, c = (s.score for s in scores if s is not None)
    assert a > b > c


def test_a_generic_notice_code_above_the_skill_still_matches(session: Session, settings: Any) -> None:
    roofer, _ = factories.make_firm(session, settings, postcode="77100")
    factories.set_profile(session, roofer, cpv=["45261000"])
    generic = notice(session, title="Travaux tous corps d'état", cpv=["45000000"])
    found = match(session, generic, roofer)
    assert found is not None
    assert "englobe votre compétence 45261000" in found.reasons[0]


def test_an_unrelated_trade_does_not_match(session: Session, firm: Firm) -> None:
    cleaning = notice(session, title="Nettoyage des locaux", cpv=["90910000"], contract_type="services")
    assert match(session, cleaning, firm) is None


def test_lot_codes_count(session: Session, firm: Firm) -> None:
    works = notice(
        session,
        title="Aménagement de la mairie",
        cpv=["71000000"],
        lots=[
            {"title": "Maîtrise d'œuvre", "cpv": ["71000000"]},
            {"title": "Gros œuvre", "cpv": ["45210000"]},
        ],
    )
    assert match(session, works, firm) is not None


# --------------------------------------------------------------------------- words and saved searches


def test_keywords_are_folded_and_stemmed(session: Session, settings: Any) -> None:
    roofer, _ = factories.make_firm(session, settings, postcode="77100")
    factories.set_profile(session, roofer, keywords=["Étanchéité", "toitures terrasses"])
    in_title = notice(session, title="TRAVAUX D'ETANCHEITE DE LA TOITURE TERRASSE", cpv=[])
    in_description = notice(
        session, title="Entretien du groupe scolaire", description="<p>Reprise des étanchéités.</p>", cpv=[]
    )
    unrelated = notice(session, title="Entretien des espaces verts", cpv=[])
    title_match = match(session, in_title, roofer)
    description_match = match(session, in_description, roofer)
    assert title_match is not None and description_match is not None
    assert title_match.score > description_match.score
    assert "mots-clés dans le titre : « Étanchéité », « toitures terrasses »" in title_match.reasons
    assert "mot-clé dans la description : « Étanchéité »" in description_match.reasons
    assert match(session, unrelated, roofer) is None


def test_a_members_saved_search_makes_a_match(session: Session, settings: Any, seed: Seed) -> None:
    firm = session.get(Firm, seed.firm_id)
    assert firm is not None
    session.add(SavedSearch(user_id=seed.member_id, name="Désamiantage 77", query="q=desamiantage&dep=77"))
    session.flush()
    found = notice(session, title="Désamiantage de l'ancienne poste", cpv=[])
    elsewhere = notice(session, title="Désamiantage du collège", cpv=[], departments=["91"])
    result = match(session, found, firm)
    assert result is not None
    assert "recherche enregistrée « Désamiantage 77 »" in result.reasons
    assert match(session, elsewhere, firm) is None  # the saved search asks for the 77


# --------------------------------------------------------------------------- geography


def test_geography_zone_neighbours_and_far(session: Session, firm: Firm) -> None:
    home = match(session, notice(session, title="École", cpv=["45210000"], departments=["77"]), firm)
    near = match(session, notice(session, title="École", cpv=["45210000"], departments=["91"]), firm)
    far = match(session, notice(session, title="École", cpv=["45210000"], departments=["69"]), firm)
    assert home and near and far
    assert home.score > near.score > far.score
    assert "Seine-et-Marne (77)" in home.reasons
    assert "Essonne (91) : voisin de votre zone" in near.reasons
    assert "hors de votre zone : Rhône (69)" in far.reasons


def test_an_explicit_zone_and_a_wide_radius(session: Session, firm: Firm) -> None:
    factories.set_profile(session, firm, cpv=["45000000"], zone=["91"], zone_radius_km=60)
    essonne = match(session, notice(session, title="École", cpv=["45210000"], departments=["91"]), firm)
    yvelines = match(session, notice(session, title="École", cpv=["45210000"], departments=["78"]), firm)
    assert essonne and yvelines
    # 78 borders the 91: with a 60 km radius it counts as the zone itself.
    assert essonne.score == yvelines.score


# --------------------------------------------------------------------------- size and groupements


@pytest.mark.parametrize(
    ("value", "group", "text"),
    [
        (300_000, False, "montant estimé 300 k€ : à votre mesure"),
        (600_000, True, "montant estimé 600 k€ > la moitié de votre CA"),
        (1_500_000, True, "montant estimé 1,5 M€ > votre CA : groupement conseillé"),
        (2_400_000, True, "montant estimé 2,4 M€ > 3 × votre CA : groupement conseillé"),
    ],
)
def test_size_and_groupement(session: Session, firm: Firm, value: int, group: bool, text: str) -> None:
    found = match(session, notice(session, title="École", cpv=["45210000"], estimated_value=value), firm)
    assert found is not None
    assert found.is_group_candidate is group
    assert any(r.startswith(text) for r in found.reasons), found.reasons


def test_the_full_explanation(session: Session, firm: Firm) -> None:
    found = match(session, notice(session, title="Lycée", cpv=["45210000"], estimated_value=2_400_000), firm)
    assert found is not None
    assert found.explanation == (
        "CPV 45210000 Travaux de construction de bâtiments ⊂ votre compétence 45000000 ; "
        "Seine-et-Marne (77) ; montant estimé 2,4 M€ > 3 × votre CA : groupement conseillé"
    )
    assert 0 <= found.score <= 100


def test_a_lot_the_firm_fits_is_what_counts(session: Session, firm: Firm) -> None:
    big = notice(
        session,
        title="Construction du pôle culturel",
        cpv=["45000000"],
        estimated_value=9_000_000,
        lots=[
            {"number": "1", "title": "Gros œuvre", "cpv": ["45210000"], "estimated_value": 8_700_000},
            {"number": "2", "title": "Électricité", "cpv": ["45310000"], "estimated_value": 300_000},
        ],
    )
    found = match(session, big, firm)
    assert found is not None
    assert not found.is_group_candidate
    assert "lot 2 : montant estimé 300 k€ : à votre mesure" in found.reasons


def test_money_short() -> None:
    assert money_short(2_400_000) == "2,4 M€"
    assert money_short(3_000_000) == "3 M€"
    assert money_short(350_000) == "350 k€"
    assert money_short(12_500) == "13 k€"
    assert money_short(8_500) == "8\u202f500 €"


# --------------------------------------------------------------------------- feedback


def _dismiss(session: Session, firm: Firm, n: Notice, reason: str) -> None:
    notice_services.dismiss(session, firm.id, n, by_id=None, reason=reason, comment=None, now=NOW)


def test_a_dismissed_notice_never_matches(session: Session, firm: Firm) -> None:
    school = notice(session, title="École", cpv=["45210000"])
    assert match(session, school, firm) is not None
    _dismiss(session, firm, school, "other")
    assert match(session, school, firm) is None


def test_buyer_feedback_lowers_the_buyers_other_notices(session: Session, firm: Firm) -> None:
    first = notice(session, title="École", cpv=["45210000"], buyer_siret="21770284000014")
    second = notice(session, title="Gymnase", cpv=["45210000"], buyer_siret="21770284000014")
    other_buyer = notice(session, title="Gymnase", cpv=["45210000"], buyer_siret="21910228500013")
    before = match(session, second, firm)
    assert before is not None
    _dismiss(session, firm, first, "buyer")
    after = match(session, second, firm)
    untouched = match(session, other_buyer, firm)
    assert untouched is not None and untouched.score == before.score
    assert after is None or after.score <= before.score - 40
    # Scores of what is still a match say why they are lower.
    _dismiss(session, firm, first, "other")
    mild = match(session, second, firm)
    assert mild is not None and mild.score < before.score
    assert "moins pertinent : vous avez écarté un avis de cet acheteur" in mild.reasons


def test_not_our_trade_lowers_the_same_field(session: Session, firm: Firm) -> None:
    asbestos = notice(session, title="Désamiantage", cpv=["45262660"])
    more_asbestos = notice(session, title="Désamiantage du gymnase", cpv=["45262660"])
    building = notice(session, title="Construction", cpv=["45210000"])
    before = [match(session, n, firm) for n in (more_asbestos, building)]
    _dismiss(session, firm, asbestos, "not_our_trade")
    after = [match(session, n, firm) for n in (more_asbestos, building)]
    assert before[0] is not None and before[1] is not None
    assert after[0] is None or after[0].score <= before[0].score - 20
    assert after[1] is not None and before[1].score - 10 <= after[1].score < before[1].score
    assert "moins pertinent : vous avez écarté des avis de ce domaine" in after[1].reasons


def test_too_far_lowers_far_departements(session: Session, firm: Firm) -> None:
    factories.set_profile(session, firm, cpv=["45210000"])
    lyon = notice(session, title="École", cpv=["45210000"], departments=["69"])
    other_lyon = notice(session, title="Collège", cpv=["45210000"], departments=["69"])
    marseille = notice(session, title="Collège", cpv=["45210000"], departments=["13"])
    home = notice(session, title="Collège", cpv=["45210000"], departments=["77"])
    before = {n.id: match(session, n, firm) for n in (other_lyon, marseille, home)}
    _dismiss(session, firm, lyon, "too_far")
    after = {n.id: match(session, n, firm) for n in (other_lyon, marseille, home)}
    assert after[home.id] == before[home.id]
    lyon_before, lyon_after = before[other_lyon.id], after[other_lyon.id]
    marseille_before, marseille_after = before[marseille.id], after[marseille.id]
    assert lyon_before is not None and marseille_before is not None
    assert lyon_after is None or lyon_after.score <= lyon_before.score - 25
    assert marseille_after is not None and marseille_after.score == marseille_before.score - 10
    assert "moins pertinent : vous avez écarté des avis trop loin" in marseille_after.reasons


def test_too_big_lowers_notices_as_big(session: Session, firm: Firm) -> None:
    huge = notice(session, title="Hôpital", cpv=["45210000"], estimated_value=5_000_000)
    other_huge = notice(session, title="Clinique", cpv=["45210000"], estimated_value=4_500_000)
    small = notice(session, title="Préau", cpv=["45210000"], estimated_value=100_000)
    before = (match(session, other_huge, firm), match(session, small, firm))
    _dismiss(session, firm, huge, "too_big")
    after = (match(session, other_huge, firm), match(session, small, firm))
    assert before[0] is not None and before[1] is not None and after[1] is not None
    assert after[0] is None or after[0].score < before[0].score
    assert after[1].score == before[1].score


# --------------------------------------------------------------------------- bulk


def test_bulk_scores_only_candidate_pairs(
    session: Session, settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    builders, cleaners = [], []
    for _ in range(15):
        f, _ = factories.make_firm(session, settings, postcode="77100")
        builders.append(factories.set_profile(session, f, cpv=["45210000"]))
        g, _ = factories.make_firm(session, settings, postcode="91000")
        cleaners.append(factories.set_profile(session, g, cpv=["90910000"]))
    works = [notice(session, title=f"École {i}", cpv=["45210000"]) for i in range(6)]
    cleaning = [notice(session, title=f"Nettoyage {i}", cpv=["90910000"]) for i in range(6)]
    scored: list[tuple[int, int]] = []
    real = matching._points

    def counting(firm: Any, n: Any, *args: Any) -> Any:
        scored.append((firm.id, n.id))
        return real(firm, n, *args)

    monkeypatch.setattr(matching, "_points", counting)
    firm_ids = [f.id for f in builders + cleaners]
    result = match_notices_for_firms(session, [n.id for n in works + cleaning], firm_ids)
    # 30 firms × 12 notices = 360 pairs; only the 15 × 6 × 2 that share a trade are scored.
    assert len(scored) == 180
    assert {fid for fid in result} == set(firm_ids)
    for f in builders:
        assert [m.notice_id for m in result[f.id]] == sorted(n.id for n in works)
    for g in cleaners:
        assert {m.notice_id for m in result[g.id]} == {n.id for n in cleaning}


def test_the_index_finds_what_a_pair_by_pair_loop_finds(session: Session, settings: Any, seed: Seed) -> None:
    """The index lookups and the pair-by-pair rules (used for explanations) agree, ties included."""
    profiles = [
        {"cpv": ["45000000", "45200000"], "keywords": ["toiture"]},
        {"cpv": ["45261000", "45262660"], "keywords": ["désamiantage", "charpente bois"]},
        {"cpv": ["45214200"], "zone": ["91"], "zone_radius_km": 80},
        {"cpv": ["90910000", "77310000"], "keywords": ["espaces verts"], "turnover": 90_000},
        {"cpv": [], "keywords": ["gymnase"]},
    ]
    firms = []
    for i, profile in enumerate(profiles):
        f, owner = factories.make_firm(session, settings, postcode="77100" if i % 2 else "91000")
        firms.append(factories.set_profile(session, f, **profile))
        session.add(SavedSearch(user_id=owner.id, name=f"Recherche {i}", query="q=ecole&dep=77"))
    notices = [
        notice(session, title="Réfection de la toiture du gymnase", cpv=["45261210", "45000000"]),
        notice(session, title="École", cpv=["45214200"], departments=["91"], estimated_value=800_000),
        notice(session, title="Désamiantage et charpente bois", cpv=["45262660"], departments=["93"]),
        notice(
            session, title="Espaces verts", cpv=["77310000"], lots=[{"title": "Tonte", "cpv": ["77312000"]}]
        ),
        notice(session, title="Nettoyage", cpv=["90911200"], departments=[], estimated_value=50_000),
    ]
    session.flush()
    _dismiss(session, firms[0], notices[4], "too_small")
    found = match_notices_for_firms(session, [n.id for n in notices], [f.id for f in firms])
    index = matching._load_firms(session, [f.id for f in firms])
    facts = matching._load_notices(session, [n.id for n in notices])
    by_pairs = {}
    for f in index.firms.values():
        for n in facts.values():
            m = matching._match_one(f, n, matching.pair_hits(f, n), matching._Facts(index.firms, facts))
            if m is not None:
                by_pairs[(m.firm_id, m.notice_id)] = m
    indexed = {(m.firm_id, m.notice_id): m for ms in found.values() for m in ms}
    assert len(indexed) >= 8
    # The fast scoring of the bulk loop and the explained one give the same numbers.
    for (fid, nid), m in indexed.items():
        f, n = index.firms[fid], facts[nid]
        hits = matching.pair_hits(f, n)
        explained = matching._score(f, n, hits.cpv, hits.words, hits.searches, explain=True)
        assert explained is not None and explained[0] == m.score and explained[2] == m.is_group_candidate
    assert {k: (m.score, m.is_group_candidate, m.reasons) for k, m in indexed.items()} == {
        k: (m.score, m.is_group_candidate, m.reasons) for k, m in by_pairs.items()
    }


def test_pending_firms_and_rejected_notices_are_left_out(session: Session, settings: Any, seed: Seed) -> None:
    pending = session.get(Firm, seed.pending_firm_id)
    assert pending is not None
    factories.set_profile(session, pending, cpv=["45000000"])
    school = notice(session, title="École", cpv=["45210000"], departments=["91"])
    assert seed.pending_firm_id not in match_notices_for_firms(session, [school.id])
    school.is_rejected = True
    session.flush()
    assert match_notices_for_firms(session, [school.id]) == {}


# --------------------------------------------------------------------------- staff view


def test_staff_see_the_matching_firms_of_their_chamber(session: Session, settings: Any, seed: Seed) -> None:
    from tenderpool.accounts.models import User

    meaux, _ = factories.make_firm(session, settings, postcode="77100", name="Couvreurs de Meaux")
    evry, _ = factories.make_firm(session, settings, postcode="91000", name="Couvreurs d'Évry")
    for f in (meaux, evry):
        factories.set_profile(session, f, cpv=["45261000"])
    roof = notice(session, title="Réfection de la toiture", cpv=["45261000"], departments=["77"])
    staff77, staff91, admin = (
        session.get(User, i) for i in (seed.staff77_id, seed.staff91_id, seed.admin_id)
    )
    owner = session.get(User, seed.owner_id)
    assert staff77 and staff91 and admin and owner
    assert [row.firm.name for row in staff_notice_matches(session, roof, staff77)] == ["Couvreurs de Meaux"]
    assert [row.firm.name for row in staff_notice_matches(session, roof, staff91)] == ["Couvreurs d'Évry"]
    names = [row.firm.name for row in staff_notice_matches(session, roof, admin)]
    assert names == ["Couvreurs de Meaux", "Couvreurs d'Évry"]  # the 77 firm is in the zone: higher
    assert staff_notice_matches(session, roof, owner) == []
    assert matches_for_notice(session, roof, "cci77")[0].match.reasons[0].startswith("CPV 45261000")


def test_the_staff_partial_renders(app: Any, session: Session, settings: Any) -> None:
    from flask import render_template

    meaux, _ = factories.make_firm(session, settings, postcode="77100", name="Couvreurs de Meaux")
    factories.set_profile(session, meaux, cpv=["45261000"], turnover=100_000)
    roof = notice(session, title="Toiture", cpv=["45261000"], estimated_value=400_000)
    rows = matches_for_notice(session, roof, "cci77")
    with app.test_request_context():
        html = render_template("digests/_notice_matches.html", firm_matches=rows)
    assert "Couvreurs de Meaux" in html
    assert "groupement" in html
    with app.test_request_context():
        assert "Aucune entreprise" in render_template("digests/_notice_matches.html", firm_matches=[])


# --------------------------------------------------------------------------- search firm=1


def _found(session: Session, firm_id: int, **kw: Any) -> set[int]:
    query = SearchQuery(matching_firm=True, **kw).with_(firm_id=firm_id)
    page = search_notices(session, query, now=NOW, per_page=100)
    return {n.id for n in page.items}


def test_search_firm_filter(session: Session, settings: Any) -> None:
    roofer, _ = factories.make_firm(session, settings, postcode="77100")
    factories.set_profile(session, roofer, cpv=["45260000"], keywords=["étanchéité", "zinguerie"])
    under = notice(session, title="Couverture de l'église", cpv=["45261000"])
    lot = notice(
        session, title="Salle des fêtes", cpv=["45000000"], lots=[{"title": "Lot", "cpv": ["45261210"]}]
    )
    by_word = notice(session, title="Reprise d'ETANCHEITE des terrasses", cpv=["45453000"])
    described = notice(session, title="Gymnase", cpv=["71000000"], description="<p>Travaux de zinguerie</p>")
    unrelated = notice(session, title="Nettoyage", cpv=["90910000"])
    dismissed = notice(session, title="Couverture du préau", cpv=["45261000"])
    _dismiss(session, roofer, dismissed, "deadline")
    found = _found(session, roofer.id)
    assert found >= {under.id, lot.id, by_word.id, described.id}
    assert unrelated.id not in found and dismissed.id not in found
    # Combined with the other filters, and ignored without a firm.
    assert _found(session, roofer.id, cpv=("45261000",)) == {under.id}
    everything = search_notices(session, SearchQuery(matching_firm=True), now=NOW, per_page=100)
    assert unrelated.id in {n.id for n in everything.items}


def test_search_firm_filter_without_profile_finds_nothing(session: Session, settings: Any) -> None:
    blank, _ = factories.make_firm(session, settings, postcode="77100")
    notice(session, title="École", cpv=["45210000"])
    assert _found(session, blank.id) == set()


def test_search_firm_filter_agrees_with_matching(session: Session, settings: Any) -> None:
    """Every notice the matcher finds for a firm (CPV or keyword) passes the firm=1 filter."""
    painter, _ = factories.make_firm(session, settings, postcode="91000")
    factories.set_profile(session, painter, cpv=["45440000"], keywords=["ravalement"])
    notices = [
        notice(session, title="Peinture des écoles", cpv=["45442100"]),
        notice(session, title="Ravalement de façade", cpv=["45000000"]),
        notice(session, title="Travaux", cpv=["45443000"], departments=["91"]),
        notice(session, title="Espaces verts", cpv=["77310000"]),
    ]
    matched = {m.notice_id for m in match_notices_for_firms(session, [n.id for n in notices])[painter.id]}
    assert matched and matched <= _found(session, painter.id)
