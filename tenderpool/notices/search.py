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

The text is read the same way on both engines, with PostgreSQL's web-search syntax: words all
required, ``"a phrase"``, ``or`` between two words or phrases (binding tighter than the implicit
"and"), ``-word`` or ``-"a phrase"`` to exclude. Any other character is a separator or part of a
word, never an operator: no input can make a query fail.

* SQLite: ``notice_fts`` (FTS5) holds each notice's text folded and stemmed word by word with the
  Snowball French stemmer (column ``content``); queries are stemmed the same way and every word
  quoted. Ranked by bm25.
* PostgreSQL: ``notice_search.tsv`` is ``to_tsvector('french', unaccent(document))``; queries go
  through ``websearch_to_tsquery('french', unaccent(...))``. Ranked by ts_rank. French stop words
  ("de", "la") are dropped there, so a query of stop words only finds nothing on PostgreSQL.

The index also holds each notice's *facets* (départements, CPV prefixes, status, deadline day,
value, type, featured: see the facets section below), kept current by triggers. A search with words,
or with two filters that have facets, is one look-up of the index, which returns the few notices
that may match; only they are checked against the filters on their rows. A search with one filter
walks that filter's index (or the dates' indexes) in the order of the page.

Relevance ranks the newest ``RANK_LIMIT`` (1 000) matches, by arrival, which is all of them for
any query that a person reads to the end; totals are counted up to ``COUNT_LIMIT`` (1 000), beyond
which a page says "plus de 1 000 avis" (``SearchPage.total_capped``). Both bounds keep a common
word from costing a read of a quarter of the notices (benchmarks/search.py).

``notice_search.document`` (title, buyer, description without HTML, lot titles) is kept by
:func:`refresh_search_index`, which the ingestion calls for the notices of each batch;
:func:`rebuild_search_index` (``tenderpool notices reindex``) redoes every notice. A notice is found
by a search once indexed (as by its words), which every way of making one does.

PostgreSQL reads ``pg_stats`` (what ANALYZE, or autovacuum after an ingestion, gathers) to size
its first look-up; without statistics it is only slower.
"""

from __future__ import annotations

import base64
import bisect
import datetime as dt
import functools
import hashlib
import itertools
import json
import re
import threading
import time
import unicodedata
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from decimal import Decimal, InvalidOperation
from html.parser import HTMLParser
from typing import Any, NamedTuple, cast
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

import snowballstemmer  # type: ignore[import-untyped]
from sqlalchemy import (
    Boolean,
    ColumnElement,
    Connection,
    Float,
    Integer,
    Select,
    Table,
    Text,
    and_,
    any_,
    bindparam,
    column,
    delete,
    false,
    func,
    insert,
    literal_column,
    or_,
    select,
    table,
)
from sqlalchemy import cast as cast_
from sqlalchemy import text as sql_text
from sqlalchemy.dialects.postgresql import ARRAY, TSQUERY, TSVECTOR
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.orm import Session, aliased
from sqlalchemy.sql import operators
from sqlalchemy.sql.elements import UnaryExpression

from tenderpool.notices.models import (
    Lot,
    Notice,
    NoticeCpv,
    NoticeDepartment,
    NoticeSearch,
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
# Totals are counted up to this many notices; beyond, a page says "plus de 1 000 avis". Counting
# 100 000 matches cost more than finding the page itself (benchmarks/search.py), and no one pages
# that far: a bigger total only says "refine your search".
COUNT_LIMIT = 1000
# Relevance orders the newest RANK_LIMIT matches (by arrival); fewer matches are all ranked.
RANK_LIMIT = 1000

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
            if (
                not (raw_closing.isascii() and raw_closing.isdigit() and len(raw_closing) <= 3)
                or not 1 <= int(raw_closing) <= 365
            ):
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
            contract_types=tuple(types), value_min=value_min, value_max=value_max,
            closing_within_days=closing, deadline_from=deadline_from, deadline_to=deadline_to,
            statuses=tuple(statuses), sources=tuple(sources),
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


@dataclass(frozen=True)
class NoticeSummary:
    """What a list row shows of a notice's collections, read in the same statement as the notice."""

    departments: list[str]  # sorted
    sources: list[str]  # each source once, sorted
    lots: int


