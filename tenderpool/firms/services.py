"""Services of the firms domain: sign-up with a SIRET, approval by the chamber, colleagues."""

from __future__ import annotations

import datetime as dt
import re
import secrets

from sqlalchemy import func, select
from sqlalchemy.orm import Session, joinedload, selectinload
from stdnum import exceptions as stdnum_errors
from stdnum.fr import siret as stdnum_siret

from tenderpool import mail
from tenderpool.accounts.models import Role, User
from tenderpool.accounts.services import create_user, get_user_by_email, normalise_email, record_audit
from tenderpool.config import Settings
from tenderpool.errors import Conflict, Forbidden, InvalidToken, NotFound, ValidationError
from tenderpool.firms.models import Firm, FirmInvitation, FirmMembership, FirmStatus

_POSTCODE_RE = re.compile(r"^\d{5}$")


def clean_siret(value: str) -> str:
    """Validate a SIRET (Luhn, La Poste's exception included) and return its 14 digits."""
    digits = re.sub(r"[\s.\-]", "", value or "")
    try:
        return str(stdnum_siret.validate(digits))
    except stdnum_errors.InvalidLength:
        raise ValidationError("Un SIRET compte 14 chiffres.", field="siret") from None
    except stdnum_errors.InvalidFormat:
        raise ValidationError("Un SIRET ne contient que des chiffres.", field="siret") from None
    except stdnum_errors.ValidationError:
        raise ValidationError(
            "Ce SIRET n'est pas valide (clé de contrôle incorrecte) : vérifiez-le sur votre extrait Kbis.",
            field="siret",
        ) from None


def department_of_postcode(postcode: str) -> str:
    """The département of a French postcode: 77100 → 77, 20000 → 2A, 20200 → 2B, 97400 → 974."""
    code = (postcode or "").strip()
    if not _POSTCODE_RE.match(code):
        raise ValidationError("Un code postal compte 5 chiffres.", field="postcode")
    if code.startswith("20"):
        return "2A" if int(code) < 20200 else "2B"
    if code.startswith("97") or code.startswith("98"):
        return code[:3]
    return code[:2]


def membership_of(session: Session, user: User) -> FirmMembership | None:
    """The firm membership of a firm account (None for staff and admins)."""
    return session.scalar(
        select(FirmMembership)
        .options(joinedload(FirmMembership.firm))
        .where(FirmMembership.user_id == user.id)
    )


def register_firm(
    session: Session,
    settings: Settings,
    *,
    siret: str,
    name: str,
    address: str,
    postcode: str,
    city: str,
    full_name: str,
    email: str,
    password: str,
    ip: str | None,
    now: dt.datetime,
) -> Firm:
    """Sign a firm up: its owner's account is created and the firm waits for its chamber's approval."""
    siret = clean_siret(siret)
    department = department_of_postcode(postcode)
    chamber = settings.chamber_for_department(department)
    if chamber is None:
        served = ", ".join(f"{c.name} ({', '.join(c.departments)})" for c in settings.chambers)
        raise ValidationError(
            f"TenderPool est réservé aux entreprises du territoire des chambres partenaires : {served}. "
            f"Votre code postal correspond au département {department}.",
            field="postcode",
        )
    name, address, city = name.strip(), address.strip(), city.strip()
    if not name or not address or not city:
        raise ValidationError("La raison sociale, l'adresse et la commune sont obligatoires.")
    if session.scalar(select(Firm.id).where(Firm.siret == siret)) is not None:
        raise Conflict(
            "Cette entreprise (SIRET) est déjà inscrite. Demandez à son responsable de vous inviter.",
            field="siret",
        )
    owner = create_user(
        session, settings, email=email, password=password, full_name=full_name, role=Role.FIRM
    )
    firm = Firm(
        siret=siret,
        siren=siret[:9],
        name=name,
        address=address,
        postcode=postcode.strip(),
        city=city,
        department=department,
        chamber_slug=chamber.slug,
        status=FirmStatus.PENDING.value,
        created_at=now,
    )
    session.add(firm)
    session.flush()
    session.add(FirmMembership(user_id=owner.id, firm_id=firm.id, is_owner=True, created_at=now))
    record_audit(session, "firm_signup", actor=owner, target_type="firm", target_id=firm.id, ip=ip, now=now)
    mail.queue(
        session,
        mail.compose(
            "firm_signup_received", owner.email, "Votre inscription à TenderPool", firm=firm, chamber=chamber
        ),
    )
    session.flush()
    return firm


