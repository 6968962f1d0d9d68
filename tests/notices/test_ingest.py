"""Ingestion on the real samples: normalisation, linking, follow-ups in any order, re-import."""

from __future__ import annotations

import datetime as dt
import json
from zoneinfo import ZoneInfo

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from scrapers.base import RawRecord
from tenderpool.notices.ingest import ingest_records
from tenderpool.notices.models import Notice, NoticeChange, Publication
from tenderpool.notices.services import notice_to_dict, reparse
from tests.notices.conftest import (
    boamp_raw,
    boamp_records,
    fixture_records,
    truncated_boamp_raw,
    xml_raw,
)

NOW = dt.datetime(2026, 1, 25, 9, 0, tzinfo=dt.UTC)
PARIS = ZoneInfo("Europe/Paris")
ALL_FIXTURES = [
    "boamp/jpbenga_where-dateparution-2026_5records_FNSimple.json",
    "boamp/nicolasmura_boamp-query_2records_MAPA_2024.json",
    "ted/ted-rdf-conversion-pipeline_ted_api_response.json",
    *[f"eforms/{name}" for name in (
        "sdk-example_can-modif_24_value.xml", "sdk-example_can_24_minimal.xml",
        "sdk-example_change-cn_24_open_dates.xml", "sdk-example_cn_23.xml",
        "sdk-example_cn_24_FRA_comments.xml",
        "sdk-example_pin-only_24.xml", "ted-published_00000372-2025_EST_can.xml",
        "ted-published_2024-OJS017-00047522.xml", "ted-published_2024-OJS065-00191534.xml",
        "ted-published_2024-OJS074-00219998.xml")],
    *[f"boamp-xml/boamp-rdf_test-{name}.xml" for name in (
        "pub", "pub-2", "pub-4", "pub-5", "pub-8", "pub-9", "attribution-2", "attribution-3", "attribution-4",
        "attribution-5", "attribution-7", "attribution-9", "attribution-11")],
]  # fmt: skip


def _count(session: Session, model: type) -> int:
    return int(session.scalar(select(func.count()).select_from(model)) or 0)


def _all_records() -> list[RawRecord]:
    return [record for name in ALL_FIXTURES for record in fixture_records(name)]


def test_every_sample_is_stored_and_reimport_changes_nothing(session: Session) -> None:
    records = _all_records()
    first = ingest_records(session, records, now=NOW)
    assert first.rejected == 0, first.rejections
    # The TED sample response holds the same notice twice: one publication.
    assert _count(session, Publication) == len(records) - 1
    notices, changes = _count(session, Notice), _count(session, NoticeChange)
    assert notices == first.created > 20

    again = ingest_records(session, records, now=NOW + dt.timedelta(hours=1))
    assert (again.created, again.updated, again.linked, again.rejected) == (0, 0, 0, 0)
    assert again.unchanged == len(records)
    assert (_count(session, Notice), _count(session, NoticeChange)) == (notices, changes)

    # Parsing every stored payload again changes nothing either.
    reparsed = reparse(session, now=NOW + dt.timedelta(hours=2))
    assert (reparsed.created, reparsed.updated) == (0, 0)
    assert _count(session, NoticeChange) == changes


def test_boamp_normalisation(session: Session) -> None:
    ingest_records(session, [boamp_raw(r) for r in boamp_records()], now=NOW)
    notice = session.scalars(
        select(Notice).join(Publication).where(Publication.source_ref == "26-7298")
    ).one()
    # Written 12:00 Paris time in the notice; the flat API field says 12:00+00:00. Never one hour off.
    assert notice.deadline_at is not None
    assert notice.deadline_at.astimezone(PARIS).replace(tzinfo=None) == dt.datetime(2026, 2, 16, 12, 0)
    doulaincourt = session.scalars(
        select(Notice).join(Publication).where(Publication.source_ref == "26-7113")
    ).one()
    assert doulaincourt.departments == ["02", "08", "10", "51", "52", "54", "55", "57", "77"]
    assert [lot.number for lot in doulaincourt.lots] == ["1", "2", "3", "4"]
    assert doulaincourt.contract_type == "works"
    assert "\n" not in doulaincourt.title
    exported = notice_to_dict(doulaincourt, now=NOW)
    assert exported["deadline_at"] == "2026-02-20T11:00:00+01:00"
    assert exported["publications"] == [
        {"source": "boamp", "source_ref": "26-7113", "nature": "initial", "published_at": "2026-01-21"}
    ]


