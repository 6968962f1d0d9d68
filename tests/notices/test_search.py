"""The search service on both engines (TENDERPOOL_TEST_DB=sqlite|postgres), on notices ingested from
the real BOAMP samples whose titles are changed to make the cases: stemming, accents, phrases,
every filter, the three sorts, page and cursor pagination, hostile input, index maintenance."""

from __future__ import annotations

import base64
import copy
import datetime as dt
import json
import os
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from sqlalchemy import delete, func, select, text, update
from sqlalchemy.orm import Session

from scrapers.base import RawRecord
from tenderpool.cli import main
from tenderpool.notices import search as search_module
from tenderpool.notices.ingest import ingest_records
from tenderpool.notices.models import Notice, NoticeSearch, Publication
from tenderpool.notices.search import (
    QueryParamError,
    SearchPage,
    SearchQuery,
    fts_content,
    fts_match_expression,
    parse_text,
    rebuild_search_index,
    refresh_search_index,
    search_document,
    search_notices,
    stem_tokens,
    websearch_texts,
)
from tests.conftest import TempDatabase
from tests.notices.conftest import FIXTURES, boamp_raw, boamp_records, fixture_records

NOW = dt.datetime(2026, 2, 1, 9, 0, tzinfo=dt.UTC)
# The five real BOAMP records, by what the tests rely on:
#   0 26-7298 works, dep 59, CPV 45432111 + 44111400, deadline 2026-02-16
#   1 26-7308 services, deps 14 27 50 61 76, CPV 55520000, 75 000 €, deadline 2026-02-27
#   2 26-7319 works, deps 69 74, CPV 45454100 45410000 45421000, deadline 2026-02-11
#   3 26-7109 services, dep 92, CPV 79200000, deadline 2026-03-06
#   4 26-7113 works, deps …77, CPV 45443000…, deadline 2026-02-20 (its description says "réhabilitation")
TEMPLATES = boamp_records()

# name -> (template, title)
CORPUS = {
    "rehab_plural": (4, "Réhabilitations des vestiaires du gymnase Colette"),
    "rehab_upper": (0, "REHABILITATION DE LA MAIRIE ANNEXE"),
    "cleaning": (1, "Nettoyage des vitres de l'hôtel de ville"),
    "cleanings": (3, "Nettoyages des locaux administratifs"),
    "green_phrase": (2, "Entretien des espaces verts communaux"),
    "green_words": (1, "Verts pâturages et espaces de jeux pour enfants"),
    "furniture": (3, "Fourniture de mobilier scolaire"),
}


def record(template: int, ref: str, title: str, replace: dict[str, str] | None = None) -> RawRecord:
    """A real BOAMP record under another idweb and title (and with ``replace`` done in its data)."""
    data = copy.deepcopy(TEMPLATES[template])
    data.update(idweb=ref, id=ref.replace("-", "_"), objet=title)
    for old, new in (replace or {}).items():
        assert old in data["donnees"], old
        data["donnees"] = data["donnees"].replace(old, new)
    return boamp_raw(data)


def notice_id(session: Session, ref: str) -> int:
    found = session.scalar(select(Publication.notice_id).where(Publication.source_ref == ref))
    assert found is not None, ref
    return found


@pytest.fixture
def alone(session: Session) -> None:
    """Notices already in the database (another fixture's seed) are rejected, in the test's
    transaction only, so that searches see just the notices the test makes."""
    session.execute(update(Notice).values(is_rejected=True))


@pytest.fixture
def corpus(session: Session, alone: None) -> dict[str, int]:
    """The crafted notices, ingested through the real ingester; name -> notice id."""
    records = [record(template, f"26-9{i:04d}", title) for i, (template, title) in enumerate(CORPUS.values())]
    stats = ingest_records(session, records, now=NOW)
    assert stats.created == len(CORPUS), stats
    return {name: notice_id(session, f"26-9{i:04d}") for i, name in enumerate(CORPUS)}


def search(session: Session, *, per_page: int = 50, now: dt.datetime = NOW, **args: Any) -> SearchPage:
    return search_notices(session, SearchQuery.from_args(args), now=now, per_page=per_page)


def ids(page: SearchPage) -> list[int]:
    return [n.id for n in page.items]


