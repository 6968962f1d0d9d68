"""Tables of the firms domain."""

from __future__ import annotations

import datetime as dt
import enum
from decimal import Decimal
from typing import Any

from sqlalchemy import JSON, CheckConstraint, Date, ForeignKey, Numeric, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from tenderpool.accounts.models import User
from tenderpool.db import Base, UTCDateTime, utcnow


class FirmStatus(enum.StrEnum):
    PENDING = "pending"
    APPROVED = "approved"
    REFUSED = "refused"

    @property
    def label(self) -> str:
        return {"pending": "En attente de validation", "approved": "Validée", "refused": "Refusée"}[
            self.value
        ]


class Firm(Base):
    __tablename__ = "firms"
    __table_args__ = (CheckConstraint("status IN ('pending', 'approved', 'refused')", name="status"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    siret: Mapped[str] = mapped_column(String(14), unique=True)
    siren: Mapped[str] = mapped_column(String(9), index=True)
    name: Mapped[str] = mapped_column(String(200))
    address: Mapped[str] = mapped_column(String(300))
    postcode: Mapped[str] = mapped_column(String(5))
    city: Mapped[str] = mapped_column(String(120))
    department: Mapped[str] = mapped_column(String(3), index=True)
    chamber_slug: Mapped[str] = mapped_column(String(32), index=True)
    status: Mapped[str] = mapped_column(String(16), default=FirmStatus.PENDING, index=True)
    status_reason: Mapped[str | None] = mapped_column(Text)
    decided_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    decided_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)

    # Profile. Financial figures live in FirmYear and are never public.
    legal_form_code: Mapped[str | None] = mapped_column(String(4))  # INSEE catégorie juridique, niveau III
    naf_code: Mapped[str | None] = mapped_column(String(6))  # "43.21A"
    website: Mapped[str | None] = mapped_column(String(300))
    description: Mapped[str | None] = mapped_column(Text)
    is_sme: Mapped[bool | None] = mapped_column()
    keywords: Mapped[list[str]] = mapped_column(JSON, default=list)
    equipment: Mapped[str | None] = mapped_column(Text)
    zone_departments: Mapped[list[str]] = mapped_column(JSON, default=list)
    zone_radius_km: Mapped[int | None] = mapped_column()
    # Partner directory: listed only if opted in, showing only the parts listed here.
    directory_opt_in: Mapped[bool] = mapped_column(default=False, index=True)
    directory_fields: Mapped[list[str]] = mapped_column(JSON, default=list)
    profile_updated_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)

    memberships: Mapped[list[FirmMembership]] = relationship(
        back_populates="firm", cascade="all, delete-orphan"
    )
    cpv_links: Mapped[list[FirmCpv]] = relationship(cascade="all, delete-orphan", order_by="FirmCpv.cpv")
    years: Mapped[list[FirmYear]] = relationship(
        cascade="all, delete-orphan", order_by="FirmYear.year.desc()"
    )
    references: Mapped[list[FirmReference]] = relationship(
        cascade="all, delete-orphan", order_by="FirmReference.year.desc()"
    )
    certifications: Mapped[list[FirmCertification]] = relationship(
        cascade="all, delete-orphan", order_by="FirmCertification.name"
    )
    documents: Mapped[list[FirmDocument]] = relationship(
        cascade="all, delete-orphan", order_by="FirmDocument.uploaded_at.desc()"
    )

    @property
    def cpv(self) -> list[str]:
        return [link.cpv for link in self.cpv_links]

    @property
    def is_approved(self) -> bool:
        return self.status == FirmStatus.APPROVED

    @property
    def status_label(self) -> str:
        return FirmStatus(self.status).label


class FirmMembership(Base):
    """A user's firm: each firm user belongs to exactly one firm; one member at least is its owner."""

    __tablename__ = "firm_memberships"

    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), primary_key=True)
    firm_id: Mapped[int] = mapped_column(ForeignKey("firms.id", ondelete="CASCADE"), index=True)
    is_owner: Mapped[bool] = mapped_column(default=False)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)

    firm: Mapped[Firm] = relationship(back_populates="memberships")
    user: Mapped[User] = relationship()


