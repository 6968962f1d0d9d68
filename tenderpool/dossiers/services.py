"""The response dossier of a consortium: readiness check, assembly, versions, downloads.

A member asks for a generation (:func:`queue_dossier`); the scheduler's job
:func:`process_pending_dossiers` (or ``tenderpool dossier build``) builds it outside any web
request:

1. the data: plain dicts built here from the consortium, its notice and each member's profile
   (print templates never see an ORM object);
2. the attachments: each member's current, valid Kbis, attestations and insurance certificates,
   checked one by one (a corrupt, encrypted or oversized file is reported by name and left out);
3. the dossier: one WeasyPrint rendering (:mod:`tenderpool.pdf`) in which every attachment has a
   separator page and as many empty pages as it has pages, so that the table of contents and
   « page n / N » count them; the empty pages are then replaced by the attachment's own pages;
4. the DC1 and each DC2 as separate PDFs, drawn again from that same rendering (their pages are
   the dossier's), and a ZIP bundle with a SHA-256 manifest.

Every file is stored (tenderpool.storage) and recorded with its SHA-256 on a numbered
:class:`DossierVersion`.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import logging
import re
import unicodedata
import warnings
import zipfile
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from decimal import Decimal
from functools import cache
from typing import TYPE_CHECKING, Any

import nh3
from markdown_it import MarkdownIt
from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from tenderpool.accounts.models import User
from tenderpool.config import Settings
from tenderpool.consortia import services as consortia
from tenderpool.consortia.models import WHOLE_MARKET, Consortium, ConsortiumMember, Form, SectionStatus
from tenderpool.db import Database
from tenderpool.dossiers.models import DossierFile, DossierVersion, FileKind, VersionStatus
from tenderpool.errors import NotFound, ValidationError
from tenderpool.firms.documents import DOCUMENT_KINDS, add_months
from tenderpool.firms.models import Firm, FirmDocument
from tenderpool.firms.profile import (
    PROFILE_PATHS,
    REFERENCE_ROLES,
    financial_years,
    legal_form_label,
    needs_decennale,
    profile_completeness,
    vat_number,
)
from tenderpool.formatting import PARIS, date_fr, datetime_fr, money_fr, number_fr
from tenderpool.notices.models import Notice
from tenderpool.notices.sanitize import ALLOWED_ATTRIBUTES, ALLOWED_TAGS
from tenderpool.storage import LocalStorage, Storage, upload_settings

if TYPE_CHECKING:
    from tenderpool.pdf import Extract

log = logging.getLogger(__name__)

# The versions of the DAJ models the forms follow (docs/procurement-rules.md §2.1): kept as
# data, so that a new model is a one-line change here and in the templates.
FORM_VERSIONS = {"dc1": "modèle 2019, mis à jour", "dc2": "modèle 2019, mis à jour le 21/11/2023"}
# The kinds of firm documents appended to the dossier, in this order (DC2 rubric E and F).
ATTACHED_KINDS = ("kbis", "urssaf", "tax", "rc_pro", "decennale")
# An attachment larger than this is left out (and reported): a scanned Kbis is well under 5 Mo.
MAX_ATTACHMENT_BYTES = 15 * 1024 * 1024
MAX_ATTACHMENT_PAGES = 60
# An URSSAF attestation de vigilance is valid 6 months from issue (code du travail, D8222-5),
# whatever expiry date was typed with it.
URSSAF_MONTHS = 6
# A version still "building" after this long was interrupted (a stopped process): marked failed.
STALE_BUILD = dt.timedelta(minutes=30)
PDFA = "pdf/a-3b"
# Where the consortium workspace parts live (the consortia blueprint); the dossier page links
# the readiness items there.
WORKSPACE_ENDPOINT = "consortia.workspace"


# --------------------------------------------------------------------------- small helpers


def notice_reference(notice: Notice) -> str:
    """The reference buyers and members know the notice by: its source's reference first."""
    for publication in notice.publications:
        if publication.source_ref:
            source = {"boamp": "BOAMP", "ted": "TED"}.get(publication.source, publication.source.upper())
            return f"{source} {publication.source_ref}"
    if notice.procedure_id:
        return notice.procedure_id
    return f"Avis TenderPool n° {notice.id}"


def siret_display(siret: str) -> str:
    """123 456 789 00012: the usual grouping, with no-break spaces."""
    if len(siret) == 14 and siret.isdigit():
        return "\u00a0".join((siret[:3], siret[3:6], siret[6:9], siret[9:]))
    return siret


def siren_display(siren: str) -> str:
    if len(siren) == 9 and siren.isdigit():
        return "\u00a0".join((siren[:3], siren[3:6], siren[6:]))
    return siren