def found(session: Session, **args: Any) -> set[int]:
    page = search(session, per_page=500, **args)
    assert page.total == len(page.items)
    return set(ids(page))


# --------------------------------------------------------------------------- text


def test_text_is_folded_and_stemmed_like_postgresql() -> None:
    assert stem_tokens("Réhabilitations des ÉCOLES") == ["rehabilit", "de", "ecol"]
    assert stem_tokens("REHABILITATION") == stem_tokens("réhabilitation") == stem_tokens("rehabilitations")
    assert stem_tokens("nettoyages") == stem_tokens("Nettoyage")
    assert stem_tokens("maîtrise d'œuvre") == ["maitris", "d", "oeuvr"]
    assert fts_content("Espaces verts, voirie") == "espac vert voir"


def test_document_is_plain_text_with_lot_titles() -> None:
    html = "<p>L&#x27;entretien<br>des <strong>esp</strong>aces</p><ul><li>a</li><li>b</li></ul>"
    doc = search_document("Titre", "Acheteur", html, ["Lot un", None, "Lot deux"])
    assert doc == "Titre\nAcheteur\nL'entretien des espaces a b\nLot un\nLot deux"
    assert search_document("a\x00b", None, None, []) == "a b"


def test_query_syntax_is_websearch_and_always_escaped() -> None:
    parsed = parse_text('Nettoyage "espaces  verts" or voirie -vitres')
    assert [[p.stems for p in group] for group in parsed.groups] == [
        [("nettoyag",)],
        [("espac", "vert"), ("voir",)],
    ]
    assert [p.stems for p in parsed.excluded] == [("vitr",)]
    assert fts_match_expression(parsed) == ('("nettoyag") AND ("espac vert" OR "voir")', '"vitr"')
    assert websearch_texts(parsed) == ['"Nettoyage" -"vitres"', '"espaces verts" or "voirie"']
    # FTS5 operators and SQL are only words inside quotes, or nothing.
    assert fts_match_expression(parse_text("NEAR(a b) * ^x")) == (
        '("near") AND ("a") AND ("b") AND ("x")',
        None,
    )
    assert fts_match_expression(parse_text("' OR 1=1 --")) == ('("1 1")', None)
    assert fts_match_expression(parse_text('" - ( ) *')) == (None, None)
    # Runs of "-" or parentheses never nest: one exclusion at most per phrase.
    assert websearch_texts(parse_text("-(-(-(a --b")) == ['"a" -"b"']
    # "or" at either end is a word, as in PostgreSQL.
    assert [[p.stems for p in g] for g in parse_text("or nettoyage or").groups] == [
        [("or",)],
        [("nettoyag",)],
        [("or",)],
    ]


def test_accents_case_and_stemming_both_ways(session: Session, corpus: dict[str, int]) -> None:
    rehab = {corpus["rehab_plural"], corpus["rehab_upper"]}
    for q in ("réhabilitation", "réhabilitations", "REHABILITATION", "rehabilitations", "Réhabilitation"):
        assert rehab <= found(session, q=q), q
        assert corpus["furniture"] not in found(session, q=q)
    cleaning = {corpus["cleaning"], corpus["cleanings"]}
    for q in ("nettoyage", "nettoyages", "NETTOYAGE", "Nettoyâges"):
        assert found(session, q=q) == cleaning, q


def test_page_summaries_are_the_notices_collections(session: Session, corpus: dict[str, int]) -> None:
    """A list row shows departments, sources and lots from the page's summaries, read with the
    notices: they must say what the collections say."""
    cleaning = corpus["cleaning"]
    for source, ref in (("ted", "123456-2026"), ("boamp", "26-99999")):  # a second BOAMP one: once
        session.add(Publication(
            source=source, source_ref=ref, notice_id=cleaning, state="linked", payload=b"",
            payload_sha256="0" * 64, content_type="application/json", fetched_at=NOW,
        ))  # fmt: skip
    manual = session.get(Notice, corpus["furniture"])
    assert manual is not None
    for publication in manual.publications:  # as a notice staff typed in: no publication
        publication.notice_id = None
    session.flush()
    session.expire_all()
    page = search(session)
    assert {n.id for n in page.items} == set(corpus.values())
    for notice in page.items:
        summary = page.summaries[notice.id]
        assert summary.departments == notice.departments
        assert summary.sources == sorted({p.source for p in notice.publications})
        assert summary.lots == len(notice.lots)
    assert page.summaries[cleaning].sources == ["boamp", "ted"]
    assert page.summaries[corpus["furniture"]].sources == []
    assert page.summaries[corpus["cleaning"]].departments == ["14", "27", "50", "61", "76"]
    assert any(summary.lots for summary in page.summaries.values())


