"""Consortia (groupements): forming, membership, the rules of the code, répartition, life cycle.

The rules of the Code de la commande publique are enforced here, not in the forms, so that
every entry point (web, CLI, jobs, tests) obeys them:

- exactly one mandataire at every moment (also a partial unique index); handing the role over
  is an explicit act, recorded in the journal;
- a firm is mandataire of one groupement at most per lot of a notice (R2142-23);
- a firm in several groupements on one lot, or alone and in a groupement, is allowed unless
  the notice forbids it (R2142-21 / R2151-7): then it is refused, else it is a warning;
- from submission on the composition is frozen; only the exceptions of R2142-26 change it,
  with a reason;
- the répartition is checked, never silently fixed: :func:`repartition_issues`.

Every change of state writes a :class:`ConsortiumEvent` in French: the journal of the
workspace and the consortium lines of the daily digest.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import secrets
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any

from sqlalchemy import Select, func, select
from sqlalchemy.orm import Session, selectinload
from sqlalchemy.orm.exc import StaleDataError

from tenderpool import mail
from tenderpool.accounts.models import User
from tenderpool.accounts.services import normalise_email, record_audit
from tenderpool.consortia.models import (
    WHOLE_MARKET,
    ChecklistItem,
    Consortium,
    ConsortiumEvent,
    ConsortiumLot,
    ConsortiumMember,
    ConsortiumMessage,
    EmailInvitation,
    Form,
    MemberRole,
    MemberState,
    MemoireSection,
    SoloBid,
    Status,
    Visibility,
    WorkShare,
)
from tenderpool.errors import Conflict, Forbidden, InvalidToken, NotFound, ValidationError
from tenderpool.firms.models import Firm, FirmMembership, FirmStatus
from tenderpool.firms.profile import financial_years, parse_cpv_list
from tenderpool.formatting import date_fr, money_fr, to_paris
from tenderpool.notices.models import Notice, NoticeStatus

EMAIL_INVITATION_DAYS = 21
MAX_NAME = 160
MAX_TEXT = 5000
LIVE_STATES = (MemberState.ACTIVE, MemberState.INVITED, MemberState.REQUESTED)

DEFAULT_SECTIONS = (
    "Présentation du groupement et de son organisation",
    "Compréhension du besoin",
    "Méthodologie et moyens affectés",
    "Planning d'exécution",
    "Démarche qualité, sécurité et environnement",
)
# Days before the deadline: a corrigendum that moves the deadline moves these dates with it.
DEFAULT_CHECKLIST = (
    ("Confirmer la forme du groupement et le mandataire", 21),
    ("Rassembler les attestations de chaque membre (URSSAF, fiscale, Kbis)", 14),
    ("Arrêter la répartition des prestations et les montants", 10),
    ("Finaliser le mémoire technique", 5),
    ("Générer le dossier et le faire relire par chaque membre", 3),
    ("Déposer la réponse sur le profil d'acheteur", 1),
)


class EditConflict(Conflict):
    """Another member saved the same thing first (optimistic locking): nothing was overwritten."""

    def __init__(self, message: str, *, current: dict[str, Any]) -> None:
        super().__init__(message)
        self.current = current


# --------------------------------------------------------------------------- labels and helpers


def lot_label(number: str) -> str:
    return "Marché unique (non alloti)" if number == WHOLE_MARKET else f"Lot {number}"


def lots_text(numbers: Iterable[str]) -> str:
    numbers = list(numbers)
    if numbers == [WHOLE_MARKET]:
        return "le marché"
    return ("le lot " if len(numbers) == 1 else "les lots ") + ", ".join(numbers)


def notice_lot_numbers(notice: Notice) -> list[str]:
    """The lots one can answer: the notice's lots, or the whole marché when it has none."""
    return [lot.number for lot in notice.lots] or [WHOLE_MARKET]


def lot_value(notice: Notice, number: str) -> Decimal | None:
    if number == WHOLE_MARKET:
        return notice.estimated_value
    lot = next((lot for lot in notice.lots if lot.number == number), None)
    return lot.estimated_value if lot is not None else None


def record_event(
    session: Session,
    consortium: Consortium,
    kind: str,
    text: str,
    *,
    by: User | None,
    firm_id: int | None = None,
    now: dt.datetime,
    **detail: Any,
) -> ConsortiumEvent:
    event = ConsortiumEvent(
        consortium_id=consortium.id,
        at=now,
        kind=kind,
        actor_id=by.id if by is not None else None,
        firm_id=firm_id,
        text=text,
        detail=detail,
    )
    session.add(event)
    consortium.updated_at = now
    return event


def clean_text(value: str | None, *, label: str, field_name: str, max_length: int = MAX_TEXT) -> str | None:
    value = (value or "").strip()
    if len(value) > max_length:
        raise ValidationError(f"{label} : {max_length} caractères au plus.", field=field_name)
    return value or None


def _amount(value: Any, *, label: str, field_name: str) -> Decimal | None:
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if isinstance(value, str):
        value = value.replace("\u202f", "").replace("\xa0", "").replace(" ", "").replace("€", "")
        value = value.replace(",", ".")
    try:
        amount = Decimal(value)
    except (InvalidOperation, ValueError) as exc:
        raise ValidationError(
            f"{label} : indiquez un nombre, par exemple 125000 ou 125 000,50.", field=field_name
        ) from exc
    if not amount.is_finite() or amount < 0 or amount >= Decimal("1e14"):
        raise ValidationError(f"{label} : indiquez un montant positif.", field=field_name)
    return amount.quantize(Decimal("0.01"))


def _owners_emails(firm: Firm) -> list[str]:
    owners = [m.user.email for m in firm.memberships if m.is_owner and m.user.is_active]
    return owners or [m.user.email for m in firm.memberships if m.user.is_active]


def _mail(session: Session, template: str, to: list[str], subject: str, **context: Any) -> None:
    if to:
        mail.queue(session, mail.compose(f"consortium_{template}", to, subject, **context))


def _link(consortium: Consortium) -> str:
    from tenderpool.web import external_url  # web sits above the services

    return external_url("consortia.workspace", consortium_id=consortium.id)


# --------------------------------------------------------------------------- access


def chambers_of(consortium: Consortium) -> set[str]:
    """The chambers whose staff follow this consortium: those of its active members' firms
    (an invited firm's chamber joins when the firm accepts)."""
    return {m.firm.chamber_slug for m in consortium.members if m.state == MemberState.ACTIVE}


def firm_id_of(session: Session, user: User) -> int | None:
    if not user.is_firm_user:
        return None
    membership = session.get(FirmMembership, user.id)
    if membership is None or membership.firm.status != FirmStatus.APPROVED:
        return None
    return membership.firm_id


def member_of(consortium: Consortium, firm_id: int | None) -> ConsortiumMember | None:
    if firm_id is None:
        return None
    return next((m for m in consortium.members if m.firm_id == firm_id), None)


def active_member(consortium: Consortium, firm_id: int | None) -> ConsortiumMember | None:
    member = member_of(consortium, firm_id)
    return member if member is not None and member.is_active else None


def can_see_workspace(session: Session, user: User, consortium: Consortium) -> bool:
    """Members (active), the staff of the members' chambers, and admins."""
    if user.is_admin:
        return True
    if user.is_staff:
        return user.chamber_slug in chambers_of(consortium)
    return active_member(consortium, firm_id_of(session, user)) is not None


def can_see_card(session: Session, user: User, consortium: Consortium) -> bool:
    """The public card: any member firm for an open consortium, and the firms it invited."""
    if can_see_workspace(session, user, consortium):
        return True
    firm_id = firm_id_of(session, user)
    if firm_id is None:
        return False
    if member_of(consortium, firm_id) is not None:
        return True
    return consortium.visibility == Visibility.OPEN and not Status(consortium.status).is_closed


def _load(session: Session, consortium_id: int) -> Consortium:
    consortium = session.get(Consortium, consortium_id)
    if consortium is None:
        raise NotFound("Ce groupement n'existe pas.")
    return consortium


def preload_members(session: Session, consortium: Consortium) -> None:
    """Load what the workspace shows of every member firm (skills, years, certifications,
    references) in one query per collection, instead of one lazy load per member and collection."""
    session.scalars(
        select(ConsortiumMember)
        .where(ConsortiumMember.consortium_id == consortium.id)
        .options(
            selectinload(ConsortiumMember.firm).options(
                selectinload(Firm.cpv_links),
                selectinload(Firm.years),
                selectinload(Firm.certifications),
                selectinload(Firm.references),
            )
        )
    ).all()


def workspace_for(session: Session, user: User, consortium_id: int) -> Consortium:
    """The consortium if the user may see its workspace; NotFound otherwise, so that guessing
    another consortium's id reveals nothing."""
    consortium = _load(session, consortium_id)
    if not can_see_workspace(session, user, consortium):
        raise NotFound("Ce groupement n'existe pas.")
    return consortium


def card_for(session: Session, user: User, consortium_id: int) -> Consortium:
    consortium = _load(session, consortium_id)
    if not can_see_card(session, user, consortium):
        raise NotFound("Ce groupement n'existe pas.")
    return consortium


def acting_member(session: Session, user: User, consortium: Consortium) -> ConsortiumMember:
    """The active member a firm user acts for. Staff help but never act in a firm's name."""
    member = active_member(consortium, firm_id_of(session, user))
    if member is None:
        if user.is_staff or user.is_admin:
            raise Forbidden(
                "Les conseillers de la CCI accompagnent le groupement mais n'agissent pas au nom "
                "d'une entreprise."
            )
        raise NotFound("Ce groupement n'existe pas.")
    return member


