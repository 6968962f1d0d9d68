"""Tables of the digests domain."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import JSON, CheckConstraint, ForeignKey, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from tenderpool.db import Base, UTCDateTime, utcnow


class DigestPreference(Base):
    """How often and at what hour (Europe/Paris) a user gets the digest; absent row = the defaults."""

    __tablename__ = "digest_preferences"
    __table_args__ = (
        CheckConstraint("frequency IN ('daily', 'weekly', 'off')", name="frequency"),
        CheckConstraint("hour >= 0 AND hour <= 23", name="hour"),
    )

    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), primary_key=True)
    frequency: Mapped[str] = mapped_column(String(8), default="daily")
    hour: Mapped[int] = mapped_column(default=7)
    weekday: Mapped[int] = mapped_column(default=0)  # for weekly digests: 0 = Monday
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)


class DigestRun(Base):
    """One digest for one user and one period, recorded before and after sending (exactly once)."""

    __tablename__ = "digest_runs"
    __table_args__ = (
        UniqueConstraint("user_id", "period"),
        CheckConstraint("status IN ('pending', 'sending', 'sent', 'empty', 'failed')", name="status"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    period: Mapped[str] = mapped_column(String(16))  # "2026-11-28" (daily) or "2026-W48" (weekly)
    status: Mapped[str] = mapped_column(String(8), default="pending", index=True)
    attempts: Mapped[int] = mapped_column(default=0)
    content: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)  # what it announces (ids), frozen
    message_id: Mapped[str | None] = mapped_column(String(200))
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    next_attempt_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    sent_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)


class DigestAnnouncement(Base):
    """A notice announced to a user as new: it is never announced again, whatever matched it."""

    __tablename__ = "digest_announcements"

    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), primary_key=True)
    notice_id: Mapped[int] = mapped_column(ForeignKey("notices.id", ondelete="CASCADE"), primary_key=True)
    digest_run_id: Mapped[int | None] = mapped_column(ForeignKey("digest_runs.id", ondelete="SET NULL"))
    at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
