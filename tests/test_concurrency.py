"""Twenty people at once, on a real committed database (threads need committed data, so not the
savepoint-wrapped session of the other tests): each thread has its own test client, hence its
own request, session and connection, against one app with a pool big enough for all of them.

- 20 invited firms accept the same groupement at the same instant: all become members, the
  groupement keeps exactly one mandataire and moves to « en constitution » once.
- 20 members save the répartition of the same lot: from the same loaded version only one save
  wins and the 19 others get the 409 conflict; then, reloading and retrying, the saves go
  through one after the other. No lost update: every successful save started from a different
  version, the final version counts them, and the saved répartition is exactly the last one's
  (shares of the lot total 100 %).

On SQLite writers queue on the database lock (BEGIN IMMEDIATE); on PostgreSQL they really race.
"""

from __future__ import annotations

import datetime as dt
import re
import secrets
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from tenderpool import migrate
from tenderpool.accounts.models import User
from tenderpool.accounts.services import start_session
from tenderpool.consortia.models import (
    Consortium,
    ConsortiumEvent,
    ConsortiumLot,
    ConsortiumMember,
    MemberState,
    WorkShare,
)
from tenderpool.db import Database, make_engine
from tests.conftest import TempDatabase
from tests.consortia_helpers import consortium_of, join, partner, two_lot_notice

THREADS = 20
TIMEOUT = 120.0
CSRF = re.compile(r'<meta name="csrf-token" content="([^"]+)"')


@dataclass
class World:
    app: Flask
    db: Database
    invite_consortium: int
    invited_users: list[int]  # one owner per invited firm
    share_consortium: int
    share_firms: list[int]  # the 3 active members of the second groupement
    share_users: list[int]  # 20 users, members of those firms


@pytest.fixture(scope="module")
def world(temp_db_factory: Any, base_overrides: dict[str, Any], tmp_path_factory: Any) -> Iterator[World]:
    from tenderpool.app import build_app
    from tests import factories

    temp: TempDatabase = temp_db_factory(f"concurrency_{secrets.token_hex(3)}")
    migrate.upgrade(temp.engine)
    engine = make_engine(temp.url, pool_size=THREADS + 5, max_overflow=5, pool_timeout=60)
    db = Database(temp.url, engine=engine)
    instance = tmp_path_factory.mktemp("concurrency_instance")
    app = build_app(
        {**base_overrides, "app": {**base_overrides["app"], "instance_path": str(instance)}}, database=db
    )
    settings = app.extensions["tenderpool.settings"]
    with app.app_context(), Session(engine, expire_on_commit=False) as session:
        _mandataire_firm, mandataire = factories.make_firm(
            session, settings, postcode="77100", name="Mandataire 77"
        )
        notice = two_lot_notice(session)
        first = consortium_of(session, mandataire, notice, lots=["1"], visibility="invitation")
        invited = []
        for i in range(THREADS):
            firm, owner = partner(session, settings, name=f"Invitée {i:02d}", cpv=["45330000"])
            from tenderpool.consortia import services

            services.invite_firm(session, first, firm=firm, by=mandataire, now=_now())
            invited.append(owner.id)
        # The second groupement: three active members, twenty users among them.
        other_notice = two_lot_notice(session, title="Construction d'un gymnase")
        lead_firm, lead = factories.make_firm(session, settings, postcode="77000", name="Pilote 77")
        second = consortium_of(session, lead, other_notice, lots=["1"], visibility="invitation")
        b, owner_b = partner(session, settings, name="Béton 91", cpv=["45210000"])
        c, owner_c = partner(session, settings, name="Charpente 91", cpv=["45260000"])
        join(session, second, b, owner_b, lead)
        join(session, second, c, owner_c, lead)
        users = [lead.id, owner_b.id, owner_c.id]
        for i in range(THREADS - 3):
            firm = (lead_firm, b, c)[i % 3]
            users.append(factories.add_member(session, settings, firm).id)
        session.commit()
        made = World(app, db, first.id, invited, second.id, [lead_firm.id, b.id, c.id], users)
    # Outside the app context: each request must get (and close) its own.
    yield made
    engine.dispose()


def _now() -> Any:
    from tests.consortia_helpers import NOW

    return NOW


def _client(world: World, user_id: int) -> tuple[FlaskClient, str]:
    """A logged-in browser and its CSRF token, ready before the race starts."""
    client = world.app.test_client()
    with Session(world.db.engine) as session:
        user = session.get_one(User, user_id)
        start_session(session, user, user_agent=None, now=dt.datetime.now(dt.UTC))
        session.commit()
        with client.session_transaction() as sess:
            sess["_user_id"] = user.get_id()
            sess["_fresh"] = True
    match = CSRF.search(client.get("/").get_data(as_text=True))
    assert match
    return client, match.group(1)


def _race(count: int, work: Callable[[int, threading.Barrier], Any]) -> list[Any]:
    """Run ``work(i, barrier)`` in ``count`` threads; the barrier releases them together."""
    barrier = threading.Barrier(count)
    results: list[Any] = [None] * count
    errors: list[BaseException] = []

    def run(i: int) -> None:
        try:
            results[i] = work(i, barrier)
        except BaseException as exc:
            errors.append(exc)
            barrier.abort()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(TIMEOUT)
    assert not any(t.is_alive() for t in threads), "a thread is stuck"
    assert not errors, errors
    return results