def percent_fr(value: Decimal | None) -> str | None:
    if value is None:
        return None
    return number_fr(value, 2).rstrip("0").rstrip(",") + "\u202f%"


def slug(text: str) -> str:
    folded = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    return re.sub(r"[^a-z0-9]+", "-", folded.lower()).strip("-")[:60] or "groupement"


def _owner_email(firm: Firm) -> str | None:
    emails = [m.user.email for m in firm.memberships if m.is_owner] or [
        m.user.email for m in firm.memberships
    ]
    return emails[0] if emails else None


# --------------------------------------------------------------------------- mémoire


MEMOIRE_TAGS = ALLOWED_TAGS | {"h1", "h2", "h6", "hr"}


@cache
def _markdown() -> MarkdownIt:
    # Raw HTML is let through Markdown and then removed by nh3's allow-list: what is left is
    # plain formatting, with no image, frame, style or script that could fetch anything.
    return MarkdownIt("commonmark", {"html": True}).enable("table")


def render_markdown(text: str) -> str:
    """A mémoire section's Markdown as sanitised HTML (no images, frames, scripts or styles)."""
    html = _markdown().render(text or "")
    return str(
        nh3.clean(
            html,
            tags=MEMOIRE_TAGS,
            attributes=ALLOWED_ATTRIBUTES,
            url_schemes={"http", "https", "mailto"},
            link_rel="noopener noreferrer nofollow",
        )
    )


# --------------------------------------------------------------------------- readiness


@dataclass(frozen=True)
class Item:
    label: str  # French: what is missing
    url: str | None = None  # a page (path) where it is fixed
    endpoint: str | None = None  # or an endpoint of the consortia blueprint, resolved by the view
    anchor: str = ""
    section_id: int | None = None  # for the endpoint of one mémoire section


@dataclass
class MemberItems:
    firm_id: int
    name: str
    items: list[Item] = field(default_factory=list)


@dataclass
class Readiness:
    general: list[Item]
    members: list[MemberItems]

    @property
    def ok(self) -> bool:
        return not self.general and not any(m.items for m in self.members)

    @property
    def count(self) -> int:
        return len(self.general) + sum(len(m.items) for m in self.members)

    def lines(self) -> list[str]:
        return [i.label for i in self.general] + [
            f"{m.name} : {i.label}" for m in self.members for i in m.items
        ]


def _urssaf_too_old(firm: Firm, today: dt.date) -> FirmDocument | None:
    document = _current_valid(firm, "urssaf", today=None)
    if (
        document is not None
        and document.issued_on is not None
        and add_months(document.issued_on, URSSAF_MONTHS) < today
    ):
        return document
    return None


def check_readiness(session: Session, consortium: Consortium, *, today: dt.date) -> Readiness:
    """What is still missing before the dossier can be submitted, per member, each with a link.

    General items come from the consortium's own rules (:func:`consortia.readiness_problems`:
    members, mandataire, répartition, mémoire); member items from the DC2 needs of each profile
    (:func:`profile_completeness`: identity, turnover and headcount years, references,
    documents), plus the 6-month rule of the URSSAF attestation.
    """
    repartition = set(consortia.repartition_issues(consortium))
    sections = {f"Mémoire : la section « {s.title} » n'est pas prête.": s for s in consortium.sections}
    general: list[Item] = []
    for problem in consortia.readiness_problems(session, consortium):
        if problem in repartition:
            general.append(Item(problem, endpoint="consortia.repartition"))
        elif problem in sections:
            general.append(Item(problem, endpoint="consortia.section", section_id=sections[problem].id))
        elif "mémoire" in problem.lower():
            general.append(Item(problem, endpoint="consortia.memoire"))
        else:
            general.append(Item(problem, endpoint=WORKSPACE_ENDPOINT, anchor="#membres"))
    members: list[MemberItems] = []
    for member in _ordered_members(consortium):
        firm = member.firm
        _percent, missing = profile_completeness(firm, today=today)
        items = [Item(m.label, url=m.url) for m in missing]
        old = _urssaf_too_old(firm, today)
        if old is not None and old.issued_on is not None:
            items.append(
                Item(
                    f"Attestation de vigilance URSSAF de plus de {URSSAF_MONTHS} mois "
                    f"(délivrée le {date_fr(old.issued_on)}) : déposez-en une récente",
                    url=f"{PROFILE_PATHS['documents']}?type=urssaf#deposer",
                )
            )
        for kind in ATTACHED_KINDS:
            document = _current_valid(firm, kind, today=today)
            if document is not None and document.content_type != "application/pdf":
                items.append(
                    Item(
                        f"{DOCUMENT_KINDS[kind].label} : déposée en image, elle ne peut pas être jointe "
                        "au dossier ; déposez-la en PDF",
                        url=f"{PROFILE_PATHS['documents']}?type={kind}#deposer",
                    )
                )
        members.append(MemberItems(firm.id, firm.name, items))
    return Readiness(general, members)


