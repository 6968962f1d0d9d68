"""Tables of the consortia domain: groupements, their members, répartition and workspace.

A consortium answers one notice, for one or more of its lots. A notice without lots is
one marché: its single "lot" is stored with the number ``""`` (see :data:`WHOLE_MARKET`).
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
    Numeric,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from tenderpool.accounts.models import User
from tenderpool.db import Base, UTCDateTime, utcnow
from tenderpool.firms.models import Firm
from tenderpool.notices.models import Notice

WHOLE_MARKET = ""  # the lot number of a notice that is not divided into lots


class Form(enum.StrEnum):
    CONJOINT = "conjoint"
    SOLIDAIRE = "solidaire"

    @property
    def label(self) -> str:
        return {"conjoint": "Groupement conjoint", "solidaire": "Groupement solidaire"}[self.value]


class Visibility(enum.StrEnum):
    OPEN = "open"
    INVITATION = "invitation"

    @property
    def label(self) -> str:
        return {"open": "Ouvert : cherche des partenaires", "invitation": "Sur invitation seulement"}[
            self.value
        ]


class Status(enum.StrEnum):
    FORMING = "forming"
    ASSEMBLING = "assembling"
    READY = "ready"
    SUBMITTED = "submitted"
    WON = "won"
    LOST = "lost"
    WITHDRAWN = "withdrawn"

    @property
    def label(self) -> str:
        return STATUS_LABELS[self.value]

    @property
    def is_frozen(self) -> bool:
        """From submission on, the composition is frozen (R2142-26)."""
        return self in (Status.SUBMITTED, Status.WON, Status.LOST)

    @property
    def is_closed(self) -> bool:
        return self in (Status.WON, Status.LOST, Status.WITHDRAWN)


STATUS_LABELS = {
    "forming": "En constitution",
    "assembling": "En préparation",
    "ready": "Prêt à déposer",
    "submitted": "Déposé",
    "won": "Remporté",
    "lost": "Non retenu",
    "withdrawn": "Abandonné",
}


class MemberRole(enum.StrEnum):
    MANDATAIRE = "mandataire"
    COTRAITANT = "cotraitant"


class MemberState(enum.StrEnum):
    INVITED = "invited"  # a member invited the firm; it has not answered
    REQUESTED = "requested"  # the firm asked to join; the mandataire has not answered
    ACTIVE = "active"
    DECLINED = "declined"  # the firm declined the invitation, or the mandataire its request
    LEFT = "left"
    REMOVED = "removed"  # after submission, under an exception of R2142-26

    @property
    def label(self) -> str:
        return {
            "invited": "Invitée",
            "requested": "Demande à rejoindre",
            "active": "Membre",
            "declined": "Refusé",
            "left": "A quitté le groupement",
            "removed": "Retirée (art. R2142-26)",
        }[self.value]


class SectionStatus(enum.StrEnum):
    TODO = "todo"
    DRAFT = "draft"
    REVIEWED = "reviewed"
    READY = "ready"

    @property
    def label(self) -> str:
        return {"todo": "À rédiger", "draft": "En cours", "reviewed": "Relu", "ready": "Prêt"}[self.value]


class Consortium(Base):
    __tablename__ = "consortia"
    __table_args__ = (
        CheckConstraint("form IN ('conjoint', 'solidaire')", name="form"),
        CheckConstraint("visibility IN ('open', 'invitation')", name="visibility"),
        CheckConstraint(
            "status IN ('forming', 'assembling', 'ready', 'submitted', 'won', 'lost', 'withdrawn')",
            name="status",
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    notice_id: Mapped[int] = mapped_column(ForeignKey("notices.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(160))
    form: Mapped[str] = mapped_column(String(16))
    # R2142-24: in a conjoint groupement, the mandataire may be jointly liable (DC1 rubric D).
    mandataire_solidaire: Mapped[bool] = mapped_column(default=False)
    visibility: Mapped[str] = mapped_column(String(16), default=Visibility.INVITATION)
    skills_cpv: Mapped[list[str]] = mapped_column(JSON, default=list)
    skills_text: Mapped[str | None] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(16), default=Status.FORMING, index=True)
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    submitted_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    # The composition and répartition at submission: what the buyer received.
    submitted_snapshot: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    outcome_amount: Mapped[Decimal | None] = mapped_column(Numeric(16, 2))
    outcome_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    outcome_note: Mapped[str | None] = mapped_column(Text)
    # Set when the notice was awarded while the consortium was submitted: members are asked.
    outcome_requested_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    # What the consultation asks, when members know it (the sources rarely give it): compared
    # with the pooled capacities, and with the R2142-7 cap on a minimum turnover requirement.
    required_turnover: Mapped[Decimal | None] = mapped_column(Numeric(16, 2))
    requirements_note: Mapped[str | None] = mapped_column(Text)
    facilitator_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    # Optimistic locking of the settings (form, lots, skills).
    version: Mapped[int] = mapped_column(default=1, server_default=text("1"))

    notice: Mapped[Notice] = relationship()
    facilitator: Mapped[User | None] = relationship(foreign_keys=[facilitator_id])
    members: Mapped[list[ConsortiumMember]] = relationship(
        back_populates="consortium", cascade="all, delete-orphan", order_by="ConsortiumMember.id"
    )
    lots: Mapped[list[ConsortiumLot]] = relationship(
        back_populates="consortium", cascade="all, delete-orphan", order_by="ConsortiumLot.position"
    )
    shares: Mapped[list[WorkShare]] = relationship(
        back_populates="consortium", cascade="all, delete-orphan", order_by="WorkShare.id"
    )
    sections: Mapped[list[MemoireSection]] = relationship(
        back_populates="consortium", cascade="all, delete-orphan", order_by="MemoireSection.position"
    )
    checklist: Mapped[list[ChecklistItem]] = relationship(
        back_populates="consortium", cascade="all, delete-orphan", order_by="ChecklistItem.position"
    )

    @property
    def active_members(self) -> list[ConsortiumMember]:
        return [m for m in self.members if m.state == MemberState.ACTIVE]

    @property
    def mandataire(self) -> ConsortiumMember | None:
        return next((m for m in self.members if m.role == MemberRole.MANDATAIRE), None)

    @property
    def lot_numbers(self) -> list[str]:
        return [lot.lot_number for lot in self.lots]

    @property
    def status_label(self) -> str:
        return STATUS_LABELS[self.status]


class ConsortiumLot(Base):
    """A lot the consortium answers, with the groupement's offer for it (amount excl. VAT)."""

    __tablename__ = "consortium_lots"

    consortium_id: Mapped[int] = mapped_column(
        ForeignKey("consortia.id", ondelete="CASCADE"), primary_key=True
    )
    lot_number: Mapped[str] = mapped_column(String(32), primary_key=True)
    position: Mapped[int] = mapped_column(default=0)
    offer_amount: Mapped[Decimal | None] = mapped_column(Numeric(16, 2))
    # Optimistic locking of this lot's répartition: two members never overwrite each other.
    version: Mapped[int] = mapped_column(default=1, server_default=text("1"))
    updated_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    updated_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))

    consortium: Mapped[Consortium] = relationship(back_populates="lots")

    # The UPDATE carries "WHERE version = <loaded>": two saves racing never both succeed.
    __mapper_args__ = {"version_id_col": version}  # noqa: RUF012 - read once by the mapper


