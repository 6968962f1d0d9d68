"""Services of the notices domain: export, re-parse, import of files, quarantine."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import Select, func, select
from sqlalchemy.orm import Session, selectinload

from scrapers.base import RawRecord
from scrapers.files import iter_file_records
from tenderpool.errors import NotFound, ValidationError
from tenderpool.notices.ingest import Ingester, IngestStats, decompress
from tenderpool.notices.models import (
    Notice,
    NoticeDismissal,
    NoticeFollow,
    NoticeStatus,
    Publication,
    PublicationState,
    SavedSearch,
)

PARIS = ZoneInfo("Europe/Paris")
EXPORT_KEYS = (
    "id", "title", "buyer_name", "buyer_siret", "contract_type", "procedure_type", "published_at",
    "deadline_at", "departments", "nuts", "cpv", "estimated_value", "currency", "status", "lots", "awards",
    "url", "publications", "changes",
)  # fmt: skip


def _amount(value: Decimal | None) -> float | int | None:
    if value is None:
        return None
    return int(value) if value == value.to_integral_value() else float(value)


def notice_to_dict(notice: Notice, *, now: dt.datetime) -> dict[str, Any]:
    """The export/API representation of a notice (keys documented in the README)."""
    return {
        "id": notice.id,
        "title": notice.title,
        "buyer_name": notice.buyer_name,
        "buyer_siret": notice.buyer_siret,
        "contract_type": notice.contract_type,
        "procedure_type": notice.procedure_type,
        "published_at": notice.published_at.isoformat() if notice.published_at else None,
        "deadline_at": notice.deadline_at.astimezone(PARIS).isoformat() if notice.deadline_at else None,
        "departments": notice.departments,
        "nuts": list(notice.nuts or []),
        "cpv": notice.cpv,
        "estimated_value": _amount(notice.estimated_value),
        "currency": notice.currency,
        "status": notice.status_at(now).value,
        "lots": [
            {"number": lot.number, "title": lot.title, "cpv": list(lot.cpv or []),
             "estimated_value": _amount(lot.estimated_value)}
            for lot in notice.lots
        ],
        "awards": [
            {"lot": a.lot_number, "winner_name": a.winner_name, "winner_siret": a.winner_siret,
             "amount": _amount(a.amount)}
            for a in notice.awards if not a.unsuccessful
        ],
        "url": notice.url,
        "publications": [
            {"source": p.source, "source_ref": p.source_ref, "nature": p.nature,
             "published_at": p.published_at.isoformat() if p.published_at else None}
            for p in notice.publications
        ],
        "changes": [
            {"field": c.field, "old": c.old_value, "new": c.new_value, "source_ref": c.source_ref}
            for c in notice.changes
        ],
    }  # fmt: skip


def iter_export(
    session: Session, *, now: dt.datetime, since: dt.date | None = None, chunk: int = 500
) -> Iterator[dict[str, Any]]:
    """Every notice (published on or after ``since``), in id order, streamed in chunks."""
    last_id = 0
    while True:
        query = (
            select(Notice)
            .where(Notice.id > last_id)
            .order_by(Notice.id)
            .limit(chunk)
            .options(
                selectinload(Notice.lots), selectinload(Notice.awards), selectinload(Notice.cpv_links),
                selectinload(Notice.department_links), selectinload(Notice.publications),
                selectinload(Notice.changes),
            )
        )  # fmt: skip
        if since is not None:
            query = query.where(Notice.published_at >= since)
        notices = list(session.scalars(query))
        if not notices:
            return
        for notice in notices:
            yield notice_to_dict(notice, now=now)
        last_id = notices[-1].id
        session.expunge_all()  # keep memory flat on large exports


def raw_record_of(pub: Publication) -> RawRecord:
    return RawRecord(
        source=pub.source,
        source_ref=pub.source_ref,
        payload=decompress(pub.payload),
        content_type=pub.content_type,
        fetched_at=pub.fetched_at,
        url=pub.fetch_url,
    )


def reparse(
    session: Session,
    *,
    now: dt.datetime,
    source: str | None = None,
    quarantined_only: bool = False,
    publication_ids: list[int] | None = None,
) -> IngestStats:
    """Parse stored payloads again (after a parser fix) and apply what changed; only flushes."""
    query = select(Publication).order_by(Publication.id)
    if source:
        query = query.where(Publication.source == source)
    if quarantined_only:
        query = query.where(Publication.state == PublicationState.QUARANTINED.value)
    if publication_ids is not None:
        query = query.where(Publication.id.in_(publication_ids))
    ingester = Ingester(session, now=now, force=True)
    stats = IngestStats()
    last_id = 0
    while True:
        pubs = list(session.scalars(query.where(Publication.id > last_id).limit(500)))
        if not pubs:
            return stats
        last_id = pubs[-1].id
        stats.add(ingester.ingest_batch([raw_record_of(p) for p in pubs]))


def import_file(
    session: Session, path: Path, *, source: str = "auto", now: dt.datetime, is_demo: bool = False
) -> IngestStats:
    """Ingest one saved file (BOAMP page/array/JSONL, TED response, eForms or legacy BOAMP XML).

    Raises :class:`scrapers.files.ImportFileError` when the file cannot be read or its
    format is unknown; a bad record inside a readable file is only rejected.
    """
    return Ingester(session, now=now, is_demo=is_demo).ingest(iter_file_records(path, source=source))


def rebuild_notice(session: Session, notice: Notice, *, now: dt.datetime) -> None:
    """Recompute a notice's source fields from its remaining publications (after a split)."""
    for name in (
        "buyer_name",
        "buyer_siret",
        "description",
        "contract_type",
        "procedure_type",
        "deadline_at",
        "estimated_value",
        "currency",
        "url",
        "dce_url",
        "published_at",
        "procedure_id",
        "fallback_key",
        "name_key",
    ):
        setattr(notice, name, None)
    notice.nuts = []
    notice.field_dates = {}
    notice.status = NoticeStatus.OPEN.value
    notice.lots = []
    notice.awards = []
    notice.cpv_links = []
    notice.department_links = []
    session.flush()
    reparse(session, now=now, publication_ids=[p.id for p in notice.publications])