def readiness_dict(readiness: Readiness) -> dict[str, Any]:
    return {"ok": readiness.ok, "count": readiness.count, **asdict(readiness)}


# --------------------------------------------------------------------------- attachments


@dataclass
class Attachment:
    firm_id: int
    member: str
    siret: str
    kind: str
    title: str
    original_name: str
    issued_on: dt.date | None
    expires_on: dt.date | None
    data: bytes
    pages: int
    sha256: str


@dataclass(frozen=True)
class Skipped:
    member: str
    name: str
    reason: str


def _recency(document: FirmDocument) -> tuple[dt.date, dt.datetime]:
    return document.issued_on or document.uploaded_at.date(), document.uploaded_at


def _current_valid(firm: Firm, kind: str, *, today: dt.date | None) -> FirmDocument | None:
    """The most recent document of ``kind`` still valid on ``today`` (any, when today is None)."""
    candidates = [
        d
        for d in firm.documents
        if d.kind == kind and (today is None or d.expires_on is None or d.expires_on >= today)
    ]
    return max(candidates, key=_recency, default=None)


def _megabytes(size: int) -> str:
    return f"{size / (1024 * 1024):.1f}".replace(".", ",") + " Mo"


def inspect_attachment(data: bytes) -> tuple[int | None, str | None]:
    """(pages, None) for a PDF that can be appended, or (None, the French reason) otherwise."""
    from pypdf import PdfReader, PdfWriter
    from pypdf.errors import PyPdfError

    if len(data) > MAX_ATTACHMENT_BYTES:
        return None, (
            f"fichier trop volumineux ({_megabytes(len(data))}, au plus {_megabytes(MAX_ATTACHMENT_BYTES)})"
        )
    if not data.startswith(b"%PDF-"):
        return None, "ce n'est pas un PDF"
    try:
        with warnings.catch_warnings():
            # pypdf warns about small defects it repairs; only what it cannot read matters.
            warnings.simplefilter("ignore")
            reader = PdfReader(io.BytesIO(data), strict=False)
            if reader.is_encrypted:
                return None, "fichier protégé par un mot de passe (chiffré)"
            pages = len(reader.pages)
            if pages == 0:
                return None, "fichier illisible ou endommagé (aucune page)"
            if pages > MAX_ATTACHMENT_PAGES:
                return None, f"trop de pages ({pages}, au plus {MAX_ATTACHMENT_PAGES})"
            # A trial copy reads every object the merge will need: damage shows up here, not
            # half-way through the assembly.
            trial = PdfWriter()
            for page in reader.pages:
                trial.add_page(page)
            trial.write(io.BytesIO())
    except (PyPdfError, ValueError, KeyError, TypeError, AttributeError, IndexError, OSError, RecursionError):
        return None, "fichier illisible ou endommagé"
    return pages, None


def collect_attachments(
    consortium: Consortium, storage: Storage, *, today: dt.date
) -> tuple[list[Attachment], list[Skipped]]:
    """Each member's current valid Kbis, attestations and insurance certificates, checked."""
    attachments: list[Attachment] = []
    skipped: list[Skipped] = []
    for member in _ordered_members(consortium):
        firm = member.firm
        for kind in ATTACHED_KINDS:
            document = _current_valid(firm, kind, today=today)
            if document is None:
                continue
            try:
                data = storage.open(document.storage_key)
            except NotFound:
                skipped.append(
                    Skipped(firm.name, document.original_name, "fichier introuvable dans le stockage")
                )
                continue
            pages, reason = inspect_attachment(data)
            if reason is not None or pages is None:
                skipped.append(Skipped(firm.name, document.original_name, reason or "fichier illisible"))
                continue
            attachments.append(
                Attachment(
                    firm_id=firm.id,
                    member=firm.name,
                    siret=firm.siret,
                    kind=kind,
                    title=DOCUMENT_KINDS[kind].label,
                    original_name=document.original_name,
                    issued_on=document.issued_on,
                    expires_on=document.expires_on,
                    data=data,
                    pages=pages,
                    sha256=hashlib.sha256(data).hexdigest(),
                )
            )
    return attachments, skipped


# --------------------------------------------------------------------------- dossier data


