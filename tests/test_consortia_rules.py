"""The rules of the Code de la commande publique, each with the case that must be refused.

Services enforce them (not only the forms), with French messages.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from tenderpool.accounts.models import User
from tenderpool.consortia import services, workspace
from tenderpool.consortia.models import ConsortiumEvent, ConsortiumMember, MemberState
from tenderpool.errors import Conflict, Forbidden, NotFound, ValidationError
from tenderpool.firms.models import Firm, FirmCertification, FirmYear
from tenderpool.notices.models import Award
from tests.conftest import Seed
from tests.consortia_helpers import NOW, consortium_of, join, partner, two_lot_notice


@pytest.fixture
def world(session: Session, settings: Any, seed: Seed) -> dict[str, Any]:
    notice = two_lot_notice(session)
    a = session.get_one(Firm, seed.firm_id)
    owner_a = session.get_one(User, seed.owner_id)
    b, owner_b = partner(session, settings, name="Plomberie Essonne", cpv=["45330000"])
    c, owner_c = partner(session, settings, name="Électricité Sud", cpv=["45310000"])
    return {
        "notice": notice,
        "a": a,
        "owner_a": owner_a,
        "b": b,
        "owner_b": owner_b,
        "c": c,
        "owner_c": owner_c,
    }


def _kinds(session: Session, consortium_id: int) -> list[str]:
    return list(
        session.scalars(
            select(ConsortiumEvent.kind)
            .where(ConsortiumEvent.consortium_id == consortium_id)
            .order_by(ConsortiumEvent.id)
        )
    )


# --------------------------------------------------------------------------- one mandataire


def test_a_second_mandataire_is_refused_by_the_database(session: Session, world: dict[str, Any]) -> None:
    consortium = consortium_of(session, world["owner_a"], world["notice"])
    join(session, consortium, world["b"], world["owner_b"], world["owner_a"])
    member_b = services.active_member(consortium, world["b"].id)
    assert member_b is not None
    member_b.role = "mandataire"
    with pytest.raises(IntegrityError), session.begin_nested():
        session.flush()


def test_handing_over_the_mandate_is_explicit_and_recorded(session: Session, world: dict[str, Any]) -> None:
    consortium = consortium_of(session, world["owner_a"], world["notice"])
    join(session, consortium, world["b"], world["owner_b"], world["owner_a"])
    with pytest.raises(Forbidden, match="Seul le mandataire"):
        services.hand_over_mandate(
            session, consortium, to_firm_id=world["b"].id, by=world["owner_b"], now=NOW
        )
    services.hand_over_mandate(session, consortium, to_firm_id=world["b"].id, by=world["owner_a"], now=NOW)
    assert consortium.mandataire is not None and consortium.mandataire.firm_id == world["b"].id
    assert sum(m.is_mandataire for m in consortium.members) == 1
    assert "mandate" in _kinds(session, consortium.id)
    # The former mandataire is a cotraitant, who may now leave.
    services.leave(session, consortium, by=world["owner_a"], now=NOW)
    assert services.active_member(consortium, world["a"].id) is None


def test_the_mandataire_cannot_leave_without_handing_over(session: Session, world: dict[str, Any]) -> None:
    consortium = consortium_of(session, world["owner_a"], world["notice"])
    join(session, consortium, world["b"], world["owner_b"], world["owner_a"])
    with pytest.raises(Conflict, match="confier ce rôle"):
        services.leave(session, consortium, by=world["owner_a"], now=NOW)


# --------------------------------------------------------------------------- R2142-23


def test_mandataire_of_two_groupements_on_the_same_lot_is_refused(
    session: Session, world: dict[str, Any]
) -> None:
    consortium_of(session, world["owner_a"], world["notice"], lots=["1"], name="Premier")
    with pytest.raises(Conflict, match="R2142-23") as refused:
        consortium_of(session, world["owner_a"], world["notice"], lots=["1", "2"], name="Second")
    assert "lot 1" in refused.value.message
    # Each lot is a marché of its own: mandataire on lot 2 elsewhere is allowed.
    second = consortium_of(session, world["owner_a"], world["notice"], lots=["2"], name="Second")
    assert second.mandataire is not None and second.mandataire.firm_id == world["a"].id


def test_handing_over_to_a_firm_already_mandataire_on_the_lot_is_refused(
    session: Session, world: dict[str, Any]
) -> None:
    consortium_of(session, world["owner_b"], world["notice"], lots=["2"], name="Celui de B")
    mine = consortium_of(session, world["owner_a"], world["notice"], lots=["1", "2"])
    join(session, mine, world["b"], world["owner_b"], world["owner_a"])
    with pytest.raises(Conflict, match="R2142-23"):
        services.hand_over_mandate(session, mine, to_firm_id=world["b"].id, by=world["owner_a"], now=NOW)


# --------------------------------------------------------------------------- R2142-21 multiple bids


def test_several_groupements_on_a_lot_are_warned_when_allowed(
    session: Session, world: dict[str, Any]
) -> None:
    first = consortium_of(session, world["owner_a"], world["notice"], lots=["2"], name="Premier")
    second = consortium_of(session, world["owner_c"], world["notice"], lots=["2"], name="Second")
    join(session, first, world["b"], world["owner_b"], world["owner_a"])
    join(session, second, world["b"], world["owner_b"], world["owner_c"])
    texts = [w.text for w in services.warnings_for(session, second)]
    assert texts == ["Plomberie Essonne est aussi membre du groupement « Premier » sur le lot 2."]
    assert services.warnings_for(session, first)[0].firm.id == world["b"].id


def test_several_groupements_on_a_lot_are_refused_when_the_notice_forbids_it(
    session: Session, world: dict[str, Any]
) -> None:
    world["notice"].multiple_bids_forbidden = True
    first = consortium_of(session, world["owner_a"], world["notice"], lots=["2"], name="Premier")
    second = consortium_of(session, world["owner_c"], world["notice"], lots=["2"], name="Second")
    join(session, first, world["b"], world["owner_b"], world["owner_a"])
    services.invite_firm(session, second, firm=world["b"], by=world["owner_c"], now=NOW)
    with pytest.raises(Conflict, match="R2142-21"):
        services.answer_invitation(session, second, accept=True, message=None, by=world["owner_b"], now=NOW)
    # On another lot it is a different marché: allowed.
    other = consortium_of(session, world["owner_c"], world["notice"], lots=["1"], name="Lot 1")
    join(session, other, world["b"], world["owner_b"], world["owner_c"])


def test_bidding_alone_and_in_a_groupement(session: Session, world: dict[str, Any]) -> None:
    notice = world["notice"]
    assert services.declare_solo_bid(session, notice, lots=["2"], by=world["owner_b"], now=NOW) == []
    consortium = consortium_of(session, world["owner_a"], notice, lots=["2"])
    join(session, consortium, world["b"], world["owner_b"], world["owner_a"])
    assert [w.text for w in services.warnings_for(session, consortium)] == [
        "Plomberie Essonne est aussi candidate seule sur le lot 2."
    ]
    notice.multiple_bids_forbidden = True
    with pytest.raises(Conflict, match="R2142-21"):
        services.declare_solo_bid(session, notice, lots=["2"], by=world["owner_b"], now=NOW)
    assert any("l'interdit" in p for p in services.readiness_problems(session, consortium))


# --------------------------------------------------------------------------- frozen after submission


def _submitted(session: Session, world: dict[str, Any]) -> Any:
    consortium = consortium_of(session, world["owner_a"], world["notice"], lots=["1"], form="solidaire")
    join(session, consortium, world["b"], world["owner_b"], world["owner_a"])
    lot = consortium.lots[0]
    services.save_repartition(
        session,
        consortium,
        lot_number="1",
        version=lot.version,
        offer_amount="100000",
        rows=[
            services.ShareInput(world["a"].id, "Gros œuvre", "60000", "60"),
            services.ShareInput(world["b"].id, "Plomberie", "40000", "40"),
        ],
        by=world["owner_a"],
        now=NOW,
    )
    for section in consortium.sections:
        workspace.save_section(
            session,
            consortium,
            section.id,
            version=section.version,
            title=section.title,
            body="Texte.",
            status="ready",
            assignee_firm_id=None,
            by=world["owner_a"],
            now=NOW,
        )
    services.mark_ready(session, consortium, by=world["owner_a"], now=NOW)
    services.mark_submitted(session, consortium, by=world["owner_a"], now=NOW)
    return consortium


def test_composition_is_frozen_after_submission(session: Session, world: dict[str, Any]) -> None:
    consortium = _submitted(session, world)
    assert consortium.status == "submitted"
    with pytest.raises(Conflict, match="R2142-26"):
        services.invite_firm(session, consortium, firm=world["c"], by=world["owner_a"], now=NOW)
    with pytest.raises(Conflict, match="figée"):
        services.leave(session, consortium, by=world["owner_b"], now=NOW)
    with pytest.raises(Conflict, match="figée"):
        services.hand_over_mandate(
            session, consortium, to_firm_id=world["b"].id, by=world["owner_a"], now=NOW
        )
    with pytest.raises(Conflict, match="figée"):
        services.save_repartition(
            session,
            consortium,
            lot_number="1",
            version=consortium.lots[0].version,
            offer_amount="1",
            rows=[],
            by=world["owner_a"],
            now=NOW,
        )


def test_r2142_26_exception_needs_a_reason_and_is_recorded(session: Session, world: dict[str, Any]) -> None:
    consortium = _submitted(session, world)
    member_b = services.active_member(consortium, world["b"].id)
    assert member_b is not None
    with pytest.raises(ValidationError, match="motif"):
        services.change_after_submission(
            session,
            consortium,
            member_id=member_b.id,
            reason="convenience",
            explanation="On préfère un autre.",
            replacement_firm_id=None,
            by=world["owner_a"],
            now=NOW,
        )
    with pytest.raises(ValidationError, match="Expliquez"):
        services.change_after_submission(
            session,
            consortium,
            member_id=member_b.id,
            reason="restructuring",
            explanation=" ",
            replacement_firm_id=None,
            by=world["owner_a"],
            now=NOW,
        )
    services.change_after_submission(
        session,
        consortium,
        member_id=member_b.id,
        reason="restructuring",
        explanation="Plomberie Essonne est absorbée par Électricité Sud (fusion du 01/11/2026).",
        replacement_firm_id=world["c"].id,
        by=world["owner_a"],
        now=NOW,
    )
    assert member_b.state == MemberState.REMOVED
    assert services.active_member(consortium, world["c"].id) is not None
    # The replacement takes over the removed member's part of the répartition.
    assert {s.firm_id for s in consortium.shares} == {world["a"].id, world["c"].id}
    event = session.scalars(
        select(ConsortiumEvent).where(
            ConsortiumEvent.consortium_id == consortium.id, ConsortiumEvent.kind == "r2142_26"
        )
    ).one()
    assert "fusion" in event.text and event.detail["reason"] == "restructuring"


def test_the_exception_procedure_only_applies_after_submission(
    session: Session, world: dict[str, Any]
) -> None:
    consortium = consortium_of(session, world["owner_a"], world["notice"])
    join(session, consortium, world["b"], world["owner_b"], world["owner_a"])
    member = services.active_member(consortium, world["b"].id)
    assert member is not None
    with pytest.raises(Conflict, match="déposée"):
        services.change_after_submission(
            session,
            consortium,
            member_id=member.id,
            reason="restructuring",
            explanation="Fusion.",
            replacement_firm_id=None,
            by=world["owner_a"],
            now=NOW,
        )


# --------------------------------------------------------------------------- pooled capacities


def test_pooled_capacities_and_the_r2142_7_cap(session: Session, world: dict[str, Any]) -> None:
    year = NOW.year - 1
    world["a"].years = [FirmYear(year=year, turnover=Decimal("400000"), headcount=6, turnover_by_field={})]
    world["b"].years = [FirmYear(year=year, turnover=Decimal("250000"), headcount=3, turnover_by_field={})]
    world["a"].certifications = [FirmCertification(name="Qualibat 2111"), FirmCertification(name="RGE")]
    world["b"].certifications = [
        FirmCertification(name="RGE"),
        FirmCertification(name="Expirée", valid_until=dt.date(2020, 1, 1)),
    ]
    session.flush()
    consortium = consortium_of(session, world["owner_a"], world["notice"], lots=["2"])
    join(session, consortium, world["b"], world["owner_b"], world["owner_a"])
    consortium.required_turnover = Decimal("600000")
    pooled = services.pooled_capacities(consortium, today=NOW.date())
    latest = next(y for y in pooled.years if y.year == year)
    assert latest.turnover == Decimal("650000") and latest.headcount == 9
    assert [name for name, _ in pooled.certifications] == ["Qualibat 2111", "RGE"]
    assert [f.name for f in dict(pooled.certifications)["RGE"]] == [world["a"].name, "Plomberie Essonne"]
    # Lot 2 is worth 300 000 €: the cap is 1.5 × that for a consultation launched in 2026.
    assert pooled.cap == Decimal("450000.00")
    assert any("atteint le minimum" in f for f in pooled.findings)
    assert any("R2142-7" in f for f in pooled.findings)
    consortium.notice.published_at = dt.date(2025, 12, 15)
    assert services.turnover_cap(consortium) == (Decimal("600000.00"), Decimal("2"))


# --------------------------------------------------------------------------- répartition


def test_repartition_inconsistencies_are_shown_not_fixed(session: Session, world: dict[str, Any]) -> None:
    consortium = consortium_of(session, world["owner_a"], world["notice"], lots=["1", "2"])
    join(session, consortium, world["b"], world["owner_b"], world["owner_a"])
    lot = consortium.lots[0]
    services.save_repartition(
        session,
        consortium,
        lot_number="1",
        version=lot.version,
        offer_amount="100 000",
        rows=[
            services.ShareInput(world["a"].id, "Gros œuvre", "60000", "60"),
            services.ShareInput(world["b"].id, "", "30000", "30"),
        ],
        by=world["owner_a"],
        now=NOW,
    )
    issues = services.repartition_issues(consortium)
    assert "Lot 1 : les parts totalisent 90 % au lieu de 100 %." in issues
    assert any("les montants totalisent 90\u202f000 € HT" in i for i in issues)
    assert "Lot 1 : décrivez les prestations de Plomberie Essonne." in issues
    assert "Lot 2 : la répartition n'est pas renseignée." in issues
    shares = sorted(s.share for s in consortium.shares)
    assert shares == [Decimal("30.00"), Decimal("60.00")]  # stored as given


def test_repartition_refuses_bad_values_and_outsiders(session: Session, world: dict[str, Any]) -> None:
    consortium = consortium_of(session, world["owner_a"], world["notice"], lots=["1"])
    lot = consortium.lots[0]

    def save(*rows: services.ShareInput) -> None:
        services.save_repartition(
            session,
            consortium,
            lot_number="1",
            version=lot.version,
            offer_amount="1000",
            rows=list(rows),
            by=world["owner_a"],
            now=NOW,
        )

    with pytest.raises(ValidationError, match="100 % au plus"):
        save(services.ShareInput(world["a"].id, "x", "1000", "120"))
    with pytest.raises(ValidationError, match="nombre"):
        save(services.ShareInput(world["a"].id, "x", "mille", "100"))
    with pytest.raises(ValidationError, match="membres actifs"):
        save(services.ShareInput(world["b"].id, "x", "1000", "100"))


# --------------------------------------------------------------------------- access and staff


def test_staff_help_but_never_act_for_a_firm(session: Session, world: dict[str, Any], seed: Seed) -> None:
    consortium = consortium_of(session, world["owner_a"], world["notice"])
    staff77 = session.get_one(User, seed.staff77_id)
    staff91 = session.get_one(User, seed.staff91_id)
    assert services.can_see_workspace(session, staff77, consortium)
    assert not services.can_see_workspace(session, staff91, consortium)
    with pytest.raises(NotFound):
        services.workspace_for(session, staff91, consortium.id)
    with pytest.raises(Forbidden, match="n'agissent pas"):
        services.invite_firm(session, consortium, firm=world["b"], by=staff77, now=NOW)
    workspace.post_message(session, consortium, body="Je peux relire votre mémoire.", by=staff77, now=NOW)
    with pytest.raises(NotFound):
        workspace.post_message(session, consortium, body="Intrus", by=staff91, now=NOW)
    services.attach_facilitator(session, consortium, by=staff77, attach=True, now=NOW)
    assert consortium.facilitator_id == staff77.id
    # Once a 91 firm joins, staff of 91 follow the groupement too.
    join(session, consortium, world["b"], world["owner_b"], world["owner_a"])
    assert services.can_see_workspace(session, staff91, consortium)


def test_an_outsider_firm_sees_only_the_card_of_an_open_groupement(
    session: Session, world: dict[str, Any]
) -> None:
    consortium = consortium_of(session, world["owner_a"], world["notice"], visibility="invitation")
    outsider = world["owner_c"]
    with pytest.raises(NotFound):
        services.card_for(session, outsider, consortium.id)
    consortium.visibility = "open"
    assert services.card_for(session, outsider, consortium.id) is consortium
    with pytest.raises(NotFound):
        services.workspace_for(session, outsider, consortium.id)
    member = services.request_to_join(
        session, consortium, message="Nous couvrons l'électricité.", by=outsider, now=NOW
    )
    assert member.state == MemberState.REQUESTED
    with pytest.raises(NotFound):  # not a member yet: it cannot answer its own request
        services.decide_request(
            session, consortium, member_id=member.id, accept=True, message=None, by=outsider, now=NOW
        )
    services.decide_request(
        session, consortium, member_id=member.id, accept=True, message=None, by=world["owner_a"], now=NOW
    )
    assert services.workspace_for(session, outsider, consortium.id) is consortium


# --------------------------------------------------------------------------- life cycle and notices


def test_ready_needs_every_member_answered_and_the_rules_passing(
    session: Session, world: dict[str, Any]
) -> None:
    consortium = consortium_of(session, world["owner_a"], world["notice"], lots=["1"])
    with pytest.raises(Conflict, match="au moins deux membres"):
        services.mark_ready(session, consortium, by=world["owner_a"], now=NOW)
    services.invite_firm(session, consortium, firm=world["b"], by=world["owner_a"], now=NOW)
    problems = services.readiness_problems(session, consortium)
    assert "Plomberie Essonne n'a pas répondu à l'invitation." in problems
    with pytest.raises(Conflict):
        services.mark_submitted(session, consortium, by=world["owner_a"], now=NOW)


def test_a_cancelled_notice_closes_its_groupements(session: Session, world: dict[str, Any]) -> None:
    consortium = consortium_of(session, world["owner_a"], world["notice"])
    world["notice"].status = "cancelled"
    session.flush()
    assert services.sync_with_notices(session, now=NOW) == [f"{consortium.id}: withdrawn (cancelled)"]
    assert consortium.status == "withdrawn"
    assert services.sync_with_notices(session, now=NOW) == []  # idempotent
    assert "notice_cancelled" in _kinds(session, consortium.id)


def test_an_award_to_others_marks_the_submitted_groupement_lost(
    session: Session, world: dict[str, Any]
) -> None:
    consortium = _submitted(session, world)
    notice = consortium.notice
    notice.status = "awarded"
    notice.awards.append(
        Award(lot_number="1", winner_name="Bâtisseurs Réunis", winner_siret="12345678200010")
    )
    session.flush()
    services.sync_with_notices(session, now=NOW)
    assert consortium.status == "lost"
    last = session.scalars(
        select(ConsortiumEvent)
        .where(ConsortiumEvent.consortium_id == consortium.id)
        .order_by(ConsortiumEvent.id.desc())
    ).first()
    assert last is not None and last.text == "Le marché a été attribué à Bâtisseurs Réunis."


def test_an_award_to_a_member_asks_for_the_outcome(session: Session, world: dict[str, Any]) -> None:
    consortium = _submitted(session, world)
    notice = consortium.notice
    notice.status = "awarded"
    notice.awards.append(Award(lot_number="1", winner_name=world["a"].name, winner_siret=world["a"].siret))
    session.flush()
    services.sync_with_notices(session, now=NOW)
    assert consortium.status == "submitted" and consortium.outcome_requested_at == NOW
    services.record_outcome(
        session, consortium, won=True, amount="98 500", note=None, by=world["owner_b"], now=NOW
    )
    assert consortium.status == "won" and consortium.outcome_amount == Decimal("98500.00")
    with pytest.raises(ValidationError, match="montant"):
        services.record_outcome(
            session, consortium, won=True, amount="", note=None, by=world["owner_b"], now=NOW
        )


def test_a_moved_deadline_moves_the_checklist_and_tells_members(
    session: Session, world: dict[str, Any]
) -> None:
    consortium = consortium_of(session, world["owner_a"], world["notice"])
    notice = consortium.notice
    assert workspace.announce_moved_deadlines(session, now=NOW) == 0  # first pass records the dates
    before = {i.id: services.due_on(i, notice.deadline_at) for i in consortium.checklist}
    notice.deadline_at = notice.deadline_at + dt.timedelta(days=7)
    session.flush()
    assert workspace.announce_moved_deadlines(session, now=NOW) == 1
    after = {i.id: services.due_on(i, notice.deadline_at) for i in consortium.checklist}
    assert all(after[k] == before[k] + dt.timedelta(days=7) for k in before if before[k] is not None)
    assert "deadline_moved" in _kinds(session, consortium.id)
    assert workspace.announce_moved_deadlines(session, now=NOW) == 0


def test_digest_lines_tell_members_what_others_did(session: Session, world: dict[str, Any]) -> None:
    consortium = consortium_of(session, world["owner_a"], world["notice"])
    since = NOW - dt.timedelta(hours=1)
    join(session, consortium, world["b"], world["owner_b"], world["owner_a"], now=NOW)
    workspace.post_message(session, consortium, body="Bonjour à tous", by=world["owner_b"], now=NOW)
    lines = services.activity_lines(
        session, world["owner_a"], since=since, until=NOW + dt.timedelta(minutes=1)
    )
    assert "« Groupement Jean Jaurès » : Plomberie Essonne accepte l'invitation." in lines
    assert "« Groupement Jean Jaurès » : 1 nouveau message dans la discussion." in lines
    # Its own acts are not news to B; the mandataire's invitation is.
    lines_b = services.activity_lines(
        session, world["owner_b"], since=since, until=NOW + dt.timedelta(minutes=1)
    )
    assert not any("accepte l'invitation" in line for line in lines_b)
    assert any("invite Plomberie Essonne" in line for line in lines_b)


def test_email_invitation_tokens_are_stored_hashed_and_expire(
    session: Session, world: dict[str, Any]
) -> None:
    consortium = consortium_of(session, world["owner_a"], world["notice"])
    invitation, token = services.invite_by_email(
        session,
        consortium,
        email="Nouveau@Exemple.fr",
        firm_name=None,
        message=None,
        by=world["owner_a"],
        now=NOW,
    )
    assert token not in invitation.jti and invitation.email == "nouveau@exemple.fr"
    assert services.email_invitation(session, token, now=NOW) is invitation
    with pytest.raises(Conflict):
        services.invite_by_email(
            session,
            consortium,
            email="nouveau@exemple.fr",
            firm_name=None,
            message=None,
            by=world["owner_a"],
            now=NOW,
        )
    from tenderpool.errors import InvalidToken

    with pytest.raises(InvalidToken, match="expiré"):
        services.email_invitation(session, token, now=NOW + dt.timedelta(days=30))
    with pytest.raises(InvalidToken):
        services.email_invitation(session, token + "x", now=NOW)


def test_markdown_is_rendered_and_sanitised() -> None:
    html = str(
        workspace.render_markdown(
            "# Titre\n\n**gras** <script>alert(1)</script> <img src=x onerror=alert(1)>\n\n"
            "[lien](javascript:alert(1)) [ok](https://example.org)\n\n![image](file:///etc/passwd)"
        )
    )
    assert "<h2>Titre</h2>" in html and "<strong>gras</strong>" in html
    # Raw HTML is shown as text, never interpreted; unsafe links and images are not produced.
    assert "<script" not in html and "<img" not in html and "&lt;script&gt;" in html
    assert 'href="javascript' not in html and 'src="file:' not in html
    assert 'href="https://example.org"' in html


def test_only_invited_members_answer(session: Session, world: dict[str, Any]) -> None:
    consortium = consortium_of(session, world["owner_a"], world["notice"])
    with pytest.raises(NotFound):
        services.answer_invitation(
            session, consortium, accept=True, message=None, by=world["owner_b"], now=NOW
        )
    services.invite_firm(session, consortium, firm=world["b"], by=world["owner_a"], now=NOW)
    with pytest.raises(Conflict, match="déjà été invitée"):
        services.invite_firm(session, consortium, firm=world["b"], by=world["owner_a"], now=NOW)
    services.answer_invitation(
        session, consortium, accept=False, message="Pas disponibles", by=world["owner_b"], now=NOW
    )
    member = session.scalars(select(ConsortiumMember).where(ConsortiumMember.firm_id == world["b"].id)).one()
    assert member.state == MemberState.DECLINED and member.message == "Pas disponibles"


def test_deadline_reminders_are_sent_once_per_threshold(
    session: Session, world: dict[str, Any], outbox: Any
) -> None:
    consortium = consortium_of(session, world["owner_a"], world["notice"])
    join(session, consortium, world["b"], world["owner_b"], world["owner_a"])
    deadline = world["notice"].deadline_at
    assert services.send_deadline_reminders(session, now=deadline - dt.timedelta(days=10)) == 0
    at_six = deadline - dt.timedelta(days=6)
    sent = services.send_deadline_reminders(session, now=at_six)
    assert sent == 3  # every user of the member firms: A's owner and member, B's owner
    assert services.send_deadline_reminders(session, now=at_six + dt.timedelta(hours=5)) == 0
    assert services.send_deadline_reminders(session, now=deadline - dt.timedelta(days=1)) == 3
    reminders = session.scalars(
        select(ConsortiumEvent).where(
            ConsortiumEvent.consortium_id == consortium.id, ConsortiumEvent.kind == "reminder"
        )
    ).all()
    assert [e.detail["days"] for e in reminders] == [7, 2]
