"""The dossier page, generation requests, downloads and who may see them; the CLI."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from flask import Flask
from flask.testing import FlaskClient
from pypdf import PdfReader
from sqlalchemy import select
from sqlalchemy.orm import Session

from tenderpool.db import Database
from tenderpool.dossiers import services
from tenderpool.dossiers.models import DossierFile, DossierVersion
from tenderpool.firms.models import Firm
from tenderpool.storage import LocalStorage
from tests import dossier_factories as df
from tests import factories
from tests.conftest import Seed, csrf_token, login_as, post_form, text_of
from tests.routes import ROLE_USER, ROLES
from tests.routes import dossiers as dossier_routes


@pytest.fixture
def storage(app: Flask, tmp_path: Path) -> LocalStorage:
    storage = LocalStorage(tmp_path / "uploads")
    app.extensions["tenderpool.storage"] = storage
    return storage


@pytest.fixture
def cfg(app: Flask) -> Any:
    """The app's settings, without pushing an app context (the conftest ``settings`` fixture keeps
    one open, which would make every request of the test share one ``g`` and its logged-in user)."""
    return app.extensions["tenderpool.settings"]


@pytest.fixture
def seeded(session: Session, cfg: Any, seed: Seed, storage: LocalStorage) -> df.BuiltConsortium:
    """A consortium whose mandataire is the seed firm of the 77 (like the matrix's seed consortium)."""
    firm = session.get(Firm, seed.firm_id)
    assert firm is not None
    built = df.make_dossier_consortium(session, cfg, members=2, lots=1, storage=storage, mandataire=firm)
    session.commit()
    return built


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("endpoint", sorted(dossier_routes.ROUTES))
def test_route_matrix_with_a_seed_consortium(
    endpoint: str, role: str, client: FlaskClient, session: Session, seed: Seed, seeded: df.BuiltConsortium
) -> None:
    """The expectations of tests/routes/dossiers.py, checked against a consortium built here."""
    case = dossier_routes.ROUTES[endpoint]
    if role != "anonymous":
        login_as(client, session, getattr(seed, ROLE_USER[role]))
    url = case.path.format(consortium_id=seeded.consortium.id, **vars(seed))
    kwargs: dict[str, Any] = {}
    if case.method == "POST":
        kwargs["data"] = {"csrf_token": csrf_token(client), **(case.data or {})}
    response = client.open(url, method=case.method, **kwargs)
    assert response.status_code == case.expect[role], (role, url, response.status_code)


def _build(database: Database, settings: Any, storage: LocalStorage, session: Session) -> None:
    services.process_pending_dossiers(database, settings, now=df.NOW, storage=storage)
    session.expire_all()


def test_generate_show_progress_and_download(
    client: FlaskClient,
    session: Session,
    database: Database,
    cfg: Any,
    seed: Seed,
    seeded: df.BuiltConsortium,
    storage: LocalStorage,
) -> None:
    consortium_id = seeded.consortium.id
    page_url = f"/groupements/{consortium_id}/dossier"
    login_as(client, session, seed.member_id)
    page = text_of(client.get(page_url))
    assert "Vérification avant dépôt" in page
    assert "Aucune version" in page
    assert 'http-equiv="refresh"' not in page

    response = post_form(client, f"{page_url}/generer", {"pdfa": "y"})
    assert response.status_code == 302
    # A second click while it waits does not make a second version.
    post_form(client, f"{page_url}/generer")
    versions = list(
        session.scalars(select(DossierVersion).where(DossierVersion.consortium_id == consortium_id))
    )
    assert [(v.number, v.status, v.pdf_variant) for v in versions] == [(1, "queued", "pdf/a-3b")]
    page = text_of(client.get(page_url))
    assert 'http-equiv="refresh"' in page
    assert "En attente" in page

    _build(database, cfg, storage, session)
    page = text_of(client.get(page_url))
    assert 'http-equiv="refresh"' not in page
    assert "Version 1" in page and "PDF/A-3b" in page
    version = session.scalars(
        select(DossierVersion).where(DossierVersion.consortium_id == consortium_id)
    ).one()
    assert version.status == "ready"
    assert version.requested_by_id == seed.member_id
    dossier_file = next(f for f in version.files if f.kind == "dossier")
    assert dossier_file.sha256 in page
    download = f"{page_url}/fichiers/{dossier_file.id}"
    assert download in page

    response = client.get(download)
    assert response.status_code == 200
    assert response.mimetype == "application/pdf"
    assert "attachment" in response.headers["Content-Disposition"]
    assert "no-store" in response.headers["Cache-Control"]
    assert len(PdfReader(io.BytesIO(response.data)).pages) == version.page_count

    # A second version; the first stays downloadable.
    post_form(client, f"{page_url}/generer")
    _build(database, cfg, storage, session)
    numbers = sorted(v.number for v in session.scalars(select(DossierVersion)))
    assert numbers[-2:] == [1, 2]
    assert client.get(download).status_code == 200

    # Chamber staff of the members' chamber and admins may download; others see nothing.
    for user_id, expected in ((seed.staff77_id, 200), (seed.admin_id, 200), (seed.staff91_id, 404)):
        login_as(client, session, user_id)
        assert client.get(download).status_code == expected, user_id
    outsider_firm, outsider = factories.make_firm(session, cfg)
    session.commit()
    login_as(client, session, outsider.id)
    assert client.get(download).status_code == 404
    assert client.get(page_url).status_code == 404

    # A file of one consortium is not reachable through another consortium's address.
    other = df.make_dossier_consortium(
        session, cfg, members=2, lots=1, storage=None, mandataire=outsider_firm
    )
    session.commit()
    assert (
        client.get(f"/groupements/{other.consortium.id}/dossier/fichiers/{dossier_file.id}").status_code
        == 404
    )


def test_readiness_links_on_the_page(
    client: FlaskClient, session: Session, seed: Seed, seeded: df.BuiltConsortium
) -> None:
    firm = seeded.firms[1]
    firm.naf_code = None
    seeded.consortium.sections[0].status = "draft"
    session.commit()
    login_as(client, session, seed.owner_id)
    page = text_of(client.get(f"/groupements/{seeded.consortium.id}/dossier"))
    assert "Générer un brouillon" in page
    assert "Code NAF" in page
    assert "/entreprise/profil/identite#naf_code" in page
    assert "n'est pas prête" in page


def test_cli_builds_a_version_and_writes_the_pdf(
    session: Session, database: Database, cfg: Any, seeded: df.BuiltConsortium, tmp_path: Path
) -> None:
    from tenderpool.cli import Context
    from tenderpool.dossiers.cli import dossier

    context = Context()
    context._settings = cfg
    context._db = database
    output = tmp_path / "dossier.pdf"
    runner = CliRunner()
    result = runner.invoke(
        dossier, ["build", str(seeded.consortium.id), "--output", str(output), "--pdfa"], obj=context
    )
    assert result.exit_code == 0, result.output
    assert "Version 1" in result.output
    reader = PdfReader(io.BytesIO(output.read_bytes()))
    assert "pdfaid" in reader.trailer["/Root"]["/Metadata"].get_object().get_data().decode()
    session.expire_all()
    stored = list(session.scalars(select(DossierFile)))
    assert {f.kind for f in stored} == {"dossier", "dc1", "dc2", "bundle"}

    missing = runner.invoke(dossier, ["build", "999999"], obj=context)
    assert missing.exit_code == 1
    assert "aucun groupement" in missing.output
