"""The notice search service: one results contract over SQLite FTS5 and PostgreSQL full-text search.

:class:`SearchQuery` is what a search *is*; it is parsed from, and written back
to, URL parameters, so any search can be bookmarked, shared, saved, and used by
the web list, the JSON API and the digests alike.

URL parameters (all optional; repeatable ones may also be comma-separated):

=================  ============================================================
``q``              words; ``"a phrase"`` in double quotes; accents and case ignored,
                   French inflections stemmed
``cpv``            CPV codes (8 digits, check digit allowed); hierarchical:
                   45000000 finds 45210000 (repeatable)
``dep``            départements ("77", "2A") (repeatable)
``nuts``           NUTS codes, prefix match (FR10 finds FR102) (repeatable)
``type``           works | supplies | services (repeatable)
``min``, ``max``   estimated value range, in euros
``closing``        deadline within the next N days (1–365)
``deadline_from``, ``deadline_to``   ISO dates (Paris days)
``status``         open | closed | awarded | cancelled (repeatable; default: any)
``source``         boamp | ted | eforms | boamp-xml | manual (repeatable)
``featured``       1: only notices featured by chamber staff
``tag``            staff sector tags (repeatable)
``firm``           1: only notices matching the user's firm (issue 5; ignored without a firm)
``sort``           relevance | deadline | published (default: relevance with ``q``, else published)
=================  ============================================================
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from decimal import Decimal, InvalidOperation
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import Select, func, or_, select
from sqlalchemy.orm import Session, selectinload

from tenderpool.notices.models import (
    Notice,
    NoticeCpv,
    NoticeDepartment,
    NoticeStatus,
    NoticeTag,
    Publication,
)

PARIS = ZoneInfo("Europe/Paris")
CONTRACT_TYPES = ("works", "supplies", "services")
STATUSES = tuple(s.value for s in NoticeStatus)
SOURCES = ("boamp", "ted", "eforms", "boamp-xml", "manual")
SORTS = ("relevance", "deadline", "published")
MAX_TEXT = 300
MAX_VALUES = 50

_CPV_RE = re.compile(r"^(\d{8})(?:-\d)?$")
_DEP_RE = re.compile(r"^(?:\d{2}|2[AB]|9[78]\d)$")
_NUTS_RE = re.compile(r"^FR[0-9A-Z]{0,3}$")
_TAG_RE = re.compile(r"^[\w\- ]{1,60}$")


class QueryParamError(ValueError):
    """A search parameter is wrong; ``param`` names it and ``message`` says why, in French."""

    def __init__(self, param: str, message: str) -> None:
        super().__init__(f"{param}: {message}")
        self.param = param
        self.message = message


@dataclass(frozen=True)
class SearchQuery:
    text: str = ""
    cpv: tuple[str, ...] = ()
    departments: tuple[str, ...] = ()
    nuts: tuple[str, ...] = ()
    contract_types: tuple[str, ...] = ()
    value_min: Decimal | None = None
    value_max: Decimal | None = None
    closing_within_days: int | None = None
    deadline_from: dt.date | None = None
    deadline_to: dt.date | None = None
    statuses: tuple[str, ...] = ()
    sources: tuple[str, ...] = ()
    featured_only: bool = False
    tags: tuple[str, ...] = ()
    matching_firm: bool = False
    sort: str = ""
    # Not from the URL: set by the caller from the user's role.
    include_rejected: bool = field(default=False, compare=False)
    firm_id: int | None = field(default=None, compare=False)

    @property
    def effective_sort(self) -> str:
        if self.sort:
            return self.sort
        return "relevance" if self.text else "published"

    @property
    def is_empty(self) -> bool:
        return self == SearchQuery()

    @classmethod
    def from_args(cls, args: Mapping[str, Any]) -> SearchQuery:
        """Parse URL parameters (a werkzeug MultiDict or a plain mapping); raise QueryParamError."""

        def values(name: str) -> list[str]:
            if hasattr(args, "getlist"):
                raw = args.getlist(name)
            else:
                got = args.get(name)
                raw = [] if got is None else got if isinstance(got, list | tuple) else [got]
            out = [part.strip() for item in raw for part in str(item).split(",") if part.strip()]
            if len(out) > MAX_VALUES:
                raise QueryParamError(name, f"au plus {MAX_VALUES} valeurs")
            return out

        def one(name: str) -> str | None:
            found = values(name)
            if len(found) > 1:
                raise QueryParamError(name, "une seule valeur attendue")
            return found[0] if found else None

        text = " ".join(str(args.get("q") or "").split())
        if len(text) > MAX_TEXT:
            raise QueryParamError("q", f"{MAX_TEXT} caractères au plus")

        cpv = []
        for code in values("cpv"):
            match = _CPV_RE.match(code)
            if not match:
                raise QueryParamError("cpv", f"« {code[:20]} » n'est pas un code CPV (8 chiffres)")
            cpv.append(match.group(1))
        departments = [d.upper() for d in values("dep")]
        for d in departments:
            if not _DEP_RE.match(d):
                raise QueryParamError("dep", f"« {d[:10]} » n'est pas un code de département")
        nuts = [n.upper() for n in values("nuts")]
        for n in nuts:
            if not _NUTS_RE.match(n):
                raise QueryParamError("nuts", f"« {n[:10]} » n'est pas un code NUTS français")
        types = values("type")
        for t in types:
            if t not in CONTRACT_TYPES:
                raise QueryParamError("type", f"valeurs possibles : {', '.join(CONTRACT_TYPES)}")
        statuses = values("status")
        for s in statuses:
            if s not in STATUSES:
                raise QueryParamError("status", f"valeurs possibles : {', '.join(STATUSES)}")
        sources = values("source")
        for s in sources:
            if s not in SOURCES:
                raise QueryParamError("source", f"valeurs possibles : {', '.join(SOURCES)}")
        tags = values("tag")
        for tag in tags:
            if not _TAG_RE.match(tag):
                raise QueryParamError("tag", "étiquette invalide")

        def amount(name: str) -> Decimal | None:
            raw = one(name)
            if raw is None:
                return None
            try:
                value = Decimal(raw.replace(" ", "").replace("\u202f", "").replace(",", "."))
            except InvalidOperation:
                raise QueryParamError(name, "montant invalide") from None
            if not value.is_finite() or value < 0 or value > Decimal("1e12"):
                raise QueryParamError(name, "montant hors limites")
            return value

        value_min, value_max = amount("min"), amount("max")
        if value_min is not None and value_max is not None and value_min > value_max:
            raise QueryParamError("min", "le minimum dépasse le maximum")

        closing: int | None = None
        raw_closing = one("closing")
        if raw_closing is not None:
            if not raw_closing.isdigit() or not 1 <= int(raw_closing) <= 365:
                raise QueryParamError("closing", "un nombre de jours entre 1 et 365")
            closing = int(raw_closing)

        def day(name: str) -> dt.date | None:
            raw = one(name)
            if raw is None:
                return None
            try:
                return dt.date.fromisoformat(raw)
            except ValueError:
                raise QueryParamError(name, "date attendue au format AAAA-MM-JJ") from None

        deadline_from, deadline_to = day("deadline_from"), day("deadline_to")
        if deadline_from and deadline_to and deadline_from > deadline_to:
            raise QueryParamError("deadline_from", "la date de début dépasse la date de fin")

        def flag(name: str) -> bool:
            raw = one(name)
            if raw is None:
                return False
            if raw in ("1", "true", "on", "oui"):
                return True
            if raw in ("0", "false", "off", "non", ""):
                return False
            raise QueryParamError(name, "1 ou 0 attendu")

        sort = one("sort") or ""
        if sort and sort not in SORTS:
            raise QueryParamError("sort", f"valeurs possibles : {', '.join(SORTS)}")
        return cls(
            text=text, cpv=tuple(cpv), departments=tuple(departments), nuts=tuple(nuts),
            contract_types=tuple(types), value_min=value_min, value_max=value_max, closing_within_days=closing,
            deadline_from=deadline_from, deadline_to=deadline_to, statuses=tuple(statuses), sources=tuple(sources),
            featured_only=flag("featured"), tags=tuple(tags), matching_firm=flag("firm"), sort=sort,
        )  # fmt: skip

    def to_args(self) -> list[tuple[str, str]]:
        """The canonical URL parameters of this query (stable order: bookmarks and saved searches)."""
        out: list[tuple[str, str]] = []
        if self.text:
            out.append(("q", self.text))
        out += [("cpv", c) for c in self.cpv]
        out += [("dep", d) for d in self.departments]
        out += [("nuts", n) for n in self.nuts]
        out += [("type", t) for t in self.contract_types]
        if self.value_min is not None:
            out.append(("min", format(self.value_min.normalize(), "f")))
        if self.value_max is not None:
            out.append(("max", format(self.value_max.normalize(), "f")))
        if self.closing_within_days is not None:
            out.append(("closing", str(self.closing_within_days)))
        if self.deadline_from:
            out.append(("deadline_from", self.deadline_from.isoformat()))
        if self.deadline_to:
            out.append(("deadline_to", self.deadline_to.isoformat()))
        out += [("status", s) for s in self.statuses]
        out += [("source", s) for s in self.sources]
        if self.featured_only:
            out.append(("featured", "1"))
        out += [("tag", t) for t in self.tags]
        if self.matching_firm:
            out.append(("firm", "1"))
        if self.sort:
            out.append(("sort", self.sort))
        return out

    def with_(self, **changes: Any) -> SearchQuery:
        return replace(self, **changes)


@dataclass
class SearchPage:
    """One page of results, in the order asked."""

    items: list[Notice]
    total: int
    page: int
    per_page: int
    next_cursor: str | None = None  # for the API's cursor pagination

    @property
    def pages(self) -> int:
        return max(1, -(-self.total // self.per_page))


def _paris_midnight(day: dt.date) -> dt.datetime:
    return dt.datetime.combine(day, dt.time(), tzinfo=PARIS)


def apply_filters(stmt: Select[Any], query: SearchQuery, *, now: dt.datetime) -> Select[Any]:
    """Every filter except the text: shared by both engines."""
    stmt = stmt.where(Notice.merged_into_id.is_(None))
    if not query.include_rejected:
        stmt = stmt.where(Notice.is_rejected.is_(False))
    if query.cpv:
        conditions = [NoticeCpv.cpv.startswith(_cpv_prefix(code)) for code in query.cpv]
        stmt = stmt.where(
            select(NoticeCpv.notice_id).where(NoticeCpv.notice_id == Notice.id, or_(*conditions)).exists()
        )
    if query.departments:
        stmt = stmt.where(
            select(NoticeDepartment.notice_id)
            .where(
                NoticeDepartment.notice_id == Notice.id, NoticeDepartment.department.in_(query.departments)
            )
            .exists()
        )
    if query.nuts:
        # NUTS are kept as a JSON list; the text form is searched ("FR102" within ["FR102", ...]).
        stmt = stmt.where(
            or_(*[func.cast(Notice.nuts, _text_type()).contains(f'"{code}') for code in query.nuts])
        )
    if query.contract_types:
        stmt = stmt.where(Notice.contract_type.in_(query.contract_types))
    if query.value_min is not None:
        stmt = stmt.where(Notice.estimated_value >= query.value_min)
    if query.value_max is not None:
        stmt = stmt.where(Notice.estimated_value <= query.value_max)
    if query.closing_within_days is not None:
        stmt = stmt.where(
            Notice.deadline_at > now, Notice.deadline_at <= now + dt.timedelta(days=query.closing_within_days)
        )
    if query.deadline_from is not None:
        stmt = stmt.where(Notice.deadline_at >= _paris_midnight(query.deadline_from))
    if query.deadline_to is not None:
        stmt = stmt.where(Notice.deadline_at < _paris_midnight(query.deadline_to + dt.timedelta(days=1)))
    if query.statuses:
        conditions = []
        for status in query.statuses:
            if status == "open":
                conditions.append(
                    (Notice.status == "open") & (Notice.deadline_at.is_(None) | (Notice.deadline_at > now))
                )
            elif status == "closed":
                conditions.append((Notice.status == "open") & (Notice.deadline_at <= now))
            else:
                conditions.append(Notice.status == status)
        stmt = stmt.where(or_(*conditions))
    if query.sources:
        conditions = []
        real = [s for s in query.sources if s != "manual"]
        if real:
            conditions.append(
                select(Publication.id)
                .where(Publication.notice_id == Notice.id, Publication.source.in_(real))
                .exists()
            )
        if "manual" in query.sources:
            conditions.append(Notice.is_manual.is_(True))
        stmt = stmt.where(or_(*conditions))
    if query.featured_only:
        stmt = stmt.where(Notice.is_featured.is_(True))
    if query.tags:
        stmt = stmt.where(
            select(NoticeTag.notice_id)
            .where(NoticeTag.notice_id == Notice.id, NoticeTag.tag.in_(query.tags))
            .exists()
        )
    return stmt


def _text_type() -> Any:
    from sqlalchemy import Text

    return Text()


def _cpv_prefix(code8: str) -> str:
    stripped = code8.rstrip("0")
    return stripped if len(stripped) >= 2 else code8[:2]


def _order(stmt: Select[Any], sort: str) -> Select[Any]:
    if sort == "deadline":
        return stmt.order_by(Notice.deadline_at.is_(None), Notice.deadline_at, Notice.id)
    return stmt.order_by(Notice.published_at.desc().nulls_last(), Notice.id.desc())


def _naive_text_condition(text: str) -> Any:
    """Placeholder text match (LIKE on title/buyer); replaced by the FTS implementation."""
    words = [w for w in re.split(r"\s+", text.replace('"', " ")) if w]
    return [or_(Notice.title.ilike(f"%{w}%"), Notice.buyer_name.ilike(f"%{w}%")) for w in words]


def search_notices(
    session: Session,
    query: SearchQuery,
    *,
    now: dt.datetime,
    page: int = 1,
    per_page: int = 20,
) -> SearchPage:
    """Run ``query``; results in ``query.effective_sort`` order, ``per_page`` per page."""
    stmt = apply_filters(select(Notice), query, now=now)
    if query.text:
        stmt = stmt.where(*_naive_text_condition(query.text))
    total = session.scalar(select(func.count()).select_from(stmt.order_by(None).subquery())) or 0
    sort = query.effective_sort
    ordered = _order(stmt, "published" if sort == "relevance" else sort)
    page = max(1, page)
    items = list(
        session.scalars(
            ordered.limit(per_page)
            .offset((page - 1) * per_page)
            .options(
                selectinload(Notice.lots),
                selectinload(Notice.publications),
                selectinload(Notice.cpv_links),
                selectinload(Notice.department_links),
            )
        )
    )
    return SearchPage(items=items, total=total, page=page, per_page=per_page)


def refresh_search_index(session: Session, notice_ids: Iterable[int]) -> None:
    """Rebuild the search text of these notices (call after they change); only flushes."""
    del session, notice_ids  # placeholder: implemented with the full-text index


def search_text_of(notice: Notice) -> Sequence[str]:
    """The parts of a notice that the text search looks in."""
    return [notice.title or "", notice.buyer_name or "", notice.description or "",
            *[lot.title or "" for lot in notice.lots]]  # fmt: skip