def _staff_can_decide(user: User, firm: Firm) -> bool:
    return user.is_admin or (user.is_staff and user.chamber_slug == firm.chamber_slug)


def pending_firms(session: Session, staff: User) -> list[Firm]:
    """Firms waiting for approval, for this staff member's chamber (every chamber for admins)."""
    query = select(Firm).where(Firm.status == FirmStatus.PENDING.value).order_by(Firm.created_at)
    if not staff.is_admin:
        query = query.where(Firm.chamber_slug == staff.chamber_slug)
    return list(
        session.scalars(query.options(selectinload(Firm.memberships).selectinload(FirmMembership.user)))
    )


def get_firm_for_staff(session: Session, staff: User, firm_id: int) -> Firm:
    """A firm the staff member may decide on; others' firms look like they do not exist."""
    firm = session.get(Firm, firm_id)
    if firm is None or not _staff_can_decide(staff, firm):
        raise NotFound("Entreprise introuvable.")
    return firm


def _owners(firm: Firm) -> list[User]:
    return [m.user for m in firm.memberships if m.is_owner]


def approve_firm(session: Session, firm: Firm, *, by: User, ip: str | None, now: dt.datetime) -> None:
    """Approve a pending firm; its owners are told by email."""
    if not _staff_can_decide(by, firm):
        raise Forbidden("Seule l'équipe de la chambre de cette entreprise peut la valider.")
    if firm.status == FirmStatus.APPROVED:
        raise Conflict("Cette entreprise est déjà validée.")
    firm.status = FirmStatus.APPROVED.value
    firm.status_reason = None
    firm.decided_at = now
    firm.decided_by_id = by.id
    record_audit(session, "firm_approved", actor=by, target_type="firm", target_id=firm.id, ip=ip, now=now)
    from tenderpool.web import external_url

    for owner in _owners(firm):
        mail.queue(
            session,
            mail.compose(
                "firm_approved",
                owner.email,
                "Votre entreprise est validée sur TenderPool",
                firm=firm,
                link=external_url("main.home"),
            ),
        )
    session.flush()


def refuse_firm(
    session: Session, firm: Firm, *, by: User, reason: str, ip: str | None, now: dt.datetime
) -> None:
    """Refuse a pending firm with a reason, which its owners receive by email."""
    if not _staff_can_decide(by, firm):
        raise Forbidden("Seule l'équipe de la chambre de cette entreprise peut la refuser.")
    reason = reason.strip()
    if len(reason) < 5:
        raise ValidationError("Indiquez le motif du refus : l'entreprise le recevra.", field="reason")
    if firm.status != FirmStatus.PENDING:
        raise Conflict("Seule une inscription en attente peut être refusée.")
    firm.status = FirmStatus.REFUSED.value
    firm.status_reason = reason
    firm.decided_at = now
    firm.decided_by_id = by.id
    record_audit(
        session, "firm_refused", actor=by, target_type="firm", target_id=firm.id, ip=ip, note=reason, now=now
    )
    for owner in _owners(firm):
        mail.queue(
            session,
            mail.compose(
                "firm_refused", owner.email, "Votre inscription à TenderPool", firm=firm, reason=reason
            ),
        )
    session.flush()


def firm_members(session: Session, firm: Firm) -> list[FirmMembership]:
    return list(
        session.scalars(
            select(FirmMembership)
            .options(selectinload(FirmMembership.user))
            .where(FirmMembership.firm_id == firm.id)
            .order_by(FirmMembership.is_owner.desc(), FirmMembership.created_at)
        )
    )


def open_invitations(session: Session, firm: Firm, *, now: dt.datetime) -> list[FirmInvitation]:
    return list(
        session.scalars(
            select(FirmInvitation)
            .where(
                FirmInvitation.firm_id == firm.id,
                FirmInvitation.accepted_at.is_(None),
                FirmInvitation.revoked_at.is_(None),
                FirmInvitation.expires_at > now,
            )
            .order_by(FirmInvitation.created_at.desc())
        )
    )


