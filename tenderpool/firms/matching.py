"""Which notices suit which firms, and why: a score from 0 to 100 with its reasons in French.

Used by the search filter ``firm=1`` (:func:`firm_candidate_condition`), the daily digest
(:func:`match_notices_for_firms`), the staff view of a notice (:func:`staff_notice_matches`)
and, later, the consortia. The rules are documented in ``docs/digests.md``; in short:

========================  =========  ========================================================
part                      points     rule
========================  =========  ========================================================
CPV                       0–50       50 when a notice code is one of the firm's skills; a code
                                     *below* a skill (45210000 under 45000000) loses 5 points
                                     per CPV digit of depth, 30 at least; a notice code
                                     *above* a skill (a generic 45000000 for a firm skilled in
                                     45210000) 25; the same division only, 10
words                     0–30       a firm keyword in the title or a lot title 25, in the
                                     description only 20, +5 per further keyword; a saved
                                     search of a member, with alerts on (all its words, CPV,
                                     départements and types) 25
geography                 0–15       a département of the firm's zone 15, a neighbouring one 8
                                     (15 when ``zone_radius_km`` ≥ 50), not given 6, far 0
size                      0–5        5 when the estimated value is known and not more than ten
                                     times the firm's latest turnover, 3 when unknown, else 0
feedback                  −50–0      "not interested" reasons lower similar notices
========================  =========  ========================================================

A notice is a match when it scores at least :data:`MIN_SCORE` and something in it is about the
firm's trade (a CPV or a word): the place and the size alone never make a match. A notice the
firm dismissed is never a match.

**Groupement.** The code of public procurement lets a buyer ask for a minimum yearly turnover of
at most twice the estimated value (art. R2142-7 CCP), and a groupement adds up its members'
capacities. A firm whose latest turnover is less than twice the value (value > turnover / 2) may
therefore be turned down alone: it is a *good candidate for a groupement*. The explanation then
says how far: above half the turnover, above the turnover, above three times the turnover.

**Bulk.** :func:`match_notices_for_firms` never scores every (firm, notice) pair: firms are
indexed by their skills' CPV prefixes (and every shorter prefix of them), by the first stem of
each keyword and of each saved search; each notice looks its codes and words up in these
indexes, and only the firms found there are scored.
"""

from __future__ import annotations

import datetime as dt
import functools
import gc
import operator
import re
from collections import defaultdict
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any
from urllib.parse import parse_qs

from sqlalchemy import (
    Boolean,
    ColumnElement,
    Integer,
    Text,
    case,
    column,
    func,
    literal,
    literal_column,
    or_,
    select,
    table,
    true,
)
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.orm import Session
from sqlalchemy.sql.compiler import SQLCompiler

from tenderpool.accounts.models import User
from tenderpool.firms.models import Firm, FirmCpv, FirmMembership, FirmStatus, FirmYear
from tenderpool.reference import cpv_label, cpv_prefix, departments

MIN_SCORE = 35

CPV_EXACT = 50
CPV_STEP = 5  # points lost per CPV digit between the skill and the (finer) notice code
CPV_UNDER_MIN = 30
CPV_BROADER = 25
CPV_DIVISION = 10
WORDS_TITLE = 25
WORDS_DESCRIPTION = 20
WORDS_SEARCH = 25
WORDS_EXTRA = 5
WORDS_MAX = 30
GEO_ZONE = 15
GEO_NEAR = 8
GEO_UNKNOWN = 6
SIZE_OK = 5
SIZE_UNKNOWN = 3
PENALTY_MAX = 50
NEAR_COUNTS_FULLY_KM = 50  # a zone radius from which neighbouring départements count as the zone

# Feedback: points taken from notices that look like one the firm marked "not interested".
PENALTY_BUYER = 40  # reason "buyer": same buyer
PENALTY_SAME_BUYER = 10  # no reason ("other"): same buyer
PENALTY_TRADE_CLASS = 20  # "not_our_trade": same CPV class (4 digits)
PENALTY_TRADE_DIVISION = 10  # "not_our_trade": same CPV division
PENALTY_OTHER_CLASS = 5  # no reason ("other"): same CPV class
PENALTY_FAR = 25  # "too_far": a notice in the dismissed notice's far départements
PENALTY_FAR_OTHER = 10  # "too_far": any other notice outside the zone and its neighbours
PENALTY_TOO_BIG = 20  # "too_big": value ≥ 80 % of the dismissed one
PENALTY_TOO_SMALL = 15  # "too_small": value ≤ 125 % of the dismissed one
PENALTY_DEADLINE = 10  # "deadline": a response window no longer than the dismissed one's

MAX_TEXT_CHARS = 20_000  # of a description: enough for the subject, bounded for huge notices

# Neighbouring départements of the chambers' territory (Île-de-France and its border), for the
# "voisin" part of the geography rule. A département not listed has no known neighbour: its firms
# get the zone and far rules only. Written one way; the table is made symmetric below.
_BORDERS = {
    "75": ("92", "93", "94"),
    "77": ("02", "10", "45", "51", "60", "89", "91", "93", "94", "95"),
    "78": ("27", "28", "91", "92", "95"),
    "91": ("28", "45", "77", "78", "92", "94"),
    "92": ("75", "78", "91", "93", "94", "95"),
    "93": ("75", "77", "92", "94", "95"),
    "94": ("75", "77", "91", "92", "93"),
    "95": ("27", "60", "77", "78", "92", "93"),
}


def _symmetric(borders: dict[str, tuple[str, ...]]) -> dict[str, frozenset[str]]:
    out: dict[str, set[str]] = defaultdict(set)
    for dep, others in borders.items():
        for other in others:
            out[dep].add(other)
            out[other].add(dep)
    return {dep: frozenset(others) for dep, others in out.items()}


NEIGHBOURS = _symmetric(_BORDERS)


def neighbours_of(zone: Iterable[str]) -> frozenset[str]:
    """The départements bordering ``zone`` (outside it)."""
    zone = set(zone)
    return frozenset(d for dep in zone for d in NEIGHBOURS.get(dep, ()) if d not in zone)


# --------------------------------------------------------------------------- results


