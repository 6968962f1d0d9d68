"""Personal calendar feeds (RFC 5545): the deadlines of the notices a user follows.

A user subscribes their calendar application to ``/calendrier/<token>.ics``; the
secret token is the only credential, so regenerating it revokes the old address.
Each notice is one VEVENT whose UID never changes (``notice-<id>@tenderpool``):
when a corrigendum moves the deadline, the SEQUENCE goes up and calendar
applications update the event instead of adding a second one.
"""

from __future__ import annotations

import datetime as dt
import secrets
from collections.abc import Callable, Iterable
from zoneinfo import ZoneInfo

from icalendar import Alarm, Calendar, Event, Timezone
from sqlalchemy import func, select
from sqlalchemy.orm import Session, selectinload

from tenderpool.accounts.models import User
from tenderpool.accounts.services import record_audit
from tenderpool.notices.models import Notice, NoticeChange, NoticeFollow, NoticeStatus

PARIS_TZID = "Europe/Paris"
PARIS = ZoneInfo(PARIS_TZID)
PRODID = "-//TenderPool//Echeances des avis suivis//FR"
ALARM_BEFORE = dt.timedelta(days=2)
TOKEN_BYTES = 32  # 43 URL-safe characters, within users.ics_token (64)
_MAX_MERGE_HOPS = 10  # a merge chain longer than this is a data error, not a reason to loop


def regenerate_ics_token(session: Session, user: User, *, now: dt.datetime, ip: str | None = None) -> str:
    """Create or replace the user's feed token (the old feed address stops working); only flushes."""
    had_token = user.ics_token is not None
    user.ics_token = secrets.token_urlsafe(TOKEN_BYTES)
    # The token itself stays out of the audit log: the log is read by admins, the feed is private.
    record_audit(
        session,
        "ics_token_regenerated" if had_token else "ics_token_created",
        actor=user,
        target_type="user",
        target_id=user.id,
        ip=ip,
        now=now,
    )
    return user.ics_token


def user_for_ics_token(session: Session, token: str) -> User | None:
    """The active user owning this feed token, or None."""
    if not token or len(token) > 64:
        return None
    return session.scalars(select(User).where(User.ics_token == token, User.is_active.is_(True))).first()


def followed_notice_ids(session: Session, user: User) -> set[int]:
    return set(session.scalars(select(NoticeFollow.notice_id).where(NoticeFollow.user_id == user.id)))


def feed_notices(session: Session, notice_ids: Iterable[int]) -> list[Notice]:
    """The notices to show for these ids: merged ones replaced by their survivor, rejected and
    deadline-less ones left out, soonest deadline first."""
    wanted = set(notice_ids)
    found: dict[int, Notice] = {}
    for _ in range(_MAX_MERGE_HOPS):
        if not wanted:
            break
        rows = session.scalars(
            select(Notice)
            .where(Notice.id.in_(wanted))
            .options(selectinload(Notice.lots))
        )  # fmt: skip
        wanted = set()
        for notice in rows:
            if notice.merged_into_id is not None:
                # A follow of a merged notice is a follow of the procedure it was merged into.
                if notice.merged_into_id not in found:
                    wanted.add(notice.merged_into_id)
            else:
                found[notice.id] = notice
    notices = [n for n in found.values() if n.deadline_at is not None and not n.is_rejected]
    return sorted(notices, key=lambda n: (n.deadline_at, n.id))


def deadline_change_counts(session: Session, notice_ids: Iterable[int]) -> dict[int, int]:
    """Notice id → how many times a later publication moved its deadline (the event's SEQUENCE)."""
    ids = list(notice_ids)
    if not ids:
        return {}
    rows = session.execute(
        select(NoticeChange.notice_id, func.count())
        .where(NoticeChange.notice_id.in_(ids), NoticeChange.field == "deadline_at")
        .group_by(NoticeChange.notice_id)
    )
    return {notice_id: int(count) for notice_id, count in rows}


