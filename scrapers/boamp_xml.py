"""Parser of legacy BOAMP notices in the DILA XML format (schema ``Boamp_v230.xsd``).

Access / cadence: these notices come from the DILA open-data XML dumps
(2016–2017 and earlier), imported as files; the same ``GESTION`` / ``DONNEES``
structure is what the BOAMP API stores, converted to JSON, in the ``gestion`` /
``donnees`` fields of legacy records, so :mod:`scrapers.boamp` rebuilds elements
from that JSON and calls :func:`parse_annonce` too.

Rules
-----

* ``source_ref`` = ``GESTION/REFERENCE/IDWEB``; nature from ``TYPE_AVIS/NATURE``
  (and ``STATUT`` ``RECTIFICATIF`` / ``ANNULATION``);
* ``previous_refs`` = every ``GESTION/MARCHE/ANNONCE_ANTERIEUR/REFERENCE/IDWEB``
  (an attribution may point to the call for tenders *and* its rectificatif);
* deadline = the earliest of ``CONDITION_DELAI/RECEPT_OFFRES`` and
  ``RECEPT_CANDIDAT`` (else ``INDEXATION/DATE_LIMITE_REPONSE``), read as Paris
  wall-clock time: the source writes "+01:00" all year round;
* départements from ``DEP_PUBLICATION`` ("5" → "05");
* winners: each ``ATTRIBUTION/DECISION``'s ``TITULAIRE`` elements, paired by
  position with the ``RENSEIGNEMENT`` elements (amount ``MONTANT``); the
  attribution's ``VALEUR_TOTALE`` is used as the amount when the notice has a
  single winner and no ``MONTANT``. ``SANS_SUITE`` / ``INFRUCTUEUX`` (whole
  attribution or one decision) give an unsuccessful award; decisions without any
  ``TITULAIRE`` give no award but describe the lots;
* lots from ``OBJET/LOTS/LOT`` unless ``DIV_EN_LOTS/NON`` (then their CPV, NUTS and
  value go to the notice), else from the attribution decisions (``NUM_LOT``).
"""

from __future__ import annotations

from decimal import Decimal

from .base import ContractType, Nature, ParsedAward, ParsedLot, ParsedNotice, ParseError
from .text import (
    clean_multiline,
    clean_siret,
    clean_text,
    dedupe,
    french_zone,
    normalize_cpv,
    normalize_department,
    normalize_idweb,
    normalize_nuts,
    parse_date,
    parse_local_deadline,
    positive_amount,
    split_lot_label,
)
from .xmlutil import Element, local_name, parse_xml

BOAMP_NOTICE_URL = "https://www.boamp.fr/pages/avis/?q=idweb:{idweb}"

_NATURES = {
    "APPEL_OFFRE": Nature.INITIAL,
    "RECTIFICATIF": Nature.CORRIGENDUM,
    "ATTRIBUTION": Nature.AWARD,
    "ANNULATION": Nature.CANCELLATION,
    "PRE-INFORMATION": Nature.PRIOR_INFORMATION,
}

_CONTRACT_TYPES = {
    "TRAVAUX": ContractType.WORKS,
    "SERVICE": ContractType.SERVICES,
    "SERVICES": ContractType.SERVICES,
    "FOURNITURES": ContractType.SUPPLIES,
    "FOURNITURE": ContractType.SUPPLIES,
}

PROCEDURE_TYPES = {
    "OUVERT": "open",
    "RESTREINT": "restricted",
    "PROCEDURE_ADAPTE": "adapted",
    "PROCEDURE_ADAPTEE": "adapted",
    "NEGOCIE": "negotiated",
    "NEGOCIEE": "negotiated",
    "PROCEDURE_NEGOCIEE": "negotiated",
    "DIALOGUE_COMPETITIF": "competitive-dialogue",
    "CONCOURS": "design-contest",
}


