"""Building a consortium's dossier: content, table of contents, attachments, metadata, PDF/A."""

from __future__ import annotations

import io
import os
import re
import shutil
import subprocess
import zipfile
from pathlib import Path
from typing import Any

import pytest
from pypdf import PdfReader
from sqlalchemy.orm import Session

from tenderpool.db import Database
from tenderpool.dossiers import services
from tenderpool.dossiers.models import DossierVersion
from tenderpool.formatting import money_fr
from tenderpool.storage import LocalStorage
from tests import dossier_factories as df
from tests import factories


@pytest.fixture
def storage(tmp_path: Path) -> LocalStorage:
    return LocalStorage(tmp_path / "uploads")


def marked_pdf(text: str, pages: int = 1) -> bytes:
    """A small PDF whose pages carry ``text`` (to find the attachment in the merged dossier)."""
    from tenderpool import pdf

    body = "".join(f'<p style="break-before: page">{text} page {n + 1}</p>' for n in range(pages))
    return pdf.Renderer().render(f"<html><body>{body}</body></html>").data


def generate(
    session: Session, database: Database, settings: Any, storage: LocalStorage, built: Any, **kw: Any
) -> DossierVersion:
    version = services.queue_dossier(session, built.consortium, by=None, now=df.NOW, **kw)
    session.commit()
    services.process_pending_dossiers(database, settings, now=df.NOW, storage=storage)
    session.expire_all()
    refreshed = session.get(DossierVersion, version.id)
    assert refreshed is not None
    assert refreshed.status == "ready", refreshed.error
    return refreshed


def file_bytes(
    version: DossierVersion, storage: LocalStorage, kind: str, firm_id: int | None = None
) -> bytes:
    stored = next(f for f in version.files if f.kind == kind and (firm_id is None or f.firm_id == firm_id))
    return storage.open(stored.storage_key)


def page_texts(data: bytes) -> list[str]:
    reader = PdfReader(io.BytesIO(data))
    # Spaces of every width become plain ones, to compare with what the test computes.
    return [re.sub(r"[\u00a0\u202f]", " ", page.extract_text() or "") for page in reader.pages]


def norm(text: str) -> str:
    return re.sub(r"[\u00a0\u202f]", " ", text)


