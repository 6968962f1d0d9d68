"""Hostile uploads on both upload routes: a firm's documents and a groupement's shared documents.

Each file is refused with a French message naming the reason, and nothing is written: no row,
no file in the storage folder (not even a temporary one), nothing anywhere under the test's
folders, and nothing where a path-traversal name would have pointed.

tests/firms/test_documents.py already covers the inspection itself in depth on the firm route;
here every hostile kind goes through both web routes, and the content-stream zip bomb and the
object-stream zip bomb are new.
"""

from __future__ import annotations

import datetime as dt
import io
import zipfile
import zlib
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session
from werkzeug.datastructures import FileStorage, MultiDict
from werkzeug.test import encode_multipart

from tenderpool.consortia.models import SharedDocument, SharedDocumentVersion
from tenderpool.firms.models import FirmDocument
from tenderpool.storage import upload_settings
from tests import factories
from tests.conftest import Seed, SeedConsortium, csrf_token, login_as, text_of
from tests.security.conftest import files_under

MAX = 10 * 1024 * 1024
TODAY = dt.date.today()


def hand_made_pdf(*objects: bytes) -> bytes:
    """A PDF written byte by byte: object 1 is the catalog; correct cross-reference offsets."""
    out = b"%PDF-1.7\n"
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += f"{number} 0 obj\n".encode() + body + b"\nendobj\n"
    xref = len(out)
    out += f"xref\n0 {len(objects) + 1}\n0000000000 65535 f \n".encode()
    out += b"".join(f"{offset:010d} 00000 n \n".encode() for offset in offsets)
    out += f"trailer\n<< /Size {len(objects) + 1} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n".encode()
    return out


def _page(catalog_extra: bytes = b"", page_extra: bytes = b"", *more: bytes) -> bytes:
    return hand_made_pdf(
        b"<< /Type /Catalog /Pages 2 0 R " + catalog_extra + b" >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 595 842] " + page_extra + b" >>",
        *more,
    )


# 100 MB of zeros deflate to ~100 kB: far below the 10 MB upload limit.
_BOMB = zlib.compress(b"\x00" * 100_000_000, 9)
FLATE_BOMB = _page(
    b"",
    b"/Contents 4 0 R",
    f"<< /Length {len(_BOMB)} /Filter /FlateDecode >>\nstream\n".encode() + _BOMB + b"\nendstream",
)
# The same bomb as an object stream, which the reader must inflate to find the objects in it.
OBJSTM_BOMB = _page(
    b"",
    b"",
    f"<< /Type /ObjStm /N 1 /First 4 /Length {len(_BOMB)} /Filter /FlateDecode >>\nstream\n".encode()
    + _BOMB
    + b"\nendstream",
)


def _zip() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("devis.txt", "bonjour")
    return buffer.getvalue()


HOSTILE = [
    pytest.param(factories.pdf_bytes(), "../../../etc/cron.d/kbis.pdf", "contient un chemin", id="traversal"),
    pytest.param(
        factories.pdf_bytes(), "..%2F..%2Fkbis.pdf", "commencer par un point", id="traversal-encoded"
    ),
    pytest.param(factories.pdf_bytes(), "/var/www/kbis.pdf", "contient un chemin", id="absolute-path"),
    pytest.param(factories.pdf_bytes(), "kbis.pdf.exe", "double extension", id="pdf-exe"),
    pytest.param(factories.pdf_bytes(), "x.php.pdf", "double extension", id="php-pdf"),
    pytest.param(factories.pdf_bytes() + _zip(), "kbis.pdf", "polyglotte", id="polyglot-pdf-zip"),
    pytest.param(
        factories.pdf_bytes() + b"<html><script>alert(1)</script></html>",
        "kbis.pdf",
        "polyglotte",
        id="polyglot-pdf-html",
    ),
    pytest.param(b"%PDF-1.4\n" + b"0" * MAX, "gros.pdf", "taille maximale", id="oversized"),
    pytest.param(FLATE_BOMB, "rapport.pdf", "bombe de décompression", id="zip-bomb-content-stream"),
    pytest.param(OBJSTM_BOMB, "rapport.pdf", "bombe de décompression", id="zip-bomb-object-stream"),
    pytest.param(factories.pdf_bytes(javascript=True), "kbis.pdf", "JavaScript", id="pdf-javascript"),
    pytest.param(
        _page(b"/OpenAction << /S /URI /URI (https://phishing.example) >>"),
        "kbis.pdf",
        "OpenAction",
        id="pdf-open-action",
    ),
    pytest.param(_page(b"/OpenAction << /S /Launch /F (calc.exe) >>"), "kbis.pdf", "Launch", id="pdf-launch"),
]