def _require_mandataire(
    session: Session, user: User, consortium: Consortium, action: str
) -> ConsortiumMember:
    member = acting_member(session, user, consortium)
    if not member.is_mandataire:
        raise Forbidden(f"Seul le mandataire peut {action}.")
    return member


def _require_not_frozen(consortium: Consortium) -> None:
    status = Status(consortium.status)
    if status.is_frozen:
        raise Conflict(
            "Le groupement a déposé sa candidature : sa composition est figée (art. R2142-26 du code de la "
            "commande publique). Seule une exception prévue par cet article permet de la modifier."
        )
    if status == Status.WITHDRAWN:
        raise Conflict("Ce groupement a été abandonné.")


# --------------------------------------------------------------------------- rules


def _other_consortia(
    session: Session, notice_id: int, firm_id: int, *, exclude: int | None
) -> list[tuple[Consortium, ConsortiumMember]]:
    rows = session.execute(
        select(Consortium, ConsortiumMember)
        .join(ConsortiumMember, ConsortiumMember.consortium_id == Consortium.id)
        .where(
            Consortium.notice_id == notice_id,
            Consortium.status.not_in([Status.WITHDRAWN.value, Status.LOST.value]),
            ConsortiumMember.firm_id == firm_id,
            ConsortiumMember.state.in_([MemberState.ACTIVE.value]),
        )
        .options(selectinload(Consortium.lots))
    ).all()
    return [(c, m) for c, m in rows if c.id != exclude]


def check_mandataire_rule(
    session: Session, *, firm: Firm, notice_id: int, lots: Sequence[str], exclude: int | None
) -> None:
    """R2142-23: one operator cannot be mandataire of more than one groupement for one marché.

    Each lot is a marché of its own: mandataire of two groupements on different lots is allowed.
    """
    for other, member in _other_consortia(session, notice_id, firm.id, exclude=exclude):
        common = sorted(set(other.lot_numbers) & set(lots))
        if member.is_mandataire and common:
            raise Conflict(
                f"{firm.name} est déjà mandataire du groupement « {other.name} » pour "
                f"{lots_text(common)} de cet avis. Une entreprise ne peut être mandataire que d'un seul "
                "groupement pour un même marché (art. R2142-23 du code de la commande publique)."
            )


def overlaps(
    session: Session, *, firm_id: int, notice_id: int, lots: Sequence[str], exclude: int | None
) -> list[str]:
    """Where the firm also bids on these lots: other groupements, or alone. French sentences."""
    return _overlaps_by_firm(session, firm_ids=[firm_id], notice_id=notice_id, lots=lots, exclude=exclude)[
        firm_id
    ]


def _overlaps_by_firm(
    session: Session, *, firm_ids: Sequence[int], notice_id: int, lots: Sequence[str], exclude: int | None
) -> dict[int, list[str]]:
    """:func:`overlaps` for several firms at once, in two queries whatever their number (the
    workspace shows it for every member on each visit)."""
    found: dict[int, list[str]] = {firm_id: [] for firm_id in firm_ids}
    if not firm_ids:
        return found
    rows = session.execute(
        select(Consortium, ConsortiumMember)
        .join(ConsortiumMember, ConsortiumMember.consortium_id == Consortium.id)
        .where(
            Consortium.notice_id == notice_id,
            Consortium.status.not_in([Status.WITHDRAWN.value, Status.LOST.value]),
            ConsortiumMember.firm_id.in_(list(firm_ids)),
            ConsortiumMember.state.in_([MemberState.ACTIVE.value]),
        )
        .options(selectinload(Consortium.lots))
        .order_by(Consortium.id)
    ).all()
    for other, member in rows:
        common = sorted(set(other.lot_numbers) & set(lots))
        if other.id != exclude and common:
            found[member.firm_id].append(f"membre du groupement « {other.name} » sur {lots_text(common)}")
    solo: dict[int, list[str]] = defaultdict(list)
    for firm_id, lot_number in session.execute(
        select(SoloBid.firm_id, SoloBid.lot_number).where(
            SoloBid.firm_id.in_(list(firm_ids)),
            SoloBid.notice_id == notice_id,
            SoloBid.lot_number.in_(list(lots)),
        )
    ):
        solo[firm_id].append(lot_number)
    for firm_id, numbers in solo.items():
        found[firm_id].append(f"candidate seule sur {lots_text(sorted(numbers))}")
    return found


def check_multiple_bids(
    session: Session, *, firm: Firm, notice: Notice, lots: Sequence[str], exclude: int | None
) -> list[str]:
    """R2142-21 / R2151-7: refuse when the notice forbids multiple bids, else return warnings."""
    found = overlaps(session, firm_id=firm.id, notice_id=notice.id, lots=lots, exclude=exclude)
    if found and notice.multiple_bids_forbidden:
        raise Conflict(
            f"{firm.name} est déjà {' et '.join(found)}. Le règlement de cette consultation interdit de "
            "présenter plusieurs candidatures pour un même lot, seule et en groupement ou dans plusieurs "
            "groupements (art. R2142-21 du code de la commande publique)."
        )
    return found


@dataclass
class Warning_:
    firm: Firm
    text: str


def warnings_for(session: Session, consortium: Consortium) -> list[Warning_]:
    """Members who also bid on the same lots elsewhere: allowed, but the firm, the mandataires
    and the chamber staff must see it (risk of an entente, offres de couverture)."""
    members = consortium.active_members
    by_firm = _overlaps_by_firm(
        session,
        firm_ids=[m.firm_id for m in members],
        notice_id=consortium.notice_id,
        lots=consortium.lot_numbers,
        exclude=consortium.id,
    )
    return [
        Warning_(member.firm, f"{member.firm.name} est aussi {text}.")
        for member in members
        for text in by_firm[member.firm_id]
    ]


# --------------------------------------------------------------------------- forming


def _clean_lots(notice: Notice, lots: Iterable[str]) -> list[str]:
    available = notice_lot_numbers(notice)
    chosen = [number for number in available if number in set(lots)]
    if available == [WHOLE_MARKET]:
        return available
    unknown = set(lots) - set(available)
    if unknown or not chosen:
        raise ValidationError("Choisissez au moins un lot de l'avis.", field="lots")
    return chosen


def _clean_settings(
    notice: Notice,
    *,
    name: str,
    form: str,
    mandataire_solidaire: bool,
    visibility: str,
    lots: Iterable[str],
    skills_cpv: str | Iterable[str] | None,
    skills_text: str | None,
) -> dict[str, Any]:
    name = " ".join((name or "").split())
    if not name:
        raise ValidationError("Donnez un nom au groupement.", field="name")
    if len(name) > MAX_NAME:
        raise ValidationError(f"Le nom compte {MAX_NAME} caractères au plus.", field="name")
    if form not in set(Form):
        raise ValidationError("Choisissez la forme : conjoint ou solidaire.", field="form")
    if visibility not in set(Visibility):
        raise ValidationError("Choisissez la visibilité du groupement.", field="visibility")
    raw_cpv = skills_cpv if isinstance(skills_cpv, str) or skills_cpv is None else " ".join(skills_cpv)
    return {
        "name": name,
        "form": form,
        # A solidaire groupement makes every member jointly liable: the option only means
        # something for a conjoint one (R2142-24).
        "mandataire_solidaire": bool(mandataire_solidaire) and form == Form.CONJOINT,
        "visibility": visibility,
        "lots": _clean_lots(notice, lots),
        "skills_cpv": parse_cpv_list(raw_cpv, field_name="skills_cpv"),
        "skills_text": clean_text(skills_text, label="Compétences recherchées", field_name="skills_text"),
    }


def live_notice(session: Session, notice: Notice) -> Notice:
    """A merged notice stands for its survivor."""
    seen = set()
    while notice.merged_into_id is not None and notice.id not in seen:
        seen.add(notice.id)
        survivor = session.get(Notice, notice.merged_into_id)
        if survivor is None:
            break
        notice = survivor
    return notice


def create_consortium(
    session: Session,
    *,
    notice: Notice,
    by: User,
    name: str,
    form: str,
    mandataire_solidaire: bool = False,
    visibility: str = Visibility.INVITATION,
    lots: Iterable[str] = (),
    skills_cpv: str | Iterable[str] | None = None,
    skills_text: str | None = None,
    now: dt.datetime,
) -> Consortium:
    """A firm forms a groupement on a notice (some of its lots) and becomes its mandataire."""
    firm_id = firm_id_of(session, by)
    if firm_id is None:
        raise Forbidden("Seule une entreprise validée peut former un groupement.")
    firm = session.get_one(Firm, firm_id)
    notice = live_notice(session, notice)
    if notice.status_at(now) != NoticeStatus.OPEN:
        raise Conflict("Cet avis n'est plus ouvert : on ne peut plus y former de groupement.")
    clean = _clean_settings(
        notice,
        name=name,
        form=form,
        mandataire_solidaire=mandataire_solidaire,
        visibility=visibility,
        lots=lots,
        skills_cpv=skills_cpv,
        skills_text=skills_text,
    )
    check_mandataire_rule(session, firm=firm, notice_id=notice.id, lots=clean["lots"], exclude=None)
    warnings = check_multiple_bids(session, firm=firm, notice=notice, lots=clean["lots"], exclude=None)
    lot_numbers = clean.pop("lots")
    consortium = Consortium(
        notice_id=notice.id,
        status=Status.FORMING.value,
        created_by_id=by.id,
        created_at=now,
        updated_at=now,
        **clean,
    )
    consortium.lots = [ConsortiumLot(lot_number=n, position=i) for i, n in enumerate(lot_numbers)]
    consortium.members = [
        ConsortiumMember(
            firm_id=firm.id,
            role=MemberRole.MANDATAIRE.value,
            state=MemberState.ACTIVE.value,
            created_at=now,
            answered_at=now,
            joined_at=now,
        )
    ]
    consortium.sections = [
        MemoireSection(title=title, position=i, assignee_firm_id=firm.id, body="")
        for i, title in enumerate(DEFAULT_SECTIONS)
    ]
    consortium.checklist = [
        ChecklistItem(title=title, days_before=days, position=i)
        for i, (title, days) in enumerate(DEFAULT_CHECKLIST)
    ]
    session.add(consortium)
    session.flush()
    record_event(
        session,
        consortium,
        "created",
        f"{firm.name} forme le groupement sur {lots_text(lot_numbers)} et en est le mandataire.",
        by=by,
        firm_id=firm.id,
        now=now,
        warnings=warnings,
    )
    session.flush()
    return consortium