def _ordered_members(consortium: Consortium) -> list[ConsortiumMember]:
    """Active members, the mandataire first, then by firm name."""
    return sorted(consortium.active_members, key=lambda m: (not m.is_mandataire, m.firm.name.lower(), m.id))


def _divisions(consortium: Consortium) -> set[str]:
    """CPV divisions of the contract: the notice's codes and those of the lots answered."""
    notice = consortium.notice
    codes = list(notice.cpv)
    for lot in notice.lots:
        if lot.number in consortium.lot_numbers:
            codes.extend(lot.cpv or [])
    return {code[:2] for code in codes if code}


def _related(row: Any, divisions: set[str]) -> str | None:
    """The part of a year's turnover made in the contract's fields (DC2 F1), or None if unknown."""
    by_field = row.turnover_by_field or {}
    if not by_field or not divisions:
        return None
    amount = sum((Decimal(str(v)) for k, v in by_field.items() if k in divisions), Decimal(0))
    text = money_fr(amount)
    if row.turnover:
        text += f" ({percent_fr((amount * 100 / row.turnover).quantize(Decimal('0.1')))})"
    return text


def _member_dict(consortium: Consortium, member: ConsortiumMember, *, today: dt.date) -> dict[str, Any]:
    firm = member.firm
    divisions = _divisions(consortium)
    rows = {row.year: row for row in firm.years}
    years = []
    for year in sorted(financial_years(today)):
        row = rows.get(year)
        years.append(
            {
                "year": year,
                "turnover": money_fr(row.turnover) if row is not None and row.turnover is not None else None,
                "related": _related(row, divisions) if row is not None else None,
                "headcount": number_fr(row.headcount)
                if row is not None and row.headcount is not None
                else None,
            }
        )
    shares = sorted(
        (s for s in consortium.shares if s.firm_id == firm.id),
        key=lambda s: (
            consortium.lot_numbers.index(s.lot_number) if s.lot_number in consortium.lot_numbers else 99
        ),
    )
    legal = legal_form_label(firm.legal_form_code)
    decennale = _current_valid(firm, "decennale", today=today)
    return {
        "firm_id": firm.id,
        "anchor": f"dc2-{firm.id}",
        "name": firm.name,
        "siret": firm.siret,
        "siret_display": siret_display(firm.siret),
        "siren_display": siren_display(firm.siren),
        "vat": vat_number(firm.siren),
        "address": f"{firm.address}, {firm.postcode} {firm.city}",
        "email": _owner_email(firm),
        "phone": None,  # not part of the profile yet: printed « non renseigné »
        "is_mandataire": member.is_mandataire,
        "role_label": "mandataire" if member.is_mandataire else "cotraitant",
        "legal_form": f"{legal} (catégorie juridique INSEE {firm.legal_form_code})" if legal else None,
        "is_sme": firm.is_sme,
        "naf": firm.naf_code,
        "lots": [s.lot_number or "marché unique" for s in shares if s.share or s.amount or s.tasks],
        "tasks_by_lot": [{"lot": s.lot_number or "—", "tasks": s.tasks} for s in shares],
        "years": years,
        "references": [
            {
                "year": r.year,
                "buyer": r.buyer,
                "object": r.object,
                "role": REFERENCE_ROLES.get(r.role, r.role),
                "amount": money_fr(r.amount) if r.amount is not None else None,
            }
            for r in firm.references
        ],
        "certifications": [
            {
                "name": c.name,
                "number": c.number,
                "valid_until": date_fr(c.valid_until) if c.valid_until else None,
            }
            for c in firm.certifications
            if c.valid_until is None or c.valid_until >= today
        ],
        "relied_on": None,  # DC2 H: no other operator is recorded in TenderPool
        "needs_decennale": needs_decennale(firm),
        "has_decennale": decennale is not None,
    }


def _pooled_dict(consortium: Consortium, *, today: dt.date) -> dict[str, Any]:
    pooled = consortia.pooled_capacities(consortium, today=today)
    years = []
    for y in sorted(pooled.years, key=lambda y: y.year):
        years.append(
            {
                "year": y.year,
                "total_turnover": money_fr(y.turnover),
                "total_headcount": number_fr(y.headcount) if y.headcount is not None else "non renseigné",
                "parts": [
                    {
                        "name": firm.name,
                        "turnover": money_fr(t) if t is not None else None,
                        "headcount": number_fr(h) if h is not None else None,
                    }
                    for firm, t, h in y.parts
                ],
                "incomplete": (
                    "chiffre d'affaires non renseigné par " + ", ".join(f.name for f in y.missing)
                    if y.missing
                    else ""
                ),
            }
        )
    return {
        "years": years,
        "certifications": [
            {"name": name, "members": [f.name for f in firms]} for name, firms in pooled.certifications
        ],
        "references": [
            {
                "member": firm.name,
                "year": ref.year,
                "buyer": ref.buyer,
                "object": ref.object,
                "amount": money_fr(ref.amount) if ref.amount is not None else None,
            }
            for firm, ref in pooled.references
        ],
        "findings": list(pooled.findings),
    }


