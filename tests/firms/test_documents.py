"""Administrative documents: uploads judged by their content, atomic storage, validity, downloads."""

from __future__ import annotations

import datetime as dt
import errno
import hashlib
import io
import zipfile
from pathlib import Path
from typing import Any, BinaryIO
from zoneinfo import ZoneInfo

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session
from werkzeug.datastructures import FileStorage, MultiDict
from werkzeug.test import encode_multipart

from tenderpool.accounts.models import AuditEvent, User
from tenderpool.config import ConfigError, load_settings
from tenderpool.errors import Forbidden, NotFound
from tenderpool.firms import documents
from tenderpool.firms.documents import UploadRefused, inspect_upload
from tenderpool.firms.models import Firm, FirmDocument, FirmMembership, FirmReference
from tenderpool.resources import STATIC_DIR
from tenderpool.storage import LocalStorage, StorageError, upload_settings
from tests import factories
from tests.conftest import Seed, csrf_token, login_as, post_form, text_of

MAX = 10 * 1024 * 1024
TODAY = dt.datetime.now(ZoneInfo("Europe/Paris")).date()


def _zip(files: dict[str, bytes], compression: int = zipfile.ZIP_DEFLATED) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression) as archive:
        for name, content in files.items():
            archive.writestr(name, content)
    return buffer.getvalue()


def _hand_made_pdf(catalog_extra: str) -> bytes:
    """A minimal PDF written byte by byte (correct cross-reference offsets), to hide names in it."""
    objects = [
        f"<< /Type /Catalog /Pages 2 0 R {catalog_extra} >>",
        "<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        "<< /Type /Page /Parent 2 0 R /MediaBox [0 0 595 842] >>",
    ]
    out = b"%PDF-1.7\n"
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += f"{number} 0 obj\n{body}\nendobj\n".encode()
    xref = len(out)
    out += f"xref\n0 {len(objects) + 1}\n0000000000 65535 f \n".encode()
    out += b"".join(f"{offset:010d} 00000 n \n".encode() for offset in offsets)
    out += f"trailer\n<< /Size {len(objects) + 1} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n".encode()
    return out


def _jpeg(**options: Any) -> bytes:
    """A small JPEG written by Pillow (installed with WeasyPrint)."""
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (40, 30), (200, 30, 30)).save(buffer, "JPEG", **options)
    return buffer.getvalue()


JPEG = _jpeg()


@pytest.fixture
def storage_root(app: Flask) -> Path:
    return upload_settings(app.extensions["tenderpool.settings"]).root


def _files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file()) if folder.exists() else []


def _upload(client: FlaskClient, data: bytes, name: str, **fields: str) -> Any:
    """POST the upload form. The body is encoded up front: Werkzeug's test client would spool a
    large one to a temporary file it never closes."""
    values = MultiDict(
        {
            "csrf_token": csrf_token(client),
            "kind": "kbis",
            "issued_on": (TODAY - dt.timedelta(days=10)).isoformat(),
            **fields,
            "file": FileStorage(io.BytesIO(data), filename=name, content_type="application/octet-stream"),
        }
    )
    boundary, body = encode_multipart(values)
    return client.post(
        "/entreprise/profil/documents", data=body, content_type=f"multipart/form-data; boundary={boundary}"
    )


def _document_count(session: Session, firm_id: int) -> int:
    return (
        session.scalar(select(func.count()).select_from(FirmDocument).where(FirmDocument.firm_id == firm_id))
        or 0
    )


# --------------------------------------------------------------------------- accepted uploads


