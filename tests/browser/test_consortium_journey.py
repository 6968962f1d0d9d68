"""Journey 3: a full groupement, from the notice page to the downloaded response dossier.

Firm A (Seine-et-Marne, gros œuvre) forms a groupement on a two-lot notice, finds firm B
(Essonne, plomberie) among the suggestions, B accepts, A divides the work and writes the
mémoire; the readiness check passes, the dossier page queues the build, the scheduler process
started beside the server builds it (as in production: never in a web request), and the PDF
downloaded from the page names both firms.
"""

from __future__ import annotations

import io
import re
import warnings
from pathlib import Path

import pytest
from playwright.sync_api import expect
from pypdf import PdfReader

from tests.browser.conftest import Journey

pytestmark = pytest.mark.browser

NAME = "Groupement Santé Coulommiers"
MEMOIRE = """## Organisation

Le mandataire coordonne le chantier ; une **réunion hebdomadaire** réunit les deux entreprises.

- gros œuvre : équipe de 8 compagnons
- plomberie : 3 plombiers chauffagistes
"""


def _text_of(pdf: bytes) -> str:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pypdf's notes about small defects it repairs
        reader = PdfReader(io.BytesIO(pdf))
        assert len(reader.pages) > 3
        text = "\n".join(page.extract_text() or "" for page in reader.pages)
    return re.sub(r"\s+", " ", text)


