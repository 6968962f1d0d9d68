"""Services of the accounts domain: users, login, sessions, throttling, password reset, audit.

Services take the session first, only flush, and raise :mod:`tenderpool.errors`.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import secrets
from typing import Any

from itsdangerous import BadSignature, URLSafeSerializer
from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session
from werkzeug.security import check_password_hash, generate_password_hash

from tenderpool import mail
from tenderpool.accounts.models import AuditEvent, LoginAttempt, PasswordResetToken, Role, User, UserSession
from tenderpool.config import SecuritySettings, Settings
from tenderpool.errors import Conflict, InvalidToken, NotFound, Throttled, ValidationError

RESET_SALT = "tenderpool.password-reset"
# A real hash, so that a login for an unknown email costs as much as one for a known
# email and the timing does not tell which addresses have accounts.
_DUMMY_HASH = generate_password_hash("not-a-password-" + secrets.token_hex(8))
# Flask's PERMANENT_SESSION_LIFETIME (set to this in the app): a signed session cookie older than
# this is refused by Flask itself, whether or not the session is "permanent".
SESSION_COOKIE_DAYS = 31


def normalise_email(email: str) -> str:
    return email.strip().lower()


def hash_password(password: str) -> str:
    return generate_password_hash(password, method="scrypt")


def check_password_policy(password: str, security: SecuritySettings) -> None:
    """Refuse weak passwords with a French message."""
    if len(password) < security.password_min_length:
        raise ValidationError(
            f"Le mot de passe doit contenir au moins {security.password_min_length} caractères.",
            field="password",
        )
    if password.isdigit() or password.isalpha() or len(set(password)) < 4:
        raise ValidationError(
            "Choisissez un mot de passe moins prévisible : mêlez lettres, chiffres ou signes.",
            field="password",
        )


def record_audit(
    session: Session,
    action: str,
    *,
    actor: User | None = None,
    target_type: str | None = None,
    target_id: object = None,
    ip: str | None = None,
    note: str | None = None,
    detail: dict[str, Any] | None = None,
    now: dt.datetime | None = None,
) -> AuditEvent:
    """Append one line to the audit log."""
    event = AuditEvent(
        at=now or dt.datetime.now(dt.UTC),
        actor_id=actor.id if actor else None,
        actor_email=actor.email if actor else None,
        actor_chamber=actor.chamber_slug if actor else None,
        action=action,
        target_type=target_type,
        target_id=None if target_id is None else str(target_id),
        ip=ip,
        note=note,
        detail=detail,
    )
    session.add(event)
    session.flush()
    return event


def get_user_by_email(session: Session, email: str) -> User | None:
    return session.scalar(select(User).where(User.email == normalise_email(email)))


def create_user(
    session: Session,
    settings: Settings,
    *,
    email: str,
    password: str,
    full_name: str,
    role: Role | str,
    chamber_slug: str | None = None,
    check_policy: bool = True,
) -> User:
    """Create an account. Staff need a configured chamber; others must not have one."""
    role = Role(role)
    email = normalise_email(email)
    if "@" not in email or len(email) > 254:
        raise ValidationError("Adresse e-mail invalide.", field="email")
    if role is Role.STAFF:
        if chamber_slug is None:
            raise ValidationError(
                "Un membre de l'équipe d'une CCI doit être rattaché à une chambre.", field="chamber"
            )
        try:
            settings.chamber(chamber_slug)
        except KeyError:
            raise ValidationError(f"Chambre inconnue : {chamber_slug}.", field="chamber") from None
    else:
        chamber_slug = None
    if check_policy:
        check_password_policy(password, settings.security)
    if get_user_by_email(session, email) is not None:
        raise Conflict("Un compte existe déjà avec cette adresse e-mail.", field="email")
    user = User(
        email=email,
        full_name=full_name.strip() or email,
        password_hash=hash_password(password),
        role=role.value,
        chamber_slug=chamber_slug,
    )
    session.add(user)
    session.flush()
    return user


def login_is_throttled(
    session: Session, email: str, ip: str, *, now: dt.datetime, security: SecuritySettings
) -> bool:
    """True once an account or an IP address has too many recent failures.

    Counted in the database so the limit holds across every worker process.
    An account's failures before its last successful login do not count.
    """
    since = now - dt.timedelta(minutes=security.login_window_minutes)
    email = normalise_email(email)
    last_success = session.scalar(
        select(func.max(LoginAttempt.at)).where(LoginAttempt.email == email, LoginAttempt.success.is_(True))
    )
    account_since = max(since, last_success) if last_success else since
    account_failures = session.scalar(
        select(func.count())
        .select_from(LoginAttempt)
        .where(LoginAttempt.email == email, LoginAttempt.success.is_(False), LoginAttempt.at > account_since)
    )
    ip_failures = session.scalar(
        select(func.count())
        .select_from(LoginAttempt)
        .where(LoginAttempt.ip == ip, LoginAttempt.success.is_(False), LoginAttempt.at > since)
    )
    limit = security.login_max_failures
    return (account_failures or 0) >= limit or (ip_failures or 0) >= limit


def authenticate(
    session: Session, settings: Settings, *, email: str, password: str, ip: str, now: dt.datetime
) -> User:
    """Check a login; record the attempt and audit it. Raises Throttled or ValidationError."""
    email = normalise_email(email)
    security = settings.security
    if login_is_throttled(session, email, ip, now=now, security=security):
        record_audit(session, "login_throttled", ip=ip, detail={"email": email}, now=now)
        raise Throttled(
            "Trop de tentatives de connexion. Par sécurité, réessayez dans "
            f"{security.login_window_minutes} minutes ou réinitialisez votre mot de passe."
        )
    user = get_user_by_email(session, email)
    ok = check_password_hash(user.password_hash if user else _DUMMY_HASH, password) and user is not None
    session.add(LoginAttempt(at=now, email=email, ip=ip, success=bool(ok and user and user.is_active)))
    if not ok or user is None:
        record_audit(session, "login_failed", ip=ip, detail={"email": email}, now=now)
        raise ValidationError("Adresse e-mail ou mot de passe incorrect.")
    if not user.is_active:
        record_audit(session, "login_refused_inactive", actor=user, ip=ip, now=now)
        raise ValidationError("Ce compte est désactivé. Contactez votre CCI.")
    user.last_login_at = now
    record_audit(session, "login", actor=user, target_type="user", target_id=user.id, ip=ip, now=now)
    return user


def record_logout(session: Session, user: User, *, ip: str, now: dt.datetime) -> None:
    """End the session ``user`` was loaded for (every copy of its cookies dies) and audit it."""
    end_session(session, user)
    record_audit(session, "logout", actor=user, target_type="user", target_id=user.id, ip=ip, now=now)


# --------------------------------------------------------------------------- sessions


def session_lifetime(security: SecuritySettings) -> dt.timedelta:
    """How long a signed-in session may last, from its login: as long as the longer of the cookies
    that can carry it (Flask's session cookie, and "se souvenir de moi"). Older ones are refused
    by :func:`load_user` and deleted by the retention job."""
    return dt.timedelta(days=max(security.remember_days, SESSION_COOKIE_DAYS))


def _session_id(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def start_session(session: Session, user: User, *, user_agent: str | None, now: dt.datetime) -> str:
    """Record a new signed-in session of ``user`` and attach its key to it, so that
    ``user.get_id()`` (what ``login_user`` puts in the cookies) carries the key. Returns the key."""
    key = secrets.token_urlsafe(32)
    agent = (user_agent or "").strip()[:200] or None
    session.add(UserSession(id=_session_id(key), user_id=user.id, created_at=now, user_agent=agent))
    session.flush()
    user.session_key = key
    return key


def end_session(session: Session, user: User) -> None:
    """Delete the row of the session ``user`` was loaded for: its cookies stop working everywhere."""
    if user.session_key:
        session.execute(delete(UserSession).where(UserSession.id == _session_id(user.session_key)))
    user.session_key = None


def end_all_sessions(session: Session, user: User) -> None:
    """Delete every session of ``user`` (a password change): all its browsers are logged out."""
    session.execute(delete(UserSession).where(UserSession.user_id == user.id))
    user.session_key = None


def prune_sessions(session: Session, settings: Settings, *, now: dt.datetime) -> int:
    """Delete the sessions older than their lifetime (the retention job); returns how many."""
    cutoff = now - session_lifetime(settings.security)
    result: Any = session.execute(delete(UserSession).where(UserSession.created_at <= cutoff))
    return int(result.rowcount or 0)


def _reset_serializer(settings: Settings) -> URLSafeSerializer:
    return URLSafeSerializer(settings.secret_key, salt=RESET_SALT)


def request_password_reset(
    session: Session, settings: Settings, *, email: str, ip: str, now: dt.datetime
) -> str | None:
    """Email a signed, expiring, single-use reset link if the account exists.

    Returns the token (for tests and the CLI) or None. Callers must answer the
    same way in both cases, so that the form does not reveal which emails exist.
    """
    from tenderpool.web import external_url  # links are built from app.base_url

    user = get_user_by_email(session, email)
    if user is None or not user.is_active:
        record_audit(
            session, "password_reset_unknown", ip=ip, detail={"email": normalise_email(email)}, now=now
        )
        return None
    jti = secrets.token_urlsafe(24)
    minutes = settings.security.reset_link_minutes
    session.add(
        PasswordResetToken(
            jti=jti, user_id=user.id, created_at=now, expires_at=now + dt.timedelta(minutes=minutes)
        )
    )
    token = _reset_serializer(settings).dumps({"u": user.id, "j": jti})
    record_audit(
        session, "password_reset_requested", actor=user, target_type="user", target_id=user.id, ip=ip, now=now
    )
    mail.queue(
        session,
        mail.compose(
            "password_reset",
            user.email,
            "Réinitialisation de votre mot de passe TenderPool",
            user=user,
            link=external_url("accounts.reset_password", token=token),
            minutes=minutes,
        ),
    )
    session.flush()
    return str(token)


def check_reset_token(
    session: Session, settings: Settings, token: str, *, now: dt.datetime
) -> PasswordResetToken:
    """Return the live token row, or raise InvalidToken (tampered, unknown, expired or used)."""
    try:
        data = _reset_serializer(settings).loads(token)
    except BadSignature:
        raise InvalidToken("Ce lien de réinitialisation n'est pas valide.") from None
    if not isinstance(data, dict):
        raise InvalidToken("Ce lien de réinitialisation n'est pas valide.")
    row = session.scalar(select(PasswordResetToken).where(PasswordResetToken.jti == str(data.get("j"))))
    if row is None or row.user_id != data.get("u"):
        raise InvalidToken("Ce lien de réinitialisation n'est pas valide.")
    if row.used_at is not None:
        raise InvalidToken("Ce lien a déjà été utilisé. Demandez-en un nouveau.")
    if row.expires_at <= now:
        raise InvalidToken("Ce lien a expiré. Demandez-en un nouveau.")
    return row


def reset_password(
    session: Session, settings: Settings, *, token: str, new_password: str, ip: str, now: dt.datetime
) -> User:
    """Set a new password from an emailed link, and spend the link."""
    row = check_reset_token(session, settings, token, now=now)
    user = session.get(User, row.user_id)
    if user is None:
        raise InvalidToken("Ce lien de réinitialisation n'est pas valide.")
    check_password_policy(new_password, settings.security)
    row.used_at = now
    _set_password(session, user, new_password)
    _spend_reset_links(session, user, now)  # every other outstanding link of this account too
    record_audit(session, "password_reset", actor=user, target_type="user", target_id=user.id, ip=ip, now=now)
    return user


def _set_password(session: Session, user: User, password: str) -> None:
    user.password_hash = hash_password(password)
    user.auth_version += 1  # logs every session out…
    end_all_sessions(session, user)  # …and deletes them (the caller may start a new one)


def _spend_reset_links(session: Session, user: User, now: dt.datetime) -> None:
    """A new password ends the outstanding reset links, as it ends the other sessions: a link
    left in a mailbox that may be compromised must not outlive it."""
    for row in session.scalars(
        select(PasswordResetToken).where(
            PasswordResetToken.user_id == user.id, PasswordResetToken.used_at.is_(None)
        )
    ):
        row.used_at = now


def change_password(
    session: Session, settings: Settings, user: User, *, current: str, new: str, ip: str, now: dt.datetime
) -> None:
    """Change a password knowing the current one; other sessions are logged out."""
    if not check_password_hash(user.password_hash, current):
        raise ValidationError("Le mot de passe actuel est incorrect.", field="current_password")
    if current == new:
        raise ValidationError(
            "Le nouveau mot de passe doit être différent de l'actuel.", field="new_password"
        )
    check_password_policy(new, settings.security)
    _set_password(session, user, new)
    _spend_reset_links(session, user, now)
    record_audit(
        session, "password_changed", actor=user, target_type="user", target_id=user.id, ip=ip, now=now
    )
    session.flush()


def set_password(session: Session, settings: Settings, *, email: str, password: str) -> User:
    """Operator's password reset (CLI)."""
    user = get_user_by_email(session, email)
    if user is None:
        raise NotFound(f"Aucun compte pour {email}.")
    check_password_policy(password, settings.security)
    _set_password(session, user, password)
    _spend_reset_links(session, user, dt.datetime.now(dt.UTC))
    record_audit(session, "password_set_by_operator", target_type="user", target_id=user.id)
    return user


def change_role(
    session: Session,
    settings: Settings,
    user: User,
    *,
    role: Role | str,
    chamber_slug: str | None,
    by: User,
    ip: str | None,
    now: dt.datetime,
) -> None:
    """Make ``user`` an admin or a chamber's staff (firm accounts keep their role: they belong to a firm)."""
    role = Role(role)
    if user.role == Role.FIRM or role is Role.FIRM:
        raise ValidationError("Le rôle d'un compte d'entreprise ne se change pas ici.")
    if user.id == by.id and role is not Role.ADMIN:
        raise ValidationError("Vous ne pouvez pas retirer vos propres droits d'administrateur.")
    if role is Role.STAFF:
        if chamber_slug is None:
            raise ValidationError("Choisissez la chambre de ce membre de l'équipe.", field="chamber")
        try:
            settings.chamber(chamber_slug)
        except KeyError:
            raise ValidationError(f"Chambre inconnue : {chamber_slug}.", field="chamber") from None
    else:
        chamber_slug = None
    before = {"role": user.role, "chamber": user.chamber_slug}
    user.role = role.value
    user.chamber_slug = chamber_slug
    user.auth_version += 1  # new rights take effect at the next login, everywhere
    record_audit(
        session,
        "role_changed",
        actor=by,
        target_type="user",
        target_id=user.id,
        ip=ip,
        detail={"before": before, "after": {"role": role.value, "chamber": chamber_slug}},
        now=now,
    )
    session.flush()


def load_user(session: Session, user_id: str, *, now: dt.datetime, lifetime: dt.timedelta) -> User | None:
    """Flask-Login loader: ``<id>:<auth_version>:<session key>``, from the session or the "remember
    me" cookie. Logged out (None) when the version is stale, the account inactive, or the session's
    row gone (logout, password change) or older than ``lifetime``. One query: the user and its
    session row together."""
    try:
        raw_id, raw_version, key = user_id.split(":", 2)
        uid, version = int(raw_id), int(raw_version)
    except ValueError:
        return None
    if not key:
        return None
    row = session.execute(
        select(User, UserSession.created_at)
        .join(UserSession, UserSession.user_id == User.id)
        .where(UserSession.id == _session_id(key), User.id == uid)
    ).first()
    if row is None:
        return None
    user, created_at = row
    if not user.is_active or user.auth_version != version or created_at <= now - lifetime:
        return None
    user.session_key = key
    return user
