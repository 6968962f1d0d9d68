"""Administrative documents of a firm: upload checks, validity dates, storage, access.

An upload is judged on its bytes only: the name and the content type the browser declares are
attacker-controlled, so they are used for nothing but the name given back on download (and
that name must look harmless). A file is accepted when it is, from its first byte to its last,
exactly one PDF, PNG or JPEG document, with nothing active inside (scripts, launch actions,
embedded files) and nothing hidden after its end. Every refusal happens before a single byte is
written.
"""

from __future__ import annotations

import calendar
import datetime as dt
import hashlib
import io
import re
import struct
import unicodedata
import zipfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from tenderpool.accounts.models import User
from tenderpool.accounts.services import record_audit
from tenderpool.errors import Forbidden, NotFound, ValidationError
from tenderpool.firms.models import Firm, FirmDocument, FirmMembership, FirmReference
from tenderpool.storage import Storage

# --------------------------------------------------------------------------- kinds and validity


@dataclass(frozen=True)
class DocumentKind:
    code: str
    label: str
    # Default validity in months from the issue date when the firm gives no expiry date.
    validity_months: int | None
    # A newer document of the same kind replaces the older one (one Kbis counts, not all of them).
    single: bool


# Defaults, each overridable by the expiry date the firm types:
# - Kbis: buyers ask for an extract "de moins de trois mois" (usual requirement of the
#   consultation rules): 3 months.
# - URSSAF attestation de vigilance: to be renewed every 6 months (code du travail, D8222-5):
#   6 months.
# - Tax attestation (attestation de régularité fiscale), RC pro and décennale insurance
#   certificates: 12 months, our convention (the tax attestation is issued for a year's
#   situation, insurance certificates usually cover a calendar or policy year).
DOCUMENT_KINDS: dict[str, DocumentKind] = {
    kind.code: kind
    for kind in (
        DocumentKind("kbis", "Extrait Kbis", 3, True),
        DocumentKind("urssaf", "Attestation de vigilance URSSAF", 6, True),
        DocumentKind("tax", "Attestation de régularité fiscale", 12, True),
        DocumentKind("rc_pro", "Attestation d'assurance responsabilité civile professionnelle", 12, True),
        DocumentKind("decennale", "Attestation d'assurance décennale", 12, True),
        DocumentKind("reference", "Attestation de bonne exécution (référence)", None, False),
        DocumentKind("other", "Autre document", None, False),
    )
}
DATED_KINDS = frozenset(code for code, kind in DOCUMENT_KINDS.items() if kind.validity_months)
EXPIRY_WARNING_DAYS = 30


def add_months(day: dt.date, months: int) -> dt.date:
    """Same day ``months`` later, clamped to the month's end (31 August + 6 months = 28 February)."""
    index = day.month - 1 + months
    year, month = day.year + index // 12, index % 12 + 1
    return dt.date(year, month, min(day.day, calendar.monthrange(year, month)[1]))


def default_expiry(kind: str, issued_on: dt.date | None) -> dt.date | None:
    months = DOCUMENT_KINDS[kind].validity_months
    if months is None or issued_on is None:
        return None
    return add_months(issued_on, months)


def document_status(document: FirmDocument, today: dt.date, within_days: int = EXPIRY_WARNING_DAYS) -> str:
    """``expired``, ``expiring`` (fewer than ``within_days`` days left), ``valid`` or ``undated``."""
    if document.expires_on is None:
        return "undated"
    if document.expires_on < today:
        return "expired"
    if document.expires_on < today + dt.timedelta(days=within_days):
        return "expiring"
    return "valid"


def _recency(document: FirmDocument) -> tuple[dt.date, dt.datetime]:
    issued = document.issued_on or document.uploaded_at.date()
    return issued, document.uploaded_at


def current_documents(documents: list[FirmDocument]) -> list[FirmDocument]:
    """The documents that count: the latest of each single kind, and every other document."""
    latest: dict[str, FirmDocument] = {}
    others: list[FirmDocument] = []
    for document in documents:
        kind = DOCUMENT_KINDS.get(document.kind)
        if kind is None or not kind.single:
            others.append(document)
        elif document.kind not in latest or _recency(document) > _recency(latest[document.kind]):
            latest[document.kind] = document
    return [*latest.values(), *others]