@dataclass(slots=True)
class Match:
    """A notice suits a firm: its score (0–100), why, and whether a groupement is advised.

    The reasons are written when first asked for: a digest shows twenty matches of a firm among
    possibly hundreds, and the French sentences of all of them would cost more than the scoring.
    Read-only by convention: not frozen, because a frozen dataclass is four times slower to
    create and the bulk matching creates millions of them.
    """

    firm_id: int
    notice_id: int
    score: int
    is_group_candidate: bool
    _facts: _Facts | None = field(default=None, repr=False, compare=False)

    @property
    def reasons(self) -> tuple[str, ...]:
        return self._facts.reasons(self.firm_id, self.notice_id) if self._facts is not None else ()

    @property
    def explanation(self) -> str:
        return " ; ".join(self.reasons)


@dataclass(frozen=True, slots=True)
class FirmMatch:
    """A match with its firm, for the staff view of a notice."""

    firm: Firm
    match: Match


# --------------------------------------------------------------------------- formatting


def money_short(value: float | Decimal) -> str:
    """Amounts as people say them: 2,4 M€, 350 k€, 12 500 €."""
    amount = float(value)
    if amount >= 1_000_000:
        text = f"{amount / 1_000_000:.1f}".rstrip("0").rstrip(".")
        return text.replace(".", ",") + " M€"
    if amount >= 10_000:
        return f"{int(amount / 1000 + 0.5):d} k€"  # half up, as people round (not to even)
    return f"{int(amount + 0.5):,d}".replace(",", "\u202f") + " €"


def _department_label(code: str) -> str:
    name = departments().get(code)
    return f"{name} ({code})" if name else code


@functools.lru_cache(maxsize=20_000)
def _cpv_text(code: str) -> str:
    label = cpv_label(code)
    return f"{code} {label}" if label else code


# --------------------------------------------------------------------------- facts


@dataclass(slots=True)
class _Notice:
    id: int
    codes: list[tuple[str, str]]  # (8-digit code, significant prefix), main first, lots' after
    main_words: str  # " stem stem " of the title and lot titles (phrases are looked for with spaces)
    description_words: str
    all_words: str  # title, buyer, description and lots: what a saved search reads
    stems: frozenset[str]  # every stem, buyer included (what the text search reads)
    main_stems: frozenset[str]
    description_stems: frozenset[str]
    departments: tuple[str, ...]
    contract_type: str | None
    buyer_key: str | None
    value: float | None
    lots: list[tuple[str, str | None, tuple[str, ...], float | None]]  # number, title, codes, value
    window_days: float | None  # deadline minus publication
    divisions: frozenset[str] = frozenset()
    department_set: frozenset[str] = frozenset()  # set operations with a firm's zone are faster
    # (value, number, CPV prefixes) of the lots with a value, cheapest first, when several have one
    valued_lots: list[tuple[float, str, tuple[str, ...]]] = field(default_factory=list)


@dataclass(slots=True)
class _Rule:
    """What a saved search asks about a notice's content (its other filters are for the digest).

    Shared by every saved search with the same query, so that it is checked once per notice.
    """

    groups: list[list[tuple[str, ...]]]  # every group needs one of its phrases (stems)
    excluded: list[tuple[str, ...]]
    prefixes: tuple[str, ...]
    departments: frozenset[str]
    contract_types: frozenset[str]

    def matches(self, notice: _Notice) -> bool:
        text = notice.all_words
        for group in self.groups:
            if not any(has_phrase(text, notice.stems, phrase) for phrase in group):
                return False
        if any(has_phrase(text, notice.stems, phrase) for phrase in self.excluded):
            return False
        if self.prefixes and not any(p.startswith(s) for _, p in notice.codes for s in self.prefixes):
            return False
        if self.departments and not self.departments.intersection(notice.departments):
            return False
        return not (self.contract_types and notice.contract_type not in self.contract_types)


@dataclass(slots=True)
class _Search:
    name: str
    rule: _Rule

    @property
    def groups(self) -> list[list[tuple[str, ...]]]:
        return self.rule.groups

    @property
    def prefixes(self) -> tuple[str, ...]:
        return self.rule.prefixes

    def matches(self, notice: _Notice) -> bool:
        return self.rule.matches(notice)


@dataclass(slots=True)
class _Feedback:
    dismissed: set[int] = field(default_factory=set)
    buyers: dict[str, int] = field(default_factory=dict)
    classes: dict[str, int] = field(default_factory=dict)
    divisions: dict[str, int] = field(default_factory=dict)
    far_departments: set[str] = field(default_factory=set)
    avoids_far: bool = False
    too_big_from: float | None = None
    too_small_below: float | None = None
    short_window_days: float | None = None

    def __bool__(self) -> bool:
        return bool(self.buyers or self.classes or self.divisions or self.avoids_far) or (
            self.too_big_from is not None
            or self.too_small_below is not None
            or self.short_window_days is not None
        )


@dataclass(slots=True)
class _Firm:
    id: int
    zone: frozenset[str]
    near: frozenset[str]
    near_counts_fully: bool
    turnover: float | None
    skills: list[str] = field(default_factory=list)  # in the order they were indexed
    prefixes: list[str] = field(default_factory=list)  # of the skills, same order
    prefix_tuple: tuple[str, ...] = ()  # the same, for str.startswith
    divisions: set[str] = field(default_factory=set)
    keywords: list[tuple[int, str, tuple[str, ...]]] = field(default_factory=list)  # position, text, stems
    searches: list[_Search] = field(default_factory=list)
    feedback: _Feedback = field(default_factory=_Feedback)
    learns: bool = False  # has feedback that lowers scores (checked for every pair)


def has_phrase(words: str, stems: frozenset[str], phrase: tuple[str, ...]) -> bool:
    if len(phrase) == 1:
        return phrase[0] in stems
    return " " + " ".join(phrase) + " " in words


def _words(*texts: str | None) -> tuple[str, list[str]]:
    from tenderpool.notices.search import stem_tokens

    tokens = [t for text in texts if text for t in stem_tokens(text[:MAX_TEXT_CHARS])]
    return " " + " ".join(tokens) + " ", tokens


def _buyer_key(siret: str | None, name: str | None) -> str | None:
    from tenderpool.notices.search import fold

    if siret:
        return siret
    if name:
        return " ".join(re.findall(r"\w+", fold(name)))
    return None


def _float(value: Decimal | float | None) -> float | None:
    return None if value is None else float(value)