def _lots(consortium: Consortium) -> list[dict[str, Any]]:
    titles = {lot.number: lot.title for lot in consortium.notice.lots}
    return [
        {
            "number": lot.lot_number or "—",
            "label": consortia.lot_label(lot.lot_number),
            "title": titles.get(lot.lot_number),
            "offer_amount": money_fr(lot.offer_amount) if lot.offer_amount is not None else None,
        }
        for lot in consortium.lots
    ]


def _repartition(consortium: Consortium, members: list[ConsortiumMember]) -> list[dict[str, Any]]:
    order = {m.firm_id: i for i, m in enumerate(members)}
    names = {m.firm_id: m.firm.name for m in members}
    titles = {lot.number: lot.title for lot in consortium.notice.lots}
    result = []
    for lot in consortium.lots:
        shares = sorted(
            (s for s in consortium.shares if s.lot_number == lot.lot_number and s.firm_id in names),
            key=lambda s: order[s.firm_id],
        )
        amounts = [s.amount for s in shares if s.amount is not None]
        parts = [s.share for s in shares if s.share is not None]
        result.append(
            {
                "label": consortia.lot_label(lot.lot_number),
                "title": titles.get(lot.lot_number),
                "offer_amount": money_fr(lot.offer_amount) if lot.offer_amount is not None else None,
                "rows": [
                    {
                        "member": names[s.firm_id],
                        "tasks": s.tasks,
                        "amount": money_fr(s.amount) if s.amount is not None else None,
                        "share": percent_fr(s.share),
                    }
                    for s in shares
                ],
                "total_amount": money_fr(sum(amounts, Decimal(0))) if amounts else "non renseigné",
                "total_share": percent_fr(sum(parts, Decimal(0))) if parts else "non renseigné",
            }
        )
    return result


def dossier_data(
    session: Session,
    consortium: Consortium,
    *,
    today: dt.date,
    version: int,
    generated_at: dt.datetime,
    generated_by: str | None,
    draft: bool,
    readiness_count: int,
    attachments: Iterable[Attachment] = (),
    skipped: Iterable[Skipped] = (),
) -> dict[str, Any]:
    """Everything the print templates show, as plain dicts and strings (no ORM object)."""
    notice = consortium.notice
    members = _ordered_members(consortium)
    member_dicts = [_member_dict(consortium, m, today=today) for m in members]
    mandataire = next((m for m in member_dicts if m["is_mandataire"]), None)
    reference = notice_reference(notice)
    notice_lots = consortia.notice_lot_numbers(notice)
    attachment_dicts = []
    for index, a in enumerate(attachments):
        attachment_dicts.append(
            {
                "anchor": f"piece-{index + 1}",
                "member": a.member,
                "siret_display": siret_display(a.siret),
                "kind_label": a.title,
                "original_name": a.original_name,
                "issued_on": date_fr(a.issued_on) if a.issued_on else None,
                "expires_on": date_fr(a.expires_on) if a.expires_on else None,
                "pages": a.pages,
                "sha256": a.sha256,
                "placeholders": [f"piece-{index + 1}-page-{p + 1}" for p in range(a.pages)],
            }
        )
    return {
        "meta": {
            "title": f"Dossier de réponse — Groupement {consortium.name} — {reference}",
            "author": f"Groupement {consortium.name}"
            + (f" (mandataire : {mandataire['name']})" if mandataire else ""),
            "subject": f"Candidature et offre du groupement {consortium.name} : {notice.title}",
            "keywords": "DC1, DC2, groupement, marché public, " + reference,
        },
        "draft": draft,
        "readiness_count": readiness_count,
        "version": version,
        "generated_at": datetime_fr(generated_at),
        "generated_by": generated_by,
        "forms": FORM_VERSIONS,
        "groupement": {
            "name": consortium.name,
            "form_label": Form(consortium.form).label,
            "is_conjoint": consortium.form == Form.CONJOINT,
            "mandataire_solidaire": bool(consortium.mandataire_solidaire),
        },
        "notice": {
            "title": notice.title,
            "reference": reference,
            "buyer_name": notice.buyer_name,
            "buyer_siret": siret_display(notice.buyer_siret) if notice.buyer_siret else None,
            "deadline": datetime_fr(notice.deadline_at) if notice.deadline_at else None,
            "is_divided": notice_lots != [WHOLE_MARKET],
        },
        "lots": _lots(consortium),
        "all_lots": set(consortium.lot_numbers) >= set(notice_lots),
        "members": member_dicts,
        "mandataire": mandataire,
        "pooled": _pooled_dict(consortium, today=today),
        "repartition": _repartition(consortium, members),
        "repartition_issues": consortia.repartition_issues(consortium),
        "memoire": [
            {
                "anchor": f"memoire-{s.id}",
                "title": s.title,
                "html": render_markdown(s.body) if s.body and s.body.strip() else "",
                "assignee": s.assignee.name if s.assignee is not None else None,
                "status": SectionStatus(s.status).label,
            }
            for s in consortium.sections
        ],
        "attachments": attachment_dicts,
        "has_attachments": bool(attachment_dicts),
        "skipped": [asdict(s) for s in skipped],
    }


