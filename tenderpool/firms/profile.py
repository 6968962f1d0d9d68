"""Firm profiles: identity, skills, capacities, references, certifications, completeness, directory.

The profile is what a firm declares once and reuses in every candidature (form DC2: identity,
legal form, SME, registration, turnover of the last three financial years, headcount,
references, certificates). Financial figures stay between the firm, its chamber and the
dossiers it builds: the partner directory is built from :class:`DirectoryCard`, which has no
place for them.
"""

from __future__ import annotations

import csv
import datetime as dt
import re
import unicodedata
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from functools import cache
from urllib.parse import urlsplit

from sqlalchemy import or_, select
from sqlalchemy.orm import Session, selectinload
from stdnum import exceptions as stdnum_errors
from stdnum.fr import siren as stdnum_siren
from stdnum.fr import tva as stdnum_tva

from tenderpool.accounts.models import User
from tenderpool.accounts.services import record_audit
from tenderpool.errors import Forbidden, NotFound, ValidationError
from tenderpool.firms.documents import DOCUMENT_KINDS, current_document
from tenderpool.firms.models import (
    Firm,
    FirmCertification,
    FirmCpv,
    FirmDocument,
    FirmMembership,
    FirmReference,
    FirmStatus,
    FirmYear,
)
from tenderpool.firms.services import department_of_postcode
from tenderpool.pagination import Page
from tenderpool.reference import DATA_DIR, cpv_codes, cpv_label, cpv_prefix, departments

# Where each part of the profile is edited. The views are routed on these paths, so that the
# completeness gauge can name the page that fixes an item without needing a request (the
# digests and the dossier checks run outside one).
PROFILE_PATHS = {
    "profile": "/entreprise/profil",
    "identity": "/entreprise/profil/identite",
    "skills": "/entreprise/profil/competences",
    "capacities": "/entreprise/profil/capacites",
    "new_reference": "/entreprise/profil/references/nouvelle",
    "new_certification": "/entreprise/profil/certifications/nouvelle",
    "documents": "/entreprise/profil/documents",
    "directory_settings": "/entreprise/profil/annuaire",
}

MAX_CPV = 60
MAX_KEYWORDS = 30
MAX_KEYWORD_LENGTH = 40
MAX_AMOUNT = Decimal("1e13")
_NAF_RE = re.compile(r"^(\d{2})\.?(\d{2})([A-Z])$")
_CPV_TOKEN_RE = re.compile(r"^(\d{8})(?:-(\d))?$")
_SPACES = re.compile(r"[\s\u00a0\u202f]+")


# --------------------------------------------------------------------------- reference lists


@cache
def legal_forms() -> dict[str, str]:
    """INSEE catégories juridiques, niveau III: 4-digit code → label."""
    with (DATA_DIR / "insee_categories_juridiques.csv").open(encoding="utf-8", newline="") as fh:
        return {row["code"]: " ".join(row["libellé"].split()) for row in csv.DictReader(fh)}


@cache
def common_legal_forms() -> list[tuple[str, str]]:
    """The forms small firms actually have, by their usual names: ("5499", "SARL, EURL")."""
    names: dict[str, list[str]] = {}
    with (DATA_DIR / "legal_forms_common.csv").open(encoding="utf-8", newline="") as fh:
        for row in csv.DictReader(fh):
            names.setdefault(row["insee_cj_code"], []).append(row["usual_name"])
    return [(code, ", ".join(usual)) for code, usual in names.items() if code in legal_forms()]


def legal_form_label(code: str | None) -> str | None:
    return legal_forms().get(code) if code else None


def vat_number(siren: str) -> str | None:
    """The intra-community VAT number of a French firm, computed from its SIREN (never stored).

    FR + the numeric key (12 + 3 × (SIREN mod 97)) mod 97 + the SIREN; None for a bad SIREN.
    """
    try:
        valid = str(stdnum_siren.validate(siren))
        return "FR" + str(stdnum_tva.validate("FR" + str(stdnum_siren.to_tva(valid))))
    except stdnum_errors.ValidationError:
        return None


# --------------------------------------------------------------------------- parsing helpers


def _text(value: str | None, *, max_length: int, field_name: str, label: str, required: bool = False) -> str:
    """A one-line text field, spaces collapsed."""
    value = " ".join((value or "").split())
    if required and not value:
        raise ValidationError(f"{label} : ce champ est obligatoire.", field=field_name)
    if len(value) > max_length:
        raise ValidationError(f"{label} : {max_length} caractères au plus.", field=field_name)
    return value