def current_document(firm: Firm, kind: str) -> FirmDocument | None:
    for document in current_documents(list(firm.documents)):
        if document.kind == kind:
            return document
    return None


def expiring_documents(
    session: Session, firm: Firm, *, today: dt.date, within_days: int = EXPIRY_WARNING_DAYS
) -> list[FirmDocument]:
    """Documents that count and are expired or expire in fewer than ``within_days`` days, soonest first.

    A document replaced by a newer one of the same kind is left out: the firm has already
    renewed it. Used by the profile page and the digests.
    """
    documents = list(
        session.scalars(
            select(FirmDocument).where(FirmDocument.firm_id == firm.id, FirmDocument.expires_on.is_not(None))
        )
    )
    limit = today + dt.timedelta(days=within_days)
    flagged = [d for d in current_documents(documents) if d.expires_on is not None and d.expires_on < limit]
    return sorted(flagged, key=lambda d: (d.expires_on or today, d.id))


# --------------------------------------------------------------------------- upload checks


class UploadRefused(ValidationError):
    """The file was refused; the message says why and what to do. Nothing was written."""

    def __init__(self, message: str) -> None:
        super().__init__(message, field="file")


@dataclass(frozen=True)
class CheckedFile:
    original_name: str
    content_type: str
    size: int
    sha256: str


EXTENSIONS = {"pdf": "pdf", "png": "png", "jpg": "jpeg", "jpeg": "jpeg"}
CONTENT_TYPES = {"pdf": "application/pdf", "png": "image/png", "jpeg": "image/jpeg"}
FORMAT_LABELS = {"pdf": "un PDF", "png": "une image PNG", "jpeg": "une image JPEG"}
# Extensions that must not hide inside a name ("facture.exe.pdf", "scan.pdf.exe"): they are what
# an attacker disguises, or what a careless rename leaves behind.
_HIDDEN_EXTENSIONS = {
    "exe", "com", "bat", "cmd", "scr", "pif", "msi", "dll", "cpl", "jar", "js", "jse", "vbs", "vbe",
    "wsf", "wsh", "hta", "ps1", "psm1", "sh", "bash", "zsh", "py", "pl", "rb", "php", "php3", "php4",
    "php5", "phtml", "phar", "asp", "aspx", "jsp", "cgi", "htm", "html", "xhtml", "shtml", "svg", "xml",
    "swf", "lnk", "url", "reg", "iso", "img", "zip", "rar", "7z", "gz", "tgz", "bz2", "xz", "tar",
    "docm", "xlsm", "pptm", "dotm", "pdf", "png", "jpg", "jpeg",
}  # fmt: skip
MAX_NAME_LENGTH = 200
# Images: refused beyond these sizes, so that no viewer is asked to allocate gigabytes for a
# small file (a "pixel flood" compresses very well).
MAX_IMAGE_SIDE = 30_000
MAX_IMAGE_PIXELS = 100_000_000
# PDF: the most any compressed stream may grow to when it is read (object streams, page
# contents, images), and the most all of them together may: a "zip bomb" hidden in a page's
# content stream would otherwise pass the upload and explode in the reader of the dossier.
PDF_MAX_INFLATED_BYTES = 32 * 1024 * 1024
PDF_MAX_TOTAL_INFLATED_BYTES = 256 * 1024 * 1024
_SIGNATURES = {b"%PDF-": "pdf", b"\x89PNG\r\n\x1a\n": "png", b"\xff\xd8\xff": "jpeg"}
_FOREIGN_SIGNATURES = {
    b"PK\x03\x04": "une archive ZIP (ou un document Office)",
    b"PK\x05\x06": "une archive ZIP vide",
    b"Rar!": "une archive RAR",
    b"7z\xbc\xaf\x27\x1c": "une archive 7-Zip",
    b"\x1f\x8b": "une archive gzip",
    b"MZ": "un programme Windows",
    b"\x7fELF": "un programme",
    b"GIF8": "une image GIF",
    b"\xd0\xcf\x11\xe0": "un document Office ancien format",
}
# Markup that makes a file "also" a web page or a script when a browser or a server sniffs it.
# Only tokens long enough not to turn up by chance in compressed bytes ("<svg" would, now and then).
_MARKUP_RE = re.compile(rb"<(?:script|html|iframe|\?php|!doctype\s+html)\b", re.IGNORECASE)


