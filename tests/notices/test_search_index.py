"""The facets of the full-text index (tenderpool.notices.search), on both engines: what they hold,
that the triggers keep them current whoever changes a notice, that a search by the index finds
exactly what the filters say (at the edges of a deadline window, of a value range, of "open"),
PostgreSQL's search by windows of notices, and the migration that adds them to existing notices."""

from __future__ import annotations

import datetime as dt
import random
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import delete, text, update
from sqlalchemy.orm import Session

from tenderpool import migrate
from tenderpool.notices import search as search_module
from tenderpool.notices.models import Notice, NoticeCpv, NoticeDepartment
from tenderpool.notices.search import (
    SearchQuery,
    rebuild_search_index,
    search_notices,
)
from tests import factories
from tests.conftest import TempDatabase

NOW = dt.datetime(2026, 2, 1, 9, 0, tzinfo=dt.UTC)


def facets_of(session: Session, notice_id: int) -> set[str]:
    """The facet tokens the index holds for a notice (without PostgreSQL's leading "#")."""
    if session.get_bind().dialect.name == "sqlite":
        value = session.scalar(text("SELECT facets FROM notice_fts WHERE rowid = :id"), {"id": notice_id})
        return set((value or "").replace(",", " ").split())
    lexemes = session.scalar(
        text("SELECT tsvector_to_array(tsv) FROM notice_search WHERE notice_id = :id"), {"id": notice_id}
    )
    return {lexeme[1:] for lexeme in lexemes or [] if lexeme.startswith("#")}


def ids(session: Session, **args: Any) -> set[int]:
    page = search_notices(session, SearchQuery.from_args(args), now=NOW, per_page=500)
    assert page.total == len(page.items)
    return {n.id for n in page.items}


@pytest.fixture
def alone(session: Session) -> None:
    """Only the notices a test makes are searchable (the others are rejected, in the test's transaction)."""
    session.execute(update(Notice).values(is_rejected=True))


def notice(session: Session, **changes: Any) -> Notice:
    changes.setdefault("created_at", NOW - dt.timedelta(days=1))
    return factories.make_plain_notice(session, **changes)


# --------------------------------------------------------------------------- the tokens


def test_facets_of_a_notice(session: Session, alone: None) -> None:
    made = notice(
        session, title="Entretien des espaces verts", cpv=["77310000", "45112710"], departments=["77", "2A"],
        deadline_at=dt.datetime(2026, 3, 4, 23, 30, tzinfo=dt.UTC), estimated_value="120000.50",
        contract_type="services",
    )  # fmt: skip
    assert facets_of(session, made.id) == {
        "dep77", "dep2A",
        "cpv77", "cpv773", "cpv7731", "cpv77310", "cpv773100", "cpv7731000", "cpv77310000",
        "cpv45", "cpv451", "cpv4511", "cpv45112", "cpv451127", "cpv4511271", "cpv45112710",
        "stopen", "dl20260304", "valg120000", "typeservices",
    }  # fmt: skip
    undated = notice(session, deadline_at=None, cpv=[], departments=[], contract_type=None)
    assert facets_of(session, undated.id) == {"stopen", "dlnone"}


def test_triggers_keep_the_facets_current(session: Session, alone: None) -> None:
    made = notice(session, title="Nettoyage des vitres", cpv=["90911200"], departments=["91"])
    made.status = "awarded"
    made.deadline_at = None
    made.estimated_value = Decimal("5")
    made.is_featured = True
    made.contract_type = "works"
    session.flush()
    assert {"stawarded", "dlnone", "valb5", "featured", "typeworks"} <= facets_of(session, made.id)
    assert "stopen" not in facets_of(session, made.id)
    # The départements and CPV codes, written in their own tables (as the ingestion and the staff
    # edits do), whether through the ORM or by hand.
    session.add(NoticeDepartment(notice_id=made.id, department="77"))
    session.flush()
    session.execute(delete(NoticeCpv).where(NoticeCpv.notice_id == made.id))
    session.execute(
        text("INSERT INTO notice_cpv (notice_id, cpv, position) VALUES (:id, '45000000', 0)"), {"id": made.id}
    )
    session.execute(
        delete(NoticeDepartment).where(
            NoticeDepartment.notice_id == made.id, NoticeDepartment.department == "91"
        )
    )
    facets = facets_of(session, made.id)
    assert {"dep77", "cpv45", "cpv450"} <= facets and not {"dep91", "cpv90", "cpv909"} & facets
    # And the searches by the index see it at once, with words and without.
    assert made.id in ids(session, q="vitres", dep="77", status="awarded")
    assert made.id in ids(session, cpv="45000000", dep="77", featured="1")
    assert made.id not in ids(session, q="vitres", dep="91")
    # The text can change without losing the facets, and a rebuild keeps them too.
    made.title = "Nettoyage des fenêtres"
    session.flush()
    search_module.refresh_search_index(session, [made.id])
    assert made.id in ids(session, q="fenêtres", dep="77", type="works")
    rebuild_search_index(session)
    assert made.id in ids(session, q="fenêtres", dep="77", type="works")
    assert {"dep77", "cpv45", "stawarded", "typeworks"} <= facets_of(session, made.id)


