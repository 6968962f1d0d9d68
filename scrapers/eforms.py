"""Parser of eForms UBL notices (TED since 2023, BOAMP "JOUE" notices).

Reads ``ContractNotice``, ``ContractAwardNotice`` and ``PriorInformationNotice``
documents, including change notices (``efac:Changes``), contract modifications
(``can-modif``), design contests and PINs used as calls for competition. See
``docs/data-sources.md`` §2.6 for the XPaths.

Rules chosen here
-----------------

* **Nature**: ``efac:Changes`` → corrigendum, or cancellation when a change
  reason is ``cancel``; otherwise by the form type (``@listName`` of
  ``cbc:NoticeTypeCode``): ``competition`` → initial, ``result`` → award,
  ``planning`` → prior information, ``cont-modif`` and ``dir-awa-pre`` (VEAT) →
  other; when absent, by notice subtype (1–9, 10–24, 25–28, 29–37, 38–40).
* **previous_refs**: ``efbc:ChangedNoticeIdentifier`` as written
  (``"<notice-uuid>-<version>"``), or — for a contract modification whose scheme is
  ``ojs-notice-id`` — the OJ S publication number without zero padding.
* **Lots**: ``LOT-0001`` → ``"1"``. ``LOT-0000`` (the procedure itself, used when
  the contract is not divided into lots) is not listed as a lot: its data go to
  the notice and its awards get ``lot=None``.
* **Deadlines**: ``cac:TenderSubmissionDeadlinePeriod``, else
  ``cac:ParticipationRequestReceptionPeriod``, else the PIN's
  ``efac:InterestExpressionReceptionPeriod``. The date part of ``cbc:EndDate`` and
  the clock time of ``cbc:EndTime`` are read as **wall-clock time of the buyer's
  country** and the written UTC offsets are ignored (they are often wrong:
  ``2024-02-28+02:00`` in winter, ``16:00:00Z`` for a French 16:00). French buyers
  use Europe/Paris, or the overseas zone of their postcode / NUTS (Guadeloupe,
  Réunion…); other EU/EEA countries their capital's zone; an unknown country
  falls back to the written offset (warning). A missing ``EndTime`` gives midnight
  (warning). The notice deadline is the earliest lot deadline; lots keep their own
  deadline only when lots differ.
* **Winners**: the 4-hop join ``LotResult → LotTender → TenderingParty → Tenderer →
  Organization``. Winning tenders are those listed by a ``efac:SettledContract``,
  else those ranked 1, else those referenced by a ``selec-w`` lot result. The lot of
  an award is the tender's own ``efac:TenderLot`` (real notices swap the lot
  results' tender references). In a group of tenderers the amount goes to the
  group leader (or the first tenderer) only. A lot result ``clos-nw`` gives an
  unsuccessful award.
* **Buyer**: the first ``cac:ContractingParty``; SIRET only when a
  ``cbc:CompanyID`` is 14 digits once cleaned.
* **Texts**: FRA first, then ENG, then the first language.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass, field
from decimal import Decimal
from zoneinfo import ZoneInfo

from .base import ContractType, Nature, ParsedAward, ParsedLot, ParsedNotice, ParseError
from .text import (
    COUNTRY_ZONES,
    NUTS3_TO_DEPARTMENT,
    clean_multiline,
    clean_siret,
    clean_text,
    dedupe,
    department_from_postcode,
    french_zone,
    lot_number_from_id,
    normalize_cpv,
    normalize_nuts,
    normalize_publication_number,
    parse_date,
    positive_amount,
    split_datetime,
    split_time,
    wall_clock,
)
from .xmlutil import Element, local_name, parse_xml

NS: dict[str, str] = {
    "cbc": "urn:oasis:names:specification:ubl:schema:xsd:CommonBasicComponents-2",
    "cac": "urn:oasis:names:specification:ubl:schema:xsd:CommonAggregateComponents-2",
    "ext": "urn:oasis:names:specification:ubl:schema:xsd:CommonExtensionComponents-2",
    "efac": "http://data.europa.eu/p27/eforms-ubl-extension-aggregate-components/1",
    "efbc": "http://data.europa.eu/p27/eforms-ubl-extension-basic-components/1",
    "efext": "http://data.europa.eu/p27/eforms-ubl-extensions/1",
}

ROOT_NAMESPACES: dict[str, str] = {
    "ContractNotice": "urn:oasis:names:specification:ubl:schema:xsd:ContractNotice-2",
    "ContractAwardNotice": "urn:oasis:names:specification:ubl:schema:xsd:ContractAwardNotice-2",
    "PriorInformationNotice": "urn:oasis:names:specification:ubl:schema:xsd:PriorInformationNotice-2",
}

EXTENSION = "ext:UBLExtensions/ext:UBLExtension/ext:ExtensionContent/efext:EformsExtension"

_PROCEDURE_TYPES = {
    "open": "open",
    "restricted": "restricted",
    "neg-w-call": "negotiated",
    "neg-wo-call": "negotiated-without-call",
    "comp-dial": "competitive-dialogue",
    "innovation": "innovation-partnership",
    "comp-tend": "competitive-tendering",
    "oth-single": "other-single-stage",
    "oth-mult": "other-multiple-stage",
}

_CONTRACT_TYPES = {
    "works": ContractType.WORKS,
    "supplies": ContractType.SUPPLIES,
    "services": ContractType.SERVICES,
}


def is_eforms_root(root: Element) -> bool:
    return local_name(root) in ROOT_NAMESPACES


def parse_eforms(data: bytes, *, source: str = "eforms", source_ref: str | None = None) -> ParsedNotice:
    """Parse an eForms XML document; :class:`ParseError` if malformed or not eForms."""
    return parse_eforms_element(parse_xml(data), source=source, source_ref=source_ref)


def eforms_reference(root: Element) -> str | None:
    """The notice's key: OJ S publication number (``"47522-2024"``) or ``"<uuid>-<version>"``."""
    ext = root.find(EXTENSION, NS)
    if ext is not None:
        pub = normalize_publication_number(_text(ext, "efac:Publication/efbc:NoticePublicationID"))
        if pub:
            return pub
    uuid = _notice_uuid(root)
    if uuid is None:
        return None
    version = _text(root, "cbc:VersionID")
    return f"{uuid}-{version}" if version else uuid