def test_groupement_from_notice_to_downloaded_dossier(journey: Journey, tmp_path: Path) -> None:
    j, page = journey, journey.page
    s = j.server.seeded

    # Firm A finds the notice and forms a groupement on its two lots.
    j.login(s.firm_a)
    page.get_by_role("link", name="Avis", exact=True).click()
    page.get_by_label("Mots-clés").fill("maison de santé Coulommiers")
    page.get_by_role("button", name="Rechercher").click()
    page.get_by_role("link", name=s.two_lot_notice_title).click()
    j.check_page("avis-deux-lots")
    page.get_by_role("link", name="Former un groupement sur cet avis").click()
    page.get_by_label("Nom du groupement").fill(NAME)
    page.get_by_role("checkbox", name=re.compile(r"^Lot 1")).check()
    page.get_by_role("checkbox", name=re.compile(r"^Lot 2")).check()
    page.get_by_role("radio", name="Groupement conjoint").check()
    page.get_by_role("checkbox", name=re.compile("mandataire solidaire")).check()
    page.get_by_role("radio", name="Sur invitation seulement").check()
    j.check_page("former-un-groupement")
    page.get_by_role("button", name="Créer le groupement").click()
    expect(page.get_by_role("heading", level=1)).to_have_text(NAME)
    consortium_url = page.url
    j.check_page("groupement-cree")

    # Tab « Partenaires »: B is suggested as covering the plumbing lot; A invites it.
    tabs = page.get_by_role("navigation", name="Espace du groupement")
    tabs.get_by_role("link", name="Partenaires").click()
    suggestion = page.locator("article.card", has=page.get_by_role("heading", name=re.compile(s.firm_b_name)))
    expect(suggestion).to_contain_text("Complète le groupement")
    suggestion.get_by_role("link", name="Voir sa fiche dans l'annuaire").click()
    expect(page.get_by_role("heading", level=1)).to_contain_text(s.firm_b_name)
    j.check_page("annuaire-fiche")
    page.go_back()
    suggestion.get_by_label("Message (facultatif)").fill("Bonjour, nous cherchons un plombier pour le lot 2.")
    j.check_page("partenaires-suggeres")
    suggestion.get_by_role("button", name=f"Inviter {s.firm_b_name}").click()
    expect(page.locator(".flash").first).to_contain_text(s.firm_b_name)
    j.logout()

    # B logs in, finds the invitation and accepts it.
    j.login(s.firm_b)
    page.get_by_role("link", name="Groupements").click()
    invitations = page.locator("section[aria-labelledby=titre-invitations]")
    expect(invitations).to_contain_text(f"invitation de {s.firm_a_name}")
    j.check_page("invitation-recue")
    invitations.get_by_role("link", name=NAME).click()
    expect(page.get_by_role("main")).to_contain_text("nous cherchons un plombier")
    page.get_by_label("Message au groupement (facultatif)").fill("Avec plaisir, nous prenons le lot 2.")
    j.check_page("fiche-invitation")
    page.get_by_role("button", name="Accepter et rejoindre").click()
    expect(page.get_by_role("heading", level=1)).to_have_text(NAME)
    expect(page.get_by_role("main")).to_contain_text(s.firm_b_name)
    j.logout()

    # A fills in the répartition (tab « Répartition »): lot 1 for A, lot 2 for B.
    j.login(s.firm_a)
    page.goto(consortium_url)
    tabs.get_by_role("link", name="Répartition").click()
    a, b = s.firm_a_name, s.firm_b_name
    plan = {  # lot: (offer, {member: (tasks, amount, share)})
        "1": ("780000", {a: ("Fondations, élévation, dalles", "780000", "100"), b: ("", "0", "0")}),
        "2": ("390000", {a: ("", "0", "0"), b: ("Réseaux d'eau, sanitaires", "390000", "100")}),
    }
    for lot, (offer, members) in plan.items():
        form = page.locator(f"section#lot-{lot} form")
        form.get_by_label("Montant de l'offre du groupement pour ce lot (€ HT)").fill(offer)
        for firm, (tasks, amount, share) in members.items():
            form.get_by_label(f"Prestations de {firm}").fill(tasks)
            form.get_by_label(f"Montant de {firm}").fill(amount)
            form.get_by_label(f"Part de {firm}").fill(share)
        form.get_by_role("button", name=f"Enregistrer lot {lot}").click()
        saved = page.locator(f"section#lot-{lot} form").get_by_label(f"Montant de {b}")
        expect(saved).to_have_value(re.compile(r"^(0|390000)(\.00)?$"))
    expect(page.locator(".flash-success").filter(has_text="La répartition est cohérente")).to_be_visible()
    j.check_page("repartition")

    # The mémoire: every section written and set « Prêt ».
    tabs.get_by_role("link", name="Mémoire technique").click()
    titles = page.locator("table tbody tr td:first-child a").all_inner_texts()
    assert len(titles) >= 3, titles
    for title in titles:
        page.get_by_role("link", name=title, exact=True).first.click()
        page.get_by_label("Texte (Markdown").fill(f"Section « {title} ».\n\n{MEMOIRE}")
        page.get_by_label("État").select_option(label="Prêt")
        page.get_by_role("button", name="Enregistrer").click()
        expect(page.locator(".flash-success")).to_contain_text("Section enregistrée")
        # Back on the mémoire, the section is rendered from its Markdown.
        rendered = page.locator("section.prose", has=page.get_by_role("heading", name=title))
        expect(rendered.locator("strong")).to_have_text("réunion hebdomadaire")
        expect(rendered.get_by_role("listitem")).to_have_count(2)
    expect(page.locator("table tbody")).not_to_contain_text("À rédiger")
    j.check_page("memoire")

    # Tab « Dossier de réponse »: the check passes; the page queues the build, the scheduler builds.
    tabs.get_by_role("link", name="Dossier de réponse").click()
    expect(page.locator("section[aria-labelledby=verification]")).to_contain_text("Tout est prêt")
    j.check_page("dossier-pret")
    page.get_by_role("button", name="Générer le dossier").click()
    expect(page.locator(".flash").first).to_contain_text("en cours de génération")
    # The page refreshes itself (meta refresh) until the version is built.
    link = page.get_by_role("link", name=re.compile(r"\.pdf$")).first
    expect(link).to_be_visible(timeout=120_000)
    expect(page.get_by_role("heading", name=re.compile("^Version 1"))).to_be_visible()
    j.check_page("dossier-genere")
    main = page.locator("li", has_text="Dossier complet (PDF)").get_by_role("link")
    with page.expect_download() as download_info:
        main.click()
    download = download_info.value
    assert download.suggested_filename.endswith(".pdf"), download.suggested_filename
    saved = tmp_path / download.suggested_filename
    download.save_as(saved)
    data = saved.read_bytes()
    assert data.startswith(b"%PDF-")
    text = _text_of(data)
    assert s.firm_a_name in text, text[:2000]
    assert s.firm_b_name in text, text[:2000]
    assert NAME in text
    assert "BROUILLON" not in text
