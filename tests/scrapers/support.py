"""Helpers shared by the scraper tests (plain functions: no conftest needed)."""

from __future__ import annotations

import copy
import datetime as dt
import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

from lxml import etree
from werkzeug import Request, Response

from scrapers.base import RawRecord
from scrapers.http import HttpClient

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
USER_AGENT = "TenderPool-tests/0.1 (+https://example.invalid; tests@example.invalid)"
FETCHED_AT = dt.datetime(2026, 11, 28, 6, 0, tzinfo=dt.UTC)


def fixture_path(relative: str) -> Path:
    return FIXTURES / relative


def fixture_bytes(relative: str) -> bytes:
    return fixture_path(relative).read_bytes()


def fixture_json(relative: str) -> Any:
    return json.loads(fixture_bytes(relative))


def boamp_records() -> dict[str, dict[str, Any]]:
    """The 7 real BOAMP API records of the fixtures, by idweb."""
    records = fixture_json("boamp/jpbenga_where-dateparution-2026_5records_FNSimple.json")["data"]["results"]
    records += fixture_json("boamp/nicolasmura_boamp-query_2records_MAPA_2024.json")["results"]
    return {r["idweb"]: r for r in records}


def boamp_record(idweb: str) -> dict[str, Any]:
    return copy.deepcopy(boamp_records()[idweb])


def raw_json(record: Any, source: str = "boamp", ref: str = "x") -> RawRecord:
    return RawRecord(
        source=source,
        source_ref=ref,
        payload=json.dumps(record, ensure_ascii=False).encode("utf-8"),
        content_type="application/json",
        fetched_at=FETCHED_AT,
    )


def raw_xml(data: bytes, source: str, ref: str = "") -> RawRecord:
    return RawRecord(
        source=source, source_ref=ref, payload=data, content_type="application/xml", fetched_at=FETCHED_AT
    )


@dataclass
class SleepRecorder:
    """Injected instead of ``time.sleep``: records the waits, never waits."""

    waits: list[float] = field(default_factory=list)

    def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)


def make_client(sleep: SleepRecorder | None = None, **options: Any) -> HttpClient:
    settings: dict[str, Any] = {
        "timeout": (2.0, 5.0),
        "max_tries": 3,
        "politeness_delay": 0.0,
        "sleep": sleep if sleep is not None else SleepRecorder(),
        "jitter": lambda: 1.0,
    }
    settings.update(options)
    return HttpClient(USER_AGENT, **settings)


# ----------------------------------------------------------------- XML → JSON (xmltodict style)


def xml_to_json(element: Any) -> Any:
    """Convert an lxml element the way BOAMP's ``donnees`` were converted.

    Attributes become ``@name``, text ``#text``, repeated children arrays, empty
    elements ``""``; names keep the prefix written in the document (``cbc:ID``).
    Comments are dropped.
    """
    children = [c for c in element if isinstance(c.tag, str)]
    attributes = {f"@{k}": v for k, v in element.attrib.items() if not k.startswith("{")}
    text = element.text.strip() if element.text and element.text.strip() else None
    if not children and not attributes:
        return text if text is not None else ""
    result: dict[str, Any] = dict(attributes)
    for child in children:
        name = _prefixed(child)
        value = xml_to_json(child)
        if name in result:
            if not isinstance(result[name], list):
                result[name] = [result[name]]
            result[name].append(value)
        else:
            result[name] = value
    if text is not None:
        result["#text"] = text
    return result


def _prefixed(element: Any) -> str:
    local = etree.QName(element.tag).localname
    return f"{element.prefix}:{local}" if element.prefix else local


def xml_root(relative: str) -> Any:
    return etree.fromstring(fixture_bytes(relative))


# ------------------------------------------------------------------------- fake ODS


_DATE_FROM = re.compile(r"dateparution >= date'(\d{4}-\d{2}-\d{2})'")
_DATE_TO = re.compile(r"dateparution <= date'(\d{4}-\d{2}-\d{2})'")
_FAMILLE = re.compile(r'famille="([^"]+)"')


def ods_error(message: str, status: int = 400) -> Response:
    body = {"error_code": "ODSQLError", "message": message}
    return Response(json.dumps(body), status=status, content_type="application/json")


