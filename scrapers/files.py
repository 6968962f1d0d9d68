"""Raw records from files, for ``tenderpool import``.

Formats recognised by content (``source="auto"``), gzip-compressed or not:

* a BOAMP records page ``{"total_count", "results": [...]}``, also wrapped as
  ``{"ok", "url", "status", "data": {...}}`` (jpbenga's tool);
* a JSON array of BOAMP records (``/exports/json``);
* JSON Lines of BOAMP records (``/exports/jsonl``), or of TED notices — **streamed
  line by line**, never loaded whole; recognised by the ``.jsonl``/``.ndjson``
  extension or by a first line that is a complete JSON object followed by more
  lines;
* a TED search response ``{"notices": [...]}``;
* an eForms XML notice (``ContractNotice``, ``ContractAwardNotice``,
  ``PriorInformationNotice``) → source ``"eforms"``;
* a legacy BOAMP XML notice (``<ANNONCE>``) → source ``"boamp-xml"``.

Errors: a file that cannot be read, decompressed or decoded, or whose JSON/XML is
malformed as a whole, raises :class:`UnreadableFileError`; a readable file in no
known format (or not in the ``source`` asked for) raises
:class:`UnknownFormatError`. Both derive from :class:`ImportFileError`.

Malformed JSON Lines
    A bad line does not stop the file. It is yielded as an ordinary
    :class:`~scrapers.base.RawRecord` whose ``payload`` is the line's bytes exactly
    as read, ``source`` the file's source (from ``source=`` or the first good
    line; ``"boamp"`` if no line was good), ``source_ref``
    ``"<file name>:<line number>"`` and ``url`` ``"<path>#L<line number>"``. Parsing
    it raises :class:`~scrapers.base.ParseError` ("payload is not valid JSON …" or
    "record without a valid idweb"), so the caller quarantines it like any record
    that fails to parse, and can show the file and line. Lines before the first
    good line are held (at most 100; more raises :class:`UnknownFormatError`).
    Blank lines are skipped.

``fetched_at`` of file records is the file's modification time (UTC).
"""

from __future__ import annotations

import datetime as dt
import gzip
import hashlib
import json
import os
import zlib
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import IO, Any, cast

from .base import ParseError, RawRecord, ScraperError
from .boamp_xml import annonce_idweb
from .eforms import eforms_reference, is_eforms_root
from .text import normalize_idweb, normalize_publication_number, text_of
from .xmlutil import local_name, parse_xml

SOURCES = ("boamp", "ted", "eforms", "boamp-xml")
MAX_LEADING_BAD_LINES = 100


class ImportFileError(ScraperError):
    """A file given to ``tenderpool import`` cannot be used."""


class UnreadableFileError(ImportFileError):
    """The file cannot be opened, decompressed, decoded or parsed as a whole."""


class UnknownFormatError(ImportFileError):
    """The file is readable but in no format this package knows."""


def iter_file_records(path: str | os.PathLike[str], source: str = "auto") -> Iterator[RawRecord]:
    """Yield the raw records held in ``path`` (see the module docstring)."""
    if source != "auto" and source not in SOURCES:
        raise ValueError(f"unknown source {source!r}; expected 'auto' or one of {', '.join(SOURCES)}")
    file_path = Path(path)
    try:
        stat = file_path.stat()
        with file_path.open("rb") as probe:
            magic = probe.read(2)
    except OSError as exc:
        raise UnreadableFileError(f"{file_path}: cannot read the file ({exc.strerror or exc})") from exc
    if not file_path.is_file():
        raise UnreadableFileError(f"{file_path}: not a regular file")
    fetched_at = dt.datetime.fromtimestamp(stat.st_mtime, dt.UTC)
    compressed = magic == b"\x1f\x8b"
    name = file_path.name[:-3] if compressed and file_path.name.endswith(".gz") else file_path.name

    with _open(file_path, compressed) as stream:
        consumed: list[bytes] = []
        first = _next_content_line(stream, consumed, file_path)
        if first is None:
            raise UnknownFormatError(f"{file_path}: the file is empty")
        head = first.lstrip()
        jsonl = name.lower().endswith((".jsonl", ".ndjson"))
        if head[:1] == b"<" and not jsonl:
            yield _xml_record(
                b"".join(consumed) + _read_all(stream, file_path), file_path, name, source, fetched_at
            )
            return
        if head[:1] not in (b"{", b"[") and not jsonl:
            raise UnknownFormatError(f"{file_path}: neither JSON nor XML (starts with {head[:20]!r})")
        if not jsonl and _is_json_object(first):
            jsonl = _next_content_line(stream, consumed, file_path) is not None
        if jsonl:
            yield from _jsonl_records(_lines(consumed, stream), file_path, source, fetched_at)
            return
        data = b"".join(consumed) + _read_all(stream, file_path)
    try:
        document = json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise UnreadableFileError(f"{file_path}: malformed JSON ({exc})") from exc
    yield from _json_records(document, file_path, source, fetched_at)


