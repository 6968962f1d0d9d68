"""Staff curation of the shared pool: feature, reject, tag, edit (with locks), merge, split, manual notices.

Every action is recorded in the audit log with the staff member's chamber, and
usable in bulk. Services only flush; views commit.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session, selectinload

from tenderpool.accounts.models import User
from tenderpool.accounts.services import record_audit
from tenderpool.errors import Conflict, NotFound, ValidationError
from tenderpool.notices.ingest import _display, fallback_key, name_key
from tenderpool.notices.models import (
    Lot,
    Notice,
    NoticeChange,
    NoticeCpv,
    NoticeDepartment,
    NoticeDismissal,
    NoticeFollow,
    NoticeStatus,
    NoticeTag,
    Publication,
)
from tenderpool.notices.sanitize import safe_url, sanitize_html
from tenderpool.reference import cpv_codes

EDITABLE_FIELDS = {
    "title": "intitulé",
    "buyer_name": "acheteur",
    "buyer_siret": "SIRET de l'acheteur",
    "description": "description",
    "deadline_at": "date limite",
    "estimated_value": "montant estimé",
    "contract_type": "type de marché",
    "dce_url": "lien vers le DCE",
    "departments": "départements",
    "cpv": "codes CPV",
}
_TAG_RE = re.compile(r"^[\w\- ]{1,60}$")


def _staff_only(by: User) -> None:
    if not (by.is_staff or by.is_admin):
        raise ValidationError("Action réservée à l'équipe des CCI.")


def get_notice(session: Session, notice_id: int) -> Notice:
    notice = session.get(Notice, notice_id)
    if notice is None:
        raise NotFound("Avis introuvable.")
    return notice


def _audit(
    session: Session,
    action: str,
    notice: Notice,
    by: User,
    *,
    now: dt.datetime,
    note: str | None = None,
    ip: str | None = None,
    detail: dict[str, Any] | None = None,
) -> None:
    record_audit(session, action, actor=by, target_type="notice", target_id=notice.id, ip=ip, note=note,
                 detail=detail, now=now)  # fmt: skip


def feature(
    session: Session,
    notices: Sequence[Notice],
    *,
    by: User,
    note: str,
    now: dt.datetime,
    ip: str | None = None,
) -> int:
    """Promote notices to firms for pooling, with a short note on why they suit a groupement."""
    _staff_only(by)
    note = note.strip()
    if len(note) < 5:
        raise ValidationError(
            "Expliquez en quelques mots pourquoi cet avis se prête à un groupement.", field="note"
        )
    for notice in notices:
        notice.is_featured = True
        notice.featured_note = note
        notice.featured_at = now
        notice.featured_chamber = by.chamber_slug
        notice.is_rejected = False
        _audit(session, "notice_featured", notice, by, now=now, note=note, ip=ip)
    session.flush()
    return len(notices)


def unfeature(session: Session, notice: Notice, *, by: User, now: dt.datetime, ip: str | None = None) -> None:
    _staff_only(by)
    notice.is_featured = False
    _audit(session, "notice_unfeatured", notice, by, now=now, ip=ip)
    session.flush()


def reject(
    session: Session,
    notices: Sequence[Notice],
    *,
    by: User,
    reason: str,
    now: dt.datetime,
    ip: str | None = None,
) -> int:
    """Take notices out of the pool (noise, out of scope), with a reason."""
    _staff_only(by)
    reason = reason.strip()
    if len(reason) < 3:
        raise ValidationError("Indiquez le motif du rejet.", field="reason")
    for notice in notices:
        notice.is_rejected = True
        notice.rejected_reason = reason
        notice.rejected_at = now
        notice.rejected_chamber = by.chamber_slug
        notice.is_featured = False
        _audit(session, "notice_rejected", notice, by, now=now, note=reason, ip=ip)
    session.flush()
    return len(notices)


def restore(session: Session, notice: Notice, *, by: User, now: dt.datetime, ip: str | None = None) -> None:
    """Put a rejected notice back into the pool."""
    _staff_only(by)
    notice.is_rejected = False
    notice.rejected_reason = None
    _audit(session, "notice_restored", notice, by, now=now, ip=ip)
    session.flush()


def parse_tags(raw: str) -> list[str]:
    tags = [t.strip() for t in raw.replace(";", ",").split(",") if t.strip()]
    for tag in tags:
        if not _TAG_RE.match(tag):
            raise ValidationError(
                f"Étiquette invalide : « {tag[:30]} » (lettres, chiffres, espaces, tirets).", field="tags"
            )
    return list(dict.fromkeys(tags))


def tag(
    session: Session,
    notices: Sequence[Notice],
    *,
    by: User,
    tags: Iterable[str],
    now: dt.datetime,
    ip: str | None = None,
) -> int:
    """Add sector tags to notices (existing tags are kept)."""
    _staff_only(by)
    wanted = list(tags)
    if not wanted:
        raise ValidationError("Indiquez au moins une étiquette.", field="tags")
    ids = [n.id for n in notices]
    rows = session.execute(select(NoticeTag.notice_id, NoticeTag.tag).where(NoticeTag.notice_id.in_(ids)))
    have = {(nid, name) for nid, name in rows}
    for notice in notices:
        added = [t for t in wanted if (notice.id, t) not in have]
        session.add_all(NoticeTag(notice_id=notice.id, tag=t) for t in added)
        if added:
            _audit(session, "notice_tagged", notice, by, now=now, note=", ".join(added), ip=ip)
    session.flush()
    return len(notices)


def untag(
    session: Session, notice: Notice, *, by: User, tag_name: str, now: dt.datetime, ip: str | None = None
) -> None:
    _staff_only(by)
    row = session.get(NoticeTag, (notice.id, tag_name))
    if row is not None:
        session.delete(row)
        _audit(session, "notice_untagged", notice, by, now=now, note=tag_name, ip=ip)
    session.flush()


def tags_of(session: Session, notice_ids: Sequence[int]) -> dict[int, list[str]]:
    out: dict[int, list[str]] = {}
    for nid, name in session.execute(
        select(NoticeTag.notice_id, NoticeTag.tag)
        .where(NoticeTag.notice_id.in_(notice_ids))
        .order_by(NoticeTag.tag)
    ):
        out.setdefault(nid, []).append(name)
    return out


def _current(notice: Notice, field: str) -> Any:
    if field == "departments":
        return notice.departments
    if field == "cpv":
        return notice.cpv
    return getattr(notice, field)


def _set(notice: Notice, field: str, value: Any) -> None:
    if field == "departments":
        existing = {link.department: link for link in notice.department_links}
        notice.department_links = [existing.get(d) or NoticeDepartment(department=d) for d in value]
    elif field == "cpv":
        existing_cpv = {link.cpv: link for link in notice.cpv_links}
        notice.cpv_links = [existing_cpv.get(c) or NoticeCpv(cpv=c) for c in value]
        for position, link in enumerate(notice.cpv_links):
            link.position = position
    else:
        setattr(notice, field, value)


def _http_url(value: str, field: str) -> str:
    url = safe_url(value)
    if url is None:
        raise ValidationError("Le lien doit être une adresse http:// ou https://.", field=field)
    return url


def clean_cpv_list(raw: Iterable[str]) -> list[str]:
    codes: list[str] = []
    known = cpv_codes()
    for item in raw:
        code = item.strip().split("-")[0]
        if not code:
            continue
        if code not in known:
            raise ValidationError(f"Code CPV inconnu : {code[:12]}.", field="cpv")
        codes.append(code)
    return list(dict.fromkeys(codes))


def edit(
    session: Session,
    notice: Notice,
    changes: dict[str, Any],
    *,
    by: User,
    now: dt.datetime,
    ip: str | None = None,
) -> list[str]:
    """Edit normalised fields. Each edited field is locked: a later scrape keeps the edit unless the
    source changes that field again (then the source wins and the conflict is shown)."""
    _staff_only(by)
    edited: list[str] = []
    locks = dict(notice.locked_fields or {})
    conflicts = dict(notice.conflicts or {})
    for field, value in changes.items():
        if field not in EDITABLE_FIELDS:
            raise ValidationError(f"Champ non modifiable : {field}.")
        if field == "description" and value:
            value = sanitize_html(value)
        if field == "dce_url" and value:
            value = _http_url(value, field)
        old = _current(notice, field)
        if _display(old) == _display(value):
            continue
        source_value = locks[field]["source_value"] if field in locks else _display(old)
        _set(notice, field, value)
        locks[field] = {"value": _display(value), "source_value": source_value, "by": by.email,
                        "chamber": by.chamber_slug, "at": now.isoformat()}  # fmt: skip
        conflicts.pop(field, None)
        notice.changes.append(
            NoticeChange(
                field=field,
                old_value=_display(old),
                new_value=_display(value),
                at=now,
                source_ref=f"édition {by.chamber_slug or 'admin'}",
            )
        )
        _audit(
            session,
            "notice_edited",
            notice,
            by,
            now=now,
            ip=ip,
            detail={"field": field, "old": _display(old), "new": _display(value)},
        )
        edited.append(field)
    notice.locked_fields = locks
    notice.conflicts = conflicts
    if edited:
        notice.updated_at = now
    session.flush()
    return edited


def resolve_conflict(
    session: Session,
    notice: Notice,
    field: str,
    *,
    keep_edit: bool,
    by: User,
    now: dt.datetime,
    ip: str | None = None,
) -> None:
    """After the source changed an edited field: keep the source's value, or put the edit back."""
    _staff_only(by)
    conflicts = dict(notice.conflicts or {})
    conflict = conflicts.pop(field, None)
    if conflict is None:
        raise NotFound("Aucun conflit sur ce champ.")
    notice.conflicts = conflicts
    _audit(
        session,
        "notice_conflict_resolved",
        notice,
        by,
        now=now,
        ip=ip,
        detail={"field": field, "kept": "edit" if keep_edit else "source"},
    )
    if keep_edit:
        edited = _parse_display(field, conflict.get("edited"))
        edit(session, notice, {field: edited}, by=by, now=now, ip=ip)
    session.flush()