def clean_naf(value: str | None) -> str | None:
    """Normalise "4321a" or "43 21 A" to "43.21A": the format of the NAF rév. 2 sub-classes (code APE)."""
    compact = _SPACES.sub("", value or "").upper()
    if not compact:
        return None
    match = _NAF_RE.match(compact)
    if match is None:
        raise ValidationError(
            "Le code NAF (APE) s'écrit deux chiffres, un point, deux chiffres et une lettre : 43.21A.",
            field="naf_code",
        )
    return f"{match.group(1)}.{match.group(2)}{match.group(3)}"


def clean_website(value: str | None) -> str | None:
    value = (value or "").strip()
    if not value:
        return None
    if "://" not in value:
        value = "https://" + value
    parts = urlsplit(value)
    host = parts.hostname or ""
    if parts.scheme not in ("http", "https") or "." not in host or _SPACES.search(value) or len(value) > 300:
        raise ValidationError(
            "Adresse du site invalide : par exemple https://www.exemple.fr", field="website"
        )
    return value


def parse_amount(value: str | None, *, field_name: str, label: str) -> Decimal | None:
    """A euro amount typed the French way: "1 234 567,89", "1.234.567", "250000 €"."""
    text = _SPACES.sub("", value or "").replace("€", "").upper().removesuffix("HT").removesuffix("EUR")
    if not text:
        return None
    if "," in text:
        text = text.replace(".", "").replace(",", ".")
    elif re.fullmatch(r"\d{1,3}(?:\.\d{3})+", text):
        text = text.replace(".", "")
    try:
        amount = Decimal(text)
    except InvalidOperation:
        raise ValidationError(
            f"{label} : montant invalide (exemple : 1 250 000).", field=field_name
        ) from None
    if not amount.is_finite() or amount < 0 or amount >= MAX_AMOUNT:
        raise ValidationError(f"{label} : montant invalide (exemple : 1 250 000).", field=field_name)
    return amount.quantize(Decimal("0.01"))


def parse_int(
    value: str | int | None, *, field_name: str, label: str, minimum: int, maximum: int
) -> int | None:
    text = _SPACES.sub("", str(value if value is not None else ""))
    if not text:
        return None
    if not text.isdigit() or not minimum <= int(text) <= maximum:
        raise ValidationError(f"{label} : un nombre entier entre {minimum} et {maximum}.", field=field_name)
    return int(text)


def parse_date(value: str | dt.date | None, *, field_name: str, label: str) -> dt.date | None:
    """A date from a date field (2026-11-28) or typed by hand (28/11/2026)."""
    if isinstance(value, dt.date):
        return value
    text = (value or "").strip()
    if not text:
        return None
    for pattern in ("%Y-%m-%d", "%d/%m/%Y", "%d-%m-%Y", "%d.%m.%Y"):
        try:
            return dt.datetime.strptime(text, pattern).date()
        except ValueError:
            continue
    raise ValidationError(f"{label} : date invalide (exemple : 28/11/2026).", field=field_name)


def parse_cpv_list(
    raw: str | Iterable[str] | None, *, field_name: str = "cpv", limit: int = MAX_CPV
) -> list[str]:
    """CPV codes typed or picked ("45210000-2, 45310000"): their 8 digits, checked against CPV 2008."""
    tokens = re.split(r"[,;\s]+", raw) if isinstance(raw, str) else list(raw or [])
    codes: list[str] = []
    unknown: list[str] = []
    for token in (t.strip() for t in tokens):
        if not token:
            continue
        match = _CPV_TOKEN_RE.match(token)
        cpv = cpv_codes().get(match.group(1)) if match else None
        if cpv is None or (match and match.group(2) and cpv.code != token):
            unknown.append(token)
        elif cpv.code8 not in codes:
            codes.append(cpv.code8)
    if unknown:
        raise ValidationError(
            f"Codes CPV inconnus : {', '.join(unknown[:10])}. Choisissez-les dans la liste "
            "(8 chiffres, par exemple 45210000 ou 45210000-2).",
            field=field_name,
        )
    if len(codes) > limit:
        raise ValidationError(f"{limit} codes CPV au plus.", field=field_name)
    return codes