def test_cpv_codes_are_checked_against_the_cpv_list(session: Session) -> None:
    record = boamp_records()[0]  # 26-7298, main CPV 45432111
    assert '"45432111"' in record["donnees"]
    record = {**record, "donnees": record["donnees"].replace('"45432111"', '"45432119"')}
    ingest_records(session, [boamp_raw(record)], now=NOW)
    pub = session.scalars(select(Publication)).one()
    assert any("45432119" in w for w in pub.warnings)
    assert pub.notice is not None and "45432119" not in pub.notice.cpv


def test_bad_record_is_quarantined_and_the_rest_is_stored(session: Session) -> None:
    good = [boamp_raw(r) for r in boamp_records()]
    strange = dict(boamp_records()[0], idweb="26-99999", donnees=json.dumps({"PLUTON": {"x": 1}}))
    truncated = truncated_boamp_raw()
    stats = ingest_records(session, [*good[:2], boamp_raw(strange), truncated, *good[2:]], now=NOW)
    assert stats.created == 5 and stats.rejected == 2
    reasons = dict(stats.rejections)
    assert "PLUTON" in reasons["boamp:26-99999"]
    quarantined = session.scalars(select(Publication).where(Publication.state == "quarantined")).all()
    assert {p.source_ref for p in quarantined} == {"26-99999", "26-99998"}
    assert all(p.parse_error for p in quarantined)


def _change_and_call() -> tuple[RawRecord, RawRecord]:
    """A real eForms change notice and a real contract notice made to be the notice it changes."""
    change = xml_raw("eforms/sdk-example_change-cn_24_open_dates.xml", source="eforms")
    call = xml_raw(
        "eforms/sdk-example_cn_24_FRA_comments.xml",
        source="eforms",
        replace={"da4d46e9-490b-41ff-a2ae-8166d356a619": "c4c415ee-ac08-4465-8fa6-57568cf69462"},
        ref="c4c415ee-ac08-4465-8fa6-57568cf69462-01",
    )
    return change, call


def _linked_state(session: Session) -> tuple[object, ...]:
    notice = session.scalars(select(Notice)).one()
    changes = [(c.field, c.old_value, c.new_value) for c in notice.changes]
    return notice.deadline_at, sorted(p.source_ref for p in notice.publications), changes


def test_corrigendum_before_its_call_waits_then_applies(session: Session) -> None:
    change, call = _change_and_call()
    first = ingest_records(session, [change], now=NOW)
    assert first.waiting == 1 and _count(session, Notice) == 0
    waiting = session.scalars(select(Publication)).one()
    assert waiting.state == "waiting"
    second = ingest_records(session, [call], now=NOW)
    assert second.created == 1
    deadline, refs, changes = _linked_state(session)
    assert deadline is not None and deadline.astimezone(PARIS).date() == dt.date(2020, 6, 12)
    assert refs == sorted([change.source_ref, call.source_ref])
    # The change notice (a UK buyer) writes 12:00+01:00 (BST), which is 13:00 in Paris.
    assert ("deadline_at", "2019-06-24T16:00:00+02:00", "2020-06-12T13:00:00+02:00") in changes


def test_corrigendum_after_its_call_gives_the_same_result(session: Session) -> None:
    change, call = _change_and_call()
    ingest_records(session, [change], now=NOW)
    ingest_records(session, [call], now=NOW)
    waited_first = _linked_state(session)
    session.rollback()
    for model in (NoticeChange, Publication, Notice):
        session.query(model).delete()
    ingest_records(session, [call], now=NOW)
    stats = ingest_records(session, [change], now=NOW)
    assert stats.linked == 1 and stats.updated == 1
    assert _linked_state(session) == waited_first