def invite_colleague(
    session: Session,
    settings: Settings,
    membership: FirmMembership,
    *,
    email: str,
    ip: str | None,
    now: dt.datetime,
) -> FirmInvitation:
    """The owner invites a colleague by email; the link lets them create their account in the firm."""
    from tenderpool.web import external_url

    if not membership.is_owner:
        raise Forbidden("Seul le responsable de l'entreprise peut inviter des collègues.")
    email = normalise_email(email)
    if get_user_by_email(session, email) is not None:
        raise Conflict("Cette adresse a déjà un compte TenderPool.", field="email")
    already = session.scalar(
        select(func.count())
        .select_from(FirmInvitation)
        .where(
            FirmInvitation.firm_id == membership.firm_id,
            FirmInvitation.email == email,
            FirmInvitation.accepted_at.is_(None),
            FirmInvitation.revoked_at.is_(None),
            FirmInvitation.expires_at > now,
        )
    )
    if already:
        raise Conflict("Une invitation est déjà en cours pour cette adresse.", field="email")
    invitation = FirmInvitation(
        jti=secrets.token_urlsafe(24),
        firm_id=membership.firm_id,
        email=email,
        invited_by_id=membership.user_id,
        created_at=now,
        expires_at=now + dt.timedelta(days=settings.security.invitation_days),
    )
    session.add(invitation)
    session.flush()
    record_audit(
        session,
        "firm_colleague_invited",
        actor=membership.user,
        target_type="firm",
        target_id=membership.firm_id,
        ip=ip,
        detail={"email": email},
        now=now,
    )
    mail.queue(
        session,
        mail.compose(
            "firm_invitation",
            email,
            f"{membership.user.full_name} vous invite sur TenderPool",
            firm=membership.firm,
            inviter=membership.user,
            link=external_url("firms.accept_invitation", token=invitation.jti),
            days=settings.security.invitation_days,
        ),
    )
    return invitation


def get_invitation(session: Session, token: str, *, now: dt.datetime) -> FirmInvitation:
    """A live invitation, or InvalidToken."""
    invitation = session.scalar(select(FirmInvitation).where(FirmInvitation.jti == token))
    if invitation is None or invitation.revoked_at is not None:
        raise InvalidToken("Cette invitation n'est pas valide.")
    if invitation.accepted_at is not None:
        raise InvalidToken("Cette invitation a déjà été utilisée : connectez-vous.")
    if invitation.expires_at <= now:
        raise InvalidToken("Cette invitation a expiré : demandez-en une nouvelle.")
    return invitation


def accept_invitation(
    session: Session,
    settings: Settings,
    *,
    token: str,
    full_name: str,
    password: str,
    ip: str | None,
    now: dt.datetime,
) -> User:
    """Create the invited colleague's account inside the firm and spend the invitation."""
    invitation = get_invitation(session, token, now=now)
    user = create_user(
        session, settings, email=invitation.email, password=password, full_name=full_name, role=Role.FIRM
    )
    session.add(FirmMembership(user_id=user.id, firm_id=invitation.firm_id, is_owner=False, created_at=now))
    invitation.accepted_at = now
    record_audit(
        session,
        "firm_colleague_joined",
        actor=user,
        target_type="firm",
        target_id=invitation.firm_id,
        ip=ip,
        now=now,
    )
    session.flush()
    return user


def revoke_invitation(
    session: Session, membership: FirmMembership, invitation_id: int, *, ip: str | None, now: dt.datetime
) -> None:
    """The owner withdraws a pending invitation."""
    invitation = session.get(FirmInvitation, invitation_id)
    if invitation is None or invitation.firm_id != membership.firm_id:
        raise NotFound("Invitation introuvable.")
    if not membership.is_owner:
        raise Forbidden("Seul le responsable de l'entreprise peut retirer une invitation.")
    invitation.revoked_at = now
    record_audit(
        session,
        "firm_invitation_revoked",
        actor=membership.user,
        target_type="firm",
        target_id=membership.firm_id,
        ip=ip,
        detail={"email": invitation.email},
        now=now,
    )
    session.flush()