def parse_keywords(raw: str | None) -> list[str]:
    words: list[str] = []
    seen: set[str] = set()
    for part in re.split(r"[,;\n]+", raw or ""):
        word = " ".join(part.split())
        if not word:
            continue
        if len(word) > MAX_KEYWORD_LENGTH:
            raise ValidationError(
                f"« {word[:20]}… » : un mot-clé compte {MAX_KEYWORD_LENGTH} caractères au plus.",
                field="keywords",
            )
        if fold(word) not in seen:
            seen.add(fold(word))
            words.append(word)
    if len(words) > MAX_KEYWORDS:
        raise ValidationError(f"{MAX_KEYWORDS} mots-clés au plus.", field="keywords")
    return words


def parse_departments(raw: str | Iterable[str] | None, *, field_name: str = "zone_departments") -> list[str]:
    tokens = re.split(r"[,;\s]+", raw) if isinstance(raw, str) else list(raw or [])
    codes: list[str] = []
    for token in (t.strip().upper() for t in tokens):
        if not token:
            continue
        if token.isdigit() and len(token) == 1:
            token = "0" + token
        if token not in departments():
            raise ValidationError(
                f"« {token} » n'est pas un numéro de département (exemples : 77, 91, 2A, 974).",
                field=field_name,
            )
        if token not in codes:
            codes.append(token)
    return codes


def fold(text: str) -> str:
    """Lower-case ASCII-ish text for searching: « Électricité » → « electricite »."""
    decomposed = unicodedata.normalize("NFKD", text)
    stripped = "".join(c for c in decomposed if not unicodedata.combining(c))
    return " ".join(stripped.casefold().replace("œ", "oe").replace("æ", "ae").split())


# --------------------------------------------------------------------------- updates


def _touch(session: Session, firm: Firm, by: User, section: str, *, ip: str | None, now: dt.datetime) -> None:
    firm.profile_updated_at = now
    record_audit(
        session,
        "firm_profile_updated",
        actor=by,
        target_type="firm",
        target_id=firm.id,
        ip=ip,
        detail={"section": section},
        now=now,
    )
    session.flush()


def update_identity(
    session: Session,
    firm: Firm,
    *,
    by: User,
    name: str | None,
    legal_form_code: str | None,
    naf_code: str | None,
    address: str | None,
    postcode: str | None,
    city: str | None,
    website: str | None,
    description: str | None,
    is_sme: bool | None,
    chamber_departments: Iterable[str],
    ip: str | None,
    now: dt.datetime,
) -> None:
    """Identity of the firm (DC2 rubric C1 and E1). SIRET and SIREN are not editable."""
    name = _text(name, max_length=200, field_name="name", label="Raison sociale", required=True)
    code = (legal_form_code or "").strip() or None
    if code is not None and code not in legal_forms():
        raise ValidationError(
            "Choisissez la forme juridique dans la liste des catégories juridiques INSEE.",
            field="legal_form_code",
        )
    naf = clean_naf(naf_code)
    address = _text(address, max_length=300, field_name="address", label="Adresse", required=True)
    city = _text(city, max_length=120, field_name="city", label="Commune", required=True)
    postcode = (postcode or "").strip()
    department = department_of_postcode(postcode)
    if department != firm.department and department not in set(chamber_departments):
        # The département decides which chamber looks after the firm: moving out of the
        # territory is a change of chamber, which the CCI handles.
        raise ValidationError(
            f"Ce code postal est dans le département {department}, hors du territoire de votre chambre : "
            "contactez votre CCI pour un transfert.",
            field="postcode",
        )
    description = (description or "").strip()
    if len(description) > 5000:
        raise ValidationError("Présentation : 5 000 caractères au plus.", field="description")
    firm.name = name
    firm.legal_form_code = code
    firm.naf_code = naf
    firm.address, firm.postcode, firm.city, firm.department = address, postcode, city, department
    firm.website = clean_website(website)
    firm.description = description or None
    firm.is_sme = is_sme
    _touch(session, firm, by, "identity", ip=ip, now=now)


def update_skills(
    session: Session,
    firm: Firm,
    *,
    by: User,
    cpv: str | Iterable[str] | None,
    keywords: str | None,
    ip: str | None,
    now: dt.datetime,
) -> None:
    """Skills as CPV codes (a division or a group covers every code below it) and free keywords."""
    codes = parse_cpv_list(cpv)
    words = parse_keywords(keywords)
    wanted = set(codes)
    for link in list(firm.cpv_links):
        if link.cpv not in wanted:
            firm.cpv_links.remove(link)
    present = {link.cpv for link in firm.cpv_links}
    firm.cpv_links.extend(FirmCpv(cpv=code) for code in codes if code not in present)
    firm.keywords = words
    _touch(session, firm, by, "skills", ip=ip, now=now)


