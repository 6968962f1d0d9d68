"""The personal ICS feed: content, stable UIDs across corrigenda, token regeneration, the account partial."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import pytest
from flask import Flask, render_template
from flask.testing import FlaskClient
from flask_login import login_user
from icalendar import Calendar
from sqlalchemy import select
from sqlalchemy.orm import Session

from tenderpool.accounts.models import AuditEvent, User
from tenderpool.notices.calendar import build_calendar, regenerate_ics_token
from tenderpool.notices.ingest import ingest_records
from tenderpool.notices.models import Notice, NoticeFollow
from tests.api.conftest import NOW, change_and_call
from tests.conftest import Seed, login_as, post_form, text_of

PARIS = ZoneInfo("Europe/Paris")


def _token_for(session: Session, user_id: int) -> str:
    user = session.get(User, user_id)
    assert user is not None
    token = regenerate_ics_token(session, user, now=NOW)
    session.commit()
    return token


def _follow(session: Session, user_id: int, *notices: Notice) -> None:
    for notice in notices:
        session.add(NoticeFollow(user_id=user_id, notice_id=notice.id, created_at=NOW))
    session.commit()


def _feed(client: FlaskClient, token: str) -> Calendar:
    response = client.get(f"/calendrier/{token}.ics")
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "text/calendar; charset=utf-8"
    return Calendar.from_ical(response.get_data())


def _events(calendar: Calendar) -> dict[str, object]:
    return {str(event["UID"]): event for event in calendar.walk("VEVENT")}


def _with_deadline(notices: list[Notice]) -> list[Notice]:
    return [n for n in notices if n.deadline_at is not None and n.status != "cancelled"]


def test_feed_has_one_event_per_followed_notice_with_a_deadline(
    client: FlaskClient, session: Session, seed: Seed, notices: list[Notice]
) -> None:
    with_deadline = _with_deadline(notices)
    lots = next(n for n in with_deadline if len(n.lots) >= 2)
    other = next(n for n in with_deadline if n is not lots)
    without = next(n for n in notices if n.deadline_at is None)
    rejected = next(n for n in with_deadline if n not in (lots, other))
    rejected.is_rejected = True
    _follow(session, seed.owner_id, lots, other, without, rejected)
    token = _token_for(session, seed.owner_id)

    calendar = _feed(client, token)
    assert str(calendar["VERSION"]) == "2.0" and "TenderPool" in str(calendar["PRODID"])
    (timezone,) = calendar.walk("VTIMEZONE")
    assert str(timezone["TZID"]) == "Europe/Paris"
    events = _events(calendar)
    assert set(events) == {f"notice-{lots.id}@tenderpool", f"notice-{other.id}@tenderpool"}

    event = events[f"notice-{lots.id}@tenderpool"]
    start = event["DTSTART"].dt  # type: ignore[attr-defined]
    assert start == lots.deadline_at and start.tzinfo.key == "Europe/Paris"
    assert str(event["SUMMARY"]) == f"Date limite : {lots.title}"
    description = str(event["DESCRIPTION"])
    page_url = f"http://tenderpool.test/avis/{lots.id}"
    assert lots.buyer_name and lots.buyer_name in description and page_url in description
    for lot in lots.lots:
        assert f"Lot {lot.number} : " in description
    assert str(event["URL"]) == page_url
    assert int(event["SEQUENCE"]) == 0 and str(event["STATUS"]) == "CONFIRMED"
    assert event["DTSTAMP"].dt == event["LAST-MODIFIED"].dt  # type: ignore[attr-defined]
    (alarm,) = event.walk("VALARM")  # type: ignore[attr-defined]
    assert alarm["TRIGGER"].dt == -dt.timedelta(days=2) and str(alarm["ACTION"]) == "DISPLAY"

    # The raw text names the zone on the start time (the subscriber sees Paris time).
    text = client.get(f"/calendrier/{token}.ics").get_data(as_text=True)
    assert "DTSTART;TZID=Europe/Paris:" in text and "BEGIN:VTIMEZONE" in text


def test_feed_of_a_user_who_follows_nothing_is_valid(
    client: FlaskClient, session: Session, seed: Seed
) -> None:
    calendar = _feed(client, _token_for(session, seed.member_id))
    assert calendar.walk("VEVENT") == [] and len(calendar.walk("VTIMEZONE")) == 1


def test_corrigendum_moving_the_deadline_updates_the_same_event(
    client: FlaskClient, session: Session, seed: Seed
) -> None:
    change, call = change_and_call()
    ingest_records(session, [call], now=NOW)
    notice = session.scalars(select(Notice).join(Notice.publications).where(
        Notice.publications.any(source_ref=call.source_ref))).one()  # fmt: skip
    _follow(session, seed.owner_id, notice)
    token = _token_for(session, seed.owner_id)
    uid = f"notice-{notice.id}@tenderpool"

    before = _events(_feed(client, token))[uid]
    assert before["DTSTART"].dt == dt.datetime(2019, 6, 24, 16, 0, tzinfo=PARIS)  # type: ignore[attr-defined]
    assert int(before["SEQUENCE"]) == 0  # type: ignore[index]

    ingest_records(session, [change], now=NOW + dt.timedelta(days=1))
    session.commit()
    after = _events(_feed(client, token))
    assert list(after) == [uid], "the same event, not a second one"
    assert after[uid]["DTSTART"].dt == dt.datetime(2020, 6, 12, 13, 0, tzinfo=PARIS)  # type: ignore[attr-defined]
    assert int(after[uid]["SEQUENCE"]) == 1  # type: ignore[index]
    assert after[uid]["LAST-MODIFIED"].dt > before["LAST-MODIFIED"].dt  # type: ignore[attr-defined]


def test_cancelled_notice_is_a_cancelled_event_without_reminder(
    client: FlaskClient, session: Session, seed: Seed, notices: list[Notice]
) -> None:
    notice = _with_deadline(notices)[0]
    notice.status = "cancelled"
    _follow(session, seed.owner_id, notice)
    event = _events(_feed(client, _token_for(session, seed.owner_id)))[f"notice-{notice.id}@tenderpool"]
    assert str(event["STATUS"]) == "CANCELLED"
    assert event.walk("VALARM") == []  # type: ignore[attr-defined]
    assert "Procédure annulée." in str(event["DESCRIPTION"])  # type: ignore[index]


def test_followed_notice_merged_into_another_shows_the_survivor(
    client: FlaskClient, session: Session, seed: Seed, notices: list[Notice]
) -> None:
    merged, survivor = _with_deadline(notices)[:2]
    merged.merged_into_id = survivor.id
    _follow(session, seed.owner_id, merged)
    events = _events(_feed(client, _token_for(session, seed.owner_id)))
    assert list(events) == [f"notice-{survivor.id}@tenderpool"]


def test_consortium_hook_adds_deadlines(
    session: Session, seed: Seed, notices: list[Notice], app: Flask
) -> None:
    user = session.get(User, seed.member_id)
    assert user is not None
    notice = _with_deadline(notices)[0]
    body = build_calendar(
        session, user, now=NOW, notice_url=lambda i: f"https://x.test/avis/{i}", extra_notice_ids={notice.id}
    )
    assert list(_events(Calendar.from_ical(body))) == [f"notice-{notice.id}@tenderpool"]


def test_feed_etag_and_304(client: FlaskClient, session: Session, seed: Seed, notices: list[Notice]) -> None:
    _follow(session, seed.owner_id, *_with_deadline(notices)[:3])
    url = f"/calendrier/{_token_for(session, seed.owner_id)}.ics"
    first = client.get(url)
    assert first.headers["Cache-Control"] == "private, max-age=300"
    assert client.get(url).get_data() == first.get_data(), "an unchanged feed is byte-for-byte stable"
    again = client.get(url, headers={"If-None-Match": first.headers["ETag"]})
    assert again.status_code == 304


@pytest.mark.parametrize("token", ["not-a-token", "x" * 200, "' OR 1=1 --"])
def test_unknown_token_is_404(client: FlaskClient, session: Session, seed: Seed, token: str) -> None:
    _token_for(session, seed.owner_id)
    assert client.get(f"/calendrier/{token}.ics").status_code == 404


def test_inactive_user_has_no_feed(client: FlaskClient, session: Session, seed: Seed) -> None:
    token = _token_for(session, seed.member_id)
    user = session.get(User, seed.member_id)
    assert user is not None
    user.is_active = False
    session.commit()
    assert client.get(f"/calendrier/{token}.ics").status_code == 404


def test_regenerate_creates_then_replaces_the_token(
    client: FlaskClient, session: Session, seed: Seed
) -> None:
    login_as(client, session, seed.owner_id)
    response = post_form(client, "/compte/calendrier/regenerer")
    assert response.status_code == 302 and response.headers["Location"].endswith("/compte")
    user = session.get(User, seed.owner_id)
    assert user is not None
    session.refresh(user)
    first = user.ics_token
    assert first and len(first) >= 40
    assert client.get(f"/calendrier/{first}.ics").status_code == 200
    assert "Votre lien de calendrier est créé" in text_of(client.get("/"))

    post_form(client, "/compte/calendrier/regenerer")
    assert "L'ancien ne fonctionne plus" in text_of(client.get("/"))
    session.refresh(user)
    second = user.ics_token
    assert second and second != first
    assert client.get(f"/calendrier/{first}.ics").status_code == 404, "the old address is revoked"
    assert client.get(f"/calendrier/{second}.ics").status_code == 200

    actions = session.scalars(
        select(AuditEvent.action).where(AuditEvent.actor_id == seed.owner_id, AuditEvent.action.like("ics_%"))
        .order_by(AuditEvent.id)
    ).all()  # fmt: skip
    assert actions == ["ics_token_created", "ics_token_regenerated"]
    assert not any(first in str(e.detail) + str(e.note) for e in session.scalars(select(AuditEvent)))


def test_regenerate_needs_a_login_and_a_csrf_token(client: FlaskClient, session: Session, seed: Seed) -> None:
    anonymous = post_form(client, "/compte/calendrier/regenerer")
    assert anonymous.status_code == 302 and "/connexion" in anonymous.headers["Location"]
    login_as(client, session, seed.owner_id)
    assert client.post("/compte/calendrier/regenerer").status_code == 400


def test_account_partial(app: Flask, session: Session, seed: Seed) -> None:
    user = session.get(User, seed.owner_id)
    assert user is not None
    with app.test_request_context("/compte"):
        login_user(user)
        empty = render_template("feeds/_account_calendar.html")
        assert "pas encore de lien de calendrier" in empty.replace("&#39;", "'")
        assert 'name="csrf_token"' in empty and 'action="/compte/calendrier/regenerer"' in empty
        token = regenerate_ics_token(session, user, now=NOW)
        page = render_template("feeds/_account_calendar.html")
    url = f"http://tenderpool.test/calendrier/{token}.ics"
    assert f'value="{url}"' in page and f'href="webcal://tenderpool.test/calendrier/{token}.ics"' in page
    assert '<label for="lien-calendrier">' in page and 'aria-describedby="lien-calendrier-aide"' in page
