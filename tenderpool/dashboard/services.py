"""The figures of the chambers' dashboard, for a period, per chamber and for all chambers together.

Pure reads: each function takes the session and the period and returns plain dataclasses.
The definitions below are the reference (``docs/dashboard.md`` repeats them for readers):

Period
    Whole days in the app's time zone (Europe/Paris), both ends included: a timestamp counts
    when ``start 00:00 <= t < (end + 1 day) 00:00``, Paris time. Presets: the last 12 months
    (default), this month, the last 3 months, this year, last year. "The last N months" ends
    today and starts the day after the same date N months ago (14/05/2026 → 15/05/2025).

Which chamber a consortium counts for
    A consortium counts for a chamber when at least one of its **active** members
    (``ConsortiumMember.state = 'active'``) is a firm of that chamber (``Firm.chamber_slug``).
    The "all chambers" column counts each consortium once (a consortium with active members in
    both chambers counts once there and once in each chamber's column: it is not the sum).
    A consortium without any active member (every member left) counts nowhere.

Notices gathered, per source and per week
    Notices first recorded (``Notice.created_at``) in the period, not merged into another one,
    by the source of their first publication (BOAMP — the JSON API or the legacy XML —, TED —
    the search API or eForms —, or « Saisie manuelle » for a notice staff added) and by week
    (ISO weeks, Monday to Sunday, Paris time; a week cut by the period counts only its days
    inside it). A notice counts for a chamber when one of its départements is one of the
    chamber's; the "all chambers" column counts it once when it is in any of them.

Notices featured
    Notices currently featured (``is_featured``), not merged into another one, whose
    ``featured_at`` lies in the period; per chamber by ``featured_chamber``. The "all chambers"
    column counts every such notice, including one featured by an admin (no chamber).

Firms active
    Approved firms of the chamber with, in the period, at least one of: a login of one of
    their users (``AuditEvent`` ``login``), a notice followed by one of their users
    (``NoticeFollow.created_at``), joining a consortium (``ConsortiumMember.joined_at``,
    whatever the member's state today), a profile update (``Firm.profile_updated_at``).
    A firm belongs to one chamber, so the "all chambers" column is the sum.

Consortia formed, submitted, won, amount won
    Formed: ``created_at`` in the period, whatever the status today. Submitted:
    ``submitted_at`` in the period. Won: status ``won`` and ``outcome_at`` (when the result was
    declared) in the period; the amount won is the sum of their ``outcome_amount`` (€ HT).

Funnel (of the consortia formed in the period)
    formed → with at least 2 active members (today; frozen since submission for a submitted
    one) → ready (the journal shows a move to ``ready``, or it was submitted) → submitted
    (``submitted_at`` set, or status submitted, won or lost) → won (status ``won``). Each stage
    keeps only the consortia of the previous one, so the funnel never widens.

Top CPV divisions
    Of the consortia formed in the period: the divisions (two first digits) of the CPV codes of
    the notice each answers; a consortium counts once per division. Ranked by the "all
    chambers" count, then by code; label from CPV 2008 (``tenderpool.reference``).

Average number of active members
    The mean number of active members of the consortia formed in the period.

« Groupements interconsulaires »
    Consortia formed in the period whose active members belong to at least two chambers.
"""

from __future__ import annotations

import calendar
import csv
import datetime as dt
import io
import re
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import and_, func, or_, select, union
from sqlalchemy.orm import QueryableAttribute, Session
from sqlalchemy.sql.elements import ColumnElement

from tenderpool.accounts.models import AuditEvent
from tenderpool.config import Chamber
from tenderpool.consortia.models import Consortium, ConsortiumEvent, ConsortiumMember, MemberState, Status
from tenderpool.firms.models import Firm, FirmMembership, FirmStatus
from tenderpool.notices.models import Notice, NoticeCpv, NoticeDepartment, NoticeFollow, Publication
from tenderpool.reference import cpv_label

ALL = "ensemble"  # the key of the "all chambers" column
MANUAL = "manual"
TOP_DIVISIONS = 8
MAX_YEARS = 10

