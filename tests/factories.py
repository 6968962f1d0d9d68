"""Small builders for test data: make_user(session, settings, **kw), make_firm(...)."""

from __future__ import annotations

import itertools
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session
from stdnum import luhn

from tenderpool.accounts.models import User
from tenderpool.accounts.services import create_user
from tenderpool.firms.models import Firm, FirmMembership
from tenderpool.firms.services import department_of_postcode
from tenderpool.notices.models import Notice, Publication

PASSWORD = "motdepasse-2026"
_counter = itertools.count(1)


def valid_siret(seed: int | None = None) -> str:
    """A made-up SIRET that passes the Luhn check."""
    n = next(_counter) if seed is None else seed
    base = f"9{n:07d}"
    siren = base + luhn.calc_check_digit(base)
    head = siren + "0001"
    return head + luhn.calc_check_digit(head)


def make_user(
    session: Session,
    settings: Any,
    *,
    email: str | None = None,
    role: str = "firm",
    chamber_slug: str | None = None,
    password: str = PASSWORD,
    full_name: str | None = None,
) -> User:
    email = email or f"user{next(_counter)}@example.com"
    return create_user(
        session,
        settings,
        email=email,
        password=password,
        full_name=full_name or email.split("@")[0],
        role=role,
        chamber_slug=chamber_slug,
    )


def make_firm(
    session: Session,
    settings: Any,
    *,
    owner_email: str | None = None,
    postcode: str = "77100",
    status: str = "approved",
    name: str | None = None,
    siret: str | None = None,
) -> tuple[Firm, User]:
    department = department_of_postcode(postcode)
    chamber = settings.chamber_for_department(department)
    owner = make_user(session, settings, email=owner_email)
    firm = Firm(
        siret=siret or valid_siret(),
        siren="",
        name=name or f"Entreprise {owner.email}",
        address="1 rue de la Gare",
        postcode=postcode,
        city="Meaux" if department == "77" else "Évry",
        department=department,
        chamber_slug=chamber.slug,
        status=status,
    )
    firm.siren = firm.siret[:9]
    session.add(firm)
    session.flush()
    session.add(FirmMembership(user_id=owner.id, firm_id=firm.id, is_owner=True))
    session.flush()
    return firm, owner


def add_member(session: Session, settings: Any, firm: Firm, *, email: str | None = None) -> User:
    user = make_user(session, settings, email=email)
    session.add(FirmMembership(user_id=user.id, firm_id=firm.id, is_owner=False))
    session.flush()
    return user


def make_notice(session: Session, idweb: str = "26-7113", **changes: Any) -> tuple[Notice, Publication]:
    """A notice ingested from one of the real BOAMP records of tests/fixtures (optionally altered)."""
    import datetime as dt
    import json
    from pathlib import Path

    from scrapers.base import RawRecord
    from tenderpool.notices.ingest import ingest_records

    page = json.loads(
        (
            Path(__file__).parent / "fixtures/boamp/jpbenga_where-dateparution-2026_5records_FNSimple.json"
        ).read_text()
    )
    record = next(r for r in page["data"]["results"] if r["idweb"] == idweb)
    record = {**record, **changes}
    raw = RawRecord(
        source="boamp",
        source_ref=record["idweb"],
        payload=json.dumps(record).encode(),
        content_type="application/json",
        fetched_at=dt.datetime(2026, 11, 28, tzinfo=dt.UTC),
    )
    ingest_records(session, [raw], now=dt.datetime(2026, 1, 22, tzinfo=dt.UTC))
    publication = session.scalars(select(Publication).where(Publication.source_ref == record["idweb"])).one()
    assert publication.notice is not None
    return publication.notice, publication


# --------------------------------------------------------------------------- matching and digests


_notice_counter = itertools.count(1)


