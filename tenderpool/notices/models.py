"""Tables of the notices domain.

A *publication* is one record of one source; a *notice* is the procedure users
see, fed by its publications. Every change a later publication brings is kept
as a NoticeChange.
"""

from __future__ import annotations

import datetime as dt
import enum
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    JSON,
    CheckConstraint,
    Date,
    ForeignKey,
    Index,
    LargeBinary,
    Numeric,
    String,
    Text,
    UniqueConstraint,
    false,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from tenderpool.db import Base, UTCDateTime, utcnow


class NoticeStatus(enum.StrEnum):
    """Stored status. "closed" is derived: an open notice whose deadline has passed."""

    OPEN = "open"
    CLOSED = "closed"
    AWARDED = "awarded"
    CANCELLED = "cancelled"

    @property
    def label(self) -> str:
        return {"open": "Ouvert", "closed": "Clos", "awarded": "Attribué", "cancelled": "Annulé"}[self.value]


class PublicationState(enum.StrEnum):
    LINKED = "linked"  # applied to its notice
    WAITING = "waiting"  # a corrigendum/award/cancellation whose initial notice has not arrived yet
    QUARANTINED = "quarantined"  # could not be parsed; shown to staff with the reason


class Notice(Base):
    __tablename__ = "notices"
    __table_args__ = (
        CheckConstraint("status IN ('open', 'awarded', 'cancelled')", name="status"),
        # The search walks these in order (newest first, soonest deadline first) and checks the
        # status and the other date without reading the wide notices row (tenderpool.notices.search).
        Index("ix_notices_published_keys", "published_at", "id", "deadline_at", "status"),
        Index("ix_notices_deadline_keys", "deadline_at", "id", "published_at", "status"),
        # The ids hidden from firms, read by every search: from the index alone.
        Index("ix_notices_is_rejected", "is_rejected", "id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    procedure_id: Mapped[str | None] = mapped_column(String(64), unique=True)
    # Fallback linking keys (see README "Linking"): by buyer SIRET when known, and always by buyer name.
    fallback_key: Mapped[str | None] = mapped_column(String(300), index=True)
    name_key: Mapped[str | None] = mapped_column(String(300), index=True)
    title: Mapped[str] = mapped_column(Text)
    buyer_name: Mapped[str | None] = mapped_column(Text)
    buyer_siret: Mapped[str | None] = mapped_column(String(14), index=True)
    description: Mapped[str | None] = mapped_column(Text)
    contract_type: Mapped[str | None] = mapped_column(String(16))
    procedure_type: Mapped[str | None] = mapped_column(String(80))
    published_at: Mapped[dt.date | None] = mapped_column(Date)
    deadline_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    estimated_value: Mapped[Decimal | None] = mapped_column(Numeric(16, 2))
    currency: Mapped[str | None] = mapped_column(String(3))
    nuts: Mapped[list[str]] = mapped_column(JSON, default=list)
    url: Mapped[str | None] = mapped_column(Text)
    dce_url: Mapped[str | None] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(16), default=NoticeStatus.OPEN)
    # field -> publication date (ISO) of the publication that last set it, so that
    # publications can be applied in any order and an older one never overrides a newer one.
    field_dates: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    is_demo: Mapped[bool] = mapped_column(default=False)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)

    # Curation by chamber staff (every action is also in the audit log).
    is_manual: Mapped[bool] = mapped_column(default=False)  # added by staff, found outside the sources
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    is_featured: Mapped[bool] = mapped_column(default=False, index=True)
    featured_note: Mapped[str | None] = mapped_column(Text)
    featured_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    featured_chamber: Mapped[str | None] = mapped_column(String(32))
    is_rejected: Mapped[bool] = mapped_column(default=False)
    rejected_reason: Mapped[str | None] = mapped_column(Text)
    rejected_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    rejected_chamber: Mapped[str | None] = mapped_column(String(32))
    # field -> {"value", "source_value", "by", "chamber", "at"}: a staff edit that a later
    # scrape keeps unless the source changes that field again.
    locked_fields: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    # field -> {"value", "source_value", "source_ref", "at"}: the source changed an edited field.
    conflicts: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    # A notice merged into another is kept (its id may be bookmarked) and points to the survivor.
    merged_into_id: Mapped[int | None] = mapped_column(
        ForeignKey("notices.id", ondelete="SET NULL"), index=True
    )
    # R2142-21 / R2151-7: the consultation documents forbid a firm to bid both alone and in a
    # groupement, or in several groupements, for the same lot. Recorded by chamber staff.
    multiple_bids_forbidden: Mapped[bool] = mapped_column(default=False, server_default=false())

    lots: Mapped[list[Lot]] = relationship(
        back_populates="notice", cascade="all, delete-orphan", order_by="Lot.position"
    )
    awards: Mapped[list[Award]] = relationship(back_populates="notice", cascade="all, delete-orphan")
    cpv_links: Mapped[list[NoticeCpv]] = relationship(
        cascade="all, delete-orphan", order_by="NoticeCpv.position"
    )
    department_links: Mapped[list[NoticeDepartment]] = relationship(cascade="all, delete-orphan")
    publications: Mapped[list[Publication]] = relationship(
        back_populates="notice", order_by="Publication.published_at"
    )
    changes: Mapped[list[NoticeChange]] = relationship(
        back_populates="notice", cascade="all, delete-orphan", order_by="NoticeChange.id"
    )

    @property
    def cpv(self) -> list[str]:
        return [link.cpv for link in self.cpv_links]

    @property
    def departments(self) -> list[str]:
        return sorted(link.department for link in self.department_links)

    def status_at(self, now: dt.datetime) -> NoticeStatus:
        if self.status == NoticeStatus.OPEN and self.deadline_at is not None and self.deadline_at <= now:
            return NoticeStatus.CLOSED
        return NoticeStatus(self.status)