def parse_boamp_xml(data: bytes, *, source: str = "boamp-xml") -> ParsedNotice:
    """Parse one legacy BOAMP XML notice (``<ANNONCE>``)."""
    root = parse_xml(data)
    if local_name(root) != "ANNONCE":
        raise ParseError(f"not a legacy BOAMP notice: root element <{local_name(root)}>")
    return parse_annonce(root, source=source)


def annonce_idweb(root: Element) -> str | None:
    return normalize_idweb(_text(root, "GESTION/REFERENCE/IDWEB"))


# ---------------------------------------------------------------------------- helpers


def _text(element: Element | None, path: str) -> str | None:
    if element is None:
        return None
    found = element.find(path)
    if found is None or found.text is None:
        return None
    value = found.text.strip()
    return value or None


def _texts(element: Element | None, path: str) -> list[str]:
    if element is None:
        return []
    return [e.text.strip() for e in element.findall(path) if e.text and e.text.strip()]


def _first_child(element: Element | None, path: str) -> str | None:
    """The tag of the first child of ``path`` (BOAMP enums are element names: ``<NATURE><ATTRIBUTION/>``)."""
    if element is None:
        return None
    found = element.find(path)
    if found is None:
        return None
    for child in found:
        if isinstance(child.tag, str):
            return local_name(child)
    return None


def _amount(element: Element | None, path: str) -> tuple[Decimal | None, str | None]:
    if element is None:
        return None, None
    found = element.find(path)
    if found is None:
        return None, None
    return positive_amount(found.text), found.get("DEVISE")


def _cpvs(element: Element | None) -> list[str]:
    if element is None:
        return []
    codes = _texts(element, "CPV/PRINCIPAL") + _texts(element, "CPV/SUPPLEMENTAIRE")
    return [c for c in (normalize_cpv(code) for code in codes) if c]


# ------------------------------------------------------------------------------- main