def test_real_pdf_is_stored_under_a_random_name_with_its_validity(
    client: FlaskClient, session: Session, seed: Seed, storage_root: Path
) -> None:
    login_as(client, session, seed.member_id)
    pdf = factories.pdf_bytes()
    issued = TODAY - dt.timedelta(days=10)
    response = _upload(client, pdf, "Kbis Meaux 2026.pdf", issued_on=issued.isoformat())
    assert response.status_code == 302, text_of(response)
    document = session.scalars(select(FirmDocument).where(FirmDocument.firm_id == seed.firm_id)).one()
    assert (document.kind, document.original_name, document.content_type) == (
        "kbis",
        "Kbis Meaux 2026.pdf",
        "application/pdf",
    )
    assert document.size == len(pdf) and document.sha256 == hashlib.sha256(pdf).hexdigest()
    assert document.expires_on == documents.add_months(issued, 3)  # a Kbis counts for 3 months
    assert document.uploaded_by_id == seed.member_id
    stored = _files(storage_root)
    assert [p.name for p in stored] == [document.storage_key]
    assert len(document.storage_key) == 32 and "Kbis" not in document.storage_key
    assert stored[0].read_bytes() == pdf
    assert session.scalar(select(AuditEvent).where(AuditEvent.action == "firm_document_uploaded"))
    page = text_of(client.get("/entreprise/profil/documents"))
    assert "Kbis Meaux 2026.pdf" in page and "Valable jusqu'au" in page


def test_hand_made_png_and_jpeg_are_accepted(
    client: FlaskClient, session: Session, seed: Seed, storage_root: Path
) -> None:
    login_as(client, session, seed.owner_id)
    assert _upload(client, factories.png_bytes(), "scan.png", kind="other", issued_on="").status_code == 302
    assert _upload(client, JPEG, "photo.JPG", kind="other", issued_on="").status_code == 302
    progressive = _upload(client, _jpeg(progressive=True), "photo2.jpeg", kind="other", issued_on="")
    assert progressive.status_code == 302
    rows = session.scalars(select(FirmDocument).where(FirmDocument.firm_id == seed.firm_id)).all()
    assert sorted(d.content_type for d in rows) == ["image/jpeg", "image/jpeg", "image/png"]
    assert all(d.expires_on is None for d in rows)  # "other" documents have no default validity
    assert len(_files(storage_root)) == 3


def test_default_validity_per_kind() -> None:
    assert documents.default_expiry("urssaf", dt.date(2026, 8, 31)) == dt.date(2027, 2, 28)
    assert documents.default_expiry("kbis", dt.date(2026, 11, 30)) == dt.date(2027, 2, 28)
    assert documents.default_expiry("tax", dt.date(2024, 2, 29)) == dt.date(2025, 2, 28)
    assert documents.default_expiry("reference", dt.date(2026, 1, 1)) is None


def test_dated_kinds_need_an_issue_date_and_coherent_dates(
    client: FlaskClient, session: Session, seed: Seed, storage_root: Path
) -> None:
    login_as(client, session, seed.member_id)
    missing = _upload(client, factories.pdf_bytes(), "urssaf.pdf", kind="urssaf", issued_on="")
    assert missing.status_code == 400 and "Indiquez la date de délivrance" in text_of(missing)
    future = _upload(
        client,
        factories.pdf_bytes(),
        "urssaf.pdf",
        kind="urssaf",
        issued_on=(TODAY + dt.timedelta(days=3)).isoformat(),
    )
    assert "ne peut pas être dans le futur" in text_of(future)
    backwards = _upload(
        client,
        factories.pdf_bytes(),
        "urssaf.pdf",
        kind="urssaf",
        issued_on="01/03/2026",
        expires_on="2026-02-01",
    )
    assert "précède la date de délivrance" in text_of(backwards)
    assert _document_count(session, seed.firm_id) == 0 and _files(storage_root) == []


# --------------------------------------------------------------------------- refused uploads

_ZIP = _zip({"devis.txt": b"bonjour"})
# 50 MB of zeros compress to a few tens of kilobytes: a small zip bomb.
_ZIP_BOMB = _zip({"bombe.bin": b"\x00" * 50_000_000})

