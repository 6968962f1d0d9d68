"""The explicit list of sources: name → factory and parser.

Fetchable sources (scheduled scrapers) have a factory taking an
:class:`~scrapers.http.HttpClient` and keyword options; every source, including
the file-only formats produced by :func:`scrapers.files.iter_file_records`, has a
parser for its :class:`~scrapers.base.RawRecord` objects.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .base import ParsedNotice, RawRecord, ScraperError, Source
from .boamp import BoampSource, parse_boamp_record
from .boamp_xml import parse_boamp_xml
from .eforms import parse_eforms
from .http import HttpClient
from .ted import TedSource, parse_ted_record


def _parse_eforms_record(raw: RawRecord) -> ParsedNotice:
    return parse_eforms(raw.payload, source=raw.source, source_ref=raw.source_ref or None)


def _parse_boamp_xml_record(raw: RawRecord) -> ParsedNotice:
    return parse_boamp_xml(raw.payload, source=raw.source)


@dataclass(frozen=True, slots=True)
class SourceInfo:
    name: str
    description: str
    parse: Callable[[RawRecord], ParsedNotice]
    factory: Callable[..., Source] | None = None  # None: file import only

    @property
    def fetchable(self) -> bool:
        return self.factory is not None


SOURCES: dict[str, SourceInfo] = {
    "boamp": SourceInfo(
        name="boamp",
        description="BOAMP, DILA OpenDataSoft API v2.1 (dataset boamp), départements 77 and 91",
        parse=parse_boamp_record,
        factory=BoampSource,
    ),
    "ted": SourceInfo(
        name="ted",
        description="TED Search API v3, place of performance FR102/FR104, eForms XML per notice",
        parse=parse_ted_record,
        factory=TedSource,
    ),
    "eforms": SourceInfo(
        name="eforms",
        description="eForms XML notice files (import only)",
        parse=_parse_eforms_record,
    ),
    "boamp-xml": SourceInfo(
        name="boamp-xml",
        description="legacy DILA BOAMP XML notice files, schema Boamp_v230 (import only)",
        parse=_parse_boamp_xml_record,
    ),
}


class UnknownSourceError(ScraperError):
    """No source of that name."""


def source_info(name: str) -> SourceInfo:
    try:
        return SOURCES[name]
    except KeyError:
        raise UnknownSourceError(f"unknown source {name!r}; known: {', '.join(SOURCES)}") from None


def fetchable_sources() -> list[str]:
    return [name for name, info in SOURCES.items() if info.fetchable]


def make_source(name: str, client: HttpClient, **options: Any) -> Source:
    """Build a fetchable source; ``options`` are passed to its constructor."""
    info = source_info(name)
    if info.factory is None:
        raise UnknownSourceError(f"source {name!r} cannot be fetched, only imported from files")
    return info.factory(client, **options)


def parse_raw(raw: RawRecord) -> ParsedNotice:
    """Parse a raw record with the parser of its source (raises ``ParseError``)."""
    return source_info(raw.source).parse(raw)
