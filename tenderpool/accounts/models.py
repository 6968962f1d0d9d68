"""Tables of the accounts domain."""

from __future__ import annotations

import datetime as dt
import enum
from typing import Any

from sqlalchemy import JSON, CheckConstraint, ForeignKey, Index, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from tenderpool.db import Base, UTCDateTime, utcnow


class Role(enum.StrEnum):
    ADMIN = "admin"
    STAFF = "staff"
    FIRM = "firm"

    @property
    def label(self) -> str:
        return {"admin": "Administrateur", "staff": "Équipe de la CCI", "firm": "Entreprise"}[self.value]


class User(Base):
    __tablename__ = "users"
    __table_args__ = (
        CheckConstraint("role IN ('admin', 'staff', 'firm')", name="role"),
        # A staff member always belongs to one chamber; nobody else has one.
        CheckConstraint("(role = 'staff') = (chamber_slug IS NOT NULL)", name="staff_chamber"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(String(254), unique=True)
    full_name: Mapped[str] = mapped_column(String(200))
    password_hash: Mapped[str] = mapped_column(String(255))
    role: Mapped[str] = mapped_column(String(16))
    chamber_slug: Mapped[str | None] = mapped_column(String(32))
    is_active: Mapped[bool] = mapped_column(default=True)
    # Bumped on password and role change: sessions and "remember me" cookies carry it, so
    # either logs the account out everywhere (a password change also deletes its UserSession rows).
    auth_version: Mapped[int] = mapped_column(default=1)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_login_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    # Secret of the personal calendar feed URL; regenerating it revokes the old URL.
    ics_token: Mapped[str | None] = mapped_column(String(64), unique=True)

    # Flask-Login protocol
    @property
    def is_authenticated(self) -> bool:
        return True

    @property
    def is_anonymous(self) -> bool:
        return False

    def get_id(self) -> str:
        """``<id>:<auth_version>:<session key>``, what the session and "remember me" cookies carry."""
        return f"{self.id}:{self.auth_version}:{self.session_key or ''}"

    @property
    def session_key(self) -> str | None:
        """Not a column: the key of the signed-in session (:class:`UserSession`) this object was
        loaded for or logged in with (set by ``start_session`` and ``load_user``)."""
        key = self.__dict__.get("_session_key")
        return key if isinstance(key, str) else None

    @session_key.setter
    def session_key(self, key: str | None) -> None:
        self.__dict__["_session_key"] = key

    @property
    def is_admin(self) -> bool:
        return self.role == Role.ADMIN

    @property
    def is_staff(self) -> bool:
        return self.role == Role.STAFF

    @property
    def is_firm_user(self) -> bool:
        return self.role == Role.FIRM

    @property
    def role_label(self) -> str:
        return Role(self.role).label


class UserSession(Base):
    """One signed-in browser. The session and "remember me" cookies carry a random key; the user
    loader accepts them only while the row of that key exists, so logging out (which deletes the
    row) kills every copy of those cookies. A password change deletes all the account's rows.

    The id is the SHA-256 of the key, never the key itself: a read of the database (a backup, a
    replica) gives nothing that a cookie could carry.
    """

    __tablename__ = "user_sessions"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
    user_agent: Mapped[str | None] = mapped_column(String(200))


class LoginAttempt(Base):
    """One login try; failures within the window throttle further tries (shared by all workers)."""

    __tablename__ = "login_attempts"
    __table_args__ = (
        Index("ix_login_attempts_email_at", "email", "at"),
        Index("ix_login_attempts_ip_at", "ip", "at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    email: Mapped[str] = mapped_column(String(254))
    ip: Mapped[str] = mapped_column(String(64))
    success: Mapped[bool] = mapped_column(default=False)


class PasswordResetToken(Base):
    """The server-side half of an emailed reset link: makes the link single-use."""

    __tablename__ = "password_reset_tokens"

    id: Mapped[int] = mapped_column(primary_key=True)
    jti: Mapped[str] = mapped_column(String(64), unique=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    used_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)


class AuditEvent(Base):
    """Who did what, when, from where: logins, approvals, role changes, resets…"""

    __tablename__ = "audit_events"
    __table_args__ = (Index("ix_audit_events_target", "target_type", "target_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
    actor_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"), index=True)
    actor_email: Mapped[str | None] = mapped_column(String(254))
    actor_chamber: Mapped[str | None] = mapped_column(String(32))
    action: Mapped[str] = mapped_column(String(64), index=True)
    target_type: Mapped[str | None] = mapped_column(String(32))
    target_id: Mapped[str | None] = mapped_column(String(64))
    ip: Mapped[str | None] = mapped_column(String(64))
    note: Mapped[str | None] = mapped_column(Text)
    detail: Mapped[dict[str, Any] | None] = mapped_column(JSON)