def _megabytes(size: int) -> str:
    return f"{size / (1024 * 1024):.0f} Mo" if size >= 1024 * 1024 else f"{size // 1024} ko"


def clean_filename(name: str | None) -> tuple[str, str]:
    """The name to keep and the format its extension announces, or UploadRefused."""
    name = unicodedata.normalize("NFC", (name or "").strip())
    if not name:
        raise UploadRefused("Choisissez le fichier à envoyer.")
    if "/" in name or "\\" in name:
        raise UploadRefused(
            "Le nom du fichier contient un chemin (« / » ou « \\ ») : il est refusé. "
            "Renommez le fichier simplement, par exemple « kbis-2026.pdf »."
        )
    if any(unicodedata.category(char) in ("Cc", "Cf") for char in name):
        raise UploadRefused("Le nom du fichier contient des caractères invisibles : renommez-le.")
    if name.startswith("."):
        raise UploadRefused("Le nom du fichier ne peut pas commencer par un point : renommez-le.")
    if len(name) > MAX_NAME_LENGTH:
        raise UploadRefused(f"Le nom du fichier est trop long ({MAX_NAME_LENGTH} caractères au plus).")
    stem, dot, extension = name.rpartition(".")
    extension = extension.lower()
    inner = [part.lower().strip() for part in stem.split(".")[1:]] if dot else []
    if not dot or extension not in EXTENSIONS:
        hidden = next((part for part in inner if part in EXTENSIONS), None)
        if hidden:
            raise UploadRefused(
                f"Le nom « {name} » se termine par .{extension} après .{hidden} (double extension) : "
                "il est refusé. Seuls les fichiers PDF, PNG et JPEG sont acceptés."
            )
        shown = f".{extension}" if dot else "aucune extension"
        raise UploadRefused(
            f"Format refusé ({shown}) : seuls les fichiers PDF (.pdf), PNG (.png) et JPEG (.jpg) "
            "sont acceptés."
        )
    # "kbis.pdf.pdf" (a rename with hidden extensions) is harmless; "kbis.exe.pdf" is not.
    hidden = next(
        (p for p in inner if p in _HIDDEN_EXTENSIONS and EXTENSIONS.get(p) != EXTENSIONS[extension]), None
    )
    if hidden:
        raise UploadRefused(
            f"Le nom « {name} » contient une double extension (.{hidden}.{extension}) : il est refusé. "
            f"Renommez le fichier avec une seule extension, par exemple « document.{extension} »."
        )
    return name, EXTENSIONS[extension]


def inspect_upload(filename: str | None, data: bytes, *, max_bytes: int) -> CheckedFile:
    """Accept a PDF, PNG or JPEG judged by its content, or raise UploadRefused with the reason."""
    name, announced = clean_filename(filename)
    if not data:
        raise UploadRefused("Le fichier est vide.")
    if len(data) > max_bytes:
        raise UploadRefused(
            f"Le fichier dépasse la taille maximale autorisée ({_megabytes(max_bytes)}). "
            "Réduisez-le (numérisation en 150 ou 200 ppp, en niveaux de gris) puis réessayez."
        )
    actual = next((fmt for magic, fmt in _SIGNATURES.items() if data.startswith(magic)), None)
    if actual is None:
        foreign = next(
            (label for magic, label in _FOREIGN_SIGNATURES.items() if data.startswith(magic)), None
        )
        what = f"est {foreign}" if foreign else "n'est ni un PDF, ni une image PNG ou JPEG"
        raise UploadRefused(
            f"Le contenu de ce fichier {what} (vérifié sur son contenu, pas sur son nom) : il est refusé. "
            "Envoyez un PDF, un PNG ou un JPEG."
        )
    if actual != announced:
        raise UploadRefused(
            f"Le nom se termine par .{name.rpartition('.')[2].lower()} mais le fichier est "
            f"{FORMAT_LABELS[actual]} : renommez-le avec la bonne extension ou envoyez le bon document."
        )
    _refuse_polyglots(data, actual)
    if actual == "pdf":
        _check_pdf(data)
    elif actual == "png":
        _check_png(data)
    else:
        _check_jpeg(data)
    return CheckedFile(
        original_name=name,
        content_type=CONTENT_TYPES[actual],
        size=len(data),
        sha256=hashlib.sha256(data).hexdigest(),
    )