def test_dossier_content_toc_attachments_and_metadata(
    session: Session, database: Database, settings: Any, storage: LocalStorage
) -> None:
    built = df.make_dossier_consortium(session, settings, members=3, lots=2, storage=None)
    # Attachments whose pages say which they are.
    for firm in built.firms:
        df.add_documents(session, firm, storage, data=marked_pdf(f"PIECE-{firm.id}", pages=2))
    version = generate(session, database, settings, storage, built)

    assert not version.is_draft, version.open_items
    kinds = sorted(f.kind for f in version.files)
    assert kinds == sorted(["dossier", "dc1", "bundle"] + ["dc2"] * 3)
    for stored in version.files:
        data = storage.open(stored.storage_key)
        import hashlib

        assert hashlib.sha256(data).hexdigest() == stored.sha256
    data = file_bytes(version, storage, "dossier")
    pages = page_texts(data)
    whole = "\n".join(pages)
    assert "BROUILLON" not in whole
    assert version.page_count == len(pages)

    # Table of contents: every entry's page number points at a page that shows its title.
    toc_page = next(i for i, text in enumerate(pages) if "Sommaire" in text)
    entries = re.findall(r"^(.+?)[ .]*\s(\d+)\s*$", pages[toc_page], flags=re.MULTILINE)
    assert len(entries) >= 10, pages[toc_page]
    entries = [(t, n) for t, n in entries if not re.search(r"page \d+ /$", t.strip())]  # the footer
    for title, number in entries:
        title = title.strip(" .")
        page = int(number)
        assert 1 <= page <= len(pages)
        probe = title.split(" — ")[0][:25]
        assert probe in pages[page - 1], (title, page)

    # DC1: lots, form, rubric G names the mandataire.
    dc1_start = next(
        i for i, t in enumerate(pages) if "DC1 — Lettre de candidature" in t and "Sommaire" not in t
    )
    dc1_text = "\n".join(pages[dc1_start : dc1_start + 4])
    assert "lots n° 1, 2" in dc1_text
    rubric_g = dc1_text.split("Désignation du mandataire (en cas de groupement)")[1]
    assert built.mandataire.name in rubric_g
    assert services.siret_display(built.mandataire.siret).replace("\u00a0", " ") in rubric_g

    # One DC2 per member, with its name and SIRET in its own section.
    starts = {}
    for firm in built.firms:
        starts[firm.id] = next(
            i for i, t in enumerate(pages) if f"DC2 — {firm.name}" in t and "Sommaire" not in t
        )
    ordered = sorted(starts.values())
    for firm in built.firms:
        first = starts[firm.id]
        following = [s for s in ordered if s > first]
        end = following[0] if following else first + 3
        section = "\n".join(pages[first:end])
        assert firm.name in section
        assert services.siret_display(firm.siret).replace("\u00a0", " ") in section
        assert "Exercice" in section

    # Pooled capacities: each year's total is the sum of the members' turnovers.
    capacities = "\n".join(t for t in pages if "Capacités du groupement" in t and "Sommaire" not in t)
    for year in (2023, 2024, 2025):
        total = sum(next(y.turnover for y in f.years if y.year == year) for f in built.firms)
        assert norm(money_fr(total)) in capacities, (year, total)

    # Répartition and mémoire.
    assert "Répartition des prestations" in whole
    assert "Section 3 : organisation du chantier" in whole

    # Attachments: each one's pages come right after its separator page.
    for firm in built.firms:
        hits = [i for i, t in enumerate(pages) if f"PIECE-{firm.id} page 1" in t]
        assert len(hits) == 5  # Kbis, URSSAF, tax, RC pro, décennale
        for index in hits:
            assert "Pièce jointe" in pages[index - 1]
            assert f"PIECE-{firm.id} page 2" in pages[index + 1]

    # Metadata.
    reader = PdfReader(io.BytesIO(data))
    meta = reader.metadata
    assert meta is not None
    assert built.consortium.name in (meta.title or "")
    assert built.mandataire.name in (meta.author or "")
    assert "Candidature et offre" in (meta.subject or "")
    assert reader.trailer["/Root"]["/Lang"] == "fr"

    # The separate forms.
    dc1 = "\n".join(page_texts(file_bytes(version, storage, "dc1")))
    assert built.mandataire.name in dc1.split("Désignation du mandataire")[1]
    for firm in built.firms:
        dc2 = "\n".join(page_texts(file_bytes(version, storage, "dc2", firm.id)))
        assert firm.name in dc2
        assert services.siret_display(firm.siret).replace("\u00a0", " ") in dc2

    # The bundle: every file and original attachment, with a manifest of SHA-256 sums.
    with zipfile.ZipFile(io.BytesIO(file_bytes(version, storage, "bundle"))) as archive:
        names = archive.namelist()
        manifest = archive.read("MANIFEST-SHA256.txt").decode()
        assert len([n for n in names if n.startswith("pieces/")]) == 15
        for name in names:
            if name != "MANIFEST-SHA256.txt":
                import hashlib

                assert f"{hashlib.sha256(archive.read(name)).hexdigest()}  {name}" in manifest


def test_pdfa_variant_is_identified(
    session: Session, database: Database, settings: Any, storage: LocalStorage
) -> None:
    built = df.make_dossier_consortium(session, settings, members=2, lots=1, storage=storage)
    version = generate(session, database, settings, storage, built, pdf_variant="pdf/a-3b")
    reader = PdfReader(io.BytesIO(file_bytes(version, storage, "dossier")))
    xmp = reader.trailer["/Root"]["/Metadata"].get_object().get_data().decode()
    assert re.search(r"pdfaid:part(=\"|>)3", xmp), xmp
    assert re.search(r"pdfaid:conformance(=\"|>)B", xmp), xmp
    assert "/OutputIntents" in reader.trailer["/Root"]
    # The separate forms are PDF/A too.
    for stored in version.files:
        if stored.kind in ("dc1", "dc2"):
            form_root: Any = PdfReader(io.BytesIO(storage.open(stored.storage_key))).trailer["/Root"]
            form_xmp = form_root["/Metadata"].get_object().get_data().decode()
            assert re.search(r"pdfaid:part(=\"|>)3", form_xmp), (stored.filename, form_xmp)
            assert "/OutputIntents" in form_root