def test_phrase_matches_only_the_words_in_order(session: Session, corpus: dict[str, int]) -> None:
    both = {corpus["green_phrase"], corpus["green_words"]}
    assert found(session, q="espaces verts") == both
    assert found(session, q="verts espaces") == both
    assert found(session, q='"espaces verts"') == {corpus["green_phrase"]}
    assert found(session, q='"espace vert"') == {corpus["green_phrase"]}  # stemmed inside phrases too
    assert found(session, q='"verts espaces"') == set()
    assert found(session, q='"espaces verts') == {corpus["green_phrase"]}  # unclosed quote: up to the end
    assert found(session, q='entretien "espaces verts" communaux') == {corpus["green_phrase"]}


def test_or_and_exclusion(session: Session, corpus: dict[str, int]) -> None:
    assert found(session, q="nettoyage or mobilier") == {
        corpus["cleaning"], corpus["cleanings"], corpus["furniture"]
    }  # fmt: skip
    # "or" binds tighter than the implicit "and", on both engines.
    assert found(session, q="nettoyage vitres or mobilier") == {corpus["cleaning"]}
    assert found(session, q="vitres or mobilier nettoyage") == {corpus["cleaning"]}
    assert found(session, q="nettoyage -vitres") == {corpus["cleanings"]}
    assert found(session, q="-vitres -nettoyage -espaces -réhabilitation") == {corpus["furniture"]}
    assert found(session, q='espaces -"espaces verts"') == {corpus["green_words"]}


def test_buyer_description_and_lot_titles_are_searched(session: Session, corpus: dict[str, int]) -> None:
    assert corpus["cleaning"] in found(session, q="urssaf")  # buyer
    assert corpus["cleaning"] in found(session, q="plateaux-repas")  # description
    assert corpus["green_words"] in found(session, q="Valframbert")  # a lot title
    assert found(session, q="strong") == set()  # no HTML tag is indexed


HOSTILE = [
    '"', "'", "*", "-", "--", "(", ")", "()", "NEAR", "NEAR(a b)", "NEAR(nettoyage vitres, 2)", "' OR 1=1 --",
    '"; DROP TABLE notices; --', "nettoyage\"", '"nettoyage', '""', '"" ""', "AND", "OR", "NOT", "AND OR NOT",
    "nettoyage AND", "^nettoyage", "content:nettoyage", "{content}: x", "a:*", "!", "&", "|", "<->", ":*",
    "\\", "%", "_", "%_%", "é*", "*nettoyage*", "nettoyage*", "\x00", "a\x00b", "\ud800", "🙂 nettoyage",
    "-nettoyage", '-"espaces verts"', "nettoyage -", "- - -", "+nettoyage", "@@", "'; SELECT 1; --",
    "x" * 300, "é" * 300, "a " * 150, '"' * 300, "-" * 300, "-(" * 150, '-"' * 150, "!" * 300, "- a" * 100,
    "a or " * 60, "ǅ ß ﬁ Σ 𝔘",
]  # fmt: skip


@pytest.mark.parametrize("sort", ["relevance", "deadline", "published"])
def test_hostile_text_never_raises(session: Session, corpus: dict[str, int], sort: str) -> None:
    for q in HOSTILE:
        page = search(session, q=q, sort=sort, per_page=5)
        assert page.total >= len(page.items), q
    # SQL in the query is only words: it never matches everything.
    assert search(session, q="' OR 1=1 --").total == 0
    assert search(session, q='" OR ""="').total == 0
    # The transaction is still usable (a failed statement would have aborted it on PostgreSQL).
    assert found(session, q="nettoyage") == {corpus["cleaning"], corpus["cleanings"]}


def test_query_that_keeps_no_word_finds_nothing(session: Session, corpus: dict[str, int]) -> None:
    for q in ("*", '"', "- ( )"):
        assert search(session, q=q).total == 0


# --------------------------------------------------------------------------- filters