def parse_annonce(root: Element, *, source: str = "boamp-xml") -> ParsedNotice:
    """Parse an ``<ANNONCE>`` element holding ``GESTION`` and ``DONNEES``."""
    gestion = root.find("GESTION")
    donnees = root.find("DONNEES")
    if gestion is None and donnees is None:
        raise ParseError("legacy BOAMP notice without GESTION nor DONNEES")
    warnings: list[str] = []

    idweb = annonce_idweb(root)
    if idweb is None:
        raise ParseError("legacy BOAMP notice without a valid GESTION/REFERENCE/IDWEB")

    nature_code = _first_child(gestion, "REFERENCE/TYPE_AVIS/NATURE") or ""
    status = _first_child(gestion, "REFERENCE/TYPE_AVIS/STATUT") or ""
    nature = _NATURES.get(nature_code, Nature.OTHER)
    if status == "RECTIFICATIF" and nature is Nature.INITIAL:
        nature = Nature.CORRIGENDUM
    cancelled = status in ("ANNULATION", "AVIS_ANNULE") or nature is Nature.CANCELLATION
    if cancelled:
        nature = Nature.CANCELLATION

    previous = [
        ref
        for ref in (normalize_idweb(t) for t in _texts(gestion, "MARCHE/ANNONCE_ANTERIEUR/REFERENCE/IDWEB"))
        if ref and ref != idweb
    ]

    indexation = gestion.find("INDEXATION") if gestion is not None else None
    departments = [d for d in (normalize_department(t) for t in _texts(indexation, "DEP_PUBLICATION")) if d]
    zone = french_zone(departments[0] if len(set(departments)) == 1 else None)

    objet = donnees.find("OBJET") if donnees is not None else None
    identite = donnees.find("IDENTITE") if donnees is not None else None

    title = (
        clean_text(_text(objet, "TITRE_MARCHE"))
        or clean_text(_text(objet, "OBJET_COMPLET"))
        or clean_text(_text(indexation, "RESUME_OBJET"))
    )
    if title is None:
        raise ParseError("legacy BOAMP notice without a title (TITRE_MARCHE, OBJET_COMPLET, RESUME_OBJET)")

    deadlines = [
        d
        for d in (
            parse_local_deadline(_text(donnees, "CONDITION_DELAI/RECEPT_OFFRES"), zone),
            parse_local_deadline(_text(donnees, "CONDITION_DELAI/RECEPT_CANDIDAT"), zone),
        )
        if d is not None
    ]
    if not deadlines:
        fallback = parse_local_deadline(_text(indexation, "DATE_LIMITE_REPONSE"), zone)
        if fallback is not None:
            deadlines.append(fallback)

    cpvs = _cpvs(objet)
    nuts = [n for n in (normalize_nuts(t) for t in _texts(objet, "LIEU_EXEC_LIVR/CODE_NUTS")) if n]
    estimated, currency = _amount(objet, "CARACTERISTIQUES/VALEUR_TOTALE")
    if estimated is None:
        estimated, currency = _amount(objet, "VALEUR_TOTALE")

    lots, lot_cpvs, lot_nuts, lot_values = _lots(objet, warnings)
    cpvs += lot_cpvs
    nuts += lot_nuts
    not_divided = objet is not None and objet.find("DIV_EN_LOTS/NON") is not None
    if not_divided:
        if estimated is None and lot_values:
            estimated, currency = lot_values[0]
        lots = []

    attribution = donnees.find("ATTRIBUTION") if donnees is not None else None
    awards, decision_lots = _awards(attribution, warnings)
    if not lots and len(decision_lots) > 1:
        lots = decision_lots

    buyer_nuts = normalize_nuts(_text(identite, "ADJUDICATEUR_NUTS"))
    if buyer_nuts:
        nuts.append(buyer_nuts)

    return ParsedNotice(
        source=source,
        source_ref=idweb,
        nature=nature,
        title=title,
        published_at=parse_date(_text(indexation, "DATE_PUBLICATION")),
        previous_refs=dedupe(previous),
        buyer_name=clean_text(_text(identite, "DENOMINATION")),
        buyer_siret=clean_siret(_text(identite, "SIRET")),
        buyer_internal_ref=clean_text(_text(objet, "REF_MARCHE"))
        or clean_text(_text(donnees, "CONDITION_ADMINISTRATIVE/REFERENCE_MARCHE")),
        description=clean_multiline(_text(objet, "OBJET_COMPLET")),
        contract_type=_CONTRACT_TYPES.get(_first_child(objet, "TYPE_MARCHE") or ""),
        procedure_type=_procedure_type(_first_child(donnees, "PROCEDURE/TYPE_PROCEDURE")),
        deadline_at=min(deadlines) if deadlines else None,
        estimated_value=estimated,
        currency=currency,
        departments=dedupe(departments),
        nuts=dedupe(nuts),
        cpv=dedupe(cpvs),
        lots=tuple(lots),
        awards=tuple(awards),
        url=BOAMP_NOTICE_URL.format(idweb=idweb),
        dce_url=_dce_url(gestion, donnees),
        is_cancelled=cancelled,
        warnings=tuple(dict.fromkeys(warnings)),
    )


def _procedure_type(code: str | None) -> str | None:
    if not code:
        return None
    return PROCEDURE_TYPES.get(code, code.lower())