def financial_years(today: dt.date) -> list[int]:
    """The last three financial years the DC2 asks for, latest first (exercises on calendar years)."""
    return [today.year - 1, today.year - 2, today.year - 3]


@dataclass(frozen=True)
class YearInput:
    year: int
    turnover: str | None = None
    headcount: str | None = None
    by_field: str | None = None  # one "division : amount" a line


def parse_turnover_by_field(raw: str | None, *, field_name: str, label: str) -> dict[str, Decimal]:
    """Lines "45 : 600 000" → {"45": Decimal("600000.00")}, each key a CPV division."""
    parts: dict[str, Decimal] = {}
    for line in (raw or "").splitlines():
        if not line.strip():
            continue
        match = re.match(r"^\s*(\d{2})(?:0{6})?(?:-\d)?\s*[:=;]\s*(.+)$", line)
        if match is None or f"{match.group(1)}000000" not in cpv_codes():
            raise ValidationError(
                f"{label} : « {line.strip()[:40]} » ne se lit pas. Une ligne par domaine : "
                "division CPV (2 chiffres), deux-points, montant. Exemple : 45 : 600 000",
                field=field_name,
            )
        amount = parse_amount(match.group(2), field_name=field_name, label=label)
        if amount is not None:
            parts[match.group(1)] = amount
    return parts


def update_capacities(
    session: Session,
    firm: Firm,
    *,
    by: User,
    years: list[YearInput],
    equipment: str | None,
    zone_kind: str | None,
    zone_departments: str | Iterable[str] | None,
    zone_radius_km: str | int | None,
    ip: str | None,
    now: dt.datetime,
) -> None:
    """Turnover, its part per field and headcount per year (DC2 F1, G1), means, intervention zone.

    ``turnover_by_field`` is stored as {CPV division: amount as a decimal string}.
    A year left entirely blank is removed.
    """
    existing = {row.year: row for row in firm.years}
    parsed: list[tuple[int, Decimal | None, int | None, dict[str, Decimal]]] = []
    for index, entry in enumerate(years, start=1):
        prefix = f"y{index}_"
        turnover = parse_amount(
            entry.turnover, field_name=prefix + "turnover", label=f"Chiffre d'affaires {entry.year}"
        )
        headcount = parse_int(
            entry.headcount,
            field_name=prefix + "headcount",
            label=f"Effectif {entry.year}",
            minimum=0,
            maximum=1_000_000,
        )
        by_field = parse_turnover_by_field(
            entry.by_field, field_name=prefix + "by_field", label=f"Répartition {entry.year}"
        )
        if by_field and turnover is None:
            raise ValidationError(
                f"Répartition {entry.year} : indiquez d'abord le chiffre d'affaires global.",
                field=prefix + "turnover",
            )
        if turnover is not None and sum(by_field.values(), Decimal(0)) > turnover:
            raise ValidationError(
                f"Répartition {entry.year} : la somme des parts dépasse le chiffre d'affaires global.",
                field=prefix + "by_field",
            )
        parsed.append((entry.year, turnover, headcount, by_field))
    equipment = (equipment or "").strip()
    if len(equipment) > 5000:
        raise ValidationError("Moyens et matériel : 5 000 caractères au plus.", field="equipment")
    kind = (zone_kind or "").strip()
    if kind == "departments":
        zone_deps = parse_departments(zone_departments)
        if not zone_deps:
            raise ValidationError(
                "Indiquez au moins un département d'intervention.", field="zone_departments"
            )
        radius = None
    elif kind == "radius":
        radius = parse_int(
            zone_radius_km, field_name="zone_radius_km", label="Rayon d'intervention", minimum=1, maximum=1000
        )
        if radius is None:
            raise ValidationError("Indiquez le rayon d'intervention en kilomètres.", field="zone_radius_km")
        zone_deps = []
    elif kind == "":
        zone_deps, radius = [], None
    else:
        raise ValidationError("Choisissez comment décrire la zone d'intervention.", field="zone_kind")

    for year, turnover, headcount, by_field in parsed:
        row = existing.get(year)
        if turnover is None and headcount is None and not by_field:
            if row is not None:
                firm.years.remove(row)
            continue
        if row is None:
            row = FirmYear(year=year)
            firm.years.append(row)
        row.turnover = turnover
        row.headcount = headcount
        row.turnover_by_field = {division: str(amount) for division, amount in sorted(by_field.items())}
    firm.equipment = equipment or None
    firm.zone_departments = zone_deps
    firm.zone_radius_km = radius
    _touch(session, firm, by, "capacities", ip=ip, now=now)