def test_cpv_filter_is_hierarchical(session: Session, corpus: dict[str, int]) -> None:
    works = {corpus["rehab_plural"], corpus["rehab_upper"], corpus["green_phrase"]}
    assert found(session, cpv="45000000") == works
    assert found(session, cpv="45400000") == works  # 45432111, 45454100, 45443000 are all in 454
    assert found(session, cpv="45430000-0") == {corpus["rehab_upper"]}  # 45432111, check digit accepted
    assert found(session, cpv="45432111") == {corpus["rehab_upper"]}
    assert found(session, cpv="45210000") == set()
    assert found(session, cpv=["55000000", "79000000"]) == {
        corpus["cleaning"], corpus["green_words"], corpus["cleanings"], corpus["furniture"]
    }  # fmt: skip


def test_department_filter(session: Session, corpus: dict[str, int]) -> None:
    assert found(session, dep="77") == {corpus["rehab_plural"]}
    assert found(session, dep="77,92") == {corpus["rehab_plural"], corpus["cleanings"], corpus["furniture"]}
    assert found(session, dep="91") == set()


def test_deadline_window_and_status(session: Session, corpus: dict[str, int]) -> None:
    # Deadlines (Paris): green_phrase 11 Feb, rehab_upper 16 Feb, rehab_plural 20 Feb, the 76 ones 27 Feb,
    # the 92 ones 6 March.
    assert found(session, deadline_from="2026-02-11", deadline_to="2026-02-16") == {
        corpus["green_phrase"], corpus["rehab_upper"]
    }  # fmt: skip
    assert found(session, deadline_from="2026-03-06") == {corpus["cleanings"], corpus["furniture"]}
    assert found(session, closing="12") == {corpus["green_phrase"]}  # before 13 Feb 09:00 UTC
    later = NOW + dt.timedelta(days=22)  # 23 Feb: three deadlines have passed
    closed = {corpus["green_phrase"], corpus["rehab_upper"], corpus["rehab_plural"]}
    assert found(session, status="closed", now=later) == closed
    assert found(session, status="open", now=later) == set(corpus.values()) - closed
    notice = session.get(Notice, corpus["furniture"])
    assert notice is not None
    notice.status = "awarded"
    session.flush()
    assert found(session, status="awarded") == {corpus["furniture"]}
    assert corpus["furniture"] not in found(session, status="open,closed")


def test_value_featured_source_and_type(session: Session, corpus: dict[str, int]) -> None:
    values = {"rehab_plural": "250000", "rehab_upper": "1200000.50", "cleanings": "40000"}
    for name, value in values.items():
        notice = session.get(Notice, corpus[name])
        assert notice is not None
        notice.estimated_value = Decimal(value)
    featured = session.get(Notice, corpus["green_words"])
    assert featured is not None
    featured.is_featured = True
    session.flush()
    # The two notices of template 1 carry its 75 000 €.
    assert found(session, min="70000", max="300000") == {
        corpus["rehab_plural"], corpus["cleaning"], corpus["green_words"]
    }  # fmt: skip
    assert found(session, min="1 000 000") == {corpus["rehab_upper"]}
    assert found(session, max="40 000") == {corpus["cleanings"]}
    assert found(session, featured="1") == {corpus["green_words"]}
    assert found(session, type="services") == {
        corpus["cleaning"], corpus["cleanings"], corpus["green_words"], corpus["furniture"]
    }  # fmt: skip

    (eforms,) = fixture_records("eforms/ted-published_2024-OJS017-00047522.xml")
    ingest_records(session, [eforms], now=NOW)
    other = notice_id(session, eforms.source_ref)
    assert found(session, source="eforms") == {other}
    assert found(session, source="boamp") == set(corpus.values())
    assert found(session, source="boamp,eforms") == {*corpus.values(), other}


def test_text_and_filters_combine(session: Session, corpus: dict[str, int]) -> None:
    assert found(session, q="réhabilitation", dep="77") == {corpus["rehab_plural"]}
    assert found(session, q="réhabilitation", cpv="45430000") == {corpus["rehab_upper"]}
    assert found(session, q="nettoyage", type="services", deadline_to="2026-02-28") == {corpus["cleaning"]}
    assert found(session, q="nettoyage", dep="92", status="open") == {corpus["cleanings"]}
    assert found(session, q="nettoyage", dep="77") == set()


