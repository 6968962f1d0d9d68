"""Small text, code and date helpers shared by every parser.

Nothing here does I/O. The rules implemented here are the ones of
``docs/data-sources.md`` §1.6 and §2.6:

* text: HTML entities are decoded once, numeric references and raw C1 control
  characters in the range 128–159 are read as Windows-1252 (``&#150;`` → "–",
  ``&#140;`` → "Œ"), whitespace (incl. newlines and no-break spaces) is collapsed;
* CPV codes are kept as 8 digits, without the check digit;
* départements are two characters ("02", "2A") or three for overseas ("971");
* a SIRET is 14 digits once spaces, dots and dashes are removed, nothing else;
* deadlines are **wall-clock** times: the clock time written by the buyer is read
  in the buyer's time zone (Europe/Paris for metropolitan France) and the UTC
  offset written next to it is ignored, because the sources get it wrong (BOAMP
  writes "+01:00" in summer, its flat field labels Paris time as UTC, eForms
  notices carry "+02:00" in winter or "Z").
"""

from __future__ import annotations

import datetime as dt
import html
import re
import unicodedata
from collections.abc import Iterable, Mapping
from decimal import Decimal, InvalidOperation
from typing import Any
from zoneinfo import ZoneInfo

PARIS = ZoneInfo("Europe/Paris")
BRUSSELS = ZoneInfo("Europe/Brussels")

# --------------------------------------------------------------------------- lists


def as_list(value: Any) -> list[Any]:
    """``None`` → ``[]``, a list → itself, anything else → ``[value]``.

    XML-to-JSON conversions give an object for one child and an array for
    several: every possibly repeated element goes through this.
    """
    if value is None:
        return []
    if isinstance(value, list):
        return value
    return [value]


def dedupe(values: Iterable[str]) -> tuple[str, ...]:
    """Keep the first occurrence of each value, in order."""
    seen: dict[str, None] = {}
    for value in values:
        if value and value not in seen:
            seen[value] = None
    return tuple(seen)


def dig(data: Any, *path: str) -> Any:
    """``data[p0][p1]…`` through dicts, ``None`` as soon as a step is missing."""
    current = data
    for key in path:
        if not isinstance(current, Mapping):
            return None
        current = current.get(key)
    return current


def text_of(value: Any) -> str | None:
    """The text of an XML-to-JSON value: a string, ``{"#text": …}``, a number."""
    if value is None:
        return None
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float, Decimal)):
        return str(value)
    if isinstance(value, Mapping):
        inner = value.get("#text")
        return text_of(inner) if inner is not None else None
    if isinstance(value, list) and value:
        return text_of(value[0])
    return None


def mapping(value: Any) -> Mapping[str, Any]:
    """``value`` if it is a dict, else an empty one."""
    return value if isinstance(value, Mapping) else {}


def first_key(value: Any) -> str | None:
    """The first key of a dict, used for "enum as key" XML leftovers (``{"OUVERT": ""}``)."""
    if isinstance(value, Mapping):
        for key in value:
            if not str(key).startswith("@"):
                return str(key)
    return None


# ---------------------------------------------------------------------------- text

_C1 = re.compile("[\x80-\x9f]")
_SPACES = re.compile(r"\s+")


def _c1_to_cp1252(match: re.Match[str]) -> str:
    char = match.group(0)
    try:
        return bytes([ord(char)]).decode("cp1252")
    except UnicodeDecodeError:  # 0x81, 0x8D, 0x8F, 0x90, 0x9D are undefined in cp1252
        return ""


def decode_entities(text: str) -> str:
    """Decode HTML entities once; map Windows-1252 code points 128–159.

    ``html.unescape`` already maps ``&#128;``–``&#159;`` through Windows-1252
    (HTML5 rule); raw C1 control characters left by a wrong decoding are mapped
    the same way here.
    """
    if "&" in text:
        text = html.unescape(text)
    return _C1.sub(_c1_to_cp1252, text)


def collapse_whitespace(text: str) -> str:
    return _SPACES.sub(" ", text).strip()