# ---------------------------------------------------------------------------- helpers


def _text(element: Element | None, path: str) -> str | None:
    if element is None:
        return None
    found = element.find(path, NS)
    if found is None or found.text is None:
        return None
    value = found.text.strip()
    return value or None


def _texts(element: Element | None, path: str) -> list[str]:
    if element is None:
        return []
    out = []
    for found in element.findall(path, NS):
        if found.text and found.text.strip():
            out.append(found.text.strip())
    return out


def _lang_text(element: Element | None, path: str, *, multiline: bool = False) -> str | None:
    """The text of ``path`` in French, else English, else the first language."""
    if element is None:
        return None
    candidates = [e for e in element.findall(path, NS) if e.text and e.text.strip()]
    if not candidates:
        return None
    chosen = None
    for lang in ("FRA", "ENG"):
        for candidate in candidates:
            if (candidate.get("languageID") or "").upper() == lang:
                chosen = candidate
                break
        if chosen is not None:
            break
    if chosen is None:
        chosen = candidates[0]
    return clean_multiline(chosen.text) if multiline else clean_text(chosen.text)


def _notice_uuid(root: Element) -> str | None:
    for candidate in root.findall("cbc:ID", NS):
        if candidate.get("schemeName") in (None, "notice-id") and candidate.text and candidate.text.strip():
            return str(candidate.text).strip().lower()
    return None


@dataclass
class _Org:
    name: str | None = None
    company_ids: list[str] = field(default_factory=list)
    nuts: str | None = None
    postcode: str | None = None
    country: str | None = None

    @property
    def siret(self) -> str | None:
        if (self.country or "FRA").upper() != "FRA":
            return None
        for company_id in self.company_ids:
            siret = clean_siret(company_id)
            if siret:
                return siret
        return None