def test_rejected_and_merged_notices_are_hidden(session: Session, corpus: dict[str, int]) -> None:
    rejected = session.get(Notice, corpus["cleaning"])
    merged = session.get(Notice, corpus["cleanings"])
    assert rejected is not None and merged is not None
    rejected.is_rejected = True
    merged.merged_into_id = corpus["furniture"]
    session.flush()
    assert found(session, q="nettoyage") == set()
    staff = SearchQuery.from_args({"q": "nettoyage"}).with_(include_rejected=True)
    assert corpus["cleaning"] in ids(search_notices(session, staff, now=NOW))
    assert corpus["cleanings"] not in ids(search_notices(session, staff, now=NOW))


# --------------------------------------------------------------------------- sorting


def test_relevance_sort_ranks_better_matches_first(session: Session, corpus: dict[str, int]) -> None:
    page = search(session, q="nettoyage or vitres")
    assert ids(page)[0] == corpus["cleaning"]  # the only one with both words
    assert set(ids(page)) == {corpus["cleaning"], corpus["cleanings"]}
    assert SearchQuery.from_args({"q": "x"}).effective_sort == "relevance"


def test_deadline_and_published_sorts(session: Session, corpus: dict[str, int], plan: str) -> None:
    undated = session.get(Notice, corpus["furniture"])
    older = session.get(Notice, corpus["green_words"])
    assert undated is not None and older is not None
    undated.deadline_at = None
    undated.published_at = None
    older.published_at = dt.date(2025, 12, 1)
    session.flush()
    by_deadline = search(session, sort="deadline").items
    assert by_deadline[-1].id == corpus["furniture"]  # no deadline: last
    keys = [(n.deadline_at, n.id) for n in by_deadline[:-1]]
    assert keys == sorted(keys)
    by_published = ids(search(session))  # the default without text
    assert by_published[-2:] == [corpus["green_words"], corpus["furniture"]]  # older, then undated
    same_day = sorted(set(corpus.values()) - {corpus["green_words"], corpus["furniture"]}, reverse=True)
    assert by_published[:-2] == same_day  # one publication day: ties by id, newest first


# --------------------------------------------------------------------------- pagination


