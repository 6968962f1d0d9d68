"""The daily (or weekly) digest: what is new for each user, sent exactly once per period.

What a digest holds, who gets it and when is documented in ``docs/digests.md``. The parts:

* :func:`digest_settings` validates the ``[digests]`` table;
* preferences (:func:`preference_of`, :func:`set_preference`, :func:`unsubscribe`) and the
  signed one-click unsubscribe token (:func:`unsubscribe_token`, :func:`user_of_token`);
* :func:`scheduled_period`: which period is due for a user at a given time;
* :func:`build_digests` computes contents in bulk (matching, saved searches, followed notices,
  documents), :func:`render_digest` turns one into a multipart message;
* :func:`send_due_digests` is the job (``tenderpool digests send``).

**Exactly once.** Each (user, period) is a DigestRun, unique in the database. The run is
committed with its rendered message, its Message-ID and its announcements (status "sending",
``next_attempt_at`` holding a lease) *before* the SMTP transaction; right after the server's
"250 OK" the run is marked "sent" and committed. A failure marks it "failed" with a later
``next_attempt_at``; a later job resends the frozen message (same bytes, same Message-ID). A run
found in "sending" once its lease has passed was interrupted: it is resent with the same
Message-ID. The one window left is between the server's "250 OK" and our commit (a few
milliseconds): a crash exactly there sends that digest twice, with the same Message-ID (which
mail systems such as Gmail use to drop the copy). Nothing is ever lost that way, and nothing is
doubled outside that window.
"""

from __future__ import annotations

import copy
import datetime as dt
import logging
import secrets
import smtplib
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from decimal import Decimal
from email.message import EmailMessage
from email.utils import parseaddr
from typing import Any
from urllib.parse import parse_qs, quote, urlencode
from zoneinfo import ZoneInfo

from flask import render_template
from itsdangerous import BadSignature, URLSafeSerializer
from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from tenderpool.accounts.models import Role, User
from tenderpool.config import ConfigError, Settings
from tenderpool.db import Database
from tenderpool.digests.models import DigestAnnouncement, DigestPreference, DigestRun
from tenderpool.firms.matching import Matcher
from tenderpool.firms.models import Firm, FirmDocument, FirmMembership, FirmStatus
from tenderpool.formatting import datetime_fr
from tenderpool.mail import Mailer, OutgoingMail
from tenderpool.notices.models import (
    Notice,
    NoticeChange,
    NoticeDismissal,
    NoticeFollow,
    NoticeSearch,
    NoticeStatus,
    SavedSearch,
)
from tenderpool.reference import departments

log = logging.getLogger(__name__)

FREQUENCIES = {"daily": "Chaque jour", "weekly": "Une fois par semaine", "off": "Jamais (désabonné)"}
WEEKDAYS = ("lundi", "mardi", "mercredi", "jeudi", "vendredi", "samedi", "dimanche")
DEFAULT_FREQUENCY, DEFAULT_HOUR, DEFAULT_WEEKDAY = "daily", 7, 0
UNSUBSCRIBE_SALT = "digest-unsubscribe"

# A notice is "new" for a user when it entered TenderPool after the previous digest. The window
# starts a day earlier than that: a notice committed by a scrape that was still running when the
# previous digest was computed carries an earlier created_at. Announcements make the overlap
# harmless (a notice is never announced twice) and bound how far back a digest looks.
OVERLAP = dt.timedelta(days=1)
MAX_LOOKBACK = dt.timedelta(days=8)
DEADLINE_DAYS = 5
DOCUMENT_DAYS = 30
# A document alone makes a digest worth sending on these days before it expires (and on the day).
DOCUMENT_ALERT_DAYS = (30, 7, 1, 0)
LEASE_FLOOR = dt.timedelta(minutes=5)
MAX_BACKOFF = dt.timedelta(hours=24)
SAVED_SEARCH_SCORE = 50  # rank of a notice found only by a saved search, among scored matches


# --------------------------------------------------------------------------- settings


@dataclass(frozen=True)
class DigestSettings:
    enabled: bool
    max_notices: int
    batch_size: int
    retry_minutes: int
    max_attempts: int
    unsubscribe_mailto: str


def digest_settings(raw: Mapping[str, Any]) -> DigestSettings:
    """Validate the ``[digests]`` table of the settings; raise ConfigError naming the bad setting."""
    table = raw.get("digests") or {}
    errors: list[str] = []

    def whole(name: str, default: int, low: int, high: int) -> int:
        value = table.get(name, default)
        # bool is an int in Python: "true" must not pass for 1.
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            errors.append(f"digests.{name} must be a whole number between {low} and {high} (got {value!r})")
            return default
        return value

    enabled = table.get("enabled", True)
    if not isinstance(enabled, bool):
        errors.append(f"digests.enabled must be true or false (got {enabled!r})")
    mailto = str(table.get("unsubscribe_mailto", "") or "")
    if mailto and ("@" not in mailto or any(c in mailto for c in "<>, ")):
        errors.append(f"digests.unsubscribe_mailto must be an email address (got {mailto!r})")
    result = DigestSettings(
        enabled=bool(enabled),
        max_notices=whole("max_notices", 20, 1, 200),
        batch_size=whole("batch_size", 200, 1, 10_000),
        retry_minutes=whole("retry_minutes", 15, 1, 24 * 60),
        max_attempts=whole("max_attempts", 8, 1, 100),
        unsubscribe_mailto=mailto,
    )
    if errors:
        raise ConfigError("invalid settings:\n  - " + "\n  - ".join(errors))
    return result


# --------------------------------------------------------------------------- preferences