_POLYGLOT = (
    "Ce fichier est aussi {what} (fichier « polyglotte ») : il est refusé par sécurité. "
    "Enregistrez de nouveau le document depuis votre logiciel (Imprimer › Enregistrer au format PDF) "
    "et réessayez."
)
_TRAILING = (
    "Des données sont cachées après la fin {what} : le fichier est refusé par sécurité. "
    "Enregistrez de nouveau le document depuis votre logiciel et réessayez."
)


def _refuse_polyglots(data: bytes, actual: str) -> None:
    # A ZIP's directory sits at the end of the file, so a PDF or an image can also be a valid
    # archive (or a zip bomb) for whoever opens it as one.
    if zipfile.is_zipfile(io.BytesIO(data)):
        raise UploadRefused(_POLYGLOT.format(what="une archive ZIP"))
    if _MARKUP_RE.search(data):
        raise UploadRefused(_POLYGLOT.format(what="une page web ou un script"))
    # PDF readers accept a header anywhere in the first kilobyte, so an image can open as a PDF.
    if actual != "pdf" and b"%PDF-" in data[:1024]:
        raise UploadRefused(_POLYGLOT.format(what="un PDF"))


_UNREADABLE_PDF = (
    "Ce PDF est illisible ou endommagé : ouvrez-le sur votre ordinateur, enregistrez-en une nouvelle "
    "copie (Imprimer › Enregistrer au format PDF) et réessayez."
)
# Active content, by the name of the PDF key or action type that carries it.
_ACTIVE_NAMES = {
    "/JavaScript": "du code JavaScript",
    "/JS": "du code JavaScript",
    "/Launch": "une action qui lance un programme (Launch)",
    "/EmbeddedFile": "un fichier caché à l'intérieur (pièce jointe intégrée)",
    "/EmbeddedFiles": "un fichier caché à l'intérieur (pièce jointe intégrée)",
    "/XFA": "un formulaire XFA (qui peut contenir des scripts)",
    "/RichMedia": "un contenu multimédia actif (RichMedia)",
    "/EF": "un fichier caché à l'intérieur (pièce jointe intégrée)",
}
# Cheap first pass over the raw bytes, for objects a damaged cross-reference table would hide
# from the object walk. Only long names: short ones ("/JS") occur by chance in compressed data.
_RAW_NAME_RE = re.compile(rb"/((?:[A-Za-z]|#[0-9A-Fa-f]{2}){6,24})")
_RAW_ACTIVE = {"JavaScript", "Launch", "EmbeddedFile", "EmbeddedFiles", "RichMedia"}


def _check_pdf(data: bytes) -> None:
    end = data.rfind(b"%%EOF")
    if end < 0:
        raise UploadRefused(_UNREADABLE_PDF)
    if data[end + 5 :].strip(b"\x00\t\n\f\r "):
        raise UploadRefused(_TRAILING.format(what="du PDF"))
    for match in _RAW_NAME_RE.finditer(data):
        name = re.sub(rb"#([0-9A-Fa-f]{2})", lambda m: bytes([int(m.group(1), 16)]), match.group(1))
        if name.decode("latin-1") in _RAW_ACTIVE:
            _refuse_active("/" + name.decode("latin-1"))

    import pypdf
    from pypdf.errors import LimitReachedError, PyPdfError

    try:
        with pypdf.apply_configuration(
            zlib_maximum_output_length=PDF_MAX_INFLATED_BYTES,
            lzw_maximum_output_length=PDF_MAX_INFLATED_BYTES,
            run_length_maximum_output_length=PDF_MAX_INFLATED_BYTES,
            array_based_stream_maximum_output_length=PDF_MAX_INFLATED_BYTES,
        ):
            reader = pypdf.PdfReader(io.BytesIO(data), strict=False)
            if reader.is_encrypted:
                raise UploadRefused(
                    "Ce PDF est protégé (chiffré ou verrouillé par un mot de passe) : il ne pourrait pas "
                    "être joint à un dossier. Enregistrez-en une copie non protégée "
                    "(Imprimer › Enregistrer au format PDF) et envoyez-la."
                )
            if len(reader.pages) == 0:
                raise UploadRefused("Ce PDF ne contient aucune page.")
            for found in _active_content(reader):
                _refuse_active(found)
            _inflate_every_stream(reader)
    except UploadRefused:
        raise
    except LimitReachedError:
        raise UploadRefused(
            "Ce PDF contient des données compressées démesurées (« bombe de décompression ») : il est refusé."
        ) from None
    except (PyPdfError, RecursionError, MemoryError):
        raise UploadRefused(_UNREADABLE_PDF) from None
    except Exception:  # a damaged file can make the parser fail in any way: it is unreadable
        raise UploadRefused(_UNREADABLE_PDF) from None