def update_settings(
    session: Session,
    consortium: Consortium,
    *,
    by: User,
    version: int,
    name: str,
    form: str,
    mandataire_solidaire: bool,
    visibility: str,
    lots: Iterable[str],
    skills_cpv: str | Iterable[str] | None,
    skills_text: str | None,
    required_turnover: Any = None,
    requirements_note: str | None = None,
    now: dt.datetime,
) -> None:
    """The mandataire changes the form, the lots, the visibility or the skills sought."""
    _require_mandataire(session, by, consortium, "modifier le groupement")
    _require_not_frozen(consortium)
    if version != consortium.version:
        raise EditConflict(
            "Un autre membre a modifié le groupement pendant que vous le faisiez. Voici la version "
            "enregistrée : reprenez vos changements.",
            current={"version": consortium.version},
        )
    notice = consortium.notice
    clean = _clean_settings(
        notice,
        name=name,
        form=form,
        mandataire_solidaire=mandataire_solidaire,
        visibility=visibility,
        lots=lots,
        skills_cpv=skills_cpv,
        skills_text=skills_text,
    )
    new_lots = clean.pop("lots")
    added = [n for n in new_lots if n not in consortium.lot_numbers]
    if added:
        mandataire = consortium.mandataire
        if mandataire is None:  # the partial unique index and the services keep one
            raise Conflict("Le groupement n'a pas de mandataire.")
        check_mandataire_rule(
            session, firm=mandataire.firm, notice_id=notice.id, lots=added, exclude=consortium.id
        )
        for member in consortium.active_members:
            check_multiple_bids(session, firm=member.firm, notice=notice, lots=added, exclude=consortium.id)
    removed = [n for n in consortium.lot_numbers if n not in new_lots]
    consortium.lots = [lot for lot in consortium.lots if lot.lot_number in new_lots] + [
        ConsortiumLot(lot_number=n) for n in added
    ]
    for position, number in enumerate(new_lots):
        next(lot for lot in consortium.lots if lot.lot_number == number).position = position
    consortium.shares = [s for s in consortium.shares if s.lot_number in new_lots]
    changes = [key for key, value in clean.items() if getattr(consortium, key) != value]
    for key, value in clean.items():
        setattr(consortium, key, value)
    consortium.required_turnover = _amount(
        required_turnover, label="Chiffre d'affaires minimal exigé", field_name="required_turnover"
    )
    consortium.requirements_note = clean_text(
        requirements_note, label="Autres exigences", field_name="requirements_note"
    )
    consortium.version += 1
    parts = []
    if added:
        parts.append(f"ajoute {lots_text(added)}")
    if removed:
        parts.append(f"retire {lots_text(removed)}")
    if "form" in changes or "mandataire_solidaire" in changes:
        parts.append(f"forme : {form_text(consortium)}")
    if "visibility" in changes:
        parts.append(f"visibilité : {Visibility(consortium.visibility).label.lower()}")
    text = "Le mandataire modifie le groupement" + (" : " + " ; ".join(parts) if parts else "") + "."
    record_event(
        session, consortium, "settings", text, by=by, now=now, added=added, removed=removed, changes=changes
    )
    refresh_status(session, consortium, by=by, now=now)
    session.flush()


def form_text(consortium: Consortium) -> str:
    if consortium.form == Form.SOLIDAIRE:
        return "groupement solidaire"
    return (
        "groupement conjoint, mandataire solidaire"
        if consortium.mandataire_solidaire
        else ("groupement conjoint, mandataire non solidaire")
    )


# --------------------------------------------------------------------------- membership


def _pending(
    session: Session,
    consortium: Consortium,
    member: ConsortiumMember | None,
    *,
    firm_id: int,
    state: MemberState,
    invited_by_id: int | None,
    message: str | None,
    now: dt.datetime,
) -> ConsortiumMember:
    """An invitation or a request to join, on a new row or on the firm's earlier one (a firm
    that declined or left may be invited again: one row per firm and consortium)."""
    if member is None:
        member = ConsortiumMember(consortium_id=consortium.id, firm_id=firm_id, created_at=now)
        session.add(member)
        consortium.members.append(member)
    member.role = MemberRole.COTRAITANT.value
    member.state = state.value
    member.invited_by_id = invited_by_id
    member.message = message
    member.created_at = now
    member.answered_at = member.joined_at = member.left_at = None
    return member


def _settle(
    session: Session, consortium: Consortium, member: ConsortiumMember, *, accept: bool, now: dt.datetime
) -> None:
    """An invitation or a request answered: joining checks the frozen composition and R2142-21."""
    if accept:
        _require_not_frozen(consortium)
        check_multiple_bids(
            session,
            firm=member.firm,
            notice=consortium.notice,
            lots=consortium.lot_numbers,
            exclude=consortium.id,
        )
        member.state = MemberState.ACTIVE.value
        member.joined_at = now
    else:
        member.state = MemberState.DECLINED.value
    member.answered_at = now


def invite_firm(
    session: Session,
    consortium: Consortium,
    *,
    firm: Firm,
    by: User,
    message: str | None = None,
    now: dt.datetime,
) -> ConsortiumMember:
    """A member invites a firm of TenderPool; its owners are emailed at once."""
    inviter = acting_member(session, by, consortium)
    _require_not_frozen(consortium)
    if firm.status != FirmStatus.APPROVED:
        raise ValidationError("Cette entreprise n'est pas encore validée par sa CCI.")
    message = clean_text(message, label="Message", field_name="message")
    member = member_of(consortium, firm.id)
    if member is not None and member.state in LIVE_STATES:
        already = {
            MemberState.ACTIVE: "est déjà membre du groupement",
            MemberState.INVITED: "a déjà été invitée",
            MemberState.REQUESTED: "a demandé à rejoindre le groupement : acceptez sa demande",
        }[MemberState(member.state)]
        raise Conflict(f"{firm.name} {already}.")
    warnings = overlaps(
        session,
        firm_id=firm.id,
        notice_id=consortium.notice_id,
        lots=consortium.lot_numbers,
        exclude=consortium.id,
    )
    member = _pending(
        session,
        consortium,
        member,
        firm_id=firm.id,
        state=MemberState.INVITED,
        invited_by_id=by.id,
        message=message,
        now=now,
    )
    session.flush()
    record_event(
        session,
        consortium,
        "invited",
        f"{inviter.firm.name} invite {firm.name}.",
        by=by,
        firm_id=firm.id,
        now=now,
        warnings=warnings,
    )
    _mail(
        session,
        "invitation",
        _owners_emails(firm),
        f"{inviter.firm.name} vous invite dans un groupement",
        consortium=consortium,
        inviter=inviter.firm,
        firm=firm,
        message=message,
        warnings=warnings,
        link=_link(consortium),
        lots=lots_text(consortium.lot_numbers),
    )
    session.flush()
    return member


def _token_hash(token: str) -> str:
    # Only a hash is stored: a leaked database does not give working invitation links.
    return hashlib.sha256(token.encode()).hexdigest()


def invite_by_email(
    session: Session,
    consortium: Consortium,
    *,
    email: str,
    firm_name: str | None,
    message: str | None,
    by: User,
    now: dt.datetime,
) -> tuple[EmailInvitation, str]:
    """Invite a firm that is not on TenderPool yet: the link leads it through sign-up.

    Returns the invitation and its token (sent by email, never stored in clear)."""
    from tenderpool.web import external_url

    inviter = acting_member(session, by, consortium)
    _require_not_frozen(consortium)
    email = normalise_email(email)
    firm_name = clean_text(firm_name, label="Nom de l'entreprise", field_name="firm_name", max_length=200)
    message = clean_text(message, label="Message", field_name="message")
    pending = session.scalar(
        select(func.count())
        .select_from(EmailInvitation)
        .where(
            EmailInvitation.consortium_id == consortium.id,
            EmailInvitation.email == email,
            EmailInvitation.claimed_at.is_(None),
            EmailInvitation.expires_at > now,
        )
    )
    if pending:
        raise Conflict("Une invitation est déjà en cours pour cette adresse.", field="email")
    token = secrets.token_urlsafe(32)
    invitation = EmailInvitation(
        jti=_token_hash(token),
        consortium_id=consortium.id,
        email=email,
        firm_name=firm_name,
        message=message,
        invited_by_id=by.id,
        created_at=now,
        expires_at=now + dt.timedelta(days=EMAIL_INVITATION_DAYS),
    )
    session.add(invitation)
    session.flush()
    record_event(
        session,
        consortium,
        "invited_email",
        f"{inviter.firm.name} invite par courriel {firm_name or 'une entreprise'} ({email}).",
        by=by,
        now=now,
    )
    _mail(
        session,
        "email_invitation",
        [email],
        f"{inviter.firm.name} vous invite à répondre ensemble à un marché public",
        consortium=consortium,
        inviter=inviter.firm,
        firm_name=firm_name,
        message=message,
        link=external_url("consortia.invitation", token=token),
        days=EMAIL_INVITATION_DAYS,
        lots=lots_text(consortium.lot_numbers),
    )
    session.flush()
    return invitation, token


