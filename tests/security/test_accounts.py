"""Accounts, beyond tests/accounts: what an attacker holding a cookie, a link or a list of
addresses can do.

- session fixation: the session cookie and the CSRF token change at login, and a cookie planted
  before the login stays anonymous;
- logout everywhere: a password reset (not only a change) ends every other session, and a
  "se souvenir de moi" cookie dies with the password;
- reset links: expiry through the web pages, a newer link spends the older ones once used, a
  password change spends every outstanding link;
- enumeration: the login page and the throttling answer are the same, byte for byte once the
  CSRF token and the typed address are set aside, whether or not the address has an account.
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy.orm import Session

from tenderpool.accounts import services
from tenderpool.accounts.models import User
from tests.conftest import PASSWORD, SEED_EMAILS, Seed, body_text, post_form, text_of

NEW_PASSWORD = "nouveau-secret-42"
CSRF = re.compile(r'<meta name="csrf-token"[^>]*>|<input[^>]*name="csrf_token"[^>]*>')


def _login(client: FlaskClient, email: str, password: str = PASSWORD, **extra: Any) -> Any:
    return post_form(client, "/connexion", {"email": email, "password": password, **extra})


def _logged_in(client: FlaskClient) -> bool:
    return client.get("/compte").status_code == 200


def _csrf_of(client: FlaskClient) -> str:
    match = re.search(r'<meta name="csrf-token" content="([^"]+)"', client.get("/").get_data(as_text=True))
    assert match
    return match.group(1)


def _replay(app: Flask, cookie: str, name: str = "session") -> FlaskClient:
    """A new browser that only has the captured cookie."""
    other = app.test_client()
    other.set_cookie(name, cookie)
    return other


# --------------------------------------------------------------------------- session fixation


def test_session_cookie_and_csrf_token_change_at_login(app: Flask, client: FlaskClient) -> None:
    client.get("/connexion")
    planted = client.get_cookie("session")
    assert planted is not None
    token_before = _csrf_of(client)
    assert _login(client, SEED_EMAILS["owner"]).status_code == 302
    after = client.get_cookie("session")
    assert after is not None and after.value != planted.value
    assert _csrf_of(client) != token_before
    # The cookie the attacker planted (and kept a copy of) is still an anonymous one.
    assert not _logged_in(_replay(app, planted.value))
    assert _logged_in(_replay(app, after.value))


# --------------------------------------------------------------------------- logout everywhere


def _reset_link(client: FlaskClient, outbox: Any, email: str) -> str:
    seen = {m["Message-ID"] for m in outbox()}
    post_form(client, "/mot-de-passe/oublie", {"email": email})
    (message,) = [m for m in outbox() if m["To"] == email and m["Message-ID"] not in seen]
    match = re.search(r"http://tenderpool\.test(/mot-de-passe/reinitialiser/\S+)", body_text(message))
    assert match
    return match.group(1)


def test_password_reset_logs_out_every_session_and_remember_cookie(app: Flask, outbox: Any) -> None:
    laptop, phone, attacker = app.test_client(), app.test_client(), app.test_client()
    _login(laptop, SEED_EMAILS["staff77"])
    _login(phone, SEED_EMAILS["staff77"], remember="y")
    remember = phone.get_cookie("remember_token")
    assert remember is not None and _logged_in(laptop) and _logged_in(phone)
    stolen_session = laptop.get_cookie("session")
    assert stolen_session is not None

    path = _reset_link(attacker, outbox, SEED_EMAILS["staff77"])
    assert post_form(attacker, path, {"password": NEW_PASSWORD, "confirm": NEW_PASSWORD}).status_code == 302

    assert not _logged_in(laptop) and not _logged_in(phone)
    assert not _logged_in(_replay(app, stolen_session.value))
    assert not _logged_in(_replay(app, remember.value, "remember_token"))
    assert _login(app.test_client(), SEED_EMAILS["staff77"], NEW_PASSWORD).status_code == 302


def test_remember_cookie_dies_with_a_password_change(app: Flask) -> None:
    phone, laptop = app.test_client(), app.test_client()
    _login(phone, SEED_EMAILS["staff91"], remember="y")
    remember = phone.get_cookie("remember_token")
    assert remember is not None
    assert _logged_in(_replay(app, remember.value, "remember_token"))  # the cookie alone logs in
    _login(laptop, SEED_EMAILS["staff91"])
    post_form(
        laptop,
        "/compte/mot-de-passe",
        {"current_password": PASSWORD, "new_password": NEW_PASSWORD, "confirm": NEW_PASSWORD},
    )
    assert not _logged_in(_replay(app, remember.value, "remember_token"))
    assert _logged_in(laptop)


# --------------------------------------------------------------------------- reset links


def test_expired_link_is_refused_on_the_web_pages(
    client: FlaskClient, session: Session, seed: Seed, settings: Any
) -> None:
    issued = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=settings.security.reset_link_minutes + 1)
    token = services.request_password_reset(
        session, settings, email=SEED_EMAILS["owner"], ip="127.0.0.1", now=issued
    )
    session.commit()
    before = session.get_one(User, seed.owner_id).password_hash
    page = client.get(f"/mot-de-passe/reinitialiser/{token}")
    assert page.status_code == 400 and "Ce lien a expiré" in text_of(page)
    posted = post_form(
        client, f"/mot-de-passe/reinitialiser/{token}", {"password": NEW_PASSWORD, "confirm": NEW_PASSWORD}
    )
    assert posted.status_code == 400
    session.expire_all()
    assert session.get_one(User, seed.owner_id).password_hash == before


def test_using_the_newer_link_spends_the_older_one(client: FlaskClient, outbox: Any) -> None:
    older = _reset_link(client, outbox, SEED_EMAILS["member"])
    newer = _reset_link(client, outbox, SEED_EMAILS["member"])
    assert older != newer
    assert post_form(client, newer, {"password": NEW_PASSWORD, "confirm": NEW_PASSWORD}).status_code == 302
    reused = post_form(client, older, {"password": "encore-un-autre-7", "confirm": "encore-un-autre-7"})
    assert reused.status_code == 400 and "déjà été utilisé" in text_of(reused)
    assert _login(client.application.test_client(), SEED_EMAILS["member"], NEW_PASSWORD).status_code == 302


def test_a_password_change_spends_outstanding_reset_links(app: Flask, outbox: Any) -> None:
    """A link sitting in a mailbox that may be compromised must not outlive a password change."""
    browser = app.test_client()
    path = _reset_link(browser, outbox, SEED_EMAILS["owner"])
    _login(browser, SEED_EMAILS["owner"])
    changed = post_form(
        browser,
        "/compte/mot-de-passe",
        {"current_password": PASSWORD, "new_password": NEW_PASSWORD, "confirm": NEW_PASSWORD},
    )
    assert changed.status_code == 302
    attacker = app.test_client()
    page = attacker.get(path)
    assert page.status_code == 400 and "déjà été utilisé" in text_of(page)
    hijack = post_form(attacker, path, {"password": "pirate-2026-xyz", "confirm": "pirate-2026-xyz"})
    assert hijack.status_code == 400
    assert _login(app.test_client(), SEED_EMAILS["owner"], NEW_PASSWORD).status_code == 302


# --------------------------------------------------------------------------- enumeration


def _anonymised(response: Any, email: str) -> str:
    return CSRF.sub("", text_of(response)).replace(email, "EMAIL")


def test_login_page_is_the_same_for_known_and_unknown_addresses(app: Flask) -> None:
    known = _login(app.test_client(), SEED_EMAILS["owner"], "mauvais-mot-de-passe")
    unknown = _login(app.test_client(), "inconnu@example.com", "mauvais-mot-de-passe")
    assert known.status_code == unknown.status_code == 401
    assert _anonymised(known, SEED_EMAILS["owner"]) == _anonymised(unknown, "inconnu@example.com")


def test_throttling_does_not_tell_which_addresses_exist(app: Flask) -> None:
    limit = app.extensions["tenderpool.settings"].security.login_max_failures
    answers = {}
    for email, ip in ((SEED_EMAILS["owner"], "198.51.100.7"), ("inconnu@example.com", "198.51.100.8")):
        browser = app.test_client()
        browser.environ_base["REMOTE_ADDR"] = ip
        for _ in range(limit):
            assert _login(browser, email, "mauvais-mot-de-passe").status_code == 401
        throttled = _login(browser, email, PASSWORD)
        assert throttled.status_code == 429
        answers[email] = _anonymised(throttled, email)
        assert not _logged_in(browser)
    assert answers[SEED_EMAILS["owner"]] == answers["inconnu@example.com"]
    assert "Trop de tentatives de connexion" in answers["inconnu@example.com"]


def test_reset_request_answers_the_same_for_an_inactive_account(
    app: Flask, session: Session, seed: Seed, outbox: Any
) -> None:
    user = session.get_one(User, seed.staff91_id)
    user.is_active = False
    session.commit()
    pages = []
    for email in (SEED_EMAILS["staff91"], "inconnu@example.com", SEED_EMAILS["staff77"]):
        response = post_form(
            app.test_client(), "/mot-de-passe/oublie", {"email": email}, follow_redirects=True
        )
        assert response.status_code == 200
        pages.append(CSRF.sub("", text_of(response)))
    assert pages[0] == pages[1] == pages[2]
    assert [m["To"] for m in outbox()] == [SEED_EMAILS["staff77"]]
