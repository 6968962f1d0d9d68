"""BOAMP (Bulletin officiel des annonces des marchés publics), through the DILA's
OpenDataSoft portal (Explore API v2.1, dataset ``boamp``).

Access
    ``GET {base}/catalog/datasets/boamp/records`` on
    ``https://boamp-datadila.opendatasoft.com/api/explore/v2.1``; no key. Licence
    Ouverte 2.0, attribution "DILA — BOAMP". Quotas per portal (HTTP 429 and
    ``X-RateLimit-*`` headers): the client backs off and honours ``Retry-After``.
Paging
    ``where`` = publication-date window (``dateparution >= date'…' and dateparution
    <= date'…'``) and ``code_departement in ("77","91")`` (the flat field drops
    leading zeros, so "02" is also sent as "2"); always ``order_by=dateparution
    asc, idweb asc`` (the default order is oldest-first but not stable);
    ``limit`` ≤ 100 and ``offset`` with ``offset + limit ≤ 10 000``. When a window
    counts more than 10 000 records it is split in two halves by date, recursively;
    a single day still over the cap is split by ``famille`` (values from a
    ``group_by=famille`` query); a famille still over the cap is fetched up to the
    cap and its last page carries ``partial_reason`` so the caller marks the run
    partial (the ``/exports`` endpoint has no cap: use it for such a backfill).
    Records are deduplicated on ``idweb`` within a run.
Cadence
    BOAMP publishes twice a day, 7 days a week: run daily over the last 2–3 days
    (overlap) and upsert on ``idweb``; compare records received with
    ``FetchPage.total_count`` to detect incomplete runs.
Caveats (``docs/data-sources.md`` §1.3–1.6)
    ``donnees``/``gestion`` are JSON *strings* in three shapes (legacy
    ``Boamp_v230``, French "3.2.5" ``MAPA``/``FNSimple``, ``EFORMS``), dispatched on
    the first key; the flat ``datelimitereponse`` of 3.2.5 records is Paris clock
    time labelled UTC; ``code_departement`` loses leading zeros; texts carry HTML
    entities, Windows-1252 code points and newlines; the dataset schema drifts
    (unknown flat fields are ignored).

Parsing rules
    * payload = one record as JSON; ``source_ref`` = ``idweb``;
    * nature from ``nature`` (``APPEL_OFFRE`` → initial, ``RECTIFICATIF`` →
      corrigendum, ``ATTRIBUTION`` → award, ``ANNULATION`` or ``etat``
      ``AVIS_ANNULE`` → cancellation, ``PRE-INFORMATION`` → prior information, else
      other), completed by the ``donnees`` kind (``rectificatif``/``attribution``);
    * ``previous_refs`` from ``annonce_lie``, ``…avisInitial.idWeb`` and any idweb
      found in ``annonces_anterieures`` (and legacy ``ANNONCE_ANTERIEUR``);
    * deadline: ``donnees`` first, then ``gestion``, then the flat field; all read
      as **Paris wall-clock time** (overseas zone for a single overseas
      département), offsets ignored; the flat field of legacy (``Boamp_v230``)
      records was converted from "+01:00" to UTC, so it is shifted back by one
      hour before being read as wall-clock time;
    * départements from ``gestion`` ``DEP_PUBLICATION`` ("02"), else the flat
      field normalised ("2" → "02");
    * estimated value: ``valeur``, or the high bound of ``fourchette`` (warning);
      "0.00" means unknown;
    * awards: winners found in the ``attribution`` section (name, SIRET, amount,
      lot), then the flat ``titulaire`` names not already found.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import json
from collections.abc import Callable, Iterator, Mapping
from decimal import Decimal
from typing import Any

from lxml import etree

from .base import (
    ContractType,
    FetchError,
    FetchPage,
    Nature,
    ParsedAward,
    ParsedLot,
    ParsedNotice,
    ParseError,
    QueryError,
    RawRecord,
)
from .boamp_xml import PROCEDURE_TYPES, parse_annonce
from .eforms import NS as EFORMS_NS
from .eforms import ROOT_NAMESPACES as EFORMS_ROOTS
from .eforms import parse_eforms_element
from .http import HttpClient, Reply
from .text import (
    PARIS,
    as_list,
    clean_multiline,
    clean_siret,
    clean_text,
    cpvs_in_text,
    dedupe,
    dig,
    first_key,
    fold,
    french_zone,
    mapping,
    normalize_cpv,
    normalize_department,
    normalize_idweb,
    parse_date,
    parse_local_deadline,
    positive_amount,
    split_datetime,
    split_lot_label,
    text_of,
    wall_clock,
)
from .xmlutil import element_from_json

BOAMP_BASE_URL = "https://boamp-datadila.opendatasoft.com/api/explore/v2.1"
MAX_PAGE_SIZE = 100
OFFSET_CAP = 10_000  # offset + limit must stay ≤ 10 000 on the records endpoint

_NATURES = {
    "APPEL_OFFRE": Nature.INITIAL,
    "RECTIFICATIF": Nature.CORRIGENDUM,
    "ATTRIBUTION": Nature.AWARD,
    "ANNULATION": Nature.CANCELLATION,
    "PRE-INFORMATION": Nature.PRIOR_INFORMATION,
}
_CONTRACT_TYPES = {
    "travaux": ContractType.WORKS,
    "services": ContractType.SERVICES,
    "service": ContractType.SERVICES,
    "fournitures": ContractType.SUPPLIES,
    "fourniture": ContractType.SUPPLIES,
}
_LEGACY_KEYS = frozenset(
    {
        "IDENTITE",
        "TYPE_ORGANISME",
        "TYPE_POUVOIR_ADJUDICATEUR",
        "ACTIVITE_PRINCIPALE",
        "OBJET",
        "PROCEDURE",
        "ATTRIBUTION",
        "CONDITION_DELAI",
        "RENSEIGNEMENTS_COMPLEMENTAIRES",
    }
)
_DEADLINE_KEYS = (
    "dateReceptionOffres",
    "receptionOffres",
    "dateReceptionCandidatures",
    "receptionCandidatures",
)
_WINNER_NAME_KEYS = ("denomination", "nomOfficiel", "raisonSociale", "nom", "nomTitulaire", "libelle")
_UNSUCCESSFUL_KEYS = ("sansSuite", "infructueux", "nonAttribue", "nonAttribution")
_LOT_KEYS = ("numLot", "numeroLot", "numLots", "num", "numero", "lot")


# ============================================================================ fetching


class BoampSource:
    """Fetch and parse BOAMP records for a set of départements."""

    name: str = "boamp"

    def __init__(
        self,
        client: HttpClient,
        base_url: str = BOAMP_BASE_URL,
        departments: tuple[str, ...] = ("77", "91"),
        page_size: int = 100,
        *,
        dataset: str = "boamp",
        offset_cap: int = OFFSET_CAP,
        now: Callable[[], dt.datetime] | None = None,
    ) -> None:
        if not 1 <= page_size <= MAX_PAGE_SIZE:
            raise ValueError(f"page_size must be between 1 and {MAX_PAGE_SIZE}")
        normalized = [normalize_department(d) for d in departments]
        if not normalized or any(d is None for d in normalized):
            raise ValueError(f"invalid départements: {departments!r}")
        self.client = client
        self.base_url = base_url.rstrip("/")
        self.departments = tuple(d for d in normalized if d)
        self.page_size = page_size
        self.dataset = dataset
        self.offset_cap = offset_cap
        self._now = now or (lambda: dt.datetime.now(dt.UTC))
        self._seen: set[str] = set()

    @property
    def records_url(self) -> str:
        return f"{self.base_url}/catalog/datasets/{self.dataset}/records"

    def department_filter(self) -> str:
        codes: list[str] = []
        for code in self.departments:
            codes.append(code)
            if code.startswith("0"):
                codes.append(code[1:])  # the flat field drops leading zeros
        return "code_departement in (" + ",".join(f'"{c}"' for c in dedupe(codes)) + ")"

    def where(self, start: dt.date, end: dt.date, scope: str | None = None) -> str:
        clauses = [
            f"dateparution >= date'{start.isoformat()}'",
            f"dateparution <= date'{end.isoformat()}'",
            self.department_filter(),
        ]
        if scope:
            clauses.append(scope)
        return " and ".join(clauses)

    def fetch(self, since: dt.date, until: dt.date) -> Iterator[FetchPage]:
        """Pages of records published in ``[since, until]``, window by window."""
        if since > until:
            raise ValueError("since must not be after until")
        self._seen = set()
        yield from self._fetch_window(since, until)

    def parse(self, raw: RawRecord) -> ParsedNotice:
        return parse_boamp_record(raw)

    # ------------------------------------------------------------------ internals

    def _query(self, start: dt.date, end: dt.date, scope: str | None, offset: int) -> Reply:
        params = {
            "where": self.where(start, end, scope),
            "order_by": "dateparution asc, idweb asc",
            "limit": str(self.page_size),
            "offset": str(offset),
        }
        reply = self.client.get_json(self.records_url, params=params)
        if not isinstance(reply.data, Mapping) or not isinstance(reply.data.get("results"), list):
            raise FetchError(
                f"unexpected BOAMP response shape (no 'results' list) from {reply.url}",
                status=reply.status,
                url=reply.url,
            )
        return reply

    def _fetch_window(self, start: dt.date, end: dt.date) -> Iterator[FetchPage]:
        first = self._query(start, end, None, 0)
        total = _total_count(first.data)
        if total is not None and total > self.offset_cap:
            if start < end:
                middle = start + (end - start) // 2
                yield from self._fetch_window(start, middle)
                yield from self._fetch_window(middle + dt.timedelta(days=1), end)
            else:
                yield from self._fetch_day_by_famille(start, total)
            return
        yield from self._pages(start, end, None, first)

    def _fetch_day_by_famille(self, day: dt.date, day_total: int) -> Iterator[FetchPage]:
        try:
            familles = self._familles(day)
        except QueryError:
            familles = None
        if not familles:
            first = self._query(day, day, None, 0)
            yield from self._pages(day, day, None, first)
            return
        for famille in familles:
            scope = "famille is null" if famille is None else f'famille="{famille}"'
            first = self._query(day, day, scope, 0)
            yield from self._pages(day, day, scope, first)

    def _familles(self, day: dt.date) -> list[str | None]:
        params = {
            "select": "famille, count(*) as n",
            "where": self.where(day, day),
            "group_by": "famille",
            "limit": "100",
        }
        reply = self.client.get_json(self.records_url, params=params)
        results = reply.data.get("results") if isinstance(reply.data, Mapping) else None
        familles: list[str | None] = []
        for row in as_list(results):
            if isinstance(row, Mapping):
                value = row.get("famille")
                familles.append(str(value) if value not in (None, "") else None)
        return familles

    def _pages(self, start: dt.date, end: dt.date, scope: str | None, first: Reply) -> Iterator[FetchPage]:
        reply = first
        offset = 0
        while True:
            data = reply.data
            total = _total_count(data)
            results = data["results"]
            offset += len(results)
            records = [r for r in (self._raw(item, reply.url) for item in results) if r is not None]
            reached_end = not results or (total is not None and offset >= total)
            capped = not reached_end and offset + self.page_size > self.offset_cap
            partial = None
            if capped:
                window = start.isoformat() if start == end else f"{start.isoformat()}..{end.isoformat()}"
                partial = (
                    f"BOAMP {window}{' ' + scope if scope else ''}: {total} records counted but only "
                    f"{offset} can be read through the records API (offset + limit ≤ {self.offset_cap}); "
                    "the rest needs the exports endpoint"
                )
            yield FetchPage(
                records=records, total_count=total, window=(start, end), scope=scope, partial_reason=partial
            )
            if reached_end or capped:
                return
            reply = self._query(start, end, scope, offset)

    def _raw(self, item: Any, url: str) -> RawRecord | None:
        if not isinstance(item, Mapping):
            return None
        payload = json.dumps(item, ensure_ascii=False).encode("utf-8")
        ref = normalize_idweb(item.get("idweb")) or normalize_idweb(item.get("id"))
        if ref is None:
            ref = "sha256:" + hashlib.sha256(payload).hexdigest()[:32]
        if ref in self._seen:
            return None
        self._seen.add(ref)
        return RawRecord(
            source=self.name,
            source_ref=ref,
            payload=payload,
            content_type="application/json",
            fetched_at=self._now(),
            url=url,
        )


def _total_count(data: Any) -> int | None:
    value = data.get("total_count") if isinstance(data, Mapping) else None
    try:
        return int(value) if value is not None else None
    except (TypeError, ValueError):
        return None


# ============================================================================= parsing


def parse_boamp_record(raw: RawRecord) -> ParsedNotice:
    """Parse one raw BOAMP record (the JSON object of one API record)."""
    try:
        record = json.loads(raw.payload)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ParseError(f"payload is not valid JSON: {exc}") from exc
    if not isinstance(record, dict):
        raise ParseError(f"payload is not a JSON object but {type(record).__name__}")
    return parse_boamp_dict(record, source=raw.source or "boamp")


def _load_embedded(record: Mapping[str, Any], key: str) -> Any:
    value = record.get(key)
    if value is None or value == "":
        return None
    if isinstance(value, (dict, list)):
        return value
    if not isinstance(value, str):
        raise ParseError(f"{key}: expected a JSON string, got {type(value).__name__}")
    try:
        return json.loads(value)
    except ValueError as exc:
        raise ParseError(f"{key}: invalid JSON ({exc})") from exc


def parse_boamp_dict(record: Mapping[str, Any], *, source: str = "boamp") -> ParsedNotice:
    idweb = normalize_idweb(record.get("idweb")) or normalize_idweb(record.get("id"))
    if idweb is None:
        raise ParseError("record without a valid idweb")
    warnings: list[str] = []

    donnees = _load_embedded(record, "donnees")
    if isinstance(donnees, Mapping) and list(donnees) == ["DONNEES"]:
        donnees = donnees["DONNEES"]  # legacy element kept as the root
    try:
        gestion = _load_embedded(record, "gestion")
    except ParseError as exc:
        warnings.append(f"gestion ignored: {exc.reason}")
        gestion = None
    gestion = mapping(gestion)
    if list(gestion) == ["GESTION"]:
        gestion = mapping(gestion["GESTION"])

    shape = _shape(donnees)
    base = _parse_flat(record, idweb, gestion, shape, warnings)
    if shape == "3.2.5" and isinstance(donnees, Mapping):
        notice = _merge_french(base, record, donnees, warnings)
    elif shape == "legacy":
        notice = _merge_legacy(base, donnees, gestion, warnings)
    elif shape == "eforms" and isinstance(donnees, Mapping):
        notice = _merge_eforms(base, record, donnees, warnings)
    else:
        warnings.append("no donnees: notice built from the flat fields only")
        notice = base
    if not notice.title:
        raise ParseError("record without a title (objet, RESUME_OBJET, intitule)")
    return dataclasses.replace(
        notice, source=source, warnings=tuple(dict.fromkeys(notice.warnings + tuple(warnings)))
    )


def _shape(donnees: Any) -> str | None:
    if donnees is None:
        return None
    if not isinstance(donnees, Mapping):
        raise ParseError(f"forme de donnees inconnue: {type(donnees).__name__} instead of an object")
    if not donnees:
        raise ParseError("forme de donnees inconnue: empty object")
    key = next(iter(donnees))
    if key in ("MAPA", "FNSimple"):
        return "3.2.5"
    if key == "EFORMS":
        return "eforms"
    if key in _LEGACY_KEYS or "IDENTITE" in donnees:
        return "legacy"
    raise ParseError(f"forme de donnees inconnue: {key}")


# --------------------------------------------------------------------------- flat fields


def _departments(record: Mapping[str, Any], gestion: Mapping[str, Any]) -> list[str]:
    from_gestion = [normalize_department(d) for d in as_list(dig(gestion, "INDEXATION", "DEP_PUBLICATION"))]
    departments = [d for d in from_gestion if d]
    if not departments:
        departments = [
            d for d in (normalize_department(c) for c in as_list(record.get("code_departement"))) if d
        ]
    return list(dedupe(departments))


def _nature(record: Mapping[str, Any], gestion: Mapping[str, Any]) -> tuple[Nature, bool]:
    code = str(record.get("nature") or first_key(dig(gestion, "REFERENCE", "TYPE_AVIS", "NATURE")) or "")
    nature = _NATURES.get(code.upper(), Nature.OTHER)
    etat = str(record.get("etat") or "").upper()
    status = (first_key(dig(gestion, "REFERENCE", "TYPE_AVIS", "STATUT")) or "").upper()
    if nature is Nature.INITIAL and status == "RECTIFICATIF":
        nature = Nature.CORRIGENDUM
    cancelled = (
        nature is Nature.CANCELLATION or etat == "AVIS_ANNULE" or status in ("ANNULATION", "AVIS_ANNULE")
    )
    return (Nature.CANCELLATION if cancelled else nature), cancelled


def _flat_deadline(record: Mapping[str, Any], zone: dt.tzinfo, legacy: bool) -> dt.datetime | None:
    value = record.get("datelimitereponse")
    parts = split_datetime(value)
    if parts is None:
        return None
    date, time, offset = parts
    if time is None:
        return wall_clock(date, dt.time(0, 0), zone)
    if legacy and offset is not None:
        # legacy values were "+01:00" whatever the season, converted to UTC by ODS
        shifted = dt.datetime.combine(date, time, tzinfo=offset).astimezone(
            dt.timezone(dt.timedelta(hours=1))
        )
        return wall_clock(shifted.date(), shifted.time(), zone)
    return wall_clock(date, time, zone)


def _zone(departments: list[str]) -> dt.tzinfo:
    return french_zone(departments[0]) if len(departments) == 1 else PARIS


def _parse_flat(
    record: Mapping[str, Any], idweb: str, gestion: Mapping[str, Any], shape: str | None, warnings: list[str]
) -> ParsedNotice:
    departments = _departments(record, gestion)
    zone = _zone(departments)
    nature, cancelled = _nature(record, gestion)
    indexation = dig(gestion, "INDEXATION") or {}
    schema = str(record.get("source_schema") or dig(indexation, "SCHEMA") or "")
    legacy = schema.lower().startswith("boamp_v") or shape == "legacy"

    deadline = parse_local_deadline(dig(indexation, "DATE_LIMITE_REPONSE"), zone)
    if deadline is None:
        deadline = _flat_deadline(record, zone, legacy)

    buyer = clean_text(record.get("nomacheteur")) or clean_text(dig(indexation, "NOMORGANISME"))
    type_marche = [str(t).lower() for t in as_list(record.get("type_marche"))]
    contract_type = next((_CONTRACT_TYPES[t] for t in type_marche if t in _CONTRACT_TYPES), None)
    if contract_type is None:
        contract_type = _CONTRACT_TYPES.get((first_key(dig(indexation, "NATURE_MARCHE")) or "").lower())
    procedure_code = str(record.get("type_procedure") or first_key(dig(indexation, "TYPE_PROCEDURE")) or "")
    folder = clean_text(record.get("contractfolderid"))

    return ParsedNotice(
        source="boamp",
        source_ref=idweb,
        nature=nature,
        title=clean_text(record.get("objet")) or clean_text(dig(indexation, "RESUME_OBJET")) or "",
        published_at=parse_date(record.get("dateparution"))
        or parse_date(dig(indexation, "DATE_PUBLICATION")),
        procedure_id=folder.lower() if folder else None,
        previous_refs=dedupe(r for r in _flat_previous_refs(record, warnings) if r != idweb),
        buyer_name=buyer,
        contract_type=contract_type,
        procedure_type=PROCEDURE_TYPES.get(procedure_code.upper(), procedure_code.lower() or None),
        deadline_at=deadline,
        departments=tuple(departments),
        url=clean_text(record.get("url_avis")) or f"https://www.boamp.fr/pages/avis/?q=idweb:{idweb}",
        is_cancelled=cancelled,
        awards=tuple(ParsedAward(lot=None, winner_name=n) for n in _flat_winners(record)),
    )


def _flat_previous_refs(record: Mapping[str, Any], warnings: list[str]) -> list[str]:
    refs = [r for r in (normalize_idweb(v) for v in as_list(record.get("annonce_lie"))) if r]
    for key in ("annonces_anterieures", "annonces_anterieures_schema_v110", "annonce_reference_schema_v110"):
        value = record.get(key)
        if value in (None, ""):
            continue
        if isinstance(value, str):
            try:
                value = json.loads(value)
            except ValueError:
                found = normalize_idweb(value)
                if found:
                    refs.append(found)
                else:
                    warnings.append(f"{key}: not JSON, ignored")
                continue
        refs += _idwebs_in(value)
    return refs


def _idwebs_in(value: Any) -> list[str]:
    """idweb values under any key spelled like ``idweb`` (``IDWEB``, ``idWeb``…)."""
    found: list[str] = []
    if isinstance(value, Mapping):
        for key, item in value.items():
            if str(key).lower().lstrip("@") in ("idweb", "id_web"):
                found += [r for r in (normalize_idweb(v) for v in as_list(item)) if r]
            else:
                found += _idwebs_in(item)
    elif isinstance(value, list):
        for item in value:
            found += _idwebs_in(item)
    return found


def _flat_winners(record: Mapping[str, Any]) -> list[str]:
    names: list[str] = []
    seen: set[str] = set()
    for value in as_list(record.get("titulaire")):
        name = clean_text(value)
        if name and fold(name) not in seen:
            seen.add(fold(name))
            names.append(name)
    return names


# ------------------------------------------------------------------------ 3.2.5 schema


def _merge_french(
    base: ParsedNotice, record: Mapping[str, Any], donnees: Mapping[str, Any], warnings: list[str]
) -> ParsedNotice:
    root_key = next(iter(donnees))
    body = donnees[root_key]
    if not isinstance(body, Mapping):
        raise ParseError(f"donnees.{root_key} is not an object")
    initial = mapping(body.get("initial"))
    rectificatif = mapping(body.get("rectificatif"))
    attribution = mapping(body.get("attribution"))
    organisme = mapping(body.get("organisme"))
    sections = [s for s in (initial, body, rectificatif, attribution) if s]

    def lookup(*path: str) -> Any:
        for section in sections:
            value = dig(section, *path)
            if value not in (None, "", {}, []):
                return value
        return None

    nature_marche = mapping(lookup("natureMarche"))
    communication = mapping(lookup("communication"))
    procedure = mapping(lookup("procedure"))

    nature, cancelled = base.nature, base.is_cancelled
    if nature in (Nature.INITIAL, Nature.OTHER) and not cancelled:
        if rectificatif:
            nature = Nature.CORRIGENDUM
        elif attribution:
            nature = Nature.AWARD

    previous = list(base.previous_refs)
    for section in (rectificatif, attribution, initial):
        previous += [
            r for r in (normalize_idweb(v) for v in as_list(dig(section, "avisInitial", "idWeb"))) if r
        ]
        previous += _idwebs_in(dig(section, "avisInitial"))

    zone = _zone(list(base.departments))
    if rectificatif:
        # a rectificatif may quote the old and the new deadline: the indexed one (gestion,
        # flat field) is the current one; the donnees are only a fallback
        deadline = base.deadline_at or _section_deadline(rectificatif, zone)
    else:
        deadline = _section_deadline(initial, zone) or _section_deadline(body, zone) or base.deadline_at

    buyer_from_donnees = clean_text(organisme.get("nomOfficiel")) or clean_text(
        organisme.get("acheteurPublic")
    )
    raw_buyer = text_of(record.get("nomacheteur")) or ""
    buyer = base.buyer_name
    if buyer is None or ("\n" in raw_buyer and buyer_from_donnees):
        buyer = buyer_from_donnees
    siret_type = first_key(organisme.get("typeIdentificationNational"))
    siret = (
        clean_siret(organisme.get("codeIdentificationNational")) if siret_type in (None, "siret") else None
    )

    title = (
        base.title
        or clean_text(nature_marche.get("intitule"))
        or clean_text(dig(initial, "description", "objet"))
        or clean_text(lookup("objet"))
    )
    description = clean_multiline(nature_marche.get("description")) or clean_multiline(
        lookup("description", "objet")
    )

    contract_type = None
    for candidate in (nature_marche.get("natureMarche"), nature_marche, lookup("natureMarche")):
        key = (first_key(candidate) or "").lower()
        if key in _CONTRACT_TYPES:
            contract_type = _CONTRACT_TYPES[key]
            break
    contract_type = contract_type or base.contract_type

    main_cpv = normalize_cpv(dig(nature_marche, "codeCPV", "objetPrincipal", "classPrincipale"))
    cpvs = [main_cpv] if main_cpv else []
    cpvs += _cpv_list(dig(nature_marche, "codeCPV", "objetComplementaire"))
    for text in (
        text_of(procedure.get("categorieAcheteur")),
        text_of(nature_marche.get("description")),
        text_of(nature_marche.get("intitule")),
    ):
        cpvs += cpvs_in_text(text)

    estimated, currency = _estimated_value(nature_marche.get("valeurEstimee"), warnings, "natureMarche")

    lots = _french_lots(lookup("lots"), warnings)
    for lot in lots:
        cpvs += list(lot.cpv)

    awards = _french_awards(attribution, warnings)
    flat_names = {fold(a.winner_name or "") for a in awards}
    awards += [a for a in base.awards if fold(a.winner_name or "") not in flat_names]

    dce_url = (
        clean_text(dig(communication, "urlDocConsul"))
        or clean_text(dig(communication, "urlProfilAch"))
        or clean_text(lookup("adressesComplt", "document", "coord", "url"))
        or clean_text(organisme.get("urlProfilAcheteur"))
    )
    internal_ref = clean_text(dig(communication, "identifiantInterne")) or clean_text(
        lookup("renseignements", "idMarche")
    )

    return dataclasses.replace(
        base,
        nature=nature,
        title=title or "",
        previous_refs=dedupe(r for r in previous if r != base.source_ref),
        buyer_name=buyer,
        buyer_siret=siret,
        buyer_internal_ref=internal_ref,
        description=description,
        contract_type=contract_type,
        deadline_at=deadline,
        estimated_value=estimated,
        currency=currency,
        cpv=dedupe(cpvs),
        lots=tuple(lots),
        awards=tuple(_dedupe_awards(awards)),
        dce_url=dce_url,
    )


def _section_deadline(section: Mapping[str, Any], zone: dt.tzinfo) -> dt.datetime | None:
    """The earliest of the reception deadlines (offers, applications) found in a section."""
    found = [parse_local_deadline(_find_key(section, key), zone) for key in _DEADLINE_KEYS]
    deadlines = [d for d in found if d is not None]
    return min(deadlines) if deadlines else None


def _find_key(value: Any, key: str) -> Any:
    """First value of ``key`` anywhere under ``value`` (depth-first)."""
    if isinstance(value, Mapping):
        if key in value and value[key] not in (None, ""):
            return value[key]
        for item in value.values():
            found = _find_key(item, key)
            if found is not None:
                return found
    elif isinstance(value, list):
        for item in value:
            found = _find_key(item, key)
            if found is not None:
                return found
    return None


def _cpv_list(value: Any) -> list[str]:
    out = []
    for item in as_list(value):
        code = normalize_cpv(item.get("classPrincipale") if isinstance(item, Mapping) else item)
        if code:
            out.append(code)
    return out


def _estimated_value(value: Any, warnings: list[str], where: str) -> tuple[Decimal | None, str | None]:
    if not isinstance(value, Mapping):
        return positive_amount(value), None
    currency = text_of(value.get("@devise")) or text_of(value.get("devise"))
    amount = positive_amount(value.get("valeur"))
    if amount is None and isinstance(value.get("fourchette"), Mapping):
        low = positive_amount(value["fourchette"].get("valeurBasse"))
        high = positive_amount(value["fourchette"].get("valeurHaute"))
        amount = high or low
        if high is not None:
            warnings.append(
                f"{where}: estimated value is a range {low or '?'}–{high} {currency or ''}; high bound kept"
            )
    return amount, (currency if amount is not None else None)


def _french_lots(value: Any, warnings: list[str]) -> list[ParsedLot]:
    items = as_list(value.get("lot")) if isinstance(value, Mapping) else as_list(value)
    lots: list[ParsedLot] = []
    inferred = False
    for position, item in enumerate(items, start=1):
        if not isinstance(item, Mapping):
            continue
        description = clean_multiline(item.get("description"))
        title = clean_text(item.get("intitule")) or clean_text(item.get("titre"))
        number = None
        for key in ("numLot", "numeroLot", "num", "numero"):
            number = clean_text(item.get(key))
            if number:
                number = str(int(number)) if number.isdigit() else number
                break
        first_line = (description or "").split("\n", 1)[0] or None
        if not number:
            number, rest = split_lot_label(title or first_line)
            if number is not None and title is None:
                title = rest
        if title is None:
            title = first_line
        if not number:
            number, inferred = str(position), True
        main = normalize_cpv(dig(item, "codeCPV", "objetPrincipal", "classPrincipale"))
        cpvs = ([main] if main else []) + _cpv_list(dig(item, "codeCPV", "objetComplementaire"))
        estimated, _ = _estimated_value(item.get("estimationValeur"), warnings, f"lot {number}")
        lots.append(
            ParsedLot(
                number=number,
                title=title,
                description=description,
                cpv=dedupe(cpvs),
                estimated_value=estimated,
            )
        )
    if inferred and len(lots) > 1:
        warnings.append("lot numbers inferred from their order (none written in the lot descriptions)")
    return lots


def _french_awards(attribution: Mapping[str, Any], warnings: list[str]) -> list[ParsedAward]:
    awards: list[ParsedAward] = []

    def lot_of(node: Mapping[str, Any], inherited: str | None) -> str | None:
        for key in _LOT_KEYS:
            value = node.get(key)
            if isinstance(value, (str, int)) and str(value).strip():
                number, _ = split_lot_label(str(value))
                raw = str(value).strip()
                return number or (str(int(raw)) if raw.isdigit() else raw)
        return inherited

    def amount_of(*nodes: Any) -> tuple[Decimal | None, str | None]:
        for node in nodes:
            if not isinstance(node, Mapping):
                continue
            for key in ("montant", "montantHT", "valeur", "valeurTotale"):
                if key in node:
                    value = node[key]
                    if isinstance(value, Mapping):
                        amount = positive_amount(value.get("valeur") or value.get("#text"))
                        currency = text_of(value.get("@devise")) or text_of(node.get("@devise"))
                    else:
                        amount, currency = positive_amount(value), text_of(node.get("@devise"))
                    if amount is not None:
                        return amount, currency
        return None, None

    def walk(node: Any, lot: str | None, parent: Any) -> None:
        if isinstance(node, list):
            for item in node:
                walk(item, lot, parent)
            return
        if not isinstance(node, Mapping):
            return
        lot = lot_of(node, lot)
        if any(key in node for key in _UNSUCCESSFUL_KEYS):
            awards.append(ParsedAward(lot=lot, winner_name=None, unsuccessful=True))
        for key, value in node.items():
            if key in ("titulaire", "titulaires", "attributaire"):
                for item in as_list(
                    value.get("titulaire") if isinstance(value, Mapping) and "titulaire" in value else value
                ):
                    awards.append(_winner(item, lot, node))
            elif key != "avisInitial":
                walk(value, lot, node)

    def _winner(item: Any, lot: str | None, holder: Mapping[str, Any]) -> ParsedAward:
        if isinstance(item, Mapping):
            name = next((clean_text(item.get(k)) for k in _WINNER_NAME_KEYS if clean_text(item.get(k))), None)
            siret = clean_siret(item.get("codeIdentificationNational")) or clean_siret(item.get("siret"))
            amount, currency = amount_of(item, holder)
        else:
            name, siret = clean_text(item), None
            amount, currency = amount_of(holder)
        if name is None:
            warnings.append(f"attribution: a winner without a name{' (lot ' + lot + ')' if lot else ''}")
        return ParsedAward(lot=lot, winner_name=name, winner_siret=siret, amount=amount, currency=currency)

    walk(attribution, None, None)
    return awards


def _dedupe_awards(awards: list[ParsedAward]) -> list[ParsedAward]:
    out: list[ParsedAward] = []
    seen: set[tuple[str | None, str, bool]] = set()
    for award in awards:
        key = (award.lot, fold(award.winner_name or ""), award.unsuccessful)
        if key in seen:
            continue
        seen.add(key)
        out.append(award)
    return out


# ------------------------------------------------------------------------------ legacy


def _merge_legacy(
    base: ParsedNotice, donnees: Any, gestion: Mapping[str, Any], warnings: list[str]
) -> ParsedNotice:
    annonce = element_from_json("ANNONCE", {"GESTION": gestion or {}, "DONNEES": donnees})
    if annonce.find("GESTION/REFERENCE/IDWEB") is None:
        reference = annonce.find("GESTION/REFERENCE")
        if reference is None:
            reference = etree.SubElement(annonce.find("GESTION"), "REFERENCE")
            etree.SubElement(reference, "IDWEB").text = base.source_ref
    legacy = parse_annonce(annonce, source="boamp")
    departments = base.departments or legacy.departments
    zone = _zone(list(departments))
    deadline = legacy.deadline_at
    if deadline is not None:  # re-read in the zone of the flat départements
        deadline = wall_clock(deadline.date(), deadline.time(), zone)
    flat_names = {fold(a.winner_name or "") for a in legacy.awards}
    return dataclasses.replace(
        legacy,
        source_ref=base.source_ref,
        nature=base.nature if base.nature is not Nature.OTHER else legacy.nature,
        is_cancelled=base.is_cancelled or legacy.is_cancelled,
        title=base.title or legacy.title,
        published_at=base.published_at or legacy.published_at,
        procedure_id=base.procedure_id,
        previous_refs=dedupe(list(base.previous_refs) + list(legacy.previous_refs)),
        buyer_name=legacy.buyer_name or base.buyer_name,
        contract_type=legacy.contract_type or base.contract_type,
        procedure_type=legacy.procedure_type or base.procedure_type,
        deadline_at=deadline or base.deadline_at,
        departments=departments,
        url=base.url,
        awards=tuple(legacy.awards)
        + tuple(a for a in base.awards if fold(a.winner_name or "") not in flat_names),
        warnings=legacy.warnings,
    )


# ------------------------------------------------------------------------------ eForms


def _merge_eforms(
    base: ParsedNotice, record: Mapping[str, Any], donnees: Mapping[str, Any], warnings: list[str]
) -> ParsedNotice:
    body = donnees.get("EFORMS")
    if not isinstance(body, Mapping) or not body:
        raise ParseError("donnees.EFORMS is empty")
    root_name = next(iter(body))
    local = root_name.split(":", 1)[-1]
    if local not in EFORMS_ROOTS:
        raise ParseError(f"forme de donnees inconnue: EFORMS.{root_name}")
    root = element_from_json(local, body[root_name], EFORMS_NS, default_namespace=EFORMS_ROOTS[local])
    notice = parse_eforms_element(root, source="boamp", source_ref=base.source_ref)
    flat_names = {fold(a.winner_name or "") for a in notice.awards}
    return dataclasses.replace(
        notice,
        nature=base.nature if base.nature is not Nature.OTHER else notice.nature,
        is_cancelled=base.is_cancelled or notice.is_cancelled,
        title=base.title or notice.title,
        published_at=base.published_at or notice.published_at,
        procedure_id=notice.procedure_id or base.procedure_id,
        previous_refs=dedupe(list(base.previous_refs) + list(notice.previous_refs)),
        buyer_name=notice.buyer_name or base.buyer_name,
        deadline_at=notice.deadline_at or base.deadline_at,
        departments=base.departments or notice.departments,
        url=base.url,
        awards=notice.awards + tuple(a for a in base.awards if fold(a.winner_name or "") not in flat_names),
    )