class ConsortiumMember(Base):
    __tablename__ = "consortium_members"
    __table_args__ = (
        UniqueConstraint("consortium_id", "firm_id", name="firm"),
        CheckConstraint("role IN ('mandataire', 'cotraitant')", name="role"),
        CheckConstraint(
            "state IN ('invited', 'requested', 'active', 'declined', 'left', 'removed')", name="state"
        ),
        # Exactly one mandataire at every moment: the database refuses a second one.
        Index(
            "uq_consortium_members_one_mandataire",
            "consortium_id",
            unique=True,
            sqlite_where=text("role = 'mandataire'"),
            postgresql_where=text("role = 'mandataire'"),
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    consortium_id: Mapped[int] = mapped_column(ForeignKey("consortia.id", ondelete="CASCADE"), index=True)
    firm_id: Mapped[int] = mapped_column(ForeignKey("firms.id", ondelete="CASCADE"), index=True)
    role: Mapped[str] = mapped_column(String(16), default=MemberRole.COTRAITANT)
    state: Mapped[str] = mapped_column(String(16))
    invited_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    message: Mapped[str | None] = mapped_column(Text)  # the invitation, request or answer message
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    answered_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    joined_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    left_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)

    consortium: Mapped[Consortium] = relationship(back_populates="members")
    firm: Mapped[Firm] = relationship()

    @property
    def is_active(self) -> bool:
        return self.state == MemberState.ACTIVE

    @property
    def is_mandataire(self) -> bool:
        return self.role == MemberRole.MANDATAIRE


class EmailInvitation(Base):
    """An invitation sent to the email of a firm that is not on TenderPool yet."""

    __tablename__ = "consortium_email_invitations"

    id: Mapped[int] = mapped_column(primary_key=True)
    jti: Mapped[str] = mapped_column(String(64), unique=True)
    consortium_id: Mapped[int] = mapped_column(ForeignKey("consortia.id", ondelete="CASCADE"), index=True)
    email: Mapped[str] = mapped_column(String(254))
    firm_name: Mapped[str | None] = mapped_column(String(200))
    message: Mapped[str | None] = mapped_column(Text)
    invited_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    claimed_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    claimed_by_firm_id: Mapped[int | None] = mapped_column(ForeignKey("firms.id", ondelete="SET NULL"))

    consortium: Mapped[Consortium] = relationship()


class WorkShare(Base):
    """One member's part of one lot: its tasks, amount excl. VAT and share (répartition)."""

    __tablename__ = "consortium_work_shares"
    __table_args__ = (
        UniqueConstraint("consortium_id", "firm_id", "lot_number", name="member_lot"),
        CheckConstraint("share IS NULL OR (share >= 0 AND share <= 100)", name="share"),
        CheckConstraint("amount IS NULL OR amount >= 0", name="amount"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    consortium_id: Mapped[int] = mapped_column(ForeignKey("consortia.id", ondelete="CASCADE"), index=True)
    firm_id: Mapped[int] = mapped_column(ForeignKey("firms.id", ondelete="CASCADE"))
    lot_number: Mapped[str] = mapped_column(String(32))
    tasks: Mapped[str | None] = mapped_column(Text)
    amount: Mapped[Decimal | None] = mapped_column(Numeric(16, 2))
    share: Mapped[Decimal | None] = mapped_column(Numeric(5, 2))

    consortium: Mapped[Consortium] = relationship(back_populates="shares")
    firm: Mapped[Firm] = relationship()


class ConsortiumEvent(Base):
    """The journal: every transition, membership decision and rule exception, with who and when."""

    __tablename__ = "consortium_events"

    id: Mapped[int] = mapped_column(primary_key=True)
    consortium_id: Mapped[int] = mapped_column(ForeignKey("consortia.id", ondelete="CASCADE"), index=True)
    at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
    kind: Mapped[str] = mapped_column(String(40))
    actor_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    firm_id: Mapped[int | None] = mapped_column(ForeignKey("firms.id", ondelete="SET NULL"))
    text: Mapped[str] = mapped_column(Text)  # French, ready to show and to put in a digest
    detail: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)

    actor: Mapped[User | None] = relationship()


class ConsortiumMessage(Base):
    __tablename__ = "consortium_messages"

    id: Mapped[int] = mapped_column(primary_key=True)
    consortium_id: Mapped[int] = mapped_column(ForeignKey("consortia.id", ondelete="CASCADE"), index=True)
    author_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    firm_id: Mapped[int | None] = mapped_column(ForeignKey("firms.id", ondelete="SET NULL"))  # None: staff
    body: Mapped[str] = mapped_column(Text)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)

    author: Mapped[User | None] = relationship()
    firm: Mapped[Firm | None] = relationship()


class SharedDocument(Base):
    """A document of the workspace; each upload of the same document is a new version."""

    __tablename__ = "consortium_documents"

    id: Mapped[int] = mapped_column(primary_key=True)
    consortium_id: Mapped[int] = mapped_column(ForeignKey("consortia.id", ondelete="CASCADE"), index=True)
    title: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)

    versions: Mapped[list[SharedDocumentVersion]] = relationship(
        back_populates="document", cascade="all, delete-orphan", order_by="SharedDocumentVersion.number"
    )

    @property
    def latest(self) -> SharedDocumentVersion:
        return self.versions[-1]


