"""Ingestion in batches: a batch mixing new and known notices gives what one record at a time gives.

New notices and publications of a batch are plain objects written in bulk (COPY on PostgreSQL),
existing ones go through the ORM; both paths must store the same values.
"""

from __future__ import annotations

import datetime as dt
import gc
import json
from decimal import Decimal
from types import SimpleNamespace
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from scrapers.base import ParseError, RawRecord
from scrapers.registry import parse_raw
from tenderpool.notices.ingest import FOLLOW_UP, Ingester, IngestStats, _rows, decompress, ingest_records
from tenderpool.notices.models import (
    Notice,
    NoticeChange,
    NoticeSearch,
    Publication,
    PublicationRef,
)
from tests.notices.conftest import FETCHED, boamp_raw, boamp_records, truncated_boamp_raw, xml_raw
from tests.notices.test_ingest import _change_and_call

NOW = dt.datetime(2026, 1, 25, 9, 0, tzinfo=dt.UTC)


def _pub_9_call() -> RawRecord:
    """A real legacy BOAMP call made to be the one attribution-3 awards."""
    return xml_raw(
        "boamp-xml/boamp-rdf_test-pub-9.xml",
        source="boamp-xml",
        replace={"<IDWEB>16-652</IDWEB>": "<IDWEB>16-139506</IDWEB>"},
        ref="16-139506",
    )


def _records() -> tuple[list[RawRecord], list[RawRecord]]:
    """Real payloads: a first batch, then one mixing new notices with follow-ups of known ones."""
    boamp = boamp_records()
    change, cn_call = _change_and_call()
    seed = [
        boamp_raw(boamp[0]),
        boamp_raw(boamp[1]),
        cn_call,
        _pub_9_call(),
        # An unsuccessful award whose call (16-155545) only comes in the second batch: it waits.
        xml_raw("boamp-xml/boamp-rdf_test-attribution-4.xml", source="boamp-xml"),
    ]
    retitled = dict(boamp[0])
    retitled["objet"] = "Travaux d'aménagement intérieurs et extérieurs (rectifié)"
    truncated = truncated_boamp_raw()
    mixed = [
        boamp_raw(boamp[2]),
        boamp_raw(boamp[3]),
        # The same procedure in BOAMP and TED, both new: the second joins the notice the first creates.
        boamp_raw(dict(boamp[4], contractfolderid="240D1AD9-B2D8-45EC-BEA9-D11E7A75B28E")),
        xml_raw("eforms/ted-published_2024-OJS017-00047522.xml", source="ted"),
        change,  # a corrigendum of a known call: a NoticeChange through the ORM
        boamp_raw(dict(boamp[1], idweb="26-70000")),  # a known call again under another number
        xml_raw("boamp-xml/boamp-rdf_test-attribution-3.xml", source="boamp-xml"),  # awards a known call
        # The call attribution-4 waits for: the waiting award is attached to a new notice.
        xml_raw(
            "boamp-xml/boamp-rdf_test-pub-2.xml",
            source="boamp-xml",
            replace={"<IDWEB>16-181902</IDWEB>": "<IDWEB>16-155545</IDWEB>"},
            ref="16-155545",
        ),
        # A new call and its award in the same batch: the award applies to a notice not written yet.
        xml_raw(
            "boamp-xml/boamp-rdf_test-pub-4.xml",
            source="boamp-xml",
            replace={"<IDWEB>16-186173</IDWEB>": "<IDWEB>16-119846</IDWEB>"},
            ref="16-119846",
        ),
        xml_raw("boamp-xml/boamp-rdf_test-attribution-2.xml", source="boamp-xml"),
        boamp_raw(retitled),  # a known publication with a changed payload, parsed again
        truncated,  # quarantined
        boamp_raw(boamp[2]),  # the same record twice in one batch
    ]
    return seed, mixed


