"""Plain records shared by every source adapter, and their errors.

A source adapter does two separate things, so that a stored raw payload can be
parsed again when a parser improves:

* ``fetch`` yields :class:`RawRecord` objects (the bytes exactly as received,
  plus fetch metadata), grouped in :class:`FetchPage` objects that carry the
  source's own ``total_count`` for completeness checks;
* ``parse`` turns one :class:`RawRecord` into one :class:`ParsedNotice`, or
  raises :class:`ParseError` with a human-readable reason.
"""

from __future__ import annotations

import datetime as dt
import enum
from collections.abc import Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Protocol


class Nature(enum.StrEnum):
    """What a publication is, relative to its procedure."""

    INITIAL = "initial"
    CORRIGENDUM = "corrigendum"
    AWARD = "award"
    CANCELLATION = "cancellation"
    PRIOR_INFORMATION = "prior_information"
    OTHER = "other"


class ContractType(enum.StrEnum):
    WORKS = "works"
    SUPPLIES = "supplies"
    SERVICES = "services"


@dataclass(frozen=True, slots=True)
class RawRecord:
    """One record of one source, as received."""

    source: str  # "boamp", "ted", "eforms", "boamp-xml"
    source_ref: str  # BOAMP idweb "26-7298", TED publication number "47522-2024" (no zero padding)
    payload: bytes  # exactly what the source sent for this record (JSON object or XML document)
    content_type: str  # "application/json" or "application/xml"
    fetched_at: dt.datetime  # aware, UTC
    url: str | None = None  # the request URL (or file path) it came from


@dataclass(frozen=True, slots=True)
class FetchPage:
    """A page of raw records and what the source said about the whole query."""

    records: list[RawRecord]
    total_count: int | None  # the source's count for the whole window/query, if it gives one
    window: tuple[dt.date, dt.date] | None = None  # publication-date window this page belongs to
    # Extra filter applied inside the window when the source had to split it further
    # (BOAMP: 'famille="MAPA"'); total_count is then the count of that subset.
    scope: str | None = None
    # Set (on the last page of a window/subset) when the source could not deliver every
    # record it counted, e.g. more than 10,000 BOAMP records in one day and one famille:
    # the caller should mark the run partial and say why.
    partial_reason: str | None = None


@dataclass(frozen=True, slots=True)
class ParsedLot:
    number: str  # "1", "2"… ("LOT-0001" becomes "1")
    title: str | None = None
    description: str | None = None
    cpv: tuple[str, ...] = ()  # 8-digit CPV codes, no check digit
    estimated_value: Decimal | None = None
    deadline_at: dt.datetime | None = None  # aware; only when a lot has its own deadline
    nuts: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class ParsedAward:
    lot: str | None  # lot number as in ParsedLot.number, or None for the whole contract
    winner_name: str | None
    winner_siret: str | None = None  # 14 digits when the source gives a French SIRET
    amount: Decimal | None = None
    currency: str | None = None
    unsuccessful: bool = False  # "sans suite" / no award for this lot


@dataclass(frozen=True, slots=True)
class ParsedNotice:
    """The normalised content of one publication.

    Text fields are already decoded (HTML entities, Windows-1252 code points) and
    whitespace-collapsed, but ``description`` may still hold HTML: the caller
    sanitises it before display.
    """

    source: str
    source_ref: str
    nature: Nature
    title: str
    published_at: dt.date | None = None
    procedure_id: str | None = None  # eForms ContractFolderID / BOAMP contractfolderid (lower-case UUID)
    notice_uuid: str | None = None  # eForms notice id (cbc:ID schemeName=notice-id), if any
    notice_version: str | None = None
    # References to earlier publications of the same procedure that this one
    # corrects, awards or cancels: BOAMP idweb values (annonce_lie, avisInitial,
    # ANNONCE_ANTERIEUR), eForms "<notice-uuid>-<version>" or OJS publication numbers.
    previous_refs: tuple[str, ...] = ()
    buyer_name: str | None = None
    buyer_siret: str | None = None  # 14 digits, only when it looks like a SIRET
    buyer_internal_ref: str | None = None
    description: str | None = None
    contract_type: ContractType | None = None
    procedure_type: str | None = None  # e.g. "open", "restricted", "adapted", "negotiated" or source label
    deadline_at: dt.datetime | None = None  # aware (Europe/Paris for French sources)
    estimated_value: Decimal | None = None
    currency: str | None = None
    departments: tuple[str, ...] = ()  # "77", "02", "2A"
    nuts: tuple[str, ...] = ()
    cpv: tuple[str, ...] = ()  # 8-digit codes, main first
    lots: tuple[ParsedLot, ...] = ()
    awards: tuple[ParsedAward, ...] = ()
    url: str | None = None  # the publication at its source
    dce_url: str | None = None  # the buyer's platform / tender documents
    is_cancelled: bool = False
    warnings: tuple[str, ...] = field(default=())  # non-fatal oddities met while parsing


class ScraperError(Exception):
    """Base class of every error raised by :mod:`scrapers`."""


class ParseError(ScraperError):
    """A record could not be understood; ``reason`` says why, in plain words."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class FetchError(ScraperError):
    """A request failed for good (after retries, or with a non-retryable status)."""

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        url: str | None = None,
        code: str | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.url = url
        # the source's own error code when it gives one ("EXPIRED_ITERATION_TOKEN", "ODSQLError")
        self.code = code


class QueryError(FetchError):
    """The source refused the query itself (HTTP 400): a bug on our side, never retried."""


class Source(Protocol):
    """What every source adapter offers."""

    name: str

    def fetch(self, since: dt.date, until: dt.date) -> Iterator[FetchPage]:
        """Yield pages of raw records published in ``[since, until]`` (inclusive)."""
        ...

    def parse(self, raw: RawRecord) -> ParsedNotice:
        """Parse one raw record, or raise :class:`ParseError`."""
        ...