# Query-string values of the presets → French label (in the order of the page's links).
PRESETS = {
    "12-mois": "12 derniers mois",
    "mois": "Ce mois-ci",
    "3-mois": "3 derniers mois",
    "annee": "Cette année",
    "annee-derniere": "L'année dernière",
}
DEFAULT_PRESET = "12-mois"
CUSTOM = "dates"

FUNNEL_STAGES = (
    "Constitués",
    "Avec au moins 2 membres actifs",
    "Prêts à déposer",
    "Déposés",
    "Remportés",
)

_ISO_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
_READY_OR_LATER = {Status.READY.value, Status.SUBMITTED.value, Status.WON.value, Status.LOST.value}
_SUBMITTED_OR_LATER = {Status.SUBMITTED.value, Status.WON.value, Status.LOST.value}


# --------------------------------------------------------------------------- period


class PeriodError(ValueError):
    """A period that cannot be read from the URL; ``message`` is French, for the page."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


@dataclass(frozen=True)
class Period:
    start: dt.date
    end: dt.date  # included
    preset: str  # a key of PRESETS, or CUSTOM

    @property
    def label(self) -> str:
        dates = f"du {self.start:%d/%m/%Y} au {self.end:%d/%m/%Y}"
        return dates if self.preset == CUSTOM else f"{PRESETS[self.preset]} ({dates})"

    def bounds(self, tz: ZoneInfo) -> tuple[dt.datetime, dt.datetime]:
        """``[start, end)`` as aware UTC datetimes: midnight of the first day and of the day
        after the last one, in ``tz``."""
        start = dt.datetime.combine(self.start, dt.time(0), tzinfo=tz)
        end = dt.datetime.combine(self.end + dt.timedelta(days=1), dt.time(0), tzinfo=tz)
        return start.astimezone(dt.UTC), end.astimezone(dt.UTC)


def add_months(day: dt.date, months: int) -> dt.date:
    """The same day ``months`` later (or earlier), clamped to the month's last day."""
    index = day.year * 12 + day.month - 1 + months
    year, month = divmod(index, 12)
    month += 1
    return dt.date(year, month, min(day.day, calendar.monthrange(year, month)[1]))


def preset_period(preset: str, *, today: dt.date) -> Period:
    if preset == "12-mois":
        return Period(add_months(today, -12) + dt.timedelta(days=1), today, preset)
    if preset == "3-mois":
        return Period(add_months(today, -3) + dt.timedelta(days=1), today, preset)
    if preset == "mois":
        return Period(today.replace(day=1), today, preset)
    if preset == "annee":
        return Period(dt.date(today.year, 1, 1), today, preset)
    if preset == "annee-derniere":
        return Period(dt.date(today.year - 1, 1, 1), dt.date(today.year - 1, 12, 31), preset)
    raise PeriodError(
        f"Période inconnue : « {preset} ». Choisissez l'une des périodes proposées ou indiquez des dates."
    )


def _date(value: str, what: str) -> dt.date:
    if not _ISO_DATE.fullmatch(value):
        raise PeriodError(
            f"La date de {what} « {value} » n'est pas au format AAAA-MM-JJ (par exemple 2026-01-31)."
        )
    try:
        day = dt.date.fromisoformat(value)
    except ValueError:
        raise PeriodError(f"La date de {what} « {value} » n'existe pas.") from None
    if not 2000 <= day.year <= 2100:
        raise PeriodError(f"La date de {what} « {value} » doit être comprise entre 2000 et 2100.")
    return day


def parse_period(args: Mapping[str, str], *, today: dt.date) -> Period:
    """The period of the URL: ``du``/``au`` dates (``au`` defaults to today), else ``periode``
    (one of PRESETS), else the last 12 months. Raises :class:`PeriodError` in French."""
    start_text = (args.get("du") or "").strip()
    end_text = (args.get("au") or "").strip()
    if start_text or end_text:
        if not start_text:
            raise PeriodError("Indiquez la date de début de la période.")
        start = _date(start_text, "début")
        end = _date(end_text, "fin") if end_text else today
        if start > end:
            raise PeriodError(
                f"La date de début ({start:%d/%m/%Y}) doit précéder la date de fin ({end:%d/%m/%Y})."
            )
        if add_months(start, 12 * MAX_YEARS) <= end:
            raise PeriodError(f"La période ne peut pas dépasser {MAX_YEARS} ans.")
        return Period(start, end, CUSTOM)
    preset = (args.get("periode") or "").strip() or DEFAULT_PRESET
    return preset_period(preset, today=today)