def _batch_order(raw: RawRecord) -> tuple[int, dt.date, str]:
    """The order a batch applies its records in (calls first, then by date): see Ingester._link_all."""
    try:
        parsed = parse_raw(raw)
    except ParseError:
        return (2, dt.date.min, raw.source_ref)
    return (int(parsed.nature in FOLLOW_UP), parsed.published_at or dt.date.min, raw.source_ref)


def _snapshot(session: Session) -> dict[str, Any]:
    """Everything ingestion stores, with database ids replaced by source references."""
    session.flush()
    session.expire_all()
    refs: dict[int | None, str] = {p.id: p.source_ref for p in session.scalars(select(Publication))}
    notices: dict[tuple[str, ...], Any] = {}
    for notice in session.scalars(select(Notice)):
        key = tuple(sorted(p.source_ref for p in notice.publications))
        columns = {c.key: getattr(notice, c.key) for c in Notice.__table__.columns if c.key != "id"}
        columns["field_dates"] = {name: [on, refs.get(by)] for name, (on, by) in notice.field_dates.items()}
        search = session.get(NoticeSearch, notice.id)
        notices[key] = {
            **columns,
            "lots": [
                (x.number, x.position, x.title, x.description, x.cpv, x.estimated_value, x.deadline_at)
                for x in notice.lots
            ],
            "cpv": notice.cpv,
            "departments": notice.departments,
            "awards": sorted(
                (
                    refs.get(a.publication_id),
                    a.lot_number,
                    a.winner_name,
                    a.winner_siret,
                    a.amount,
                    a.currency,
                    a.unsuccessful,
                )
                for a in notice.awards
            ),
            "changes": [
                (refs.get(c.publication_id), c.source_ref, c.field, c.old_value, c.new_value, c.at)
                for c in notice.changes
            ],
            "search": search.document if search is not None else None,
        }
    publications = {
        p.source_ref: {
            **{
                c.key: getattr(p, c.key)
                for c in Publication.__table__.columns
                if c.key not in ("id", "notice_id")
            },
            "payload": decompress(p.payload),
            "notice": tuple(sorted(x.source_ref for x in p.notice.publications)) if p.notice else None,
        }
        for p in session.scalars(select(Publication))
    }
    publication_refs = sorted(
        (refs[r.publication_id], r.kind, r.ref) for r in session.scalars(select(PublicationRef))
    )
    return {"notices": notices, "publications": publications, "refs": publication_refs}


def _totals(stats: list[IngestStats]) -> tuple[int, ...]:
    return tuple(
        sum(getattr(s, name) for s in stats) for name in ("created", "linked", "updated", "rejected")
    )


def test_a_mixed_batch_gives_the_same_result_as_one_record_at_a_time(session: Session) -> None:
    seed, mixed = _records()
    batched = [ingest_records(session, seed, now=NOW), ingest_records(session, mixed, now=NOW)]
    in_batches = _snapshot(session)
    session.rollback()
    assert session.scalar(select(func.count()).select_from(Notice)) == 0

    one_by_one = [
        ingest_records(session, [raw], now=NOW)
        for records in (seed, mixed)
        for raw in sorted(records, key=_batch_order)
    ]
    assert _snapshot(session) == in_batches
    assert _totals(one_by_one) == _totals(batched)

    # The batch did cover every path: new and known notices, waiting and quarantined publications.
    second = batched[1]
    assert second.created >= 4 and second.linked >= 4 and second.updated >= 2 and second.rejected == 1
    notices = in_batches["notices"]
    assert notices[("16-119846", "16-138580")]["status"] == "awarded"  # call and award in one batch
    assert notices[("16-155545", "16-183123")]["status"] == "cancelled"  # waited, attached to a new one
    assert notices[("16-139506", "16-178891")]["status"] == "awarded"  # a known call awarded
    assert any(c[2] == "deadline_at" for n in notices.values() for c in n["changes"])
    assert in_batches["publications"]["26-99998"]["state"] == "quarantined"
    assert all(n["search"] for n in notices.values())

    # And again: nothing changes.
    again = ingest_records(session, [*seed, *mixed], now=NOW + dt.timedelta(hours=1))
    assert (again.created, again.updated, again.linked) == (0, 0, 0)
    assert session.scalar(select(func.count()).select_from(NoticeChange)) == sum(
        len(n["changes"]) for n in notices.values()
    )