class NoticeTag(Base):
    """A sector tag put by chamber staff ("BTP", "Nettoyage"…)."""

    __tablename__ = "notice_tags"

    notice_id: Mapped[int] = mapped_column(ForeignKey("notices.id", ondelete="CASCADE"), primary_key=True)
    tag: Mapped[str] = mapped_column(String(60), primary_key=True, index=True)


class NoticeSearch(Base):
    """The text a notice is found by (title, description, buyer, lot titles), folded and stemmed.

    The engine-specific index lives beside it, created by the migrations: an FTS5 table
    ``notice_fts`` (columns ``content`` and ``facets``) on SQLite, a ``tsv`` tsvector column with a
    GIN index on PostgreSQL. Both also hold the notice's *facets* (départements, CPV prefixes,
    status, deadline day, value, type, featured), kept current by triggers: see
    tenderpool.notices.search.
    """

    __tablename__ = "notice_search"

    notice_id: Mapped[int] = mapped_column(ForeignKey("notices.id", ondelete="CASCADE"), primary_key=True)
    document: Mapped[str] = mapped_column(Text)


class NoticeFollow(Base):
    """A user follows a notice: its watch list, the ICS feed and digest changes."""

    __tablename__ = "notice_follows"

    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), primary_key=True)
    notice_id: Mapped[int] = mapped_column(
        ForeignKey("notices.id", ondelete="CASCADE"), primary_key=True, index=True
    )
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)


class NoticeDismissal(Base):
    """A firm marked a notice "not interested", with a reason (feeds matching)."""

    __tablename__ = "notice_dismissals"

    firm_id: Mapped[int] = mapped_column(ForeignKey("firms.id", ondelete="CASCADE"), primary_key=True)
    notice_id: Mapped[int] = mapped_column(
        ForeignKey("notices.id", ondelete="CASCADE"), primary_key=True, index=True
    )
    reason: Mapped[str] = mapped_column(String(32))
    comment: Mapped[str | None] = mapped_column(Text)
    by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)