REFUSED = [
    pytest.param(b"Ceci n'est pas un PDF, juste du texte.", "devis.pdf", "ni un PDF", id="wrong-magic"),
    pytest.param(factories.pdf_bytes(), "../../etc/passwd.pdf", "contient un chemin", id="path-traversal"),
    # (Werkzeug's test client unescapes the backslashes: the name arrives as "....boot.pdf".)
    pytest.param(factories.pdf_bytes(), "..\\..\\boot.pdf", "Le nom du fichier", id="windows-path"),
    pytest.param(factories.pdf_bytes(), "x.pdf.exe", "double extension", id="pdf-exe"),
    pytest.param(factories.pdf_bytes(), "facture.exe.pdf", "double extension", id="exe-pdf"),
    pytest.param(factories.pdf_bytes(), "kbis\u202efdp.exe", "caractères invisibles", id="rtl-override"),
    pytest.param(factories.pdf_bytes() + _ZIP, "kbis.pdf", "polyglotte", id="pdf-zip-polyglot"),
    pytest.param(
        factories.png_bytes() + b"donnees cachees", "scan.png", "cachées après la fin", id="png-trailer"
    ),
    pytest.param(b"%PDF-1.4\n" + _ZIP_BOMB, "rapport.pdf", "polyglotte", id="zip-bomb-as-pdf"),
    pytest.param(_ZIP, "kbis.pdf", "archive ZIP", id="zip-renamed-pdf"),
    pytest.param(factories.pdf_bytes(encrypted=True), "kbis.pdf", "protégé", id="encrypted-pdf"),
    pytest.param(factories.pdf_bytes(javascript=True), "kbis.pdf", "JavaScript", id="pdf-javascript"),
    pytest.param(
        factories.pdf_bytes(attachment=True), "kbis.pdf", "pièce jointe intégrée", id="pdf-attachment"
    ),
    pytest.param(factories.png_bytes(), "scan.pdf", "une image PNG", id="png-named-pdf"),
    pytest.param(b"%PDF-1.7\n1 0 obj\n<< /Broken", "kbis.pdf", "illisible", id="unreadable-pdf"),
    pytest.param(b"", "vide.pdf", "vide", id="empty"),
    pytest.param(b"%PDF-1.4\n" + b"0" * MAX, "gros.pdf", "taille maximale", id="oversize"),
]


@pytest.mark.parametrize(("data", "name", "message"), REFUSED)
def test_refused_uploads_write_nothing_anywhere(
    client: FlaskClient,
    session: Session,
    seed: Seed,
    storage_root: Path,
    tmp_path: Path,
    data: bytes,
    name: str,
    message: str,
) -> None:
    login_as(client, session, seed.member_id)
    client.get("/entreprise/profil/documents")
    before = {p for p in tmp_path.rglob("*") if p.is_file()}
    response = _upload(client, data, name)
    assert response.status_code == 400
    assert message in text_of(response)
    assert _document_count(session, seed.firm_id) == 0
    assert _files(storage_root) == []
    written = {p for p in tmp_path.rglob("*") if p.is_file()} - before
    assert not written, f"files written on refusal: {written}"
    assert not Path("/etc/passwd.pdf").exists()
    assert not any(p.name.startswith("passwd") for p in tmp_path.rglob("*"))


@pytest.mark.parametrize(
    ("data", "name", "message"),
    [
        pytest.param(JPEG + b"<script>alert(1)</script>", "photo.jpg", "polyglotte", id="jpeg-html"),
        pytest.param(JPEG + b"\x00\x01\x02", "photo.jpg", "cachées après la fin", id="jpeg-trailer"),
        pytest.param(JPEG[:-2], "photo.jpg", "endommagée", id="jpeg-truncated"),
        pytest.param(
            factories.png_bytes()[:-5] + b"\x00" + factories.png_bytes()[-4:],
            "scan.png",
            "endommagée",
            id="png-crc",
        ),
        pytest.param(factories.png_bytes(40_000, 1), "scan.png", "démesurée", id="png-too-wide"),
        pytest.param(
            _hand_made_pdf("/OpenAction << /S /J#61vaScript /JS (app.alert(1)) >>"),
            "kbis.pdf",
            "JavaScript",
            id="pdf-escaped-javascript-name",
        ),
        pytest.param(
            _hand_made_pdf("/OpenAction << /S /Launch /F (calc.exe) >>"),
            "kbis.pdf",
            "Launch",
            id="pdf-launch",
        ),
        pytest.param(
            _hand_made_pdf("/OpenAction << /S /URI /URI (https://phishing.example) >>"),
            "kbis.pdf",
            "OpenAction",
            id="pdf-open-action",
        ),
        pytest.param(factories.pdf_bytes() + b"<html>cachee</html>", "kbis.pdf", "polyglotte", id="pdf-html"),
    ],
)
def test_inspection_refuses_hidden_content(data: bytes, name: str, message: str) -> None:
    with pytest.raises(UploadRefused) as refused:
        inspect_upload(name, data, max_bytes=MAX)
    assert message in refused.value.message
    assert refused.value.field == "file"


