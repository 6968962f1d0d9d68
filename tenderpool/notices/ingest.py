"""Ingestion: raw records → publications → one notice per procedure.

Rules (see README, "Notices"):

* A publication is unique on ``(source, source_ref)``. The same payload again
  changes nothing; a changed payload is parsed and applied again.
* A publication finds its notice, strongest key first: the eForms procedure
  identifier (BOAMP ``contractfolderid`` = TED ``ContractFolderID``); the
  references it carries to earlier publications (BOAMP ``annonce_lie`` /
  ``avisInitial``, legacy ``ANNONCE_ANTERIEUR``, eForms changed-notice ids); for
  calls only, the fallback key: buyer SIRET (or normalised name) + normalised
  title + deadline day in Paris time.
* A corrigendum, award or cancellation whose call has not arrived yet *waits*;
  the call attaches it when it comes, whatever the order.
* Each live field remembers the publication date that set it. A call only fills
  empty fields (the same call seen in a second source); a later corrigendum
  overrides and leaves a NoticeChange. An older publication never overrides a
  newer one, so the order of arrival does not matter.

Records are handled in batches with set-based look-ups, and the rows of new notices and
publications are written in bulk from plain objects, so that storage does not dominate parsing
(benchmarks/ingest.py).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import functools
import gc
import hashlib
import json
import logging
import re
import unicodedata
import zlib
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, NamedTuple, cast
from zoneinfo import ZoneInfo

from sqlalchemy import ARRAY, ColumnElement, Table, any_, bindparam, func, insert, or_, select
from sqlalchemy.orm import Session, selectinload

from scrapers.base import Nature, ParsedNotice, ParseError, RawRecord
from scrapers.registry import parse_raw
from tenderpool.notices.models import (
    Award,
    Lot,
    Notice,
    NoticeChange,
    NoticeCpv,
    NoticeDepartment,
    NoticeStatus,
    Publication,
    PublicationRef,
    PublicationState,
)
from tenderpool.notices.sanitize import safe_url, sanitize_html
from tenderpool.notices.search import index_notices
from tenderpool.reference import cpv_codes

log = logging.getLogger(__name__)
PARIS = ZoneInfo("Europe/Paris")
FOLLOW_UP = frozenset({Nature.CORRIGENDUM, Nature.AWARD, Nature.CANCELLATION})
Parser = Callable[[RawRecord], ParsedNotice]


@dataclass
class IngestStats:
    """What an ingestion did: the summary of `tenderpool import` and of a scrape run."""

    read: int = 0
    created: int = 0  # new notices
    updated: int = 0  # existing notices whose live fields changed
    linked: int = 0  # publications attached to a notice that already existed
    unchanged: int = 0  # the same payload again
    waiting: int = 0  # follow-ups that arrived before their call (they are attached when it comes)
    rejected: int = 0
    rejections: list[tuple[str, str]] = field(default_factory=list)  # (source:ref, reason)

    def add(self, other: IngestStats) -> None:
        for name in ("read", "created", "updated", "linked", "unchanged", "waiting", "rejected"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.rejections.extend(other.rejections)

    def as_dict(self) -> dict[str, Any]:
        return {
            "read": self.read, "created": self.created, "updated": self.updated, "linked": self.linked,
            "unchanged": self.unchanged, "waiting": self.waiting, "rejected": self.rejected,
        }  # fmt: skip


# --------------------------------------------------------------------------- normalisation

_NON_ALNUM = re.compile(r"[^a-z0-9]+")


@functools.lru_cache(maxsize=4096)
def fold_text(text: str) -> str:
    # Cached: linking folds the same title and buyer several times per record (look-up keys,
    # preload, the notice's own keys); 4096 entries hold a whole batch.
    decomposed = unicodedata.normalize("NFKD", text.lower())
    ascii_only = "".join(c for c in decomposed if not unicodedata.combining(c))
    return _NON_ALNUM.sub(" ", ascii_only).strip()


def fallback_key(
    buyer_siret: str | None, buyer_name: str | None, title: str | None, deadline_at: dt.datetime | None
) -> str | None:
    """Buyer SIRET (or normalised name) | normalised title | deadline day in Paris; None if one is missing."""
    keys = fallback_keys(buyer_siret, buyer_name, title, deadline_at)
    return keys[0] if keys else None


def name_key(buyer_name: str | None, title: str | None, deadline_at: dt.datetime | None) -> str | None:
    """The fallback key built on the buyer's normalised name (a source may lack the SIRET)."""
    keys = fallback_keys(None, buyer_name, title, deadline_at)
    return keys[0] if keys else None


def fallback_keys(
    buyer_siret: str | None, buyer_name: str | None, title: str | None, deadline_at: dt.datetime | None
) -> list[str]:
    """Every fallback key of a call: by SIRET first when known, then by buyer name."""
    if not title or deadline_at is None:
        return []
    tail = f"|{fold_text(title)[:200]}|{deadline_at.astimezone(PARIS).date().isoformat()}"
    buyers = [buyer_siret] if buyer_siret else []
    if buyer_name and fold_text(buyer_name):
        buyers.append(fold_text(buyer_name)[:80])
    return [buyer + tail for buyer in buyers]


def _valid_cpv(codes: Iterable[str], warnings: list[str]) -> list[str]:
    known = cpv_codes()
    kept: list[str] = []
    for code in codes:
        if code in known:
            if code not in kept:
                kept.append(code)
        else:
            warnings.append(f"CPV {code} absent de la nomenclature CPV 2008 : ignoré")
    return kept