def preference_of(session: Session, user_id: int) -> DigestPreference:
    """The user's preference; the defaults (daily at 07:00) as an unsaved row when none is stored."""
    found = session.get(DigestPreference, user_id)
    if found is not None:
        return found
    return DigestPreference(
        user_id=user_id, frequency=DEFAULT_FREQUENCY, hour=DEFAULT_HOUR, weekday=DEFAULT_WEEKDAY
    )


def set_preference(
    session: Session, user_id: int, *, frequency: str, hour: int, weekday: int, now: dt.datetime
) -> DigestPreference:
    """Store how often and when the user gets the digest; only flushes."""
    from tenderpool.errors import ValidationError

    if frequency not in FREQUENCIES:
        raise ValidationError("Fréquence inconnue.", field="frequency")
    if not 0 <= hour <= 23:
        raise ValidationError("Heure invalide.", field="hour")
    if not 0 <= weekday <= 6:
        raise ValidationError("Jour invalide.", field="weekday")
    row = session.get(DigestPreference, user_id)
    if row is None:
        row = DigestPreference(user_id=user_id)
        session.add(row)
    row.frequency, row.hour, row.weekday, row.updated_at = frequency, hour, weekday, now
    session.flush()
    return row


def unsubscribe(session: Session, user_id: int, *, now: dt.datetime) -> None:
    """Stop the digest (frequency "off"), keeping the chosen hour for a later come-back."""
    current = preference_of(session, user_id)
    set_preference(session, user_id, frequency="off", hour=current.hour, weekday=current.weekday, now=now)


def unsubscribe_token(secret_key: str, user_id: int) -> str:
    """The signed, login-free token of the one-click unsubscribe link (it does not expire: an old
    digest's link must still work, RFC 8058)."""
    return str(URLSafeSerializer(secret_key, salt=UNSUBSCRIBE_SALT).dumps({"u": user_id}))


def user_of_token(secret_key: str, token: str) -> int | None:
    try:
        data = URLSafeSerializer(secret_key, salt=UNSUBSCRIBE_SALT).loads(token)
    except BadSignature:
        return None
    user_id = data.get("u") if isinstance(data, dict) else None
    return user_id if type(user_id) is int else None


# --------------------------------------------------------------------------- schedule


def scheduled_period(
    pref: DigestPreference, now: dt.datetime, tz: ZoneInfo
) -> tuple[str, dt.datetime] | None:
    """The latest scheduled digest at or before ``now``: its period key and its time; None when off.

    Daily: "2026-11-28" at ``hour`` (local time of ``tz``); weekly: "2026-W48" on ``weekday`` at
    ``hour``. Only the latest slot counts: a job that was down for three days sends one digest
    covering them, not three.
    """
    if pref.frequency not in ("daily", "weekly"):
        return None
    local = now.astimezone(tz)
    day = local.date()
    if pref.frequency == "weekly":
        day -= dt.timedelta(days=(day.weekday() - pref.weekday) % 7)
    step = dt.timedelta(days=7 if pref.frequency == "weekly" else 1)
    slot = dt.datetime.combine(day, dt.time(pref.hour), tzinfo=tz)
    if slot > local:
        slot = dt.datetime.combine(day - step, dt.time(pref.hour), tzinfo=tz)
    if pref.frequency == "weekly":
        year, week, _ = slot.date().isocalendar()
        return f"{year}-W{week:02d}", slot.astimezone(dt.UTC)
    return slot.date().isoformat(), slot.astimezone(dt.UTC)


# --------------------------------------------------------------------------- content


@dataclass
class DigestNotice:
    id: int
    title: str
    buyer: str | None
    deadline_at: dt.datetime | None
    departments: list[str]
    estimated_value: Decimal | None
    score: int | None
    reasons: list[str]
    is_group_candidate: bool
    searches: list[str]


@dataclass
class DigestChange:
    notice_id: int
    title: str
    lines: list[str]


@dataclass
class DigestDeadline:
    notice_id: int
    title: str
    deadline_at: dt.datetime
    is_soon: bool  # today or tomorrow


@dataclass
class DigestDocument:
    id: int
    title: str
    expires_on: dt.date
    is_expired: bool


@dataclass
class DigestContent:
    """What one user's digest says (nothing is stored or sent by building it)."""

    user_id: int
    email: str
    name: str
    firm_id: int | None
    firm_name: str | None
    since: dt.datetime
    until: dt.datetime
    notices: list[DigestNotice] = field(default_factory=list)  # at most max_notices
    more: list[int] = field(default_factory=list)  # the new notices past the cap
    changes: list[DigestChange] = field(default_factory=list)
    deadlines: list[DigestDeadline] = field(default_factory=list)
    documents: list[DigestDocument] = field(default_factory=list)
    consortium: list[str] = field(default_factory=list)
    # Whether something makes it worth an email: upcoming deadlines and expiring documents are
    # listed in every digest, but only trigger one when they cross a threshold (see docs).
    triggered: bool = False

    @property
    def is_empty(self) -> bool:
        return not self.triggered

    @property
    def announced_ids(self) -> list[int]:
        return [n.id for n in self.notices] + self.more

    def summary(self) -> dict[str, Any]:
        """The frozen, JSON-able record of what was announced (kept on the DigestRun)."""
        return {
            "since": self.since.isoformat(),
            "until": self.until.isoformat(),
            "notices": [n.id for n in self.notices],
            "more": self.more,
            "changes": [c.notice_id for c in self.changes],
            "deadlines": [d.notice_id for d in self.deadlines],
            "documents": [d.id for d in self.documents],
        }