def make_plain_notice(
    session: Session,
    *,
    title: str = "Travaux de rénovation",
    cpv: list[str] | None = None,
    departments: list[str] | None = None,
    deadline_at: Any = "default",
    published_at: Any = None,
    estimated_value: Any = None,
    buyer_name: str | None = "Commune de Meaux",
    buyer_siret: str | None = None,
    description: str | None = None,
    lots: list[dict[str, Any]] | None = None,
    created_at: Any = None,
    status: str = "open",
    contract_type: str | None = "works",
) -> Notice:
    """A notice written straight into the tables (and the search index), for matching and digests.

    ``deadline_at`` defaults to 30 days after ``created_at`` (itself now by default); ``lots`` are
    dicts of Lot columns (number, title, cpv, estimated_value).
    """
    import datetime as dt

    from tenderpool.notices.models import Lot, NoticeCpv, NoticeDepartment
    from tenderpool.notices.search import refresh_search_index

    created = created_at or dt.datetime.now(dt.UTC)
    n = next(_notice_counter)
    notice = Notice(
        title=title,
        buyer_name=buyer_name,
        buyer_siret=buyer_siret,
        description=description,
        contract_type=contract_type,
        procedure_type="open",
        published_at=published_at or created.date(),
        deadline_at=created + dt.timedelta(days=30) if deadline_at == "default" else deadline_at,
        estimated_value=_decimal(estimated_value),
        currency="EUR" if estimated_value is not None else None,
        nuts=[],
        url=f"https://www.boamp.fr/pages/avis/?q=idweb:TEST-{n}",
        status=status,
        field_dates={},
        created_at=created,
        updated_at=created,
        is_manual=True,
    )
    notice.cpv_links = [NoticeCpv(cpv=code, position=i) for i, code in enumerate(cpv or [])]
    notice.department_links = [NoticeDepartment(department=d) for d in departments or []]
    notice.lots = [
        Lot(
            number=str(lot.get("number", i + 1)),
            position=i,
            title=lot.get("title"),
            cpv=list(lot.get("cpv", [])),
            estimated_value=_decimal(lot.get("estimated_value")),
        )
        for i, lot in enumerate(lots or [])
    ]
    session.add(notice)
    session.flush()
    refresh_search_index(session, [notice.id])
    return notice


def _decimal(value: Any) -> Any:
    from decimal import Decimal

    return None if value is None else Decimal(str(value))


def set_profile(
    session: Session,
    firm: Firm,
    *,
    cpv: list[str] | None = None,
    keywords: list[str] | None = None,
    turnover: Any = None,
    zone: list[str] | None = None,
    zone_radius_km: int | None = None,
    year: int = 2025,
) -> Firm:
    """Give a firm skills, keywords, a zone and a turnover (the profile pages' job in real life)."""
    from decimal import Decimal

    from tenderpool.firms.models import FirmCpv, FirmYear

    firm.cpv_links = [FirmCpv(cpv=code) for code in cpv or []]
    firm.keywords = list(keywords or [])
    firm.zone_departments = list(zone or [])
    firm.zone_radius_km = zone_radius_km
    if turnover is not None:
        firm.years = [FirmYear(year=year, turnover=Decimal(str(turnover)), turnover_by_field={})]
    session.flush()
    return firm


# --- firm profiles and documents (tests/firms) ---------------------------------------------


def pdf_bytes(*, javascript: bool = False, encrypted: bool = False, attachment: bool = False) -> bytes:
    """A real one-page PDF written by pypdf, optionally with a script, a password or an attachment."""
    import io

    from pypdf import PdfWriter
    from pypdf.generic import DictionaryObject, NameObject, TextStringObject

    writer = PdfWriter()
    writer.add_blank_page(width=595, height=842)
    if javascript:
        writer.root_object[NameObject("/OpenAction")] = DictionaryObject(
            {
                NameObject("/S"): NameObject("/JavaScript"),
                NameObject("/JS"): TextStringObject("app.alert('bonjour');"),
            }
        )
    if attachment:
        writer.add_attachment("notes.txt", b"cachee")
    if encrypted:
        writer.encrypt("motdepasse", algorithm="RC4-128")
    buffer = io.BytesIO()
    writer.write(buffer)
    return buffer.getvalue()


def png_bytes(width: int = 3, height: int = 2) -> bytes:
    """A PNG written by hand: signature, IHDR, one IDAT of red RGB pixels, IEND."""
    import struct
    import zlib

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    rows = b"".join(b"\x00" + b"\xff\x00\x00" * width for _ in range(height))
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(rows))
        + chunk(b"IEND", b"")
    )


def make_document(
    session: Session,
    firm: Firm,
    *,
    kind: str = "kbis",
    issued_on: Any = None,
    expires_on: Any = None,
    storage: Any = None,
    data: bytes | None = None,
    name: str = "document.pdf",
    uploaded_by: User | None = None,
) -> Any:
    """A FirmDocument row; its bytes are written to ``storage`` when one is given."""
    import datetime as dt
    import hashlib
    import secrets

    from tenderpool.firms.models import FirmDocument

    content = data if data is not None else pdf_bytes()
    key = storage.save(content) if storage is not None else secrets.token_hex(16)
    document = FirmDocument(
        firm_id=firm.id,
        kind=kind,
        title=name,
        original_name=name,
        storage_key=key,
        content_type="application/pdf",
        size=len(content),
        sha256=hashlib.sha256(content).hexdigest(),
        issued_on=issued_on,
        expires_on=expires_on,
        uploaded_by_id=uploaded_by.id if uploaded_by else None,
        uploaded_at=dt.datetime.now(dt.UTC),
    )
    session.add(document)
    session.flush()
    session.refresh(firm, ["documents"])
    return document