def clean_text(value: Any) -> str | None:
    """Decoded, whitespace-collapsed text, or ``None`` when empty."""
    raw = text_of(value)
    if raw is None:
        return None
    cleaned = collapse_whitespace(decode_entities(raw))
    return cleaned or None


def clean_multiline(value: Any) -> str | None:
    """Like :func:`clean_text` but keeps line breaks (collapsed to one), for descriptions."""
    raw = text_of(value)
    if raw is None:
        return None
    decoded = decode_entities(raw).replace("\r\n", "\n").replace("\r", "\n")
    lines = [collapse_whitespace(line) for line in decoded.split("\n")]
    out: list[str] = []
    for line in lines:
        if line or (out and out[-1]):
            out.append(line)
    result = "\n".join(out).strip()
    return result or None


def fold(text: str) -> str:
    """Lower-case, accents removed, whitespace collapsed: for comparisons only."""
    decomposed = unicodedata.normalize("NFKD", text)
    stripped = "".join(c for c in decomposed if not unicodedata.combining(c))
    return collapse_whitespace(stripped).casefold()


# ----------------------------------------------------------------------------- CPV

_CPV_WEIGHTS = (3, 7, 1, 3, 7, 1, 3, 7)
_CPV_TEXT = re.compile(r"(?<!\d)(\d{8})\s?-\s?(\d)(?!\d)")


def cpv_check_digit(code8: str) -> int:
    """The CPV 2008 check digit (weights 3, 7, 1 repeating, modulo 10)."""
    return sum(int(d) * w for d, w in zip(code8, _CPV_WEIGHTS, strict=True)) % 10


def normalize_cpv(value: Any) -> str | None:
    """``"45432111"``, ``"45432111-5"``, ``"45432111-5 : Travaux…"`` → ``"45432111"``."""
    raw = text_of(value)
    if raw is None:
        return None
    match = re.match(r"\s*(\d{8})(?:\s?-\s?\d)?(?!\d)", raw)
    return match.group(1) if match else None


def cpvs_in_text(text: str | None) -> list[str]:
    """Full CPV codes ("45432111-5") quoted in free text, kept only when the check digit is right."""
    if not text:
        return []
    return [m.group(1) for m in _CPV_TEXT.finditer(text) if cpv_check_digit(m.group(1)) == int(m.group(2))]


# ---------------------------------------------------------------------- geography

_DEPT = re.compile(r"^(?:0?[1-9]|[1-8]\d|9[0-5]|2[AB]|97[1-8]|98[4-9])$")


def normalize_department(value: Any) -> str | None:
    """``"2"`` → ``"02"``, ``"2a"`` → ``"2A"``, ``"971"`` kept; anything else → ``None``."""
    raw = text_of(value)
    if raw is None:
        return None
    code = raw.strip().upper()
    if not _DEPT.match(code):
        return None
    if len(code) == 1:
        code = "0" + code
    return code


def department_from_postcode(postcode: Any) -> str | None:
    """French postcode → département ("91405" → "91", "20000" → "2A", "97110" → "971")."""
    raw = text_of(postcode)
    if raw is None:
        return None
    digits = re.sub(r"\s", "", raw)
    if not re.fullmatch(r"\d{5}", digits):
        return None
    if digits.startswith("97") or digits.startswith("98"):
        return normalize_department(digits[:3])
    if digits.startswith("20"):
        return "2A" if int(digits) < 20200 else "2B"
    if digits.startswith("00"):
        return None
    return normalize_department(digits[:2])