def _load_notices(session: Session, notice_ids: Sequence[int]) -> dict[int, _Notice]:
    from tenderpool.notices.models import Lot, Notice, NoticeCpv, NoticeDepartment
    from tenderpool.notices.search import html_to_text

    out: dict[int, _Notice] = {}
    for chunk in _chunks(sorted(set(notice_ids))):
        codes: dict[int, list[str]] = defaultdict(list)
        for nid, code in session.execute(
            select(NoticeCpv.notice_id, NoticeCpv.cpv)
            .where(NoticeCpv.notice_id.in_(chunk))
            .order_by(NoticeCpv.notice_id, NoticeCpv.position)
        ):
            codes[nid].append(code)
        deps: dict[int, list[str]] = defaultdict(list)
        for nid, dep in session.execute(
            select(NoticeDepartment.notice_id, NoticeDepartment.department).where(
                NoticeDepartment.notice_id.in_(chunk)
            )
        ):
            deps[nid].append(dep)
        lots: dict[int, list[tuple[str, str | None, tuple[str, ...], float | None]]] = defaultdict(list)
        for nid, number, title, lot_cpv, value in session.execute(
            select(Lot.notice_id, Lot.number, Lot.title, Lot.cpv, Lot.estimated_value)
            .where(Lot.notice_id.in_(chunk))
            .order_by(Lot.notice_id, Lot.position)
        ):
            lots[nid].append((number, title, tuple(lot_cpv or ()), _float(value)))
        rows = session.execute(
            select(
                Notice.id, Notice.title, Notice.description, Notice.buyer_name, Notice.buyer_siret,
                Notice.contract_type, Notice.estimated_value, Notice.deadline_at, Notice.published_at,
            ).where(Notice.id.in_(chunk), Notice.merged_into_id.is_(None), Notice.is_rejected.is_(False))
        )  # fmt: skip
        for nid, title, description, buyer, siret, ctype, value, deadline, published in rows:
            notice_lots = lots.get(nid, [])
            all_codes = list(
                dict.fromkeys([*codes.get(nid, []), *(c for lot in notice_lots for c in lot[2])])
            )
            main_words, main_tokens = _words(title, *(lot[1] for lot in notice_lots))
            description_text = html_to_text(description or "")
            description_words, description_tokens = _words(description_text)
            all_words, _ = _words(title, buyer, description_text, *(lot[1] for lot in notice_lots))
            amount = _float(value)
            if amount is None and notice_lots and all(lot[3] is not None for lot in notice_lots):
                amount = sum(lot[3] or 0.0 for lot in notice_lots)
            window = None
            if deadline is not None and published is not None:
                start = dt.datetime.combine(published, dt.time(), tzinfo=dt.UTC)
                window = (deadline - start).total_seconds() / 86400
            out[nid] = _Notice(
                id=nid,
                codes=[(c, cpv_prefix(c)) for c in all_codes],
                main_words=main_words,
                description_words=description_words,
                all_words=all_words,
                stems=frozenset(all_words.split()),
                main_stems=frozenset(main_tokens),
                description_stems=frozenset(description_tokens),
                departments=tuple(sorted(deps.get(nid, []))),
                contract_type=ctype,
                buyer_key=_buyer_key(siret, buyer),
                value=amount,
                lots=notice_lots,
                window_days=window,
                divisions=frozenset(code[:2] for code in all_codes),
                department_set=frozenset(deps.get(nid, ())),
                valued_lots=sorted(
                    (lot[3], lot[0], tuple(cpv_prefix(c) for c in lot[2]))
                    for lot in notice_lots
                    if lot[3] is not None
                )
                if sum(lot[3] is not None for lot in notice_lots) > 1
                else [],
            )
    return out


def _chunks(ids: Sequence[int], size: int = 1000) -> Iterator[list[int]]:
    for start in range(0, len(ids), size):
        yield list(ids[start : start + size])


def _parse_search(name: str, raw: str, rules: dict[str, _Rule | None]) -> _Search | None:
    """A saved search's content rule, parsed once per distinct query (``rules`` caches them)."""
    if raw not in rules:
        rules[raw] = _parse_rule(raw)
    rule = rules[raw]
    return None if rule is None else _Search(name, rule)


def _parse_rule(raw: str) -> _Rule | None:
    from tenderpool.notices.search import QueryParamError, SearchQuery, parse_text

    try:
        query = SearchQuery.from_args(parse_qs(raw))
    except QueryParamError:
        return None
    parsed = parse_text(query.text) if query.text else None
    groups = [[p.stems for p in group if p.stems] for group in parsed.groups] if parsed else []
    groups = [g for g in groups if g]
    if not groups and not query.cpv:
        return None  # only a place, a size or a date: says nothing about the firm's trade
    return _Rule(
        groups=groups,
        excluded=[p.stems for p in parsed.excluded if p.stems] if parsed else [],
        prefixes=tuple(cpv_prefix(c) for c in query.cpv),
        departments=frozenset(query.departments),
        contract_types=frozenset(query.contract_types),
    )


@dataclass(slots=True)
class _Index:
    """Firms by what a notice can be looked up with, grouped so that what many firms share (a
    skill, a keyword, a saved search) is checked once per notice."""

    firms: dict[int, _Firm] = field(default_factory=dict)
    by_skill: dict[str, list[int]] = field(default_factory=lambda: defaultdict(list))  # prefix -> firms
    by_ancestor: dict[str, list[int]] = field(default_factory=lambda: defaultdict(list))  # shorter prefix
    # first stem -> phrase -> firms (with the keyword's position, for the explanation order)
    by_keyword: dict[str, dict[tuple[str, ...], list[int]]] = field(
        default_factory=lambda: defaultdict(lambda: defaultdict(list))
    )
    # first stem of a phrase of the first group (or a CPV prefix) -> id(rule) -> (rule, [(firm, name)])
    by_search_word: dict[str, dict[int, tuple[_Rule, list[tuple[int, str]]]]] = field(
        default_factory=lambda: defaultdict(dict)
    )
    by_search_cpv: dict[str, dict[int, tuple[_Rule, list[tuple[int, str]]]]] = field(
        default_factory=lambda: defaultdict(dict)
    )