# ----------------------------------------------------------------------------- reading

_READ_ERRORS = (OSError, EOFError, gzip.BadGzipFile, zlib.error)


def _open(path: Path, compressed: bool) -> IO[bytes]:
    if compressed:
        return cast(IO[bytes], gzip.open(path, "rb"))
    return path.open("rb")


def _next_content_line(stream: IO[bytes], consumed: list[bytes], path: Path) -> bytes | None:
    """Read lines into ``consumed`` up to the next non-blank one (BOM removed), returned."""
    try:
        while True:
            line = stream.readline()
            if not line:
                return None
            if not consumed and line.startswith(b"\xef\xbb\xbf"):
                line = line[3:]
            consumed.append(line)
            if line.strip():
                return line
    except _READ_ERRORS as exc:
        raise UnreadableFileError(f"{path}: cannot read the file ({exc})") from exc


def _lines(consumed: list[bytes], stream: IO[bytes]) -> Iterator[bytes]:
    yield from consumed
    yield from stream


def _read_all(stream: IO[bytes], path: Path) -> bytes:
    try:
        return stream.read()
    except _READ_ERRORS as exc:
        raise UnreadableFileError(f"{path}: cannot read the file ({exc})") from exc


def _is_json_object(line: bytes) -> bool:
    try:
        return isinstance(json.loads(line), dict)
    except (ValueError, UnicodeDecodeError):
        return False


# -------------------------------------------------------------------------------- XML


def _xml_record(data: bytes, path: Path, name: str, source: str, fetched_at: dt.datetime) -> RawRecord:
    try:
        root = parse_xml(data)
    except ParseError as exc:
        raise UnreadableFileError(f"{path}: {exc.reason}") from exc
    if local_name(root) == "ANNONCE":
        found, ref = "boamp-xml", annonce_idweb(root)
    elif is_eforms_root(root):
        found, ref = "eforms", eforms_reference(root)
    else:
        raise UnknownFormatError(
            f"{path}: XML root <{local_name(root)}> is neither eForms nor a BOAMP <ANNONCE>"
        )
    _check_source(source, found, path)
    return RawRecord(
        source=found,
        source_ref=ref or name,
        payload=data,
        content_type="application/xml",
        fetched_at=fetched_at,
        url=str(path),
    )


# ------------------------------------------------------------------------------- JSON


def _kind(item: Any) -> str | None:
    """ "boamp" for a BOAMP API record, "ted" for a TED search notice, else ``None``."""
    if not isinstance(item, Mapping):
        return None
    if "idweb" in item or "donnees" in item:
        return "boamp"
    if "publication-number" in item or "ND" in item:
        return "ted"
    return None


def _check_source(asked: str, found: str, path: Path) -> None:
    if asked != "auto" and asked != found:
        raise UnknownFormatError(f"{path}: holds {found} records, not {asked}")


def _json_record(
    item: Mapping[str, Any], kind: str, path: Path, fetched_at: dt.datetime, position: int
) -> RawRecord:
    payload = json.dumps(item, ensure_ascii=False).encode("utf-8")
    if kind == "boamp":
        ref = normalize_idweb(item.get("idweb")) or normalize_idweb(item.get("id"))
    else:
        ref = next(
            (normalize_publication_number(v) for v in (item.get("publication-number"), item.get("ND")) if v),
            None,
        )
    return RawRecord(
        source=kind,
        source_ref=ref or f"{path.name}:{position}",
        payload=payload,
        content_type="application/json",
        fetched_at=fetched_at,
        url=str(path),
    )