# --------------------------------------------------------------------------- references

REFERENCE_ROLES = {"alone": "Seul", "mandataire": "Mandataire d'un groupement", "cotraitant": "Cotraitant"}


@dataclass(frozen=True)
class ReferenceInput:
    buyer: str | None
    object: str | None
    year: str | int | None
    amount: str | None = None
    cpv: str | None = None
    lot: str | None = None
    role: str | None = "alone"
    is_public: bool = True
    attestation_id: int | None = None


def firm_reference(session: Session, firm: Firm, reference_id: int) -> FirmReference:
    reference = session.get(FirmReference, reference_id)
    if reference is None or reference.firm_id != firm.id:
        raise NotFound("Référence introuvable.")
    return reference


def save_reference(
    session: Session,
    firm: Firm,
    data: ReferenceInput,
    *,
    by: User,
    today: dt.date,
    reference: FirmReference | None = None,
    ip: str | None,
    now: dt.datetime,
) -> FirmReference:
    """Create (``reference`` None) or update a reference of the firm."""
    buyer = _text(data.buyer, max_length=300, field_name="buyer", label="Acheteur", required=True)
    obj = (data.object or "").strip()
    if not obj:
        raise ValidationError("Objet du marché : ce champ est obligatoire.", field="object")
    if len(obj) > 5000:
        raise ValidationError("Objet du marché : 5 000 caractères au plus.", field="object")
    year = parse_int(data.year, field_name="year", label="Année", minimum=1950, maximum=today.year)
    if year is None:
        raise ValidationError("Année : ce champ est obligatoire.", field="year")
    amount = parse_amount(data.amount, field_name="amount", label="Montant")
    cpv = parse_cpv_list(data.cpv, limit=10)
    lot = _text(data.lot, max_length=60, field_name="lot", label="Lot")
    role = data.role or "alone"
    if role not in REFERENCE_ROLES:
        raise ValidationError("Choisissez le rôle de l'entreprise dans la liste.", field="role")
    if data.attestation_id is not None:
        document = session.get(FirmDocument, data.attestation_id)
        if document is None or document.firm_id != firm.id or document.kind != "reference":
            raise ValidationError(
                "Choisissez une attestation de bonne exécution de votre entreprise.", field="attestation_id"
            )
    if reference is None:
        reference = FirmReference()
        firm.references.append(reference)
    elif reference.firm_id != firm.id:
        raise NotFound("Référence introuvable.")
    reference.buyer, reference.object, reference.year, reference.amount = buyer, obj, year, amount
    reference.cpv, reference.lot, reference.role = cpv, lot or None, role
    reference.is_public = bool(data.is_public)
    reference.attestation_id = data.attestation_id
    _touch(session, firm, by, "references", ip=ip, now=now)
    return reference


def delete_reference(
    session: Session, firm: Firm, reference_id: int, *, by: User, ip: str | None, now: dt.datetime
) -> None:
    """Delete a reference; its attestation stays among the documents."""
    firm.references.remove(firm_reference(session, firm, reference_id))
    _touch(session, firm, by, "references", ip=ip, now=now)


# --------------------------------------------------------------------------- certifications

CERTIFICATION_SUGGESTIONS = (
    "Qualibat",
    "Qualibat RGE",
    "Qualifelec",
    "Qualifelec RGE",
    "Qualit'EnR (QualiPAC, QualiSol, QualiBois, QualiPV)",
    "Qualipaysage",
    "OPQIBI",
    "OPQTECC",
    "Certibat",
    "ISO 9001",
    "ISO 14001",
    "ISO 45001",
    "MASE",
    "Eco Artisan",
    "Handibat",
)


def firm_certification(session: Session, firm: Firm, certification_id: int) -> FirmCertification:
    certification = session.get(FirmCertification, certification_id)
    if certification is None or certification.firm_id != firm.id:
        raise NotFound("Certification introuvable.")
    return certification


def save_certification(
    session: Session,
    firm: Firm,
    *,
    by: User,
    name: str | None,
    number: str | None,
    valid_until: str | dt.date | None,
    certification: FirmCertification | None = None,
    ip: str | None,
    now: dt.datetime,
) -> FirmCertification:
    """Create (``certification`` None) or update a certification or qualification."""
    name = _text(name, max_length=120, field_name="name", label="Nom", required=True)
    number = _text(number, max_length=80, field_name="number", label="Numéro")
    until = parse_date(valid_until, field_name="valid_until", label="Valable jusqu'au")
    if certification is None:
        certification = FirmCertification()
        firm.certifications.append(certification)
    elif certification.firm_id != firm.id:
        raise NotFound("Certification introuvable.")
    certification.name, certification.number, certification.valid_until = name, number or None, until
    _touch(session, firm, by, "certifications", ip=ip, now=now)
    return certification