def _load_firms(session: Session, firm_ids: Sequence[int] | None, chamber_slug: str | None = None) -> _Index:
    from tenderpool.notices.models import (
        Lot,
        Notice,
        NoticeCpv,
        NoticeDepartment,
        NoticeDismissal,
        SavedSearch,
    )

    index = _Index()
    stmt = select(Firm.id, Firm.department, Firm.zone_departments, Firm.zone_radius_km, Firm.keywords).where(
        Firm.status == FirmStatus.APPROVED.value
    )
    if chamber_slug is not None:
        stmt = stmt.where(Firm.chamber_slug == chamber_slug)
    chunks: list[list[int] | None] = list(_chunks(sorted(set(firm_ids)))) if firm_ids is not None else [None]
    keyword_rows: list[tuple[int, list[str]]] = []
    rules: dict[str, _Rule | None] = {}
    for chunk in chunks:
        part = stmt if chunk is None else stmt.where(Firm.id.in_(chunk))
        for fid, department, zone, radius, keywords in session.execute(part):
            zone_set = frozenset(zone or ()) or frozenset([department])
            index.firms[fid] = _Firm(
                id=fid,
                zone=zone_set,
                near=neighbours_of(zone_set),
                near_counts_fully=bool(radius and radius >= NEAR_COUNTS_FULLY_KM),
                turnover=None,
            )
            keyword_rows.append((fid, list(keywords or [])))
    ids = sorted(index.firms)
    for fid, keywords in keyword_rows:
        unique = dict.fromkeys(" ".join(str(k).split()) for k in keywords)
        for position, keyword in enumerate(unique):
            _, stems = _words(keyword)
            if keyword and stems:
                index.by_keyword[stems[0]][tuple(stems)].append(fid)
                index.firms[fid].keywords.append((position, keyword, tuple(stems)))
    for chunk in _chunks(ids):
        for fid, code in session.execute(
            select(FirmCpv.firm_id, FirmCpv.cpv)
            .where(FirmCpv.firm_id.in_(chunk))
            .order_by(FirmCpv.firm_id, FirmCpv.cpv)
        ):
            firm = index.firms[fid]
            prefix = cpv_prefix(code)
            firm.skills.append(code)
            firm.prefixes.append(prefix)
            firm.prefix_tuple += (prefix,)
            firm.divisions.add(code[:2])
            index.by_skill[prefix].append(fid)
            for length in range(2, len(prefix)):
                index.by_ancestor[prefix[:length]].append(fid)
        # Latest year with a turnover: rows come in year order, the last one wins.
        for fid, turnover in session.execute(
            select(FirmYear.firm_id, FirmYear.turnover)
            .where(FirmYear.firm_id.in_(chunk), FirmYear.turnover.is_not(None))
            .order_by(FirmYear.firm_id, FirmYear.year)
        ):
            index.firms[fid].turnover = _float(turnover)
        for fid, name, raw in session.execute(
            select(FirmMembership.firm_id, SavedSearch.name, SavedSearch.query)
            .join(SavedSearch, SavedSearch.user_id == FirmMembership.user_id)
            .where(FirmMembership.firm_id.in_(chunk), SavedSearch.is_alert.is_(True))
            .order_by(SavedSearch.id)
        ):
            search = _parse_search(name, raw, rules)
            if search is None:
                continue
            index.firms[fid].searches.append(search)
            if search.groups:
                for phrase in search.groups[0]:
                    entry = index.by_search_word[phrase[0]].setdefault(id(search.rule), (search.rule, []))
                    entry[1].append((fid, search.name))
            else:
                for prefix in search.prefixes:
                    entry = index.by_search_cpv[prefix].setdefault(id(search.rule), (search.rule, []))
                    entry[1].append((fid, search.name))
        dismissals = list(
            session.execute(
                select(NoticeDismissal.firm_id, NoticeDismissal.notice_id, NoticeDismissal.reason).where(
                    NoticeDismissal.firm_id.in_(chunk)
                )
            )
        )
        if not dismissals:
            continue
        dismissed_ids = sorted({nid for _, nid, _ in dismissals})
        facts: dict[int, dict[str, Any]] = {}
        for nid_chunk in _chunks(dismissed_ids):
            for nid, siret, buyer, value, deadline, published in session.execute(
                select(
                    Notice.id, Notice.buyer_siret, Notice.buyer_name, Notice.estimated_value,
                    Notice.deadline_at, Notice.published_at,
                ).where(Notice.id.in_(nid_chunk))
            ):  # fmt: skip
                window = None
                if deadline is not None and published is not None:
                    start = dt.datetime.combine(published, dt.time(), tzinfo=dt.UTC)
                    window = (deadline - start).total_seconds() / 86400
                facts[nid] = {"buyer": _buyer_key(siret, buyer), "value": _float(value), "window": window,
                              "codes": set(), "deps": set()}  # fmt: skip
            for nid, code in session.execute(
                select(NoticeCpv.notice_id, NoticeCpv.cpv).where(NoticeCpv.notice_id.in_(nid_chunk))
            ):
                facts[nid]["codes"].add(code)
            for nid, lot_cpv in session.execute(
                select(Lot.notice_id, Lot.cpv).where(Lot.notice_id.in_(nid_chunk))
            ):
                facts[nid]["codes"].update(lot_cpv or ())
            for nid, dep in session.execute(
                select(NoticeDepartment.notice_id, NoticeDepartment.department).where(
                    NoticeDepartment.notice_id.in_(nid_chunk)
                )
            ):
                facts[nid]["deps"].add(dep)
        for fid, nid, reason in dismissals:
            _learn(index.firms[fid], nid, reason, facts.get(nid))
            index.firms[fid].learns = bool(index.firms[fid].feedback)
    return index


def _raise(table: dict[str, int], key: str | None, points: int) -> None:
    if key:
        table[key] = max(table.get(key, 0), points)


def _learn(firm: _Firm, notice_id: int, reason: str, facts: dict[str, Any] | None) -> None:
    """Turn one "not interested" into penalties on similar notices (see the module docstring)."""
    feedback = firm.feedback
    feedback.dismissed.add(notice_id)
    if facts is None:
        return
    buyer, value, window = facts["buyer"], facts["value"], facts["window"]
    if reason == "buyer":
        _raise(feedback.buyers, buyer, PENALTY_BUYER)
    elif reason == "not_our_trade":
        for code in facts["codes"]:
            _raise(feedback.classes, code[:4], PENALTY_TRADE_CLASS)
            _raise(feedback.divisions, code[:2], PENALTY_TRADE_DIVISION)
    elif reason == "other":
        # No reason given: a little less of the same buyer and the same kind of work.
        _raise(feedback.buyers, buyer, PENALTY_SAME_BUYER)
        for code in facts["codes"]:
            _raise(feedback.classes, code[:4], PENALTY_OTHER_CLASS)
    elif reason == "too_far":
        feedback.avoids_far = True
        feedback.far_departments.update(d for d in facts["deps"] if d not in firm.zone)
    elif reason == "too_big" and value is not None:
        threshold = value * 0.8
        feedback.too_big_from = min(feedback.too_big_from or threshold, threshold)
    elif reason == "too_small" and value is not None:
        threshold = value * 1.25
        feedback.too_small_below = max(feedback.too_small_below or threshold, threshold)
    elif reason == "deadline" and window is not None:
        feedback.short_window_days = max(feedback.short_window_days or window, window)