def email_invitation(session: Session, token: str, *, now: dt.datetime) -> EmailInvitation:
    """A live email invitation, or InvalidToken."""
    invitation = session.scalar(select(EmailInvitation).where(EmailInvitation.jti == _token_hash(token)))
    if invitation is None:
        raise InvalidToken("Cette invitation n'est pas valide.")
    if invitation.claimed_at is not None:
        raise InvalidToken("Cette invitation a déjà été utilisée : connectez-vous pour voir le groupement.")
    if invitation.expires_at <= now:
        raise InvalidToken("Cette invitation a expiré : demandez-en une nouvelle au groupement.")
    return invitation


def claim_email_invitation(session: Session, token: str, *, by: User, now: dt.datetime) -> Consortium:
    """The invited firm, now signed up and approved, turns the emailed link into an invitation."""
    invitation = email_invitation(session, token, now=now)
    firm_id = firm_id_of(session, by)
    if firm_id is None:
        raise Forbidden("Votre entreprise doit être validée par sa CCI avant de rejoindre un groupement.")
    consortium = invitation.consortium
    _require_not_frozen(consortium)
    firm = session.get_one(Firm, firm_id)
    invitation.claimed_at = now
    invitation.claimed_by_firm_id = firm.id
    member = member_of(consortium, firm.id)
    if member is None or member.state not in LIVE_STATES:
        member = _pending(
            session,
            consortium,
            member,
            firm_id=firm.id,
            state=MemberState.INVITED,
            invited_by_id=invitation.invited_by_id,
            message=invitation.message,
            now=now,
        )
        record_event(
            session,
            consortium,
            "invitation_claimed",
            f"{firm.name} s'est inscrite sur TenderPool avec l'invitation envoyée à {invitation.email}.",
            by=by,
            firm_id=firm.id,
            now=now,
        )
    session.flush()
    return consortium


def lock_membership(session: Session, consortium: Consortium) -> None:
    """Queue membership changes of one groupement on its row, then read its members afresh.

    Twenty firms accepting at once would otherwise each see the status and the members as they
    were before the others committed: each would move « forming » to « assembling » and journal
    it, and two members leaving at once could leave the status stale. PostgreSQL holds the row
    lock (SELECT … FOR UPDATE) until the commit; SQLite serialises writers anyway."""
    session.execute(select(Consortium.id).where(Consortium.id == consortium.id).with_for_update()).all()
    session.execute(
        select(Consortium).where(Consortium.id == consortium.id).execution_options(populate_existing=True)
    ).all()
    session.execute(
        select(ConsortiumMember)
        .where(ConsortiumMember.consortium_id == consortium.id)
        .execution_options(populate_existing=True)
    ).all()


def answer_invitation(
    session: Session,
    consortium: Consortium,
    *,
    accept: bool,
    message: str | None,
    by: User,
    now: dt.datetime,
) -> ConsortiumMember:
    """The invited firm accepts or declines, with a message; the mandataire is emailed at once."""
    lock_membership(session, consortium)
    member = member_of(consortium, firm_id_of(session, by))
    if member is None or member.state != MemberState.INVITED:
        raise NotFound("Aucune invitation en attente pour votre entreprise.")
    message = clean_text(message, label="Message", field_name="message")
    _settle(session, consortium, member, accept=accept, now=now)
    member.message = message
    verb = "accepte" if accept else "décline"
    record_event(
        session,
        consortium,
        "accepted" if accept else "declined",
        f"{member.firm.name} {verb} l'invitation" + (f" : « {message} »" if message else "."),
        by=by,
        firm_id=member.firm_id,
        now=now,
    )
    _notify_mandataire(
        session, consortium, f"{member.firm.name} {verb} votre invitation", member=member, accept=accept
    )
    refresh_status(session, consortium, by=by, now=now)
    session.flush()
    return member


def _notify_mandataire(
    session: Session, consortium: Consortium, subject: str, *, member: ConsortiumMember, accept: bool
) -> None:
    mandataire = consortium.mandataire
    if mandataire is None or mandataire.firm_id == member.firm_id:
        return
    _mail(
        session,
        "answer",
        _owners_emails(mandataire.firm),
        subject,
        consortium=consortium,
        member=member,
        accept=accept,
        link=_link(consortium),
    )


def request_to_join(
    session: Session, consortium: Consortium, *, message: str | None, by: User, now: dt.datetime
) -> ConsortiumMember:
    """A firm asks to join an open consortium; the mandataire decides."""
    firm_id = firm_id_of(session, by)
    if firm_id is None:
        raise Forbidden("Seule une entreprise validée peut demander à rejoindre un groupement.")
    if consortium.visibility != Visibility.OPEN:
        raise NotFound("Ce groupement n'existe pas.")
    _require_not_frozen(consortium)
    firm = session.get_one(Firm, firm_id)
    member = member_of(consortium, firm_id)
    if member is not None and member.state in LIVE_STATES:
        raise Conflict("Votre entreprise est déjà membre, invitée ou en attente de réponse.")
    if member is not None and member.state == MemberState.DECLINED and member.invited_by_id is None:
        raise Conflict("Le mandataire a déjà décliné votre demande pour ce groupement.")
    message = clean_text(message, label="Message", field_name="message")
    member = _pending(
        session,
        consortium,
        member,
        firm_id=firm_id,
        state=MemberState.REQUESTED,
        invited_by_id=None,
        message=message,
        now=now,
    )
    session.flush()
    record_event(
        session,
        consortium,
        "requested",
        f"{firm.name} demande à rejoindre le groupement.",
        by=by,
        firm_id=firm_id,
        now=now,
    )
    mandataire = consortium.mandataire
    if mandataire is not None:
        _mail(
            session,
            "request",
            _owners_emails(mandataire.firm),
            f"{firm.name} demande à rejoindre votre groupement",
            consortium=consortium,
            firm=firm,
            message=message,
            link=_link(consortium),
        )
    session.flush()
    return member


def decide_request(
    session: Session,
    consortium: Consortium,
    *,
    member_id: int,
    accept: bool,
    message: str | None,
    by: User,
    now: dt.datetime,
) -> ConsortiumMember:
    """The mandataire accepts or declines a firm's request to join; the firm is emailed at once."""
    lock_membership(session, consortium)
    _require_mandataire(session, by, consortium, "répondre aux demandes")
    member = next((m for m in consortium.members if m.id == member_id), None)
    if member is None or member.state != MemberState.REQUESTED:
        raise NotFound("Cette demande n'existe pas ou a déjà reçu une réponse.")
    message = clean_text(message, label="Message", field_name="message")
    _settle(session, consortium, member, accept=accept, now=now)
    verb = "accepte" if accept else "décline"
    record_event(
        session,
        consortium,
        "request_accepted" if accept else "request_declined",
        f"Le mandataire {verb} la demande de {member.firm.name}.",
        by=by,
        firm_id=member.firm_id,
        now=now,
    )
    _mail(
        session,
        "request_decision",
        _owners_emails(member.firm),
        f"Votre demande de rejoindre « {consortium.name} » : {'acceptée' if accept else 'déclinée'}",
        consortium=consortium,
        accept=accept,
        message=message,
        link=_link(consortium),
    )
    refresh_status(session, consortium, by=by, now=now)
    session.flush()
    return member


def cancel_invitation(
    session: Session, consortium: Consortium, *, member_id: int, by: User, now: dt.datetime
) -> None:
    """A member withdraws an invitation that has not been answered."""
    acting_member(session, by, consortium)
    member = next((m for m in consortium.members if m.id == member_id), None)
    if member is None or member.state != MemberState.INVITED:
        raise NotFound("Cette invitation n'existe pas ou a déjà reçu une réponse.")
    member.state = MemberState.DECLINED.value
    member.answered_at = now
    record_event(
        session,
        consortium,
        "invitation_cancelled",
        f"L'invitation de {member.firm.name} est retirée.",
        by=by,
        firm_id=member.firm_id,
        now=now,
    )
    refresh_status(session, consortium, by=by, now=now)
    session.flush()


def leave(session: Session, consortium: Consortium, *, by: User, now: dt.datetime) -> None:
    """A member leaves before submission; its parts of the répartition go with it."""
    lock_membership(session, consortium)
    member = acting_member(session, by, consortium)
    _require_not_frozen(consortium)
    if member.is_mandataire and len(consortium.active_members) > 1:
        raise Conflict(
            "Le mandataire doit d'abord confier ce rôle à un autre membre avant de quitter le groupement."
        )
    member.state = MemberState.LEFT.value
    member.left_at = now
    consortium.shares = [s for s in consortium.shares if s.firm_id != member.firm_id]
    record_event(
        session,
        consortium,
        "left",
        f"{member.firm.name} quitte le groupement.",
        by=by,
        firm_id=member.firm_id,
        now=now,
    )
    if member.is_mandataire:  # the last member: nobody is left to answer
        consortium.status = Status.WITHDRAWN.value
        record_event(
            session,
            consortium,
            "status",
            "Le groupement est abandonné : plus aucun membre.",
            by=by,
            now=now,
            to="withdrawn",
        )
    else:
        refresh_status(session, consortium, by=by, now=now)
    session.flush()