def _self_refs(parsed: ParsedNotice) -> list[str]:
    refs = [parsed.source_ref]
    if parsed.notice_uuid:
        refs.append(parsed.notice_uuid.lower())
        if parsed.notice_version:
            refs.append(f"{parsed.notice_uuid.lower()}-{parsed.notice_version}")
    return list(dict.fromkeys(refs))


def _previous_refs(parsed: ParsedNotice) -> list[str]:
    return list(dict.fromkeys(ref.lower() if _looks_uuid(ref) else ref for ref in parsed.previous_refs))


_UUID_RE = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-")


def _looks_uuid(ref: str) -> bool:
    return bool(_UUID_RE.match(ref))


def compress(payload: bytes) -> bytes:
    return zlib.compress(payload, 1)  # fast: ingestion speed matters more than a few % of disk


def decompress(payload: bytes) -> bytes:
    return zlib.decompress(payload)


# --------------------------------------------------------------------------- values of a parsed record


def _paris_iso(value: dt.datetime | None) -> str | None:
    return None if value is None else value.astimezone(PARIS).isoformat()


def _display(value: Any) -> str | None:
    """How a value is written in a NoticeChange row."""
    if value is None:
        return None
    if isinstance(value, dt.datetime):
        return _paris_iso(value)
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return format(value.normalize(), "f")
    if isinstance(value, list | tuple):
        return json.dumps(list(value), ensure_ascii=False, default=str)
    return str(value)


def _lots_value(parsed: ParsedNotice, warnings: list[str]) -> list[dict[str, Any]]:
    lots: list[dict[str, Any]] = []
    seen: set[str] = set()
    for lot in parsed.lots:
        if lot.number in seen:
            warnings.append(f"lot {lot.number} en double : seul le premier est gardé")
            continue
        seen.add(lot.number)
        lots.append({
            "number": lot.number,
            "title": lot.title,
            "description": lot.description,
            "cpv": _valid_cpv(lot.cpv, warnings),
            "estimated_value": lot.estimated_value,
            "deadline_at": lot.deadline_at,
        })  # fmt: skip
    return lots


def _lots_of(notice: _AnyNotice) -> list[dict[str, Any]]:
    return [
        {"number": lot.number, "title": lot.title, "description": lot.description, "cpv": list(lot.cpv or []),
         "estimated_value": lot.estimated_value, "deadline_at": lot.deadline_at}
        for lot in notice.lots
    ]  # fmt: skip