# --------------------------------------------------------------------------- scoring


@dataclass(slots=True)
class _Hits:
    cpv: tuple[int, str, str, str] | None = None  # points, notice code, skill, relation
    # (position among the firm's keywords, keyword, where: "title" or "description")
    words: list[tuple[int, str, str]] = field(default_factory=list)
    searches: list[str] = field(default_factory=list)


_Found = tuple[
    dict[int, int],  # firm -> CPV points (the best relation between a notice code and a skill)
    dict[int, int],  # firm -> how many of its keywords are in the notice
    set[int],  # firms with a keyword in the title or a lot title
    dict[int, list[str]],  # firm -> names of its saved searches that find the notice
]


def _collect(index: _Index, notice: _Notice) -> _Found:
    """The firms an index lookup finds for ``notice``, with what was found: the hot loop.

    Only numbers: which code and which skill made the points is found again, pair by pair, by
    :func:`pair_hits` when an explanation is asked for.
    """
    cpv: dict[int, int] = {}
    words: dict[int, int] = {}
    titles: set[int] = set()
    searches: dict[int, list[str]] = {}
    seen_rules: set[int] = set()
    by_skill, by_ancestor, by_search_cpv = index.by_skill, index.by_ancestor, index.by_search_cpv

    def add_searches(rules: dict[int, tuple[_Rule, list[tuple[int, str]]]]) -> None:
        for key, (rule, owners) in rules.items():
            if key in seen_rules:
                continue
            seen_rules.add(key)
            if rule.matches(notice):
                for fid, name in owners:
                    names = searches.setdefault(fid, [])
                    if name not in names:
                        names.append(name)

    get = cpv.get
    for _code, prefix in notice.codes:
        size = len(prefix)
        for length in range(2, size + 1):
            part = prefix[:length]
            fids = by_skill.get(part)
            if fids:
                points = (
                    CPV_EXACT
                    if length == size
                    else max(CPV_UNDER_MIN, CPV_EXACT - CPV_STEP * (size - length))
                )
                for fid in fids:
                    if get(fid, 0) < points:
                        cpv[fid] = points
            rules = by_search_cpv.get(part)
            if rules:
                add_searches(rules)
        for fid in by_ancestor.get(prefix, ()):
            if get(fid, 0) < CPV_BROADER:
                cpv[fid] = CPV_BROADER
    by_keyword, by_search_word = index.by_keyword, index.by_search_word
    for stem in notice.stems:
        phrases = by_keyword.get(stem)
        if phrases:
            for phrase, fids in phrases.items():
                if has_phrase(notice.main_words, notice.main_stems, phrase):
                    titles.update(fids)
                elif not has_phrase(notice.description_words, notice.description_stems, phrase):
                    continue
                for fid in fids:
                    words[fid] = words.get(fid, 0) + 1
        rules = by_search_word.get(stem)
        if rules:
            add_searches(rules)
    return cpv, words, titles, searches


def _value_for(firm: _Firm, notice: _Notice) -> tuple[float | None, str | None]:
    """The amount the firm would answer for: the smallest lot it fits when lots have values."""
    if notice.valued_lots and firm.prefixes:
        skills = firm.prefix_tuple
        for value, number, prefixes in notice.valued_lots:  # cheapest first: the first that fits
            for prefix in prefixes:
                if prefix.startswith(skills):
                    return value, number
    return notice.value, None


def _score(
    firm: _Firm,
    notice: _Notice,
    cpv: tuple[int, str, str, str] | None,
    words: list[tuple[int, str, str]] | None,
    searches: list[str] | None,
    *,
    explain: bool,
) -> tuple[int, list[str], bool] | None:
    """The score of a pair from what was found, the reasons when ``explain``, the groupement flag.

    None when nothing in the notice is about the firm's trade, or when it cannot reach
    MIN_SCORE (computing a score is the inner loop of the bulk matching: it must stay cheap).
    """
    reasons: list[str] = []
    # Trade: CPV and words.
    cpv_points = 0
    if cpv is not None:
        cpv_points, code, skill, relation = cpv
        if explain:
            if relation == "exact":
                reasons.append(f"CPV {_cpv_text(code)} : votre compétence")
            elif relation == "under":
                reasons.append(f"CPV {_cpv_text(code)} ⊂ votre compétence {skill}")
            else:
                reasons.append(f"CPV {_cpv_text(code)} englobe votre compétence {skill}")
    elif firm.divisions and not firm.divisions.isdisjoint(notice.divisions):
        cpv_points = CPV_DIVISION
        if explain:
            division = min(firm.divisions & notice.divisions)
            reasons.append(f"même division CPV que vos compétences : {_cpv_text(division + '000000')}")
    word_points = 0
    if words:
        in_title = False
        for _position, _keyword, where in words:
            if where == "title":
                in_title = True
                break
        word_points = (WORDS_TITLE if in_title else WORDS_DESCRIPTION) + WORDS_EXTRA * (len(words) - 1)
        if explain:
            ordered = sorted(words)
            title_words = [k for _, k, where in ordered if where == "title"]
            described = [k for _, k, where in ordered if where == "description"]
            if title_words:
                label = "mots-clés" if len(title_words) > 1 else "mot-clé"
                reasons.append(f"{label} dans le titre : " + ", ".join(f"« {k} »" for k in title_words))
            if described:
                label = "mots-clés" if len(described) > 1 else "mot-clé"
                reasons.append(f"{label} dans la description : " + ", ".join(f"« {k} »" for k in described))
    if searches:
        word_points = max(word_points, WORDS_SEARCH) + WORDS_EXTRA * (len(searches) - 1)
        if explain:
            names = ", ".join(f"« {name} »" for name in sorted(searches))
            reasons.append(f"recherche enregistrée {names}")
    word_points = min(word_points, WORDS_MAX)
    if cpv_points == 0 and word_points == 0:
        return None
    if not explain and cpv_points + word_points + GEO_ZONE + SIZE_OK < MIN_SCORE:
        return None  # the place and the size cannot make up for it

    # Place.
    deps = notice.departments
    in_zone = not firm.zone.isdisjoint(notice.department_set)
    near = not in_zone and not firm.near.isdisjoint(notice.department_set)
    if in_zone:
        geo = GEO_ZONE
        if explain:
            reasons.append(", ".join(_department_label(d) for d in deps if d in firm.zone))
    elif near:
        geo = GEO_ZONE if firm.near_counts_fully else GEO_NEAR
        if explain:
            reasons.append(
                ", ".join(_department_label(d) for d in deps if d in firm.near) + " : voisin de votre zone"
            )
    elif not deps:
        geo = GEO_UNKNOWN
        if explain:
            reasons.append("lieu d'exécution non précisé")
    else:
        geo = 0
        if explain:
            reasons.append("hors de votre zone : " + ", ".join(_department_label(d) for d in deps))

    # Size, and whether a groupement is advised.
    value, lot_number = _value_for(firm, notice)
    group = False
    size = SIZE_UNKNOWN
    if value is not None and value > 0:
        turnover = firm.turnover
        amount = ""
        if explain:
            amount = (
                ("lot " + lot_number + " : " if lot_number else "") + "montant estimé " + money_short(value)
            )
        if turnover is None or turnover <= 0:
            if explain:
                reasons.append(f"{amount} (indiquez votre CA pour savoir s'il faut un groupement)")
        else:
            ratio = value / turnover
            size = SIZE_OK if ratio <= 10 else 0
            group = ratio > 0.5
            if explain:
                if ratio > 3:
                    reasons.append(f"{amount} > 3 × votre CA : groupement conseillé")
                elif ratio > 1:
                    reasons.append(f"{amount} > votre CA : groupement conseillé")
                elif ratio > 0.5:
                    reasons.append(
                        f"{amount} > la moitié de votre CA : l'acheteur peut exiger un CA du double "
                        "du montant, un groupement sécurise la candidature"
                    )
                else:
                    reasons.append(f"{amount} : à votre mesure")

    # Feedback.
    penalty = 0
    if firm.learns:
        found = _penalties(firm, notice, value, in_zone=in_zone, near=near)
        penalty = min(PENALTY_MAX, sum(points for points, _ in found))
        if explain:
            reasons += [f"moins pertinent : {text}" for _, text in found]

    score = max(0, min(100, cpv_points + word_points + geo + size - penalty))
    return score, reasons, group


