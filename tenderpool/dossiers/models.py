"""Tables of the dossiers domain: each generation of a consortium's response dossier is a version.

A version is queued by a member (or the CLI), built outside the web request by
:func:`tenderpool.dossiers.services.process_pending_dossiers`, and then keeps its files: the
whole dossier, the DC1, one DC2 per member and a ZIP bundle, each with its SHA-256.
"""

from __future__ import annotations

import datetime as dt
import enum
from typing import Any

from sqlalchemy import JSON, CheckConstraint, ForeignKey, String, Text, UniqueConstraint, false, text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from tenderpool.accounts.models import User
from tenderpool.db import Base, UTCDateTime, utcnow


class VersionStatus(enum.StrEnum):
    QUEUED = "queued"
    BUILDING = "building"
    READY = "ready"
    FAILED = "failed"

    @property
    def label(self) -> str:
        return {
            "queued": "En attente",
            "building": "En cours de génération",
            "ready": "Prêt",
            "failed": "Échec",
        }[self.value]

    @property
    def is_pending(self) -> bool:
        return self in (VersionStatus.QUEUED, VersionStatus.BUILDING)


class FileKind(enum.StrEnum):
    DOSSIER = "dossier"
    DC1 = "dc1"
    DC2 = "dc2"
    BUNDLE = "bundle"

    @property
    def label(self) -> str:
        return {
            "dossier": "Dossier complet (PDF)",
            "dc1": "DC1 (PDF)",
            "dc2": "DC2 (PDF)",
            "bundle": "Archive ZIP (dossier, formulaires, pièces originales, manifeste)",
        }[self.value]


class DossierVersion(Base):
    __tablename__ = "dossier_versions"
    __table_args__ = (
        UniqueConstraint("consortium_id", "number"),
        CheckConstraint("status IN ('queued', 'building', 'ready', 'failed')", name="status"),
        CheckConstraint("progress >= 0 AND progress <= 100", name="progress"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    consortium_id: Mapped[int] = mapped_column(ForeignKey("consortia.id", ondelete="CASCADE"), index=True)
    number: Mapped[int] = mapped_column()
    status: Mapped[str] = mapped_column(
        String(16), default=VersionStatus.QUEUED, server_default=text("'queued'"), index=True
    )
    progress: Mapped[int] = mapped_column(default=0, server_default=text("0"))
    progress_label: Mapped[str | None] = mapped_column(String(200))
    # "pdf/a-3b" for the archival variant, None for a plain PDF.
    pdf_variant: Mapped[str | None] = mapped_column(String(16))
    # Watermarked « BROUILLON »: the readiness check did not pass when it was built.
    is_draft: Mapped[bool] = mapped_column(default=False, server_default=false())
    requested_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    requested_at: Mapped[dt.datetime] = mapped_column(
        UTCDateTime, default=utcnow, server_default=text("CURRENT_TIMESTAMP")
    )
    started_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    finished_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    error: Mapped[str | None] = mapped_column(Text)  # French, shown to members
    page_count: Mapped[int | None] = mapped_column()
    # Attachments reported and left out: [{"member", "name", "reason"}].
    skipped: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list, server_default=text("'[]'"))
    # What the readiness check still listed when it was built (French lines).
    open_items: Mapped[list[str]] = mapped_column(JSON, default=list, server_default=text("'[]'"))

    requested_by: Mapped[User | None] = relationship()
    files: Mapped[list[DossierFile]] = relationship(
        back_populates="version", cascade="all, delete-orphan", order_by="DossierFile.id"
    )

    @property
    def status_label(self) -> str:
        return VersionStatus(self.status).label

    @property
    def is_pending(self) -> bool:
        return VersionStatus(self.status).is_pending


class DossierFile(Base):
    """One stored file of a version; the bytes are in the storage under ``storage_key``."""

    __tablename__ = "dossier_files"
    __table_args__ = (
        CheckConstraint("kind IN ('dossier', 'dc1', 'dc2', 'bundle')", name="kind"),
        UniqueConstraint("storage_key"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    version_id: Mapped[int] = mapped_column(ForeignKey("dossier_versions.id", ondelete="CASCADE"), index=True)
    kind: Mapped[str] = mapped_column(String(16))
    firm_id: Mapped[int | None] = mapped_column(ForeignKey("firms.id", ondelete="SET NULL"))
    filename: Mapped[str] = mapped_column(String(200))
    content_type: Mapped[str] = mapped_column(String(40))
    storage_key: Mapped[str] = mapped_column(String(80))
    size: Mapped[int] = mapped_column()
    sha256: Mapped[str] = mapped_column(String(64))
    page_count: Mapped[int | None] = mapped_column()

    version: Mapped[DossierVersion] = relationship(back_populates="files")

    @property
    def kind_label(self) -> str:
        return FileKind(self.kind).label
