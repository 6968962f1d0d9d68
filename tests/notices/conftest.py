"""Helpers for notices tests: raw records built from the real recorded payloads in tests/fixtures."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

from scrapers.base import RawRecord
from scrapers.files import iter_file_records

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
FETCHED = dt.datetime(2026, 11, 28, 6, 0, tzinfo=dt.UTC)


def fixture_records(relative: str) -> list[RawRecord]:
    return list(iter_file_records(FIXTURES / relative))


def boamp_records() -> list[dict[str, Any]]:
    """The five real 2026 FNSimple records (the API response wrapped by jpbenga's tool)."""
    data = json.loads(
        (FIXTURES / "boamp/jpbenga_where-dateparution-2026_5records_FNSimple.json").read_text("utf-8")
    )
    return list(data["data"]["results"])


def boamp_raw(record: dict[str, Any]) -> RawRecord:
    return RawRecord(
        source="boamp",
        source_ref=record["idweb"],
        payload=json.dumps(record).encode(),
        content_type="application/json",
        fetched_at=FETCHED,
        url="test",
    )


def truncated_boamp_raw() -> RawRecord:
    """A BOAMP record cut off mid-payload, as a dropped connection leaves it: quarantined."""
    return RawRecord(
        source="boamp",
        source_ref="26-99998",
        payload=b'{"idweb": "26-99998", "objet": "Tru',
        content_type="application/json",
        fetched_at=FETCHED,
    )


def xml_raw(
    relative: str, *, source: str, replace: dict[str, str] | None = None, ref: str | None = None
) -> RawRecord:
    """A real XML notice, optionally with some identifiers replaced (to make two samples one procedure)."""
    text = (FIXTURES / relative).read_text("utf-8")
    for old, new in (replace or {}).items():
        assert old in text, old
        text = text.replace(old, new)
    if ref is None:
        (record,) = iter_file_records(FIXTURES / relative)
        ref = record.source_ref
    return RawRecord(
        source=source,
        source_ref=ref,
        payload=text.encode(),
        content_type="application/xml",
        fetched_at=FETCHED,
        url=relative,
    )