def _organizations(ext: Element | None) -> dict[str, _Org]:
    orgs: dict[str, _Org] = {}
    if ext is None:
        return orgs
    for company in ext.findall("efac:Organizations/efac:Organization/efac:Company", NS):
        org_id = _text(company, "cac:PartyIdentification/cbc:ID")
        if not org_id:
            continue
        orgs[org_id] = _Org(
            name=_lang_text(company, "cac:PartyName/cbc:Name"),
            company_ids=_texts(company, "cac:PartyLegalEntity/cbc:CompanyID"),
            nuts=normalize_nuts(_text(company, "cac:PostalAddress/cbc:CountrySubentityCode")),
            postcode=_text(company, "cac:PostalAddress/cbc:PostalZone"),
            country=_text(company, "cac:PostalAddress/cac:Country/cbc:IdentificationCode"),
        )
    return orgs


def _amount(element: Element | None, path: str) -> tuple[Decimal | None, str | None]:
    if element is None:
        return None, None
    found = element.find(path, NS)
    if found is None:
        return None, None
    return positive_amount(found.text), found.get("currencyID")


def _cpvs(project: Element | None) -> list[str]:
    if project is None:
        return []
    codes = _texts(project, "cac:MainCommodityClassification/cbc:ItemClassificationCode")
    codes += _texts(project, "cac:AdditionalCommodityClassification/cbc:ItemClassificationCode")
    return [c for c in (normalize_cpv(code) for code in codes) if c]


def _place_nuts(project: Element | None) -> list[str]:
    if project is None:
        return []
    codes = _texts(project, "cac:RealizedLocation/cac:Address/cbc:CountrySubentityCode")
    return [c for c in (normalize_nuts(code) for code in codes) if c]


def _deadline_zone(buyer: _Org | None) -> dt.tzinfo | None:
    country = (buyer.country or "").upper() if buyer else ""
    if buyer is not None and (country == "FRA" or (not country and (buyer.nuts or "").startswith("FR"))):
        department = department_from_postcode(buyer.postcode) or NUTS3_TO_DEPARTMENT.get(buyer.nuts or "")
        return french_zone(department)
    if country in COUNTRY_ZONES:
        return ZoneInfo(COUNTRY_ZONES[country])
    return None


def _period_deadline(
    period: Element | None, zone: dt.tzinfo | None, warnings: list[str], what: str
) -> dt.datetime | None:
    if period is None:
        return None
    date_parts = split_datetime(_text(period, "cbc:EndDate"))
    if date_parts is None:
        return None
    date, _, date_offset = date_parts
    time_parts = split_time(_text(period, "cbc:EndTime"))
    if time_parts is None:
        warnings.append(f"{what}: no EndTime, midnight assumed")
        time, time_offset = dt.time(0, 0), None
    else:
        time, time_offset = time_parts
    if zone is not None:
        return wall_clock(date, time, zone)
    offset = time_offset or date_offset
    if offset is None:
        warnings.append(f"{what}: no time zone known for the buyer's country and none written, UTC assumed")
        offset = dt.UTC
    else:
        warnings.append(f"{what}: buyer's country unknown, the written UTC offset was used")
    return dt.datetime.combine(date, time, tzinfo=offset)


def _lot_deadline(lot: Element, zone: dt.tzinfo | None, warnings: list[str], what: str) -> dt.datetime | None:
    process = lot.find("cac:TenderingProcess", NS)
    if process is None:
        return None
    for path in (
        "cac:TenderSubmissionDeadlinePeriod",
        "cac:ParticipationRequestReceptionPeriod",
        f"{EXTENSION}/efac:InterestExpressionReceptionPeriod",
    ):
        deadline = _period_deadline(process.find(path, NS), zone, warnings, what)
        if deadline is not None:
            return deadline
    return None