def test_first_page_renders_to_a_non_blank_png(
    session: Session, database: Database, settings: Any, storage: LocalStorage, tmp_path: Path
) -> None:
    if shutil.which("pdftoppm") is None:
        if os.environ.get("CI"):
            pytest.fail("pdftoppm is missing: apt-get install -y poppler-utils")
        pytest.skip("pdftoppm (poppler-utils) is not installed")
    from PIL import Image

    built = df.make_dossier_consortium(session, settings, members=2, lots=1, storage=storage)
    version = generate(session, database, settings, storage, built)
    source = tmp_path / "dossier.pdf"
    source.write_bytes(file_bytes(version, storage, "dossier"))
    for page in (1, 3):
        subprocess.run(
            [
                "pdftoppm",
                "-f",
                str(page),
                "-l",
                str(page),
                "-r",
                "40",
                "-png",
                "-singlefile",
                str(source),
                str(tmp_path / f"p{page}"),
            ],
            check=True,
            timeout=60,
        )
        with Image.open(tmp_path / f"p{page}.png") as image:
            grey = image.convert("L")
            dark = sum(grey.histogram()[:128])
            assert dark > 500, f"page {page} looks blank ({dark} dark pixels)"


def test_bad_attachments_are_reported_and_the_rest_is_built(
    session: Session,
    database: Database,
    settings: Any,
    storage: LocalStorage,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    built = df.make_dossier_consortium(session, settings, members=2, lots=1, storage=None)
    good, other = built.firms
    df.add_documents(session, other, storage, data=marked_pdf("BONNE-PIECE"))
    big = marked_pdf("TROP-GROS") + b"\n%" + b"x" * 40_000 + b"\n"
    monkeypatch.setattr(services, "MAX_ATTACHMENT_BYTES", 30_000)
    corrupt = b"%PDF-1.7\n1 0 obj << /Type /Catalog /Pages 2 0 R >> endobj\nthis is not a pdf at all\n%%EOF\n"
    when = df.TODAY - __import__("datetime").timedelta(days=5)
    expiry = df.TODAY + __import__("datetime").timedelta(days=60)
    for kind, data, name in (
        ("kbis", corrupt, "kbis-abime.pdf"),
        ("urssaf", factories.pdf_bytes(encrypted=True), "urssaf-chiffree.pdf"),
        ("tax", big, "fiscale-enorme.pdf"),
        ("rc_pro", marked_pdf("RC-PRO-OK"), "rc-pro.pdf"),
    ):
        factories.make_document(
            session, good, kind=kind, issued_on=when, expires_on=expiry, storage=storage, data=data, name=name
        )
    version = generate(session, database, settings, storage, built)
    reasons = {s["name"]: s["reason"] for s in version.skipped}
    assert set(reasons) == {"kbis-abime.pdf", "urssaf-chiffree.pdf", "fiscale-enorme.pdf"}
    assert "endommagé" in reasons["kbis-abime.pdf"]
    assert "chiffré" in reasons["urssaf-chiffree.pdf"]
    assert "volumineux" in reasons["fiscale-enorme.pdf"]
    whole = "\n".join(page_texts(file_bytes(version, storage, "dossier")))
    assert "RC-PRO-OK" in whole
    assert whole.count("BONNE-PIECE") == 5
    for name in reasons:
        assert name in whole  # reported in the dossier itself
    assert "TROP-GROS" not in whole


def test_draft_is_watermarked_and_readiness_lists_what_is_missing(
    session: Session, database: Database, settings: Any, storage: LocalStorage
) -> None:
    import datetime as dt

    built = df.make_dossier_consortium(session, settings, members=2, lots=1, storage=storage, ready=False)
    lacking = built.firms[1]
    lacking.legal_form_code = None
    lacking.years = [y for y in lacking.years if y.year != 2024]
    # An URSSAF attestation delivered 7 months ago, typed with a far expiry date.
    factories.make_document(
        session,
        lacking,
        kind="urssaf",
        issued_on=df.TODAY - dt.timedelta(days=210),
        expires_on=df.TODAY + dt.timedelta(days=300),
        storage=storage,
        name="urssaf-ancienne.pdf",
    )
    for doc in list(lacking.documents):
        if doc.kind == "urssaf" and doc.original_name != "urssaf-ancienne.pdf":
            session.delete(doc)
    share = next(s for s in built.consortium.shares if s.firm_id == lacking.id)
    share.share = share.share - 10
    session.flush()
    session.expire_all()
    consortium = built.consortium
    readiness = services.check_readiness(session, consortium, today=df.TODAY)
    assert not readiness.ok
    general = " | ".join(i.label for i in readiness.general)
    assert "100 %" in general  # répartition
    assert "n'est pas prête" in general  # mémoire sections
    member = next(m for m in readiness.members if m.firm_id == lacking.id)
    labels = " | ".join(i.label for i in member.items)
    assert "Forme juridique" in labels
    assert "2024" in labels
    assert "URSSAF de plus de 6 mois" in labels
    assert all(i.url for i in member.items)
    assert all(i.endpoint or i.url for i in readiness.general)
    other = next(m for m in readiness.members if m.firm_id != lacking.id)
    assert other.items == []

    version = generate(session, database, settings, storage, built)
    assert version.is_draft
    assert version.open_items
    pages = page_texts(file_bytes(version, storage, "dossier"))
    assert all("BROUILLON" in text for text in pages[:3])
    # Blank DC2 fields say so, never disappear.
    dc2 = "\n".join(page_texts(file_bytes(version, storage, "dc2", lacking.id)))
    assert "non renseigné" in dc2


def test_separate_forms_are_the_dossiers_own_form_pages(
    session: Session, database: Database, settings: Any, storage: LocalStorage
) -> None:
    """The DC1 and each DC2 file hold exactly that form's pages of the dossier, no more, no less."""
    built = df.make_dossier_consortium(session, settings, members=3, lots=2, storage=None)
    version = generate(session, database, settings, storage, built)
    pages = page_texts(file_bytes(version, storage, "dossier"))
    starts = {
        firm.id: next(i for i, t in enumerate(pages) if f"DC2 — {firm.name}" in t and "Sommaire" not in t)
        for firm in built.firms
    }
    dc1_start = next(
        i for i, t in enumerate(pages) if "DC1 — Lettre de candidature" in t and "Sommaire" not in t
    )
    capacities = next(
        i for i, t in enumerate(pages) if "Capacités du groupement" in t and "Sommaire" not in t
    )
    bounds = sorted([dc1_start, *starts.values(), capacities])

    def expected(first: int) -> list[str]:
        return pages[first : bounds[bounds.index(first) + 1]]

    dc1_file = next(f for f in version.files if f.kind == "dc1")
    dc1 = page_texts(file_bytes(version, storage, "dc1"))
    assert dc1 == expected(dc1_start)
    assert dc1_file.page_count == len(dc1)
    assert built.mandataire.name in "\n".join(dc1).split("Désignation du mandataire")[1]
    assert all("du dossier" in text for text in dc1)  # the footer's page numbers are the dossier's

    for firm in built.firms:
        stored = next(f for f in version.files if f.kind == "dc2" and f.firm_id == firm.id)
        data = file_bytes(version, storage, "dc2", firm.id)
        dc2 = page_texts(data)
        assert dc2 == expected(starts[firm.id])
        assert stored.page_count == len(dc2) >= 1
        whole = "\n".join(dc2)
        assert f"DC2 — {firm.name}" in dc2[0]
        assert services.siret_display(firm.siret).replace("\u00a0", " ") in whole
        for other in built.firms:
            if other.id != firm.id:
                assert f"DC2 — {other.name}" not in whole
                assert services.siret_display(other.siret).replace("\u00a0", " ") not in whole
        meta = PdfReader(io.BytesIO(data)).metadata
        assert meta is not None
        assert firm.name in (meta.title or "") and built.consortium.name in (meta.title or "")
        assert built.mandataire.name in (meta.author or "")