def _inflate_every_stream(reader: Any) -> None:
    """Decompress every stream once, within the limits: LimitReachedError marks a bomb.

    Images in JPEG (DCTDecode) come back as they are, so ordinary scans cost little."""
    from pypdf.errors import LimitReachedError
    from pypdf.generic import IndirectObject, StreamObject

    total = 0
    references = [(idnum, generation) for generation, table in reader.xref.items() for idnum in table]
    for idnum, generation in references:
        obj = reader.get_object(IndirectObject(idnum, generation, reader))
        if isinstance(obj, StreamObject):
            total += len(obj.get_data())
            if total > PDF_MAX_TOTAL_INFLATED_BYTES:
                raise LimitReachedError("inflated streams exceed the total budget")


def _refuse_active(name: str) -> None:
    what = _ACTIVE_NAMES.get(name, "une action automatique à l'ouverture (OpenAction)")
    raise UploadRefused(
        f"Ce PDF contient {what} : il est refusé par sécurité. Enregistrez-en une copie simple "
        "(Imprimer › Enregistrer au format PDF) et envoyez-la."
    )


def _active_content(reader: Any) -> Iterator[str]:
    """Names of the active content found in any object of the file (compressed ones included)."""
    from pypdf.generic import ArrayObject, DictionaryObject, IndirectObject, NameObject

    def walk(obj: Any, depth: int) -> Iterator[str]:
        # Indirect references are not followed: every indirect object is visited on its own.
        if depth > 64:
            return
        if isinstance(obj, DictionaryObject):
            for key in obj:
                if key in _ACTIVE_NAMES:
                    yield str(key)
            action = obj.get("/S")
            if isinstance(action, IndirectObject):
                action = action.get_object()
            if obj.get("/Type") == "/EmbeddedFile":
                yield "/EmbeddedFile"
            if isinstance(action, NameObject) and action in ("/JavaScript", "/Launch"):
                yield str(action)
            if "/OpenAction" in obj:
                opening = obj.get("/OpenAction")
                if isinstance(opening, IndirectObject):
                    opening = opening.get_object()
                # A destination (an array: "open at page 1, fit width") is harmless and common
                # (LibreOffice writes one); any action other than "go to a page" is refused.
                if isinstance(opening, DictionaryObject) and opening.get("/S") != "/GoTo":
                    yield "/OpenAction"
            for value in obj.values():
                yield from walk(value, depth + 1)
        elif isinstance(obj, ArrayObject):
            for value in obj:
                yield from walk(value, depth + 1)

    yield from walk(reader.trailer, 0)
    references = [(idnum, generation) for generation, table in reader.xref.items() for idnum in table]
    references += [(idnum, 0) for idnum in reader.xref_objStm]
    for idnum, generation in references:
        obj = reader.get_object(IndirectObject(idnum, generation, reader))
        yield from walk(obj, 0)


_BAD_IMAGE = "Cette image {fmt} est endommagée ou incomplète : enregistrez-la de nouveau et réessayez."


def _check_dimensions(width: int, height: int, fmt: str) -> None:
    if width <= 0 or height <= 0:
        raise UploadRefused(_BAD_IMAGE.format(fmt=fmt))
    if width > MAX_IMAGE_SIDE or height > MAX_IMAGE_SIDE or width * height > MAX_IMAGE_PIXELS:
        raise UploadRefused(
            f"Cette image est démesurée ({width} × {height} pixels) : réduisez-la "
            "(une page numérisée à 300 ppp fait environ 2 500 × 3 500 pixels) et réessayez."
        )


