"""What a digest holds (tenderpool.digests.services): each notice once, never twice, nothing closed,
rejected, merged or dismissed, the cap, empty digests, staff digests, followed notices, documents,
the schedule and the settings."""

from __future__ import annotations

import datetime as dt
import secrets
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from tenderpool.accounts.models import User
from tenderpool.config import ConfigError, load_settings
from tenderpool.db import Database
from tenderpool.digests import services
from tenderpool.digests.models import DigestAnnouncement, DigestPreference, DigestRun
from tenderpool.digests.services import DigestContent, build_digests, digest_settings, scheduled_period
from tenderpool.firms.models import Firm, FirmDocument
from tenderpool.notices import services as notice_services
from tenderpool.notices.models import Notice, NoticeChange, NoticeFollow, SavedSearch
from tests import factories
from tests.conftest import SEED_EMAILS, Seed, body_text
from tests.digests.conftest import NOW, PARIS, run_job

YESTERDAY = NOW - dt.timedelta(days=1)


@pytest.fixture
def firm(session: Session, seed: Seed) -> Firm:
    """The seeded firm of Meaux (77): building works, 700 k€ of turnover."""
    found = session.get(Firm, seed.firm_id)
    assert found is not None
    return factories.set_profile(session, found, cpv=["45000000"], turnover=700_000)


def notice(session: Session, **kw: Any) -> Notice:
    kw.setdefault("created_at", NOW - dt.timedelta(hours=3))
    kw.setdefault("departments", ["77"])
    kw.setdefault("cpv", ["45210000"])
    kw.setdefault("deadline_at", NOW + dt.timedelta(days=20))
    return factories.make_plain_notice(session, **kw)


def content_of(
    session: Session, settings: Any, user_id: int, since: dt.datetime = YESTERDAY
) -> DigestContent:
    user = session.get(User, user_id)
    assert user is not None
    firm = None
    if user.is_firm_user:
        firm = session.scalar(
            select(Firm).join(Firm.memberships).where(Firm.memberships.any(user_id=user_id))
        )
    digest = digest_settings(settings.raw)
    return build_digests(session, [(user, firm, since)], now=NOW, settings=digest, tz=PARIS)[0]


def save_search(session: Session, user_id: int, name: str, query: str) -> SavedSearch:
    saved = SavedSearch(user_id=user_id, name=name, query=query, is_alert=True)
    session.add(saved)
    session.flush()
    return saved


# --------------------------------------------------------------------------- new notices


def test_each_notice_once_whatever_finds_it(session: Session, settings: Any, seed: Seed, firm: Firm) -> None:
    school = notice(session, title="Réhabilitation de l'école Jules Ferry")
    save_search(session, seed.owner_id, "Écoles", "q=ecole")
    save_search(session, seed.owner_id, "Réhabilitations 77", "q=rehabilitation&dep=77")
    content = content_of(session, settings, seed.owner_id)
    assert [n.id for n in content.notices] == [school.id]
    listed = content.notices[0]
    assert listed.score is not None and listed.reasons[0].startswith("CPV 45210000")
    assert listed.searches == ["Réhabilitations 77", "Écoles"]
    assert content.triggered


def test_a_saved_search_alone_finds_notices_outside_the_profile(
    session: Session, settings: Any, seed: Seed, firm: Firm
) -> None:
    cleaning = notice(session, title="Nettoyage des vitres de la mairie", cpv=["90910000"])
    notice(session, title="Nettoyage des locaux", cpv=["90910000"], departments=["91"])
    save_search(session, seed.owner_id, "Nettoyage 77", "q=nettoyage&dep=77")
    save_search(session, seed.owner_id, "Pas une alerte", "q=locaux").is_alert = False
    content = content_of(session, settings, seed.owner_id)
    # The firm's alert searches also feed its matching: the notice is scored, and says why.
    assert [(n.id, n.searches) for n in content.notices] == [(cleaning.id, ["Nettoyage 77"])]
    assert "recherche enregistrée « Nettoyage 77 »" in content.notices[0].reasons