# NUTS 3 (2021, as carried by the eForms SDK) → département, joined on the names of
# data/derived/nuts_fr.csv and data/derived/departements.csv (1:1, 101 codes).
NUTS3_TO_DEPARTMENT: dict[str, str] = {
    "FR101": "75", "FR102": "77", "FR103": "78", "FR104": "91", "FR105": "92", "FR106": "93",
    "FR107": "94", "FR108": "95", "FRB01": "18", "FRB02": "28", "FRB03": "36", "FRB04": "37",
    "FRB05": "41", "FRB06": "45", "FRC11": "21", "FRC12": "58", "FRC13": "71", "FRC14": "89",
    "FRC21": "25", "FRC22": "39", "FRC23": "70", "FRC24": "90", "FRD11": "14", "FRD12": "50",
    "FRD13": "61", "FRD21": "27", "FRD22": "76", "FRE11": "59", "FRE12": "62", "FRE21": "02",
    "FRE22": "60", "FRE23": "80", "FRF11": "67", "FRF12": "68", "FRF21": "08", "FRF22": "10",
    "FRF23": "51", "FRF24": "52", "FRF31": "54", "FRF32": "55", "FRF33": "57", "FRF34": "88",
    "FRG01": "44", "FRG02": "49", "FRG03": "53", "FRG04": "72", "FRG05": "85", "FRH01": "22",
    "FRH02": "29", "FRH03": "35", "FRH04": "56", "FRI11": "24", "FRI12": "33", "FRI13": "40",
    "FRI14": "47", "FRI15": "64", "FRI21": "19", "FRI22": "23", "FRI23": "87", "FRI31": "16",
    "FRI32": "17", "FRI33": "79", "FRI34": "86", "FRJ11": "11", "FRJ12": "30", "FRJ13": "34",
    "FRJ14": "48", "FRJ15": "66", "FRJ21": "09", "FRJ22": "12", "FRJ23": "31", "FRJ24": "32",
    "FRJ25": "46", "FRJ26": "65", "FRJ27": "81", "FRJ28": "82", "FRK11": "03", "FRK12": "15",
    "FRK13": "43", "FRK14": "63", "FRK21": "01", "FRK22": "07", "FRK23": "26", "FRK24": "38",
    "FRK25": "42", "FRK26": "69", "FRK27": "73", "FRK28": "74", "FRL01": "04", "FRL02": "05",
    "FRL03": "06", "FRL04": "13", "FRL05": "83", "FRL06": "84", "FRM01": "2A", "FRM02": "2B",
    "FRY10": "971", "FRY20": "972", "FRY30": "973", "FRY40": "974", "FRY50": "976",
}  # fmt: skip


def normalize_nuts(value: Any) -> str | None:
    raw = text_of(value)
    if raw is None:
        return None
    code = raw.strip().upper()
    return code if re.fullmatch(r"[A-Z]{2}[0-9A-Z]{0,3}", code) else None


# Overseas départements/collectivités do not live on Paris time.
_OVERSEAS_ZONES: dict[str, str] = {
    "971": "America/Guadeloupe",
    "972": "America/Martinique",
    "973": "America/Cayenne",
    "974": "Indian/Reunion",
    "975": "America/Miquelon",
    "976": "Indian/Mayotte",
    "977": "America/St_Barthelemy",
    "978": "America/Marigot",
    "986": "Pacific/Wallis",
    "987": "Pacific/Tahiti",
    "988": "Pacific/Noumea",
}


def french_zone(department: str | None) -> ZoneInfo:
    """Time zone of a French département code; Europe/Paris unless overseas."""
    if department and department in _OVERSEAS_ZONES:
        return ZoneInfo(_OVERSEAS_ZONES[department])
    return PARIS


# ISO 3166 alpha-3 country → time zone used to read eForms deadlines of that country
# (mainland zone; the Azores, Madeira and the Canary Islands are not distinguished).
COUNTRY_ZONES: dict[str, str] = {
    "AUT": "Europe/Vienna", "BEL": "Europe/Brussels", "BGR": "Europe/Sofia", "HRV": "Europe/Zagreb",
    "CYP": "Asia/Nicosia", "CZE": "Europe/Prague", "DNK": "Europe/Copenhagen", "EST": "Europe/Tallinn",
    "FIN": "Europe/Helsinki", "FRA": "Europe/Paris", "DEU": "Europe/Berlin", "GRC": "Europe/Athens",
    "HUN": "Europe/Budapest", "IRL": "Europe/Dublin", "ITA": "Europe/Rome", "LVA": "Europe/Riga",
    "LTU": "Europe/Vilnius", "LUX": "Europe/Luxembourg", "MLT": "Europe/Malta", "NLD": "Europe/Amsterdam",
    "POL": "Europe/Warsaw", "PRT": "Europe/Lisbon", "ROU": "Europe/Bucharest", "SVK": "Europe/Bratislava",
    "SVN": "Europe/Ljubljana", "ESP": "Europe/Madrid", "SWE": "Europe/Stockholm", "NOR": "Europe/Oslo",
    "ISL": "Atlantic/Reykjavik", "LIE": "Europe/Vaduz", "CHE": "Europe/Zurich", "GBR": "Europe/London",
}  # fmt: skip