@dataclass
class SearchPage:
    """One page of results, in the order asked.

    The notices' collections (lots, publications…) are not loaded: a list shows their
    ``summaries``, and a caller that needs more loads it for the page at once (the JSON API).
    """

    items: list[Notice]
    total: int  # at most COUNT_LIMIT: see total_capped
    page: int
    per_page: int
    next_cursor: str | None = None  # for the API's cursor pagination
    # More than ``total`` notices match ("plus de 1 000 avis"): counting is capped at COUNT_LIMIT.
    total_capped: bool = False
    summaries: dict[int, NoticeSummary] = field(default_factory=dict)  # by notice id

    @property
    def pages(self) -> int:
        return max(1, -(-self.total // self.per_page))


def _paris_midnight(day: dt.date) -> dt.datetime:
    return dt.datetime.combine(day, dt.time(), tzinfo=PARIS)


@dataclass
class _IdSet:
    """The notices listed in a narrow table (notice_cpv, notice_departments…) under a condition."""

    column: Any  # that table's notice id
    condition: ColumnElement[bool]
    # The same condition written so that no index serves it: SQLite then lists the ids from the
    # table's (notice_id, …) primary key, in order and without a lookup per row.
    unindexed: ColumnElement[bool] | None = None
    # Whether a notice is listed once at most (one département of a notice's primary key): its
    # ids are then counted as they are, without the cost of making them distinct.
    unique: bool = False

    def ids(self, *, unindexed: bool = False) -> Select[Any]:
        condition = self.unindexed if unindexed and self.unindexed is not None else self.condition
        return select(self.column).where(condition)

    def has(self, notice_id: Any) -> ColumnElement[bool]:
        """Whether the notice ``notice_id`` (a column of the enclosing query) is in the set."""
        return select(self.column).where(self.column == notice_id, self.condition).exists()


@dataclass
class _Filters:
    """The filters of a query in the three shapes the service plans with.

    ``sets`` and ``hidden`` are read from narrow tables and indexes; ``rows`` need the notices row
    itself. A notices row carries its description and is wide: a count or a relevance ranking that
    only checks ids never reads it, which is what keeps a search over many matches fast
    (benchmarks/search.py).
    """

    sets: list[_IdSet]  # the notice is in each
    hidden: list[Select[Any]]  # ids never shown (merged notices, rejected ones for non-staff): few
    rows: list[ColumnElement[bool]]  # conditions on the notices row
    # Row conditions whose facets the index was also asked for ("answered" by _filters): a notice
    # that the index found needs them checked only when it has one of the boundary tokens.
    near: list[ColumnElement[bool]] = field(default_factory=list)
    # What the rows imply for a notice that has a deadline, written as a range the deadline index
    # can seek: "open" is "deadline IS NULL OR deadline > now", an OR no index range is drawn from.
    dated: list[ColumnElement[bool]] = field(default_factory=list)


# An alias keeps the hidden notices' id subqueries uncorrelated when they sit in a query on notices.
_HIDDEN = aliased(Notice, name="hidden_notices")


def _filters(query: SearchQuery, *, now: dt.datetime, answered: frozenset[str] = frozenset()) -> _Filters:
    """The filters of ``query``, for the candidates that the full-text index found with the facets
    of the filters named in ``answered`` (fields of SearchQuery): those it answers exactly (CPV,
    départements, type, featured; "hidden": the merged and rejected notices) are left out, and the
    conditions on the status, the deadline and the value go to ``near``. Checking them again would
    only cost, and make PostgreSQL count their selectivity twice: it would expect ten times fewer
    matches than there are."""
    other = _HIDDEN
    hidden = [select(other.id).where(other.merged_into_id.is_not(None))]
    if not query.include_rejected:
        hidden.append(select(other.id).where(other.is_rejected.is_(True)))
    if "hidden" in answered:  # the index leaves them out (tokens "merged" and "rejected")
        hidden = []
    sets: list[_IdSet] = []
    rows: list[ColumnElement[bool]] = []
    if query.tags:  # the most selective first: the first set drives a count
        sets.append(_IdSet(NoticeTag.notice_id, NoticeTag.tag.in_(query.tags), unique=len(query.tags) == 1))
    if query.cpv and "cpv" not in answered:
        sets.append(_IdSet(
            NoticeCpv.notice_id,
            or_(*[_cpv_range(NoticeCpv.cpv, code) for code in query.cpv]),
            or_(*[_cpv_range(_unindexed(NoticeCpv.cpv), code) for code in query.cpv]),
        ))  # fmt: skip
    if query.departments and "departments" not in answered:
        departments = NoticeDepartment.department.in_(query.departments)
        sets.append(_IdSet(NoticeDepartment.notice_id, departments, unique=len(query.departments) == 1))
    if query.sources:
        real = [s for s in query.sources if s != "manual"]
        published = _IdSet(Publication.notice_id, Publication.source.in_(real))
        if "manual" not in query.sources:
            sets.append(published)
        elif real:
            rows.append(or_(published.has(Notice.id), Notice.is_manual.is_(True)))
        else:
            rows.append(Notice.is_manual.is_(True))
    if query.nuts:
        # NUTS are kept as a JSON list; the text form is searched ("FR102" within ["FR102", ...]).
        rows.append(or_(*[func.cast(Notice.nuts, Text()).contains(f'"{code}') for code in query.nuts]))
    if query.contract_types and "contract_types" not in answered:
        rows.append(Notice.contract_type.in_(query.contract_types))
    near: list[ColumnElement[bool]] = []
    values = near if "value" in answered else rows
    if query.value_min is not None:
        values.append(Notice.estimated_value >= query.value_min)
    if query.value_max is not None:
        values.append(Notice.estimated_value <= query.value_max)
    deadlines = near if "deadline" in answered else rows
    if query.closing_within_days is not None:
        deadlines += [
            Notice.deadline_at > now,
            Notice.deadline_at <= now + dt.timedelta(days=query.closing_within_days),
        ]
    if query.deadline_from is not None:
        deadlines.append(Notice.deadline_at >= _paris_midnight(query.deadline_from))
    if query.deadline_to is not None:
        deadlines.append(Notice.deadline_at < _paris_midnight(query.deadline_to + dt.timedelta(days=1)))
    dated: list[ColumnElement[bool]] = []
    if query.statuses == ("open",):
        dated.append(Notice.deadline_at > now)
    if query.statuses:
        conditions: list[ColumnElement[bool]] = []
        for status in query.statuses:
            if status == "open":
                conditions.append(
                    (Notice.status == "open") & (Notice.deadline_at.is_(None) | (Notice.deadline_at > now))
                )
            elif status == "closed":
                conditions.append((Notice.status == "open") & (Notice.deadline_at <= now))
            else:
                conditions.append(Notice.status == status)
        (near if "statuses" in answered else rows).append(or_(*conditions))
    if query.featured_only and "featured_only" not in answered:
        rows.append(Notice.is_featured.is_(True))
    if query.matching_firm and query.firm_id:
        rows.append(_matching_firm_condition(query.firm_id))
    return _Filters(sets=sets, hidden=hidden, rows=rows, near=near, dated=dated)


def apply_filters(stmt: Select[Any], query: SearchQuery, *, now: dt.datetime) -> Select[Any]:
    """Every filter except the text, on a select from notices: shared by both engines."""
    found = _filters(query, now=now)
    return stmt.where(
        *[ids.has(Notice.id) for ids in found.sets],
        *[Notice.id.not_in(ids) for ids in found.hidden],
        *found.rows,
    )


def _unindexed(column: Any) -> Any:
    """``+column``: the same value, which SQLite will not look up through an index on the column."""
    return UnaryExpression(column, operator=operators.custom_op("+"), type_=column.type)


def _cpv_prefix(code8: str) -> str:
    stripped = code8.rstrip("0")
    return stripped if len(stripped) >= 2 else code8[:2]


def _cpv_range(cpv: Any, code8: str) -> ColumnElement[bool]:
    """The codes under ``code8`` in the CPV tree (45000000 → 45…), as a range the index can seek.

    The upper bound is the next prefix of the same length (459 → 460): digits only, so that it holds
    whatever the database collation (a LIKE would not use the index on SQLite or PostgreSQL).
    """
    prefix = _cpv_prefix(code8)
    following = str(int(prefix) + 1).zfill(len(prefix))
    if len(following) > len(prefix):  # "99…": nothing after it
        return cast(ColumnElement[bool], cpv >= prefix)
    return and_(cpv >= prefix, cpv < following)


# --------------------------------------------------------------------------- the searchable text

MAX_DOCUMENT = 200_000  # characters; far above any real notice, well below PostgreSQL's tsvector limit
# Letters Unicode does not decompose but French text uses; PostgreSQL's unaccent folds them the same way.
_LIGATURES = str.maketrans({"œ": "oe", "æ": "ae", "ß": "ss", "ø": "o", "ł": "l", "đ": "d"})
_COMBINING_RE = re.compile("[\u0300-\u036f]")
_TOKEN_RE = re.compile(r"[^\W_]+")
# NUL is refused by PostgreSQL text and a lone surrogate cannot be encoded: either would turn a
# search or an ingestion into an error, so they become spaces.
_UNSAFE_RE = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\ud800-\udfff]")
_MAX_STEMMED = 40  # longer "words" (references, URLs run together) are kept as they are
_INLINE_TAGS = frozenset({"a", "abbr", "b", "em", "i", "small", "span", "strong", "sub", "sup", "u"})


class _HtmlText(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []

    def handle_data(self, data: str) -> None:
        self.parts.append(data)

    # A block element separates words ("<li>toiture</li><li>voirie</li>"); an inline one may not.
    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag not in _INLINE_TAGS:
            self.parts.append(" ")

    def handle_endtag(self, tag: str) -> None:
        if tag not in _INLINE_TAGS:
            self.parts.append(" ")


def html_to_text(html: str) -> str:
    """The words of a sanitised HTML fragment, entities decoded, on one line."""
    if "<" not in html and "&" not in html:
        return " ".join(html.split())
    parser = _HtmlText()
    parser.feed(html)
    parser.close()
    return " ".join("".join(parser.parts).split())


def search_document(
    title: str | None, buyer_name: str | None, description: str | None, lot_titles: Iterable[str | None]
) -> str:
    """The plain text a notice is found by: title, buyer, description (HTML stripped), lot titles."""
    parts = [title or "", buyer_name or "", html_to_text(description or ""), *(t or "" for t in lot_titles)]
    text = "\n".join(" ".join(part.split()) for part in parts if part.strip())
    return _UNSAFE_RE.sub(" ", text)[:MAX_DOCUMENT]


def search_text_of(notice: Notice) -> Sequence[str]:
    """The parts of a notice that the text search looks in (description as plain text)."""
    return [notice.title or "", notice.buyer_name or "", html_to_text(notice.description or ""),
            *[lot.title or "" for lot in notice.lots]]  # fmt: skip


def fold(text: str) -> str:
    """Lower case without accents ("Réhabilitation" → "rehabilitation"), as unaccent() does in PostgreSQL."""
    lowered = text.lower().translate(_LIGATURES)
    if lowered.isascii():
        return lowered
    return _COMBINING_RE.sub("", unicodedata.normalize("NFKD", lowered))


_local = threading.local()


@functools.lru_cache(maxsize=100_000)
def _stem(word: str) -> str:
    # The Snowball stemmer is pure Python (~40 µs a word) and the vocabulary of notices is small:
    # the cache makes indexing and queries cheap. A stemmer object keeps state, hence one per thread.
    if len(word) > _MAX_STEMMED or word.isdigit():
        return word
    stemmer = getattr(_local, "stemmer", None)
    if stemmer is None:
        stemmer = _local.stemmer = snowballstemmer.stemmer("french")
    return str(stemmer.stemWord(word))


@functools.lru_cache(maxsize=50_000)
def _word_stems(word: str) -> tuple[str, ...]:
    return tuple(_stem(token) for token in _TOKEN_RE.findall(fold(word)))


def stem_tokens(text: str) -> list[str]:
    """Folded, French-stemmed words in their order: "Nettoyages des écoles" → nettoyag, de, ecol.

    Folding comes first, as in PostgreSQL (to_tsvector('french', unaccent(...))), so a word typed
    without its accents stems exactly like the accented one.
    """
    # Word by word, each distinct word folded and stemmed once: folding a whole document cost
    # more than the rest of indexing it. The tokens are the same: whitespace is never part of a
    # token, and neither lower() nor NFKD looks across it.
    return [stem for word in text.split() for stem in _word_stems(word)]


def fts_content(document: str) -> str:
    """What goes into SQLite's notice_fts for a document: its stemmed words, order kept for phrases."""
    return " ".join(stem_tokens(document))


# --------------------------------------------------------------------------- parsing the text query


@dataclass(frozen=True)
class Phrase:
    """One word or phrase of a query: as typed (for PostgreSQL) and stemmed (for SQLite FTS5)."""

    text: str
    stems: tuple[str, ...]


@dataclass
class ParsedText:
    """A text query: every group must match (a group is one phrase, or phrases joined by "or"),
    and no excluded phrase may.

    The syntax is PostgreSQL's websearch_to_tsquery one, read the same way on both engines: words,
    "quoted phrases", ``or`` between two words or phrases, ``-word`` / ``-"phrase"`` to exclude;
    every other character is a separator or part of a word, never an operator. Unlike bare
    websearch_to_tsquery, ``or`` binds tighter than the implicit "and", as in web search engines:
    ``nettoyage vitres or fenêtres`` needs "nettoyage".
    """

    groups: list[list[Phrase]]
    excluded: list[Phrase]


# tsquery's operator characters separate words in websearch_to_tsquery ("a(b" is "a b"), whereas other
# punctuation inside a word makes a phrase of its parts ("1=1", "l'entretien", "corbeil-essonnes").
_SEPARATORS = frozenset("()&:!|<")


def parse_text(text: str) -> ParsedText:
    text = _UNSAFE_RE.sub(" ", text)
    items: list[tuple[Phrase, bool] | None] = []  # (phrase, negated); None stands for an "or"
    i, n = 0, len(text)
    while i < n:
        if text[i].isspace() or text[i] in _SEPARATORS:
            i += 1
            continue
        negated = False
        if text[i] == "-":
            while i < n and text[i] == "-":  # "--x" is read "-x", not a double negation
                i += 1
            negated = True
            if i >= n or text[i].isspace() or text[i] in _SEPARATORS:
                continue
        if text[i] == '"':
            end = text.find('"', i + 1)
            end = n if end < 0 else end  # an unclosed quote runs to the end, as in PostgreSQL
            chunk, i = text[i + 1 : end], end + 1
        else:
            end = i
            while end < n and not text[end].isspace() and text[end] != '"' and text[end] not in _SEPARATORS:
                end += 1
            chunk, i = text[i:end], end
            if not negated and chunk.lower() == "or":
                items.append(None)
                continue
        # Punctuation alone ("*", "'") gives no word, but still counts as the operand of an "or".
        items.append((Phrase(" ".join(chunk.split()), tuple(stem_tokens(chunk))), negated))
    groups: list[list[Phrase]] = []
    excluded: list[Phrase] = []
    join = False
    for k, item in enumerate(items):
        if item is None:
            if 0 < k < len(items) - 1:
                join = True
                continue
            item = (Phrase("or", (_stem("or"),)), False)  # "or" at either end is a word, as in PostgreSQL
        phrase, negated = item
        if not phrase.stems:
            continue
        if negated:
            # "a or -b" would need a NOT that FTS5 cannot put inside an OR: it is read "a -b".
            excluded.append(phrase)
        elif join and groups:
            groups[-1].append(phrase)
        else:
            groups.append([phrase])
        join = False
    return ParsedText(groups=groups, excluded=excluded)


def _fts_phrase(phrase: Phrase) -> str:
    # Every token is quoted: FTS5 then reads it as a string, never as an operator (AND, NEAR, *…).
    # Stems are letters and digits only; doubling quotes is defence in depth.
    return '"' + " ".join(t.replace('"', '""') for t in phrase.stems) + '"'


def fts_match_expression(parsed: ParsedText) -> tuple[str | None, str | None]:
    """(what must match, what must not) as FTS5 MATCH expressions; None where there is nothing."""
    positive = " AND ".join("(" + " OR ".join(_fts_phrase(p) for p in group) + ")" for group in parsed.groups)
    negative = " OR ".join(_fts_phrase(p) for p in parsed.excluded)
    return positive or None, negative or None


def websearch_texts(parsed: ParsedText) -> list[str]:
    """The query rewritten for websearch_to_tsquery, one text per part to AND together.

    Each phrase goes in double quotes, inside which websearch_to_tsquery sees no operator at all:
    PostgreSQL still parses and stems the words its own way, but the structure is ours (raw input
    such as "-(-(-(…" would otherwise nest NOTs until "tsquery stack too small"). Groups of one
    phrase and the exclusions share the first text; each "or" group needs its own, as
    websearch_to_tsquery would let the implicit "and" bind tighter than "or".
    """
    simple = [f'"{group[0].text}"' for group in parsed.groups if len(group) == 1]
    simple += [f'-"{phrase.text}"' for phrase in parsed.excluded]
    texts = [" ".join(simple)] if simple else []
    texts += [" or ".join(f'"{p.text}"' for p in group) for group in parsed.groups if len(group) > 1]
    return texts


# --------------------------------------------------------------------------- the text condition per engine

# The engine-specific parts of the index are kept out of the models (see the migration): light
# table clauses are enough to query them.
_FTS = table("notice_fts", column("rowid", Integer), column("content", Text), column("facets", Text))
_FTS_NAME: ColumnElement[Any] = literal_column("notice_fts")
_PG_SEARCH = table("notice_search", column("notice_id", Integer), column("tsv", TSVECTOR))
_SEARCH_TABLE = cast(Table, NoticeSearch.__table__)


@dataclass
class _TextMatch:
    ids: Select[Any] | None  # the ids of the matching notices, each once
    excluded: Select[Any] | None  # SQLite, a query of exclusions only ("-vitres"): ids that must not match
    # Whether one given notice matches: on PostgreSQL a look-up of its row, so that a query that
    # stops after a page never reads every match (PostgreSQL must read a row to learn its notice id).
    contains: Callable[[Any], ColumnElement[bool]] | None = None
    # PostgreSQL, the same test for a walk in the order of a page: see _pg_row_check.
    checks: Callable[[Any], ColumnElement[bool]] | None = None
    # The text as a query of the full-text index, to combine with the facets: SQLite, FTS5 MATCH
    # expressions on the content column (what must match, what must not); PostgreSQL, the tsquery.
    positive: str | None = None
    negative: str | None = None
    tsquery: str | None = None
    # Relevance of a row of the index (higher is better); None: no word to rank by (all tie).
    score: ColumnElement[Any] | None = None


_NOTHING = _TextMatch(None, None)


def _text_match(session: Session, text: str, *, sqlite: bool) -> _TextMatch:
    parsed = parse_text(text)
    if not parsed.groups and not parsed.excluded:
        return _NOTHING  # nothing searchable ("*", "--"): no result rather than all
    if sqlite:
        positive, negative = fts_match_expression(parsed)
        # The words are looked for in the text only: the facets column holds tokens such as "dep77".
        positive = f"content : ({positive})" if positive else None
        negative = f"content : ({negative})" if negative else None
        if positive is None:
            excluded = select(_FTS.c.rowid).where(_FTS_NAME.op("MATCH")(negative))
            return _TextMatch(None, excluded, negative=negative)
        expression = positive if negative is None else f"({positive}) NOT {negative}"
        match = _FTS_NAME.op("MATCH")(expression)
        ids = select(_FTS.c.rowid).where(match)
        return _TextMatch(
            ids, None, lambda notice_id: (notice_id + 0).in_(ids), positive=positive, negative=negative,
            # bm25() is lower for better matches; negated so that both engines sort "score desc".
            # The facets column weighs nothing.
            score=-func.bm25(_FTS_NAME, 1.0, 0.0),
        )  # fmt: skip
    parts = [
        func.websearch_to_tsquery(literal_column("'french'::regconfig"), func.unaccent(part), type_=TSQUERY)
        for part in websearch_texts(parsed)
    ]
    combined = functools.reduce(lambda a, b: func.tsquery_and(a, b, type_=TSQUERY), parts)
    # The tsquery is computed first and written into the queries as a constant: the planner then
    # estimates from the column statistics how many notices match ("nettoyage": a quarter of them,
    # not its blind 0.5 %), and picks a plan that fits; a parameter or subquery would hide it.
    # The text is PostgreSQL's own output, quoted by SQLAlchemy as a string literal.
    tsquery_text = session.execute(select(cast_(combined, Text()), _NO_PARALLEL.selected_columns[0])).scalar()
    if not tsquery_text:
        return _NOTHING  # only stop words ("de la")
    tsquery = _pg_tsquery(tsquery_text)
    match = _PG_SEARCH.c.tsv.op("@@", return_type=Boolean)(tsquery)

    def contains(notice_id: Any) -> ColumnElement[bool]:
        return select(_PG_SEARCH.c.notice_id).where(_PG_SEARCH.c.notice_id == notice_id, match).exists()

    score = func.ts_rank(_PG_SEARCH.c.tsv, tsquery, type_=Float) if parsed.groups else None
    ids = select(_PG_SEARCH.c.notice_id).where(match)
    checks = _pg_row_check(match)
    return _TextMatch(ids, None, contains, checks, tsquery=tsquery_text, score=score)


def _pg_row_check(match: ColumnElement[bool]) -> Callable[[Any], ColumnElement[bool]]:
    """Whether one notice matches, as a subquery that runs for each notices row read (NULL, so
    false, without a notice_search row). A walk in the order of the page then stops after the
    page. As EXISTS, PostgreSQL may turn the test into a join that first reads every match of the
    index: when it underestimates the matches of common words, it walked 8 000 open notices that
    way in 115 ms where checking them one by one took 5 ms (benchmarks/search.py)."""

    def check(notice_id: Any) -> ColumnElement[bool]:
        return select(match).where(_PG_SEARCH.c.notice_id == notice_id).scalar_subquery()

    return check


# These are short queries that stop at a page. PostgreSQL underestimates how many notices a text
# matches when its words come together ("assurance statutaires"), then starts parallel workers
# that each read thousands of rows before the first page is out: the benchmark's median was 1.7
# times slower with them (benchmarks/search.py). As SET LOCAL, until the end of the transaction.
_NO_PARALLEL = select(func.set_config("max_parallel_workers_per_gather", "0", True))


def _pg_tsquery(text: str) -> ColumnElement[Any]:
    """A tsquery written into the statement as a constant (see _text_match)."""
    return cast_(bindparam("tsquery", text, type_=Text(), unique=True, literal_execute=True), TSQUERY)


# --------------------------------------------------------------------------- facets

# A filter that the notices' facets can answer is also asked of the full-text index, as tokens:
# a search with words and filters, or with several filters, is then one look-up of the index that
# returns the few notices that may match, and only they are read to check the filters exactly.
# Counting the notices that contain "nettoyage" and are open in the 91 otherwise read every notice
# with the word, or every open one (benchmarks/search.py).
#
# The tokens of a notice (view notice_facets on SQLite, function notice_facets() on PostgreSQL,
# kept current by triggers; the migration 50827c982446 writes them):
#
#   dep77                  each département
#   cpv45 cpv452 …         each CPV code's prefixes of 2 to 8 digits (45000000 finds 45210000)
#   stopen                 the stored status (open, awarded, cancelled)
#   dl20261215 / dlnone    the UTC day of the deadline
#   valf50000              the whole euros of the estimated value, after a letter for its number of
#                          digits (a: none, b: one…) so that ranges are prefixes; negvalue below zero
#   typeworks              the contract type
#   featured, rejected, merged
#
# On PostgreSQL they are lexemes of notice_search.tsv written with a leading "#", which no word of
# a text can give (the parser never starts a lexeme with it). The tokens say a little more than the
# filters (a whole UTC day, whole euros): the filters are still checked on the notices rows.


@dataclass(frozen=True)
class _Term:
    token: str
    prefix: bool = False  # any token that starts with this one


@dataclass(frozen=True)
class _Any:
    items: tuple[_Facet, ...]


@dataclass(frozen=True)
class _All:
    items: tuple[_Facet, ...]


@dataclass(frozen=True)
class _But:
    """``facet`` without ``excluded``."""

    facet: _Facet
    excluded: _Facet


_Facet = _Term | _Any | _All | _But


def _digit_prefixes(lo: str, hi: str) -> list[str]:
    """Prefixes whose completions to the same length are exactly the digit strings from lo to hi."""
    if lo > hi:
        return []
    if lo == "0" * len(lo) and hi == "9" * len(hi):
        return [""]
    if len(lo) == 1:
        return [str(d) for d in range(int(lo), int(hi) + 1)]
    if lo[0] == hi[0]:
        return [lo[0] + p for p in _digit_prefixes(lo[1:], hi[1:])]
    rest = len(lo) - 1
    return (
        [lo[0] + p for p in _digit_prefixes(lo[1:], "9" * rest)]
        + [str(d) for d in range(int(lo[0]) + 1, int(hi[0]))]
        + [hi[0] + p for p in _digit_prefixes("0" * rest, hi[1:])]
    )


def _range_terms(base: str, lo: str, hi: str) -> list[_Term]:
    """The tokens ``base`` + a digit string from lo to hi (same length), as few prefixes as can be."""
    prefixes = _digit_prefixes(lo, hi)
    if prefixes == [""]:
        prefixes = [str(d) for d in range(10)]  # never the bare base: "dl" would find "dlnone"
    return [_Term(base + p, prefix=len(p) < len(lo)) for p in prefixes]


def _day(instant: dt.datetime) -> str:
    return instant.astimezone(dt.UTC).strftime("%Y%m%d")


def _deadline_terms(
    lo: dt.datetime | None, hi: dt.datetime | None, span: tuple[dt.date, dt.date] | None = None
) -> list[_Term]:
    """The deadline tokens of the UTC days from lo to hi (instants): whole years and months as
    prefixes, the other days one by one. An open end stops at the ``span`` of the deadlines there
    are (see _deadline_span); without one (no notice has a deadline), nothing is asked."""
    first = lo.astimezone(dt.UTC).date() if lo is not None else span[0] if span else None
    last = hi.astimezone(dt.UTC).date() if hi is not None else span[1] if span else None
    if first is None or last is None:
        return []
    terms: list[_Term] = []
    day = first
    while day <= last:
        month_end = (day.replace(day=28) + dt.timedelta(days=4)).replace(day=1) - dt.timedelta(days=1)
        if day.month == 1 and day.day == 1 and dt.date(day.year, 12, 31) <= last:
            terms.append(_Term(f"dl{day.year:04d}", prefix=True))
            day = dt.date(day.year + 1, 1, 1)
        elif day.day == 1 and month_end <= last:
            terms.append(_Term(f"dl{day:%Y%m}", prefix=True))
            day = month_end + dt.timedelta(days=1)
        else:
            end = min(month_end, last)
            terms += _range_terms(f"dl{day:%Y%m}", f"{day.day:02d}", f"{end.day:02d}")
            day = end + dt.timedelta(days=1)
    return terms


def _value_token(value: Decimal) -> str:
    digits = str(int(value))
    return "val" + chr(ord("a") + len(digits)) + digits


def _value_terms(value_min: Decimal | None, value_max: Decimal | None) -> list[_Term]:
    """The value tokens of the whole euros from value_min to value_max (either may be open)."""
    lo = max(0, int(value_min)) if value_min is not None else 0  # int() of a positive Decimal: floor
    hi = int(value_max) if value_max is not None else 10**16 - 1  # Numeric(16, 2): fewer digits
    terms = [_Term("negvalue")] if value_min is None else []
    for digits in range(len(str(lo)), len(str(hi)) + 1):
        first, last = max(lo, 10 ** (digits - 1) if digits > 1 else 0), min(hi, 10**digits - 1)
        if first > last:
            continue
        base = "val" + chr(ord("a") + digits)
        if first == (10 ** (digits - 1) if digits > 1 else 0) and last == 10**digits - 1:
            terms.append(_Term(base, prefix=True))  # every value of that many digits
        else:
            terms += _range_terms(base, str(first), str(last))
    return terms


@dataclass(frozen=True)
class _Group:
    """The facets of one filter (``name``: the SearchQuery field), and its boundary tokens: a
    notice with one of those may have the facets without passing the filter (its deadline is on
    the first or last day of the window, but before or after the hour), the others pass it."""

    name: str
    facet: _Facet
    boundary: tuple[_Term, ...] = ()


def _facets(
    query: SearchQuery, *, now: dt.datetime, span: tuple[dt.date, dt.date] | None
) -> list[_Group] | None:
    """The index tokens a notice needs to match ``query``'s filters, one group per filter, all
    required; None when no notice can match. ``span``: the first and last deadline days there are
    (see _deadline_span), to close the open deadline ranges."""
    groups: list[_Group] = []
    if query.cpv:
        groups.append(_Group("cpv", _Any(tuple(_Term("cpv" + _cpv_prefix(code)) for code in query.cpv))))
    if query.departments:
        groups.append(_Group("departments", _Any(tuple(_Term("dep" + d) for d in query.departments))))
    if query.contract_types:
        groups.append(_Group("contract_types", _Any(tuple(_Term("type" + t) for t in query.contract_types))))
    if query.featured_only:
        groups.append(_Group("featured_only", _Term("featured")))
    if query.value_min is not None or query.value_max is not None:
        # Whole euros: a value of the last euro may exceed the maximum by its cents, and one of the
        # first may fall short of a minimum with cents.
        limits = [query.value_max] if query.value_max is not None else []
        if query.value_min is not None and query.value_min != int(query.value_min):
            limits.append(query.value_min)
        groups.append(_Group(
            "value", _Any(tuple(_value_terms(query.value_min, query.value_max))),
            tuple(_Term(_value_token(v)) for v in limits),
        ))  # fmt: skip
    lows: list[dt.datetime] = []
    highs: list[dt.datetime] = []
    if query.closing_within_days is not None:
        lows.append(now)
        highs.append(now + dt.timedelta(days=query.closing_within_days))
    if query.deadline_from is not None:
        lows.append(_paris_midnight(query.deadline_from))
    if query.deadline_to is not None:
        highs.append(_paris_midnight(query.deadline_to + dt.timedelta(days=1)) - dt.timedelta(microseconds=1))
    if lows or highs:
        lo, hi = max(lows, default=None), min(highs, default=None)
        if lo is not None and hi is not None and lo > hi:
            return None
        days = tuple(_Term("dl" + _day(t)) for t in (lo, hi) if t is not None)
        groups.append(_Group("deadline", _Any(tuple(_deadline_terms(lo, hi, span))), days))
    if query.statuses and set(query.statuses) != set(STATUSES):
        each: list[_Facet] = []
        today = _Term("dl" + _day(now))  # open or closed by the hour
        # "Stored open" is "neither awarded nor cancelled": two short lists of notices to leave
        # out rather than a list of nine notices in ten to go through.
        not_open = _Any((_Term("stawarded"), _Term("stcancelled")))
        for status in query.statuses:
            if status == "open":
                each.append(_But(_Any((_Term("dlnone"), *_deadline_terms(now, None, span))), not_open))
            elif status == "closed":
                each.append(_But(_Any(tuple(_deadline_terms(None, now, span))), not_open))
            else:
                each.append(_Term("st" + status))
        groups.append(
            _Group(
                "statuses", _Any(tuple(each)), (today,) if {"open", "closed"} & set(query.statuses) else ()
            )
        )
    return groups


def _deadline_span(session: Session, now: dt.datetime) -> tuple[dt.date, dt.date]:
    """The UTC days of the first and last deadlines there are (or today), widened to whole months
    and by a year each way (a notice added meanwhile with a later deadline is still found), from
    the deadline index."""
    # Two subqueries: SQLite reads the index's ends for min() or max() alone, not for both.
    first, last = session.execute(
        select(
            select(func.min(Notice.deadline_at)).scalar_subquery(),
            select(func.max(Notice.deadline_at)).scalar_subquery(),
        )
    ).one()
    start = (first or now).astimezone(dt.UTC).date()
    end = (last or now).astimezone(dt.UTC).date()
    end = dt.date(end.year + 1, end.month, 1) + dt.timedelta(days=31)
    return dt.date(start.year - 1, start.month, 1), end.replace(day=1) - dt.timedelta(days=1)


def _open_ended(query: SearchQuery) -> bool:
    """Whether the query's deadline facets need the span of the deadlines there are."""
    one_side = (query.deadline_from is None) != (query.deadline_to is None)
    return bool({"open", "closed"} & set(query.statuses)) or (one_side and query.closing_within_days is None)


def _facetable(query: SearchQuery) -> int:
    """How many of the query's filters have facets."""
    deadline = query.closing_within_days is not None or query.deadline_from or query.deadline_to
    statuses = bool(query.statuses) and set(query.statuses) != set(STATUSES)
    value = query.value_min is not None or query.value_max is not None
    flags = [
        query.cpv,
        query.departments,
        query.contract_types,
        query.featured_only,
        value,
        deadline,
        statuses,
    ]
    return sum(1 for flag in flags if flag)


def _combined(groups: Sequence[_Group]) -> _Facet | None:
    if not groups:
        return None
    return groups[0].facet if len(groups) == 1 else _All(tuple(group.facet for group in groups))


# --------------------------------------------------------------------------- PostgreSQL's statistics

# What ANALYZE (or autovacuum after an ingestion) gathered on notice_search.tsv and on the deadlines,
# from pg_stats, read once in a while per database: it sizes the first window of _index_hits.
_STATS_TTL = 600.0  # seconds


@dataclass
class _PgStats:
    lexemes: dict[str, float]  # the most common lexemes -> share of the notices that carry them
    rarest: float = 1.0  # any other lexeme is carried by fewer notices than this share
    deadlines: list[dt.date] = field(default_factory=list)  # UTC days cutting the deadlines in equal parts
    undated: float = 0.0  # share of the notices without a deadline


_stats: dict[str, tuple[float, _PgStats]] = {}


def _pg_stats(session: Session) -> _PgStats:
    key = str(session.get_bind().engine.url)
    now = time.monotonic()
    cached = _stats.get(key)
    if cached is not None and now - cached[0] < _STATS_TTL:
        return cached[1]
    rows = session.execute(
        sql_text(
            "SELECT attname, most_common_elems::text::text[], most_common_elem_freqs, "
            "histogram_bounds::text::text[], null_frac FROM pg_stats WHERE schemaname = current_schema() "
            "AND ((tablename = 'notice_search' AND attname = 'tsv') "
            "OR (tablename = 'notices' AND attname = 'deadline_at'))"
        )
    ).all()
    stats = _PgStats({})
    for name, elements, shares, bounds, null_share in rows:
        if name == "tsv" and elements and shares:
            stats.lexemes = dict(zip(elements, [float(f) for f in shares[: len(elements)]], strict=True))
            stats.rarest = float(shares[len(elements)])  # then come the minimum, the maximum, the nulls
        elif name == "deadline_at":
            stats.deadlines = [dt.datetime.fromisoformat(b).astimezone(dt.UTC).date() for b in bounds or []]
            stats.undated = float(null_share or 0.0)
    _stats[key] = (now, stats)
    return stats


def _share(facet: _Facet, stats: _PgStats) -> float:
    """About this share of the notices match ``facet`` (1 when unknown), the facets of a group
    taken as independent."""
    if isinstance(facet, _Term):
        if facet == _Term("dlnone"):
            return stats.undated
        if facet.token.startswith("dl") and stats.deadlines:
            # The deadline days from the prefix's first to its last: how much of the histogram's
            # parts (each holding as many deadlines) they cover.
            digits = facet.token[2:]
            first = _lenient_day(digits.ljust(8, "0"))
            last = _lenient_day(digits.ljust(8, "9") if facet.prefix else digits)
            # Only the parts around the days are looked at: a deadline window is dozens of days,
            # each asked here, against a hundred parts.
            bounds = stats.deadlines
            start = max(0, bisect.bisect_left(bounds, first) - 1)
            stop = min(len(bounds), bisect.bisect_right(bounds, last) + 1)
            covered = 0.0
            for low, high in itertools.pairwise(bounds[start:stop]):
                overlap = (min(high, last) - max(low, first)).days + 1
                covered += max(0, overlap) / ((high - low).days + 1)
            return (1 - stats.undated) * covered / max(1, len(bounds) - 1)
        if facet.prefix or not stats.lexemes:
            return 1.0  # the lexemes with that prefix are not all listed
        return stats.lexemes.get("#" + facet.token, stats.rarest)
    if isinstance(facet, _But):
        return _share(facet.facet, stats)
    parts = [_share(item, stats) for item in facet.items]
    if isinstance(facet, _Any):
        return min(1.0, sum(parts))
    return functools.reduce(lambda a, b: a * b, parts, 1.0)


def _lenient_day(digits: str) -> dt.date:
    """The date of a YYYYMMDD string whose month or day may run past the last ("20261139")."""
    year, month = int(digits[:4]), min(12, max(1, int(digits[4:6])))
    start = dt.date(year, month, 1)
    month_end = (start + dt.timedelta(days=31)).replace(day=1) - dt.timedelta(days=1)
    return start.replace(day=min(max(1, int(digits[6:8])), month_end.day))


_LEXEME_RE = re.compile(r"(!?)'((?:[^']|'')*)'")
_NEGATED_RE = re.compile(r"!\s*\([^()]*\)")  # an excluded phrase, as websearch_to_tsquery writes it


def _text_share(tsquery: str, stats: _PgStats) -> float:
    """At most this share of the notices match a tsquery of words (1 when unknown): the words of a
    search often come together ("restauration collective"), so the share of the rarest."""
    if "|" in tsquery or not stats.lexemes:
        return 1.0
    shares = [
        stats.lexemes.get(word.replace("''", "'"), stats.rarest)
        for bang, word in _LEXEME_RE.findall(_NEGATED_RE.sub(" ", tsquery))
        if not bang
    ]
    return min(shares, default=1.0)


def _sqlite_facets(facet: _Facet) -> str:
    if isinstance(facet, _Term):
        return f'"{facet.token}"' + (" *" if facet.prefix else "")
    if isinstance(facet, _But):
        return f"({_sqlite_facets(facet.facet)} NOT {_sqlite_facets(facet.excluded)})"
    glue = " OR " if isinstance(facet, _Any) else " AND "
    return "(" + glue.join(_sqlite_facets(item) for item in facet.items) + ")"


def _pg_facets(facet: _Facet) -> str:
    if isinstance(facet, _Term):
        return "'#" + facet.token.replace("'", "''") + "'" + (":*" if facet.prefix else "")
    if isinstance(facet, _But):
        return f"({_pg_facets(facet.facet)} & !{_pg_facets(facet.excluded)})"
    glue = " | " if isinstance(facet, _Any) else " & "
    return "(" + glue.join(_pg_facets(item) for item in facet.items) + ")"


@dataclass
class _IndexQuery:
    """Text and facets as one query of the full-text index: its rows are the candidates."""

    table: Any  # notice_fts on SQLite, notice_search on PostgreSQL
    notice_id: Any  # its notice id column
    match: ColumnElement[bool]
    score: ColumnElement[Any] | None
    share: float = 1.0  # PostgreSQL: about this share of the notices match (from the statistics)
    # PostgreSQL: the first window of _pg_index_hits holds this many times what ``share`` says
    # it takes. Reading a window reads the whole posting lists of its words and facets (15 to
    # 20 ms for words in a third of the notices, whatever the window's size), then its rows
    # (3 to 4 µs each): better read more rows than a second window. A share made of several
    # estimates (words, facet groups) was up to 6 times too high in the benchmark, one of a
    # single estimate within a quarter. A margin of 2 rather than 1.25 for the former took the
    # p95 of the benchmark's searches of several words from 56-58 to 48-52 ms (alternated runs);
    # the whole mix's p95 did not move.
    margin: float = 1.25
    # PostgreSQL: whether a candidate has a boundary token (see _Group); None: none has.
    near: ColumnElement[bool] | None = None

    def as_text(self) -> _TextMatch:
        """The index's candidates in the shape of a text match, for the queries on notices."""
        ids = select(self.notice_id).where(self.match)
        if self.table is _FTS:
            return _TextMatch(ids, None, lambda notice_id: (notice_id + 0).in_(ids))

        def contains(notice_id: Any) -> ColumnElement[bool]:
            return select(self.notice_id).where(self.notice_id == notice_id, self.match).exists()

        return _TextMatch(ids, None, contains, _pg_row_check(self.match))


def _index_query(
    text: _TextMatch | None,
    groups: Sequence[_Group],
    *,
    sqlite: bool,
    stats: _PgStats | None = None,
    hidden: _Facet | None = None,
) -> _IndexQuery | None:
    """The index query for a search's positive words and facets, without the ``hidden`` notices;
    None when it has neither (a query of exclusions only cannot be asked of the index alone)."""
    facets = _combined(groups)
    positive = text is not None and text.score is not None
    if not positive and facets is None:
        return None
    score = text.score if text is not None else None
    if sqlite:
        parts = [text.positive] if text is not None and text.positive else []
        if facets is not None:
            parts.append("facets : " + _sqlite_facets(facets))
        expression = " AND ".join(parts)
        if text is not None and text.negative:
            expression = f"({expression}) NOT {text.negative}"
        if hidden is not None:
            expression = f"({expression}) NOT facets : {_sqlite_facets(hidden)}"
        return _IndexQuery(_FTS, _FTS.c.rowid, _FTS_NAME.op("MATCH")(expression), score)
    parts = [f"({text.tsquery})"] if text is not None and text.tsquery else []
    if facets is not None:
        parts.append(_pg_facets(facets))
    if hidden is not None:
        parts.append("!" + _pg_facets(hidden))
    match = _PG_SEARCH.c.tsv.op("@@", return_type=Boolean)(_pg_tsquery(" & ".join(parts)))
    stats = stats or _PgStats({})
    share = _share(facets, stats) if facets is not None else 1.0
    if text is not None and text.tsquery:
        share *= _text_share(text.tsquery, stats)  # the filters are not about the words
    edges = [term for group in groups for term in group.boundary]
    near = None
    if edges:
        near = _PG_SEARCH.c.tsv.op("@@", return_type=Boolean)(_pg_tsquery(_pg_facets(_Any(tuple(edges)))))
    estimates = len(groups) + (text.tsquery.count(" & ") + 1 if text is not None and text.tsquery else 0)
    margin = 2.0 if estimates > 1 else 1.25
    return _IndexQuery(_PG_SEARCH, _PG_SEARCH.c.notice_id, match, score, share, margin=margin, near=near)


# --------------------------------------------------------------------------- cursors


def _fingerprint(query: SearchQuery) -> str:
    """Which search a cursor belongs to: one from another search is refused, not silently misapplied."""
    canonical = urlencode(query.with_(sort="").to_args())
    return hashlib.sha256(canonical.encode()).hexdigest()[:12]


def _encode_cursor(data: dict[str, Any]) -> str:
    raw = json.dumps(data, separators=(",", ":"), ensure_ascii=True).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


_CURSOR_RE = re.compile(r"^[A-Za-z0-9_-]{1,400}$")


def _decode_cursor(cursor: str, query: SearchQuery, sort: str) -> dict[str, Any]:
    invalid = QueryParamError("cursor", "curseur invalide ou d'une autre recherche : recommencez au début")
    if not isinstance(cursor, str) or not _CURSOR_RE.match(cursor):
        raise invalid
    try:
        data = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    except (ValueError, TypeError):
        raise invalid from None
    if not isinstance(data, dict) or data.get("s") != sort or data.get("f") != _fingerprint(query):
        raise invalid
    if sort == "relevance":
        offset = data.get("o")
        if type(offset) is not int or not 0 <= offset <= 10_000_000:
            raise invalid
        return {"offset": offset}
    key = data.get("k")
    if not isinstance(key, list) or len(key) != 2 or type(key[1]) is not int or key[1] < 0:
        raise invalid
    raw_value, last_id = key
    value: dt.date | dt.datetime | None = None
    if raw_value is not None:
        if not isinstance(raw_value, str):
            raise invalid
        try:
            if sort == "deadline":
                value = dt.datetime.fromisoformat(raw_value)
                if value.tzinfo is None:
                    raise invalid
            else:
                value = dt.date.fromisoformat(raw_value)
        except ValueError:
            raise invalid from None
    return {"value": value, "id": last_id}


# --------------------------------------------------------------------------- the service


def search_notices(
    session: Session,
    query: SearchQuery,
    *,
    now: dt.datetime,
    page: int = 1,
    per_page: int = 20,
    cursor: str | None = None,
) -> SearchPage:
    """Run ``query``; results in ``query.effective_sort`` order, ``per_page`` per page.

    Pages are stable: every order ends with the notice id. ``cursor`` (the ``next_cursor`` of the
    previous page, for the JSON API) replaces ``page``: a keyset on (deadline or publication
    date, id) for those sorts, an offset for relevance. A bad cursor raises QueryParamError.
    """
    page, per_page = max(1, page), max(1, per_page)
    sort = query.effective_sort
    position = _decode_cursor(cursor, query, sort) if cursor is not None else None
    sqlite = session.get_bind().dialect.name == "sqlite"
    if not sqlite and not query.text:  # with words, set with the look-up of the tsquery
        session.execute(_NO_PARALLEL)
    text = _text_match(session, query.text, sqlite=sqlite) if query.text else None
    if text is _NOTHING:
        return SearchPage(items=[], total=0, page=page, per_page=per_page)
    # The filters that facets answer go to the index with the words; without words, when there are
    # two of them at least (one alone has its own index, read in the order of the page) and no
    # filter the index knows nothing of (tags, sources, the firm's: likely the narrowest).
    groups: list[_Group] | None = []
    if text is not None or (
        _facetable(query) >= 2
        and not (query.tags or query.sources or (query.matching_firm and query.firm_id))
    ):
        # An open deadline range ("open": from now on) stops at the deadlines there are.
        groups = _facets(query, now=now, span=_deadline_span(session, now) if _open_ended(query) else None)
    if groups is None:  # an empty deadline window
        return SearchPage(items=[], total=0, page=page, per_page=per_page)
    stats = _pg_stats(session) if not sqlite and (groups or text is not None) else None
    hidden = _Any((_Term("merged"),) if query.include_rejected else (_Term("merged"), _Term("rejected")))
    index = _index_query(text, groups, sqlite=sqlite, stats=stats, hidden=hidden)
    # What the notices are checked against: the index's candidates, only for what their facets do
    # not answer.
    answered = frozenset(group.name for group in groups) | ({"hidden"} if index is not None else set())
    found = _filters(query, now=now, answered=answered)
    if index is None and text is not None and text.excluded is not None:
        found.hidden.append(text.excluded)

    offset = (page - 1) * per_page
    if sort == "relevance" and position is not None:
        offset = position["offset"]
    elif position is not None:
        offset = 0
    if sort == "relevance" and index is not None and index.score is not None:
        # The newest matches in one look-up of the index: they give the total, and the RANK_LIMIT
        # newest of them are ranked.
        hits = _index_hits(session, found, index, limit=max(COUNT_LIMIT, RANK_LIMIT) + 1, scored=True)
        total = len(hits)
        ranked = sorted(hits[:RANK_LIMIT], key=lambda hit: (-hit.score, -hit.id))
        rows = ranked[offset : offset + per_page + 1]
    else:
        by = "published" if sort == "relevance" else sort
        after = None if sort == "relevance" else position
        listed, counted = None, None
        if index is not None:
            # The index says how many match; up to COUNT_LIMIT, they are listed with their sort key.
            every: list[_Hit] | None = (
                None if sqlite else _index_hits(session, found, index, limit=COUNT_LIMIT + 1)
            )
            counted = (
                len(every)
                if every is not None
                else _index_count(session, found, index, limit=COUNT_LIMIT + 1)
            )
            if counted <= COUNT_LIMIT:
                listed = _listed(session, found, text, by, sqlite=sqlite, index=index, hits=every)
        elif found.rows:
            # The rows are read anyway. Up to COUNT_LIMIT matches, one pass lists them with their
            # sort key: the count and the page at once.
            listed = _listed(session, found, text, by, sqlite=sqlite)
        if index is not None:
            # Beyond COUNT_LIMIT, the notices are walked in the order of the page, among the
            # index's candidates and checked like them.
            found = replace(found, rows=found.rows + found.near, near=[])
            text = index.as_text()
        _restore_indexscan(session)  # the walks below read the indexes in order
        if listed is not None and len(listed) <= COUNT_LIMIT:
            total = len(listed)
            rows = (_after(listed, after, by) if after is not None else listed)[
                offset : offset + per_page + 1
            ]
        else:
            if counted is not None and counted > COUNT_LIMIT:
                total = counted
            else:
                total = len(listed) if listed is not None else _count(session, found, text, sqlite=sqlite)
            rows = _dated_page(
                session, found, text, by, after, sqlite=sqlite, few=total <= min(_FEW, COUNT_LIMIT),
                offset=offset, limit=per_page + 1,
            )  # fmt: skip
    capped, total = total > COUNT_LIMIT, min(total, COUNT_LIMIT)
    more, rows = len(rows) > per_page, rows[:per_page]

    next_cursor = None
    if more:
        data: dict[str, Any] = {"s": sort, "f": _fingerprint(query)}
        if sort == "relevance":
            data["o"] = offset + per_page
        else:
            value = rows[-1].key
            if isinstance(value, dt.datetime):
                value = value.astimezone(dt.UTC).isoformat()
            elif isinstance(value, dt.date):
                value = value.isoformat()
            data["k"] = [value, rows[-1].id]
        next_cursor = _encode_cursor(data)

    ids = [row.id for row in rows]
    # The notices with what a list shows of their collections, in one statement: loading the
    # collections themselves took four more, and three quarters of the search's time on
    # PostgreSQL (benchmarks/search.py).
    hydrate = select(Notice, *_SUMMARY).where(Notice.id.in_(ids))
    restore = session.info.pop(_INDEXSCAN, None)
    if restore is not None and ids:
        # Back to the index scans (see _pg_index_hits) as this statement runs: its subqueries are
        # planned with them.
        hydrate = hydrate.add_columns(func.set_config("enable_indexscan", restore, True))
    elif restore is not None:
        session.execute(select(func.set_config("enable_indexscan", restore, True)))
    loaded: dict[int, Notice] = {}
    summaries: dict[int, NoticeSummary] = {}
    for notice, departments, sources, lots, *_ in session.execute(hydrate) if ids else ():
        loaded[notice.id] = notice
        summaries[notice.id] = NoticeSummary(
            sorted((departments or "").split()), sorted(set((sources or "").split())), lots
        )
    items = [loaded[i] for i in ids if i in loaded]
    return SearchPage(
        items=items, total=total, page=page, per_page=per_page, next_cursor=next_cursor,
        total_capped=capped, summaries=summaries,
    )  # fmt: skip


# A list row's departments, sources (space-separated: neither holds a space) and number of lots.
_SUMMARY = (
    select(func.aggregate_strings(NoticeDepartment.department, " "))
    .where(NoticeDepartment.notice_id == Notice.id)
    .scalar_subquery(),
    select(func.aggregate_strings(Publication.source, " "))
    .where(Publication.notice_id == Notice.id)
    .scalar_subquery(),
    select(func.count()).select_from(Lot).where(Lot.notice_id == Notice.id).scalar_subquery(),
)


# On SQLite an "id IN (subquery)" becomes the loop that drives the query, whatever its size:
# sorting 100 000 notices of a search to show 20 of them. "id + 0" makes the same test a plain
# filter, so that SQLite walks the index of the sort column and stops at the page. Up to _FEW
# results, the matching ids are listed first and only they are sorted. PostgreSQL weighs
# semi-joins by itself.
_FEW = 2000


def _matching(found: _Filters, text: _TextMatch | None, *, sqlite: bool) -> Select[Any]:
    """The ids of every notice that passes the filters (for a count, or to list the few results).

    SQLite reads the text matches first (an FTS5 look-up is cheap); PostgreSQL is given the text
    as one more condition and picks which side to start from by its estimates.
    """
    text_ids = text.ids if text is not None else None
    if text is not None and text.contains is not None and not sqlite:
        notice_id: Any = Notice.id
        stmt = select(notice_id).where(text.contains(notice_id))
    elif text_ids is not None:
        driver = text_ids.subquery()  # a notice matches once
        notice_id = driver.c[0]
        stmt = select(notice_id).select_from(driver)
        if found.rows:
            stmt = stmt.join(Notice, Notice.id == notice_id)
    else:
        notice_id = Notice.id
        stmt = select(notice_id)
    return stmt.where(
        *[ids.has(notice_id) for ids in found.sets],
        *[notice_id.not_in(ids) for ids in found.hidden],
        *found.rows,
    )


def _count(session: Session, found: _Filters, text: _TextMatch | None, *, sqlite: bool) -> int:
    """How many notices pass the filters, up to COUNT_LIMIT + 1 (enough to say "more than"), reading
    the wide notices rows only for row conditions."""
    if found.rows:  # the rows are read anyway
        listed = _matching(found, text, sqlite=sqlite)
    else:
        sets = list(found.sets)
        text_ids = text.ids if text is not None else None
        if text_ids is not None:
            driver = text_ids.subquery()
        elif sets:
            first = sets.pop(0)
            ids = first.ids(unindexed=sqlite)
            driver = (ids if first.unique else ids.distinct()).subquery()  # several CPV codes, départements…
        else:  # no filter at all
            driver = select(Notice.id).subquery()
        notice_id = driver.c[0]
        # The hidden test is on ids only, and the count stops after COUNT_LIMIT + 1 of them.
        listed = select(notice_id).where(
            *[ids.has(notice_id) for ids in sets], *[notice_id.not_in(ids) for ids in found.hidden]
        )
    return session.scalar(select(func.count()).select_from(listed.limit(COUNT_LIMIT + 1).subquery())) or 0


class _Hit(NamedTuple):
    id: int
    key: Any  # the sort column's value
    score: float = 0.0  # relevance


def _index_hits(
    session: Session,
    found: _Filters,
    index: _IndexQuery,
    *,
    limit: int,
    key: Any = None,
    scored: bool = False,
    everything: bool = False,
) -> list[_Hit]:
    """The ``limit`` newest notices that the index finds and that pass every filter (``found``,
    made for the index: see _filters), newest first, with the ``key`` column and their relevance.
    ``everything``: the caller knows that there are no more than ``limit``.

    Only the index's candidates are checked against the filters; the notices rows are read for
    row conditions and keys only. SQLite's FTS5 reads its matches newest first and stops at the
    limit; a notices row is a look-up by rowid. PostgreSQL must read a notice_search row to learn
    a match's notice id: see _pg_index_hits.
    """
    notice_id = index.notice_id
    if session.get_bind().dialect.name != "sqlite":
        return _pg_index_hits(
            session, found, index, limit=limit, key=key, scored=scored, everything=everything
        )
    score = index.score if scored and index.score is not None else literal_column("0.0")
    stmt = select(
        notice_id.label("id"),
        (key if key is not None else literal_column("NULL")).label("key"),
        score.label("score"),
    ).select_from(index.table)
    stmt = stmt.where(index.match, *[ids.has(notice_id) for ids in found.sets])
    if key is not None or found.rows or found.near:
        stmt = stmt.join(Notice, Notice.id == notice_id).where(*found.rows, *found.near)
    stmt = stmt.where(*[notice_id.not_in(ids) for ids in found.hidden])
    return [_Hit(*row) for row in session.execute(stmt.order_by(notice_id.desc()).limit(limit))]


def _pg_index_hits(
    session: Session,
    found: _Filters,
    index: _IndexQuery,
    *,
    limit: int,
    key: Any = None,
    scored: bool = False,
    everything: bool = False,
) -> list[_Hit]:
    """_index_hits on PostgreSQL, which must read a notice_search row to learn a match's notice
    id. The index is asked for the matches among the newest notices (as many as the statistics
    say hold ``limit`` matches), then among older ones, as many as the density seen so far says
    hold the rest: it reads about as many rows as it returns whether the words are rare or common
    (a whole-index bitmap reads every match; a backward walk of the key reads every row). Each
    window's candidates are then checked on their notices rows, in one statement, for the filters
    that the facets do not answer and for the key; the row conditions that the facets answer but
    at their edges (see _Group), for the candidates with a boundary token only.
    """
    _restore_indexscan(session)  # the statement below is planned with the index scans
    notice_id = index.notice_id
    score = index.score if scored and index.score is not None else literal_column("0.0")
    edge = index.near if index.near is not None and found.near else literal_column("false")
    candidates = select(notice_id, score, edge).where(index.match)
    every_row = key is not None or bool(found.rows or found.sets)  # each candidate's row is read
    # PostgreSQL cannot tell how many notices a tsquery with facets finds (it takes the words and
    # tokens as independent, and prefixes as rare) and, expecting a handful, walks the window's
    # rows one by one: the index must find them. As SET LOCAL, until the end of the transaction
    # (see _restore_indexscan); in the same statement, the newest id. (The hidden notices are left
    # out by the index: tokens "merged" and "rejected".)
    newest, before, _ = session.execute(
        select(
            select(func.max(notice_id)).scalar_subquery(),
            func.current_setting("enable_indexscan"),
            func.set_config("enable_indexscan", "off", True),
        )
    ).one()
    session.info.setdefault(_INDEXSCAN, before)
    if found.hidden:  # not asked of the index (no caller does so)
        candidates = candidates.where(*[notice_id.not_in(ids) for ids in found.hidden])

    def checked(rows: list[Any]) -> list[_Hit]:
        """The candidates (id, score, edge) that pass the filters, with their key."""
        if every_row:
            wanted = [row[0] for row in rows]
            conditions = [*found.rows, *found.near]
        else:
            wanted = [row[0] for row in rows if row[2]]
            conditions = list(found.near)
            if not wanted:
                return [_Hit(i, None, s) for i, s, _ in rows]
        # One statement for the window, the ids as one array: the notices rows in the order of
        # the table (a bitmap), whatever the index scans are set to.
        stmt = select(Notice.id, key if key is not None else literal_column("NULL")).where(
            Notice.id == any_(_int_array("ids", wanted)),
            *[ids.has(Notice.id) for ids in found.sets],
            *conditions,
        )
        passed: dict[int, Any] = {i: k for i, k in session.execute(stmt)}
        if every_row:
            return [_Hit(i, passed[i], s) for i, s, _ in rows if i in passed]
        return [_Hit(i, None, s) for i, s, edge in rows if not edge or i in passed]

    hits: list[_Hit] = []
    top = high = newest or 0
    size = top if everything else int(limit / max(index.share, 1e-6) * index.margin) + 1
    seen = 0
    while high > 0 and len(hits) < limit:
        low = max(0, high - size)
        window = candidates.where(
            notice_id > bindparam("low", low, literal_execute=True),
            notice_id <= bindparam("high", high, literal_execute=True),
        )
        found_here = checked(list(session.execute(window).all()))
        found_here.sort(key=lambda hit: -hit.id)
        hits += found_here[: limit - len(hits)]
        seen += len(found_here)
        # The next window holds what is still wanted, at the density seen so far, and a quarter.
        density = seen / (top - low)
        size = int((limit - len(hits)) / density * 1.25) + 1 if density else size * 8
        high = low
    return hits


def _int_array(name: str, values: Iterable[int]) -> ColumnElement[Any]:
    """An integer[] parameter, sent as its text ("{1,2,3}"): psycopg writes a list of a thousand
    ints element by element, in milliseconds."""
    text = "{" + ",".join(str(int(v)) for v in values) + "}"
    return cast_(bindparam(name, text, type_=Text()), ARRAY(Integer))


def _index_count(session: Session, found: _Filters, index: _IndexQuery, *, limit: int) -> int:
    """How many notices the index finds that pass every filter, counting up to ``limit``."""
    if session.get_bind().dialect.name != "sqlite":
        return len(_pg_index_hits(session, found, index, limit=limit))
    stmt = select(index.notice_id).select_from(index.table).where(index.match)
    stmt = stmt.where(*[ids.has(index.notice_id) for ids in found.sets])
    if found.rows or found.near:
        stmt = stmt.join(Notice, Notice.id == index.notice_id).where(*found.rows, *found.near)
    stmt = stmt.where(*[index.notice_id.not_in(ids) for ids in found.hidden])
    return session.scalar(select(func.count()).select_from(stmt.limit(limit).subquery())) or 0


# session.info key: the value of enable_indexscan that _pg_index_hits turned off, to set again
# before a statement that needs the indexes read in order (_restore_indexscan, the hydration).
_INDEXSCAN = "tenderpool.search.enable_indexscan"


def _restore_indexscan(session: Session) -> None:
    restore = session.info.pop(_INDEXSCAN, None)
    if restore is not None:
        session.execute(select(func.set_config("enable_indexscan", restore, True)))


def _listed(
    session: Session,
    found: _Filters,
    text: _TextMatch | None,
    sort: str,
    *,
    sqlite: bool,
    index: _IndexQuery | None = None,
    hits: list[_Hit] | None = None,
) -> list[Any]:
    """Up to COUNT_LIMIT + 1 matches (with row conditions, or found by the index) as (id, key), in
    ``sort`` order when there are no more than COUNT_LIMIT: the order of _dated_page, undated
    notices last."""
    key = Notice.deadline_at if sort == "deadline" else Notice.published_at
    if hits is not None:  # every match, from the index: their keys
        wanted = select(Notice.id, key).where(Notice.id == any_(_int_array("ids", [h.id for h in hits])))
        keys: dict[int, Any] = {i: k for i, k in session.execute(wanted)} if hits else {}
        rows = [_Hit(h.id, keys[h.id]) for h in hits]
    elif index is not None:  # asked for when no more than COUNT_LIMIT match
        rows = _index_hits(session, found, index, limit=COUNT_LIMIT + 1, key=key, everything=True)
    else:
        matching = _matching(found, text, sqlite=sqlite)  # with row conditions, a query on notices
        listed = session.execute(matching.add_columns(key).limit(COUNT_LIMIT + 1))
        rows = [_Hit(notice_id, value) for notice_id, value in listed]
    if len(rows) > COUNT_LIMIT:
        return rows
    dated = [row for row in rows if row.key is not None]
    undated = [row for row in rows if row.key is None]
    if sort == "deadline":  # soonest first
        return sorted(dated, key=lambda r: (r.key, r.id)) + sorted(undated, key=lambda r: r.id)
    return sorted(dated, key=lambda r: (r.key, r.id), reverse=True) + sorted(undated, key=lambda r: -r.id)


def _after(rows: list[Any], after: dict[str, Any], sort: str) -> list[Any]:
    """The rows of a sorted listing that come after a keyset cursor, as _dated_page reads them."""
    value, last_id = after["value"], after["id"]
    soonest = sort == "deadline"

    def beyond(row: Any) -> bool:
        later = bool(row.id > last_id if soonest else row.id < last_id)
        if value is None:  # the cursor is among the undated notices, which come last
            return row.key is None and later
        if row.key is None:
            return True
        if row.key == value:
            return later
        return bool(row.key > value if soonest else row.key < value)

    return [row for row in rows if beyond(row)]


# How many notices a walk in the order of a page checks one by one, at most (see _dated_page):
# about 10 µs each on PostgreSQL.
_WALK = 5000


def _dated_page(
    session: Session,
    found: _Filters,
    text: _TextMatch | None,
    sort: str,
    after: dict[str, Any] | None,
    *,
    sqlite: bool,
    few: bool,
    offset: int,
    limit: int,
) -> list[Any]:
    """A page by deadline (soonest first) or publication (newest first), undated notices last.

    With many results, dated and undated notices are read by two queries, each in the order of
    the column's index: "NULLS LAST" in one ORDER BY would make PostgreSQL sort every match
    instead of walking the index and stopping at the page. ``after`` is a keyset cursor.
    """
    soonest = sort == "deadline"
    key = Notice.deadline_at if soonest else Notice.published_at
    by_id = Notice.id.asc() if soonest else Notice.id.desc()
    by_key = key.asc() if soonest else key.desc()
    dated: ColumnElement[bool] = and_(key.is_not(None), *(found.dated if soonest else []))
    undated: ColumnElement[bool] = key.is_(None)
    if after is not None:
        value, last_id = after["value"], after["id"]
        later = Notice.id > last_id if soonest else Notice.id < last_id
        if value is None:
            dated, undated = false(), and_(undated, later)
        else:
            beyond = key > value if soonest else key < value
            dated = and_(dated, or_(beyond, and_(key == value, later)))
    if few:
        stmt = select(Notice.id, key.label("key")).where(
            Notice.id.in_(_matching(found, text, sqlite=sqlite)), or_(dated, undated)
        )
        stmt = stmt.order_by(key.is_(None), by_key, by_id).offset(offset).limit(limit)
        return list(session.execute(stmt).all())
    conditions = [
        *[ids.has(Notice.id) for ids in found.sets],
        *[Notice.id.not_in(ids) for ids in found.hidden],
    ]
    conditions += found.rows
    wanted = offset + limit
    rows: list[Any] = []
    if text is not None and text.checks is not None:
        # PostgreSQL: the first _WALK notices in the order of the page, each checked for the text
        # on its own (see _pg_row_check); when they hold less than the page, PostgreSQL is left
        # to plan the whole walk (matches rare in that order: a join may then be better).
        walk = select(Notice.id, key.label("key")).where(*conditions, dated).order_by(by_key, by_id)
        walked = walk.limit(_WALK).subquery()
        page = select(walked.c.id, walked.c.key).where(text.checks(walked.c.id))
        page = page.order_by(walked.c.key.asc() if soonest else walked.c.key.desc())
        page = page.order_by(walked.c.id.asc() if soonest else walked.c.id.desc())
        rows = list(session.execute(page.limit(wanted)).all())
    if text is not None and text.contains is not None:
        conditions.append(text.contains(Notice.id))
    # Dated notices first, in the order of the column's index; the undated ones only when the
    # dated run out before the end of the page.
    if len(rows) < wanted:
        first = select(Notice.id, key.label("key")).where(*conditions, dated).order_by(by_key, by_id)
        rows = list(session.execute(first.limit(wanted)).all())
    if len(rows) < wanted:
        last = select(Notice.id, key.label("key")).where(*conditions, undated).order_by(by_id)
        rows += session.execute(last.limit(wanted - len(rows))).all()
    return rows[offset:]


# --------------------------------------------------------------------------- index maintenance


def _documents(session: Session, ids: list[int]) -> dict[int, str]:
    lots: dict[int, list[str | None]] = {}
    for notice_id, title in session.execute(
        select(Lot.notice_id, Lot.title).where(Lot.notice_id.in_(ids)).order_by(Lot.notice_id, Lot.position)
    ):
        lots.setdefault(notice_id, []).append(title)
    rows = session.execute(
        select(Notice.id, Notice.title, Notice.buyer_name, Notice.description).where(Notice.id.in_(ids))
    )
    return {
        notice_id: search_document(title, buyer, description, lots.get(notice_id, []))
        for notice_id, title, buyer, description in rows
    }


def _write_index(session: Session, ids: list[int], *, sqlite: bool) -> int:
    return _write_documents(session, ids, _documents(session, ids), sqlite=sqlite)


def _write_documents(session: Session, ids: list[int], documents: Mapping[int, str], *, sqlite: bool) -> int:
    rows = [{"notice_id": notice_id, "document": doc} for notice_id, doc in documents.items()]
    if sqlite:
        # FTS5 rows are keyed by rowid with no foreign key: delete for every id asked, so that a
        # deleted notice leaves nothing behind.
        session.execute(delete(_FTS).where(_FTS.c.rowid.in_(ids)))
        session.execute(delete(_SEARCH_TABLE).where(_SEARCH_TABLE.c.notice_id.in_(ids)))
        if rows:
            session.execute(insert(_SEARCH_TABLE), rows)
            write_fts_rows(session, [(i, fts_content(doc)) for i, doc in documents.items()])
        return len(rows)
    if rows:
        # The trigger recomputes tsv when the document is written; an unchanged one is left alone.
        upsert = pg_insert(_SEARCH_TABLE)
        upsert = upsert.on_conflict_do_update(
            index_elements=[_SEARCH_TABLE.c.notice_id],
            set_={"document": upsert.excluded.document},
            where=_SEARCH_TABLE.c.document.is_distinct_from(upsert.excluded.document),
        )
        session.execute(upsert, rows)
    return len(rows)


# The facets of a new row come from the view the triggers also read (see the facets section).
_FTS_INSERT = sql_text(
    "INSERT INTO notice_fts (rowid, content, facets) VALUES (:rowid, :content, "
    "coalesce((SELECT facets FROM notice_facets WHERE notice_id = :rowid), ''))"
)


def write_fts_rows(connection: Session | Connection, rows: Sequence[tuple[int, str]]) -> None:
    """SQLite: add notice_fts rows, (notice id, folded and stemmed content from :func:`fts_content`),
    with the notices' facets as they are in the database. The caller deletes older rows first."""
    if rows:
        connection.execute(_FTS_INSERT, [{"rowid": i, "content": content} for i, content in rows])


def refresh_search_index(session: Session, notice_ids: Iterable[int]) -> None:
    """Rebuild the search text of these notices (call after they change); only flushes."""
    ids = sorted({int(i) for i in notice_ids})
    if not ids:
        return
    session.flush()  # the index is built from the rows in the database
    sqlite = session.get_bind().dialect.name == "sqlite"
    for start in range(0, len(ids), _CHUNK):
        _write_index(session, ids[start : start + _CHUNK], sqlite=sqlite)


def index_notices(session: Session, notices: Iterable[Notice]) -> None:
    """Rebuild the search text of these notices from the objects themselves; only flushes.

    For a caller that holds the notices with their lots (the ingestion): the same as
    :func:`refresh_search_index` without reading them back from the database.
    """
    documents = {
        notice.id: search_document(
            notice.title, notice.buyer_name, notice.description, [lot.title for lot in notice.lots]
        )
        for notice in notices
    }
    if not documents:
        return
    session.flush()
    sqlite = session.get_bind().dialect.name == "sqlite"
    ids = sorted(documents)
    for start in range(0, len(ids), _CHUNK):
        chunk = ids[start : start + _CHUNK]
        _write_documents(session, chunk, {i: documents[i] for i in chunk}, sqlite=sqlite)


def rebuild_search_index(session: Session) -> int:
    """Index every notice from scratch (`tenderpool notices reindex`); only flushes. Returns the count."""
    session.flush()
    sqlite = session.get_bind().dialect.name == "sqlite"
    if sqlite:
        session.execute(delete(_FTS))
    session.execute(delete(_SEARCH_TABLE))
    done, last_id = 0, 0
    while True:
        ids = list(
            session.scalars(select(Notice.id).where(Notice.id > last_id).order_by(Notice.id).limit(_CHUNK))
        )
        if not ids:
            break
        done += _write_index(session, ids, sqlite=sqlite)
        last_id = ids[-1]
    if sqlite:
        # Merge the FTS5 segments written chunk by chunk into one b-tree: faster queries afterwards.
        session.execute(sql_text("INSERT INTO notice_fts(notice_fts) VALUES ('optimize')"))
    return done


_CHUNK = 500


# --------------------------------------------------------------------------- the firm=1 filter


def _matching_firm_condition(firm_id: int) -> ColumnElement[bool]:
    """``firm=1``: notices under the firm's CPV skills or with its keywords, not dismissed by it.

    The rule lives with the matching service (tenderpool.firms.matching), which also scores them.
    """
    # Imported here: the matching module reads the notices' tables, so it cannot be imported first.
    from tenderpool.firms.matching import firm_candidate_condition

    return firm_candidate_condition(firm_id)