def _lots(
    objet: Element | None, warnings: list[str]
) -> tuple[list[ParsedLot], list[str], list[str], list[tuple[Decimal | None, str | None]]]:
    lots: list[ParsedLot] = []
    all_cpvs: list[str] = []
    all_nuts: list[str] = []
    values: list[tuple[Decimal | None, str | None]] = []
    if objet is None:
        return lots, all_cpvs, all_nuts, values
    inferred = False
    for position, lot in enumerate(objet.findall("LOTS/LOT"), start=1):
        title = clean_text(_text(lot, "INTITULE"))
        number = _text(lot, "NUM")
        if number:
            number = str(int(number)) if number.isdigit() else number
        else:
            number, rest = split_lot_label(title)
            if number is not None:
                title = rest
            else:
                number, inferred = str(position), True
        cpvs = _cpvs(lot)
        nuts = [n for n in (normalize_nuts(t) for t in _texts(lot, "CODE_NUTS")) if n]
        value = _amount(lot, "VALEUR")
        all_cpvs += cpvs
        all_nuts += nuts
        if value[0] is not None:
            values.append(value)
        lots.append(
            ParsedLot(
                number=number,
                title=title,
                description=clean_multiline(_text(lot, "DESCRIPTION")),
                cpv=dedupe(cpvs),
                estimated_value=value[0],
                nuts=dedupe(nuts),
            )
        )
    if inferred and len(lots) > 1 and objet.find("DIV_EN_LOTS/NON") is None:
        warnings.append("lot numbers inferred from their order")
    return lots, all_cpvs, all_nuts, values


def _awards(attribution: Element | None, warnings: list[str]) -> tuple[list[ParsedAward], list[ParsedLot]]:
    awards: list[ParsedAward] = []
    decision_lots: list[ParsedLot] = []
    if attribution is None:
        return awards, decision_lots
    if attribution.find("SANS_SUITE") is not None or attribution.find("INFRUCTUEUX") is not None:
        awards.append(ParsedAward(lot=None, winner_name=None, unsuccessful=True))
    total, total_currency = _amount(attribution, "VALEUR_TOTALE")
    winners: list[tuple[str | None, Element, Element | None]] = []
    for decision in attribution.findall("DECISION"):
        lot = _text(decision, "NUM_LOT")
        if lot and lot.isdigit():
            lot = str(int(lot))
        if lot:
            decision_lots.append(
                ParsedLot(number=lot, description=clean_multiline(_text(decision, "DESCRIPTION")))
            )
        if any(decision.find(tag) is not None for tag in ("NON_ATTRIBUE", "SANS_SUITE", "INFRUCTUEUX")):
            awards.append(ParsedAward(lot=lot, winner_name=None, unsuccessful=True))
            continue
        titulaires = decision.findall("TITULAIRE")
        renseignements = decision.findall("RENSEIGNEMENT")
        for index, titulaire in enumerate(titulaires):
            info = renseignements[index] if index < len(renseignements) else None
            winners.append((lot, titulaire, info))
        if not titulaires and awards and awards[0].unsuccessful and awards[0].lot is None:
            warnings.append("attribution sans suite: its decisions name no winner")
    seen: set[tuple[str | None, str]] = set()
    for lot, titulaire, info in winners:
        name = clean_text(_text(titulaire, "DENOMINATION"))
        amount, currency = _amount(info, "MONTANT")
        if amount is None and len(winners) == 1 and total is not None:
            amount, currency = total, total_currency
        key = (lot, (name or "").casefold())
        if key in seen:
            continue
        seen.add(key)
        awards.append(
            ParsedAward(
                lot=lot,
                winner_name=name,
                winner_siret=clean_siret(_text(titulaire, "SIRET")),
                amount=amount,
                currency=currency,
            )
        )
    return awards, decision_lots


def _dce_url(gestion: Element | None, donnees: Element | None) -> str | None:
    addresses = (
        []
        if donnees is None
        else donnees.findall("RENSEIGNEMENTS_COMPLEMENTAIRES/ADRESSES_COMPLEMENTAIRES/ADRESSE")
    )
    for address in addresses:
        if address.find("TYPE/DOCUMENTS") is not None and _text(address, "URL"):
            return _text(address, "URL")
    for path in ("IDENTITE/URL_DOCUMENT", "IDENTITE/URL_PARTICIPATION", "IDENTITE/URL_PROFIL_ACHETEUR"):
        value = _text(donnees, path)
        if value:
            return value
    return _text(gestion, "MARCHE/URL_CONSULTATION")