def test_bulk_rows_read_back_like_rows_the_orm_writes(session: Session) -> None:
    """The bulk path (executemany, COPY on PostgreSQL) binds values as SQLAlchemy does."""
    ingester = Ingester(session, now=NOW)
    deadline = dt.datetime(2026, 3, 2, 11, 30, tzinfo=dt.timezone(dt.timedelta(hours=1)))
    values: dict[str, Any] = {
        "title": "Réfection d'une toiture\tà « Évry » \\ 100 % — l'école",
        "buyer_name": "Commune d'Évry\nCourcouronnes",
        "description": "<p>Lot \\N, ligne 1\r\nligne 2</p>",
        "published_at": dt.date(2026, 1, 21),
        "deadline_at": deadline,
        "estimated_value": Decimal("1234567.89"),
        "currency": "EUR",
        "nuts": ["FR104", "FR102"],
        "status": "open",
        "field_dates": {"title": ["2026-01-21", 7], "lots": ["2026-01-22", None]},
        "locked_fields": {"title": {"value": "« x »", "by": 3}},
        "conflicts": {},
        "is_demo": False,
        "created_at": NOW,
        "updated_at": NOW,
    }
    ids = ingester._allocate_ids(Notice, 1)
    ingester._insert(Notice, _rows(Notice, [SimpleNamespace(**values, id=ids[0])]))
    by_orm = Notice(**values)
    session.add(by_orm)
    session.flush()
    session.expire_all()
    bulk, orm = session.get(Notice, ids[0]), session.get(Notice, by_orm.id)
    assert bulk is not None and orm is not None
    for column in Notice.__table__.columns:
        if column.key != "id":
            assert getattr(bulk, column.key) == getattr(orm, column.key), column.key
    assert bulk.deadline_at == deadline and bulk.estimated_value == Decimal("1234567.89")

    payload = json.dumps({"idweb": "26-1", "objet": "\\x00 é \t"}).encode() + bytes(range(256))
    rows = _rows(Publication, [
        SimpleNamespace(id=pid, source="boamp", source_ref=f"26-{pid}", notice_id=ids[0], state="linked",
                        previous_refs=["26-0"], payload=payload, payload_sha256="0" * 64,
                        content_type="application/json", fetched_at=FETCHED, warnings=["é"])
        for pid in ingester._allocate_ids(Publication, 2)
    ])  # fmt: skip
    ingester._insert(Publication, rows)
    session.expire_all()
    for row in rows:
        pub = session.get(Publication, row["id"])
        assert pub is not None
        assert (pub.payload, pub.previous_refs, pub.warnings, pub.fetched_at) == (
            payload, ["26-0"], ["é"], FETCHED,
        )  # fmt: skip


@pytest.mark.parametrize("enabled", [True, False])
def test_the_garbage_collector_is_paused_during_a_batch_only(
    session: Session, enabled: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[bool] = []

    def parser(raw: RawRecord) -> Any:
        seen.append(gc.isenabled())
        return parse_raw(raw)

    was = gc.isenabled()
    try:
        if not enabled:
            gc.disable()
        ingest_records(session, [boamp_raw(boamp_records()[0])], now=NOW, parser=parser)
        assert seen == [False]
        assert gc.isenabled() is enabled

        def crash(*args: Any) -> None:
            raise RuntimeError("boom")

        ingester = Ingester(session, now=NOW, parser=parser)
        monkeypatch.setattr(ingester, "_link_all", crash)
        with pytest.raises(RuntimeError):
            ingester.ingest_batch([boamp_raw(boamp_records()[1])])
        assert gc.isenabled() is enabled
    finally:
        if was:
            gc.enable()
        else:
            gc.disable()