# --------------------------------------------------------------------------- figures


@dataclass(frozen=True)
class Column:
    """The figures of one column: a chamber, or all chambers together (key ``ALL``)."""

    key: str
    label: str
    short_label: str
    featured_notices: int
    active_firms: int
    consortia_formed: int
    consortia_submitted: int
    consortia_won: int
    amount_won: Decimal
    funnel: tuple[int, ...]  # one count per FUNNEL_STAGES
    average_members: Decimal | None  # None when no consortium was formed
    interconsular: int
    divisions: Mapping[str, int]  # CPV division → consortia formed
    gathered: Mapping[str, int]  # source label → notices gathered
    weekly: Mapping[dt.date, Mapping[str, int]]  # Monday of the week → source label → notices


@dataclass(frozen=True)
class Division:
    code: str  # "45"
    label: str


@dataclass(frozen=True)
class Dashboard:
    period: Period
    columns: tuple[Column, ...]  # the chambers in settings order, then ALL
    top_divisions: tuple[Division, ...]


@dataclass
class _Facts:
    """What the figures need of one consortium."""

    created: bool
    submitted: bool
    won: bool
    amount: Decimal
    status: str
    submitted_at_set: bool
    chambers: set[str]
    members: int = 0
    ever_ready: bool = False
    divisions: frozenset[str] = frozenset()


def _in(column: QueryableAttribute[Any], start: dt.datetime, end: dt.datetime) -> ColumnElement[bool]:
    return and_(column >= start, column < end)


def featured_counts(session: Session, start: dt.datetime, end: dt.datetime) -> dict[str | None, int]:
    """Featured notices of the period by ``featured_chamber`` (None: featured by an admin)."""
    rows = session.execute(
        select(Notice.featured_chamber, func.count(Notice.id))
        .where(
            Notice.is_featured.is_(True),
            Notice.merged_into_id.is_(None),
            _in(Notice.featured_at, start, end),
        )
        .group_by(Notice.featured_chamber)
    )
    return {chamber: count for chamber, count in rows}


SOURCE_LABELS = {
    "boamp": "BOAMP",
    "boamp-xml": "BOAMP",
    "ted": "TED",
    "eforms": "TED",
    MANUAL: "Saisie manuelle",
}


def source_label(source: str) -> str:
    return SOURCE_LABELS.get(source, source.upper())


@dataclass(frozen=True)
class _Gathered:
    week: dt.date  # Monday
    source: str  # label
    departments: frozenset[str]


def gathered_notices(session: Session, start: dt.datetime, end: dt.datetime, tz: ZoneInfo) -> list[_Gathered]:
    """The notices first recorded in the period: week, source of their first publication, places."""
    first = (
        select(Publication.notice_id, func.min(Publication.id).label("first_id"))
        .where(Publication.notice_id.is_not(None))
        .group_by(Publication.notice_id)
        .subquery()
    )
    rows = session.execute(
        select(Notice.id, Notice.created_at, Notice.is_manual, Publication.source)
        .outerjoin(first, first.c.notice_id == Notice.id)
        .outerjoin(Publication, Publication.id == first.c.first_id)
        .where(Notice.merged_into_id.is_(None), _in(Notice.created_at, start, end))
    ).all()
    places: defaultdict[int, set[str]] = defaultdict(set)
    ids = [row[0] for row in rows]
    for begin in range(0, len(ids), 5000):
        chunk = ids[begin : begin + 5000]
        for notice_id, department in session.execute(
            select(NoticeDepartment.notice_id, NoticeDepartment.department).where(
                NoticeDepartment.notice_id.in_(chunk)
            )
        ):
            places[notice_id].add(department)
    result = []
    for notice_id, created_at, is_manual, source in rows:
        day = created_at.astimezone(tz).date()
        label = source_label(source) if source else source_label(MANUAL) if is_manual else "Autre"
        result.append(_Gathered(day - dt.timedelta(days=day.weekday()), label, frozenset(places[notice_id])))
    return result