class FirmInvitation(Base):
    """A colleague invited by email by the firm's owner."""

    __tablename__ = "firm_invitations"

    id: Mapped[int] = mapped_column(primary_key=True)
    jti: Mapped[str] = mapped_column(String(64), unique=True)
    firm_id: Mapped[int] = mapped_column(ForeignKey("firms.id", ondelete="CASCADE"), index=True)
    email: Mapped[str] = mapped_column(String(254))
    invited_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    accepted_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    revoked_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)

    firm: Mapped[Firm] = relationship()


class FirmCpv(Base):
    """A skill: a CPV code; a division or group covers every code below it."""

    __tablename__ = "firm_cpv"

    firm_id: Mapped[int] = mapped_column(ForeignKey("firms.id", ondelete="CASCADE"), primary_key=True)
    cpv: Mapped[str] = mapped_column(String(8), primary_key=True, index=True)


class FirmYear(Base):
    """One financial year: turnover, the part of it in each field, headcount. Never public."""

    __tablename__ = "firm_years"

    firm_id: Mapped[int] = mapped_column(ForeignKey("firms.id", ondelete="CASCADE"), primary_key=True)
    year: Mapped[int] = mapped_column(primary_key=True)
    turnover: Mapped[Decimal | None] = mapped_column(Numeric(16, 2))
    # CPV division ("45") -> amount of the turnover made in that field
    turnover_by_field: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    headcount: Mapped[int | None] = mapped_column()


class FirmReference(Base):
    """A past contract: the proof of capacity partners and buyers look for."""

    __tablename__ = "firm_references"
    __table_args__ = (CheckConstraint("role IN ('alone', 'mandataire', 'cotraitant')", name="role"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    firm_id: Mapped[int] = mapped_column(ForeignKey("firms.id", ondelete="CASCADE"), index=True)
    buyer: Mapped[str] = mapped_column(String(300))
    object: Mapped[str] = mapped_column(Text)
    year: Mapped[int] = mapped_column()
    amount: Mapped[Decimal | None] = mapped_column(Numeric(16, 2))
    cpv: Mapped[list[str]] = mapped_column(JSON, default=list)
    lot: Mapped[str | None] = mapped_column(String(60))
    role: Mapped[str] = mapped_column(String(16), default="alone")
    attestation_id: Mapped[int | None] = mapped_column(ForeignKey("firm_documents.id", ondelete="SET NULL"))
    is_public: Mapped[bool] = mapped_column(default=True)


class FirmCertification(Base):
    """Qualibat, Qualifelec, ISO 9001, RGE…, with a number and a validity end date."""

    __tablename__ = "firm_certifications"

    id: Mapped[int] = mapped_column(primary_key=True)
    firm_id: Mapped[int] = mapped_column(ForeignKey("firms.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(120), index=True)
    number: Mapped[str | None] = mapped_column(String(80))
    valid_until: Mapped[dt.date | None] = mapped_column(Date)


class FirmDocument(Base):
    """An uploaded file (Kbis, URSSAF and tax attestations, insurance certificates, attestations).

    The bytes live in the storage (tenderpool.storage) under ``storage_key``, a random
    name outside the web root; only this row knows the original file name.
    """

    __tablename__ = "firm_documents"
    __table_args__ = (UniqueConstraint("storage_key"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    firm_id: Mapped[int] = mapped_column(ForeignKey("firms.id", ondelete="CASCADE"), index=True)
    kind: Mapped[str] = mapped_column(String(24), index=True)
    title: Mapped[str] = mapped_column(String(200))
    original_name: Mapped[str] = mapped_column(String(200))
    storage_key: Mapped[str] = mapped_column(String(80))
    content_type: Mapped[str] = mapped_column(String(40))
    size: Mapped[int] = mapped_column()
    sha256: Mapped[str] = mapped_column(String(64))
    issued_on: Mapped[dt.date | None] = mapped_column(Date)
    expires_on: Mapped[dt.date | None] = mapped_column(Date, index=True)
    uploaded_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    uploaded_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