def _nature(root: Element, ext: Element | None) -> tuple[Nature, bool]:
    changes = ext.find("efac:Changes", NS) if ext is not None else None
    if changes is not None:
        reasons = {r.lower() for r in _texts(changes, "efac:ChangeReason/cbc:ReasonCode")}
        if "cancel" in reasons or "cancel-intent" in reasons:
            return Nature.CANCELLATION, True
        return Nature.CORRIGENDUM, False
    type_code = root.find("cbc:NoticeTypeCode", NS)
    form = (type_code.get("listName") or "").lower() if type_code is not None else ""
    notice_type = (type_code.text or "").strip().lower() if type_code is not None else ""
    if form == "cont-modif" or notice_type == "can-modif":
        return Nature.OTHER, False
    if form == "dir-awa-pre" or notice_type == "veat":
        return Nature.OTHER, False
    if form == "result" or notice_type.startswith("can-"):
        return Nature.AWARD, False
    if form == "competition" or notice_type.startswith(("cn-", "pin-cfc", "qu-sy", "subco")):
        return Nature.INITIAL, False
    if form == "planning" or notice_type.startswith("pin-"):
        return Nature.PRIOR_INFORMATION, False
    subtype = _text(ext, "efac:NoticeSubType/cbc:SubTypeCode") if ext is not None else None
    if subtype and subtype.isdigit():
        number = int(subtype)
        if 1 <= number <= 9:
            return Nature.PRIOR_INFORMATION, False
        if 10 <= number <= 24:
            return Nature.INITIAL, False
        if 29 <= number <= 37:
            return Nature.AWARD, False
    return Nature.OTHER, False


def _previous_refs(ext: Element | None) -> list[str]:
    if ext is None:
        return []
    refs: list[str] = []
    for path in (
        "efac:Changes/efbc:ChangedNoticeIdentifier",
        "efac:ContractModification/efbc:ChangedNoticeIdentifier",
    ):
        for element in ext.findall(path, NS):
            value = (element.text or "").strip()
            if not value:
                continue
            if element.get("schemeName") == "ojs-notice-id":
                value = normalize_publication_number(value) or value
            refs.append(value.lower())
    return refs


# ----------------------------------------------------------------------------- awards


@dataclass
class _Tender:
    tender_id: str
    lot_id: str | None
    party_id: str | None
    amount: Decimal | None
    currency: str | None
    rank: str | None


def _awards(ext: Element | None, orgs: dict[str, _Org], warnings: list[str]) -> list[ParsedAward]:
    result = ext.find("efac:NoticeResult", NS) if ext is not None else None
    if result is None:
        return []
    tenders: dict[str, _Tender] = {}
    for element in result.findall("efac:LotTender", NS):
        tender_id = _text(element, "cbc:ID")
        if not tender_id:
            continue
        amount, currency = _amount(element, "cac:LegalMonetaryTotal/cbc:PayableAmount")
        tenders[tender_id] = _Tender(
            tender_id=tender_id,
            lot_id=_text(element, "efac:TenderLot/cbc:ID"),
            party_id=_text(element, "efac:TenderingParty/cbc:ID"),
            amount=amount,
            currency=currency,
            rank=_text(element, "cbc:RankCode"),
        )
    parties: dict[str, list[tuple[str, bool]]] = {}
    for element in result.findall("efac:TenderingParty", NS):
        party_id = _text(element, "cbc:ID")
        if not party_id:
            continue
        members = []
        for tenderer in element.findall("efac:Tenderer", NS):
            org_id = _text(tenderer, "cbc:ID")
            if org_id:
                lead = (_text(tenderer, "efbc:GroupLeadIndicator") or "").lower() == "true"
                members.append((org_id, lead))
        parties[party_id] = members
    lot_results = []
    for element in result.findall("efac:LotResult", NS):
        lot_results.append(
            (
                _text(element, "efac:TenderLot/cbc:ID"),
                (_text(element, "cbc:TenderResultCode") or "").lower(),
                _texts(element, "efac:LotTender/cbc:ID"),
            )
        )

    winning: list[str] = []
    for contract in result.findall("efac:SettledContract", NS):
        winning += _texts(contract, "efac:LotTender/cbc:ID")
    if not winning:
        winning = [t.tender_id for t in tenders.values() if t.rank == "1"]
    if not winning:
        for _, code, tender_ids in lot_results:
            if code in ("selec-w", ""):
                winning += tender_ids
    winning_ids = set(winning)

    awards: list[ParsedAward] = []
    for tender in tenders.values():
        if tender.tender_id not in winning_ids:
            continue
        lot = _award_lot(tender.lot_id)
        members = parties.get(tender.party_id or "", [])
        if not members:
            warnings.append(f"winning tender {tender.tender_id} has no tenderer organisation")
            awards.append(
                ParsedAward(lot=lot, winner_name=None, amount=tender.amount, currency=tender.currency)
            )
            continue
        lead_index = next((i for i, (_, lead) in enumerate(members) if lead), 0)
        for index, (org_id, _) in enumerate(members):
            org = orgs.get(org_id)
            if org is None:
                warnings.append(f"tenderer {org_id} is not among the organisations")
            awards.append(
                ParsedAward(
                    lot=lot,
                    winner_name=org.name if org else None,
                    winner_siret=org.siret if org else None,
                    amount=tender.amount if index == lead_index else None,
                    currency=tender.currency if index == lead_index else None,
                )
            )
    missing = winning_ids - tenders.keys()
    if missing:
        warnings.append(f"winning tenders not described in the notice: {', '.join(sorted(missing))}")
    for lot_id, code, _ in lot_results:
        if code == "clos-nw":
            awards.append(ParsedAward(lot=_award_lot(lot_id), winner_name=None, unsuccessful=True))
    return awards