def _parse_display(field: str, value: Any) -> Any:
    """The inverse of ingest._display for the editable fields."""
    import json

    if value is None:
        return None
    if field in ("departments", "cpv"):
        return list(json.loads(value))
    if field == "deadline_at":
        return dt.datetime.fromisoformat(value)
    if field == "estimated_value":
        return Decimal(value)
    return value


def merge(
    session: Session,
    survivor: Notice,
    duplicate: Notice,
    *,
    by: User,
    now: dt.datetime,
    ip: str | None = None,
) -> None:
    """Merge ``duplicate`` into ``survivor`` (same procedure): publications, follows, tags move over."""
    from tenderpool.notices.services import reparse

    _staff_only(by)
    if survivor.id == duplicate.id:
        raise ValidationError("Choisissez deux avis différents.")
    if duplicate.merged_into_id is not None or survivor.merged_into_id is not None:
        raise Conflict("L'un de ces avis a déjà été fusionné.")
    pub_ids = [p.id for p in duplicate.publications]
    session.execute(update(Publication).where(Publication.id.in_(pub_ids)).values(notice_id=survivor.id))
    followers = set(
        session.scalars(select(NoticeFollow.user_id).where(NoticeFollow.notice_id == survivor.id))
    )
    for follow in session.scalars(select(NoticeFollow).where(NoticeFollow.notice_id == duplicate.id)):
        if follow.user_id in followers:
            session.delete(follow)
        else:
            follow.notice_id = survivor.id
    dismissers = set(
        session.scalars(select(NoticeDismissal.firm_id).where(NoticeDismissal.notice_id == survivor.id))
    )
    for dismissal in session.scalars(
        select(NoticeDismissal).where(NoticeDismissal.notice_id == duplicate.id)
    ):
        if dismissal.firm_id in dismissers:
            session.delete(dismissal)
        else:
            dismissal.notice_id = survivor.id
    survivor_tags = set(session.scalars(select(NoticeTag.tag).where(NoticeTag.notice_id == survivor.id)))
    for row in session.scalars(select(NoticeTag).where(NoticeTag.notice_id == duplicate.id)):
        if row.tag not in survivor_tags:
            session.add(NoticeTag(notice_id=survivor.id, tag=row.tag))
        session.delete(row)
    procedure_id = duplicate.procedure_id
    duplicate.procedure_id = None
    duplicate.fallback_key = None
    duplicate.name_key = None
    duplicate.merged_into_id = survivor.id
    session.flush()
    if procedure_id and not survivor.procedure_id:
        survivor.procedure_id = procedure_id
    survivor.is_featured = survivor.is_featured or duplicate.is_featured
    session.expire(survivor)
    session.expire(duplicate)
    reparse(session, now=now, publication_ids=pub_ids)  # the moved publications fill what the survivor lacks
    _audit(session, "notice_merged", survivor, by, now=now, ip=ip, detail={"merged": duplicate.id})
    session.flush()