def test_what_is_never_announced(session: Session, settings: Any, seed: Seed, firm: Firm) -> None:
    good = notice(session, title="École")
    notice(session, title="Collège clos", deadline_at=NOW - dt.timedelta(hours=1))
    notice(session, title="Collège annulé", status="cancelled")
    notice(session, title="Collège attribué", status="awarded")
    rejected = notice(session, title="Collège rejeté")
    rejected.is_rejected = True
    merged = notice(session, title="Collège fusionné")
    merged.merged_into_id = good.id
    dismissed = notice(session, title="Collège écarté")
    notice_services.dismiss(
        session, firm.id, dismissed, by_id=seed.member_id, reason="other", comment=None, now=NOW
    )
    notice(session, title="Collège ancien", created_at=NOW - dt.timedelta(days=5))
    session.flush()
    save_search(session, seed.owner_id, "Collèges", "q=college")
    assert [n.id for n in content_of(session, settings, seed.owner_id).notices] == [good.id]


def test_never_announced_twice(
    app: Flask, database: Database, session: Session, seed: Seed, firm: Firm, outbox: Any
) -> None:
    school = notice(session, title="École")
    session.commit()
    first = run_job(app, database, only_email=SEED_EMAILS["owner"])
    assert first.sent == 1
    assert (
        session.scalar(
            select(func.count())
            .select_from(DigestAnnouncement)
            .where(DigestAnnouncement.notice_id == school.id)
        )
        == 1
    )
    # The next morning the notice is still within the overlap window, but already announced.
    gym = notice(session, title="Gymnase", created_at=NOW + dt.timedelta(hours=5))
    session.commit()
    second = run_job(app, database, now=NOW + dt.timedelta(days=1), only_email=SEED_EMAILS["owner"])
    assert second.sent == 1
    texts = [body_text(m) for m in outbox()]  # in no particular order: file names sort by the second
    assert len(texts) == 2
    first_text, second_text = sorted(texts, key=lambda text: "Gymnase" in text)
    assert f"/avis/{school.id}" in first_text and f"/avis/{gym.id}" not in first_text
    assert f"/avis/{gym.id}" in second_text and f"/avis/{school.id}" not in second_text


def test_a_colleague_gets_the_firms_matches_too(
    session: Session, settings: Any, seed: Seed, firm: Firm
) -> None:
    school = notice(session, title="École")
    assert [n.id for n in content_of(session, settings, seed.member_id).notices] == [school.id]


def test_the_cap_and_the_others_link(
    overrides: dict[str, Any], database: Database, session: Session, seed: Seed, firm: Firm, outbox: Any
) -> None:
    from tenderpool.app import build_app

    app = build_app({**overrides, "digests": {"max_notices": 3}}, database=database)
    created = [notice(session, title=f"École n° {i}", estimated_value=100_000 * (i + 1)) for i in range(5)]
    session.commit()
    report = run_job(app, database, only_email=SEED_EMAILS["owner"])
    assert report.sent == 1
    (message,) = outbox()
    text = body_text(message)
    assert sum(f"/avis/{n.id}\n" in text for n in created) == 3
    assert "Voir les 2 autres : http://tenderpool.test/avis?firm=1&status=open&sort=published" in text
    html = message.get_body(preferencelist=("html",)).get_content()
    assert "Voir les 2 autres" in html
    assert message["Subject"].startswith("TenderPool — 5 nouveaux avis pour ")
    # The two past the cap are announced too (counted in the digest): never listed later.
    run = session.scalars(select(DigestRun).where(DigestRun.user_id == seed.owner_id)).one()
    assert len(run.content["notices"]) == 3 and len(run.content["more"]) == 2
    assert (
        session.scalar(
            select(func.count())
            .select_from(DigestAnnouncement)
            .where(DigestAnnouncement.user_id == seed.owner_id)
        )
        == 5
    )


def test_empty_digests_are_recorded_not_sent(
    app: Flask, database: Database, session: Session, seed: Seed, outbox: Any
) -> None:
    report = run_job(app, database, only_email=SEED_EMAILS["staff77"])
    assert report.empty == 1 and report.sent == 0
    assert outbox() == []
    run = session.scalars(select(DigestRun).where(DigestRun.user_id == seed.staff77_id)).one()
    assert run.status == "empty" and run.message_id is None
    # Done for the period: the next run does not look again.
    assert run_job(app, database, only_email=SEED_EMAILS["staff77"]).skipped == 1


def test_staff_get_their_searches_and_follows_only(
    session: Session, settings: Any, seed: Seed, firm: Firm
) -> None:
    school = notice(session, title="École Jules Ferry")
    notice(session, title="Gymnase")  # matches the firm's profile, nothing of the staff member's
    save_search(session, seed.staff77_id, "Écoles", "q=ecole")
    content = content_of(session, settings, seed.staff77_id)
    assert [(n.id, n.score) for n in content.notices] == [(school.id, None)]
    assert content.documents == [] and content.firm_id is None