class SavedSearch(Base):
    """A named search (its URL query string); the digest alerts on new matches."""

    __tablename__ = "saved_searches"

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(120))
    query: Mapped[str] = mapped_column(Text)  # the search URL's query string, without page/sort noise
    is_alert: Mapped[bool] = mapped_column(default=True)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)


class ApiUsage(Base):
    """Requests per client and minute for the public API's rate limit (shared by every worker)."""

    __tablename__ = "api_usage"

    client: Mapped[str] = mapped_column(String(80), primary_key=True)
    window_start: Mapped[dt.datetime] = mapped_column(UTCDateTime, primary_key=True)
    count: Mapped[int] = mapped_column(default=0)


class NoticeCpv(Base):
    __tablename__ = "notice_cpv"
    # The notices under a CPV prefix, from the index alone (a range of codes, then their ids).
    __table_args__ = (Index("ix_notice_cpv_cpv", "cpv", "notice_id"),)

    notice_id: Mapped[int] = mapped_column(ForeignKey("notices.id", ondelete="CASCADE"), primary_key=True)
    cpv: Mapped[str] = mapped_column(String(8), primary_key=True)
    position: Mapped[int] = mapped_column(default=0)


class NoticeDepartment(Base):
    __tablename__ = "notice_departments"
    __table_args__ = (Index("ix_notice_departments_department", "department", "notice_id"),)

    notice_id: Mapped[int] = mapped_column(ForeignKey("notices.id", ondelete="CASCADE"), primary_key=True)
    department: Mapped[str] = mapped_column(String(3), primary_key=True)