def _penalties(
    firm: _Firm, notice: _Notice, value: float | None, *, in_zone: bool, near: bool
) -> list[tuple[int, str]]:
    """What the firm's "not interested" marks take from this notice, and why."""
    feedback = firm.feedback
    deps = notice.departments
    found: list[tuple[int, str]] = []
    if notice.buyer_key and notice.buyer_key in feedback.buyers:
        found.append((feedback.buyers[notice.buyer_key], "vous avez écarté un avis de cet acheteur"))
    trade = max((feedback.classes.get(c[:4], 0) for c, _ in notice.codes), default=0)
    trade = max(trade, max((feedback.divisions.get(c[:2], 0) for c, _ in notice.codes), default=0))
    if trade:
        found.append((trade, "vous avez écarté des avis de ce domaine"))
    if feedback.avoids_far and deps and not in_zone and not (near and firm.near_counts_fully):
        if feedback.far_departments.issuperset(deps):
            found.append((PENALTY_FAR, "vous avez jugé ce secteur trop loin"))
        elif not near:
            found.append((PENALTY_FAR_OTHER, "vous avez écarté des avis trop loin"))
    if value is not None:
        if feedback.too_big_from is not None and value >= feedback.too_big_from:
            found.append((PENALTY_TOO_BIG, "vous avez écarté un avis de ce montant (trop gros)"))
        if feedback.too_small_below is not None and value <= feedback.too_small_below:
            found.append((PENALTY_TOO_SMALL, "vous avez écarté un avis de ce montant (trop petit)"))
    window = notice.window_days
    short = feedback.short_window_days
    if short is not None and window is not None and window <= short:
        found.append((PENALTY_DEADLINE, "délai de réponse court, comme un avis que vous avez écarté"))
    return found


def _points(
    firm: _Firm, notice: _Notice, cpv: int, words: int, in_title: bool, searches: int
) -> tuple[int, bool] | None:
    """:func:`_score` without the reasons, written for speed: the inner loop of the bulk matching.

    ``cpv``: the CPV points found (0 for none), ``words``: how many keywords, ``in_title``: one of
    them in the title, ``searches``: how many saved searches. Same rules, same numbers as
    :func:`_score` (the tests check it); None when the pair is not a match.
    """
    if cpv:
        points = cpv
    elif firm.divisions and not firm.divisions.isdisjoint(notice.divisions):
        points = CPV_DIVISION
    else:
        points = 0
    extra = 0
    if words:
        extra = (WORDS_TITLE if in_title else WORDS_DESCRIPTION) + WORDS_EXTRA * (words - 1)
    if searches:
        extra = max(extra, WORDS_SEARCH) + WORDS_EXTRA * (searches - 1)
    if extra > WORDS_MAX:
        extra = WORDS_MAX
    if points == 0 and extra == 0:
        return None
    points += extra
    if points + GEO_ZONE + SIZE_OK < MIN_SCORE:
        return None
    deps = notice.department_set
    in_zone = near = False
    if not deps:
        points += GEO_UNKNOWN
    elif not firm.zone.isdisjoint(deps):
        points += GEO_ZONE
        in_zone = True
    elif not firm.near.isdisjoint(deps):
        points += GEO_ZONE if firm.near_counts_fully else GEO_NEAR
        near = True
    value = _value_for(firm, notice)[0] if notice.valued_lots else notice.value
    group = False
    if value is not None and value > 0 and firm.turnover is not None and firm.turnover > 0:
        ratio = value / firm.turnover
        if ratio <= 10:
            points += SIZE_OK
        group = ratio > 0.5
    else:
        points += SIZE_UNKNOWN
    if firm.learns:
        points -= min(
            PENALTY_MAX, sum(p for p, _ in _penalties(firm, notice, value, in_zone=in_zone, near=near))
        )
    if points < MIN_SCORE:
        return None
    return min(100, points), group