# --------------------------------------------------------------------------- rendering


@dataclass
class BuiltFile:
    kind: str
    filename: str
    content_type: str
    data: bytes
    firm_id: int | None = None
    page_count: int | None = None

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.data).hexdigest()


def _merge_attachments(
    main: bytes, anchors: dict[str, int], data: dict[str, Any], attachments: list[Attachment]
) -> bytes:
    """Replace each attachment's reserved pages by its own pages (pypdf)."""
    from pypdf import PdfReader, PdfWriter

    writer = PdfWriter(clone_from=PdfReader(io.BytesIO(main)))
    # From the last attachment to the first, so that earlier page indexes stay valid.
    for info, attachment in reversed(list(zip(data["attachments"], attachments, strict=True))):
        first = anchors[info["placeholders"][0]]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            reader = PdfReader(io.BytesIO(attachment.data), strict=False)
            pages: Any = writer.pages  # typed as a read-only Sequence, but supports deletion
            for _ in range(attachment.pages):
                del pages[first]
            for offset, page in enumerate(reader.pages):
                writer.insert_page(page, first + offset)
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


def form_extracts(data: dict[str, Any]) -> list[Extract]:
    """Where the DC1 and each DC2 are in the dossier, to write them as separate PDFs.

    Each form starts a new page (``section.part``) and runs until the next one, the last DC2
    until the pooled capacities (``#capacites``).
    """
    from tenderpool import pdf

    suffix = f"Groupement {data['groupement']['name']} — {data['notice']['reference']}"
    keys = ["dc1", *(m["anchor"] for m in data["members"])]
    titles = [f"DC1 — Lettre de candidature — {suffix}"] + [
        f"DC2 — {m['name']} — {suffix}" for m in data["members"]
    ]
    stops = [*keys[1:], "capacites"]
    return [
        pdf.Extract(key=key, start=key, stop=stop, title=title)
        for key, stop, title in zip(keys, stops, titles, strict=True)
    ]


def render_files(
    data: dict[str, Any],
    attachments: list[Attachment],
    *,
    pdf_variant: str | None,
    progress: Callable[[int, str], None] = lambda _p, _l: None,
    bundle: bool = True,
) -> list[BuiltFile]:
    """The dossier, the DC1, each DC2 and the ZIP bundle, from the plain-dict ``data``.

    One WeasyPrint rendering lays out the dossier; the DC1 and each DC2 are its own pages,
    written again as separate PDFs (:class:`tenderpool.pdf.Extract`) rather than laid out a
    second time: the same pages, header and footer included (« page n / N du dossier »).
    """
    from tenderpool import pdf

    base = f"{slug(data['groupement']['name'])}-v{data['version']}"
    progress(35, "Mise en page du dossier et des formulaires DC1 et DC2")
    main = pdf.Renderer().render(
        pdf.render_html("pdf/dossier.html", {"d": data}),
        pdf_variant=pdf_variant,
        anchors=True,
        extracts=form_extracts(data),
    )
    dossier_bytes = main.data
    if attachments:
        progress(65, "Ajout des pièces jointes")
        dossier_bytes = _merge_attachments(main.data, main.anchors, data, attachments)
    files = [
        BuiltFile(
            FileKind.DOSSIER,
            f"dossier-{base}.pdf",
            "application/pdf",
            dossier_bytes,
            page_count=main.page_count,
        )
    ]
    dc1 = main.extracts["dc1"]
    files.append(
        BuiltFile(FileKind.DC1, f"dc1-{base}.pdf", "application/pdf", dc1.data, page_count=dc1.page_count)
    )
    for member in data["members"]:
        dc2 = main.extracts[member["anchor"]]
        files.append(
            BuiltFile(
                FileKind.DC2,
                f"dc2-{slug(member['name'])}-{base}.pdf",
                "application/pdf",
                dc2.data,
                firm_id=member["firm_id"],
                page_count=dc2.page_count,
            )
        )
    if bundle:
        progress(90, "Archive ZIP")
        files.append(_bundle(base, files, attachments))
    return files