def _post_file(client: FlaskClient, url: str, data: bytes, name: str, **fields: str) -> Any:
    """A multipart POST encoded up front (the test client would spool a big body to a temporary
    file it never closes)."""
    values = MultiDict(
        {
            "csrf_token": csrf_token(client),
            **fields,
            "file": FileStorage(io.BytesIO(data), filename=name, content_type="application/octet-stream"),
        }
    )
    boundary, body = encode_multipart(values)
    return client.post(url, data=body, content_type=f"multipart/form-data; boundary={boundary}")


def _count(session: Session, model: Any) -> int:
    return int(session.scalar(select(func.count()).select_from(model)) or 0)


def _assert_nothing_outside(root: Path, name: str) -> None:
    """Where a traversal name would have landed, relative to the storage folder, nothing is."""
    if "/" in name:
        assert not (root / name).resolve().exists()
        assert not Path(name).is_absolute() or not Path(name).exists()


@pytest.mark.parametrize(("data", "name", "message"), HOSTILE)
def test_firm_document_upload_refuses(
    app: Flask,
    client: FlaskClient,
    session: Session,
    seed: Seed,
    tmp_path: Path,
    data: bytes,
    name: str,
    message: str,
) -> None:
    root = upload_settings(app.extensions["tenderpool.settings"]).root
    login_as(client, session, seed.member_id)
    client.get("/entreprise/profil/documents")
    before = files_under(tmp_path)
    response = _post_file(
        client,
        "/entreprise/profil/documents",
        data,
        name,
        kind="kbis",
        issued_on=(TODAY - dt.timedelta(days=3)).isoformat(),
    )
    assert response.status_code == 400
    assert message in text_of(response)
    assert _count(session, FirmDocument) == 0
    assert files_under(root) == set()
    assert files_under(tmp_path) == before
    _assert_nothing_outside(root, name)


@pytest.mark.parametrize(("data", "name", "message"), HOSTILE)
def test_shared_document_upload_refuses(
    app: Flask,
    client: FlaskClient,
    session: Session,
    seed: Seed,
    seed_consortium: SeedConsortium,
    tmp_path: Path,
    data: bytes,
    name: str,
    message: str,
) -> None:
    root = upload_settings(app.extensions["tenderpool.settings"]).root
    cid = seed_consortium.consortium_id
    login_as(client, session, seed.member_id)
    documents, versions = _count(session, SharedDocument), _count(session, SharedDocumentVersion)
    stored = files_under(root)  # the seed consortium's planning
    before = files_under(tmp_path)
    response = _post_file(client, f"/groupements/{cid}/documents", data, name, title="Pièce")
    assert response.status_code == 302
    page = text_of(client.get(response.headers["Location"]))
    assert message in page, page[:2000]
    assert (_count(session, SharedDocument), _count(session, SharedDocumentVersion)) == (documents, versions)
    assert files_under(root) == stored
    assert files_under(tmp_path) == before
    _assert_nothing_outside(root, name)


def test_a_refused_new_version_leaves_the_document_as_it_was(
    app: Flask, client: FlaskClient, session: Session, seed: Seed, seed_consortium: SeedConsortium
) -> None:
    """A hostile file sent as version 2 of an existing document: version 1 stays the only one."""
    cid = seed_consortium.consortium_id
    document = session.scalars(select(SharedDocument).where(SharedDocument.consortium_id == cid)).one()
    login_as(client, session, seed.member_id)
    response = _post_file(
        client, f"/groupements/{cid}/documents", FLATE_BOMB, "planning.pdf", document_id=str(document.id)
    )
    assert "bombe de décompression" in text_of(client.get(response.headers["Location"]))
    session.expire_all()
    assert [v.number for v in session.get_one(SharedDocument, document.id).versions] == [1]


def test_an_ordinary_pdf_with_compressed_pages_is_still_accepted() -> None:
    """The stream budget does not refuse real documents (WeasyPrint output: compressed fonts)."""
    from tenderpool.firms.documents import inspect_upload
    from tenderpool.pdf import Renderer

    html = "<html lang=fr><h1>Attestation</h1><p>" + "Texte accentué. " * 2000 + "</p></html>"
    data = Renderer().render(html).data
    assert inspect_upload("attestation.pdf", data, max_bytes=MAX).content_type == "application/pdf"