# ------------------------------------------------------------------------ identifiers


def clean_siret(value: Any) -> str | None:
    """14 digits once spaces, dots and dashes are removed; else ``None``."""
    raw = text_of(value)
    if raw is None:
        return None
    digits = re.sub(r"[\s.\-]", "", raw)
    return digits if re.fullmatch(r"\d{14}", digits) else None


def normalize_publication_number(value: Any) -> str | None:
    """TED/OJ S publication number without zero padding: ``"00047522-2024"`` → ``"47522-2024"``."""
    raw = text_of(value)
    if raw is None:
        return None
    match = re.fullmatch(r"\s*0*(\d+)-(\d{4})\s*", raw)
    if not match:
        return None
    return f"{int(match.group(1))}-{match.group(2)}"


_IDWEB = re.compile(r"^\d{2}-\d+$")


def normalize_idweb(value: Any) -> str | None:
    """A BOAMP idweb ("26-7298"); ``"26_7298"`` is accepted too."""
    raw = text_of(value)
    if raw is None:
        return None
    candidate = raw.strip().replace("_", "-")
    return candidate if _IDWEB.match(candidate) else None


# ----------------------------------------------------------------------------- lots

_LOT_PREFIX = re.compile(
    r"""^\s*(?:
        lot\s*(?:n\s*[°ºo]\.?|no\.?|num(?:[ée]ro)?\.?|\#)?\s*0*(\d{1,3})(?!\d)   # Lot 2, Lot n°3, LOT 02
      | 0*(\d{1,3})\s*(?:[-–—:)]|\.(?=\s))                                        # 1- , 2 : , 3) , 4.
    )\s*[-–—:._)]*\s*""",
    re.IGNORECASE | re.VERBOSE,
)


def split_lot_label(text: str | None) -> tuple[str | None, str | None]:
    """``"Lot 2 : Finition"`` → ``("2", "Finition")``; ``"1- Prestations…"`` → ``("1", "Prestations…")``.

    Returns ``(None, text)`` when the text does not start with a lot number.
    """
    if not text:
        return None, text
    match = _LOT_PREFIX.match(text)
    if not match:
        return None, text
    number = match.group(1) or match.group(2)
    if number is None:  # pragma: no cover - one group always matches
        return None, text
    rest = text[match.end() :].strip() or None
    return str(int(number)), rest


def lot_number_from_id(value: Any) -> str | None:
    """eForms lot id → lot number.

    ``"LOT-0001"`` → ``"1"``, ``"LOT-0000"`` → ``"0"``, ``"PAR-0002"`` → ``"2"``.
    """
    raw = text_of(value)
    if raw is None:
        return None
    match = re.fullmatch(r"\s*[A-Z]{3}-0*(\d+)\s*", raw)
    if match:
        return match.group(1)
    digits = re.fullmatch(r"\s*0*(\d+)\s*", raw)
    if digits:
        return digits.group(1)
    return raw.strip() or None


# ---------------------------------------------------------------------------- numbers


def parse_decimal(value: Any) -> Decimal | None:
    """``"75000"``, ``"159691.6"``, ``"1 234,50"``, ``75000`` → ``Decimal``; else ``None``."""
    raw = text_of(value)
    if raw is None:
        return None
    cleaned = re.sub(r"[\s\u00a0\u202f]", "", raw)
    if "," in cleaned and "." not in cleaned:
        cleaned = cleaned.replace(",", ".")
    try:
        number = Decimal(cleaned)
    except InvalidOperation:
        return None
    return number if number.is_finite() else None


def positive_amount(value: Any) -> Decimal | None:
    """An amount, ``None`` when missing, unreadable or ≤ 0 (BOAMP writes "0.00" for "unknown")."""
    number = parse_decimal(value)
    if number is None or number <= 0:
        return None
    return number