class SharedDocumentVersion(Base):
    __tablename__ = "consortium_document_versions"
    __table_args__ = (UniqueConstraint("document_id", "number", name="number"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    document_id: Mapped[int] = mapped_column(
        ForeignKey("consortium_documents.id", ondelete="CASCADE"), index=True
    )
    number: Mapped[int] = mapped_column()
    original_name: Mapped[str] = mapped_column(String(200))
    storage_key: Mapped[str] = mapped_column(String(80))
    content_type: Mapped[str] = mapped_column(String(40))
    size: Mapped[int] = mapped_column()
    sha256: Mapped[str] = mapped_column(String(64))
    uploaded_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    firm_id: Mapped[int | None] = mapped_column(ForeignKey("firms.id", ondelete="SET NULL"))
    uploaded_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)

    document: Mapped[SharedDocument] = relationship(back_populates="versions")
    uploaded_by: Mapped[User | None] = relationship()


class MemoireSection(Base):
    """A section of the mémoire technique, written in Markdown by its assigned member."""

    __tablename__ = "consortium_memoire_sections"
    __table_args__ = (CheckConstraint("status IN ('todo', 'draft', 'reviewed', 'ready')", name="status"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    consortium_id: Mapped[int] = mapped_column(ForeignKey("consortia.id", ondelete="CASCADE"), index=True)
    position: Mapped[int] = mapped_column(default=0)
    title: Mapped[str] = mapped_column(String(200))
    assignee_firm_id: Mapped[int | None] = mapped_column(ForeignKey("firms.id", ondelete="SET NULL"))
    status: Mapped[str] = mapped_column(String(16), default=SectionStatus.TODO)
    body: Mapped[str] = mapped_column(Text, default="")
    version: Mapped[int] = mapped_column(default=1, server_default=text("1"))
    updated_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    updated_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))

    consortium: Mapped[Consortium] = relationship(back_populates="sections")
    assignee: Mapped[Firm | None] = relationship()
    updated_by: Mapped[User | None] = relationship()

    __mapper_args__ = {"version_id_col": version}  # noqa: RUF012 - read once by the mapper


class ChecklistItem(Base):
    """A step before submission. Its due date is counted back from the notice deadline
    (``days_before``), so a corrigendum that moves the deadline moves it too; or it is fixed."""

    __tablename__ = "consortium_checklist"

    id: Mapped[int] = mapped_column(primary_key=True)
    consortium_id: Mapped[int] = mapped_column(ForeignKey("consortia.id", ondelete="CASCADE"), index=True)
    position: Mapped[int] = mapped_column(default=0)
    title: Mapped[str] = mapped_column(String(200))
    days_before: Mapped[int | None] = mapped_column()
    due_on: Mapped[dt.date | None] = mapped_column(Date)
    assignee_firm_id: Mapped[int | None] = mapped_column(ForeignKey("firms.id", ondelete="SET NULL"))
    done_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    done_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    # The due date last announced to members, to tell them when a corrigendum moves it.
    notified_due_on: Mapped[dt.date | None] = mapped_column(Date)

    consortium: Mapped[Consortium] = relationship(back_populates="checklist")
    assignee: Mapped[Firm | None] = relationship()


class SoloBid(Base):
    """A firm declared it answers a lot alone (R2142-21: allowed unless the notice forbids it)."""

    __tablename__ = "consortium_solo_bids"

    firm_id: Mapped[int] = mapped_column(ForeignKey("firms.id", ondelete="CASCADE"), primary_key=True)
    notice_id: Mapped[int] = mapped_column(ForeignKey("notices.id", ondelete="CASCADE"), primary_key=True)
    lot_number: Mapped[str] = mapped_column(String(32), primary_key=True)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