def delete_certification(
    session: Session, firm: Firm, certification_id: int, *, by: User, ip: str | None, now: dt.datetime
) -> None:
    firm.certifications.remove(firm_certification(session, firm, certification_id))
    _touch(session, firm, by, "certifications", ip=ip, now=now)


# --------------------------------------------------------------------------- directory settings

DIRECTORY_FIELDS = {
    "description": "Présentation",
    "skills": "Compétences (codes CPV)",
    "keywords": "Mots-clés",
    "zone": "Zone d'intervention",
    "certifications": "Certifications et qualifications",
    "references": "Références déclarées publiques",
    "headcount_band": "Tranche d'effectif (jamais le chiffre exact)",
    "website": "Site internet",
}


def update_directory_settings(
    session: Session,
    membership: FirmMembership,
    *,
    opt_in: bool,
    fields: Iterable[str],
    ip: str | None,
    now: dt.datetime,
) -> None:
    """The owner decides whether the firm is listed in the partner directory, and what it shows."""
    if not membership.is_owner:
        raise Forbidden("Seul le responsable de l'entreprise peut choisir ce que l'annuaire montre.")
    chosen = list(dict.fromkeys(fields))
    unknown = [f for f in chosen if f not in DIRECTORY_FIELDS]
    if unknown:
        raise ValidationError("Choisissez les rubriques à publier dans la liste.", field="fields")
    firm = membership.firm
    firm.directory_opt_in = bool(opt_in)
    firm.directory_fields = [f for f in DIRECTORY_FIELDS if f in chosen]
    firm.profile_updated_at = now
    record_audit(
        session,
        "firm_directory_updated",
        actor=membership.user,
        target_type="firm",
        target_id=firm.id,
        ip=ip,
        detail={"opt_in": firm.directory_opt_in, "fields": firm.directory_fields},
        now=now,
    )
    session.flush()


# --------------------------------------------------------------------------- completeness


@dataclass(frozen=True)
class MissingItem:
    key: str
    label: str  # French, says what to give
    url: str  # the page (and anchor) where it is given


def _years_missing(firm: Firm, today: dt.date, attribute: str) -> list[int]:
    rows = {row.year: row for row in firm.years}
    return [
        year
        for year in sorted(financial_years(today))
        if year not in rows or getattr(rows[year], attribute) is None
    ]


def needs_decennale(firm: Firm) -> bool:
    """Works firms (a skill in CPV division 45) must hold a décennale insurance (DC2 F3)."""
    return any(code.startswith("45") for code in firm.cpv)


def profile_completeness(firm: Firm, *, today: dt.date) -> tuple[int, list[MissingItem]]:
    """How ready the profile is for a DC2: a percentage and what is missing, with where to fix it."""
    paths = PROFILE_PATHS
    checks: list[tuple[bool, MissingItem]] = [
        (
            firm.legal_form_code is not None,
            MissingItem("legal_form", "Forme juridique", paths["identity"] + "#legal_form_code"),
        ),
        (
            firm.is_sme is not None,
            MissingItem("sme", "PME : oui ou non", paths["identity"] + "#is_sme"),
        ),
        (
            firm.naf_code is not None,
            MissingItem(
                "naf", "Code NAF (APE) de l'inscription au registre", paths["identity"] + "#naf_code"
            ),
        ),
    ]
    no_turnover = _years_missing(firm, today, "turnover")
    checks.append(
        (
            not no_turnover,
            MissingItem(
                "turnover",
                "Chiffre d'affaires des trois derniers exercices (manque : "
                + ", ".join(map(str, no_turnover))
                + ")",
                paths["capacities"] + "#exercices",
            ),
        )
    )
    no_headcount = _years_missing(firm, today, "headcount")
    checks.append(
        (
            not no_headcount,
            MissingItem(
                "headcount",
                "Effectif des trois derniers exercices (manque : " + ", ".join(map(str, no_headcount)) + ")",
                paths["capacities"] + "#exercices",
            ),
        )
    )
    checks.append(
        (
            bool(firm.references),
            MissingItem("reference", "Au moins une référence de marché réalisé", paths["new_reference"]),
        )
    )
    required = ["kbis", "urssaf", "tax", "rc_pro"] + (["decennale"] if needs_decennale(firm) else [])
    for kind in required:
        document = current_document(firm, kind)
        label = DOCUMENT_KINDS[kind].label
        if document is None:
            text = f"{label} (à déposer)"
        elif document.expires_on is not None and document.expires_on < today:
            text = f"{label} en cours de validité (le vôtre a expiré le {document.expires_on:%d/%m/%Y})"
        else:
            text = ""
        checks.append(
            (
                not text,
                MissingItem(f"document_{kind}", text or label, f"{paths['documents']}?type={kind}#deposer"),
            )
        )
    done = sum(1 for ok, _ in checks if ok)
    return done * 100 // len(checks), [item for ok, item in checks if not ok]