def hand_over_mandate(
    session: Session, consortium: Consortium, *, to_firm_id: int, by: User, now: dt.datetime
) -> None:
    """The mandataire hands its role to another active member: an explicit, recorded act."""
    current = _require_mandataire(session, by, consortium, "confier le rôle de mandataire")
    _require_not_frozen(consortium)
    target = active_member(consortium, to_firm_id)
    if target is None or target.id == current.id:
        raise ValidationError("Choisissez un autre membre actif du groupement.", field="firm_id")
    check_mandataire_rule(
        session,
        firm=target.firm,
        notice_id=consortium.notice_id,
        lots=consortium.lot_numbers,
        exclude=consortium.id,
    )
    # Two flushes: the partial unique index allows one mandataire at every moment.
    current.role = MemberRole.COTRAITANT.value
    session.flush()
    target.role = MemberRole.MANDATAIRE.value
    session.flush()
    record_event(
        session,
        consortium,
        "mandate",
        f"{current.firm.name} confie le rôle de mandataire à {target.firm.name}.",
        by=by,
        firm_id=target.firm_id,
        now=now,
        previous=current.firm_id,
    )
    session.flush()


R2142_26_REASONS = {
    "restructuring": "Opération de restructuration (rachat, fusion, acquisition)",
    "impossibility": "Membre dans l'impossibilité d'exécuter pour des raisons qui ne lui sont pas imputables",
    "negotiated": "Procédure avec négociation ou dialogue : changement autorisé par l'acheteur",
    "exclusion": "Membre frappé d'une exclusion, remplacé à la demande de l'acheteur (art. L2141-13)",
}


def change_after_submission(
    session: Session,
    consortium: Consortium,
    *,
    member_id: int,
    reason: str,
    explanation: str,
    replacement_firm_id: int | None,
    by: User,
    now: dt.datetime,
) -> None:
    """After submission, a member leaves (and may be replaced) only under R2142-26, with a reason."""
    _require_mandataire(session, by, consortium, "modifier la composition après le dépôt")
    if consortium.status != Status.SUBMITTED:
        raise Conflict("Cette procédure ne concerne qu'un groupement dont la candidature est déposée.")
    if reason not in R2142_26_REASONS:
        raise ValidationError("Choisissez le motif prévu par l'article R2142-26.", field="reason")
    explanation = clean_text(explanation, label="Justification", field_name="explanation") or ""
    if not explanation:
        raise ValidationError("Expliquez la situation : l'acheteur devra l'examiner.", field="explanation")
    member = next((m for m in consortium.active_members if m.id == member_id), None)
    if member is None:
        raise ValidationError("Choisissez un membre actif.", field="member_id")
    if member.is_mandataire and replacement_firm_id is None:
        raise ValidationError(
            "Le mandataire ne peut être retiré que s'il est remplacé.", field="replacement_firm_id"
        )
    member.state = MemberState.REMOVED.value
    member.left_at = now
    replacement: Firm | None = None
    if replacement_firm_id is not None:
        replacement = session.get(Firm, replacement_firm_id)
        if replacement is None or replacement.status != FirmStatus.APPROVED:
            raise ValidationError(
                "L'entreprise de remplacement doit être inscrite et validée.", field="replacement_firm_id"
            )
        if active_member(consortium, replacement.id) is not None:
            raise ValidationError("Cette entreprise est déjà membre.", field="replacement_firm_id")
        was_mandataire = member.is_mandataire
        if was_mandataire:
            member.role = MemberRole.COTRAITANT.value
            session.flush()
        new = member_of(consortium, replacement.id)
        if new is None:
            new = ConsortiumMember(consortium_id=consortium.id, firm_id=replacement.id, created_at=now)
            session.add(new)
            consortium.members.append(new)
        new.state = MemberState.ACTIVE.value
        new.role = MemberRole.MANDATAIRE.value if was_mandataire else MemberRole.COTRAITANT.value
        new.joined_at = new.answered_at = now
        new.invited_by_id = by.id
        for share in consortium.shares:
            if share.firm_id == member.firm_id:
                share.firm_id = replacement.id
    else:
        consortium.shares = [s for s in consortium.shares if s.firm_id != member.firm_id]
    text = f"Composition modifiée après le dépôt (art. R2142-26) : {member.firm.name} se retire"
    text += f", remplacée par {replacement.name}" if replacement else ""
    text += f". Motif : {R2142_26_REASONS[reason].lower()}. {explanation}"
    record_event(
        session,
        consortium,
        "r2142_26",
        text,
        by=by,
        firm_id=member.firm_id,
        now=now,
        reason=reason,
        replacement=replacement.id if replacement else None,
    )
    session.flush()


# --------------------------------------------------------------------------- répartition


@dataclass
class ShareInput:
    firm_id: int
    tasks: str | None
    amount: Any
    share: Any


def save_repartition(
    session: Session,
    consortium: Consortium,
    *,
    lot_number: str,
    version: int,
    offer_amount: Any,
    rows: Sequence[ShareInput],
    by: User,
    now: dt.datetime,
) -> ConsortiumLot:
    """Save one lot's répartition. Sums are checked by :func:`repartition_issues`, not fixed.

    Optimistic locking: ``version`` is the one the member loaded; if another member saved in
    between, :class:`EditConflict` is raised with the saved values and nothing is written."""
    member = acting_member(session, by, consortium)
    _require_not_frozen(consortium)
    lot = next((lot for lot in consortium.lots if lot.lot_number == lot_number), None)
    if lot is None:
        raise NotFound("Ce lot ne fait pas partie du groupement.")
    if version != lot.version:
        raise EditConflict(
            f"{lot_label(lot_number)} : un autre membre a enregistré la répartition pendant que vous la "
            "modifiiez. Rien n'a été écrasé : voici la version enregistrée, reprenez vos changements.",
            current=lot_repartition(consortium, lot_number),
        )
    active = {m.firm_id: m for m in consortium.active_members}
    offer = _amount(
        offer_amount, label=f"{lot_label(lot_number)} : montant de l'offre", field_name="offer_amount"
    )
    cleaned: dict[int, tuple[str | None, Decimal | None, Decimal | None]] = {}
    for row in rows:
        if row.firm_id not in active:
            raise ValidationError("La répartition ne peut concerner que les membres actifs du groupement.")
        name = active[row.firm_id].firm.name
        tasks = clean_text(row.tasks, label=f"Prestations de {name}", field_name=f"tasks_{row.firm_id}")
        amount = _amount(row.amount, label=f"Montant de {name}", field_name=f"amount_{row.firm_id}")
        share = _amount(row.share, label=f"Part de {name}", field_name=f"share_{row.firm_id}")
        if share is not None and share > 100:
            raise ValidationError(f"Part de {name} : 100 % au plus.", field=f"share_{row.firm_id}")
        if tasks or amount is not None or share is not None:
            cleaned[row.firm_id] = (tasks, amount, share)
    existing = {s.firm_id: s for s in consortium.shares if s.lot_number == lot_number}
    for firm_id, old in existing.items():
        if firm_id not in cleaned:
            consortium.shares.remove(old)
    for firm_id, (tasks, amount, share) in cleaned.items():
        saved = existing.get(firm_id)
        if saved is None:
            saved = WorkShare(consortium_id=consortium.id, firm_id=firm_id, lot_number=lot_number)
            consortium.shares.append(saved)
        saved.tasks, saved.amount, saved.share = tasks, amount, share
    lot.offer_amount = offer
    lot.updated_at = now  # the row changes, so its version goes up (version_id_col)
    lot.updated_by_id = by.id
    record_event(
        session,
        consortium,
        "repartition",
        f"{member.firm.name} met à jour la répartition ({lot_label(lot_number).lower()}).",
        by=by,
        now=now,
        lot=lot_number,
    )
    flush_or_conflict(
        session, f"{lot_label(lot_number)} : un autre membre vient d'enregistrer la répartition."
    )
    refresh_status(session, consortium, by=by, now=now)
    session.flush()
    return lot


def flush_or_conflict(session: Session, message: str) -> None:
    """Flush; a concurrent save that won the race (the versioned UPDATE matched no row) becomes
    an EditConflict instead of a lost update."""
    try:
        session.flush()
    except StaleDataError as exc:
        raise EditConflict(message + " Rechargez la page : rien n'a été écrasé.", current={}) from exc


def lot_repartition(consortium: Consortium, lot_number: str) -> dict[str, Any]:
    """The saved répartition of one lot, as plain values (shown after an edit conflict)."""
    lot = next(lot for lot in consortium.lots if lot.lot_number == lot_number)
    return {
        "version": lot.version,
        "offer_amount": lot.offer_amount,
        "rows": {
            s.firm_id: {"tasks": s.tasks, "amount": s.amount, "share": s.share}
            for s in consortium.shares
            if s.lot_number == lot_number
        },
    }


def _percent(value: Decimal) -> str:
    return f"{value.normalize():f}".replace(".", ",") + " %"