def test_rejected_and_merged_notices_are_left_out_by_the_index(session: Session, alone: None) -> None:
    kept, rejected, merged = (notice(session, title=f"Plomberie {n}", departments=["77"]) for n in "abc")
    rejected.is_rejected = True
    merged.merged_into_id = kept.id
    session.flush()
    assert "rejected" in facets_of(session, rejected.id) and "merged" in facets_of(session, merged.id)
    for args in (
        {"q": "plomberie"},
        {"q": "plomberie", "dep": "77", "sort": "deadline"},
        {"dep": "77", "type": "works"},
    ):
        assert ids(session, **args) == {kept.id}, args
        staff = SearchQuery.from_args(args).with_(include_rejected=True)
        assert {n.id for n in search_notices(session, staff, now=NOW).items} == {kept.id, rejected.id}
    rejected.is_rejected = False
    session.flush()
    assert "rejected" not in facets_of(session, rejected.id)
    assert ids(session, q="plomberie") == {kept.id, rejected.id}


def test_a_deleted_notice_leaves_nothing_in_the_index(session: Session, alone: None) -> None:
    made = notice(session, title="Désamiantage du collège", departments=["77"])
    session.delete(made)
    session.flush()
    assert facets_of(session, made.id) == set()
    assert ids(session, q="désamiantage", dep="77") == set()


# --------------------------------------------------------------------------- exact at the edges


def test_deadline_windows_are_exact_to_the_hour(session: Session, alone: None) -> None:
    # Paris is UTC+1 in February: 1 March 00:00 Paris is 28 February 23:00 UTC, the same UTC day
    # as a deadline at 28 February 22:00 UTC (still in February in Paris).
    before = notice(session, title="Voirie A", deadline_at=dt.datetime(2026, 2, 28, 22, 0, tzinfo=dt.UTC))
    after = notice(session, title="Voirie B", deadline_at=dt.datetime(2026, 2, 28, 23, 30, tzinfo=dt.UTC))
    later = notice(session, title="Voirie C", deadline_at=dt.datetime(2026, 3, 31, 21, 59, tzinfo=dt.UTC))
    words: dict[str, str]
    for words in ({}, {"q": "voirie"}):
        assert ids(session, deadline_from="2026-03-01", **words) == {after.id, later.id}
        assert ids(session, deadline_to="2026-02-28", **words) == {before.id}
        assert ids(session, deadline_from="2026-03-01", deadline_to="2026-03-31", dep="77", **words) == set()
    soon = NOW + dt.timedelta(hours=2)  # today, later on
    gone = NOW - dt.timedelta(hours=2)  # today, earlier
    a, b = (
        notice(session, title="Élagage A", deadline_at=soon),
        notice(session, title="Élagage B", deadline_at=gone),
    )
    c = notice(session, title="Élagage C", deadline_at=None)
    assert ids(session, q="élagage", status="open") == {a.id, c.id}
    assert ids(session, q="élagage", status="closed") == {b.id}
    assert ids(session, q="élagage", closing="1") == {a.id}
    assert ids(session, q="élagage", status="open,awarded", type="works") == {a.id, c.id}


def test_value_ranges_are_exact_to_the_cent(session: Session, alone: None) -> None:
    made = {
        v: notice(session, title=f"Mobilier {v}", estimated_value=v)
        for v in ("74999.99", "75000", "75000.50", "1000000", "99", "0.5")
    }
    none = notice(session, title="Mobilier sans montant", estimated_value=None)

    def found(**args: Any) -> set[str]:
        return {v for v, n in made.items() if n.id in ids(session, q="mobilier", **args)} | (
            {"none"} if none.id in ids(session, q="mobilier", **args) else set()
        )

    assert found(max="75000") == {"74999.99", "75000", "99", "0.5"}
    assert found(min="75000") == {"75000", "75000.50", "1000000"}
    assert found(min="75000.25", max="999999.99") == {"75000.50"}
    assert found(min="0", max="0.5") == {"0.5"}
    assert found(min="1 000 000") == {"1000000"}