# --------------------------------------------------------------------------- followed notices


def test_changes_of_what_the_firm_follows(session: Session, settings: Any, seed: Seed, firm: Firm) -> None:
    followed = notice(session, title="Piscine", created_at=NOW - dt.timedelta(days=30))
    other = notice(session, title="Stade", created_at=NOW - dt.timedelta(days=30))
    session.add(NoticeFollow(user_id=seed.member_id, notice_id=followed.id))  # a colleague follows it
    old, new = "2026-02-20T12:00:00+01:00", "2026-02-27T12:00:00+01:00"
    hours = dt.timedelta(hours=1)
    for notice_id, name, before, after, at in [
        (followed.id, "deadline_at", old, new, NOW - 2 * hours),
        (followed.id, "status", "open", "cancelled", NOW - hours),
        (followed.id, "title", "a", "b", NOW - 72 * hours),  # before the previous digest
        (other.id, "status", "open", "awarded", NOW - hours),  # not followed
    ]:
        session.add(NoticeChange(notice_id=notice_id, field=name, old_value=before, new_value=after, at=at))
    session.flush()
    content = content_of(session, settings, seed.owner_id)
    assert [(c.notice_id, c.lines) for c in content.changes] == [
        (followed.id, [
            "date limite reportée au 27/02/2026 à 12:00 (au lieu du 20/02/2026 à 12:00)",
            "avis annulé",
        ])
    ]  # fmt: skip
    assert content.triggered


def test_deadlines_of_followed_notices(session: Session, settings: Any, seed: Seed) -> None:
    tomorrow = NOW.astimezone(PARIS).replace(hour=12) + dt.timedelta(days=1)
    soon = notice(session, title="Demain", created_at=NOW - dt.timedelta(days=30), deadline_at=tomorrow)
    later = notice(session, title="Dans quatre jours", created_at=NOW - dt.timedelta(days=30),
                   deadline_at=tomorrow + dt.timedelta(days=3))  # fmt: skip
    notice(session, title="Dans dix jours", created_at=NOW - dt.timedelta(days=30),
           deadline_at=tomorrow + dt.timedelta(days=9))  # fmt: skip
    for n in (soon, later):
        session.add(NoticeFollow(user_id=seed.staff77_id, notice_id=n.id))
    session.flush()
    content = content_of(session, settings, seed.staff77_id)
    assert [(d.notice_id, d.is_soon) for d in content.deadlines] == [(soon.id, True), (later.id, False)]
    assert content.triggered
    # Seen in yesterday's digest already, "in four days" alone would not make one worth sending.
    only_later = notice_services.unfollow(session, seed.staff77_id, soon)
    assert only_later is None
    assert not content_of(session, settings, seed.staff77_id, since=NOW - dt.timedelta(hours=2)).triggered
    assert content_of(session, settings, seed.staff77_id, since=NOW - dt.timedelta(days=2)).triggered


def _document(session: Session, firm: Firm, expires_on: dt.date, kind: str = "urssaf") -> FirmDocument:
    document = FirmDocument(
        firm_id=firm.id, kind=kind, title="Attestation de vigilance URSSAF", original_name="urssaf.pdf",
        storage_key=secrets.token_hex(16), content_type="application/pdf", size=1000, sha256="0" * 64,
        issued_on=expires_on - dt.timedelta(days=180), expires_on=expires_on,
    )  # fmt: skip
    session.add(document)
    session.flush()
    return document


def test_expiring_documents(session: Session, settings: Any, seed: Seed, firm: Firm) -> None:
    today = NOW.astimezone(PARIS).date()
    document = _document(session, firm, today + dt.timedelta(days=7))
    content = content_of(session, settings, seed.owner_id)
    assert [(d.id, d.is_expired) for d in content.documents] == [(document.id, False)]
    assert content.triggered  # seven days left: one of the alert days
    document.expires_on = today + dt.timedelta(days=12)
    session.flush()
    quiet = content_of(session, settings, seed.owner_id)
    assert [d.id for d in quiet.documents] == [document.id] and not quiet.triggered
    # A renewed attestation replaces the expiring one.
    _document(session, firm, today + dt.timedelta(days=180))
    assert content_of(session, settings, seed.owner_id).documents == []


# --------------------------------------------------------------------------- schedule and settings