def test_award_is_linked_to_its_call(session: Session) -> None:
    award = xml_raw("boamp-xml/boamp-rdf_test-attribution-3.xml", source="boamp-xml")
    call = xml_raw(
        "boamp-xml/boamp-rdf_test-pub-9.xml",
        source="boamp-xml",
        replace={"<IDWEB>16-652</IDWEB>": "<IDWEB>16-139506</IDWEB>"},
        ref="16-139506",
    )
    ingest_records(session, [award, call], now=NOW)
    notice = session.scalars(select(Notice)).one()
    assert notice.status == "awarded"
    assert sorted(p.source_ref for p in notice.publications) == ["16-139506", "16-178891"]
    assert notice.awards and any(a.winner_name for a in notice.awards)
    assert [c.field for c in notice.changes if c.field == "status"] == ["status"]
    exported = notice_to_dict(notice, now=NOW)
    assert exported["status"] == "awarded" and exported["awards"]


def test_unsuccessful_award_cancels_the_procedure(session: Session) -> None:
    ingest_records(session, fixture_records("boamp-xml/boamp-rdf_test-attribution-4.xml"), now=NOW)
    pub = session.scalars(select(Publication)).one()
    assert pub.previous_refs == ["16-155545", "16-159242"] and pub.state == "waiting"


def test_boamp_and_ted_of_one_procedure_give_one_notice(session: Session) -> None:
    ted = xml_raw("eforms/ted-published_2024-OJS017-00047522.xml", source="ted")
    record = dict(boamp_records()[4], contractfolderid="240D1AD9-B2D8-45EC-BEA9-D11E7A75B28E")
    stats = ingest_records(session, [boamp_raw(record), ted], now=NOW)
    assert stats.created == 1 and stats.linked == 1
    notice = session.scalars(select(Notice)).one()
    assert {p.source for p in notice.publications} == {"boamp", "ted"}
    assert notice.procedure_id == "240d1ad9-b2d8-45ec-bea9-d11e7a75b28e"


def test_fallback_key_links_without_procedure_id(session: Session) -> None:
    record = boamp_records()[1]
    copy = dict(record, idweb="26-70000")  # the same call published again under another number
    ingest_records(session, [boamp_raw(record)], now=NOW)
    stats = ingest_records(session, [boamp_raw(copy)], now=NOW)
    assert stats.linked == 1 and stats.created == 0
    assert _count(session, Notice) == 1


def test_source_html_is_sanitised(session: Session) -> None:
    record = boamp_records()[0]
    donnees = json.loads(record["donnees"])
    hostile = (
        '<p>Objet</p><script>alert(1)</script><img src=x onerror="alert(2)"><a href="javascript:x()">l</a>'
    )
    text = json.dumps(donnees, ensure_ascii=False)
    description = (
        donnees["FNSimple"]["initial"]["natureMarche"].get("description") if "FNSimple" in donnees else None
    )
    if description is None:
        return
    text = text.replace(json.dumps(description, ensure_ascii=False), json.dumps(hostile))
    ingest_records(session, [boamp_raw(dict(record, donnees=text))], now=NOW)
    notice = session.scalars(select(Notice)).one()
    assert notice.description is not None and "Objet" in notice.description
    for bad in ("<script", "onerror", "javascript:", "<img"):
        assert bad not in notice.description


def test_notice_in_the_session_sees_a_publication_linked_later(session: Session) -> None:
    # New publications are written with plain INSERTs: a notice already loaded, with its
    # publications, must not keep a stale list.
    change, call = _change_and_call()
    ingest_records(session, [call], now=NOW)
    notice = session.scalars(select(Notice)).one()
    assert [p.source_ref for p in notice.publications] == [call.source_ref]
    assert ingest_records(session, [change], now=NOW).linked == 1
    assert sorted(p.source_ref for p in notice.publications) == sorted([change.source_ref, call.source_ref])
    assert [c.field for c in notice.changes] and notice.deadline_at is not None