def consortium_activity(session: Session, user: User, *, since: dt.datetime, until: dt.datetime) -> list[str]:
    """Lines about the user's groupements: their journal, new messages and coming deadlines."""
    from tenderpool.consortia.services import activity_lines

    return activity_lines(session, user, since=since, until=until)


@dataclass
class _Recipient:
    user: User
    firm: Firm | None
    since: dt.datetime


def _previous_until(
    session: Session, user_ids: Sequence[int], periods: Mapping[int, str], *, now: dt.datetime
) -> dict[int, dt.datetime]:
    """When each user's previous digest (any status) was computed: the start of the next one.

    Only the last weeks are read (nothing older counts: MAX_LOOKBACK), and only the "until" of
    each run's content, not its frozen message.
    """
    out: dict[int, dt.datetime] = {}
    rows = session.execute(
        select(
            DigestRun.user_id, DigestRun.period, DigestRun.content["until"].as_string(), DigestRun.created_at
        )
        .where(DigestRun.user_id.in_(list(user_ids)), DigestRun.created_at > now - 2 * MAX_LOOKBACK)
        .order_by(DigestRun.user_id, DigestRun.created_at)
    )
    for user_id, period, until, created_at in rows:
        if period == periods.get(user_id):
            continue
        out[user_id] = dt.datetime.fromisoformat(until) if until else created_at
    return out


def eligible_users(
    session: Session, *, after_id: int = 0, limit: int = 200, email: str | None = None
) -> list[tuple[User, Firm | None]]:
    """Active staff and admins, and active members of approved firms, in id order."""
    stmt = (
        select(User, Firm)
        .outerjoin(FirmMembership, FirmMembership.user_id == User.id)
        .outerjoin(Firm, Firm.id == FirmMembership.firm_id)
        .where(User.id > after_id, User.is_active.is_(True))
        .where(
            User.role.in_([Role.STAFF.value, Role.ADMIN.value])
            | ((User.role == Role.FIRM.value) & (Firm.status == FirmStatus.APPROVED.value))
        )
        .order_by(User.id)
        .limit(limit)
    )
    if email is not None:
        stmt = stmt.where(func.lower(User.email) == email.strip().lower())
    return [(user, firm if user.is_firm_user else None) for user, firm in session.execute(stmt)]


def _new_notice_candidates(
    session: Session, *, start: dt.datetime, until: dt.datetime, now: dt.datetime
) -> dict[int, dt.datetime]:
    """Notices that may be announced: new since ``start``, open, deadline ahead, not rejected/merged."""
    rows = session.execute(
        select(Notice.id, Notice.created_at).where(
            Notice.created_at > start,
            Notice.created_at <= until,
            Notice.merged_into_id.is_(None),
            Notice.is_rejected.is_(False),
            Notice.status == NoticeStatus.OPEN.value,
            Notice.deadline_at.is_(None) | (Notice.deadline_at > now),
        )
    )
    return {notice_id: created for notice_id, created in rows}


def _saved_search_hits(
    session: Session,
    searches: Sequence[SavedSearch],
    candidate_ids: Sequence[int],
    *,
    firm_id: int | None,
    now: dt.datetime,
    words: Callable[[], Mapping[int, tuple[str, frozenset[str]]]],
) -> dict[int, list[str]]:
    """notice id -> names of the user's alert searches that find it, among ``candidate_ids``.

    The search's filters run in SQL (``apply_filters``, the search page's own); its words are
    checked on the search text of the candidates, with the search's own parser and stemmer.
    """
    from tenderpool.notices.search import QueryParamError, SearchQuery, apply_filters, parse_text

    hits: dict[int, list[str]] = defaultdict(list)
    if not candidate_ids:
        return hits
    for saved in searches:
        try:
            query = SearchQuery.from_args(parse_qs(saved.query))
        except QueryParamError:
            log.warning("saved search %s of user %s no longer parses: skipped", saved.id, saved.user_id)
            continue
        stmt = select(Notice.id).where(Notice.id.in_(list(candidate_ids)))
        stmt = apply_filters(stmt, query.with_(text="", firm_id=firm_id, include_rejected=False), now=now)
        found = list(session.scalars(stmt))
        if query.text:
            parsed, texts = parse_text(query.text), words()
            found = [i for i in found if _text_matches(parsed, *texts.get(i, ("", frozenset())))]
        for notice_id in found:
            hits[notice_id].append(saved.name)
    return hits


def _expiring_documents(
    session: Session, firm_ids: Sequence[int], *, today: dt.date
) -> dict[int, list[FirmDocument]]:
    """Per firm, its documents that count and expire within DOCUMENT_DAYS or have expired,
    soonest first (the rule of tenderpool.firms.documents, read for a whole batch at once)."""
    from tenderpool.firms.documents import current_documents

    by_firm: dict[int, list[FirmDocument]] = defaultdict(list)
    for start in range(0, len(firm_ids), 1000):
        chunk = list(firm_ids[start : start + 1000])
        for document in session.scalars(
            select(FirmDocument).where(FirmDocument.firm_id.in_(chunk), FirmDocument.expires_on.is_not(None))
        ):
            by_firm[document.firm_id].append(document)
    limit = today + dt.timedelta(days=DOCUMENT_DAYS)
    out: dict[int, list[FirmDocument]] = {}
    for firm_id, documents in by_firm.items():
        flagged = [
            d for d in current_documents(documents) if d.expires_on is not None and d.expires_on < limit
        ]
        out[firm_id] = sorted(flagged, key=lambda d: (d.expires_on or today, d.id))
    return out