def _award_lot(lot_id: str | None) -> str | None:
    number = lot_number_from_id(lot_id)
    return None if number in (None, "0") else number


# ------------------------------------------------------------------------------- main


def parse_eforms_element(
    root: Element, *, source: str = "eforms", source_ref: str | None = None
) -> ParsedNotice:
    """Parse an already-built eForms element (XML file or BOAMP's JSON form)."""
    root_name = local_name(root)
    if root_name not in ROOT_NAMESPACES:
        raise ParseError(f"not an eForms notice: root element <{root_name or root.tag}>")
    warnings: list[str] = []
    ext = root.find(EXTENSION, NS)
    orgs = _organizations(ext)

    buyer_ids = _texts(root, "cac:ContractingParty/cac:Party/cac:PartyIdentification/cbc:ID")
    buyer = orgs.get(buyer_ids[0]) if buyer_ids else None
    if buyer_ids and buyer is None:
        warnings.append(f"buyer {buyer_ids[0]} is not among the organisations")
    zone = _deadline_zone(buyer)

    project = root.find("cac:ProcurementProject", NS)
    nature, cancelled = _nature(root, ext)

    publication_number = normalize_publication_number(
        _text(ext, "efac:Publication/efbc:NoticePublicationID") if ext is not None else None
    )
    published_at = (
        parse_date(_text(ext, "efac:Publication/efbc:PublicationDate")) if ext is not None else None
    )

    title = _lang_text(project, "cbc:Name")
    estimated, currency = _amount(project, "cac:RequestedTenderTotal/cbc:EstimatedOverallContractAmount")
    cpvs = _cpvs(project)
    nuts = _place_nuts(project)
    contract_type = _CONTRACT_TYPES.get((_text(project, "cbc:ProcurementTypeCode") or "").lower())

    lots: list[ParsedLot] = []
    lot_deadlines: list[dt.datetime] = []
    dce_url = None
    whole_lot_value: tuple[Decimal | None, str | None] = (None, None)
    for lot in root.findall("cac:ProcurementProjectLot", NS):
        lot_id = _text(lot, "cbc:ID")
        number = lot_number_from_id(lot_id) or str(len(lots) + 1)
        lot_project = lot.find("cac:ProcurementProject", NS)
        deadline = _lot_deadline(lot, zone, warnings, f"lot {lot_id}")
        if deadline is not None:
            lot_deadlines.append(deadline)
        if dce_url is None:
            dce_url = _text(
                lot,
                "cac:TenderingTerms/cac:CallForTendersDocumentReference/cac:Attachment/cac:ExternalReference/cbc:URI",
            )
        lot_cpvs = _cpvs(lot_project)
        lot_nuts = _place_nuts(lot_project)
        value, value_currency = _amount(
            lot_project, "cac:RequestedTenderTotal/cbc:EstimatedOverallContractAmount"
        )
        cpvs += lot_cpvs
        nuts += lot_nuts
        if contract_type is None:
            contract_type = _CONTRACT_TYPES.get((_text(lot_project, "cbc:ProcurementTypeCode") or "").lower())
        if title is None:
            title = _lang_text(lot_project, "cbc:Name")
        if number == "0":
            whole_lot_value = (value, value_currency)
            continue
        if currency is None and value_currency:
            currency = value_currency
        lots.append(
            ParsedLot(
                number=number,
                title=_lang_text(lot_project, "cbc:Name"),
                description=_lang_text(lot_project, "cbc:Description", multiline=True),
                cpv=dedupe(lot_cpvs),
                estimated_value=value,
                deadline_at=deadline,
                nuts=dedupe(lot_nuts),
            )
        )
    if estimated is None and whole_lot_value[0] is not None:
        estimated, currency = whole_lot_value

    if title is None:
        raise ParseError("eForms notice without a title (cac:ProcurementProject/cbc:Name)")

    deadline_at = min(lot_deadlines) if lot_deadlines else None
    if lots and len(set(lot_deadlines)) <= 1:
        lots = [dataclasses.replace(lot, deadline_at=None) for lot in lots]

    if buyer is not None and buyer.nuts:
        nuts.append(buyer.nuts)
    departments = [NUTS3_TO_DEPARTMENT[n] for n in nuts if n in NUTS3_TO_DEPARTMENT]
    if buyer is not None and (buyer.country or "").upper() == "FRA":
        buyer_department = department_from_postcode(buyer.postcode)
        if buyer_department:
            departments.append(buyer_department)

    notice_uuid = _notice_uuid(root)
    version = _text(root, "cbc:VersionID")
    reference = (
        source_ref
        or publication_number
        or (f"{notice_uuid}-{version}" if notice_uuid and version else notice_uuid)
    )
    if not reference:
        raise ParseError("eForms notice without a notice identifier nor a publication number")

    procedure_code = (_text(root, "cac:TenderingProcess/cbc:ProcedureCode") or "").lower()
    folder = _text(root, "cbc:ContractFolderID")
    buyer_profile = _text(root, "cac:ContractingParty/cbc:BuyerProfileURI")

    return ParsedNotice(
        source=source,
        source_ref=reference,
        nature=nature,
        title=title,
        published_at=published_at,
        procedure_id=folder.lower() if folder else None,
        notice_uuid=notice_uuid,
        notice_version=version,
        previous_refs=dedupe(_previous_refs(ext)),
        buyer_name=buyer.name if buyer else None,
        buyer_siret=buyer.siret if buyer else None,
        buyer_internal_ref=clean_text(_text(project, "cbc:ID")),
        description=_lang_text(project, "cbc:Description", multiline=True),
        contract_type=contract_type,
        procedure_type=_PROCEDURE_TYPES.get(procedure_code, procedure_code or None),
        deadline_at=deadline_at,
        estimated_value=estimated,
        currency=currency,
        departments=dedupe(departments),
        nuts=dedupe(nuts),
        cpv=dedupe(cpvs),
        lots=tuple(lots),
        awards=tuple(_dedupe_awards(_awards(ext, orgs, warnings))),
        url=f"https://ted.europa.eu/fr/notice/-/detail/{publication_number}" if publication_number else None,
        dce_url=dce_url or buyer_profile,
        is_cancelled=cancelled,
        warnings=tuple(dict.fromkeys(warnings)),
    )


def _dedupe_awards(awards: Iterable[ParsedAward]) -> list[ParsedAward]:
    seen: set[ParsedAward] = set()
    out = []
    for award in awards:
        if award not in seen:
            seen.add(award)
            out.append(award)
    return out


__all__ = [
    "NS",
    "ROOT_NAMESPACES",
    "eforms_reference",
    "is_eforms_root",
    "parse_eforms",
    "parse_eforms_element",
]
