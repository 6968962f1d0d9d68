"""Services of the notices domain: export, re-parse, import of files, quarantine."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload

from scrapers.base import RawRecord
from scrapers.files import iter_file_records
from tenderpool.notices.ingest import Ingester, IngestStats, decompress
from tenderpool.notices.models import Notice, Publication, PublicationState

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


def quarantined(session: Session, *, limit: int = 200) -> list[Publication]:
    return list(session.scalars(
        select(Publication).where(Publication.state == PublicationState.QUARANTINED.value)
        .order_by(Publication.created_at.desc()).limit(limit)
    ))  # fmt: skip