def _json_records(document: Any, path: Path, source: str, fetched_at: dt.datetime) -> Iterator[RawRecord]:
    if (
        isinstance(document, Mapping)
        and "ok" in document
        and ({"data", "error", "details"} & document.keys())
    ):
        if not document.get("ok") or not isinstance(document.get("data"), Mapping):
            detail = text_of(document.get("details")) or text_of(document.get("error")) or "no data"
            raise UnknownFormatError(f"{path}: the wrapper holds an error, not records ({detail})")
        document = document["data"]
    items: list[Any]
    if isinstance(document, Mapping) and isinstance(document.get("results"), list):
        items, expected = document["results"], "boamp"
    elif isinstance(document, Mapping) and isinstance(document.get("notices"), list):
        items, expected = document["notices"], "ted"
    elif isinstance(document, list):
        items, expected = document, None
    elif _kind(document):
        items, expected = [document], None
    else:
        keys = ", ".join(list(document)[:5]) if isinstance(document, Mapping) else type(document).__name__
        raise UnknownFormatError(f"{path}: JSON in no known format ({keys})")
    kinds = {_kind(item) for item in items}
    if expected is None:
        known = {k for k in kinds if k is not None}
        if len(known) != 1:
            raise UnknownFormatError(f"{path}: a JSON array of neither BOAMP records nor TED notices")
        expected = known.pop()
    _check_source(source, expected, path)
    for position, item in enumerate(items, start=1):
        if isinstance(item, Mapping):
            yield _json_record(item, expected, path, fetched_at, position)
        else:
            yield _bad_line(json.dumps(item).encode(), path, position, expected, fetched_at)


def _bad_line(line: bytes, path: Path, number: int, source: str, fetched_at: dt.datetime) -> RawRecord:
    return RawRecord(
        source=source,
        source_ref=f"{path.name}:{number}",
        payload=line,
        content_type="application/json",
        fetched_at=fetched_at,
        url=f"{path}#L{number}",
    )


def _jsonl_records(
    lines: Iterator[bytes], path: Path, source: str, fetched_at: dt.datetime
) -> Iterator[RawRecord]:
    file_source: str | None = None if source == "auto" else source
    pending: list[tuple[int, bytes]] = []
    number = 0
    try:
        for number, line in enumerate(lines, start=1):
            stripped = line.strip()
            if not stripped:
                continue
            item: Any = None
            try:
                item = json.loads(stripped)
            except (ValueError, UnicodeDecodeError):
                item = None
            kind = _kind(item)
            if kind is None:
                if file_source is None:
                    pending.append((number, stripped))
                    if len(pending) > MAX_LEADING_BAD_LINES:
                        raise UnknownFormatError(
                            f"{path}: none of the first {MAX_LEADING_BAD_LINES} lines "
                            "is a BOAMP record or a TED notice"
                        )
                    continue
                yield _bad_line(stripped, path, number, file_source, fetched_at)
                continue
            if file_source is None:
                file_source = kind
                for pending_number, pending_line in pending:
                    yield _bad_line(pending_line, path, pending_number, file_source, fetched_at)
                pending = []
            elif kind != file_source:
                if source != "auto":
                    raise UnknownFormatError(f"{path}: line {number} holds a {kind} record, not {source}")
                yield _bad_line(stripped, path, number, file_source, fetched_at)
                continue
            yield _json_record(item, kind, path, fetched_at, number)
    except _READ_ERRORS as exc:
        raise UnreadableFileError(f"{path}: cannot read line {number + 1} ({exc})") from exc
    for pending_number, pending_line in pending:
        yield _bad_line(pending_line, path, pending_number, file_source or "boamp", fetched_at)


def file_digest(path: str | os.PathLike[str]) -> str:
    """SHA-256 of a file, read in chunks (to record which file a run imported)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()