def _gathered_column(items: Sequence[_Gathered]) -> tuple[dict[str, int], dict[dt.date, dict[str, int]]]:
    totals: defaultdict[str, int] = defaultdict(int)
    weekly: defaultdict[dt.date, defaultdict[str, int]] = defaultdict(lambda: defaultdict(int))
    for item in items:
        totals[item.source] += 1
        weekly[item.week][item.source] += 1
    return dict(totals), {week: dict(by_source) for week, by_source in weekly.items()}


def active_firm_counts(session: Session, start: dt.datetime, end: dt.datetime) -> dict[str, int]:
    """Approved firms active in the period, by chamber (see the module docstring)."""
    logins = (
        select(FirmMembership.firm_id)
        .join(AuditEvent, AuditEvent.actor_id == FirmMembership.user_id)
        .where(AuditEvent.action == "login", _in(AuditEvent.at, start, end))
    )
    follows = (
        select(FirmMembership.firm_id)
        .join(NoticeFollow, NoticeFollow.user_id == FirmMembership.user_id)
        .where(_in(NoticeFollow.created_at, start, end))
    )
    joins = select(ConsortiumMember.firm_id).where(_in(ConsortiumMember.joined_at, start, end))
    profiles = select(Firm.id).where(_in(Firm.profile_updated_at, start, end))
    active = union(logins, follows, joins, profiles).subquery()
    rows = session.execute(
        select(Firm.chamber_slug, func.count(Firm.id))
        .where(Firm.status == FirmStatus.APPROVED.value, Firm.id.in_(select(active.c[0])))
        .group_by(Firm.chamber_slug)
    )
    return {chamber: count for chamber, count in rows}


def _consortium_facts(session: Session, start: dt.datetime, end: dt.datetime) -> dict[int, _Facts]:
    """The consortia formed, submitted or won in the period, with their active members' chambers."""
    relevant = or_(
        _in(Consortium.created_at, start, end),
        _in(Consortium.submitted_at, start, end),
        and_(Consortium.status == Status.WON.value, _in(Consortium.outcome_at, start, end)),
    )
    facts: dict[int, _Facts] = {}
    rows = session.execute(
        select(
            Consortium.id,
            Consortium.created_at,
            Consortium.submitted_at,
            Consortium.status,
            Consortium.outcome_at,
            Consortium.outcome_amount,
        ).where(relevant)
    )
    for cid, created_at, submitted_at, status, outcome_at, amount in rows:
        won = status == Status.WON.value and outcome_at is not None and start <= outcome_at < end
        facts[cid] = _Facts(
            created=start <= created_at < end,
            submitted=submitted_at is not None and start <= submitted_at < end,
            won=won,
            amount=(amount or Decimal(0)) if won else Decimal(0),
            status=status,
            submitted_at_set=submitted_at is not None,
            chambers=set(),
        )
    if not facts:
        return facts
    ids = select(Consortium.id).where(relevant).scalar_subquery()
    members = session.execute(
        select(ConsortiumMember.consortium_id, Firm.chamber_slug)
        .join(Firm, Firm.id == ConsortiumMember.firm_id)
        .where(ConsortiumMember.state == MemberState.ACTIVE.value, ConsortiumMember.consortium_id.in_(ids))
    )
    for cid, chamber in members:
        facts[cid].chambers.add(chamber)
        facts[cid].members += 1
    formed = select(Consortium.id).where(_in(Consortium.created_at, start, end)).scalar_subquery()
    # The journal keeps every move to "ready", even when the groupement was reopened or withdrawn.
    events = session.execute(
        select(ConsortiumEvent.consortium_id, ConsortiumEvent.detail).where(
            ConsortiumEvent.kind == "status", ConsortiumEvent.consortium_id.in_(formed)
        )
    )
    for cid, detail in events:
        if isinstance(detail, dict) and detail.get("to") == Status.READY.value:
            facts[cid].ever_ready = True
    divisions: defaultdict[int, set[str]] = defaultdict(set)
    cpvs = session.execute(
        select(Consortium.id, NoticeCpv.cpv)
        .join(NoticeCpv, NoticeCpv.notice_id == Consortium.notice_id)
        .where(Consortium.id.in_(formed))
    )
    for cid, code in cpvs:
        divisions[cid].add(code[:2])
    for cid, codes in divisions.items():
        facts[cid].divisions = frozenset(codes)
    return facts