def _pref(frequency: str = "daily", hour: int = 7, weekday: int = 0) -> DigestPreference:
    return DigestPreference(frequency=frequency, hour=hour, weekday=weekday)


def test_scheduled_period() -> None:
    at = dt.datetime(2026, 11, 28, 7, 30, tzinfo=PARIS)  # a Saturday
    assert scheduled_period(_pref(), at, PARIS) == (
        "2026-11-28",
        dt.datetime(2026, 11, 28, 6, 0, tzinfo=dt.UTC),
    )
    assert scheduled_period(_pref(hour=9), at, PARIS) == (
        "2026-11-27",
        dt.datetime(2026, 11, 27, 8, 0, tzinfo=dt.UTC),
    )
    assert scheduled_period(_pref("weekly", 7, 5), at, PARIS)[0] == "2026-W48"  # type: ignore[index]
    assert scheduled_period(_pref("weekly", 8, 5), at, PARIS)[0] == "2026-W47"  # type: ignore[index]
    assert scheduled_period(_pref("weekly", 7, 0), at, PARIS)[0] == "2026-W48"  # type: ignore[index]
    assert scheduled_period(_pref("off"), at, PARIS) is None
    summer = dt.datetime(2026, 7, 1, 7, 0, tzinfo=PARIS)  # 07:00 in summer time is 05:00 UTC
    assert scheduled_period(_pref(), summer, PARIS) == (
        "2026-07-01",
        dt.datetime(2026, 7, 1, 5, 0, tzinfo=dt.UTC),
    )


def test_the_hour_chosen(
    app: Flask, database: Database, session: Session, seed: Seed, firm: Firm, outbox: Any
) -> None:
    services.set_preference(session, seed.owner_id, frequency="daily", hour=9, weekday=0, now=NOW)
    notice(session, title="École")
    # Yesterday's 09:00 digest was sent; today's is not due at 07:30.
    yesterday = (NOW - dt.timedelta(days=1)).astimezone(PARIS).date().isoformat()
    until = (NOW - dt.timedelta(hours=22)).isoformat()
    session.add(DigestRun(user_id=seed.owner_id, period=yesterday, status="sent", content={"until": until}))
    session.commit()
    assert run_job(app, database, only_email=SEED_EMAILS["owner"]).sent == 0
    assert run_job(app, database, now=NOW + dt.timedelta(hours=2), only_email=SEED_EMAILS["owner"]).sent == 1
    assert len(outbox()) == 1


def test_off_means_nothing(app: Flask, database: Database, session: Session, seed: Seed, firm: Firm) -> None:
    services.set_preference(session, seed.owner_id, frequency="off", hour=7, weekday=0, now=NOW)
    notice(session, title="École")
    session.commit()
    report = run_job(app, database, only_email=SEED_EMAILS["owner"])
    assert report.sent == report.empty == 0
    assert (
        session.scalar(select(func.count()).select_from(DigestRun).where(DigestRun.user_id == seed.owner_id))
        == 0
    )


def test_disabled(
    overrides: dict[str, Any], database: Database, session: Session, seed: Seed, firm: Firm
) -> None:
    from tenderpool.app import build_app

    app = build_app({**overrides, "digests": {"enabled": False}}, database=database)
    notice(session, title="École")
    session.commit()
    assert run_job(app, database).as_dict() == run_job(app, database).as_dict()
    assert session.scalar(select(func.count()).select_from(DigestRun)) == 0


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ({"max_notices": 0}, "digests.max_notices"),
        ({"max_notices": True}, "digests.max_notices"),
        ({"batch_size": "10"}, "digests.batch_size"),
        ({"retry_minutes": -1}, "digests.retry_minutes"),
        ({"enabled": "yes"}, "digests.enabled"),
        ({"unsubscribe_mailto": "not an address"}, "digests.unsubscribe_mailto"),
    ],
)
def test_settings_are_validated(table: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        digest_settings({"digests": table})


def test_settings_from_the_environment_and_at_start_up(overrides: dict[str, Any], database: Database) -> None:
    from tenderpool.app import build_app

    settings = load_settings(environ={"TENDERPOOL_DIGESTS_MAX_NOTICES": "5"})
    assert digest_settings(settings.raw).max_notices == 5
    with pytest.raises(ConfigError, match=r"digests\.retry_minutes"):
        build_app({**overrides, "digests": {"retry_minutes": 0}}, database=database)