def _comparable_lots(lots: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    def value(x: dict[str, Any]) -> Decimal | None:
        return None if x["estimated_value"] is None else Decimal(x["estimated_value"]).normalize()

    return [
        (x["number"], x["title"], x["description"], tuple(x["cpv"]), value(x), x["deadline_at"]) for x in lots
    ]


# --------------------------------------------------------------------------- the ingester


@contextlib.contextmanager
def _gc_paused() -> Iterator[None]:
    """Pause Python's cyclic garbage collector for one batch (bounded: at most a few hundred records).

    A batch keeps tens of thousands of objects alive (parsed records, rows, the session's
    notices) until it ends; they outlive the young generations and trigger full collections,
    each of which walks every object of the process, about one per batch. Reference counting
    still frees almost everything; the few cycles a batch leaves are collected after it.
    """
    if not gc.isenabled():  # paused by the caller (or by another thread's batch): leave it so
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


def _table(model: type[Any]) -> Table:
    table = model.__table__
    if not isinstance(table, Table):
        raise TypeError(table)
    return table


def _rows(model: type[Any], objects: Sequence[Any]) -> list[dict[str, Any]]:
    """The rows of plain objects (_NewNotice, _NewPublication), with the defaults a flush would fill in."""
    columns = list(_table(model).columns)
    defaults = [(c.key, c.default) for c in columns if c.default is not None]
    rows = []
    keys = [c.key for c in columns]
    for obj in objects:
        values = vars(obj)
        row = {key: values.get(key) for key in keys}
        for key, default in defaults:
            if row[key] is None:
                row[key] = default.arg if default.is_scalar else default.arg(None)  # type: ignore[attr-defined]
        rows.append(row)
    return rows


# A notice or publication created in the current batch is a plain object of one of these
# classes, not a mapped one, until its row is written by Ingester._write_new_rows: the ORM's
# attribute events and object set-up cost more than applying a record (benchmarks/ingest.py).
# They carry the attributes of the mapped classes that the ingester reads and writes, so that
# one code path (_apply) serves new and existing notices alike.


class _NewLot:
    __slots__ = ("cpv", "deadline_at", "description", "estimated_value", "number", "position", "title")

    def __init__(
        self,
        *,
        number: str,
        position: int,
        title: str | None,
        description: str | None,
        cpv: list[str],
        estimated_value: Decimal | None,
        deadline_at: dt.datetime | None,
    ) -> None:
        self.number = number
        self.position = position
        self.title = title
        self.description = description
        self.cpv = cpv
        self.estimated_value = estimated_value
        self.deadline_at = deadline_at


class _NewNotice:
    """A notice created in this batch (see above): the columns it sets, and its children as lists."""

    def __init__(self, *, title: str, now: dt.datetime, is_demo: bool) -> None:
        self.id: int | None = None  # allocated when the row is written
        self.procedure_id: str | None = None
        self.fallback_key: str | None = None
        self.name_key: str | None = None
        self.title = title
        self.buyer_name: str | None = None
        self.buyer_siret: str | None = None
        self.description: str | None = None
        self.contract_type: str | None = None
        self.procedure_type: str | None = None
        self.published_at: dt.date | None = None
        self.deadline_at: dt.datetime | None = None
        self.estimated_value: Decimal | None = None
        self.currency: str | None = None
        self.nuts: list[str] = []
        self.url: str | None = None
        self.dce_url: str | None = None
        self.status: str = NoticeStatus.OPEN.value
        self.field_dates: dict[str, Any] = {}
        self.locked_fields: dict[str, Any] = {}
        self.conflicts: dict[str, Any] = {}
        self.is_demo = is_demo
        self.created_at = now
        self.updated_at = now
        # Children (not columns): the values of Notice.cpv and Notice.departments, the lots, and
        # Award / NoticeChange objects that are never added to the session.
        self.cpv: list[str] = []
        self.departments: list[str] = []
        self.lots: list[_NewLot] = []
        self.awards: list[Award] = []
        self.changes: list[NoticeChange] = []


class _NewPublication:
    """A publication seen for the first time in this batch (see above)."""

    def __init__(self, *, source: str, source_ref: str, now: dt.datetime) -> None:
        self.id: int | None = None  # allocated before linking: notices record who set each field
        self.source = source
        self.source_ref = source_ref
        self.notice_id: int | None = None
        self.state = PublicationState.WAITING.value
        self.nature: str | None = None
        self.published_at: dt.date | None = None
        self.procedure_id: str | None = None
        self.notice_uuid: str | None = None
        self.aliases: list[str] = []
        self.previous_refs: list[str] = []
        self.title: str | None = None
        self.url: str | None = None
        self.payload = b""
        self.payload_sha256 = ""
        self.content_type = ""
        self.fetched_at = now
        self.fetch_url: str | None = None
        self.parse_error: str | None = None
        self.warnings: list[str] = []
        self.created_at = now
        self.parsed_at: dt.datetime | None = None


_AnyNotice = Notice | _NewNotice
_AnyPublication = Publication | _NewPublication


@dataclass
class _Index:
    """The notices a batch may touch, by each key a publication can find them with."""

    by_id: dict[int, Notice] = field(default_factory=dict)
    by_proc: dict[str, _AnyNotice] = field(default_factory=dict)
    by_key: dict[str, _AnyNotice] = field(default_factory=dict)
    by_ref: dict[str, _AnyNotice] = field(default_factory=dict)

    def add(self, notice: _AnyNotice) -> None:
        if notice.procedure_id:
            self.by_proc[notice.procedure_id] = notice
        for key in (notice.fallback_key, notice.name_key):
            if key:
                self.by_key.setdefault(key, notice)


class _Parsed(NamedTuple):
    publication: _AnyPublication
    parsed: ParsedNotice
    raw: RawRecord


@dataclass
class _Item:
    raw: RawRecord
    sha: str
    parsed: ParsedNotice | None = None
    error: str | None = None
    publication: _AnyPublication | None = None


class Ingester:
    """Applies raw records to the database in batches. Only flushes; the caller commits."""

    def __init__(
        self,
        session: Session,
        *,
        now: dt.datetime,
        parser: Parser = parse_raw,
        batch_size: int = 500,
        is_demo: bool = False,
        force: bool = False,
    ) -> None:
        self.force = force  # parse and apply even an unchanged payload (reparse after a parser fix)
        self._in_batch: set[int | None] = set()
        # Publications and notices created in the current batch stay out of the session (plain
        # objects) and are written once each, with a few bulk statements at the end: the unit of
        # work (an INSERT, then an UPDATE of notice_id, per publication) was the bottleneck of
        # ingestion (benchmarks/ingest.py).
        self._new_publications: list[_NewPublication] = []
        self._new_notices: list[_NewNotice] = []
        self._new_links: list[tuple[_AnyPublication, _NewNotice]] = []
        self._touched: set[Notice] = set()  # notices in the session that received a new publication
        self._applied: dict[int, _AnyNotice] = {}  # id(notice) → every notice a publication was applied to
        self.session = session
        self.now = now
        self.parser = parser
        self.batch_size = batch_size
        self.is_demo = is_demo

    # -- entry points

    def ingest(self, records: Iterable[RawRecord]) -> IngestStats:
        """Ingest records, in batches (streamed: never more than one batch in memory)."""
        stats = IngestStats()
        batch: list[RawRecord] = []
        for raw in records:
            batch.append(raw)
            if len(batch) >= self.batch_size:
                stats.add(self.ingest_batch(batch))
                batch = []
        if batch:
            stats.add(self.ingest_batch(batch))
        return stats

    def ingest_batch(self, records: Sequence[RawRecord]) -> IngestStats:
        with _gc_paused():
            return self._ingest_batch(records)

    def _ingest_batch(self, records: Sequence[RawRecord]) -> IngestStats:
        stats = IngestStats(read=len(records))
        items = self._dedupe([_Item(raw, hashlib.sha256(raw.payload).hexdigest()) for raw in records])
        stats.unchanged += len(records) - len(items)
        existing = self._existing_publications(items)
        todo: list[_Item] = []
        for item in items:
            pub = existing.get((item.raw.source, item.raw.source_ref))
            if pub is not None and pub.payload_sha256 == item.sha and not self.force:
                stats.unchanged += 1
                continue
            item.publication = pub
            todo.append(item)
        for item in todo:
            try:
                item.parsed = self.parser(item.raw)
            except ParseError as exc:
                item.error = exc.reason
            except Exception as exc:  # a parser bug on one record must not stop the batch
                log.exception("parser crashed on %s:%s", item.raw.source, item.raw.source_ref)
                item.error = f"erreur interne du parseur : {type(exc).__name__}: {exc}"
        self._new_publications, self._new_notices, self._new_links = [], [], []
        self._touched, self._applied = set(), {}
        for item in todo:
            self._store_publication(item)
            if item.error is not None:
                stats.rejected += 1
                stats.rejections.append((f"{item.raw.source}:{item.raw.source_ref}", item.error))
        fresh = self._new_publications
        for new_pub, pub_id in zip(fresh, self._allocate_ids(Publication, len(fresh)), strict=True):
            new_pub.id = pub_id  # needed while linking; the row is written after it
        self.session.flush()  # publications seen before, parsed again: the ORM writes them
        parsed_items = [
            _Parsed(item.publication, item.parsed, item.raw)
            for item in todo
            if item.parsed is not None and item.publication is not None
        ]
        # Nothing may be flushed before the batch's new rows are written: changes and awards on
        # notices of the session already name the new publications.
        with self.session.no_autoflush:
            self._link_all(parsed_items, stats)
            self._write_new_rows()
            self._store_refs(parsed_items)
        self.session.flush()
        for notice in self._touched:  # their publications were written behind the ORM's back
            self.session.expire(notice, ["publications"])
        # Every notice a publication of this batch was applied to: its searchable text may have changed.
        # The new ones are _NewNotice objects, with the id, title, buyer_name, description and
        # lots (titles) that index_notices reads.
        index_notices(self.session, cast("list[Notice]", list(self._applied.values())))
        return stats

    # -- storage

    @staticmethod
    def _dedupe(items: list[_Item]) -> list[_Item]:
        """Within one batch keep the last record of each (source, source_ref)."""
        last: dict[tuple[str, str], _Item] = {}
        for item in items:
            last[(item.raw.source, item.raw.source_ref)] = item
        return list(last.values())

    def _existing_publications(self, items: list[_Item]) -> dict[tuple[str, str], Publication]:
        keys = {(item.raw.source, item.raw.source_ref) for item in items}
        if not keys:
            return {}
        # Both columns of the unique index, each as a list; the pairs are checked here.
        rows = self.session.scalars(
            select(Publication).where(
                self._one_of(Publication.source, {source for source, _ in keys}),
                self._one_of(Publication.source_ref, {ref for _, ref in keys}),
            )
        )
        return {(pub.source, pub.source_ref): pub for pub in rows if (pub.source, pub.source_ref) in keys}

    def _one_of(self, column: Any, values: Iterable[Any]) -> ColumnElement[bool]:
        """``column IN values``; on PostgreSQL ``= ANY`` of one array parameter: psycopg parses a
        statement of a thousand placeholders anew each time, at a cost above the look-up's."""
        values = list(values)
        if self.session.get_bind().dialect.name == "sqlite":
            return cast(ColumnElement[bool], column.in_(values))
        return cast(ColumnElement[bool], column == any_(bindparam(None, values, type_=ARRAY(column.type))))

    def _store_publication(self, item: _Item) -> None:
        raw, parsed = item.raw, item.parsed
        pub = item.publication
        if pub is None:
            # A plain object: written by _write_new_rows once it knows its notice.
            pub = _NewPublication(source=raw.source, source_ref=raw.source_ref, now=self.now)
            self._new_publications.append(pub)
            item.publication = pub
        pub.payload = compress(raw.payload)
        pub.payload_sha256 = item.sha
        pub.content_type = raw.content_type
        pub.fetched_at = raw.fetched_at
        pub.fetch_url = raw.url
        pub.parsed_at = self.now
        if parsed is None:
            pub.state = PublicationState.QUARANTINED.value
            pub.parse_error = item.error
            pub.warnings = []
            return
        pub.parse_error = None
        pub.nature = parsed.nature.value
        pub.published_at = parsed.published_at
        pub.procedure_id = parsed.procedure_id.lower() if parsed.procedure_id else None
        pub.notice_uuid = parsed.notice_uuid.lower() if parsed.notice_uuid else None
        pub.aliases = [r for r in _self_refs(parsed) if r != parsed.source_ref]
        pub.previous_refs = _previous_refs(parsed)
        pub.title = parsed.title
        pub.url = safe_url(parsed.url)
        pub.warnings = list(parsed.warnings)
        if pub.state != PublicationState.LINKED or pub.notice_id is None:
            pub.state = PublicationState.WAITING.value  # until linked below

    def _allocate_ids(self, model: type[Any], count: int) -> list[int]:
        """Ids for rows written later with plain executemany statements.

        An INSERT … RETURNING of a whole batch is one huge statement that psycopg parses again
        each time, and the publications' ids are needed while linking, before their rows can be
        written (notices record which publication set each field).
        """
        if count == 0:
            return []
        table = _table(model)
        if self.session.get_bind().dialect.name == "sqlite":
            # Safe: every SQLite transaction starts with BEGIN IMMEDIATE (tenderpool.db), so no
            # other writer can insert a row before this one commits.
            first = (self.session.scalar(select(func.max(table.c.id))) or 0) + 1
            return list(range(first, first + count))
        sequence = func.pg_get_serial_sequence(table.name, "id")
        return list(
            self.session.scalars(select(func.nextval(sequence)).select_from(func.generate_series(1, count)))
        )

    def _store_refs(self, items: list[_Parsed]) -> None:
        if not items:
            return
        # A new publication has no reference stored yet.
        known = [item.publication.id for item in items if isinstance(item.publication, Publication)]
        have: set[tuple[int | None, str, str]] = set()
        if known:
            rows = self.session.execute(
                select(PublicationRef.publication_id, PublicationRef.kind, PublicationRef.ref).where(
                    PublicationRef.publication_id.in_(known)
                )
            )
            have.update((pid, kind, ref) for pid, kind, ref in rows)
        want: set[tuple[int | None, str, str]] = set()
        for item in items:
            pid = item.publication.id
            want.update((pid, "self", ref) for ref in _self_refs(item.parsed))
            want.update((pid, "previous", ref) for ref in _previous_refs(item.parsed))
        for pid, kind, ref in have - want:
            row = self.session.get(PublicationRef, (pid, kind, ref))
            if row is not None:
                self.session.delete(row)
        # Written in bulk: these rows are never read back through the ORM in this batch.
        new_rows = [{"publication_id": p, "kind": k, "ref": r} for p, k, r in want - have]
        self._insert(PublicationRef, new_rows)

    # -- linking

    def _link_all(self, items: list[_Parsed], stats: IngestStats) -> None:
        # Calls first, so that follow-ups in the same batch find them; each in date order.
        def order(item: _Parsed) -> tuple[int, dt.date, str]:
            return (
                item.parsed.nature in FOLLOW_UP,
                item.parsed.published_at or dt.date.min,
                item.raw.source_ref,
            )

        items = sorted(items, key=order)
        # Publications of this batch are linked by the loop itself, never as "waiting" ones.
        self._in_batch = {item.publication.id for item in items}
        index = self._preload(items)
        linked: list[tuple[_AnyNotice, ParsedNotice]] = []
        # Look-ups go through the in-memory index built by _preload: no query, no flush per record.
        with self.session.no_autoflush:
            for item in items:
                notice = self._link_one(item.publication, item.parsed, stats, index)
                if notice is not None:
                    linked.append((notice, item.parsed))
            self._attach_waiting(linked, stats)

    def _preload(self, items: list[_Parsed]) -> _Index:
        """Load, in a few queries, every notice the batch may touch, and index them."""
        index = _Index()
        proc_ids = {i.parsed.procedure_id.lower() for i in items if i.parsed.procedure_id}
        keys = {k for i in items for k in self._fallbacks(i.parsed)}
        refs = {r for i in items for r in _previous_refs(i.parsed)}
        notice_ids = {i.publication.notice_id for i in items if i.publication.notice_id}
        ref_to_notice: dict[str, int] = {}
        if refs:
            for ref, nid in self.session.execute(
                select(PublicationRef.ref, Publication.notice_id)
                .join(Publication, PublicationRef.publication_id == Publication.id)
                .where(
                    PublicationRef.kind == "self",
                    self._one_of(PublicationRef.ref, refs),
                    Publication.notice_id.is_not(None),
                )
            ):
                if nid is not None:
                    ref_to_notice[ref] = nid
        notice_ids.update(ref_to_notice.values())
        conditions = []
        if proc_ids:
            conditions.append(self._one_of(Notice.procedure_id, proc_ids))
        if keys:
            conditions.append(self._one_of(Notice.fallback_key, keys))
            conditions.append(self._one_of(Notice.name_key, keys))
        if notice_ids:
            conditions.append(self._one_of(Notice.id, notice_ids))
        if not conditions:
            return index
        notices = self.session.scalars(
            select(Notice).where(or_(*conditions)).options(
                selectinload(Notice.lots), selectinload(Notice.awards), selectinload(Notice.cpv_links),
                selectinload(Notice.department_links),
            )
        ).all()  # fmt: skip
        by_id = {n.id: n for n in notices}
        for notice in notices:
            index.add(notice)
        for ref, nid in ref_to_notice.items():
            if nid in by_id:
                index.by_ref[ref] = by_id[nid]
        index.by_id = by_id
        return index

    @staticmethod
    def _fallbacks(parsed: ParsedNotice) -> list[str]:
        return fallback_keys(parsed.buyer_siret, parsed.buyer_name, parsed.title, parsed.deadline_at)

    def _find_notice(self, pub: _AnyPublication, parsed: ParsedNotice, index: _Index) -> _AnyNotice | None:
        if isinstance(pub, Publication) and pub.notice is not None:
            return pub.notice
        if pub.notice_id is not None and pub.notice_id in index.by_id:
            return index.by_id[pub.notice_id]
        if parsed.procedure_id and (found := index.by_proc.get(parsed.procedure_id.lower())) is not None:
            return found
        for ref in _previous_refs(parsed):
            if (found := index.by_ref.get(ref)) is not None:
                return found
        if parsed.nature not in FOLLOW_UP:
            for key in self._fallbacks(parsed):
                if (found := index.by_key.get(key)) is not None:
                    return found
        return None

    def _link_one(
        self, pub: _AnyPublication, parsed: ParsedNotice, stats: IngestStats, index: _Index
    ) -> _AnyNotice | None:
        already_linked = pub.notice_id is not None
        notice = self._find_notice(pub, parsed, index)
        # A follow-up that names earlier publications waits for them. One that names
        # none (an eForms award known only by its procedure id) starts its own notice,
        # which the call will join through the procedure id if it ever comes.
        if notice is None and parsed.nature in FOLLOW_UP and _previous_refs(parsed):
            pub.state = PublicationState.WAITING.value
            pub.notice_id = None
            stats.waiting += 1
            return None
        created = notice is None
        if notice is None:
            notice = _NewNotice(title=parsed.title or "(sans titre)", now=self.now, is_demo=self.is_demo)
            self._new_notices.append(notice)
        self._attach(pub, notice)
        pub.state = PublicationState.LINKED.value
        # A publication pinned to a notice by staff (merge, split) must not take a procedure id
        # that another notice already holds.
        owner = index.by_proc.get(parsed.procedure_id.lower()) if parsed.procedure_id else None
        changed = self._apply(notice, pub, parsed, is_new=created, claim_procedure_id=owner in (None, notice))
        index.add(notice)
        for ref in _self_refs(parsed):
            index.by_ref[ref] = notice
        if created:
            stats.created += 1
        else:
            if not already_linked:
                stats.linked += 1
            if changed:
                stats.updated += 1
        return notice

    def _attach_waiting(self, linked: list[tuple[_AnyNotice, ParsedNotice]], stats: IngestStats) -> None:
        """Follow-ups that arrived before their call and name it (or its procedure): attach them now."""
        if not linked:
            return
        notice_by_ref: dict[str, _AnyNotice] = {}
        notice_by_proc: dict[str, _AnyNotice] = {}
        for notice, parsed in linked:
            for ref in _self_refs(parsed):
                notice_by_ref[ref] = notice
            if notice.procedure_id:
                notice_by_proc[notice.procedure_id] = notice
        targets: dict[int, _AnyNotice] = {}
        for pid, ref in self.session.execute(
            select(PublicationRef.publication_id, PublicationRef.ref)
            .join(Publication, Publication.id == PublicationRef.publication_id)
            .where(PublicationRef.kind == "previous", self._one_of(PublicationRef.ref, notice_by_ref),
                   Publication.state == PublicationState.WAITING.value)
        ):  # fmt: skip
            targets.setdefault(pid, notice_by_ref[ref])
        if notice_by_proc:
            for pid, proc in self.session.execute(
                select(Publication.id, Publication.procedure_id).where(
                    self._one_of(Publication.procedure_id, notice_by_proc),
                    Publication.state == PublicationState.WAITING.value,
                )
            ):
                if proc is not None:
                    targets.setdefault(pid, notice_by_proc[proc])
        for in_batch in self._in_batch:
            if in_batch is not None:
                targets.pop(in_batch, None)
        if not targets:
            return
        followers = self.session.scalars(select(Publication).where(Publication.id.in_(list(targets)))).all()
        for follower in sorted(followers, key=lambda p: (p.published_at or dt.date.min, p.source_ref)):
            notice = targets[follower.id]
            try:
                follower_parsed = self.parser(self._raw_of(follower))
            except ParseError as exc:
                follower.state = PublicationState.QUARANTINED.value
                follower.parse_error = exc.reason
                continue
            self._attach(follower, notice)
            follower.state = PublicationState.LINKED.value
            stats.linked += 1
            if self._apply(notice, follower, follower_parsed, is_new=False):
                stats.updated += 1

    def _attach(self, pub: _AnyPublication, notice: _AnyNotice) -> None:
        if isinstance(notice, _NewNotice):  # its id is allocated when its row is written
            self._new_links.append((pub, notice))
        elif isinstance(pub, _NewPublication):  # its row is written with notice_id
            pub.notice_id = notice.id
            self._touched.add(notice)
        else:
            pub.notice = notice

    def _write_new_rows(self) -> None:
        """Write the batch's new notices, their children and new publications in bulk."""
        notices = self._new_notices
        for notice, new_id in zip(notices, self._allocate_ids(Notice, len(notices)), strict=True):
            notice.id = new_id
        self._insert(Notice, _rows(Notice, notices))
        for pub, notice in self._new_links:
            pub.notice_id = notice.id
        self._insert(Publication, _rows(Publication, self._new_publications))
        lots: list[dict[str, Any]] = []
        cpvs: list[dict[str, Any]] = []
        departments: list[dict[str, Any]] = []
        awards: list[dict[str, Any]] = []
        changes: list[dict[str, Any]] = []
        for notice in notices:
            notice_id = notice.id
            lots += [
                {"notice_id": notice_id, "number": x.number, "position": x.position, "title": x.title,
                 "description": x.description, "cpv": x.cpv, "estimated_value": x.estimated_value,
                 "deadline_at": x.deadline_at}
                for x in notice.lots
            ]  # fmt: skip
            cpvs += [{"notice_id": notice_id, "cpv": c, "position": i} for i, c in enumerate(notice.cpv)]
            departments += [{"notice_id": notice_id, "department": d} for d in notice.departments]
            awards += [
                {"notice_id": notice_id, "publication_id": x.publication_id, "lot_number": x.lot_number,
                 "winner_name": x.winner_name, "winner_siret": x.winner_siret, "amount": x.amount,
                 "currency": x.currency, "unsuccessful": x.unsuccessful}
                for x in notice.awards
            ]  # fmt: skip
            changes += [
                {"notice_id": notice_id, "publication_id": x.publication_id, "source_ref": x.source_ref,
                 "field": x.field, "old_value": x.old_value, "new_value": x.new_value, "at": x.at}
                for x in notice.changes
            ]  # fmt: skip
        self._insert(Lot, lots)
        self._insert(NoticeCpv, cpvs)
        self._insert(NoticeDepartment, departments)
        self._insert(Award, awards)
        self._insert(NoticeChange, changes)

    def _insert(self, model: type[Any], rows: list[dict[str, Any]]) -> None:
        """INSERT rows (each with the same keys) in bulk, behind the ORM's back.

        Core executemany on SQLite, where the statement costs less than the rows. COPY on
        PostgreSQL (psycopg 3): the rows stream in one statement, at half the client's work of
        an executemany and less of the server's (benchmarks/ingest.py).
        """
        if not rows:
            return
        table = _table(model)
        connection = self.session.connection()
        dialect = connection.dialect
        if dialect.name != "postgresql" or dialect.driver != "psycopg":
            connection.execute(insert(table), rows)
            return
        from psycopg import sql  # PostgreSQL through psycopg 3 only

        columns = [column for column in table.columns if column.key in rows[0]]
        # The values as SQLAlchemy binds them (JSON, UTCDateTime…), so that a row reads back the same.
        processors = [column.type.dialect_impl(dialect).bind_processor(dialect) for column in columns]
        keyed = list(zip([column.key for column in columns], processors, strict=True))
        statement = sql.SQL("COPY {} ({}) FROM STDIN").format(
            sql.Identifier(table.name), sql.SQL(", ").join(sql.Identifier(column.name) for column in columns)
        )
        cursor = connection.connection.driver_connection.cursor()  # type: ignore[union-attr]
        try:
            with cursor.copy(statement) as copy:
                for row in rows:
                    copy.write_row(
                        [row[key] if process is None else process(row[key]) for key, process in keyed]
                    )
        finally:
            cursor.close()

    @staticmethod
    def _raw_of(pub: Publication) -> RawRecord:
        return RawRecord(
            source=pub.source,
            source_ref=pub.source_ref,
            payload=decompress(pub.payload),
            content_type=pub.content_type,
            fetched_at=pub.fetched_at,
            url=pub.fetch_url,
        )

    # -- applying a publication to its notice

    def _apply(
        self,
        notice: _AnyNotice,
        pub: _AnyPublication,
        parsed: ParsedNotice,
        *,
        is_new: bool,
        claim_procedure_id: bool = True,
    ) -> bool:
        """Apply one publication's values; return True if a live field changed on an existing notice."""
        self._applied[id(notice)] = notice
        warnings = list(parsed.warnings)
        when = (parsed.published_at or self.now.date()).isoformat()
        follow_up = parsed.nature in FOLLOW_UP
        changed = False
        dates: dict[str, Any] = dict(notice.field_dates or {})
        locks: dict[str, Any] = dict(notice.locked_fields or {})
        conflicts: dict[str, Any] = dict(notice.conflicts or {})

        def may_set(name: str, current: Any) -> bool:
            set_on, set_by = dates.get(name) or [None, None]
            if current in (None, "", [], ()):
                return True
            if set_by == pub.id:  # this very publication set it: a re-parse may correct it
                return True
            return follow_up and (set_on is None or when >= set_on)

        def assign(
            name: str,
            new: Any,
            current: Any,
            setter: Callable[[Any], None],
            same: Callable[[Any, Any], bool] = lambda a, b: a == b,
        ) -> None:
            nonlocal changed
            if new in (None, "", [], ()):
                return
            lock = locks.get(name)
            if lock is not None:
                if _display(new) == lock.get("source_value"):
                    return  # the source still says what it said when staff edited the field: keep the edit
                # The source changed the field again: it wins, and staff see the conflict.
                conflicts[name] = {
                    "edited": lock.get("value"), "source_value": _display(new), "source_ref": pub.source_ref,
                    "at": self.now.isoformat(), "by": lock.get("by"),
                }  # fmt: skip
                locks.pop(name)
            elif current not in (None, "", [], ()) and same(current, new):
                # Already this value (e.g. the title a new notice starts with): remember who set it,
                # so that a corrected re-publication of the same record may change it later.
                dates.setdefault(name, [when, pub.id])
                return
            elif not may_set(name, current):
                return
            setter(new)
            dates[name] = [when, pub.id]
            if not is_new and current not in (None, "", [], ()):
                self._record_change(notice, pub, name, _display(current), _display(new))
                changed = True
            elif not is_new:
                changed = True

        def set_attr(name: str) -> Callable[[Any], None]:
            return lambda value: setattr(notice, name, value)

        title = parsed.title if parsed.title and parsed.title != "(sans titre)" else None
        if not follow_up or not notice.title or notice.title == "(sans titre)":
            assign(
                "title", title, notice.title if notice.title != "(sans titre)" else None, set_attr("title")
            )
        assign("buyer_name", parsed.buyer_name, notice.buyer_name, set_attr("buyer_name"))
        assign("buyer_siret", parsed.buyer_siret, notice.buyer_siret, set_attr("buyer_siret"))
        description = sanitize_html(parsed.description) if parsed.description else None
        assign("description", description, notice.description, set_attr("description"))
        ctype = parsed.contract_type.value if parsed.contract_type else None
        assign("contract_type", ctype, notice.contract_type, set_attr("contract_type"))
        assign("procedure_type", parsed.procedure_type, notice.procedure_type, set_attr("procedure_type"))
        assign("deadline_at", parsed.deadline_at, notice.deadline_at, set_attr("deadline_at"))
        assign(
            "estimated_value",
            parsed.estimated_value,
            notice.estimated_value,
            set_attr("estimated_value"),
            same=lambda a, b: a is not None and b is not None and Decimal(a) == Decimal(b),
        )
        assign("currency", parsed.currency, notice.currency, set_attr("currency"))
        assign("nuts", list(parsed.nuts), list(notice.nuts or []), set_attr("nuts"))
        assign("url", safe_url(parsed.url), notice.url, set_attr("url"))
        assign("dce_url", safe_url(parsed.dce_url), notice.dce_url, set_attr("dce_url"))
        assign("cpv", _valid_cpv(parsed.cpv, warnings), notice.cpv, lambda v: self._set_cpv(notice, v))
        assign(
            "departments",
            sorted(set(parsed.departments)),
            notice.departments,
            lambda v: self._set_departments(notice, v),
        )
        new_lots = _lots_value(parsed, warnings)
        assign(
            "lots",
            new_lots,
            _lots_of(notice),
            lambda v: self._set_lots(notice, v),
            same=lambda a, b: _comparable_lots(a) == _comparable_lots(b),
        )
        if parsed.procedure_id and not notice.procedure_id and claim_procedure_id:
            notice.procedure_id = parsed.procedure_id.lower()
        if parsed.nature in (Nature.INITIAL, Nature.PRIOR_INFORMATION, Nature.OTHER) and parsed.published_at:
            if notice.published_at is None or parsed.published_at < notice.published_at:
                notice.published_at = parsed.published_at
        elif notice.published_at is None and parsed.published_at:
            notice.published_at = parsed.published_at
        if notice.fallback_key is None and not follow_up:
            keys = self._fallbacks(parsed)
            notice.fallback_key = keys[0] if keys else None
            notice.name_key = name_key(parsed.buyer_name, parsed.title, parsed.deadline_at)

        if parsed.nature is Nature.AWARD or parsed.awards:
            changed |= self._apply_awards(notice, pub, parsed, is_new=is_new)
        if parsed.nature is Nature.CANCELLATION or parsed.is_cancelled:
            changed |= self._set_status(notice, pub, NoticeStatus.CANCELLED, is_new=is_new)
        notice.field_dates = dates
        if locks != (notice.locked_fields or {}):
            notice.locked_fields = locks
        if conflicts != (notice.conflicts or {}):
            notice.conflicts = conflicts
        pub.warnings = warnings
        if changed or is_new:
            notice.updated_at = self.now
        return changed

    def _record_change(
        self, notice: _AnyNotice, pub: _AnyPublication, name: str, old: str | None, new: str | None
    ) -> None:
        change = NoticeChange(
            field=name, old_value=old, new_value=new, at=self.now, source_ref=pub.source_ref
        )
        change.publication_id = pub.id
        notice.changes.append(change)

    def _set_status(
        self, notice: _AnyNotice, pub: _AnyPublication, status: NoticeStatus, *, is_new: bool
    ) -> bool:
        if notice.status == status.value:
            return False
        if notice.status == NoticeStatus.CANCELLED and status is NoticeStatus.AWARDED:
            return False  # an award never revives a cancelled procedure
        old = notice.status
        notice.status = status.value
        if not is_new:
            self._record_change(notice, pub, "status", old, status.value)
        return not is_new

    def _apply_awards(
        self, notice: _AnyNotice, pub: _AnyPublication, parsed: ParsedNotice, *, is_new: bool
    ) -> bool:
        wanted = [
            (a.lot, a.winner_name, a.winner_siret, a.amount, a.currency, a.unsuccessful)
            for a in parsed.awards
        ]
        current = [
            (a.lot_number, a.winner_name, a.winner_siret, a.amount, a.currency, a.unsuccessful)
            for a in notice.awards if a.publication_id == pub.id
        ]  # fmt: skip
        changed = False
        if wanted != current:
            for award in [a for a in notice.awards if a.publication_id == pub.id]:
                notice.awards.remove(award)
            for lot, name, siret, amount, currency, unsuccessful in wanted:
                award = Award(
                    lot_number=lot,
                    winner_name=name,
                    winner_siret=siret,
                    amount=amount,
                    currency=currency,
                    unsuccessful=unsuccessful,
                )
                award.publication_id = pub.id
                notice.awards.append(award)
            if not is_new:
                names = ", ".join(n for _, n, *_ in wanted if n) or None
                self._record_change(notice, pub, "awards", None, names)
                changed = True
        if parsed.awards and all(a.unsuccessful for a in parsed.awards):
            changed |= self._set_status(notice, pub, NoticeStatus.CANCELLED, is_new=is_new)  # sans suite
        else:
            changed |= self._set_status(notice, pub, NoticeStatus.AWARDED, is_new=is_new)
        return changed

    # A notice created in this batch is a plain _NewNotice: its children are plain lists, written
    # by _write_new_rows.

    @staticmethod
    def _set_cpv(notice: _AnyNotice, codes: list[str]) -> None:
        if isinstance(notice, _NewNotice):
            notice.cpv = codes
            return
        existing = {link.cpv: link for link in notice.cpv_links}
        notice.cpv_links = [existing.get(code) or NoticeCpv(cpv=code) for code in codes]
        for position, link in enumerate(notice.cpv_links):
            link.position = position

    @staticmethod
    def _set_departments(notice: _AnyNotice, departments: list[str]) -> None:
        if isinstance(notice, _NewNotice):
            notice.departments = departments
            return
        existing = {link.department: link for link in notice.department_links}
        notice.department_links = [existing.get(d) or NoticeDepartment(department=d) for d in departments]

    @staticmethod
    def _set_lots(notice: _AnyNotice, lots: list[dict[str, Any]]) -> None:
        if isinstance(notice, _NewNotice):
            notice.lots = [_NewLot(position=p, **data) for p, data in enumerate(lots)]
            return
        by_number = {lot.number: lot for lot in notice.lots}
        kept: list[Lot] = []
        for position, data in enumerate(lots):
            lot = by_number.get(data["number"]) or Lot(number=data["number"])
            lot.position = position
            lot.title = data["title"]
            lot.description = data["description"]
            lot.cpv = data["cpv"]
            lot.estimated_value = data["estimated_value"]
            lot.deadline_at = data["deadline_at"]
            kept.append(lot)
        notice.lots = kept


def ingest_records(
    session: Session,
    records: Iterable[RawRecord],
    *,
    now: dt.datetime,
    parser: Parser = parse_raw,
    batch_size: int = 500,
    is_demo: bool = False,
) -> IngestStats:
    """Store and link raw records (streamed in batches); only flushes."""
    return Ingester(session, now=now, parser=parser, batch_size=batch_size, is_demo=is_demo).ingest(records)