def _match_one(firm: _Firm, notice: _Notice, hits: _Hits, facts: _Facts | None = None) -> Match | None:
    """Score one pair from its hits (the baseline's path; the bulk loop inlines the same steps)."""
    if notice.id in firm.feedback.dismissed:
        return None
    in_title = any(where == "title" for _, _, where in hits.words)
    cpv = hits.cpv[0] if hits.cpv else 0
    scored = _points(firm, notice, cpv, len(hits.words), in_title, len(hits.searches))
    if scored is None:
        return None
    return Match(firm.id, notice.id, scored[0], scored[1], facts)


def pair_hits(firm: _Firm, notice: _Notice) -> _Hits:
    """What one firm finds in one notice, pair by pair (explanations, and the benchmark's baseline).

    Gives the same hits as the index lookups of :func:`_collect`, ties included: for each notice
    code the shortest skill prefix first, codes in order, keywords in the firm's order.
    """
    hits = _Hits()
    by_length = sorted(zip(firm.prefixes, firm.skills, strict=True), key=lambda p: len(p[0]))
    for code, prefix in notice.codes:
        size = len(prefix)
        for skill_prefix, skill in by_length:
            if not prefix.startswith(skill_prefix):
                continue
            if len(skill_prefix) == size:
                points, relation = CPV_EXACT, "exact"
            else:
                points = max(CPV_UNDER_MIN, CPV_EXACT - CPV_STEP * (size - len(skill_prefix)))
                relation = "under"
            if hits.cpv is None or hits.cpv[0] < points:
                hits.cpv = (points, code, skill, relation)
        for skill_prefix, skill in zip(firm.prefixes, firm.skills, strict=True):
            above = len(skill_prefix) > size and skill_prefix.startswith(prefix)
            if above and (hits.cpv is None or hits.cpv[0] < CPV_BROADER):
                hits.cpv = (CPV_BROADER, code, skill, "broader")
    for position, keyword, phrase in firm.keywords:
        if has_phrase(notice.main_words, notice.main_stems, phrase):
            hits.words.append((position, keyword, "title"))
        elif has_phrase(notice.description_words, notice.description_stems, phrase):
            hits.words.append((position, keyword, "description"))
    for search in firm.searches:
        if search.name not in hits.searches and search.matches(notice):
            hits.searches.append(search.name)
    return hits


class _Facts:
    """The firms and notices a matching read, kept for the explanations asked later."""

    def __init__(self, firms: dict[int, _Firm], notices: dict[int, _Notice]) -> None:
        self.firms = firms
        self.notices = notices
        self._cache: dict[tuple[int, int], tuple[str, ...]] = {}

    def reasons(self, firm_id: int, notice_id: int) -> tuple[str, ...]:
        key = (firm_id, notice_id)
        found = self._cache.get(key)
        if found is None:
            firm, notice = self.firms[firm_id], self.notices[notice_id]
            hits = pair_hits(firm, notice)
            scored = _score(firm, notice, hits.cpv, hits.words, hits.searches, explain=True)
            found = self._cache[key] = tuple(scored[1]) if scored else ()
        return found


# --------------------------------------------------------------------------- services


class Matcher:
    """Matching over a set of notices, whose facts (codes, stemmed text…) are read once and kept.

    The digest job asks for the same new notices batch after batch of users: the notices are
    read and stemmed once per job, the firms once per batch.
    """

    def __init__(self, session: Session) -> None:
        self.session = session
        self.notices: dict[int, _Notice] = {}
        self._missing: set[int] = set()  # asked for, but rejected, merged or gone

    def _load(self, notice_ids: Iterable[int]) -> list[_Notice]:
        ids = set(notice_ids)
        new = sorted(ids - self.notices.keys() - self._missing)
        if new:
            loaded = _load_notices(self.session, new)
            self.notices.update(loaded)
            self._missing.update(set(new) - loaded.keys())
        return [self.notices[i] for i in sorted(ids) if i in self.notices]

    def match(
        self,
        notice_ids: Iterable[int],
        firm_ids: Iterable[int] | None = None,
        *,
        chamber_slug: str | None = None,
    ) -> dict[int, list[Match]]:
        """See :func:`match_notices_for_firms`."""
        notices = self._load(notice_ids)
        if not notices:
            return {}
        index = _load_firms(self.session, None if firm_ids is None else list(firm_ids), chamber_slug)
        firms = index.firms
        facts = _Facts(firms, self.notices)
        out: dict[int, list[Match]] = defaultdict(list)
        # Millions of small objects, none in a reference cycle: the cyclic garbage collector would
        # only walk them again and again (a third of the time at 10 000 firms × 3 000 notices).
        collecting = gc.isenabled()
        gc.disable()
        try:
            self._match_into(out, notices, index, facts)
        finally:
            if collecting:
                gc.enable()
        by_score = operator.attrgetter("score")
        for matches in out.values():
            matches.sort(key=by_score, reverse=True)  # stable, reverse included: ties by notice id
        return dict(out)

    @staticmethod
    def _match_into(
        out: dict[int, list[Match]], notices: list[_Notice], index: _Index, facts: _Facts
    ) -> None:
        firms = index.firms
        points = _points
        for notice in notices:  # in id order: the stable sort keeps it among equal scores
            nid = notice.id
            cpv, words, titles, searches = _collect(index, notice)
            for fid in cpv.keys() | words.keys() | searches.keys() if words or searches else cpv:
                firm = firms[fid]
                if nid in firm.feedback.dismissed:
                    continue
                found = searches.get(fid)
                scored = points(
                    firm,
                    notice,
                    cpv.get(fid, 0),
                    words.get(fid, 0),
                    fid in titles,
                    len(found) if found else 0,
                )
                if scored is not None:
                    out[fid].append(Match(fid, nid, scored[0], scored[1], facts))


def match_notices_for_firms(
    session: Session,
    notice_ids: Iterable[int],
    firm_ids: Iterable[int] | None = None,
    *,
    chamber_slug: str | None = None,
) -> dict[int, list[Match]]:
    """The matches of these notices for these approved firms (every approved firm when None).

    Returns ``{firm_id: [Match, …]}`` with the best first; firms without a match are left
    out. Rejected and merged notices never match; deadlines and statuses are the caller's
    business (the staff view shows matches of a closed notice too). Only reads.
    """
    return Matcher(session).match(notice_ids, firm_ids, chamber_slug=chamber_slug)


def match_notice_for_firm(session: Session, notice_id: int, firm_id: int) -> Match | None:
    """One notice for one firm (the notice page of a firm member, tests)."""
    found = match_notices_for_firms(session, [notice_id], [firm_id])
    return found[firm_id][0] if found.get(firm_id) else None