class Lot(Base):
    __tablename__ = "lots"
    __table_args__ = (UniqueConstraint("notice_id", "number"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    notice_id: Mapped[int] = mapped_column(ForeignKey("notices.id", ondelete="CASCADE"), index=True)
    number: Mapped[str] = mapped_column(String(32))
    position: Mapped[int] = mapped_column(default=0)
    title: Mapped[str | None] = mapped_column(Text)
    description: Mapped[str | None] = mapped_column(Text)
    cpv: Mapped[list[str]] = mapped_column(JSON, default=list)
    estimated_value: Mapped[Decimal | None] = mapped_column(Numeric(16, 2))
    deadline_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)

    notice: Mapped[Notice] = relationship(back_populates="lots")


class Award(Base):
    __tablename__ = "awards"

    id: Mapped[int] = mapped_column(primary_key=True)
    notice_id: Mapped[int] = mapped_column(ForeignKey("notices.id", ondelete="CASCADE"), index=True)
    publication_id: Mapped[int | None] = mapped_column(ForeignKey("publications.id", ondelete="SET NULL"))
    lot_number: Mapped[str | None] = mapped_column(String(32))
    winner_name: Mapped[str | None] = mapped_column(Text)
    winner_siret: Mapped[str | None] = mapped_column(String(14), index=True)
    amount: Mapped[Decimal | None] = mapped_column(Numeric(16, 2))
    currency: Mapped[str | None] = mapped_column(String(3))
    unsuccessful: Mapped[bool] = mapped_column(default=False)

    notice: Mapped[Notice] = relationship(back_populates="awards")


class Publication(Base):
    __tablename__ = "publications"
    __table_args__ = (
        UniqueConstraint("source", "source_ref"),
        CheckConstraint("state IN ('linked', 'waiting', 'quarantined')", name="state"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    source: Mapped[str] = mapped_column(String(16))
    source_ref: Mapped[str] = mapped_column(String(64))
    notice_id: Mapped[int | None] = mapped_column(ForeignKey("notices.id", ondelete="SET NULL"), index=True)
    state: Mapped[str] = mapped_column(String(16), index=True)
    nature: Mapped[str | None] = mapped_column(String(24))
    published_at: Mapped[dt.date | None] = mapped_column(Date)
    procedure_id: Mapped[str | None] = mapped_column(String(64), index=True)
    notice_uuid: Mapped[str | None] = mapped_column(String(80), index=True)
    # Other names this publication is referred to by (eForms "<uuid>-<version>", OJS number…)
    aliases: Mapped[list[str]] = mapped_column(JSON, default=list)
    previous_refs: Mapped[list[str]] = mapped_column(JSON, default=list)
    title: Mapped[str | None] = mapped_column(Text)
    url: Mapped[str | None] = mapped_column(Text)
    payload: Mapped[bytes] = mapped_column(LargeBinary)  # zlib-compressed raw record
    payload_sha256: Mapped[str] = mapped_column(String(64))
    content_type: Mapped[str] = mapped_column(String(40))
    fetched_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    fetch_url: Mapped[str | None] = mapped_column(Text)
    parse_error: Mapped[str | None] = mapped_column(Text)
    warnings: Mapped[list[str]] = mapped_column(JSON, default=list)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    parsed_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)

    notice: Mapped[Notice | None] = relationship(back_populates="publications")


class PublicationRef(Base):
    """The references of a publication, for linking in any arrival order.

    ``kind`` "self": a name the publication answers to (its source_ref, eForms
    "<uuid>-<version>"…); "previous": a name of an earlier publication it corrects,
    awards or cancels. A corrigendum finds its call through "self" rows; a call
    arriving late finds the corrigenda waiting for it through "previous" rows.
    """

    __tablename__ = "publication_refs"

    publication_id: Mapped[int] = mapped_column(
        ForeignKey("publications.id", ondelete="CASCADE"), primary_key=True, index=True
    )
    kind: Mapped[str] = mapped_column(String(8), primary_key=True)
    ref: Mapped[str] = mapped_column(String(96), primary_key=True, index=True)


class NoticeChange(Base):
    __tablename__ = "notice_changes"

    id: Mapped[int] = mapped_column(primary_key=True)
    notice_id: Mapped[int] = mapped_column(ForeignKey("notices.id", ondelete="CASCADE"), index=True)
    publication_id: Mapped[int | None] = mapped_column(ForeignKey("publications.id", ondelete="SET NULL"))
    source_ref: Mapped[str | None] = mapped_column(String(64))
    field: Mapped[str] = mapped_column(String(40))
    old_value: Mapped[str | None] = mapped_column(Text)
    new_value: Mapped[str | None] = mapped_column(Text)
    at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)

    notice: Mapped[Notice] = relationship(back_populates="changes")


class ScrapeRun(Base):
    __tablename__ = "scrape_runs"
    __table_args__ = (
        CheckConstraint("status IN ('running', 'ok', 'partial', 'failed')", name="status"),
        Index("ix_scrape_runs_source_started", "source", "started_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    source: Mapped[str] = mapped_column(String(16))
    started_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    finished_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    status: Mapped[str] = mapped_column(String(16), default="running")
    window_start: Mapped[dt.date | None] = mapped_column(Date)
    window_end: Mapped[dt.date | None] = mapped_column(Date)
    expected: Mapped[int | None] = mapped_column()
    fetched: Mapped[int] = mapped_column(default=0)
    created: Mapped[int] = mapped_column(default=0)
    updated: Mapped[int] = mapped_column(default=0)
    linked: Mapped[int] = mapped_column(default=0)
    unchanged: Mapped[int] = mapped_column(default=0)
    rejected: Mapped[int] = mapped_column(default=0)
    errors: Mapped[list[str]] = mapped_column(JSON, default=list)
    is_dry_run: Mapped[bool] = mapped_column(default=False)

    @property
    def duration_seconds(self) -> float | None:
        if self.finished_at is None:
            return None
        return (self.finished_at - self.started_at).total_seconds()


class SourceCursor(Base):
    """The last publication day a source was completely fetched and committed for."""

    __tablename__ = "source_cursors"

    source: Mapped[str] = mapped_column(String(16), primary_key=True)
    complete_until: Mapped[dt.date] = mapped_column(Date)
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