def test_names_with_a_path_are_refused() -> None:
    for name in ("../../etc/passwd.pdf", "..\\..\\boot.pdf", "C:\\Users\\kbis.pdf", "/etc/kbis.pdf"):
        with pytest.raises(UploadRefused, match="contient un chemin"):
            documents.clean_filename(name)
    with pytest.raises(UploadRefused, match="commencer par un point"):
        documents.clean_filename(".htaccess.pdf")


def test_inspection_accepts_harmless_variants() -> None:
    # An "open at page 1" destination is not an action; a repeated extension is a clumsy rename.
    page_one = _hand_made_pdf("/OpenAction [3 0 R /Fit]")
    assert inspect_upload("kbis.pdf", page_one, max_bytes=MAX).content_type == "application/pdf"
    assert (
        inspect_upload("kbis.pdf.pdf", factories.pdf_bytes(), max_bytes=MAX).original_name == "kbis.pdf.pdf"
    )
    assert inspect_upload("Attestation 2026.01.pdf", factories.pdf_bytes(), max_bytes=MAX)
    assert inspect_upload("photo.jpeg", JPEG, max_bytes=MAX).content_type == "image/jpeg"
    with pytest.raises(UploadRefused, match="taille maximale"):
        inspect_upload("kbis.pdf", factories.pdf_bytes(), max_bytes=100)


# --------------------------------------------------------------------------- storage


def test_local_storage_is_atomic_and_refuses_foreign_keys(tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path / "files")
    key = storage.save(b"contenu")
    assert len(key) == 32 and storage.open(key) == b"contenu"
    assert [p.name for p in _files(tmp_path)] == [key]  # no temporary file left
    storage.delete(key)
    storage.delete(key)  # deleting twice is harmless
    assert _files(tmp_path) == []
    for bad in ("../../etc/passwd", key.upper(), "", "a" * 31):
        with pytest.raises(NotFound):
            storage.open(bad)
    with pytest.raises(NotFound):
        storage.open(key)