def _check_png(data: bytes) -> None:
    """Walk every chunk (length, type, CRC) from the signature to IEND, with nothing after it."""
    bad = UploadRefused(_BAD_IMAGE.format(fmt="PNG"))
    offset, first, seen_data = 8, True, False
    while True:
        if offset + 12 > len(data):
            raise bad
        length, kind = struct.unpack(">I4s", data[offset : offset + 8])
        end = offset + 12 + length
        if length > 0x7FFFFFFF or end > len(data) or not kind.isalpha():
            raise bad
        body = data[offset + 8 : offset + 8 + length]
        (crc,) = struct.unpack(">I", data[end - 4 : end])
        if zlib.crc32(kind + body) != crc:
            raise bad
        if first:
            if kind != b"IHDR" or length != 13:
                raise bad
            width, height, depth, colour = struct.unpack(">IIBB", body[:10])
            if colour not in (0, 2, 3, 4, 6) or depth not in (1, 2, 4, 8, 16):
                raise bad
            _check_dimensions(width, height, "PNG")
            first = False
        seen_data = seen_data or kind == b"IDAT"
        offset = end
        if kind == b"IEND":
            break
    if not seen_data:
        raise bad
    if offset != len(data):
        raise UploadRefused(_TRAILING.format(what="de l'image"))


_SOF_MARKERS = frozenset({0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF})


def _check_jpeg(data: bytes) -> None:
    """Walk the segments from SOI to EOI: a frame header with sane dimensions, nothing after EOI."""
    bad = UploadRefused(_BAD_IMAGE.format(fmt="JPEG"))
    offset, size, dimensions = 2, len(data), None
    while True:
        if offset + 2 > size or data[offset] != 0xFF:
            raise bad
        while offset < size and data[offset] == 0xFF:  # fill bytes before a marker
            offset += 1
        if offset >= size:
            raise bad
        marker = data[offset]
        offset += 1
        if marker == 0xD9:  # EOI
            break
        if 0xD0 <= marker <= 0xD7 or marker == 0x01:  # markers without a length
            continue
        if offset + 2 > size:
            raise bad
        (length,) = struct.unpack(">H", data[offset : offset + 2])
        if length < 2 or offset + length > size:
            raise bad
        if marker in _SOF_MARKERS:
            if length < 8:
                raise bad
            height, width = struct.unpack(">HH", data[offset + 3 : offset + 7])
            _check_dimensions(width, height, "JPEG")
            dimensions = (width, height)
        offset += length
        if marker == 0xDA:  # start of scan: entropy-coded data runs to the next real marker
            while True:
                offset = data.find(b"\xff", offset)
                if offset < 0 or offset + 1 >= size:
                    raise bad
                following = data[offset + 1]
                if following == 0x00 or 0xD0 <= following <= 0xD7:
                    offset += 2  # stuffed byte or restart marker: still image data
                    continue
                break
    if dimensions is None:
        raise bad
    if offset != size:
        raise UploadRefused(_TRAILING.format(what="de l'image"))


# --------------------------------------------------------------------------- services


def _dates(
    kind: str, issued_on: dt.date | None, expires_on: dt.date | None, today: dt.date
) -> dt.date | None:
    if kind in DATED_KINDS and issued_on is None:
        raise ValidationError(
            f"Indiquez la date de délivrance : la validité d'un document « {DOCUMENT_KINDS[kind].label} » "
            "en dépend.",
            field="issued_on",
        )
    if issued_on is not None and issued_on > today:
        raise ValidationError("La date de délivrance ne peut pas être dans le futur.", field="issued_on")
    if expires_on is not None and issued_on is not None and expires_on < issued_on:
        raise ValidationError("La date de fin de validité précède la date de délivrance.", field="expires_on")
    return expires_on or default_expiry(kind, issued_on)