# --------------------------------------------------------------------------- headcount bands

HEADCOUNT_BANDS = {
    "0": ("Sans salarié", 0, 0),
    "1-9": ("1 à 9 salariés", 1, 9),
    "10-49": ("10 à 49 salariés", 10, 49),
    "50-249": ("50 à 249 salariés", 50, 249),
    "250+": ("250 salariés et plus", 250, None),
}


def latest_headcount(firm: Firm) -> int | None:
    for row in sorted(firm.years, key=lambda r: r.year, reverse=True):
        if row.headcount is not None:
            return row.headcount
    return None


def headcount_band(headcount: int | None) -> str | None:
    if headcount is None:
        return None
    for code, (_label, low, high) in HEADCOUNT_BANDS.items():
        if headcount >= low and (high is None or headcount <= high):
            return code
    return None


# --------------------------------------------------------------------------- partner directory


@dataclass(frozen=True)
class PublicReference:
    buyer: str
    object: str
    year: int
    role: str
    lot: str | None
    cpv: list[str]


@dataclass(frozen=True)
class DirectoryCard:
    """What the directory shows of a firm: its name and place, and only the parts it chose.

    There is deliberately no field for turnover or the exact headcount.
    """

    firm_id: int
    name: str
    city: str
    department: str
    fields: tuple[str, ...]
    description: str | None = None
    website: str | None = None
    skills: list[tuple[str, str]] = field(default_factory=list)
    keywords: list[str] = field(default_factory=list)
    zone: str | None = None
    zone_departments: list[str] = field(default_factory=list)
    certifications: list[tuple[str, dt.date | None]] = field(default_factory=list)
    references: list[PublicReference] = field(default_factory=list)
    headcount_band: str | None = None
    headcount_band_label: str | None = None


def zone_text(firm: Firm) -> str | None:
    names = departments()
    if firm.zone_departments:
        return ", ".join(f"{names.get(d, d)} ({d})" for d in firm.zone_departments)
    if firm.zone_radius_km:
        return f"{firm.zone_radius_km} km autour de {firm.city}"
    return None


def directory_card(firm: Firm, *, today: dt.date, with_references: bool = True) -> DirectoryCard:
    shown = tuple(f for f in firm.directory_fields or [] if f in DIRECTORY_FIELDS)
    band = headcount_band(latest_headcount(firm)) if "headcount_band" in shown else None
    return DirectoryCard(
        firm_id=firm.id,
        name=firm.name,
        city=firm.city,
        department=firm.department,
        fields=shown,
        description=firm.description if "description" in shown else None,
        website=firm.website if "website" in shown else None,
        skills=[(code, cpv_label(code) or "") for code in firm.cpv] if "skills" in shown else [],
        keywords=list(firm.keywords or []) if "keywords" in shown else [],
        zone=zone_text(firm) if "zone" in shown else None,
        zone_departments=list(firm.zone_departments or []) if "zone" in shown else [],
        certifications=[
            (c.name, c.valid_until)
            for c in firm.certifications
            if c.valid_until is None or c.valid_until >= today
        ]
        if "certifications" in shown
        else [],
        references=[
            PublicReference(
                r.buyer, r.object, r.year, REFERENCE_ROLES.get(r.role, r.role), r.lot, list(r.cpv)
            )
            for r in firm.references
            if r.is_public
        ]
        if "references" in shown and with_references
        else [],
        headcount_band=band,
        headcount_band_label=HEADCOUNT_BANDS[band][0] if band else None,
    )


