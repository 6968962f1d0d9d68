"""Stored and reflected cross-site scripting, judged on the parsed HTML of every page that shows
user text (tests/test_consortia_web.py covers the consortium card, discussion, partners and
mémoire list; the browser suite, tests/browser/test_xss.py, checks that nothing runs).

One hostile world: the payload is the seed firm's name, description and keywords, a user's
name, a reference, a certification, a document's name, the groupement's name and skills, a
message, a mémoire section (title and Markdown body), a checklist step, a shared document, a
notice's title and buyer, and the search boxes. Each page is parsed as a browser would: no
``<script>`` of ours may carry the payload, no element may get an event-handler attribute or a
``javascript:`` link from it.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import lxml.html
import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy.orm import Session

from tenderpool.accounts.models import User
from tenderpool.consortia import workspace
from tenderpool.consortia.models import ChecklistItem, Consortium, MemoireSection, SharedDocument
from tenderpool.errors import ValidationError
from tenderpool.firms.models import Firm, FirmCertification, FirmReference
from tenderpool.firms.profile import clean_website
from tenderpool.notices.models import Notice
from tests import factories
from tests.conftest import Seed, SeedConsortium, SeedNotice, login_as
from tests.consortia_helpers import NOW

PAYLOAD = (
    "X\"'><script>alert(1)</script><img src=x onerror=alert(2)>"
    '<svg onload=alert(3)><a href="javascript:alert(4)">l</a>'
)
SHORT = "\"'><svg onload=alert(5)>"  # for the short columns
MARKDOWN = (
    "# Titre\n\n[lien](javascript:alert(6)) <script>alert(7)</script>\n\n"
    '<img src=x onerror="alert(8)"> ![image](javascript:alert(9))'
)


def injected(html: str) -> list[str]:
    """What in the page would run the payload."""
    found = []
    document = lxml.html.document_fromstring(html)
    for element in document.iter():
        if not isinstance(element.tag, str):
            continue
        if element.tag == "script" and "alert(" in (element.text or ""):
            found.append("script: " + (element.text or "")[:60])
        for name, value in element.attrib.items():
            if name.lower().startswith("on") and "alert" in value:
                found.append(f"<{element.tag} {name}={value!r}>")
            if name.lower() in ("href", "src", "action", "formaction", "xlink:href") and (
                value.strip().lower().startswith("javascript:")
            ):
                found.append(f"<{element.tag} {name}={value!r}>")
    return found


@pytest.fixture
def hostile(
    app: Flask, session: Session, seed: Seed, seed_notice: SeedNotice, seed_consortium: SeedConsortium
) -> dict[str, int]:
    """The payload everywhere a user (or a source) can put text."""
    firm = session.get_one(Firm, seed.firm_id)
    firm.name = PAYLOAD
    firm.description = PAYLOAD
    firm.keywords = [SHORT]
    # Through the service's check, which refuses javascript: and other schemes (test below).
    firm.website = clean_website('https://exemple.fr/"><script>alert(10)</script>')
    firm.directory_opt_in = True
    firm.directory_fields = ["skills", "headcount_band", "references", "certifications", "description"]
    owner = session.get_one(User, seed.owner_id)
    owner.full_name = PAYLOAD
    reference = FirmReference(firm_id=firm.id, buyer=PAYLOAD, object=PAYLOAD, year=2025, lot=SHORT)
    certification = FirmCertification(firm_id=firm.id, name=SHORT, number=SHORT)
    session.add_all([reference, certification])
    factories.make_document(session, firm, kind="kbis", name=SHORT + ".pdf")
    consortium = session.get_one(Consortium, seed_consortium.consortium_id)
    consortium.name = PAYLOAD[:160]
    consortium.skills_text = PAYLOAD
    section = session.get_one(MemoireSection, seed_consortium.section_id)
    section.title, section.body = PAYLOAD, MARKDOWN
    session.get_one(ChecklistItem, seed_consortium.item_id).title = PAYLOAD
    document = session.query(SharedDocument).filter_by(consortium_id=consortium.id).one()
    document.title = PAYLOAD
    for notice_id in (seed_notice.notice_id, seed_consortium.consortium_notice_id):
        notice = session.get_one(Notice, notice_id)
        notice.title = PAYLOAD
        notice.buyer_name = PAYLOAD
    with app.app_context():
        workspace.post_message(session, consortium, body=PAYLOAD + "\n" + MARKDOWN, by=owner, now=NOW)
    session.commit()
    return {"reference_id": reference.id, "certification_id": certification.id}


Q = quote(PAYLOAD)
PAGES = {
    "owner": [
        "/",
        "/compte",
        "/entreprise",
        "/entreprise/profil",
        "/entreprise/profil/identite",
        "/entreprise/profil/competences",
        "/entreprise/profil/references/{reference_id}",
        "/entreprise/profil/certifications/{certification_id}",
        "/entreprise/profil/documents",
        "/entreprise/profil/annuaire",
        "/annuaire/{firm_id}",
        "/groupements",
        "/groupements/{consortium_id}",
        "/groupements/{consortium_id}/parametres",
        "/groupements/{consortium_id}/partenaires",
        "/groupements/{consortium_id}/repartition",
        "/groupements/{consortium_id}/discussion",
        "/groupements/{consortium_id}/documents",
        "/groupements/{consortium_id}/memoire",
        "/groupements/{consortium_id}/memoire/{section_id}",
        "/groupements/{consortium_id}/dossier",
        "/avis/{notice_id}",
        "/avis/{consortium_notice_id}",
        f"/avis?q={Q}",
        f"/annuaire?q={Q}",
        f"/cpv?q={Q}",
        "/suivis",
        "/compte/resume/apercu",
    ],
    "outsider": ["/annuaire", "/annuaire/{firm_id}", "/avis/{consortium_notice_id}"],
    "staff77": [
        "/equipe/entreprises",
        "/equipe/entreprises/{firm_id}/profil",
        "/equipe/avis",
        "/equipe/avis/{notice_id}/modifier",
        "/groupements/{consortium_id}",
        "/groupements/{consortium_id}/discussion",
        "/equipe/tableau-de-bord",
    ],
    "admin": ["/admin/utilisateurs", "/admin/utilisateurs/{owner_id}", "/admin/journal"],
}


def test_no_user_text_runs_anywhere(
    client: FlaskClient,
    session: Session,
    seed: Seed,
    seed_notice: SeedNotice,
    seed_consortium: SeedConsortium,
    hostile: dict[str, int],
) -> None:
    ids: dict[str, Any] = {**vars(seed), **vars(seed_notice), **vars(seed_consortium), **hostile}
    users = {
        "owner": seed.owner_id,
        "outsider": seed_consortium.outsider_id,
        "staff77": seed.staff77_id,
        "admin": seed.admin_id,
    }
    problems = {}
    shown = 0
    for role, paths in PAGES.items():
        login_as(client, session, users[role])
        for path in paths:
            url = path.format(**ids)
            response = client.get(url)
            assert response.status_code == 200, f"{role} {url}: {response.status_code}"
            html = response.get_data(as_text=True)
            shown += "&lt;script&gt;alert(1)" in html or "&lt;svg onload=alert(5)&gt;" in html
            if found := injected(html):
                problems[f"{role} {url}"] = found
    assert not problems, problems
    assert shown > 25, "the payload should be shown (escaped) on most of these pages"


def test_the_probe_finds_an_injection() -> None:
    assert injected(f"<p>{PAYLOAD}</p>")
    assert not injected("<p>" + PAYLOAD.replace("<", "&lt;") + "</p>")


@pytest.mark.parametrize(
    "url",
    ["javascript:alert(1)", "JavaScript://exemple.fr/%0aalert(1)", "data:text/html,<script>", "vbscript:x"],
)
def test_website_must_be_a_web_address(url: str) -> None:
    with pytest.raises(ValidationError, match="Adresse du site invalide"):
        clean_website(url)


def test_markdown_and_message_keep_no_active_link(
    client: FlaskClient,
    session: Session,
    seed: Seed,
    seed_consortium: SeedConsortium,
    hostile: dict[str, int],
) -> None:
    login_as(client, session, seed.owner_id)
    for path in ("/memoire/{section_id}", "/memoire", "/discussion", ""):
        url = "/groupements/{consortium_id}".format(**vars(seed_consortium)) + path.format(
            **vars(seed_consortium)
        )
        html = client.get(url).get_data(as_text=True)
        assert "javascript:" not in html.replace("javascript:alert(4)", "").replace(
            "javascript:alert(6)", ""
        ).replace("javascript:alert(9)", ""), url
        assert not injected(html), url