def _text_matches(parsed: Any, text: str, stems: frozenset[str]) -> bool:
    """A saved search's words against a notice's stemmed text: every group, and no exclusion."""
    from tenderpool.firms.matching import has_phrase

    for group in parsed.groups:
        if not any(p.stems and has_phrase(text, stems, p.stems) for p in group):
            return False
    return not any(p.stems and has_phrase(text, stems, p.stems) for p in parsed.excluded)


def _search_words(session: Session, ids: Sequence[int]) -> dict[int, tuple[str, frozenset[str]]]:
    from tenderpool.notices.search import stem_tokens

    out = {}
    for start in range(0, len(ids), 1000):
        chunk = list(ids[start : start + 1000])
        for notice_id, document in session.execute(
            select(NoticeSearch.notice_id, NoticeSearch.document).where(NoticeSearch.notice_id.in_(chunk))
        ):
            tokens = stem_tokens(document)
            out[notice_id] = (" " + " ".join(tokens) + " ", frozenset(tokens))
    return out


_CHANGE_FIELDS = {
    "title": "titre modifié",
    "description": "description modifiée",
    "lots": "lots modifiés",
    "cpv": "codes CPV modifiés",
    "departments": "lieu d'exécution modifié",
    "dce_url": "nouveau lien vers le DCE",
    "url": "nouveau lien vers l'avis",
    "procedure_type": "procédure modifiée",
    "contract_type": "type de marché modifié",
    "buyer_name": "acheteur modifié",
}


def _when(text: str | None) -> str:
    if not text:
        return "non précisée"
    try:
        value = dt.datetime.fromisoformat(text)
    except ValueError:
        return text
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt.UTC)
    return datetime_fr(value)


def describe_change(change: NoticeChange) -> str:
    """One change in French: « date limite reportée au 27/02/2026 à 12:00 (au lieu du …) »."""
    from tenderpool.firms.matching import money_short

    old, new = change.old_value, change.new_value
    if change.field == "deadline_at":
        if not old:
            return f"date limite fixée au {_when(new)}"
        if not new:
            return "date limite retirée"
        later = dt.datetime.fromisoformat(new) > dt.datetime.fromisoformat(old)
        verb = "reportée" if later else "avancée"
        return f"date limite {verb} au {_when(new)} (au lieu du {_when(old)})"
    if change.field == "status":
        return {
            "cancelled": "avis annulé",
            "awarded": "marché attribué",
            "open": "avis de nouveau ouvert",
        }.get(new or "", f"statut : {new}")
    if change.field == "awards":
        return f"attribué à {new}" if new else "attribution modifiée"
    if change.field == "estimated_value":
        try:
            amount = money_short(Decimal(new)) if new else "non précisé"
        except ArithmeticError:
            amount = new or "non précisé"
        return f"montant estimé : {amount}"
    return _CHANGE_FIELDS.get(change.field, f"{change.field} modifié")