# ------------------------------------------------------------------------------ dates

_DATE_TIME = re.compile(
    r"^\s*(\d{4})-(\d{2})-(\d{2})"
    r"(?:[T ](\d{2}):(\d{2})(?::(\d{2})(?:\.\d+)?)?)?"
    r"\s*(Z|[+-]\d{2}:?\d{2})?\s*$"
)
_TIME = re.compile(r"^\s*(\d{2}):(\d{2})(?::(\d{2})(?:\.\d+)?)?\s*(Z|[+-]\d{2}:?\d{2})?\s*$")


def _offset(text: str | None) -> dt.timezone | None:
    if not text:
        return None
    if text == "Z":
        return dt.UTC
    sign = -1 if text[0] == "-" else 1
    digits = text[1:].replace(":", "")
    delta = dt.timedelta(hours=int(digits[:2]), minutes=int(digits[2:4]))
    return dt.timezone(sign * delta)


def split_datetime(value: Any) -> tuple[dt.date, dt.time | None, dt.timezone | None] | None:
    """``"2026-02-16T12:00:00.000+01:00"`` → ``(date, time, offset)``; time/offset may be ``None``."""
    raw = text_of(value)
    if raw is None:
        return None
    match = _DATE_TIME.match(raw)
    if not match:
        return None
    year, month, day, hour, minute, second, offset = match.groups()
    try:
        date = dt.date(int(year), int(month), int(day))
        time = dt.time(int(hour), int(minute), int(second or 0)) if hour is not None else None
    except ValueError:
        return None
    return date, time, _offset(offset)


def split_time(value: Any) -> tuple[dt.time, dt.timezone | None] | None:
    """``"12:00:00+01:00"`` → ``(time, offset)``."""
    raw = text_of(value)
    if raw is None:
        return None
    match = _TIME.match(raw)
    if not match:
        return None
    hour, minute, second, offset = match.groups()
    try:
        return dt.time(int(hour), int(minute), int(second or 0)), _offset(offset)
    except ValueError:
        return None


def wall_clock(date: dt.date, time: dt.time, zone: dt.tzinfo) -> dt.datetime:
    """The aware datetime showing ``time`` on the clocks of ``zone`` on ``date``.

    In the autumn overlap hour the earlier instant is chosen (fold=0), in the
    spring gap the time is moved forward by zoneinfo's usual rule.
    """
    naive = dt.datetime.combine(date, time)
    aware = naive.replace(tzinfo=zone)
    # normalise times that fall in a DST gap
    return aware.astimezone(dt.UTC).astimezone(zone)


def parse_local_deadline(value: Any, zone: dt.tzinfo = PARIS) -> dt.datetime | None:
    """A deadline read as wall-clock time in ``zone`` whatever offset is written.

    Date-only values give midnight (the caller should warn).
    """
    parts = split_datetime(value)
    if parts is None:
        return None
    date, time, _ = parts
    return wall_clock(date, time or dt.time(0, 0), zone)


def parse_date(value: Any, zone: dt.tzinfo = BRUSSELS) -> dt.date | None:
    """The calendar date of a value.

    A plain date (with or without offset, ``"2024-01-24Z"``) keeps its date part;
    a date-time with an offset (TED's ``PD`` ``"2022-02-06T23:00:00Z"``) is
    converted to ``zone`` (Brussels: the OJ S calendar) first.
    """
    parts = split_datetime(value)
    if parts is None:
        return None
    date, time, offset = parts
    if time is not None and offset is not None:
        return dt.datetime.combine(date, time, tzinfo=offset).astimezone(zone).date()
    return date


def pick_language(value: Any, preferred: tuple[str, ...] = ("fra", "eng")) -> Any:
    """From a TED i18n map (``{"fra": …, "eng": …}``), the preferred language, else any."""
    if not isinstance(value, Mapping):
        return value
    lowered = {str(k).lower(): v for k, v in value.items()}
    for lang in preferred:
        if lowered.get(lang) not in (None, "", []):
            return lowered[lang]
    for item in lowered.values():
        if item not in (None, "", []):
            return item
    return None