def repartition_issues(consortium: Consortium) -> list[str]:
    """What is inconsistent in the répartition, in French. Nothing is corrected automatically."""
    issues: list[str] = []
    active = {m.firm_id: m for m in consortium.active_members}
    with_part: set[int] = set()
    for lot in consortium.lots:
        label = lot_label(lot.lot_number)
        shares = [s for s in consortium.shares if s.lot_number == lot.lot_number and s.firm_id in active]
        if not shares:
            issues.append(f"{label} : la répartition n'est pas renseignée.")
            continue
        total_share = sum((s.share or Decimal(0) for s in shares), Decimal(0))
        if any(s.share is None for s in shares):
            issues.append(f"{label} : indiquez la part de chaque membre.")
        elif total_share != Decimal(100):
            issues.append(f"{label} : les parts totalisent {_percent(total_share)} au lieu de 100 %.")
        amounts = [s.amount for s in shares]
        if lot.offer_amount is None:
            issues.append(f"{label} : indiquez le montant de l'offre du groupement.")
        elif any(a is None for a in amounts):
            issues.append(f"{label} : indiquez le montant de chaque membre.")
        else:
            total = sum(a for a in amounts if a is not None)
            if total != lot.offer_amount:
                issues.append(
                    f"{label} : les montants totalisent {money_fr(total)}, "
                    f"l'offre du lot est de {money_fr(lot.offer_amount)}."
                )
            elif lot.offer_amount > 0:
                for s in shares:
                    if s.amount is None or s.share is None:
                        continue
                    computed = (s.amount * 100 / lot.offer_amount).quantize(Decimal("0.01"))
                    if abs(computed - s.share) > Decimal("0.5"):
                        issues.append(
                            f"{label} : la part de {active[s.firm_id].firm.name} ({_percent(s.share)}) ne "
                            f"correspond pas à son montant ({_percent(computed)} de l'offre)."
                        )
        for s in shares:
            if (s.amount or s.share) and consortium.form == Form.CONJOINT and not s.tasks:
                # In a conjoint groupement each member commits only to its own prestations: they
                # must be stated (DC1 rubric E), or the judge may requalify the groupement.
                issues.append(f"{label} : décrivez les prestations de {active[s.firm_id].firm.name}.")
            if s.share:
                with_part.add(s.firm_id)
    for firm_id, member in active.items():
        if firm_id not in with_part and consortium.shares:
            issues.append(f"{member.firm.name} n'a aucune part dans la répartition.")
    return issues


# --------------------------------------------------------------------------- capacities


@dataclass
class PooledYear:
    year: int
    turnover: Decimal | None  # None when no member gave it
    headcount: int | None
    parts: list[tuple[Firm, Decimal | None, int | None]]
    missing: list[Firm]  # members that did not give their turnover for that year


@dataclass
class PooledCapacities:
    years: list[PooledYear]
    certifications: list[tuple[str, list[Firm]]]  # name -> the members holding it (valid ones)
    references: list[tuple[Firm, Any]]  # (member, FirmReference), newest first
    required_turnover: Decimal | None = None
    cap: Decimal | None = None  # R2142-7 cap on a minimum turnover requirement
    cap_factor: Decimal | None = None
    findings: list[str] = field(default_factory=list)


def turnover_cap(consortium: Consortium) -> tuple[Decimal | None, Decimal]:
    """The R2142-7 cap on a minimum turnover requirement: 1.5 × the estimated value of the marché
    (of the lots answered, each one a marché) for consultations launched from 1 January 2026,
    2 × before (décret n° 2025-1383)."""
    notice = consortium.notice
    launched = notice.published_at
    factor = Decimal("2") if launched is not None and launched < dt.date(2026, 1, 1) else Decimal("1.5")
    values = [lot_value(notice, n) for n in consortium.lot_numbers]
    if not values or any(v is None for v in values):
        return None, factor
    # For several lots the requirement applies per lot; the largest lot sets the widest cap.
    return max(v for v in values if v is not None) * factor, factor


def pooled_capacities(consortium: Consortium, *, today: dt.date) -> PooledCapacities:
    """The groupement's capacities are assessed globally (R2142-25): each member's figures and
    their sums, the union of certifications and the references, compared with the requirement."""
    members = [m.firm for m in consortium.active_members]
    years: list[PooledYear] = []
    for year in sorted(financial_years(today), reverse=True):
        parts = []
        missing = []
        for firm in members:
            row = next((y for y in firm.years if y.year == year), None)
            turnover = row.turnover if row is not None else None
            headcount = row.headcount if row is not None else None
            parts.append((firm, turnover, headcount))
            if turnover is None:
                missing.append(firm)
        turnovers = [t for _, t, _ in parts if t is not None]
        headcounts = [h for _, _, h in parts if h is not None]
        years.append(
            PooledYear(
                year=year,
                turnover=sum(turnovers, Decimal(0)) if turnovers else None,
                headcount=sum(headcounts) if headcounts else None,
                parts=parts,
                missing=missing,
            )
        )
    certs: dict[str, list[Firm]] = {}
    for firm in members:
        for cert in firm.certifications:
            if cert.valid_until is not None and cert.valid_until < today:
                continue
            certs.setdefault(cert.name, []).append(firm)
    references = sorted(
        ((firm, ref) for firm in members for ref in firm.references), key=lambda pair: -pair[1].year
    )
    cap, factor = turnover_cap(consortium)
    pooled = PooledCapacities(
        years=years,
        certifications=sorted(certs.items(), key=lambda item: item[0].lower()),
        references=references,
        required_turnover=consortium.required_turnover,
        cap=cap,
        cap_factor=factor,
    )
    required = consortium.required_turnover
    if required is not None:
        latest = next((y for y in years if y.turnover is not None), None)
        if latest is None:
            pooled.findings.append(
                "Aucun membre n'a renseigné son chiffre d'affaires : comparaison impossible."
            )
        elif latest.turnover is not None and latest.turnover >= required:
            pooled.findings.append(
                f"Le chiffre d'affaires cumulé {latest.year} ({money_fr(latest.turnover)}) atteint "
                f"le minimum exigé ({money_fr(required)})."
            )
        else:
            pooled.findings.append(
                f"Le chiffre d'affaires cumulé {latest.year} ({money_fr(latest.turnover)}) reste sous le "
                f"minimum exigé ({money_fr(required)}) : cherchez un partenaire de plus."
            )
        if cap is not None and required > cap:
            pooled.findings.append(
                f"Le minimum exigé dépasse {_percent(factor * 100).replace(' %', '')} % de la valeur estimée "
                f"({money_fr(cap)}) : l'art. R2142-7 impose à l'acheteur de le justifier."
            )
    return pooled


# --------------------------------------------------------------------------- life cycle


def readiness_problems(session: Session, consortium: Consortium) -> list[str]:
    """Why the consortium is not ready to submit, in French; empty when it is."""
    problems: list[str] = []
    active = consortium.active_members
    if len(active) < 2:
        problems.append("Un groupement compte au moins deux membres actifs.")
    pending = [m for m in consortium.members if m.state in (MemberState.INVITED, MemberState.REQUESTED)]
    for m in pending:
        what = "n'a pas répondu à l'invitation" if m.state == MemberState.INVITED else "attend votre réponse"
        problems.append(f"{m.firm.name} {what}.")
    mandataires = [m for m in active if m.is_mandataire]
    if len(mandataires) != 1:
        problems.append("Le groupement doit avoir exactement un mandataire actif.")
    problems.extend(repartition_issues(consortium))
    if not consortium.sections:
        problems.append("Le mémoire technique n'a aucune section.")
    for section in consortium.sections:
        if section.status != "ready":
            problems.append(f"Mémoire : la section « {section.title} » n'est pas prête.")
    if consortium.notice.multiple_bids_forbidden:
        for warning in warnings_for(session, consortium):
            problems.append(warning.text + " Le règlement de la consultation l'interdit.")
    return problems


def refresh_status(session: Session, consortium: Consortium, *, by: User | None, now: dt.datetime) -> None:
    """forming ↔ assembling by the number of members; ready falls back when a rule breaks."""
    status = Status(consortium.status)
    if status in (Status.FORMING, Status.ASSEMBLING):
        target = Status.ASSEMBLING if len(consortium.active_members) >= 2 else Status.FORMING
        if target != status:
            consortium.status = target.value
            record_event(
                session, consortium, "status", f"Statut : {target.label}.", by=by, now=now, to=target.value
            )
    elif status == Status.READY:
        session.flush()
        problems = readiness_problems(session, consortium)
        if problems:
            consortium.status = Status.ASSEMBLING.value
            record_event(
                session,
                consortium,
                "status",
                "Le groupement n'est plus prêt à déposer : " + problems[0],
                by=by,
                now=now,
                to="assembling",
            )


def _snapshot(consortium: Consortium) -> dict[str, Any]:
    return {
        "form": consortium.form,
        "mandataire_solidaire": consortium.mandataire_solidaire,
        "lots": consortium.lot_numbers,
        "members": [
            {"firm_id": m.firm_id, "name": m.firm.name, "siret": m.firm.siret, "role": m.role}
            for m in consortium.active_members
        ],
        "shares": [
            {
                "firm_id": s.firm_id,
                "lot": s.lot_number,
                "tasks": s.tasks,
                "amount": str(s.amount) if s.amount is not None else None,
                "share": str(s.share) if s.share is not None else None,
            }
            for s in consortium.shares
        ],
        "offers": {
            lot.lot_number: str(lot.offer_amount) if lot.offer_amount is not None else None
            for lot in consortium.lots
        },
    }


