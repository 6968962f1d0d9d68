"""Server-side sessions: a signed-in browser is a ``user_sessions`` row, and its cookies (the Flask
session and "se souvenir de moi") only work while that row exists.

- logout kills a captured copy of the session cookie and of the remember cookie, not only the
  browser's own;
- one browser's logout leaves the account's other sessions alone;
- a password change deletes every session of the account but the one that made it;
- a cookie without a session key (the format before server-side sessions), or with a key that
  was never issued, stays anonymous; a session older than its lifetime is refused and pruned.
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from tenderpool.accounts import services
from tenderpool.accounts.models import User, UserSession
from tests.conftest import PASSWORD, SEED_EMAILS, Seed, post_form

NEW_PASSWORD = "nouveau-secret-42"


def _login(client: FlaskClient, email: str, password: str = PASSWORD, **extra: Any) -> None:
    response = post_form(client, "/connexion", {"email": email, "password": password, **extra})
    assert response.status_code == 302


def _logged_in(client: FlaskClient) -> bool:
    """True when /compte opens; an anonymous browser gets the app's login redirect instead."""
    response = client.get("/compte")
    if response.status_code == 200:
        return True
    assert response.status_code == 302 and re.search(r"/connexion\?next=", response.headers["Location"])
    return False


def _replay(app: Flask, cookie: str, name: str = "session") -> FlaskClient:
    """A new browser that only has the captured cookie."""
    other = app.test_client()
    other.set_cookie(name, cookie)
    return other


def _cookie(client: FlaskClient, name: str = "session") -> str:
    cookie = client.get_cookie(name)
    assert cookie is not None
    return cookie.value


def _sessions_of(session: Session, user_id: int) -> int:
    return (
        session.scalar(select(func.count()).select_from(UserSession).where(UserSession.user_id == user_id))
        or 0
    )


def test_logout_kills_captured_session_and_remember_cookies(app: Flask, session: Session, seed: Seed) -> None:
    browser = app.test_client()
    _login(browser, SEED_EMAILS["staff77"], remember="y")
    stolen_session, stolen_remember = _cookie(browser), _cookie(browser, "remember_token")
    assert _logged_in(_replay(app, stolen_session))
    assert _logged_in(_replay(app, stolen_remember, "remember_token"))  # the cookie alone logs in
    assert _sessions_of(session, seed.staff77_id) == 1

    assert post_form(browser, "/deconnexion").status_code == 302

    assert not _logged_in(browser)
    assert not _logged_in(_replay(app, stolen_session))
    assert not _logged_in(_replay(app, stolen_remember, "remember_token"))
    assert _sessions_of(session, seed.staff77_id) == 0


def test_logout_leaves_the_other_sessions_alone(app: Flask, session: Session, seed: Seed) -> None:
    laptop, phone = app.test_client(), app.test_client()
    _login(laptop, SEED_EMAILS["owner"])
    _login(phone, SEED_EMAILS["owner"], remember="y")
    laptop_cookie = _cookie(laptop)
    phone_remember = _cookie(phone, "remember_token")
    assert _sessions_of(session, seed.owner_id) == 2

    post_form(laptop, "/deconnexion")

    assert not _logged_in(_replay(app, laptop_cookie))
    assert _logged_in(phone)
    assert _logged_in(_replay(app, phone_remember, "remember_token"))
    assert _sessions_of(session, seed.owner_id) == 1


def test_password_change_kills_every_other_session(app: Flask, session: Session, seed: Seed) -> None:
    laptop, phone, tablet = app.test_client(), app.test_client(), app.test_client()
    _login(laptop, SEED_EMAILS["member"])
    _login(phone, SEED_EMAILS["member"])
    _login(tablet, SEED_EMAILS["member"], remember="y")
    before_change = _cookie(laptop)
    phone_cookie, tablet_remember = _cookie(phone), _cookie(tablet, "remember_token")
    assert _sessions_of(session, seed.member_id) == 3

    changed = post_form(
        laptop,
        "/compte/mot-de-passe",
        {"current_password": PASSWORD, "new_password": NEW_PASSWORD, "confirm": NEW_PASSWORD},
    )
    assert changed.status_code == 302

    assert _logged_in(laptop)  # the browser that changed it gets a new session
    assert _cookie(laptop) != before_change
    assert not _logged_in(_replay(app, before_change))
    assert not _logged_in(phone) and not _logged_in(_replay(app, phone_cookie))
    assert not _logged_in(_replay(app, tablet_remember, "remember_token"))
    assert _sessions_of(session, seed.member_id) == 1


def test_cookie_without_a_live_session_key_stays_anonymous(app: Flask, session: Session, seed: Seed) -> None:
    settings = app.extensions["tenderpool.settings"]  # not the fixture: its app context would span requests
    user = session.get_one(User, seed.admin_id)
    # The format before server-side sessions, and a well-formed key that was never issued.
    for forged in (f"{user.id}:{user.auth_version}", f"{user.id}:{user.auth_version}:not-a-key"):
        browser = app.test_client()
        with browser.session_transaction() as sess:
            sess["_user_id"] = forged
            sess["_fresh"] = True
        assert not _logged_in(browser)

    # A session as old as its lifetime is refused, and the retention job deletes it (only it).
    now = dt.datetime.now(dt.UTC)
    lifetime = services.session_lifetime(settings.security)
    old_key = services.start_session(
        session, user, user_agent=None, now=now - lifetime - dt.timedelta(minutes=1)
    )
    old_id = user.get_id()
    services.start_session(session, user, user_agent="pytest", now=now)
    young_id = user.get_id()
    for user_id, expected in ((old_id, False), (young_id, True)):
        browser = app.test_client()
        with browser.session_transaction() as sess:
            sess["_user_id"] = user_id
            sess["_fresh"] = True
        assert _logged_in(browser) is expected
    assert old_key in old_id
    assert services.prune_sessions(session, settings, now=now) == 1
    assert _sessions_of(session, seed.admin_id) == 1