def build_digests(
    session: Session,
    recipients: Sequence[tuple[User, Firm | None, dt.datetime]],
    *,
    now: dt.datetime,
    settings: DigestSettings,
    tz: ZoneInfo,
    matcher: Matcher | None = None,
    new_notices: Mapping[int, dt.datetime] | None = None,
) -> list[DigestContent]:
    """The digest of each (user, firm, since), computed in bulk; only reads.

    Firm users: new notices matching their firm or one of their alert searches (each once, best
    first, capped), changes and deadlines of what their firm follows, expiring documents. Staff
    and admins: their alert searches and what they follow. The job passes the same ``matcher``
    and ``new_notices`` (id -> created_at) to every batch, so that they are read once.
    """
    if not recipients:
        return []
    start = max(min(since for _, _, since in recipients) - OVERLAP, now - MAX_LOOKBACK)
    if new_notices is None:
        new_notices = _new_notice_candidates(session, start=start, until=now, now=now)
    candidates = {i: created for i, created in new_notices.items() if created > start}
    user_ids = [user.id for user, _, _ in recipients]
    firm_ids = sorted({firm.id for _, firm, _ in recipients if firm is not None})
    matcher = matcher or Matcher(session)
    matcher.session = session
    matches = matcher.match(list(candidates), firm_ids) if candidates and firm_ids else {}
    announced: dict[int, set[int]] = defaultdict(set)
    dismissed: dict[int, set[int]] = defaultdict(set)
    if candidates:
        for user_id, notice_id in session.execute(
            select(DigestAnnouncement.user_id, DigestAnnouncement.notice_id).where(
                DigestAnnouncement.user_id.in_(user_ids), DigestAnnouncement.notice_id.in_(list(candidates))
            )
        ):
            announced[user_id].add(notice_id)
        if firm_ids:
            for firm_id, notice_id in session.execute(
                select(NoticeDismissal.firm_id, NoticeDismissal.notice_id).where(
                    NoticeDismissal.firm_id.in_(firm_ids), NoticeDismissal.notice_id.in_(list(candidates))
                )
            ):
                dismissed[firm_id].add(notice_id)
    searches: dict[int, list[SavedSearch]] = defaultdict(list)
    for saved in session.scalars(
        select(SavedSearch)
        .where(SavedSearch.user_id.in_(user_ids), SavedSearch.is_alert.is_(True))
        .order_by(SavedSearch.name, SavedSearch.id)
    ):
        searches[saved.user_id].append(saved)

    # Followed notices: a firm user gets what any member of the firm follows (the firm's watch list).
    watchers: dict[int, list[int]] = {user.id: [user.id] for user, _, _ in recipients}
    if firm_ids:
        members: dict[int, list[int]] = defaultdict(list)
        for firm_id, member_id in session.execute(
            select(FirmMembership.firm_id, FirmMembership.user_id).where(FirmMembership.firm_id.in_(firm_ids))
        ):
            members[firm_id].append(member_id)
        for user, firm, _ in recipients:
            if firm is not None:
                watchers[user.id] = members[firm.id]
    all_watchers = sorted({w for ws in watchers.values() for w in ws})
    follows: dict[int, set[int]] = defaultdict(set)
    for user_id, notice_id in session.execute(
        select(NoticeFollow.user_id, NoticeFollow.notice_id).where(NoticeFollow.user_id.in_(all_watchers))
    ):
        follows[user_id].add(notice_id)
    followed_ids = sorted({n for ns in follows.values() for n in ns})
    change_rows: dict[int, list[NoticeChange]] = defaultdict(list)
    followed: dict[int, Notice] = {}
    if followed_ids:
        earliest = min(since for _, _, since in recipients)
        for start_at in range(0, len(followed_ids), 1000):
            chunk = followed_ids[start_at : start_at + 1000]
            for change in session.scalars(
                select(NoticeChange)
                .where(NoticeChange.notice_id.in_(chunk), NoticeChange.at > earliest, NoticeChange.at <= now)
                .order_by(NoticeChange.notice_id, NoticeChange.id)
            ):
                change_rows[change.notice_id].append(change)
            for notice in session.scalars(select(Notice).where(Notice.id.in_(chunk))):
                followed[notice.id] = notice

    documents = _expiring_documents(session, firm_ids, today=now.astimezone(tz).date())
    notice_rows: dict[int, Notice] = {}
    words_cache: dict[int, tuple[str, frozenset[str]]] = {}

    def words() -> Mapping[int, tuple[str, frozenset[str]]]:
        if not words_cache:
            words_cache.update(_search_words(session, sorted(candidates)))
        return words_cache

    today = now.astimezone(tz).date()
    contents: list[DigestContent] = []
    for user, firm, since in recipients:
        content = DigestContent(
            user_id=user.id, email=user.email, name=user.full_name, firm_id=firm.id if firm else None,
            firm_name=firm.name if firm else None, since=since, until=now,
        )  # fmt: skip
        # New notices.
        skip = announced[user.id] | (dismissed[firm.id] if firm is not None else set())
        window = [i for i, created in candidates.items() if created > since - OVERLAP and i not in skip]
        scored = {m.notice_id: m for m in matches.get(firm.id, [])} if firm is not None else {}
        by_search = _saved_search_hits(
            session, searches[user.id], window, firm_id=firm.id if firm else None, now=now, words=words
        )
        chosen = [i for i in window if i in scored or i in by_search]
        chosen.sort(
            key=lambda i: (-(scored[i].score if i in scored else SAVED_SEARCH_SCORE), candidates[i], i)
        )
        missing = [i for i in chosen[: settings.max_notices] if i not in notice_rows]
        if missing:
            for notice in session.scalars(select(Notice).where(Notice.id.in_(missing))):
                notice_rows[notice.id] = notice
        for notice_id in chosen[: settings.max_notices]:
            notice = notice_rows[notice_id]
            match = scored.get(notice_id)
            content.notices.append(
                DigestNotice(
                    id=notice.id, title=notice.title, buyer=notice.buyer_name, deadline_at=notice.deadline_at,
                    departments=notice.departments, estimated_value=notice.estimated_value,
                    score=match.score if match else None, reasons=list(match.reasons) if match else [],
                    is_group_candidate=bool(match and match.is_group_candidate),
                    searches=by_search.get(notice_id, []),
                )
            )  # fmt: skip
        content.more = chosen[settings.max_notices :]

        # Followed notices: changes since the previous digest, deadlines in the next days.
        mine = sorted({n for w in watchers[user.id] for n in follows[w]})
        for notice_id in mine:
            watched = followed.get(notice_id)
            if watched is None or watched.merged_into_id is not None:
                continue
            lines = [describe_change(c) for c in change_rows.get(notice_id, []) if since < c.at <= now]
            if lines:
                content.changes.append(DigestChange(notice_id, watched.title, list(dict.fromkeys(lines))))
            deadline = watched.deadline_at
            if (
                watched.status == NoticeStatus.OPEN.value
                and deadline is not None
                and now < deadline <= now + dt.timedelta(days=DEADLINE_DAYS)
            ):
                days = (deadline.astimezone(tz).date() - today).days
                content.deadlines.append(
                    DigestDeadline(notice_id, watched.title, deadline, is_soon=days <= 1)
                )
                # A deadline makes a digest worth sending when it is tomorrow, or when it has
                # come within the five days since the previous digest.
                if days == 1 or deadline > since + dt.timedelta(days=DEADLINE_DAYS):
                    content.triggered = True
        content.deadlines.sort(key=lambda d: (d.deadline_at, d.notice_id))

        # Expiring documents of the firm.
        if firm is not None:
            previous_day = since.astimezone(tz).date()
            for document in documents.get(firm.id, []):
                if document.expires_on is None:
                    continue
                content.documents.append(
                    DigestDocument(
                        document.id, document.title, document.expires_on, document.expires_on < today
                    )
                )
                crossed = [document.expires_on - dt.timedelta(days=d) for d in DOCUMENT_ALERT_DAYS]
                if any(previous_day < day <= today for day in crossed):
                    content.triggered = True

        content.consortium = consortium_activity(session, user, since=since, until=now)
        if content.notices or content.changes or content.consortium:
            content.triggered = True
        contents.append(content)
    return contents


# --------------------------------------------------------------------------- the message


def _sender_domain(sender: str) -> str:
    address = parseaddr(sender)[1]
    return address.rsplit("@", 1)[-1] if "@" in address else "tenderpool.local"