def upload_document(
    session: Session,
    storage: Storage,
    firm: Firm,
    *,
    by: User,
    kind: str,
    title: str | None,
    filename: str | None,
    data: bytes,
    issued_on: dt.date | None,
    expires_on: dt.date | None,
    max_bytes: int,
    today: dt.date,
    now: dt.datetime,
    ip: str | None,
) -> FirmDocument:
    """Check, store and record an uploaded document.

    The bytes are written only once every check has passed; if recording the row fails the
    stored file is deleted again. The caller commits, and deletes ``storage_key`` if the commit
    fails (see :func:`forget_stored`).
    """
    if kind not in DOCUMENT_KINDS:
        raise ValidationError("Choisissez le type de document dans la liste.", field="kind")
    expires = _dates(kind, issued_on, expires_on, today)
    title = " ".join((title or "").split()) or DOCUMENT_KINDS[kind].label
    if len(title) > 200:
        raise ValidationError("L'intitulé compte 200 caractères au plus.", field="title")
    checked = inspect_upload(filename, data, max_bytes=max_bytes)
    key = storage.save(data)
    try:
        document = FirmDocument(
            firm_id=firm.id,
            kind=kind,
            title=title,
            original_name=checked.original_name,
            storage_key=key,
            content_type=checked.content_type,
            size=checked.size,
            sha256=checked.sha256,
            issued_on=issued_on,
            expires_on=expires,
            uploaded_by_id=by.id,
            uploaded_at=now,
        )
        session.add(document)
        session.flush()
        firm.profile_updated_at = now
        record_audit(
            session,
            "firm_document_uploaded",
            actor=by,
            target_type="firm",
            target_id=firm.id,
            ip=ip,
            detail={"document_id": document.id, "kind": kind, "sha256": checked.sha256},
            now=now,
        )
    except BaseException:
        forget_stored(storage, key)
        raise
    return document


def forget_stored(storage: Storage, key: str) -> None:
    """Delete a stored file whose row will not exist (a failed flush or commit); never raises."""
    try:
        storage.delete(key)
    except Exception:  # the original failure matters more; an orphan file is harmless
        import logging

        logging.getLogger(__name__).warning("could not delete orphan upload %s", key, exc_info=True)


def firm_document(session: Session, firm: Firm, document_id: int) -> FirmDocument:
    document = session.get(FirmDocument, document_id)
    if document is None or document.firm_id != firm.id:
        raise NotFound("Document introuvable.")
    return document


def delete_document(
    session: Session, membership: FirmMembership, document_id: int, *, ip: str | None, now: dt.datetime
) -> str:
    """Delete a document row; return the storage key, to delete once the transaction is committed.

    The owner may delete any document of the firm, a member the documents they uploaded.
    """
    document = firm_document(session, membership.firm, document_id)
    if not membership.is_owner and document.uploaded_by_id != membership.user_id:
        raise Forbidden(
            "Seuls le responsable de l'entreprise et la personne qui a déposé ce document "
            "peuvent le supprimer."
        )
    session.execute(
        update(FirmReference)
        .where(FirmReference.attestation_id == document.id)
        .values(attestation_id=None)
        .execution_options(synchronize_session="fetch")
    )
    key = document.storage_key
    record_audit(
        session,
        "firm_document_deleted",
        actor=membership.user,
        target_type="firm",
        target_id=membership.firm_id,
        ip=ip,
        detail={"document_id": document.id, "kind": document.kind, "title": document.title},
        now=now,
    )
    session.delete(document)
    membership.firm.profile_updated_at = now
    session.flush()
    return key


def may_read_firm(user: User, firm: Firm, membership: FirmMembership | None) -> bool:
    """Members of the firm, staff of its chamber and admins."""
    if user.is_admin:
        return True
    if user.is_staff:
        return user.chamber_slug == firm.chamber_slug
    return membership is not None and membership.firm_id == firm.id


def document_for_download(
    session: Session, user: User, membership: FirmMembership | None, document_id: int
) -> FirmDocument:
    """The document if ``user`` may read it; otherwise NotFound, as if it did not exist."""
    document = session.get(FirmDocument, document_id)
    if document is None:
        raise NotFound("Document introuvable.")
    firm = session.get(Firm, document.firm_id)
    if firm is None or not may_read_firm(user, firm, membership):
        raise NotFound("Document introuvable.")
    return document


_UNSAFE_NAME_CHARS = re.compile(r'[\x00-\x1f\x7f"\\/;:*?<>|]+')


def download_name(document: FirmDocument) -> str:
    """The original name, made safe for a Content-Disposition header and any file system."""
    name = _UNSAFE_NAME_CHARS.sub("_", unicodedata.normalize("NFC", document.original_name)).strip(" .")
    extension = {"application/pdf": "pdf", "image/png": "png", "image/jpeg": "jpg"}.get(
        document.content_type, "bin"
    )
    if not name or "." not in name:
        name = f"document-{document.id}.{extension}"
    return name[:MAX_NAME_LENGTH]