@dataclass
class FakeOds:
    """A tiny stand-in for the ODS records endpoint over a virtual dataset.

    ``days`` maps a publication date to ``[(famille, count), …]``; record ``i`` of a
    (day, famille) is a copy of ``templates[i % len(templates)]`` with its own
    idweb, dateparution and famille. Records are generated only for the page asked,
    so tens of thousands of records cost nothing. It enforces the real rules the
    scraper must respect: ``order_by``, ``limit`` ≤ 100, ``offset + limit`` ≤ cap.
    """

    days: dict[dt.date, list[tuple[str, int]]]
    templates: list[dict[str, Any]]
    cap: int = 10_000
    requests: list[dict[str, str]] = field(default_factory=list)

    def _idweb(self, day: dt.date, famille_index: int, index: int) -> str:
        return f"{day:%y}-{day.timetuple().tm_yday:03d}{famille_index}{index:05d}"

    def record(self, day: dt.date, famille: str, famille_index: int, index: int) -> dict[str, Any]:
        record = copy.deepcopy(self.templates[index % len(self.templates)])
        idweb = self._idweb(day, famille_index, index)
        record.update(
            {
                "idweb": idweb,
                "id": idweb.replace("-", "_"),
                "dateparution": day.isoformat(),
                "famille": famille,
                "url_avis": f"https://www.boamp.fr/pages/avis/?q=idweb:{idweb}",
            }
        )
        if "gestion" in record:  # keep gestion coherent with the new identity
            gestion = json.loads(record["gestion"])
            gestion["REFERENCE"]["IDWEB"] = idweb
            gestion["INDEXATION"]["DATE_PUBLICATION"] = day.isoformat()
            record["gestion"] = json.dumps(gestion, ensure_ascii=False)
        return record

    def _segments(
        self, start: dt.date, end: dt.date, famille: str | None
    ) -> Iterator[tuple[dt.date, str, int, int]]:
        for day in sorted(d for d in self.days if start <= d <= end):
            for famille_index, (name, count) in enumerate(self.days[day]):
                if famille is None or famille == name:
                    yield day, name, famille_index, count

    def handler(self, request: Request) -> Response:
        args = {k: v[0] for k, v in parse_qs(request.query_string.decode()).items()}
        self.requests.append(args)
        where = args.get("where", "")
        start = _DATE_FROM.search(where)
        end = _DATE_TO.search(where)
        if not start or not end or 'code_departement in ("77","91")' not in where:
            return ods_error(f"unexpected where clause: {where}")
        first, last = dt.date.fromisoformat(start.group(1)), dt.date.fromisoformat(end.group(1))
        famille_match = _FAMILLE.search(where)
        famille = famille_match.group(1) if famille_match else None
        if args.get("group_by") == "famille":
            counts: dict[str, int] = {}
            for _, name, _, count in self._segments(first, last, None):
                counts[name] = counts.get(name, 0) + count
            results = [{"famille": name, "n": n} for name, n in counts.items()]
            return Response(json.dumps({"results": results}), content_type="application/json")
        if args.get("order_by") != "dateparution asc, idweb asc":
            return ods_error(f"bad order_by: {args.get('order_by')}")
        limit, offset = int(args.get("limit", "10")), int(args.get("offset", "0"))
        if limit > 100:
            return ods_error("Invalid value for limit")
        if offset + limit > self.cap:
            return ods_error(f"Invalid value for offset+limit: must be lower than {self.cap}")
        segments = list(self._segments(first, last, famille))
        total = sum(count for *_, count in segments)
        results = []
        skip = offset
        for day, name, famille_index, count in segments:
            if skip >= count:
                skip -= count
                continue
            for index in range(skip, count):
                if len(results) == limit:
                    break
                results.append(self.record(day, name, famille_index, index))
            skip = 0
            if len(results) == limit:
                break
        body = {"total_count": total, "results": results}
        return Response(json.dumps(body, ensure_ascii=False), content_type="application/json")


def slim(record: dict[str, Any]) -> dict[str, Any]:
    """A record without its big ``donnees``/``gestion`` strings (as with ``select=``)."""
    return {k: v for k, v in record.items() if k not in ("donnees", "gestion")}


def respond_json(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(json.dumps(body), status=status, content_type="application/json", headers=headers)


Handler = Callable[[Request], Response]
