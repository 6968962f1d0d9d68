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
  Snowball French stemmer; queries are stemmed the same way and every word quoted. Ranked by bm25.
* PostgreSQL: ``notice_search.tsv`` is ``to_tsvector('french', unaccent(document))``; queries go
  through ``websearch_to_tsquery('french', unaccent(...))``. Ranked by ts_rank. French stop words
  ("de", "la") are dropped there, so a query of stop words only finds nothing on PostgreSQL.

Relevance ranks the newest ``RANK_LIMIT`` (1 000) matches, by arrival, which is all of them for
any query that a person reads to the end; totals are counted up to ``COUNT_LIMIT`` (1 000), beyond
which a page says "plus de 1 000 avis" (``SearchPage.total_capped``). Both bounds keep a common
word from costing a read of a quarter of the notices (benchmarks/search.py).

``notice_search.document`` (title, buyer, description without HTML, lot titles) is kept by
:func:`refresh_search_index`, which the ingestion calls for the notices of each batch;
:func:`rebuild_search_index` (``tenderpool notices reindex``) redoes every notice.
"""

from __future__ import annotations

import base64
import datetime as dt
import functools
import hashlib
import json
import re
import threading
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
    Float,
    Integer,
    Select,
    Subquery,
    Table,
    Text,
    and_,
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
from sqlalchemy.dialects.postgresql import TSQUERY, TSVECTOR
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.orm import Session, aliased, selectinload
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


@dataclass
class SearchPage:
    """One page of results, in the order asked."""

    items: list[Notice]
    total: int  # at most COUNT_LIMIT: see total_capped
    page: int
    per_page: int
    next_cursor: str | None = None  # for the API's cursor pagination
    # More than ``total`` notices match ("plus de 1 000 avis"): counting is capped at COUNT_LIMIT.
    total_capped: bool = False

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
    # What the rows imply for a notice that has a deadline, written as a range the deadline index
    # can seek: "open" is "deadline IS NULL OR deadline > now", an OR no index range is drawn from.
    dated: list[ColumnElement[bool]] = field(default_factory=list)


def _filters(query: SearchQuery, *, now: dt.datetime) -> _Filters:
    # An alias keeps these id subqueries uncorrelated when they sit in a query on notices.
    other = aliased(Notice, name="hidden_notices")
    hidden = [select(other.id).where(other.merged_into_id.is_not(None))]
    if not query.include_rejected:
        hidden.append(select(other.id).where(other.is_rejected.is_(True)))
    sets: list[_IdSet] = []
    rows: list[ColumnElement[bool]] = []
    if query.tags:  # the most selective first: the first set drives a count
        sets.append(_IdSet(NoticeTag.notice_id, NoticeTag.tag.in_(query.tags), unique=len(query.tags) == 1))
    if query.cpv:
        sets.append(_IdSet(
            NoticeCpv.notice_id,
            or_(*[_cpv_range(NoticeCpv.cpv, code) for code in query.cpv]),
            or_(*[_cpv_range(_unindexed(NoticeCpv.cpv), code) for code in query.cpv]),
        ))  # fmt: skip
    if query.departments:
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
    if query.contract_types:
        rows.append(Notice.contract_type.in_(query.contract_types))
    if query.value_min is not None:
        rows.append(Notice.estimated_value >= query.value_min)
    if query.value_max is not None:
        rows.append(Notice.estimated_value <= query.value_max)
    if query.closing_within_days is not None:
        rows += [
            Notice.deadline_at > now,
            Notice.deadline_at <= now + dt.timedelta(days=query.closing_within_days),
        ]
    if query.deadline_from is not None:
        rows.append(Notice.deadline_at >= _paris_midnight(query.deadline_from))
    if query.deadline_to is not None:
        rows.append(Notice.deadline_at < _paris_midnight(query.deadline_to + dt.timedelta(days=1)))
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
        rows.append(or_(*conditions))
    if query.featured_only:
        rows.append(Notice.is_featured.is_(True))
    if query.matching_firm and query.firm_id:
        rows.append(_matching_firm_condition(query.firm_id))
    return _Filters(sets=sets, hidden=hidden, rows=rows, dated=dated)


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
_FTS = table("notice_fts", column("rowid", Integer), column("content", Text))
_FTS_NAME: ColumnElement[Any] = literal_column("notice_fts")
_PG_SEARCH = table("notice_search", column("notice_id", Integer), column("tsv", TSVECTOR))
_SEARCH_TABLE = cast(Table, NoticeSearch.__table__)


@dataclass
class _TextMatch:
    ids: Select[Any] | None  # the ids of the matching notices, each once
    excluded: Select[Any] | None  # SQLite, a query of exclusions only ("-vitres"): ids that must not match
    ranked: Subquery | None  # (nid, score), higher score = more relevant; None: no rank (all tie)
    # Whether one given notice matches: on PostgreSQL a look-up of its row, so that a query that
    # stops after a page never reads every match (PostgreSQL must read a row to learn its notice id).
    contains: Callable[[Any], ColumnElement[bool]] | None = None


_NOTHING = _TextMatch(None, None, None)


def _text_match(session: Session, text: str, *, sqlite: bool) -> _TextMatch:
    parsed = parse_text(text)
    if not parsed.groups and not parsed.excluded:
        return _NOTHING  # nothing searchable ("*", "--"): no result rather than all
    if sqlite:
        positive, negative = fts_match_expression(parsed)
        if positive is None:
            return _TextMatch(None, select(_FTS.c.rowid).where(_FTS_NAME.op("MATCH")(negative)), None)
        expression = positive if negative is None else f"({positive}) NOT ({negative})"
        match = _FTS_NAME.op("MATCH")(expression)
        ranked = (
            # bm25() is lower for better matches; negated so that both engines sort "score desc".
            select(_FTS.c.rowid.label("nid"), (-func.bm25(_FTS_NAME)).label("score")).where(match).subquery()
        )
        ids = select(_FTS.c.rowid).where(match)
        return _TextMatch(ids, None, ranked, lambda notice_id: (notice_id + 0).in_(ids))
    parts = [
        func.websearch_to_tsquery(literal_column("'french'::regconfig"), func.unaccent(part), type_=TSQUERY)
        for part in websearch_texts(parsed)
    ]
    combined = functools.reduce(lambda a, b: func.tsquery_and(a, b, type_=TSQUERY), parts)
    # The tsquery is computed first and written into the queries as a constant: the planner then
    # estimates from the column statistics how many notices match ("nettoyage": a quarter of them,
    # not its blind 0.5 %), and picks a plan that fits; a parameter or subquery would hide it.
    # The text is PostgreSQL's own output, quoted by SQLAlchemy as a string literal.
    tsquery_text = session.scalar(select(cast_(combined, Text())))
    if not tsquery_text:
        return _NOTHING  # only stop words ("de la")
    tsquery = cast_(bindparam("tsquery", tsquery_text, type_=Text(), literal_execute=True), TSQUERY)
    match = _PG_SEARCH.c.tsv.op("@@", return_type=Boolean)(tsquery)
    ranked = (
        select(
            _PG_SEARCH.c.notice_id.label("nid"),
            func.ts_rank(_PG_SEARCH.c.tsv, tsquery, type_=Float).label("score"),
        )
        .where(match)
        .subquery()
    )

    def contains(notice_id: Any) -> ColumnElement[bool]:
        return select(_PG_SEARCH.c.notice_id).where(_PG_SEARCH.c.notice_id == notice_id, match).exists()

    return _TextMatch(select(_PG_SEARCH.c.notice_id).where(match), None, ranked, contains)


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
    if not sqlite:
        # These are short queries that stop at a page. PostgreSQL underestimates how many notices
        # a text matches when its words come together ("assurance statutaires"), then starts
        # parallel workers that each read thousands of rows before the first page is out: the
        # benchmark's median was 1.7 times slower with them (benchmarks/search.py). SET LOCAL
        # ends with the transaction.
        session.execute(sql_text("SET LOCAL max_parallel_workers_per_gather = 0"))
    found = _filters(query, now=now)
    text = _text_match(session, query.text, sqlite=sqlite) if query.text else None
    if text is _NOTHING:
        return SearchPage(items=[], total=0, page=page, per_page=per_page)
    if text is not None and text.excluded is not None:
        found.hidden.append(text.excluded)

    offset = (page - 1) * per_page
    if sort == "relevance" and position is not None:
        offset = position["offset"]
    elif position is not None:
        offset = 0
    if sort == "relevance" and text is not None and text.ranked is not None:
        total = _count(session, found, text, sqlite=sqlite)
        rows = _ranked_page(session, found, text.ranked, offset=offset, limit=per_page + 1)
    else:
        by = "published" if sort == "relevance" else sort
        after = None if sort == "relevance" else position
        listed = None
        if found.rows and after is None:
            # Row conditions: the rows are read anyway. Up to COUNT_LIMIT matches, one pass
            # lists them with their sort key: the count and the page at once.
            listed = _listed(session, found, text, by, sqlite=sqlite)
        if listed is not None and len(listed) <= COUNT_LIMIT:
            total, rows = len(listed), listed[offset : offset + per_page + 1]
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
    loaded = {
        notice.id: notice
        for notice in session.scalars(
            select(Notice)
            .where(Notice.id.in_(ids))
            .options(
                selectinload(Notice.lots),
                selectinload(Notice.publications),
                selectinload(Notice.cpv_links),
                selectinload(Notice.department_links),
            )
        )
    }
    items = [loaded[i] for i in ids if i in loaded]
    return SearchPage(
        items=items, total=total, page=page, per_page=per_page, next_cursor=next_cursor, total_capped=capped
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


def _listed(
    session: Session, found: _Filters, text: _TextMatch | None, sort: str, *, sqlite: bool
) -> list[Any]:
    """Up to COUNT_LIMIT + 1 matches (with row conditions) as (id, key), in ``sort`` order when
    there are no more than COUNT_LIMIT: the order of _dated_page, undated notices last."""
    matching = _matching(found, text, sqlite=sqlite)  # with row conditions, a query on notices
    key = Notice.deadline_at if sort == "deadline" else Notice.published_at
    listed = session.execute(matching.add_columns(key).limit(COUNT_LIMIT + 1))
    rows = [_Hit(notice_id, value) for notice_id, value in listed]
    if len(rows) > COUNT_LIMIT:
        return rows
    dated = [row for row in rows if row.key is not None]
    undated = [row for row in rows if row.key is None]
    if sort == "deadline":  # soonest first
        return sorted(dated, key=lambda r: (r.key, r.id)) + sorted(undated, key=lambda r: r.id)
    return sorted(dated, key=lambda r: (r.key, r.id), reverse=True) + sorted(undated, key=lambda r: -r.id)


def _ranked_page(
    session: Session, found: _Filters, ranked: Subquery, *, offset: int, limit: int
) -> list[Any]:
    """A page by relevance among the RANK_LIMIT newest matches (all of them when fewer match).

    Ranking every match of a common word read the text of a quarter of the notices for each query
    (benchmarks/search.py). The newest matches, by id (the order notices arrive in), are read in
    the order of the full-text index on SQLite and of the primary key on PostgreSQL, stopping at
    RANK_LIMIT; only they are scored.
    """
    notice_id = ranked.c.nid
    candidates = select(notice_id.label("id"), ranked.c.score).where(
        *[ids.has(notice_id) for ids in found.sets], *[notice_id.not_in(ids) for ids in found.hidden]
    )
    if found.rows:
        candidates = candidates.join(Notice, Notice.id == notice_id).where(*found.rows)
    newest = candidates.order_by(notice_id.desc()).limit(RANK_LIMIT).subquery()
    stmt = select(newest.c.id, newest.c.score).order_by(newest.c.score.desc(), newest.c.id.desc())
    return list(session.execute(stmt.offset(offset).limit(limit)).all())


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
    if text is not None and text.contains is not None:
        conditions.append(text.contains(Notice.id))
    # Dated notices first, in the order of the column's index; the undated ones only when the
    # dated run out before the end of the page.
    wanted = offset + limit
    first = (
        select(Notice.id, key.label("key")).where(*conditions, dated).order_by(by_key, by_id).limit(wanted)
    )
    rows = list(session.execute(first).all())
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
            fts_rows = [{"rowid": i, "content": fts_content(doc)} for i, doc in documents.items()]
            session.execute(insert(_FTS), fts_rows)
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