def _funnel(facts: Sequence[_Facts]) -> tuple[int, ...]:
    def submitted(f: _Facts) -> bool:
        return f.submitted_at_set or f.status in _SUBMITTED_OR_LATER

    stages = [list(facts)]
    stages.append([f for f in stages[-1] if f.members >= 2])
    stages.append([f for f in stages[-1] if f.ever_ready or f.status in _READY_OR_LATER or submitted(f)])
    stages.append([f for f in stages[-1] if submitted(f)])
    stages.append([f for f in stages[-1] if f.status == Status.WON.value])
    return tuple(len(stage) for stage in stages)


def _column(
    key: str,
    label: str,
    short_label: str,
    facts: Sequence[_Facts],
    *,
    featured: int,
    active_firms: int,
    gathered: Sequence[_Gathered] = (),
) -> Column:
    formed = [f for f in facts if f.created]
    won = [f for f in facts if f.won]
    divisions: defaultdict[str, int] = defaultdict(int)
    for f in formed:
        for code in f.divisions:
            divisions[code] += 1
    average = (
        (Decimal(sum(f.members for f in formed)) / len(formed)).quantize(Decimal("0.1")) if formed else None
    )
    return Column(
        key=key,
        label=label,
        short_label=short_label,
        featured_notices=featured,
        active_firms=active_firms,
        consortia_formed=len(formed),
        consortia_submitted=sum(1 for f in facts if f.submitted),
        consortia_won=len(won),
        amount_won=sum((f.amount for f in won), Decimal(0)),
        funnel=_funnel(formed),
        average_members=average,
        interconsular=sum(1 for f in formed if len(f.chambers) >= 2),
        divisions=dict(divisions),
        gathered=_gathered_column(gathered)[0],
        weekly=_gathered_column(gathered)[1],
    )


def all_chambers_label(chambers: Sequence[Chamber]) -> str:
    return "Les deux chambres" if len(chambers) == 2 else "Toutes les chambres"


def chamber_short_label(chamber: Chamber) -> str:
    """« CCI 77 »: the chamber's départements, short enough for a chart's row label."""
    return "CCI " + "-".join(chamber.departments)


def dashboard(session: Session, period: Period, *, chambers: Sequence[Chamber], tz: ZoneInfo) -> Dashboard:
    """Every figure of the page for ``period``: one column per chamber, then all of them."""
    start, end = period.bounds(tz)
    featured = featured_counts(session, start, end)
    firms = active_firm_counts(session, start, end)
    facts = list(_consortium_facts(session, start, end).values())
    gathered = gathered_notices(session, start, end, tz)
    territory = {d for c in chambers for d in c.departments}
    slugs = {c.slug for c in chambers}
    for f in facts:
        f.chambers &= slugs  # a firm of a chamber no longer configured counts nowhere
    columns = [
        _column(
            c.slug,
            c.name,
            chamber_short_label(c),
            [f for f in facts if c.slug in f.chambers],
            featured=featured.get(c.slug, 0),
            active_firms=firms.get(c.slug, 0),
            gathered=[g for g in gathered if g.departments & set(c.departments)],
        )
        for c in chambers
    ]
    columns.append(
        _column(
            ALL,
            all_chambers_label(chambers),
            "Ensemble",
            [f for f in facts if f.chambers],
            featured=sum(featured.values()),
            active_firms=sum(firms.get(slug, 0) for slug in slugs),
            gathered=[g for g in gathered if g.departments & territory],
        )
    )
    overall = columns[-1].divisions
    ranked = sorted(overall, key=lambda code: (-overall[code], code))[:TOP_DIVISIONS]
    top = tuple(Division(code, cpv_label(code + "000000") or f"Division {code}") for code in ranked)
    return Dashboard(period=period, columns=tuple(columns), top_divisions=top)