def _plural(count: int, one: str, many: str) -> str:
    return f"{count} {one if count == 1 else many}"


def digest_subject(content: DigestContent, tz: ZoneInfo) -> str:
    day = content.until.astimezone(tz).strftime("%d/%m/%Y")
    total = len(content.notices) + len(content.more)
    if total:
        what = _plural(total, "nouvel avis", "nouveaux avis")
        target = f" pour {content.firm_name}" if content.firm_name else ""
        return f"TenderPool — {what}{target} ({day})"
    if content.changes:
        changed = _plural(len(content.changes), "avis suivi modifié", "avis suivis modifiés")
        return f"TenderPool — {changed} ({day})"
    if content.deadlines:
        return f"TenderPool — échéances de vos avis suivis ({day})"
    return f"TenderPool — votre résumé du {day}"


def render_digest(content: DigestContent, *, settings: Settings, digest: DigestSettings) -> OutgoingMail:
    """The multipart message (French, plain text and HTML, absolute links, List-Unsubscribe).

    Needs an application context (templates and URL building).
    """
    from tenderpool.firms.matching import money_short
    from tenderpool.web import external_url

    tz = settings.tz
    token = unsubscribe_token(settings.secret_key, content.user_id)
    unsubscribe_url = external_url("digests.unsubscribe", token=token)
    mailto_address = digest.unsubscribe_mailto or parseaddr(settings.mail.sender)[1]
    mailto = f"mailto:{mailto_address}?subject={quote('desabonnement ' + token)}"
    if content.firm_id is not None:
        more_query = urlencode([("firm", "1"), ("status", "open"), ("sort", "published")])
        more_url = external_url("notices.browse") + "?" + more_query
    else:
        more_url = external_url("notices.saved_searches")
    names = departments()
    today = content.until.astimezone(tz).date()

    def deadline_text(value: dt.datetime | None) -> str:
        if value is None:
            return "date limite non précisée"
        days = (value.astimezone(tz).date() - today).days
        when = datetime_fr(value)
        if days == 0:
            return f"aujourd'hui, {when}"
        if days == 1:
            return f"demain, {when}"
        return f"{when} (dans {days} jours)"

    notices = [
        {
            "url": external_url("notices.detail", notice_id=n.id),
            "title": n.title,
            "buyer": n.buyer,
            "deadline": deadline_text(n.deadline_at),
            "places": ", ".join(f"{names.get(d, d)} ({d})" for d in n.departments),
            "value": money_short(n.estimated_value) if n.estimated_value else None,
            "score": n.score,
            "reasons": n.reasons,
            "is_group_candidate": n.is_group_candidate,
            "searches": n.searches,
        }
        for n in content.notices
    ]
    context = {
        "content": content,
        "notices": notices,
        "more_count": len(content.more),
        "more_url": more_url,
        "changes": [
            {"url": external_url("notices.detail", notice_id=c.notice_id), "title": c.title, "lines": c.lines}
            for c in content.changes
        ],
        "deadlines": [
            {
                "url": external_url("notices.detail", notice_id=d.notice_id),
                "title": d.title,
                "when": deadline_text(d.deadline_at),
                "is_soon": d.is_soon,
            }
            for d in content.deadlines
        ],
        "documents": [
            {"title": d.title, "expires_on": d.expires_on.strftime("%d/%m/%Y"), "is_expired": d.is_expired}
            for d in content.documents
        ],
        "consortium": content.consortium,
        "documents_url": external_url("firms.my_firm"),
        "watchlist_url": external_url("notices.watchlist"),
        "preferences_url": external_url("digests.preferences"),
        "unsubscribe_url": unsubscribe_url,
        "home_url": external_url("main.home"),
        "day": today.strftime("%d/%m/%Y"),
    }
    subject = digest_subject(content, tz)
    text = render_template("email/digest.txt", subject=subject, **context)
    html = render_template("email/digest.html", subject=subject, **context)
    headers = {
        "List-Unsubscribe": f"<{unsubscribe_url}>, <{mailto}>",
        "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
    }
    return OutgoingMail(to=[content.email], subject=subject, text=text, html=html, headers=headers)


def send_with_message_id(mailer: Mailer, mail: OutgoingMail, message_id: str) -> EmailMessage:
    """Send ``mail`` through ``mailer`` with a Message-ID of ours (the same on every retry).

    The mailer makes a fresh Message-ID for each message; a copy of it, whose ``build`` replaces
    that header, sends this one. The app's mailer is left as it is.
    """
    build = mailer.build

    def build_with_id(outgoing: OutgoingMail) -> EmailMessage:
        message = build(outgoing)
        message.replace_header("Message-ID", message_id)
        return message

    one_off = copy.copy(mailer)
    setattr(one_off, "build", build_with_id)  # noqa: B010 (an instance attribute shadows the method)
    return one_off.send(mail)


# --------------------------------------------------------------------------- the job


@dataclass
class DigestReport:
    sent: int = 0
    empty: int = 0
    failed: int = 0  # this time; retried later unless given up
    given_up: int = 0
    retried: int = 0  # earlier runs sent again (failures, interrupted sends)
    skipped: int = 0  # not due, or done by another job
    dry_run: list[DigestContent] = field(default_factory=list)

    def count(self, outcome: str) -> None:
        if outcome == "given_up":
            self.failed += 1
        setattr(self, outcome, getattr(self, outcome) + 1)

    def as_dict(self) -> dict[str, int]:
        data = asdict(self)
        data.pop("dry_run")
        return data