def _description(notice: Notice, page_url: str, *, cancelled: bool) -> str:
    lines = []
    if cancelled:
        lines.append("Procédure annulée.")
    if notice.buyer_name:
        lines.append(f"Acheteur : {notice.buyer_name}")
    if notice.lots:
        lines.append("Lots :")
        lines += [f"- Lot {lot.number} : {lot.title or 'sans titre'}" for lot in notice.lots]
    lines.append(f"Avis sur TenderPool : {page_url}")
    if notice.url:
        lines.append(f"Publication d'origine : {notice.url}")
    return "\n".join(lines)


def _event(notice: Notice, *, sequence: int, page_url: str) -> Event:
    deadline = notice.deadline_at
    if deadline is None:  # feed_notices keeps only notices with a deadline
        raise ValueError(f"notice {notice.id} has no deadline")
    cancelled = notice.status == NoticeStatus.CANCELLED
    # Stable: the time the notice last changed, not the time of the download, so that an
    # unchanged feed stays byte-for-byte the same (ETag) and clients see nothing new.
    modified = (notice.updated_at or notice.created_at).astimezone(dt.UTC).replace(microsecond=0)
    event = Event()
    event.add("uid", f"notice-{notice.id}@tenderpool")
    event.add("dtstamp", modified)
    event.add("last-modified", modified)
    event.add("sequence", sequence)
    # Shown in Paris time with the VTIMEZONE below, whatever the subscriber's own zone.
    event.add("dtstart", deadline.astimezone(PARIS))
    event.add("summary", f"Date limite : {notice.title}")
    event.add("description", _description(notice, page_url, cancelled=cancelled))
    event.add("url", page_url)
    event.add("transp", "TRANSPARENT")  # a deadline does not make the subscriber busy
    if cancelled:
        event.add("status", "CANCELLED")
    else:
        event.add("status", "CONFIRMED")
        # No reminder for a cancelled procedure: there is nothing left to answer.
        alarm = Alarm()
        alarm.add("action", "DISPLAY")
        alarm.add("description", f"Date limite dans 2 jours : {notice.title}")
        alarm.add("trigger", -ALARM_BEFORE)
        event.add_component(alarm)
    return event


def _timezone(notices: list[Notice], now: dt.datetime) -> Timezone:
    # The VTIMEZONE lists its transitions explicitly: cover the years of the events (and the
    # current one, so that an empty feed still names its zone), not 1970–2038.
    years = [now.year] + [n.deadline_at.year for n in notices if n.deadline_at is not None]
    return Timezone.from_tzid(
        PARIS_TZID, first_date=dt.date(min(years) - 1, 1, 1), last_date=dt.date(max(years) + 2, 1, 1)
    )


def build_calendar(
    session: Session,
    user: User,
    *,
    now: dt.datetime,
    notice_url: Callable[[int], str],
    extra_notice_ids: Iterable[int] = (),
) -> bytes:
    """The user's feed: one VEVENT per followed notice that has a deadline.

    ``notice_url(id)`` gives the absolute address of a notice's page. ``extra_notice_ids``
    is the hook for deadlines that come from elsewhere than follows (the notices of the
    user's consortia): the caller, which sits above the consortia domain, passes them in.
    """
    notices = feed_notices(session, followed_notice_ids(session, user) | set(extra_notice_ids))
    sequences = deadline_change_counts(session, [n.id for n in notices])
    calendar = Calendar()
    calendar.add("prodid", PRODID)
    calendar.add("version", "2.0")
    calendar.add("calscale", "GREGORIAN")
    calendar.add("x-wr-calname", "TenderPool : mes dates limites")
    calendar.add("x-wr-timezone", PARIS_TZID)
    # Ask subscribed clients to poll hourly: a corrigendum can move a deadline any day.
    calendar.add("refresh-interval", dt.timedelta(hours=1), parameters={"VALUE": "DURATION"})
    calendar.add("x-published-ttl", "PT1H")
    calendar.add_component(_timezone(notices, now))
    for notice in notices:
        calendar.add_component(
            _event(notice, sequence=sequences.get(notice.id, 0), page_url=notice_url(notice.id))
        )
    return bytes(calendar.to_ical())