def mark_ready(session: Session, consortium: Consortium, *, by: User, now: dt.datetime) -> None:
    """The mandataire declares the groupement ready: every member accepted and every rule passes."""
    _require_mandataire(session, by, consortium, "déclarer le groupement prêt")
    if consortium.status not in (Status.FORMING, Status.ASSEMBLING):
        raise Conflict(f"Le groupement est « {consortium.status_label} » : il ne peut pas passer à « prêt ».")
    problems = readiness_problems(session, consortium)
    if problems:
        raise Conflict("Le groupement n'est pas prêt : " + " ".join(problems))
    consortium.status = Status.READY.value
    record_event(
        session,
        consortium,
        "status",
        "Le mandataire déclare le groupement prêt à déposer.",
        by=by,
        now=now,
        to="ready",
    )
    session.flush()


def reopen(session: Session, consortium: Consortium, *, by: User, now: dt.datetime) -> None:
    """Back from ready to assembling, to change something before submission."""
    _require_mandataire(session, by, consortium, "rouvrir le groupement")
    if consortium.status != Status.READY:
        raise Conflict("Seul un groupement prêt peut être rouvert.")
    consortium.status = Status.ASSEMBLING.value
    record_event(
        session,
        consortium,
        "status",
        "Le mandataire rouvre le groupement pour modifications.",
        by=by,
        now=now,
        to="assembling",
    )
    session.flush()


def mark_submitted(session: Session, consortium: Consortium, *, by: User, now: dt.datetime) -> None:
    """The mandataire records that the candidature was filed: the composition is frozen."""
    _require_mandataire(session, by, consortium, "déclarer la candidature déposée")
    if consortium.status != Status.READY:
        raise Conflict("Le groupement doit d'abord être déclaré prêt.")
    problems = readiness_problems(session, consortium)
    if problems:
        raise Conflict("Le groupement n'est plus prêt : " + " ".join(problems))
    deadline = consortium.notice.deadline_at
    if deadline is not None and deadline <= now:
        raise Conflict("La date limite de remise des offres est dépassée.")
    consortium.status = Status.SUBMITTED.value
    consortium.submitted_at = now
    consortium.submitted_snapshot = _snapshot(consortium)
    record_event(
        session,
        consortium,
        "status",
        "Candidature déposée : la composition du groupement est désormais figée (art. R2142-26).",
        by=by,
        now=now,
        to="submitted",
    )
    session.flush()


def withdraw(
    session: Session, consortium: Consortium, *, by: User, reason: str | None, now: dt.datetime
) -> None:
    """The mandataire abandons the answer."""
    _require_mandataire(session, by, consortium, "abandonner le groupement")
    if Status(consortium.status).is_closed:
        raise Conflict("Ce groupement est déjà clos.")
    reason = clean_text(reason, label="Motif", field_name="reason")
    consortium.status = Status.WITHDRAWN.value
    record_event(
        session,
        consortium,
        "status",
        "Le mandataire abandonne la réponse" + (f" : {reason}" if reason else "."),
        by=by,
        now=now,
        to="withdrawn",
    )
    session.flush()


def record_outcome(
    session: Session,
    consortium: Consortium,
    *,
    won: bool,
    amount: Any,
    note: str | None,
    by: User,
    now: dt.datetime,
) -> None:
    """After the award: won or lost, and the amount won. It feeds the chambers' statistics."""
    member = acting_member(session, by, consortium)
    if consortium.status not in (Status.SUBMITTED, Status.WON, Status.LOST):
        raise Conflict("Le résultat se déclare une fois la candidature déposée.")
    value = _amount(amount, label="Montant attribué", field_name="amount")
    if won and value is None:
        raise ValidationError("Indiquez le montant attribué au groupement (€ HT).", field="amount")
    consortium.status = (Status.WON if won else Status.LOST).value
    consortium.outcome_amount = value if won else None
    consortium.outcome_note = clean_text(note, label="Commentaire", field_name="note")
    consortium.outcome_at = now
    text = f"{member.firm.name} déclare le marché " + (
        f"remporté pour {money_fr(value)}." if won else "non obtenu."
    )
    record_event(session, consortium, "outcome", text, by=by, now=now, to=consortium.status)
    session.flush()


def sync_with_notices(session: Session, *, now: dt.datetime) -> list[str]:
    """Move the consortia of cancelled or awarded notices, and tell their members (journal and
    digest). Run by the scheduler after the scrapes; idempotent."""
    moved: list[str] = []
    rows = session.scalars(
        select(Consortium)
        .join(Notice, Notice.id == Consortium.notice_id)
        .where(
            Consortium.status.in_(
                [s.value for s in (Status.FORMING, Status.ASSEMBLING, Status.READY, Status.SUBMITTED)]
            ),
            Notice.status.in_([NoticeStatus.CANCELLED.value, NoticeStatus.AWARDED.value]),
        )
    ).all()
    for consortium in rows:
        notice = consortium.notice
        if notice.status == NoticeStatus.CANCELLED:
            consortium.status = Status.WITHDRAWN.value
            record_event(
                session,
                consortium,
                "notice_cancelled",
                "L'acheteur a annulé la consultation : le groupement est clos.",
                by=None,
                now=now,
                to="withdrawn",
            )
            moved.append(f"{consortium.id}: withdrawn (cancelled)")
            continue
        awards = [
            a
            for a in notice.awards
            if not a.unsuccessful
            and (a.lot_number or WHOLE_MARKET) in set(consortium.lot_numbers) | {WHOLE_MARKET}
        ]
        if consortium.status != Status.SUBMITTED:
            consortium.status = Status.WITHDRAWN.value
            record_event(
                session,
                consortium,
                "notice_awarded",
                "Le marché a été attribué avant le dépôt de votre candidature : le groupement est clos.",
                by=None,
                now=now,
                to="withdrawn",
            )
            moved.append(f"{consortium.id}: withdrawn (awarded)")
            continue
        sirens = {m.firm.siren for m in consortium.active_members}
        ours = [a for a in awards if a.winner_siret and a.winner_siret[:9] in sirens]
        if ours or not awards:
            if consortium.outcome_requested_at is None:
                consortium.outcome_requested_at = now
                guess = " Un membre du groupement figure parmi les attributaires." if ours else ""
                record_event(
                    session,
                    consortium,
                    "outcome_requested",
                    "L'avis d'attribution est publié : indiquez le résultat (remporté ? montant ?)." + guess,
                    by=None,
                    now=now,
                )
                moved.append(f"{consortium.id}: outcome requested")
            continue
        winners = ", ".join(sorted({a.winner_name or "un autre candidat" for a in awards}))
        consortium.status = Status.LOST.value
        consortium.outcome_at = now
        record_event(
            session,
            consortium,
            "notice_awarded",
            f"Le marché a été attribué à {winners}.",
            by=None,
            now=now,
            to="lost",
        )
        moved.append(f"{consortium.id}: lost")
    session.flush()
    return moved


# --------------------------------------------------------------------------- staff and solo bids


def attach_facilitator(
    session: Session, consortium: Consortium, *, by: User, attach: bool, now: dt.datetime
) -> None:
    """Chamber staff of a member's chamber become (or stop being) the groupement's référent."""
    if not (by.is_admin or (by.is_staff and by.chamber_slug in chambers_of(consortium))):
        raise NotFound("Ce groupement n'existe pas.")
    if attach:
        consortium.facilitator_id = by.id
        text = f"{by.full_name} (CCI) devient référent du groupement."
    else:
        if consortium.facilitator_id != by.id:
            raise Conflict("Vous n'êtes pas le référent de ce groupement.")
        consortium.facilitator_id = None
        text = f"{by.full_name} (CCI) n'est plus référent du groupement."
    record_event(session, consortium, "facilitator", text, by=by, now=now)
    session.flush()


def set_multiple_bids_rule(
    session: Session, notice: Notice, *, forbidden: bool, by: User, ip: str | None, now: dt.datetime
) -> None:
    """Staff record that the consultation documents forbid multiple bids per lot (R2142-21)."""
    notice.multiple_bids_forbidden = forbidden
    record_audit(
        session,
        "notice_multiple_bids_rule",
        actor=by,
        target_type="notice",
        target_id=notice.id,
        ip=ip,
        detail={"forbidden": forbidden},
        now=now,
    )
    session.flush()


def declare_solo_bid(
    session: Session, notice: Notice, *, lots: Iterable[str], by: User, now: dt.datetime
) -> list[str]:
    """A firm declares it answers alone on some lots; returns warnings (other groupements)."""
    firm_id = firm_id_of(session, by)
    if firm_id is None:
        raise Forbidden("Seule une entreprise validée peut déclarer une candidature.")
    firm = session.get_one(Firm, firm_id)
    chosen = _clean_lots(notice, lots)
    warnings = check_multiple_bids(session, firm=firm, notice=notice, lots=chosen, exclude=None)
    for number in chosen:
        if session.get(SoloBid, (firm_id, notice.id, number)) is None:
            session.add(SoloBid(firm_id=firm_id, notice_id=notice.id, lot_number=number, created_at=now))
    session.flush()
    return warnings


def withdraw_solo_bid(session: Session, notice: Notice, *, by: User) -> None:
    firm_id = firm_id_of(session, by)
    for bid in session.scalars(
        select(SoloBid).where(SoloBid.firm_id == firm_id, SoloBid.notice_id == notice.id)
    ):
        session.delete(bid)
    session.flush()


def solo_lots(session: Session, firm_id: int | None, notice_id: int) -> list[str]:
    if firm_id is None:
        return []
    return list(
        session.scalars(
            select(SoloBid.lot_number).where(SoloBid.firm_id == firm_id, SoloBid.notice_id == notice_id)
        )
    )


# --------------------------------------------------------------------------- lists