def _lease(digest: DigestSettings, settings: Settings) -> dt.timedelta:
    # Long enough for a slow SMTP conversation (a few commands, each up to the timeout), so that a
    # second job never resends a message the first one is still sending.
    return max(LEASE_FLOOR, dt.timedelta(seconds=6 * settings.mail.timeout_seconds))


def _backoff(digest: DigestSettings, attempts: int) -> dt.timedelta:
    return min(MAX_BACKOFF, dt.timedelta(minutes=digest.retry_minutes) * (1 << max(0, attempts - 1)))


def _mark_sent(session: Session, run_id: int, *, now: dt.datetime) -> None:
    session.execute(
        update(DigestRun)
        .where(DigestRun.id == run_id)
        .values(status="sent", sent_at=now, next_attempt_at=None, last_error=None)
    )
    session.commit()


def _deliver(db: Database, mailer: Mailer, run_id: int, *, now: dt.datetime, digest: DigestSettings) -> str:
    """Send a claimed run's frozen message, then record the outcome: "sent", "failed" or "given_up"."""
    with db.session() as session:
        run = session.get(DigestRun, run_id)
        if run is None or run.status != "sending" or run.message_id is None:
            return "skipped"
        mail = OutgoingMail(**run.content["mail"])
        message_id, attempts = run.message_id, run.attempts
        session.rollback()  # no transaction held open during the SMTP conversation
        try:
            send_with_message_id(mailer, mail, message_id)
        except (OSError, smtplib.SMTPException) as exc:
            given_up = attempts >= digest.max_attempts
            session.execute(
                update(DigestRun)
                .where(DigestRun.id == run_id)
                .values(
                    status="failed",
                    last_error=f"{type(exc).__name__}: {exc}"[:1000],
                    next_attempt_at=None if given_up else now + _backoff(digest, attempts),
                )
            )
            session.commit()
            log.warning(
                "digest %s to %s failed (attempt %s%s): %s",
                run_id, mail.to, attempts, ", given up" if given_up else "", exc,
            )  # fmt: skip
            return "given_up" if given_up else "failed"
        # The server has the message: record it at once (the residual window is here).
        _mark_sent(session, run_id, now=now)
        return "sent"


def _claim(
    session: Session, run_id: int, *, from_status: Sequence[str], now: dt.datetime, lease: dt.timedelta
) -> bool:
    """Take a run for sending (compare-and-set): False when another job took it first."""
    result = session.execute(
        update(DigestRun)
        .where(
            DigestRun.id == run_id,
            DigestRun.status.in_(list(from_status)),
            DigestRun.next_attempt_at.is_not(None),
            DigestRun.next_attempt_at <= now,
        )
        .values(status="sending", attempts=DigestRun.attempts + 1, next_attempt_at=now + lease)
        .execution_options(synchronize_session=False)
    )
    session.commit()
    return bool(getattr(result, "rowcount", 0) == 1)


def _retry_due(
    db: Database, mailer: Mailer, report: DigestReport, *, now: dt.datetime, digest: DigestSettings,
    lease: dt.timedelta, only_user: int | None, dry_run: bool, echo: Callable[[str], None],
) -> None:  # fmt: skip
    """Send again the runs that failed (when their time has come) and those interrupted mid-send."""
    with db.session() as session:
        stmt = (
            select(DigestRun.id, DigestRun.status, DigestRun.user_id)
            .where(
                DigestRun.status.in_(["failed", "sending", "pending"]),
                DigestRun.next_attempt_at.is_not(None),
                DigestRun.next_attempt_at <= now,
            )
            .order_by(DigestRun.id)
        )
        if only_user is not None:
            stmt = stmt.where(DigestRun.user_id == only_user)
        due = [(row[0], row[1], row[2]) for row in session.execute(stmt)]
        session.rollback()
    for run_id, status, user_id in due:
        if dry_run:
            echo(f"à renvoyer : résumé n° {run_id} (utilisateur {user_id}, {status})")
            continue
        with db.session() as session:
            claimed = _claim(session, run_id, from_status=[status], now=now, lease=lease)
        if not claimed:
            report.skipped += 1
            continue
        report.retried += 1
        report.count(_deliver(db, mailer, run_id, now=now, digest=digest))


def _start_run(
    db: Database, content: DigestContent, period: str, mail: OutgoingMail | None, *,
    now: dt.datetime, lease: dt.timedelta, domain: str,
) -> int | None:  # fmt: skip
    """Record the run before sending (content frozen, announcements written); None if it exists."""
    with db.session() as session:
        try:
            summary = content.summary()
            if mail is None:
                session.add(DigestRun(user_id=content.user_id, period=period, status="empty", attempts=0,
                                      content=summary, created_at=now))  # fmt: skip
                session.commit()
                return None
            summary["mail"] = {"to": mail.to, "subject": mail.subject, "text": mail.text, "html": mail.html,
                               "headers": mail.headers}  # fmt: skip
            run = DigestRun(user_id=content.user_id, period=period, status="sending", attempts=1,
                            content=summary, created_at=now, next_attempt_at=now + lease)  # fmt: skip
            session.add(run)
            session.flush()
            run.message_id = f"<digest.{run.id}.{secrets.token_hex(8)}@{domain}>"
            session.add_all(
                DigestAnnouncement(user_id=content.user_id, notice_id=notice_id, digest_run_id=run.id, at=now)
                for notice_id in content.announced_ids
            )
            session.commit()
            return run.id
        except IntegrityError:
            # Another job recorded this (user, period) first: it sends it, not us.
            session.rollback()
            return -1