def _bundle(base: str, files: list[BuiltFile], attachments: list[Attachment]) -> BuiltFile:
    """A ZIP with the PDFs, the original attachments and a manifest of SHA-256 sums."""
    entries: list[tuple[str, bytes]] = [(f.filename, f.data) for f in files]
    used: set[str] = {name for name, _ in entries}
    for index, a in enumerate(attachments, start=1):
        name = f"pieces/{index:02d}-{slug(a.member)}-{a.kind}.pdf"
        while name in used:
            name = name.replace(".pdf", "-bis.pdf")
        used.add(name)
        entries.append((name, a.data))
    manifest = "".join(f"{hashlib.sha256(content).hexdigest()}  {name}\n" for name, content in entries)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, content in entries:
            # PDFs are compressed already: storing them saves time and no space is lost.
            archive.writestr(name, content, compress_type=zipfile.ZIP_STORED)
        archive.writestr("MANIFEST-SHA256.txt", manifest)
    return BuiltFile(FileKind.BUNDLE, f"dossier-{base}.zip", "application/zip", buffer.getvalue())


# --------------------------------------------------------------------------- versions


def storage_for(settings: Settings) -> Storage:
    """The storage of uploads and generated dossiers (the same folder, random keys)."""
    return LocalStorage(upload_settings(settings).root)


def versions_of(session: Session, consortium: Consortium) -> list[DossierVersion]:
    """Every version of the consortium's dossier, newest first."""
    return list(
        session.scalars(
            select(DossierVersion)
            .where(DossierVersion.consortium_id == consortium.id)
            .order_by(DossierVersion.number.desc())
        )
    )


def queue_dossier(
    session: Session,
    consortium: Consortium,
    *,
    by: User | None,
    now: dt.datetime,
    pdf_variant: str | None = None,
) -> DossierVersion:
    """Ask for a new version; it is built by :func:`process_pending_dossiers`.

    A second request while one is still waiting returns the waiting one (a double click makes
    one version, not two).
    """
    if pdf_variant not in (None, PDFA):
        raise ValidationError("Variante PDF inconnue.", field="pdf_variant")
    pending = session.scalars(
        select(DossierVersion).where(
            DossierVersion.consortium_id == consortium.id,
            DossierVersion.status.in_([VersionStatus.QUEUED.value, VersionStatus.BUILDING.value]),
        )
    ).first()
    if pending is not None:
        return pending
    last = session.scalar(
        select(func.max(DossierVersion.number)).where(DossierVersion.consortium_id == consortium.id)
    )
    version = DossierVersion(
        consortium_id=consortium.id,
        number=(last or 0) + 1,
        status=VersionStatus.QUEUED,
        progress=0,
        progress_label="En attente de génération",
        pdf_variant=pdf_variant,
        is_draft=True,
        requested_by_id=by.id if by is not None else None,
        requested_at=now,
        skipped=[],
        open_items=[],
    )
    session.add(version)
    session.flush()
    return version


def file_for_download(session: Session, user: User, consortium_id: int, file_id: int) -> DossierFile:
    """A stored file of a ready version, if ``user`` may see the consortium's workspace.

    Anyone else gets NotFound, as if the file did not exist (never "forbidden": ids are guessable).
    """
    consortium = consortia.workspace_for(session, user, consortium_id)
    stored = session.get(DossierFile, file_id)
    if (
        stored is None
        or stored.version.consortium_id != consortium.id
        or stored.version.status != VersionStatus.READY
    ):
        raise NotFound("Ce fichier n'existe pas.")
    return stored


def _set_progress(db: Database, version_id: int, progress: int, label: str) -> None:
    # Its own short transaction, so that the dossier page sees it while the build goes on.
    with db.session_scope() as session:
        session.execute(
            update(DossierVersion)
            .where(DossierVersion.id == version_id)
            .values(progress=progress, progress_label=label)
        )


