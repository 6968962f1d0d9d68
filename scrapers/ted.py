"""TED (Tenders Electronic Daily, the OJ S), through the Search API v3.

Access
    ``POST https://api.ted.europa.eu/v3/notices/search`` with a JSON body; no key.
    Notice content © European Union, reusable with acknowledgment (Commission
    Decision 2011/833/EU). Each notice's full XML is at ``links.xml.MUL``
    (``https://ted.europa.eu/en/notice/{publication-number}/xml``): one GET per
    notice when ``fetch_xml`` is on.
Query
    ``place-of-performance IN (FR102 FR104) AND publication-date >= YYYYMMDD AND
    publication-date <= YYYYMMDD``, a non-empty ``fields`` list
    (:data:`SEARCH_FIELDS`, all present in the OpenAPI enumeration), ``scope: ALL``.
Paging
    ``paginationMode: ITERATION`` (no 15 000-notice cap): follow
    ``iterationNextToken`` until a page comes back empty or without a token. The
    token is an Elasticsearch point in time that expires at the next OJ S release
    + 24 h; on HTTP 400 ``EXPIRED_ITERATION_TOKEN`` / ``INVALID_ITERATION_TOKEN``, or
    a 5xx after a token (a reported bug answers 500 to a bad token), the
    iteration restarts from the first page, at most ``max_restarts`` times.
    Notices are deduplicated on the publication number within a run (the sample
    response holds the same notice twice; a restart replays pages).
    ``totalNoticeCount`` may arrive as a string: it is coerced to ``int``.
Cadence
    The OJ S comes out five times a week; run daily over the last 2–3 days and upsert
    on the publication number (+ ``notice-version``).
Payload / parse
    With ``fetch_xml`` the payload is the notice's eForms XML (``application/xml``,
    parsed by :mod:`scrapers.eforms`; if the XML download fails the search result
    is kept instead); otherwise the search-result JSON object (``application/json``),
    parsed field by field: i18n maps prefer ``fra``, then ``eng``, then any
    language; values may be strings or lists. ``source_ref`` is the publication
    number without zero padding ("47522-2024").
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable, Iterator, Mapping
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from .base import (
    ContractType,
    FetchError,
    FetchPage,
    Nature,
    ParsedAward,
    ParsedLot,
    ParsedNotice,
    ParseError,
    RawRecord,
)
from .eforms import parse_eforms
from .http import HttpClient, Reply
from .text import (
    COUNTRY_ZONES,
    NUTS3_TO_DEPARTMENT,
    PARIS,
    as_list,
    clean_multiline,
    clean_siret,
    clean_text,
    dedupe,
    lot_number_from_id,
    mapping,
    normalize_cpv,
    normalize_nuts,
    normalize_publication_number,
    parse_date,
    pick_language,
    positive_amount,
    split_datetime,
    split_time,
    text_of,
    wall_clock,
)

TED_BASE_URL = "https://api.ted.europa.eu"
MAX_PAGE_SIZE = 250

SEARCH_FIELDS: tuple[str, ...] = (
    "publication-number",
    "notice-identifier",
    "notice-version",
    "procedure-identifier",
    "notice-type",
    "form-type",
    "publication-date",
    "notice-title",
    "buyer-name",
    "buyer-city",
    "buyer-country",
    "organisation-identifier-buyer",
    "place-of-performance",
    "classification-cpv",
    "contract-nature",
    "procedure-type",
    "identifier-lot",
    "title-lot",
    "description-lot",
    "deadline-receipt-tender-date-lot",
    "deadline-receipt-tender-time-lot",
    "estimated-value-lot",
    "estimated-value-cur-lot",
    "estimated-value-proc",
    "estimated-value-cur-proc",
    "winner-name",
    "change-notice-version-identifier",
    "modification-previous-notice-identifier",
    "links",
)

_RESTART_CODES = frozenset({"EXPIRED_ITERATION_TOKEN", "INVALID_ITERATION_TOKEN"})

_CONTRACT_TYPES = {
    "works": ContractType.WORKS,
    "supplies": ContractType.SUPPLIES,
    "services": ContractType.SERVICES,
}


class TedSource:
    """Fetch and parse TED notices performed in a set of NUTS areas."""

    name: str = "ted"

    def __init__(
        self,
        client: HttpClient,
        base_url: str = TED_BASE_URL,
        nuts: tuple[str, ...] = ("FR102", "FR104"),
        page_size: int = 100,
        fetch_xml: bool = True,
        *,
        max_restarts: int = 3,
        fields: tuple[str, ...] = SEARCH_FIELDS,
        now: Callable[[], dt.datetime] | None = None,
    ) -> None:
        if not 1 <= page_size <= MAX_PAGE_SIZE:
            raise ValueError(f"page_size must be between 1 and {MAX_PAGE_SIZE}")
        if not fields:
            raise ValueError("the TED search API needs a non-empty list of fields")
        if len(fields) * page_size > 10_000:
            raise ValueError("TED limits fields × limit to 10 000 per page")
        codes = [normalize_nuts(code) for code in nuts]
        if not codes or any(code is None for code in codes):
            raise ValueError(f"invalid NUTS codes: {nuts!r}")
        self.client = client
        self.base_url = base_url.rstrip("/")
        self.nuts = tuple(code for code in codes if code)
        self.page_size = page_size
        self.fetch_xml = fetch_xml
        self.max_restarts = max_restarts
        self.fields = fields
        self._now = now or (lambda: dt.datetime.now(dt.UTC))
        self.restarts = 0

    @property
    def search_url(self) -> str:
        return f"{self.base_url}/v3/notices/search"

    def query(self, since: dt.date, until: dt.date) -> str:
        return (
            f"place-of-performance IN ({' '.join(self.nuts)}) "
            f"AND publication-date >= {since:%Y%m%d} AND publication-date <= {until:%Y%m%d}"
        )

    def body(self, since: dt.date, until: dt.date, token: str | None) -> dict[str, Any]:
        body: dict[str, Any] = {
            "query": self.query(since, until),
            "fields": list(self.fields),
            "limit": self.page_size,
            "scope": "ALL",
            "paginationMode": "ITERATION",
        }
        if token:
            body["iterationNextToken"] = token
        return body

    def fetch(self, since: dt.date, until: dt.date) -> Iterator[FetchPage]:
        if since > until:
            raise ValueError("since must not be after until")
        seen: set[str] = set()
        self.restarts = 0
        token: str | None = None
        yielded = False
        while True:
            try:
                reply = self.client.post_json(self.search_url, self.body(since, until, token))
            except FetchError as exc:
                if token is None or not _restartable(exc):
                    raise
                self.restarts += 1
                if self.restarts > self.max_restarts:
                    raise FetchError(
                        f"TED iteration restarted {self.max_restarts} times and still fails: {exc}",
                        status=exc.status,
                        url=exc.url,
                        code=exc.code,
                    ) from exc
                token = None
                continue
            data = reply.data
            if not isinstance(data, Mapping) or not isinstance(data.get("notices", []), list):
                raise FetchError(
                    f"unexpected TED response shape from {reply.url}", status=reply.status, url=reply.url
                )
            notices = data.get("notices") or []
            records = [r for r in (self._record(n, reply, seen) for n in notices) if r is not None]
            if notices or not yielded:
                yielded = True
                yield FetchPage(
                    records=records, total_count=_count(data.get("totalNoticeCount")), window=(since, until)
                )
            next_token = data.get("iterationNextToken")
            if not notices or not next_token:
                return
            token = str(next_token)

    def parse(self, raw: RawRecord) -> ParsedNotice:
        return parse_ted_record(raw)

    def _record(self, notice: Any, reply: Reply, seen: set[str]) -> RawRecord | None:
        if not isinstance(notice, Mapping):
            return None
        ref = _publication_number(notice)
        if ref is None or ref in seen:
            return None
        seen.add(ref)
        payload = json.dumps(notice, ensure_ascii=False).encode("utf-8")
        content_type, url = "application/json", reply.url
        if self.fetch_xml:
            xml_url = text_of(((notice.get("links") or {}).get("xml") or {}).get("MUL")) or (
                f"https://ted.europa.eu/en/notice/{ref}/xml"
            )
            try:
                xml = self.client.get(xml_url, accept="application/xml")
            except FetchError:
                pass  # keep the search result; the caller still gets the notice
            else:
                payload, content_type, url = xml.content, "application/xml", xml.url
        return RawRecord(
            source=self.name,
            source_ref=ref,
            payload=payload,
            content_type=content_type,
            fetched_at=self._now(),
            url=url,
        )


def _restartable(exc: FetchError) -> bool:
    if exc.code in _RESTART_CODES:
        return True
    return exc.status is not None and exc.status >= 500


def _count(value: Any) -> int | None:
    try:
        return int(str(value).strip()) if value is not None else None
    except ValueError:
        return None


def _publication_number(notice: Mapping[str, Any]) -> str | None:
    for key in ("publication-number", "ND"):
        for value in as_list(notice.get(key)):
            number = normalize_publication_number(value)
            if number:
                return number
    return None


# ============================================================================= parsing


def parse_ted_record(raw: RawRecord) -> ParsedNotice:
    """XML payload → eForms parser; JSON payload → the search-result fields."""
    head = raw.payload.lstrip()[:1]
    if raw.content_type.endswith("xml") or head == b"<":
        return parse_eforms(raw.payload, source=raw.source or "ted", source_ref=raw.source_ref or None)
    try:
        notice = json.loads(raw.payload)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ParseError(f"payload is not valid JSON: {exc}") from exc
    if not isinstance(notice, dict):
        raise ParseError(f"payload is not a JSON object but {type(notice).__name__}")
    return parse_ted_notice(notice, source=raw.source or "ted")


def _i18n_text(value: Any) -> str | None:
    chosen = pick_language(value)
    items = [clean_text(v) for v in as_list(chosen)]
    items = [i for i in items if i]
    return items[0] if items else None


def _i18n_list(value: Any) -> list[str | None]:
    chosen = pick_language(value)
    return [clean_text(v) for v in as_list(chosen)]


def _strings(value: Any) -> list[str]:
    return [s for s in (text_of(v) for v in as_list(value)) if s]


def parse_ted_notice(notice: Mapping[str, Any], *, source: str = "ted") -> ParsedNotice:
    warnings: list[str] = []
    ref = _publication_number(notice)
    if ref is None:
        raise ParseError("TED notice without a publication number")

    title = _i18n_text(notice.get("notice-title")) or _i18n_text(notice.get("title-proc"))
    if title is None:
        title = f"Avis TED {ref}"
        warnings.append("notice-title absent from the search result: placeholder title")

    published_at = None
    for key in ("publication-date", "PD"):
        for value in as_list(notice.get(key)):
            published_at = parse_date(value)
            if published_at:
                break
        if published_at:
            break

    notice_type = (text_of(notice.get("notice-type")) or "").lower()
    form_type = (text_of(notice.get("form-type")) or "").lower()
    change_of = text_of(notice.get("change-notice-version-identifier"))
    modification_of = _strings(notice.get("modification-previous-notice-identifier"))
    if change_of:
        nature = Nature.CORRIGENDUM
    elif notice_type in ("can-modif", "veat") or form_type in ("cont-modif", "dir-awa-pre"):
        nature = Nature.OTHER
    elif notice_type.startswith("can-") or form_type == "result":
        nature = Nature.AWARD
    elif notice_type.startswith(("cn-", "pin-cfc", "qu-sy", "subco")) or form_type == "competition":
        nature = Nature.INITIAL
    elif notice_type.startswith("pin-") or form_type == "planning":
        nature = Nature.PRIOR_INFORMATION
    else:
        nature = Nature.OTHER
    previous = [change_of.lower()] if change_of else []
    previous += [normalize_publication_number(m) or m for m in modification_of]

    countries = [c.upper() for c in _strings(notice.get("buyer-country"))]
    # place-of-performance mixes NUTS codes and ISO 3166 alpha-3 countries ("FRA")
    places = [
        n
        for n in (normalize_nuts(p) for p in _strings(notice.get("place-of-performance")))
        if n and n not in COUNTRY_ZONES
    ]
    if "FRA" in countries or (not countries and any(p.startswith("FR") for p in places)):
        zone: dt.tzinfo | None = PARIS
    elif countries and countries[0] in COUNTRY_ZONES:
        zone = ZoneInfo(COUNTRY_ZONES[countries[0]])
    else:
        zone = None

    lot_ids = _strings(notice.get("identifier-lot"))
    lot_titles = _i18n_list(notice.get("title-lot"))
    lot_descriptions = [clean_multiline(v) for v in as_list(pick_language(notice.get("description-lot")))]
    deadline_dates = _strings(notice.get("deadline-receipt-tender-date-lot"))
    deadline_times = _strings(notice.get("deadline-receipt-tender-time-lot"))
    lot_values = as_list(notice.get("estimated-value-lot"))
    lot_currencies = _strings(notice.get("estimated-value-cur-lot"))

    deadlines = [
        d
        for d in (
            _deadline(date, deadline_times[i] if i < len(deadline_times) else None, zone, warnings)
            for i, date in enumerate(deadline_dates)
        )
        if d is not None
    ]
    lots: list[ParsedLot] = []
    for index, lot_id in enumerate(lot_ids):
        number = lot_number_from_id(lot_id) or str(index + 1)
        if number == "0":
            continue
        lots.append(
            ParsedLot(
                number=number,
                title=lot_titles[index] if index < len(lot_titles) else None,
                description=lot_descriptions[index] if index < len(lot_descriptions) else None,
                estimated_value=positive_amount(lot_values[index]) if index < len(lot_values) else None,
            )
        )
    if len(lots) == len(deadlines) and len(set(deadlines)) > 1:
        lots = [
            ParsedLot(
                number=lot.number,
                title=lot.title,
                description=lot.description,
                estimated_value=lot.estimated_value,
                deadline_at=deadlines[i],
            )
            for i, lot in enumerate(lots)
        ]

    estimated = positive_amount(notice.get("estimated-value-proc"))
    currency = text_of(notice.get("estimated-value-cur-proc"))
    if estimated is None:
        values = [v for v in (positive_amount(v) for v in lot_values) if v is not None]
        if values and len(values) == len(lot_values):
            estimated = sum(values, Decimal(0))
            currency = lot_currencies[0] if lot_currencies else None
    if estimated is None:
        currency = None

    departments = [NUTS3_TO_DEPARTMENT[p] for p in places if p in NUTS3_TO_DEPARTMENT]
    buyer_ids = _strings(notice.get("organisation-identifier-buyer"))
    natures = [n.lower() for n in _strings(notice.get("contract-nature"))]
    procedure = (text_of(notice.get("procedure-type")) or "").lower() or None
    html_links = mapping(mapping(notice.get("links")).get("html"))
    url = text_of(html_links.get("FRA")) or f"https://ted.europa.eu/fr/notice/-/detail/{ref}"
    winners = [w for w in _i18n_list(notice.get("winner-name")) if w]
    folder = text_of(notice.get("procedure-identifier"))
    notice_id = text_of(notice.get("notice-identifier"))
    version = text_of(notice.get("notice-version"))

    return ParsedNotice(
        source=source,
        source_ref=ref,
        nature=nature,
        title=title,
        published_at=published_at,
        procedure_id=folder.strip().lower() if folder else None,
        notice_uuid=notice_id.strip().lower() if notice_id else None,
        notice_version=version.zfill(2) if version and version.isdigit() else version,
        previous_refs=dedupe(previous),
        buyer_name=_i18n_text(notice.get("buyer-name")),
        buyer_siret=next((s for s in (clean_siret(b) for b in buyer_ids) if s), None)
        if not countries or countries[0] == "FRA"
        else None,
        contract_type=next((_CONTRACT_TYPES[n] for n in natures if n in _CONTRACT_TYPES), None),
        procedure_type=procedure,
        deadline_at=min(deadlines) if deadlines else None,
        estimated_value=estimated,
        currency=currency,
        departments=dedupe(departments),
        nuts=dedupe(places),
        cpv=dedupe(c for c in (normalize_cpv(v) for v in _strings(notice.get("classification-cpv"))) if c),
        lots=tuple(lots),
        awards=tuple(ParsedAward(lot=None, winner_name=w) for w in dedupe(winners)),
        url=url,
        warnings=tuple(warnings),
    )


def _deadline(
    date_value: str, time_value: str | None, zone: dt.tzinfo | None, warnings: list[str]
) -> dt.datetime | None:
    parts = split_datetime(date_value)
    if parts is None:
        return None
    date, inline_time, date_offset = parts
    time_parts = split_time(time_value) if time_value else None
    time = time_parts[0] if time_parts else inline_time
    if time is None:
        warnings.append("deadline without a time: midnight assumed")
        time = dt.time(0, 0)
    if zone is not None:
        return wall_clock(date, time, zone)
    offset = (time_parts[1] if time_parts else None) or date_offset or dt.UTC
    return dt.datetime.combine(date, time, tzinfo=offset)