def test_token_ranges_cover_exactly_the_range() -> None:
    def matches(terms: list[Any], token: str) -> bool:
        return any(token.startswith(t.token) if t.prefix else token == t.token for t in terms)

    rng = random.Random(7)
    for _ in range(200):
        first = dt.date(2024, 1, 1) + dt.timedelta(days=rng.randrange(1500))
        last = first + dt.timedelta(days=rng.randrange(800))
        terms = search_module._deadline_terms(
            dt.datetime.combine(first, dt.time(5), tzinfo=dt.UTC),
            dt.datetime.combine(last, dt.time(5), tzinfo=dt.UTC),
        )
        for k in range(-35, (last - first).days + 35):
            day = first + dt.timedelta(days=k)
            assert matches(terms, f"dl{day:%Y%m%d}") == (first <= day <= last), (first, last, day)
        assert not matches(terms, "dlnone")
    for _ in range(500):
        low = Decimal(rng.randrange(10 ** rng.randrange(1, 10))) + rng.choice([Decimal(0), Decimal("0.5")])
        high = low + rng.randrange(10 ** rng.randrange(1, 10))
        value_min, value_max = rng.choice([low, None]), rng.choice([high, None])
        terms = search_module._value_terms(value_min, value_max)
        for euros in (int(low) - 1, int(low), int(low) + 1, int(high) - 1, int(high), int(high) + 1, 10**14):
            if euros >= 0:
                inside = (value_min is None or euros >= int(value_min)) and (
                    value_max is None or euros <= int(value_max)
                )
                assert matches(terms, search_module._value_token(Decimal(euros))) == inside
        assert matches(terms, "negvalue") == (value_min is None)


# --------------------------------------------------------------------------- the plans