def split(
    session: Session,
    notice: Notice,
    publication: Publication,
    *,
    by: User,
    now: dt.datetime,
    ip: str | None = None,
) -> Notice:
    """Undo a wrong link: the publication becomes a notice of its own; the first is rebuilt without it."""
    from tenderpool.notices.services import rebuild_notice, reparse

    _staff_only(by)
    if publication.notice_id != notice.id:
        raise NotFound("Cette publication n'appartient pas à cet avis.")
    if len(notice.publications) < 2:
        raise ValidationError("Un avis ayant une seule publication ne peut pas être scindé.")
    fresh = Notice(
        title=publication.title or "(sans titre)",
        status=NoticeStatus.OPEN.value,
        field_dates={},
        nuts=[],
        created_at=now,
        updated_at=now,
        locked_fields={},
        conflicts={},
    )
    session.add(fresh)
    session.flush()
    publication.notice_id = fresh.id
    session.flush()
    session.expire_all()
    reparse(session, now=now, publication_ids=[publication.id])
    rebuild_notice(session, get_notice(session, notice.id), now=now)
    _audit(
        session,
        "notice_split",
        notice,
        by,
        now=now,
        ip=ip,
        detail={"publication": f"{publication.source}:{publication.source_ref}", "new_notice": fresh.id},
    )
    session.flush()
    return fresh