@dataclass(frozen=True)
class DirectoryQuery:
    text: str = ""
    cpv: str | None = None  # 8 digits
    department: str | None = None
    certification: str = ""
    band: str | None = None

    @classmethod
    def from_args(cls, args: Mapping[str, str]) -> DirectoryQuery:
        """Read the search form (GET parameters); a bad value raises ValidationError naming it."""
        text = " ".join((args.get("q") or "").split())[:100]
        raw_cpv = (args.get("cpv") or "").strip()
        cpv = parse_cpv_list(raw_cpv, field_name="cpv", limit=1)[0] if raw_cpv else None
        raw_dep = (args.get("dep") or "").strip()
        dep = parse_departments(raw_dep, field_name="dep")[0] if raw_dep else None
        certification = " ".join((args.get("cert") or "").split())[:60]
        band = (args.get("band") or "").strip() or None
        if band is not None and band not in HEADCOUNT_BANDS:
            raise ValidationError("Tranche d'effectif inconnue.", field="band")
        return cls(text, cpv, dep, certification, band)

    def to_args(self) -> dict[str, str]:
        pairs = {
            "q": self.text,
            "cpv": self.cpv or "",
            "dep": self.department or "",
            "cert": self.certification,
            "band": self.band or "",
        }
        return {k: v for k, v in pairs.items() if v}


def _cpv_matches(firm_codes: Iterable[str], wanted: str) -> bool:
    """Hierarchical match both ways: a firm's division covers what lies below it, and a search
    for a division finds the firms with a more precise code inside it."""
    wanted_prefix = cpv_prefix(wanted)
    for code in firm_codes:
        prefix = cpv_prefix(code)
        if wanted_prefix.startswith(prefix) or prefix.startswith(wanted_prefix):
            return True
    return False


def _ancestors(code8: str) -> list[str]:
    prefix = cpv_prefix(code8)
    return [prefix[:n].ljust(8, "0") for n in range(2, len(prefix) + 1)]


def _matches(firm: Firm, card: DirectoryCard, query: DirectoryQuery) -> bool:
    shown = card.fields
    if query.cpv and not ("skills" in shown and _cpv_matches(firm.cpv, query.cpv)):
        return False
    if query.department:
        located = firm.department == query.department
        covered = "zone" in shown and (
            query.department in card.zone_departments
            or (bool(firm.zone_radius_km) and firm.department == query.department)
        )
        if not (located or covered):
            return False
    if query.certification:
        wanted = fold(query.certification)
        if not any(wanted in fold(name) for name, _ in card.certifications):
            return False
    if query.band and card.headcount_band != query.band:
        return False
    if query.text:
        haystack = fold(
            " ".join(
                [
                    card.name,
                    card.city,
                    card.description or "",
                    " ".join(card.keywords),
                    " ".join(label for _, label in card.skills),
                    " ".join(name for name, _ in card.certifications),
                ]
            )
        )
        if not all(word in haystack for word in fold(query.text).split()):
            return False
    return True


def search_directory(
    session: Session, query: DirectoryQuery, *, page: int, per_page: int, today: dt.date
) -> Page[DirectoryCard]:
    """Approved firms that opted in and match the query, by name; only their chosen parts.

    The database narrows by opt-in and CPV; what a firm chose to show is checked per firm,
    so that a filter never matches on a part the firm keeps private.
    """
    stmt = (
        select(Firm)
        .where(Firm.directory_opt_in.is_(True), Firm.status == FirmStatus.APPROVED.value)
        .options(selectinload(Firm.cpv_links), selectinload(Firm.certifications), selectinload(Firm.years))
        .order_by(Firm.name, Firm.id)
    )
    if query.cpv:
        prefix = cpv_prefix(query.cpv)
        stmt = stmt.where(
            Firm.id.in_(
                select(FirmCpv.firm_id).where(
                    or_(FirmCpv.cpv.like(prefix + "%"), FirmCpv.cpv.in_(_ancestors(query.cpv)))
                )
            )
        )
    matching = [
        firm
        for firm in session.scalars(stmt)
        if _matches(firm, directory_card(firm, today=today, with_references=False), query)
    ]
    total = len(matching)
    pages = max(1, -(-total // per_page))
    number = min(max(1, page), pages)
    chosen = matching[(number - 1) * per_page : number * per_page]
    cards = [directory_card(firm, today=today) for firm in chosen]
    return Page(items=cards, number=number, per_page=per_page, total=total)


def directory_firm(session: Session, firm_id: int, *, viewer_firm_id: int | None) -> Firm:
    """A firm's directory page: listed firms only, except a firm previewing its own."""
    firm = session.get(Firm, firm_id)
    if firm is None or not firm.is_approved:
        raise NotFound("Entreprise introuvable dans l'annuaire.")
    if not firm.directory_opt_in and firm.id != viewer_firm_id:
        raise NotFound("Entreprise introuvable dans l'annuaire.")
    return firm