@pytest.fixture(params=["few", "many", "cut"])
def plan(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Run the test on every path of the service: up to _FEW results the matching ids are listed
    then sorted; above, the sort column's index is walked. Test data is small: "many" lowers the
    threshold instead. On PostgreSQL a walk with words checks its first _WALK notices one by one,
    then ("cut": after 3 notices) hands the whole walk to the planner."""
    if request.param in ("many", "cut"):
        monkeypatch.setattr(search_module, "_FEW", -1)
    if request.param == "cut":
        monkeypatch.setattr(search_module, "_WALK", 3)
    return str(request.param)


@pytest.fixture
def many(session: Session, alone: None) -> list[int]:
    """25 notices that match "nettoyage", with many ties on every sort key, a few without deadline
    nor publication date, two rejected: the ids of the 23 that may be shown."""
    records = [
        record(i % 5, f"26-8{i:04d}", f"Nettoyage {'des vitres ' * (i % 3)}du bâtiment n°{i}")
        for i in range(25)
    ]
    ingest_records(session, records, now=NOW)
    notices = [session.get(Notice, notice_id(session, f"26-8{i:04d}")) for i in range(25)]
    for i, notice in enumerate(notices):
        assert notice is not None
        if i % 4 == 0:
            notice.deadline_at, notice.published_at = None, None
        if i in (3, 10):
            notice.is_rejected = True
    session.flush()
    return [n.id for i, n in enumerate(notices) if n is not None and i not in (3, 10)]


@pytest.mark.parametrize("sort", ["relevance", "deadline", "published"])
def test_pages_and_cursors_cover_every_result_once(
    session: Session, many: list[int], sort: str, plan: str
) -> None:
    query = SearchQuery.from_args({"q": "nettoyage", "sort": sort})
    whole = ids(search_notices(session, query, now=NOW, per_page=100))
    assert sorted(whole) == sorted(many)

    by_page: list[int] = []
    for page in range(1, 5):
        got = search_notices(session, query, now=NOW, page=page, per_page=6)
        assert got.total == 23 and got.pages == 4
        by_page += ids(got)
    assert by_page == whole

    by_cursor: list[int] = []
    cursor = None
    for _ in range(10):
        got = search_notices(session, query, now=NOW, per_page=7, cursor=cursor)
        assert got.total == 23
        by_cursor += ids(got)
        cursor = got.next_cursor
        if cursor is None:
            break
        assert cursor.replace("-", "").replace("_", "").isalnum()  # URL-safe as it is
    assert by_cursor == whole

    if sort != "relevance":
        # Undated notices come last, newest first for "published", in id order for "deadline".
        notices = search_notices(session, query, now=NOW, per_page=100).items
        key = (lambda n: n.deadline_at) if sort == "deadline" else (lambda n: n.published_at)
        undated = [n.id for n in notices if key(n) is None]
        assert (
            len(undated) == 7 and ids(search_notices(session, query, now=NOW, per_page=100))[-7:] == undated
        )
        assert undated == sorted(undated, reverse=sort == "published")


@pytest.mark.parametrize("sort", ["relevance", "deadline", "published"])
def test_hidden_notices_are_out_of_counts_and_pages(
    session: Session, many: list[int], sort: str, plan: str
) -> None:
    for args in ({"q": "nettoyage"}, {}, {"dep": "59,76,69,74,92,77"}, {"cpv": "45000000"}, {"q": "vitres"}):
        query = SearchQuery.from_args({**args, "sort": sort})
        every = search_notices(session, query, now=NOW, per_page=100)
        assert every.total == len(every.items) and set(ids(every)) <= set(many), args
        paged = [
            n.id
            for p in (1, 2, 3, 4, 5)
            for n in search_notices(session, query, now=NOW, page=p, per_page=5).items
        ]
        assert paged == ids(every), args
    assert search(session, q="nettoyage").total == 23
    assert search(session, dep="59,76,69,74,92,77").total == 23
    assert search(session).total == 23  # every other notice is hidden by the "alone" fixture


def test_keyset_cursor_survives_an_insertion_before_it(session: Session, many: list[int], plan: str) -> None:
    query = SearchQuery.from_args({"q": "nettoyage", "sort": "deadline"})
    first = search_notices(session, query, now=NOW, per_page=10)
    assert first.next_cursor is not None
    # A notice whose deadline sorts before the cursor arrives meanwhile: the next page neither repeats
    # nor skips anything.
    ingest_records(session, [record(2, "26-77777", "Nettoyage urgent de la cantine")], now=NOW)
    second = search_notices(session, query, now=NOW, per_page=100, cursor=first.next_cursor)
    assert set(ids(first)) | set(ids(second)) == set(many)
    assert not set(ids(first)) & set(ids(second))


def _cursor(data: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).decode().rstrip("=")


def test_bad_cursor_is_a_query_param_error(session: Session, many: list[int]) -> None:
    query = SearchQuery.from_args({"q": "nettoyage", "sort": "deadline"})
    good = search_notices(session, query, now=NOW, per_page=5).next_cursor
    assert good is not None
    other_search = SearchQuery.from_args({"q": "nettoyage", "sort": "deadline", "dep": "77"})
    other_sort = SearchQuery.from_args({"q": "nettoyage"})
    fingerprint = json.loads(base64.urlsafe_b64decode(good + "=" * (-len(good) % 4)))["f"]
    bad = [
        "", "x", "!!!", "a" * 1000, good + "x", good[:-3], "bnVsbA", _cursor({}),  # "null"
        _cursor({"s": "deadline", "f": fingerprint, "k": ["hier", 3]}),
        _cursor({"s": "deadline", "f": fingerprint, "k": ["2026-02-01T10:00:00", 3]}),  # naive
        _cursor({"s": "deadline", "f": fingerprint, "k": [None, "3"]}),
        _cursor({"s": "deadline", "f": fingerprint, "k": [None, True]}),
        _cursor({"s": "deadline", "f": fingerprint, "k": [1]}),
        _cursor({"s": "relevance", "f": fingerprint, "o": 5}),
    ]  # fmt: skip
    for cursor in bad:
        with pytest.raises(QueryParamError) as caught:
            search_notices(session, query, now=NOW, cursor=cursor)
        assert caught.value.param == "cursor", cursor
    for other in (other_search, other_sort):
        with pytest.raises(QueryParamError):
            search_notices(session, other, now=NOW, cursor=good)
    relevance = SearchQuery.from_args({"q": "nettoyage"})
    relevance_fp = json.loads(base64.urlsafe_b64decode(
        (c := search_notices(session, relevance, now=NOW, per_page=5).next_cursor or "") + "=" * (-len(c) % 4)
    ))["f"]  # fmt: skip
    for offset in (-1, "5", 1.5, None):
        with pytest.raises(QueryParamError):
            search_notices(
                session,
                relevance,
                now=NOW,
                cursor=_cursor({"s": "relevance", "f": relevance_fp, "o": offset}),
            )


def test_last_page_has_no_cursor(session: Session, corpus: dict[str, int]) -> None:
    assert search(session, per_page=len(CORPUS)).next_cursor is None
    assert search(session, per_page=len(CORPUS) - 1).next_cursor is not None


# --------------------------------------------------------------------------- index maintenance


def _document(session: Session, nid: int) -> str | None:
    return session.scalar(select(NoticeSearch.document).where(NoticeSearch.notice_id == nid))


def test_ingestion_indexes_new_notices(session: Session, corpus: dict[str, int]) -> None:
    indexed = set(session.scalars(select(NoticeSearch.notice_id)))
    assert set(corpus.values()) <= indexed
    doc = _document(session, corpus["cleaning"])
    assert doc is not None and doc.startswith("Nettoyage des vitres de l'hôtel de ville\nURSSAF Normandie\n")
    assert "<" not in doc and "&#" not in doc


def test_reingest_with_a_new_description_updates_the_index(session: Session, alone: None) -> None:
    ingest_records(session, [record(3, "26-66666", "Mission de commissariat aux comptes")], now=NOW)
    nid = notice_id(session, "26-66666")
    assert found(session, q="suppléant") == {nid}
    changed = record(3, "26-66666", "Mission de commissariat aux comptes", {"suppléant": "intérimaire"})
    stats = ingest_records(session, [changed], now=NOW + dt.timedelta(hours=2))
    assert stats.updated == 1
    assert found(session, q="suppléant") == set()
    assert found(session, q="intérimaires") == {nid}


def test_reingest_with_a_new_title_updates_the_index(session: Session, alone: None) -> None:
    ingest_records(session, [record(3, "26-66667", "Déménagement des archives municipales")], now=NOW)
    nid = notice_id(session, "26-66667")
    assert found(session, q="déménagement") == {nid}
    later = NOW + dt.timedelta(hours=2)
    ingest_records(session, [record(3, "26-66667", "Désamiantage du groupe scolaire")], now=later)
    assert found(session, q="déménagement") == set()
    assert found(session, q='"groupe scolaire"') == {nid}


def test_refresh_after_a_direct_edit_and_a_deletion(session: Session, corpus: dict[str, int]) -> None:
    notice = session.get(Notice, corpus["furniture"])
    assert notice is not None
    notice.title = "Fourniture de tablettes numériques"
    refresh_search_index(session, [notice.id, notice.id])
    assert found(session, q="tablette") == {notice.id}
    assert found(session, q="mobilier") == set()
    session.execute(delete(Notice).where(Notice.id == corpus["cleanings"]))
    refresh_search_index(session, [corpus["cleanings"]])
    assert found(session, q="nettoyage") == {corpus["cleaning"]}
    refresh_search_index(session, [])


def test_rebuild_gives_the_same_index(session: Session, corpus: dict[str, int]) -> None:
    before = dict(session.execute(select(NoticeSearch.notice_id, NoticeSearch.document)).all())
    notices = session.scalar(select(func.count()).select_from(Notice))
    assert rebuild_search_index(session) == notices == len(before)
    after = dict(session.execute(select(NoticeSearch.notice_id, NoticeSearch.document)).all())
    assert after == before
    assert found(session, q="réhabilitation") >= {corpus["rehab_plural"], corpus["rehab_upper"]}
    if session.get_bind().dialect.name == "sqlite":
        assert session.scalar(text("SELECT count(*) FROM notice_fts")) == notices


def test_cli_reindex(temp_db_factory: Any, tmp_path: Path) -> None:
    db: TempDatabase = temp_db_factory(f"nsearch{os.urandom(2).hex()}")
    env = {
        "TENDERPOOL_DATABASE_URL": db.url,
        "TENDERPOOL_APP_INSTANCE_PATH": str(tmp_path / "instance"),
        "TENDERPOOL_CONFIG": "",
    }
    runner = CliRunner()
    assert runner.invoke(main, ["db", "upgrade"], env=env).exit_code == 0
    page = FIXTURES / "boamp/jpbenga_where-dateparution-2026_5records_FNSimple.json"
    assert runner.invoke(main, ["import", str(page)], env=env).exit_code == 0
    with Session(db.engine) as session:
        session.execute(delete(NoticeSearch))
        if db.engine.dialect.name == "sqlite":
            session.execute(text("DELETE FROM notice_fts"))
        session.commit()
        assert search(session, q="caserne").total == 0
    result = runner.invoke(main, ["notices", "reindex"], env=env)
    assert result.exit_code == 0, result.output
    assert "5 avis indexés" in result.output
    with Session(db.engine) as session:
        assert search(session, q="caserne").total == 1
    db.engine.dispose()


# --------------------------------------------------------------------------- caps (issue 4)


@pytest.mark.parametrize(
    "args",
    [
        {"q": "nettoyage"},
        {},
        {"dep": "59,76,69,74,92,77"},
        {"q": "nettoyage", "status": "open,closed,awarded,cancelled"},
    ],
)
def test_total_is_capped_beyond_the_count_limit(
    session: Session, many: list[int], monkeypatch: pytest.MonkeyPatch, args: dict[str, str]
) -> None:
    query = SearchQuery.from_args(args)
    exact = search_notices(session, query, now=NOW, per_page=5)
    assert (exact.total, exact.total_capped) == (23, False)
    monkeypatch.setattr(search_module, "COUNT_LIMIT", 10)
    capped = search_notices(session, query, now=NOW, per_page=5)
    # "plus de 10 avis": the first pages are the same, there are just no more than two of them.
    assert (capped.total, capped.total_capped, capped.pages) == (10, True, 2)
    assert ids(capped) == ids(exact) and capped.next_cursor is not None
    monkeypatch.setattr(search_module, "COUNT_LIMIT", 23)
    assert search_notices(session, query, now=NOW, per_page=5).total_capped is False


def test_relevance_ranks_the_newest_matches(
    session: Session, many: list[int], monkeypatch: pytest.MonkeyPatch
) -> None:
    query = SearchQuery.from_args({"q": "nettoyage vitres"})
    everything = search_notices(session, query, now=NOW, per_page=100)
    monkeypatch.setattr(search_module, "RANK_LIMIT", 5)
    newest = search_notices(session, query, now=NOW, per_page=100)
    assert newest.total == everything.total  # the count is not the ranking's
    # The five newest matches (by id: arrival), in the order the whole ranking gives them.
    five = set(sorted(ids(everything))[-5:])
    assert ids(newest) == [i for i in ids(everything) if i in five]


@pytest.mark.parametrize("sort", ["deadline", "published"])
def test_listing_with_row_conditions_sorts_like_the_index_walk(
    session: Session, many: list[int], monkeypatch: pytest.MonkeyPatch, sort: str
) -> None:
    """Up to COUNT_LIMIT matches with row conditions are listed once and sorted in Python: the same
    order as the queries that walk the sort column's index (on PostgreSQL, checking the first
    _WALK notices one by one, then, when they hold less than the page, planned as a whole)."""
    query = SearchQuery.from_args({"q": "nettoyage", "status": "open,closed,awarded,cancelled", "sort": sort})
    listed = search_notices(session, query, now=NOW, per_page=100)
    monkeypatch.setattr(search_module, "_listed", lambda *args, **kwargs: None)
    for few, walk in ((2000, 5000), (-1, 5000), (-1, 4)):
        monkeypatch.setattr(search_module, "_FEW", few)
        monkeypatch.setattr(search_module, "_WALK", walk)
        walked = search_notices(session, query, now=NOW, per_page=100)
        assert ids(walked) == ids(listed) and walked.total == listed.total == 23
        for page in range(1, 6):  # pages that the first notices of the walk fill, and the others
            got = search_notices(session, query, now=NOW, page=page, per_page=5)
            assert ids(got) == ids(listed)[(page - 1) * 5 : page * 5], (few, walk, page)