def matches_for_notice(session: Session, notice: Any, chamber_slug: str | None) -> list[FirmMatch]:
    """The approved firms of a chamber (every chamber when None) that match ``notice``, best first."""
    found = match_notices_for_firms(session, [notice.id], chamber_slug=chamber_slug)
    if not found:
        return []
    firms = {f.id: f for f in session.scalars(select(Firm).where(Firm.id.in_(list(found))))}
    rows = [FirmMatch(firms[fid], matches[0]) for fid, matches in found.items() if fid in firms]
    rows.sort(key=lambda row: (-row.match.score, row.firm.name))
    return rows


def staff_notice_matches(session: Session, notice: Any, user: User, *, limit: int = 50) -> list[FirmMatch]:
    """For the notice page: the firms of a staff member's chamber (all firms for an admin) that match.

    Render with ``{% include "digests/_notice_matches.html" %}`` and ``firm_matches`` in the context.
    Anyone else gets an empty list.
    """
    if user.is_admin:
        return matches_for_notice(session, notice, None)[:limit]
    if user.is_staff and user.chamber_slug:
        return matches_for_notice(session, notice, user.chamber_slug)[:limit]
    return []


# --------------------------------------------------------------------------- the search filter firm=1


def _skill_prefix(code: Any) -> Any:
    """SQL for :func:`tenderpool.reference.cpv_prefix`: trailing zeros off, two digits at least."""
    stripped = func.rtrim(code, "0")
    return case((func.length(stripped) < 2, func.substr(code, 1, 2)), else_=stripped)


class _KeywordHit(ColumnElement[bool]):
    """True when one of the firm's keywords is in the notice's searchable text (engine-specific SQL)."""

    type = Boolean()
    inherit_cache = False  # carries a Python value the statement cache would not see

    def __init__(self, firm_id: int) -> None:
        self.firm_id = firm_id


_SEARCH = table("notice_search", column("notice_id", Integer), column("document", Text), column("tsv"))
# SQLite has no unaccent(): a keyword's accented letters become the one-character LIKE wildcard, so
# that « étanchéité » also finds « ETANCHEITE » (LIKE ignores the case of ASCII letters). The list is
# short on purpose: SQLite's parser refuses deeply nested calls.
_SQLITE_ACCENTED = "éèêëàâçôîïûùÉÈÀÇ"


@compiles(_KeywordHit)
def _keyword_hit_sqlite(element: _KeywordHit, compiler: SQLCompiler, **kw: Any) -> str:
    from tenderpool.notices.models import Notice

    each = func.json_each(Firm.keywords).table_valued("value").alias("kw")
    pattern: Any = func.replace(func.replace(func.trim(each.c.value), "%", " "), "_", " ")
    for char in _SQLITE_ACCENTED:
        pattern = func.replace(pattern, char, "_")
    condition = (
        select(literal(1))
        .select_from(Firm)
        .join(each, true())
        .join(_SEARCH, _SEARCH.c.notice_id == Notice.id)
        .where(Firm.id == element.firm_id, func.length(func.trim(each.c.value)) > 0)
        .where(_SEARCH.c.document.like(literal("%") + pattern + literal("%")))
        .correlate(Notice)
        .exists()
    )
    return compiler.process(condition, **kw)


@compiles(_KeywordHit, "postgresql")
def _keyword_hit_postgresql(element: _KeywordHit, compiler: SQLCompiler, **kw: Any) -> str:
    # The firm's keywords become one tsquery (each keyword a phrase, OR-ed), computed once as an
    # InitPlan so that the GIN index on tsv answers; stemmed and unaccented like the text search.
    from tenderpool.notices.models import Notice

    each = func.json_array_elements_text(Firm.keywords).table_valued("value").alias("kw")
    phrase = func.phraseto_tsquery(literal_column("'french'::regconfig"), func.unaccent(each.c.value))
    parts = func.string_agg(literal("(") + func.cast(phrase, Text) + literal(")"), literal(" | "))
    query = (
        select(func.to_tsquery(literal_column("'simple'::regconfig"), parts))
        .select_from(Firm)
        .join(each, true())
        .where(Firm.id == element.firm_id, func.numnode(phrase) > 0)
        .scalar_subquery()
    )
    condition = Notice.id.in_(select(_SEARCH.c.notice_id).where(_SEARCH.c.tsv.op("@@")(query)))
    return compiler.process(condition, **kw)


def firm_candidate_condition(firm_id: int) -> ColumnElement[bool]:
    """The notices that may match a firm, in SQL (the search filter ``firm=1``).

    A notice qualifies when one of its CPV codes (or a lot's, through notice_cpv) lies under one of
    the firm's skills, or when one of the firm's keywords is in its text, and the firm has not
    marked it "not interested". No scoring: the digest and the staff view score; the search only
    filters. On PostgreSQL the keywords go through the full-text index (stemmed, accents
    ignored), as the matching does; on SQLite a keyword is a LIKE on the notice's text in which
    its accented letters are wildcards: a keyword typed without its accents only finds text
    written without them, an approximation good enough for a development database.
    """
    from tenderpool.notices.models import Lot, Notice, NoticeCpv, NoticeDismissal

    # A notice code under a skill, or above it (a generic 45000000 for a roofer): both score.
    related = or_(
        NoticeCpv.cpv.like(_skill_prefix(FirmCpv.cpv) + literal("%")),
        FirmCpv.cpv.like(_skill_prefix(NoticeCpv.cpv) + literal("%")),
    )
    by_cpv = (
        select(NoticeCpv.notice_id)
        .join(FirmCpv, related)
        .where(FirmCpv.firm_id == firm_id, NoticeCpv.notice_id == Notice.id)
        .exists()
    )
    # Lots keep their codes as a JSON list: its text form holds '"45261210"'.
    by_lot = (
        select(Lot.id)
        .join(
            FirmCpv, func.cast(Lot.cpv, Text).like(literal('%"') + _skill_prefix(FirmCpv.cpv) + literal("%"))
        )
        .where(FirmCpv.firm_id == firm_id, Lot.notice_id == Notice.id)
        .exists()
    )
    dismissed = (
        select(NoticeDismissal.notice_id)
        .where(NoticeDismissal.firm_id == firm_id, NoticeDismissal.notice_id == Notice.id)
        .exists()
    )
    return or_(by_cpv, by_lot, _KeywordHit(firm_id)) & ~dismissed