# --------------------------------------------------------------------------- following and feedback

DISMISS_REASONS = {
    "too_far": "Trop loin de notre zone d'intervention",
    "too_big": "Trop gros pour nous, même en groupement",
    "too_small": "Trop petit ou peu rentable",
    "not_our_trade": "Hors de notre métier",
    "buyer": "Acheteur avec lequel nous ne travaillons pas",
    "deadline": "Délai de réponse trop court",
    "other": "Autre raison",
}


def is_following(session: Session, user_id: int, notice_id: int) -> bool:
    return session.get(NoticeFollow, (user_id, notice_id)) is not None


def follow(session: Session, user_id: int, notice: Notice, *, now: dt.datetime) -> bool:
    """Add a notice to the user's watch list; False if it was already there."""
    if session.get(NoticeFollow, (user_id, notice.id)) is not None:
        return False
    session.add(NoticeFollow(user_id=user_id, notice_id=notice.id, created_at=now))
    session.flush()
    return True


def unfollow(session: Session, user_id: int, notice: Notice) -> None:
    row = session.get(NoticeFollow, (user_id, notice.id))
    if row is not None:
        session.delete(row)
        session.flush()


def followed_notices_query(user_ids: list[int]) -> Select[Notice]:
    """The watch list: notices followed by these users (a firm's members), soonest deadline first
    (undated last), with what a list row shows of them."""
    return (
        select(Notice)
        .where(Notice.id.in_(select(NoticeFollow.notice_id).where(NoticeFollow.user_id.in_(user_ids))))
        .order_by(Notice.deadline_at.is_(None), Notice.deadline_at, Notice.id)
        .options(
            selectinload(Notice.lots),
            selectinload(Notice.publications),
            selectinload(Notice.department_links),
        )
    )


def dismiss(
    session: Session,
    firm_id: int,
    notice: Notice,
    *,
    by_id: int,
    reason: str,
    comment: str | None,
    now: dt.datetime,
) -> None:
    """The firm is not interested: the notice leaves its suggestions and the reason teaches matching."""
    if reason not in DISMISS_REASONS:
        raise ValidationError("Choisissez une raison dans la liste.", field="reason")
    comment = (comment or "").strip()[:1000] or None
    row = session.get(NoticeDismissal, (firm_id, notice.id))
    if row is None:
        session.add(NoticeDismissal(firm_id=firm_id, notice_id=notice.id, reason=reason, comment=comment,
                                    by_id=by_id, created_at=now))  # fmt: skip
    else:
        row.reason, row.comment, row.by_id, row.created_at = reason, comment, by_id, now
    session.flush()


def undismiss(session: Session, firm_id: int, notice: Notice) -> None:
    row = session.get(NoticeDismissal, (firm_id, notice.id))
    if row is not None:
        session.delete(row)
        session.flush()


def dismissal_of(session: Session, firm_id: int, notice_id: int) -> NoticeDismissal | None:
    return session.get(NoticeDismissal, (firm_id, notice_id))


def save_search(session: Session, user_id: int, *, name: str, query: str, now: dt.datetime) -> SavedSearch:
    """Keep a search under a name; the digest alerts on its new matches."""
    name = " ".join(name.split())
    if not name or len(name) > 120:
        raise ValidationError("Donnez un nom (120 caractères au plus) à cette recherche.", field="name")
    if len(query) > 2000:
        raise ValidationError("Recherche trop longue.")
    count = session.scalar(
        select(func.count()).select_from(SavedSearch).where(SavedSearch.user_id == user_id)
    )
    if (count or 0) >= 50:
        raise ValidationError("Vous avez déjà 50 recherches enregistrées : supprimez-en une.")
    saved = SavedSearch(user_id=user_id, name=name, query=query, created_at=now)
    session.add(saved)
    session.flush()
    return saved


def saved_searches(session: Session, user_id: int) -> list[SavedSearch]:
    return list(
        session.scalars(select(SavedSearch).where(SavedSearch.user_id == user_id).order_by(SavedSearch.name))
    )


def delete_saved_search(session: Session, user_id: int, search_id: int) -> None:
    saved = session.get(SavedSearch, search_id)
    if saved is None or saved.user_id != user_id:
        raise NotFound("Recherche introuvable.")
    session.delete(saved)
    session.flush()