def test_twenty_invitations_accepted_at_once(world: World) -> None:
    clients = [_client(world, user_id) for user_id in world.invited_users]
    cid = world.invite_consortium

    def accept(i: int, barrier: threading.Barrier) -> int:
        client, token = clients[i]
        barrier.wait(TIMEOUT)
        response = client.post(
            f"/groupements/{cid}/reponse", data={"csrf_token": token, "decision": "accept"}
        )
        return response.status_code

    statuses = _race(THREADS, accept)
    assert statuses == [302] * THREADS, statuses  # a 500 would be an unhandled race
    with Session(world.db.engine) as session:
        members = session.scalars(select(ConsortiumMember).where(ConsortiumMember.consortium_id == cid)).all()
        assert sorted(m.state for m in members) == [MemberState.ACTIVE.value] * (THREADS + 1)
        assert [m.role for m in members].count("mandataire") == 1
        consortium = session.get_one(Consortium, cid)
        assert consortium.status == "assembling"
        events = session.scalars(select(ConsortiumEvent).where(ConsortiumEvent.consortium_id == cid)).all()
        assert sum(e.kind == "accepted" for e in events) == THREADS
        # forming → assembling is one transition, journaled once, not once per acceptance.
        assert sum(e.kind == "status" for e in events) == 1, [e.text for e in events if e.kind == "status"]


def _payload(i: int, firms: list[int]) -> dict[int, tuple[Decimal, Decimal]]:
    """Thread i's répartition of a 100 000 € lot: shares total 100 %, each its own."""
    first = Decimal(5 + i)  # 5 … 44: each save is told apart by it
    second = Decimal(20 + (i * 7) % 30)
    shares = [first, second, Decimal(100) - first - second]
    return {firm: (share, share * 1000) for firm, share in zip(firms, shares, strict=True)}


def _form(
    world: World, token: str, version: int, payload: dict[int, tuple[Decimal, Decimal]]
) -> dict[str, str]:
    form = {"csrf_token": token, "lot": "1", "version": str(version), "offer_amount": "100000"}
    for firm, (share, amount) in payload.items():
        form[f"share_{firm}"] = str(share)
        form[f"amount_{firm}"] = str(amount)
        form[f"tasks_{firm}"] = f"Prestations de {firm}"
    return form


def _lot_version(world: World) -> int:
    with Session(world.db.engine) as session:
        return session.get_one(ConsortiumLot, (world.share_consortium, "1")).version


def _saved(world: World) -> dict[int, tuple[Decimal, Decimal]]:
    with Session(world.db.engine) as session:
        shares = session.scalars(
            select(WorkShare).where(
                WorkShare.consortium_id == world.share_consortium, WorkShare.lot_number == "1"
            )
        ).all()
        return {s.firm_id: (Decimal(s.share), Decimal(s.amount)) for s in shares if s.share is not None}


def test_twenty_repartition_saves_on_one_lot(world: World) -> None:
    clients = [_client(world, user_id) for user_id in world.share_users]
    url = f"/groupements/{world.share_consortium}/repartition"
    start = _lot_version(world)

    # Round 1: everyone loaded the same version; exactly one save may win.
    def same_version(i: int, barrier: threading.Barrier) -> int:
        client, token = clients[i]
        form = _form(world, token, start, _payload(i, world.share_firms))
        barrier.wait(TIMEOUT)
        return client.post(url, data=form).status_code

    statuses = _race(THREADS, same_version)
    assert sorted(statuses) == [302] + [409] * (THREADS - 1), statuses
    winner = statuses.index(302)
    assert _saved(world) == _payload(winner, world.share_firms)
    assert _lot_version(world) == start + 1

    # Round 2: each reloads and retries until its save goes through, all at the same time.
    def reload_and_retry(i: int, barrier: threading.Barrier) -> list[tuple[int, int]]:
        client, token = clients[i]
        barrier.wait(TIMEOUT)
        attempts = []
        for _ in range(4 * THREADS):
            loaded = _lot_version(world)
            status = client.post(
                url, data=_form(world, token, loaded, _payload(THREADS + i, world.share_firms))
            ).status_code
            attempts.append((loaded, status))
            if status != 409:
                break
        return attempts

    results = _race(THREADS, reload_and_retry)
    unexpected = [a for attempts in results for a in attempts if a[1] not in (302, 409)]
    assert not unexpected, unexpected
    won = sorted(
        (loaded, i) for i, attempts in enumerate(results) for loaded, status in attempts if status == 302
    )
    assert len(won) == THREADS, "every member's save eventually went through"
    loaded_versions = [loaded for loaded, _ in won]
    assert len(set(loaded_versions)) == len(loaded_versions), (
        "two saves won from the same version: lost update"
    )
    final_version = _lot_version(world)
    assert final_version == start + 1 + THREADS
    last = won[-1][1]
    saved = _saved(world)
    assert saved == _payload(THREADS + last, world.share_firms), "the final state is the last successful save"
    assert sum(share for share, _ in saved.values()) == Decimal(100)
    with Session(world.db.engine) as session:
        roles = session.scalars(
            select(ConsortiumMember.role).where(ConsortiumMember.consortium_id == world.share_consortium)
        ).all()
        assert roles.count("mandataire") == 1
        assert (
            session.scalar(
                select(func.count())
                .select_from(WorkShare)
                .where(WorkShare.consortium_id == world.share_consortium)
            )
            == 3
        )