def test_every_plan_gives_the_same_results(
    session: Session, alone: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With the facets in the index or not, by windows of any size on PostgreSQL: the same pages."""
    rng = random.Random(3)
    for i in range(40):
        deadline = NOW + dt.timedelta(days=rng.randrange(-20, 40), hours=rng.randrange(24))
        notice(
            session,
            title=f"Nettoyage {'des vitres ' * (i % 2)}n°{i}",
            departments=[rng.choice(["77", "91", "75"])],
            cpv=[rng.choice(["90911200", "45000000", "77310000"])],
            estimated_value=rng.choice([None, 30000, 150000]),
            deadline_at=rng.choice([None, deadline]),
            published_at=dt.date(2026, 1, 1) + dt.timedelta(days=rng.randrange(30)),
            status=rng.choice(["open", "open", "awarded"]),
        )
    queries = [
        {"q": "nettoyage", "dep": "77,91", "status": "open"},
        {"q": "vitres", "cpv": "90000000", "sort": "deadline"},
        {"q": "nettoyage", "min": "100000", "closing": "30", "sort": "published"},
        {"dep": "91", "status": "open", "sort": "deadline"},
        {"cpv": "45000000", "dep": "77,75", "closing": "30"},
        {"q": "nettoyage -vitres", "dep": "75"},
    ]
    expected = {}
    for args in queries:
        query = SearchQuery.from_args(args)
        expected[str(args)] = [n.id for n in search_notices(session, query, now=NOW, per_page=100).items]
    assert all(expected.values())

    # Without facets: the filters alone, on the notices.
    monkeypatch.setattr(search_module, "_facets", lambda query, **kwargs: [])
    for args in queries:
        got = search_notices(session, SearchQuery.from_args(args), now=NOW, per_page=100)
        assert [n.id for n in got.items] == expected[str(args)], args
    monkeypatch.undo()

    # PostgreSQL: windows of a few notices, each sized from the matches seen so far.
    monkeypatch.setattr(search_module, "COUNT_LIMIT", 7)
    monkeypatch.setattr(search_module, "RANK_LIMIT", 7)
    monkeypatch.setattr(search_module, "_pg_stats", lambda session: search_module._PgStats({}))
    for args in queries:
        got = search_notices(session, SearchQuery.from_args(args), now=NOW, per_page=100)
        assert got.total == min(len(expected[str(args)]), 7), args
        if "q" not in args or args.get("sort"):  # beyond the count, the walk gives the same pages
            assert [n.id for n in got.items] == expected[str(args)], args
        else:  # relevance ranks the 7 newest only
            assert {n.id for n in got.items} == set(sorted(expected[str(args)])[-7:]), args


def test_search_leaves_the_transaction_as_it_found_it(
    session: Session, alone: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """PostgreSQL's look-ups of the index turn the index scans off for a while (SET LOCAL): every
    way out of the service turns them back on."""
    for i in range(12):
        notice(session, title=f"Chauffage n°{i}", departments=["77"])
    monkeypatch.setattr(search_module, "COUNT_LIMIT", 5)  # a walk after the count
    for args in (
        {"q": "chauffage", "dep": "77", "status": "open"},
        {"q": "chauffage", "dep": "77", "sort": "deadline"},
        {"q": "chauffage", "dep": "91", "sort": "deadline"},  # nothing found
        {"dep": "77", "closing": "60", "sort": "published"},
    ):
        search_notices(session, SearchQuery.from_args(args), now=NOW)
        if session.get_bind().dialect.name == "postgresql":
            assert session.scalar(text("SHOW enable_indexscan")) == "on", args


# --------------------------------------------------------------------------- the migration


def test_migration_gives_the_existing_notices_their_facets(temp_db_factory: Any) -> None:
    db: TempDatabase = temp_db_factory("facets")
    migrate.upgrade(db.engine, "c0a5e7b1d203")
    sqlite = db.engine.dialect.name == "sqlite"
    with db.engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO notices (id, title, status, deadline_at, nuts, field_dates, is_demo, "
                "created_at, updated_at, is_manual, is_featured, is_rejected, locked_fields, conflicts, "
                "contract_type) VALUES (1, 'Réfection de la toiture', 'open', :deadline, '[]', '{}', :f, "
                ":now, :now, :f, :f, :f, '{}', '{}', 'works')"
            ),
            {
                "deadline": "2026-03-04 10:00:00" if sqlite else dt.datetime(2026, 3, 4, 10, tzinfo=dt.UTC),
                "now": "2026-02-01 00:00:00" if sqlite else NOW,
                "f": False,
            },
        )
        conn.execute(text("INSERT INTO notice_departments (notice_id, department) VALUES (1, '91')"))
        conn.execute(
            text("INSERT INTO notice_search (notice_id, document) VALUES (1, 'Réfection de la toiture')")
        )
        if sqlite:
            conn.execute(text("INSERT INTO notice_fts (rowid, content) VALUES (1, 'refect de la toitur')"))
    migrate.upgrade(db.engine)
    with db.engine.connect() as conn, Session(bind=conn) as session:
        assert facets_of(session, 1) == {"dep91", "stopen", "dl20260304", "typeworks"}
        query = SearchQuery.from_args({"q": "toitures", "dep": "91", "status": "open", "type": "works"})
        assert [n.id for n in search_notices(session, query, now=NOW).items] == [1]
    migrate.downgrade(db.engine, "c0a5e7b1d203")
    with db.engine.connect() as conn:
        if sqlite:
            assert (
                conn.scalar(text("SELECT content FROM notice_fts WHERE rowid = 1")) == "refect de la toitur"
            )
        else:
            lexemes = conn.scalar(
                text("SELECT tsvector_to_array(tsv) FROM notice_search WHERE notice_id = 1")
            )
            assert lexemes and not [lexeme for lexeme in lexemes if lexeme.startswith("#")]


def test_postgresql_statistics_size_the_first_look_up(
    session: Session, alone: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    if session.get_bind().dialect.name != "postgresql":
        pytest.skip("pg_stats is PostgreSQL's")
    for i in range(30):
        deadline = NOW + dt.timedelta(days=i)
        notice(session, title=f"Toiture n°{i}", departments=["77" if i % 3 else "91"], deadline_at=deadline)
    session.execute(text("ANALYZE notice_search"))
    session.execute(text("ANALYZE notices"))
    monkeypatch.setattr(search_module, "_stats", {})
    stats = search_module._pg_stats(session)
    assert stats.lexemes["#stopen"] > 0.5 and "#dep77" in stats.lexemes and stats.deadlines
    groups = search_module._facets(SearchQuery.from_args({"dep": "91"}), now=NOW, span=None) or []
    assert 0 < search_module._share(groups[0].facet, stats) < 1
    # The words of a search come together: a bound, the share of the rarest, excluded words aside.
    assert search_module._text_share("'toitur' & !( 'a' <-> 'b' )", stats) == stats.lexemes["toitur"]
    assert search_module._text_share("'toitur' | 'voir'", stats) == 1.0
    # One estimate sizes the first window closely; several, taken as independent, with more room.
    text_only = SearchQuery.from_args({"q": "toiture"})
    words = search_module._text_match(session, text_only.text, sqlite=False)
    alone_ = search_module._index_query(words, [], sqlite=False, stats=stats)
    both = search_module._index_query(words, groups, sqlite=False, stats=stats)
    facets = search_module._facets(SearchQuery.from_args({"dep": "91", "status": "open"}), now=NOW, span=None)
    assert alone_ is not None and both is not None and facets
    two_groups = search_module._index_query(None, facets, sqlite=False, stats=stats)
    assert two_groups is not None
    assert (alone_.margin, both.margin, two_groups.margin) == (1.25, 2.0, 2.0)
    assert both.share < alone_.share
