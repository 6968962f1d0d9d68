"""Shared fixtures: one migrated database per test session, rolled back after each test.

The backend is chosen by ``TENDERPOOL_TEST_DB``: ``sqlite`` (default) or
``postgres``. PostgreSQL tests create a throwaway database on
``TENDERPOOL_TEST_POSTGRES_URL`` (default: postgres@127.0.0.1:5432) and drop it
at the end; if the server cannot be reached the run fails, it never skips.
"""

from __future__ import annotations

import email
import email.policy
import os
import re
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import Connection, Engine, create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

from tenderpool import migrate
from tenderpool.db import Database, make_engine

BACKEND = os.environ.get("TENDERPOOL_TEST_DB", "sqlite")
PG_ADMIN_URL = os.environ.get(
    "TENDERPOOL_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)
PASSWORD = "motdepasse-2026"


def pytest_report_header(config: pytest.Config) -> str:
    return f"tenderpool test database: {BACKEND}"


@dataclass
class TempDatabase:
    url: str
    engine: Engine


def create_temp_database(tmp_dir: Path, name: str) -> TempDatabase:
    """A new empty database of the selected backend."""
    if BACKEND == "sqlite":
        url = f"sqlite:///{tmp_dir / (name + '.db')}"
        return TempDatabase(url, make_engine(url))
    if BACKEND != "postgres":
        raise RuntimeError(f"TENDERPOOL_TEST_DB must be sqlite or postgres, not {BACKEND!r}")
    dbname = f"tenderpool_test_{name}_{os.getpid()}_{secrets.token_hex(3)}"
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{dbname}"'))
    admin.dispose()
    url = make_url(PG_ADMIN_URL).set(database=dbname).render_as_string(hide_password=False)
    return TempDatabase(url, make_engine(url))


def drop_temp_database(db: TempDatabase) -> None:
    db.engine.dispose()
    if BACKEND != "postgres":
        return
    dbname = make_url(db.url).database
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{dbname}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture(scope="session")
def temp_db_factory(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    created: list[TempDatabase] = []
    tmp_dir = tmp_path_factory.mktemp("databases")

    def factory(name: str) -> TempDatabase:
        db = create_temp_database(tmp_dir, name)
        created.append(db)
        return db

    yield factory
    for db in created:
        drop_temp_database(db)


@pytest.fixture(scope="session")
def test_db(temp_db_factory: Any) -> TempDatabase:
    """The session's database, migrated with the real migrations."""
    db: TempDatabase = temp_db_factory("main")
    migrate.upgrade(db.engine)
    return db


@pytest.fixture(scope="session")
def base_overrides(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    instance = tmp_path_factory.mktemp("instance")
    return {
        "env": "test",
        "secret_key": "test-secret-key",
        "app": {"instance_path": str(instance), "base_url": "http://tenderpool.test"},
        "mail": {"host": ""},
    }


@dataclass
class Seed:
    admin_id: int
    staff77_id: int
    staff91_id: int
    owner_id: int  # owner of an approved firm of 77
    member_id: int  # non-owner member of the same firm
    pending_id: int  # owner of a pending firm of 91
    firm_id: int
    pending_firm_id: int


SEED_EMAILS = {
    "admin": "admin@example.com",
    "staff77": "staff77@example.com",
    "staff91": "staff91@example.com",
    "owner": "owner@example.com",
    "member": "member@example.com",
    "pending": "pending@example.com",
}


@pytest.fixture(scope="session")
def seed(test_db: TempDatabase, base_overrides: dict[str, Any]) -> Seed:
    """Users and firms committed once for the whole session (tests roll back on top of them)."""
    from tenderpool.config import load_settings
    from tests import factories

    settings = load_settings(environ={}, overrides=base_overrides)
    with Session(test_db.engine) as session:
        admin = factories.make_user(session, settings, email=SEED_EMAILS["admin"], role="admin")
        staff77 = factories.make_user(
            session, settings, email=SEED_EMAILS["staff77"], role="staff", chamber_slug="cci77"
        )
        staff91 = factories.make_user(
            session, settings, email=SEED_EMAILS["staff91"], role="staff", chamber_slug="cci91"
        )
        firm, owner = factories.make_firm(
            session, settings, owner_email=SEED_EMAILS["owner"], postcode="77100"
        )
        member = factories.add_member(session, settings, firm, email=SEED_EMAILS["member"])
        pending_firm, pending = factories.make_firm(
            session, settings, owner_email=SEED_EMAILS["pending"], postcode="91000", status="pending"
        )
        session.commit()
        return Seed(
            admin.id,
            staff77.id,
            staff91.id,
            owner.id,
            member.id,
            pending.id,
            firm.id,
            pending_firm.id,
        )


@pytest.fixture
def connection(test_db: TempDatabase, seed: Seed) -> Iterator[Connection]:
    """A connection in a transaction that is rolled back after the test."""
    conn = test_db.engine.connect()
    outer = conn.begin()
    yield conn
    outer.rollback()
    conn.close()


@pytest.fixture
def database(test_db: TempDatabase, connection: Connection) -> Database:
    """A Database whose sessions live inside the test's transaction (their commits are savepoints)."""
    db = Database(test_db.url, engine=test_db.engine)
    db.session_factory = sessionmaker(
        bind=connection, join_transaction_mode="create_savepoint", expire_on_commit=False
    )
    return db


@pytest.fixture
def session(database: Database) -> Iterator[Session]:
    s = database.session()
    yield s
    s.close()


@dataclass
class SeedNotice:
    notice_id: int  # a real BOAMP notice (26-7113, départements incl. 77) with one publication
    publication_id: int


@pytest.fixture
def seed_notice(session: Session) -> SeedNotice:
    """One real notice, created inside the test's transaction."""
    from tests import factories

    notice, publication = factories.make_notice(session)
    session.commit()
    return SeedNotice(notice.id, publication.id)


@pytest.fixture
def overrides(base_overrides: dict[str, Any], tmp_path: Path) -> dict[str, Any]:
    data = {**base_overrides, "app": {**base_overrides["app"], "instance_path": str(tmp_path / "instance")}}
    return data


@pytest.fixture
def app(overrides: dict[str, Any], database: Database) -> Flask:
    from tenderpool.app import build_app

    return build_app(overrides, database=database)


@pytest.fixture
def settings(app: Flask) -> Iterator[Any]:
    """The app's settings, inside an app context (services render emails with the app's templates)."""
    with app.app_context():
        yield app.extensions["tenderpool.settings"]


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


_CSRF_RE = re.compile(r'<meta name="csrf-token" content="([^"]+)"')


def csrf_token(client: FlaskClient) -> str:
    """The CSRF token of the client's session, read from a page as a browser would."""
    response = client.get("/")
    match = _CSRF_RE.search(response.get_data(as_text=True))
    assert match, "no csrf meta tag on the home page"
    return match.group(1)


def post_form(client: FlaskClient, url: str, data: dict[str, Any] | None = None, **kwargs: Any) -> Any:
    """POST a form with a valid CSRF token, like a browser submitting the page's form."""
    payload = {"csrf_token": csrf_token(client), **(data or {})}
    return client.post(url, data=payload, **kwargs)


def login_as(client: FlaskClient, session: Session, user_id: int) -> None:
    """Log a test client in without going through the password form (fast)."""
    import datetime as dt

    from tenderpool.accounts.models import User
    from tenderpool.accounts.services import start_session

    user = session.get(User, user_id)
    assert user is not None
    start_session(session, user, user_agent=None, now=dt.datetime.now(dt.UTC))  # the server-side record
    with client.session_transaction() as sess:
        sess["_user_id"] = user.get_id()
        sess["_fresh"] = True


@pytest.fixture
def outbox(overrides: dict[str, Any]) -> Any:
    """Messages written to the file outbox during the test, parsed."""
    folder = Path(overrides["app"]["instance_path"]) / "outbox"

    def read() -> list[email.message.EmailMessage]:
        if not folder.exists():
            return []
        return [
            email.message_from_bytes(p.read_bytes(), policy=email.policy.default)  # type: ignore[misc]
            for p in sorted(folder.glob("*.eml"))
        ]

    return read


def body_text(message: Any) -> str:
    part = message.get_body(preferencelist=("plain",))
    return str(part.get_content()) if part is not None else ""


def text_of(response: Any) -> str:
    """A response's HTML with entities decoded, to look for French messages (l'apostrophe is &#39;)."""
    import html

    return html.unescape(response.get_data(as_text=True))


@dataclass
class SeedConsortium:
    """A groupement of the seed firm (77, mandataire) on a two-lot notice, invitation only."""

    consortium_id: int
    consortium_notice_id: int
    section_id: int
    item_id: int
    invited_member_id: int  # a firm of 91, invited, not answered
    version_id: int  # a shared document's first version
    outsider_id: int  # owner of an approved firm of 77 outside the groupement
    outsider_firm_id: int


@pytest.fixture
def seed_consortium(app: Flask, session: Session, seed: Seed) -> SeedConsortium:
    from tenderpool.accounts.models import User
    from tenderpool.consortia import services, workspace
    from tenderpool.web import storage
    from tests import factories
    from tests.consortia_helpers import NOW, consortium_of, partner, two_lot_notice

    settings = app.extensions["tenderpool.settings"]
    with app.app_context():
        notice = two_lot_notice(session)
        owner = session.get_one(User, seed.owner_id)
        consortium = consortium_of(session, owner, notice, visibility="invitation")
        invited, _ = partner(session, settings, name="Invitée 91", cpv=["45330000"])
        member = services.invite_firm(session, consortium, firm=invited, by=owner, now=NOW)
        outsider, outsider_owner = partner(session, settings, name="Hors groupement 77", postcode="77000")
        version = workspace.upload_shared_document(
            session,
            storage(),
            consortium,
            title="Planning",
            document_id=None,
            filename="planning.pdf",
            data=factories.pdf_bytes(),
            max_bytes=5 * 1024 * 1024,
            by=owner,
            now=NOW,
        )
        session.commit()
        return SeedConsortium(
            consortium.id,
            notice.id,
            consortium.sections[0].id,
            consortium.checklist[0].id,
            member.id,
            version.id,
            outsider_owner.id,
            outsider.id,
        )