def send_due_digests(
    db: Database,
    mailer: Mailer,
    *,
    settings: Settings,
    now: dt.datetime,
    dry_run: bool = False,
    only_email: str | None = None,
    echo: Callable[[str], None] = lambda _line: None,
) -> DigestReport:
    """The job: retry what is due, then build, record and send every due digest.

    Commits around each send (``db`` sessions). ``dry_run`` prints each recipient and its
    notices and writes nothing. Needs an application context (templates, links).
    """
    digest = digest_settings(settings.raw)
    report = DigestReport()
    if not digest.enabled:
        echo("Résumés désactivés (digests.enabled = false).")
        return report
    tz = settings.tz
    lease = _lease(digest, settings)
    domain = _sender_domain(settings.mail.sender)
    matcher: Matcher | None = None
    new_notices: dict[int, dt.datetime] | None = None
    only_user: int | None = None
    if only_email is not None:
        with db.session() as session:
            only_user = session.scalar(
                select(User.id).where(func.lower(User.email) == only_email.strip().lower())
            )
        if only_user is None:
            echo(f"Aucun compte {only_email}.")
            return report
    _retry_due(db, mailer, report, now=now, digest=digest, lease=lease, only_user=only_user, dry_run=dry_run,
               echo=echo)  # fmt: skip

    after_id = 0
    while True:
        with db.session() as session:
            batch = eligible_users(session, after_id=after_id, limit=digest.batch_size, email=only_email)
            if not batch:
                break
            after_id = batch[-1][0].id
            prefs = {
                p.user_id: p
                for p in session.scalars(
                    select(DigestPreference).where(DigestPreference.user_id.in_([u.id for u, _ in batch]))
                )
            }
            periods: dict[int, str] = {}
            slots: dict[int, dt.datetime] = {}
            for user, _firm in batch:
                due = scheduled_period(prefs.get(user.id) or preference_of(session, user.id), now, tz)
                if due is not None:
                    periods[user.id], slots[user.id] = due
            done = {
                uid
                for uid, period in session.execute(
                    select(DigestRun.user_id, DigestRun.period).where(DigestRun.user_id.in_(list(periods)))
                )
                if periods.get(uid) == period
            }
            previous = _previous_until(session, list(periods), periods, now=now)
            recipients = []
            for user, firm in batch:
                if user.id not in periods:
                    continue
                if user.id in done:
                    report.skipped += 1
                    continue
                lookback = dt.timedelta(days=7 if periods[user.id].count("W") else 1)
                since = previous.get(user.id) or max(slots[user.id] - lookback, user.created_at)
                recipients.append((user, firm, since))
            if new_notices is None:
                # Once per job: every batch looks among the same new notices, read and stemmed once.
                new_notices = _new_notice_candidates(session, start=now - MAX_LOOKBACK, until=now, now=now)
                matcher = Matcher(session)
            contents = build_digests(
                session, recipients, now=now, settings=digest, tz=tz, matcher=matcher, new_notices=new_notices
            )
            mails = {
                c.user_id: render_digest(c, settings=settings, digest=digest)
                for c in contents
                if not c.is_empty and not dry_run
            }
            session.rollback()
        for content in contents:
            period = periods[content.user_id]
            mail = mails.get(content.user_id)
            if dry_run:
                _echo_dry_run(echo, content, period)
                report.dry_run.append(content)
                continue
            run_id = _start_run(db, content, period, mail, now=now, lease=lease, domain=domain)
            if mail is None:
                report.empty += 1
                continue
            if run_id is None or run_id < 0:
                report.skipped += 1
                continue
            report.count(_deliver(db, mailer, run_id, now=now, digest=digest))
    return report


def _echo_dry_run(echo: Callable[[str], None], content: DigestContent, period: str) -> None:
    who = content.email + (f" ({content.firm_name})" if content.firm_name else "")
    if content.is_empty:
        echo(f"{who} — {period} : vide, rien à envoyer")
        return
    total = len(content.notices) + len(content.more)
    echo(f"{who} — {period} : {_plural(total, 'nouvel avis', 'nouveaux avis')}, "
         f"{len(content.changes)} modifié(s), {len(content.deadlines)} échéance(s), "
         f"{len(content.documents)} document(s)")  # fmt: skip
    for n in content.notices:
        why = f"score {n.score}" if n.score is not None else "recherche " + ", ".join(n.searches)
        echo(f"  - [{n.id}] {n.title} ({why}{', groupement conseillé' if n.is_group_candidate else ''})")
    if content.more:
        echo(f"  … et {len(content.more)} autre(s)")


def preview_digest(session: Session, user: User, *, settings: Settings, now: dt.datetime) -> DigestContent:
    """The digest ``user`` would get now (nothing recorded): for the preview page."""
    digest = digest_settings(settings.raw)
    firm = None
    if user.is_firm_user:
        firm = session.scalar(
            select(Firm)
            .join(FirmMembership, FirmMembership.firm_id == Firm.id)
            .where(FirmMembership.user_id == user.id)
        )
    pref = preference_of(session, user.id)
    due = scheduled_period(pref, now, settings.tz)
    previous = _previous_until(session, [user.id], {user.id: due[0] if due else ""}, now=now)
    lookback = dt.timedelta(days=7 if pref.frequency == "weekly" else 1)
    since = previous.get(user.id) or max(now - lookback, user.created_at)
    return build_digests(session, [(user, firm, since)], now=now, settings=digest, tz=settings.tz)[0]


def recent_runs(session: Session, user_id: int, *, limit: int = 10) -> list[DigestRun]:
    """The user's latest digests, newest first (the preferences page shows them)."""
    return list(
        session.scalars(
            select(DigestRun).where(DigestRun.user_id == user_id).order_by(DigestRun.id.desc()).limit(limit)
        )
    )