def claim(db: Database, version_id: int, now: dt.datetime) -> bool:
    """Take a queued version; False when another process took it first."""
    with db.session_scope() as session:
        result = session.execute(
            update(DossierVersion)
            .where(DossierVersion.id == version_id, DossierVersion.status == VersionStatus.QUEUED.value)
            .values(
                status=VersionStatus.BUILDING.value, started_at=now, progress=5, progress_label="Vérification"
            )
        )
        return bool(getattr(result, "rowcount", 0))


def build_version(
    db: Database, storage: Storage, version_id: int, *, now: dt.datetime
) -> DossierVersion | None:
    """Build one claimed version: render, store every file, and mark it ready (or failed).

    The database is only touched in short transactions (read the data, report progress, record
    the files), never while WeasyPrint works.
    """
    today = now.astimezone(PARIS).date()
    with db.session_scope() as session:
        version = session.get(DossierVersion, version_id)
        if version is None:
            return None
        consortium = session.get(Consortium, version.consortium_id)
        if consortium is None:
            return None
        readiness = check_readiness(session, consortium, today=today)
        attachments, skipped = collect_attachments(consortium, storage, today=today)
        author = version.requested_by
        data = dossier_data(
            session,
            consortium,
            today=today,
            version=version.number,
            generated_at=now,
            generated_by=(author.full_name or author.email) if author is not None else "ligne de commande",
            draft=not readiness.ok,
            readiness_count=readiness.count,
            attachments=attachments,
            skipped=skipped,
        )
        pdf_variant = version.pdf_variant
        open_items = readiness.lines()
    _set_progress(db, version_id, 20, "Pièces jointes vérifiées")
    keys: list[str] = []
    try:
        files = render_files(
            data,
            attachments,
            pdf_variant=pdf_variant,
            progress=lambda p, label: _set_progress(db, version_id, p, label),
        )
        stored = []
        for built in files:
            key = storage.save(built.data)
            keys.append(key)
            stored.append((built, key))
        with db.session_scope() as session:
            version = session.get(DossierVersion, version_id)
            if version is None:
                raise RuntimeError(f"dossier version {version_id} vanished during its build")
            for built, key in stored:
                session.add(
                    DossierFile(
                        version_id=version.id,
                        kind=built.kind,
                        firm_id=built.firm_id,
                        filename=built.filename,
                        content_type=built.content_type,
                        storage_key=key,
                        size=len(built.data),
                        sha256=built.sha256,
                        page_count=built.page_count,
                    )
                )
            version.status = VersionStatus.READY
            version.progress = 100
            version.progress_label = "Prêt"
            version.finished_at = now
            version.is_draft = bool(data["draft"])
            # Each attachment took the place of as many reserved pages: the count is the layout's.
            version.page_count = files[0].page_count
            version.skipped = data["skipped"]
            version.open_items = open_items
            session.flush()
            session.expunge(version)
            return version
    except Exception:
        log.exception("dossier version %s failed", version_id)
        for key in keys:
            try:
                storage.delete(key)
            except Exception:  # the failure being reported matters more than an orphan file
                log.warning("could not delete %s", key, exc_info=True)
        _fail(
            db,
            version_id,
            now,
            "La génération a échoué (erreur interne). Réessayez ; si cela se reproduit, prévenez votre CCI.",
        )
        return None


def _fail(db: Database, version_id: int, now: dt.datetime, message: str) -> None:
    with db.session_scope() as session:
        session.execute(
            update(DossierVersion)
            .where(DossierVersion.id == version_id)
            .values(status=VersionStatus.FAILED.value, finished_at=now, error=message, progress_label="Échec")
        )


def process_pending_dossiers(
    db: Database, settings: Settings, *, now: dt.datetime, limit: int = 10, storage: Storage | None = None
) -> int:
    """The scheduler job: build the queued versions, oldest first; return how many were built.

    A version left "building" for longer than :data:`STALE_BUILD` (its process was stopped) is
    marked failed so that members can ask again.
    """
    with db.session_scope() as session:
        session.execute(
            update(DossierVersion)
            .where(
                DossierVersion.status == VersionStatus.BUILDING.value,
                DossierVersion.started_at < now - STALE_BUILD,
            )
            .values(
                status=VersionStatus.FAILED.value,
                finished_at=now,
                error="La génération a été interrompue. Demandez une nouvelle génération.",
            )
        )
        queued = list(
            session.scalars(
                select(DossierVersion.id)
                .where(DossierVersion.status == VersionStatus.QUEUED.value)
                .order_by(DossierVersion.requested_at, DossierVersion.id)
                .limit(limit)
            )
        )
    storage = storage or storage_for(settings)
    built = 0
    for version_id in queued:
        if not claim(db, version_id, now):
            continue
        if build_version(db, storage, version_id, now=now) is not None:
            built += 1
    return built