@dataclass
class ManualLot:
    number: str
    title: str | None
    cpv: list[str]
    estimated_value: Decimal | None


def create_manual(
    session: Session,
    *,
    by: User,
    title: str,
    buyer_name: str,
    buyer_siret: str | None,
    url: str,
    dce_url: str | None,
    description: str | None,
    deadline_at: dt.datetime | None,
    estimated_value: Decimal | None,
    contract_type: str | None,
    departments: list[str],
    cpv: list[str],
    lots: list[ManualLot],
    procedure_id: str | None,
    now: dt.datetime,
    ip: str | None = None,
) -> Notice:
    """An opportunity found elsewhere (JAL, buyer profile). A later scraped publication of the same
    procedure links to it, by procedure id or by the fallback key (buyer, title, deadline day)."""
    _staff_only(by)
    if not title.strip() or not buyer_name.strip():
        raise ValidationError("L'intitulé et l'acheteur sont obligatoires.")
    if safe_url(url) is None:
        raise ValidationError("Indiquez l'adresse (https://…) où l'avis a été trouvé.", field="url")
    dce_url = _http_url(dce_url, "dce_url") if dce_url else None
    procedure_id = (procedure_id or "").strip().lower() or None
    if procedure_id and session.scalar(select(Notice.id).where(Notice.procedure_id == procedure_id)):
        raise Conflict("Un avis porte déjà cet identifiant de procédure.", field="procedure_id")
    notice = Notice(
        title=title.strip(), buyer_name=buyer_name.strip(), buyer_siret=buyer_siret or None, url=url,
        dce_url=dce_url or None, description=sanitize_html(description) if description else None,
        deadline_at=deadline_at, estimated_value=estimated_value, currency="EUR" if estimated_value else None,
        contract_type=contract_type or None, procedure_id=procedure_id, status=NoticeStatus.OPEN.value,
        published_at=now.date(), is_manual=True, created_by_id=by.id, field_dates={}, nuts=[],
        locked_fields={}, conflicts={}, created_at=now, updated_at=now,
        fallback_key=fallback_key(buyer_siret, buyer_name, title, deadline_at),
        name_key=name_key(buyer_name, title, deadline_at),
    )  # fmt: skip
    notice.department_links = [NoticeDepartment(department=d) for d in departments]
    notice.cpv_links = [NoticeCpv(cpv=c, position=i) for i, c in enumerate(cpv)]
    notice.lots = [Lot(number=lot.number, title=lot.title, cpv=lot.cpv, estimated_value=lot.estimated_value,
                       position=i) for i, lot in enumerate(lots)]  # fmt: skip
    session.add(notice)
    session.flush()
    _audit(session, "notice_created_manually", notice, by, now=now, ip=ip, note=url)
    from tenderpool.notices.search import refresh_search_index

    refresh_search_index(session, [notice.id])
    return notice


def load_for_staff(session: Session, ids: Iterable[int]) -> list[Notice]:
    wanted = sorted({int(i) for i in ids})
    if not wanted:
        raise ValidationError("Sélectionnez au moins un avis.")
    notices = list(
        session.scalars(select(Notice).where(Notice.id.in_(wanted)).options(selectinload(Notice.lots)))
    )
    if len(notices) != len(wanted):
        raise NotFound("Un des avis sélectionnés est introuvable.")
    return notices