class FullDiskStorage(LocalStorage):
    """A disk that fills up in the middle of the write."""

    def _write(self, fh: BinaryIO, data: bytes) -> None:
        fh.write(data[: len(data) // 2])
        fh.flush()
        raise OSError(errno.ENOSPC, "No space left on device")


def test_full_disk_leaves_no_row_and_no_file(
    app: Flask, client: FlaskClient, session: Session, seed: Seed, tmp_path: Path
) -> None:
    root = tmp_path / "full"
    app.extensions["tenderpool.storage"] = FullDiskStorage(root)
    login_as(client, session, seed.member_id)
    response = _upload(client, factories.pdf_bytes(), "kbis.pdf")
    assert response.status_code == 503
    assert "l'espace de stockage du service est plein" in text_of(response)
    assert _document_count(session, seed.firm_id) == 0
    assert _files(root) == []  # the half-written temporary file is gone too

    with pytest.raises(StorageError, match="plein"):
        FullDiskStorage(root).save(b"x" * 1000)
    assert _files(root) == []


def test_upload_settings_are_validated(tmp_path: Path) -> None:
    base = {"app": {"instance_path": str(tmp_path / "inst")}}
    assert (
        upload_settings(load_settings(environ={}, overrides=base)).root
        == (tmp_path / "inst" / "uploads").resolve()
    )
    custom = upload_settings(
        load_settings(environ={}, overrides={**base, "uploads": {"path": str(tmp_path / "x")}})
    )
    assert custom.root == (tmp_path / "x").resolve() and custom.max_bytes == MAX
    for bad, message in [
        ({"max_bytes": 64 * 1024 * 1024}, "uploads.max_bytes"),
        ({"max_bytes": "10"}, "uploads.max_bytes"),
        ({"path": str(STATIC_DIR / "uploads")}, "static folder"),
    ]:
        with pytest.raises(ConfigError, match=message):
            upload_settings(load_settings(environ={}, overrides={**base, "uploads": bad}))
    from_env = load_settings(environ={"TENDERPOOL_UPLOADS_MAX_BYTES": "2048"}, overrides=base)
    assert upload_settings(from_env).max_bytes == 2048


# --------------------------------------------------------------------------- downloads


@pytest.fixture
def stored_document(app: Flask, session: Session, seed: Seed, storage_root: Path) -> FirmDocument:
    firm = session.get(Firm, seed.firm_id)
    assert firm is not None
    document = factories.make_document(
        session,
        firm,
        kind="urssaf",
        issued_on=TODAY,
        expires_on=documents.add_months(TODAY, 6),
        storage=LocalStorage(storage_root),
        data=factories.pdf_bytes(),
        name='Attestation "vigilance"; URSSAF.pdf',
    )
    session.commit()
    return document


@pytest.mark.parametrize(
    ("role", "status"),
    [
        ("anonymous", 302),
        ("pending", 404),
        ("member", 200),
        ("owner", 200),
        ("staff77", 200),
        ("staff91", 404),
        ("admin", 200),
        ("other_firm", 404),
    ],
)
def test_download_access_for_every_role(
    app: Flask,
    client: FlaskClient,
    session: Session,
    seed: Seed,
    storage_root: Path,
    stored_document: FirmDocument,
    role: str,
    status: int,
) -> None:
    if role == "other_firm":
        _firm, other = factories.make_firm(session, app.extensions["tenderpool.settings"], postcode="77000")
        session.commit()
        login_as(client, session, other.id)
    elif role != "anonymous":
        login_as(client, session, getattr(seed, f"{role}_id"))
    response = client.get(f"/documents/{stored_document.id}")
    assert response.status_code == status
    if status == 200:
        assert response.get_data() == (storage_root / stored_document.storage_key).read_bytes()
        assert response.mimetype == "application/pdf"
        disposition = response.headers["Content-Disposition"]
        assert disposition.startswith("attachment;")
        assert '"vigilance"' not in disposition and "; URSSAF" not in disposition
        assert (
            "Attestation _vigilance_ URSSAF.pdf" in disposition or "Attestation%20_vigilance_" in disposition
        )
        assert response.headers["Cache-Control"] == "private, no-store"
        assert response.headers["X-Content-Type-Options"] == "nosniff"
    response.close()
    audited = session.scalar(
        select(func.count()).select_from(AuditEvent).where(AuditEvent.action == "firm_document_downloaded")
    )
    assert audited == (1 if role in ("staff77", "admin") else 0)


def test_download_of_a_missing_file_is_404(
    client: FlaskClient, session: Session, seed: Seed, stored_document: FirmDocument, storage_root: Path
) -> None:
    (storage_root / stored_document.storage_key).unlink()
    login_as(client, session, seed.member_id)
    assert client.get(f"/documents/{stored_document.id}").status_code == 404


def test_only_the_owner_or_the_uploader_deletes_a_document(
    app: Flask, client: FlaskClient, session: Session, seed: Seed, storage_root: Path
) -> None:
    firm = session.get(Firm, seed.firm_id)
    assert firm is not None
    owner_doc = factories.make_document(
        session,
        firm,
        kind="reference",
        storage=LocalStorage(storage_root),
        uploaded_by=session.get(User, seed.owner_id),
    )
    reference = FirmReference(
        firm_id=firm.id, buyer="Commune de Meaux", object="Préau", year=2025, attestation_id=owner_doc.id
    )
    session.add(reference)
    session.commit()
    member = session.scalar(select(FirmMembership).where(FirmMembership.user_id == seed.member_id))
    assert member is not None
    with pytest.raises(Forbidden):
        documents.delete_document(session, member, owner_doc.id, ip=None, now=dt.datetime.now(dt.UTC))
    session.rollback()

    login_as(client, session, seed.member_id)
    refused = post_form(client, f"/entreprise/profil/documents/{owner_doc.id}/supprimer")
    assert refused.status_code == 302
    assert "Seuls le responsable" in text_of(client.get("/entreprise/profil/documents"))
    assert session.get(FirmDocument, owner_doc.id) is not None

    login_as(client, session, seed.owner_id)
    document_id = owner_doc.id
    assert post_form(client, f"/entreprise/profil/documents/{document_id}/supprimer").status_code == 302
    session.expire_all()
    assert session.get(FirmDocument, document_id) is None
    assert session.get(FirmReference, reference.id).attestation_id is None  # type: ignore[union-attr]
    assert _files(storage_root) == []
    assert client.get(f"/documents/{document_id}").status_code == 404


def test_a_firm_cannot_touch_another_firms_document(
    app: Flask, client: FlaskClient, session: Session, seed: Seed
) -> None:
    other, _owner = factories.make_firm(session, app.extensions["tenderpool.settings"], postcode="91000")
    foreign = factories.make_document(session, other)
    session.commit()
    login_as(client, session, seed.owner_id)
    assert post_form(client, f"/entreprise/profil/documents/{foreign.id}/supprimer").status_code == 404
    assert client.get(f"/documents/{foreign.id}").status_code == 404


# --------------------------------------------------------------------------- validity flags


def test_expiring_documents_flags_what_counts(session: Session, seed: Seed, client: FlaskClient) -> None:
    firm = session.get(Firm, seed.firm_id)
    assert firm is not None
    day = dt.timedelta(days=1)
    old_kbis = factories.make_document(
        session, firm, kind="kbis", issued_on=TODAY - 200 * day, expires_on=TODAY - 100 * day
    )
    soon_kbis = factories.make_document(
        session, firm, kind="kbis", issued_on=TODAY - 80 * day, expires_on=TODAY + 10 * day
    )
    factories.make_document(
        session, firm, kind="urssaf", issued_on=TODAY - 10 * day, expires_on=TODAY + 170 * day
    )
    expired_rc = factories.make_document(
        session, firm, kind="rc_pro", issued_on=TODAY - 400 * day, expires_on=TODAY - 35 * day
    )
    edge = factories.make_document(
        session, firm, kind="tax", issued_on=TODAY - 300 * day, expires_on=TODAY + 30 * day
    )
    session.commit()

    flagged = documents.expiring_documents(session, firm, today=TODAY)
    # The old Kbis was replaced by a newer one; 30 days left is not "fewer than 30 days".
    assert [d.id for d in flagged] == [expired_rc.id, soon_kbis.id]
    assert old_kbis.id not in {d.id for d in flagged} and edge.id not in {d.id for d in flagged}
    assert [d.id for d in documents.expiring_documents(session, firm, today=TODAY, within_days=31)] == [
        expired_rc.id,
        soon_kbis.id,
        edge.id,
    ]
    assert documents.document_status(expired_rc, TODAY) == "expired"
    assert documents.document_status(soon_kbis, TODAY) == "expiring"
    assert documents.document_status(edge, TODAY) == "valid"

    login_as(client, session, seed.member_id)
    page = text_of(client.get("/entreprise/profil"))
    assert "Documents à renouveler" in page
    assert f"Expiré depuis le {expired_rc.expires_on:%d/%m/%Y}" in page
    assert f"Expire le {soon_kbis.expires_on:%d/%m/%Y}" in page
    listing = text_of(client.get("/entreprise/profil/documents"))
    assert "remplacé par un document plus récent" in listing