def consortia_query(session: Session, user: User, *, awaiting: bool = True) -> Select[Consortium] | None:
    """The consortia a user follows, most recently changed first: its firm's (any live state; not
    those awaiting an answer to an invitation or a request when ``awaiting`` is false), its
    chamber's, or all (admin). None for a firm user without a firm. With members and their firms
    and the notice loaded, for lists."""
    query = select(Consortium).options(
        selectinload(Consortium.members).selectinload(ConsortiumMember.firm),
        selectinload(Consortium.notice),
    )
    if user.is_admin:
        pass
    elif user.is_staff:
        query = query.where(
            Consortium.id.in_(
                select(ConsortiumMember.consortium_id)
                .join(Firm, Firm.id == ConsortiumMember.firm_id)
                .where(
                    Firm.chamber_slug == user.chamber_slug,
                    ConsortiumMember.state == MemberState.ACTIVE.value,
                )
            )
        )
    else:
        firm_id = firm_id_of(session, user)
        if firm_id is None:
            return None
        states = LIVE_STATES if awaiting else (MemberState.ACTIVE,)
        query = query.where(Consortium.id.in_(_firm_consortia(firm_id, states)))
    return query.order_by(Consortium.updated_at.desc(), Consortium.id.desc())


def consortia_for_user(session: Session, user: User) -> list[Consortium]:
    """Every consortium a user follows (see consortia_query)."""
    query = consortia_query(session, user)
    return [] if query is None else list(session.scalars(query))


def _firm_consortia(firm_id: int, states: Iterable[MemberState]) -> Select[int]:
    return select(ConsortiumMember.consortium_id).where(
        ConsortiumMember.firm_id == firm_id, ConsortiumMember.state.in_([s.value for s in states])
    )


def awaiting_answer(session: Session, firm_id: int | None) -> list[Consortium]:
    """The consortia where the firm's invitation or request to join waits for an answer, newest first."""
    if firm_id is None:
        return []
    query = (
        select(Consortium)
        .where(Consortium.id.in_(_firm_consortia(firm_id, (MemberState.INVITED, MemberState.REQUESTED))))
        .options(
            selectinload(Consortium.members).selectinload(ConsortiumMember.firm),
            selectinload(Consortium.notice),
        )
        .order_by(Consortium.updated_at.desc(), Consortium.id.desc())
    )
    return list(session.scalars(query))


def open_consortia_query(*, notice_id: int | None = None, now: dt.datetime) -> Select[Consortium]:
    """Consortia listed as « cherche partenaires »: open visibility, not yet submitted, before the
    deadline; the soonest deadline first."""
    query = (
        select(Consortium)
        .join(Notice, Notice.id == Consortium.notice_id)
        .where(
            Consortium.visibility == Visibility.OPEN.value,
            Consortium.status.in_([Status.FORMING.value, Status.ASSEMBLING.value]),
            (Notice.deadline_at.is_(None)) | (Notice.deadline_at > now),
        )
        .options(
            selectinload(Consortium.members).selectinload(ConsortiumMember.firm),
            selectinload(Consortium.notice),
        )
        .order_by(Notice.deadline_at.is_(None), Notice.deadline_at, Consortium.id)
    )
    if notice_id is not None:
        query = query.where(Consortium.notice_id == notice_id)
    return query


def open_consortia(session: Session, *, notice_id: int | None = None, now: dt.datetime) -> list[Consortium]:
    """Every consortium looking for partners (see open_consortia_query)."""
    return list(session.scalars(open_consortia_query(notice_id=notice_id, now=now)))


def consortia_of_notice(session: Session, notice_id: int) -> list[Consortium]:
    return list(
        session.scalars(select(Consortium).where(Consortium.notice_id == notice_id).order_by(Consortium.id))
    )


def events_of(session: Session, consortium: Consortium, *, limit: int = 50) -> list[ConsortiumEvent]:
    return list(
        session.scalars(
            select(ConsortiumEvent)
            .where(ConsortiumEvent.consortium_id == consortium.id)
            .order_by(ConsortiumEvent.at.desc(), ConsortiumEvent.id.desc())
            .limit(limit)
        )
    )


def due_on(item: ChecklistItem, deadline: dt.datetime | None) -> dt.date | None:
    """The item's due day: counted back from the deadline (Paris time), or its fixed date."""
    if item.days_before is not None and deadline is not None:
        return to_paris(deadline).date() - dt.timedelta(days=item.days_before)
    return item.due_on


def deadline_text(consortium: Consortium) -> str:
    deadline = consortium.notice.deadline_at
    return date_fr(to_paris(deadline)) if deadline else "non précisée"


# --------------------------------------------------------------------------- digest


MAX_ACTIVITY_LINES = 25


def activity_lines(session: Session, user: User, *, since: dt.datetime, until: dt.datetime) -> list[str]:
    """The consortium part of a user's digest, in French: what happened in its groupements
    since the last digest (except its own acts), new messages, and the coming deadlines."""
    live = (Status.FORMING, Status.ASSEMBLING, Status.READY, Status.SUBMITTED)
    consortia = [c for c in consortia_for_user(session, user) if c.status in live or c.updated_at > since]
    if user.is_firm_user:
        firm_id = firm_id_of(session, user)
        consortia = [c for c in consortia if active_member(c, firm_id) is not None or member_of(c, firm_id)]
    if not consortia:
        return []
    by_id = {c.id: c for c in consortia}
    lines: list[str] = []
    events = session.scalars(
        select(ConsortiumEvent)
        .where(
            ConsortiumEvent.consortium_id.in_(list(by_id)),
            ConsortiumEvent.at > since,
            ConsortiumEvent.at <= until,
            (ConsortiumEvent.actor_id.is_(None)) | (ConsortiumEvent.actor_id != user.id),
        )
        .order_by(ConsortiumEvent.at, ConsortiumEvent.id)
    ).all()
    for event in events:
        lines.append(f"« {by_id[event.consortium_id].name} » : {event.text}")
    counts = dict(
        session.execute(
            select(ConsortiumMessage.consortium_id, func.count())
            .where(
                ConsortiumMessage.consortium_id.in_(list(by_id)),
                ConsortiumMessage.created_at > since,
                ConsortiumMessage.created_at <= until,
                (ConsortiumMessage.author_id.is_(None)) | (ConsortiumMessage.author_id != user.id),
            )
            .group_by(ConsortiumMessage.consortium_id)
        ).all()
    )
    for consortium_id, count in counts.items():
        plural = "nouveaux messages" if count > 1 else "nouveau message"
        lines.append(f"« {by_id[consortium_id].name} » : {count} {plural} dans la discussion.")
    today = to_paris(until).date()
    for consortium in consortia:
        if consortium.status not in (Status.FORMING, Status.ASSEMBLING, Status.READY):
            continue
        deadline = consortium.notice.deadline_at
        if deadline is not None and until < deadline <= until + dt.timedelta(days=7):
            lines.append(f"« {consortium.name} » : date limite de remise le {deadline_text(consortium)}.")
        for item in consortium.checklist:
            due = due_on(item, deadline)
            if item.done_at is None and due is not None and today <= due <= today + dt.timedelta(days=3):
                lines.append(f"« {consortium.name} » : « {item.title} » pour le {date_fr(due)}.")
    if len(lines) > MAX_ACTIVITY_LINES:
        rest = len(lines) - MAX_ACTIVITY_LINES + 1
        lines = [
            *lines[: MAX_ACTIVITY_LINES - 1],
            f"… et {rest} autres nouvelles dans l'espace de vos groupements.",
        ]
    return lines


# --------------------------------------------------------------------------- reminders

REMINDER_DAYS = (7, 2)  # before the notice deadline


def send_deadline_reminders(session: Session, *, now: dt.datetime) -> int:
    """Email the members of each live groupement 7 and 2 days before the notice deadline, with
    what is still missing. Each reminder is recorded in the journal, so it is sent once."""
    sent = 0
    live = [Status.FORMING.value, Status.ASSEMBLING.value, Status.READY.value]
    rows = session.scalars(
        select(Consortium)
        .join(Notice, Notice.id == Consortium.notice_id)
        .where(
            Consortium.status.in_(live),
            Notice.deadline_at > now,
            Notice.deadline_at <= now + dt.timedelta(days=max(REMINDER_DAYS)),
        )
    ).all()
    for consortium in rows:
        deadline = consortium.notice.deadline_at
        if deadline is None:
            continue
        days_left = (deadline - now).total_seconds() / 86400
        due = [d for d in REMINDER_DAYS if days_left <= d]
        if not due:
            continue
        threshold = min(due)
        already = session.scalar(
            select(func.count())
            .select_from(ConsortiumEvent)
            .where(
                ConsortiumEvent.consortium_id == consortium.id,
                ConsortiumEvent.kind == "reminder",
                ConsortiumEvent.detail["days"].as_integer() <= threshold,
            )
        )
        if already:
            continue
        problems = readiness_problems(session, consortium)
        recipients = sorted(
            {
                m.user.email
                for member in consortium.active_members
                for m in member.firm.memberships
                if m.user.is_active
            }
        )
        _mail(
            session,
            "reminder",
            recipients,
            f"« {consortium.name} » : date limite dans {threshold} jours",
            consortium=consortium,
            days=threshold,
            deadline=deadline_text(consortium),
            problems=problems,
            link=_link(consortium),
        )
        record_event(
            session,
            consortium,
            "reminder",
            f"Rappel envoyé aux membres : date limite dans {threshold} jours ({deadline_text(consortium)}).",
            by=None,
            now=now,
            days=threshold,
        )
        sent += len(recipients)
    session.flush()
    return sent