# --------------------------------------------------------------------------- table and CSV


@dataclass(frozen=True)
class Row:
    """One line of the table and of the CSV: one value per column of the dashboard."""

    section: str
    label: str
    kind: str  # "count", "amount" (€ HT) or "average"
    values: tuple[int | Decimal | None, ...]


SECTIONS = (
    "Activité",
    "Entonnoir des groupements constitués",
    "Principales divisions CPV",
    "Avis collectés par source",
    "Avis collectés par semaine",
)


def rows(board: Dashboard) -> list[Row]:
    """The figures as table rows, in the page's order: the table, the charts and the CSV all
    read them from here, so they always show the same numbers."""
    cols = board.columns
    activity = SECTIONS[0]
    result = [
        Row(activity, "Avis mis en avant", "count", tuple(c.featured_notices for c in cols)),
        Row(activity, "Entreprises actives", "count", tuple(c.active_firms for c in cols)),
        Row(activity, "Groupements constitués", "count", tuple(c.consortia_formed for c in cols)),
        Row(activity, "Groupements déposés", "count", tuple(c.consortia_submitted for c in cols)),
        Row(activity, "Groupements remportés", "count", tuple(c.consortia_won for c in cols)),
        Row(activity, "Montant remporté (€ HT)", "amount", tuple(c.amount_won for c in cols)),
        Row(activity, "Nombre moyen de membres actifs", "average", tuple(c.average_members for c in cols)),
        Row(activity, "Groupements interconsulaires", "count", tuple(c.interconsular for c in cols)),
    ]
    result += [
        Row(SECTIONS[1], stage, "count", tuple(c.funnel[i] for c in cols))
        for i, stage in enumerate(FUNNEL_STAGES)
    ]
    result += [
        Row(SECTIONS[2], f"{d.code} — {d.label}", "count", tuple(c.divisions.get(d.code, 0) for c in cols))
        for d in board.top_divisions
    ]
    sources = sorted({source for c in cols for source in c.gathered})
    result += [
        Row(SECTIONS[3], source, "count", tuple(c.gathered.get(source, 0) for c in cols))
        for source in sources
    ]
    weeks = sorted({week for c in cols for week in c.weekly})
    for week in weeks:
        for source in sources:
            values = tuple(c.weekly.get(week, {}).get(source, 0) for c in cols)
            if any(values):
                result.append(Row(SECTIONS[4], f"Semaine du {week:%d/%m/%Y} — {source}", "count", values))
    return result


def _csv_value(value: int | Decimal | None, kind: str) -> str:
    """Excel (French) reads ``1234,5``: a decimal comma, no thousands separator."""
    if value is None:
        return ""
    if kind == "count":
        return str(value)
    digits = Decimal("0.01") if kind == "amount" else Decimal("0.1")
    return str(Decimal(value).quantize(digits)).replace(".", ",")


def csv_text(board: Dashboard) -> str:
    """The dashboard as CSV for Excel: ``;``-separated, decimal comma, a French header row.
    The caller adds the UTF-8 BOM."""
    out = io.StringIO()
    writer = csv.writer(out, delimiter=";", lineterminator="\r\n")
    writer.writerow(
        ["Rubrique", "Indicateur", *(c.label for c in board.columns), "Début de période", "Fin de période"]
    )
    start, end = f"{board.period.start:%d/%m/%Y}", f"{board.period.end:%d/%m/%Y}"
    for row in rows(board):
        writer.writerow([row.section, row.label, *(_csv_value(v, row.kind) for v in row.values), start, end])
    return out.getvalue()
