"""Journey 2: chamber staff curate the shared pool of notices."""

from __future__ import annotations

import datetime as dt
import re

import pytest
from playwright.sync_api import Locator, Page, expect

from tests.browser import seed
from tests.browser.conftest import Journey

pytestmark = pytest.mark.browser

FEATURED = "Construction d'un centre technique municipal"
REJECTED = "Nettoyage des locaux administratifs"
TAGGED = (
    "Rénovation de la caserne de gendarmerie de DOULAINCOURT-SAUCOURT (52)",
    "Ravalement et isolation thermique",
)
ORIGINAL = "Remplacement des menuiseries extérieures de la mairie"
DUPLICATE = "Menuiseries extérieures de l'hôtel de ville de Nemours (remplacement)"


def _row(page: Page, title: str) -> Locator:
    link = page.get_by_role("link", name=re.compile("^" + re.escape(title)))
    return page.locator("article.notice-row", has=link)


def _notice_id(page: Page) -> int:
    match = re.search(r"/avis/(\d+)$", page.url)
    assert match, page.url
    return int(match.group(1))


def test_staff_feature_reject_tag_add_and_merge_notices(journey: Journey) -> None:
    j, page = journey, journey.page
    j.login(seed.STAFF77)
    page.get_by_role("navigation", name="Navigation principale").get_by_role("link", name="Curation").click()
    expect(page.get_by_role("heading", name="Curation des avis")).to_be_visible()
    page.get_by_role("link", name="Tous").click()
    j.check_page("file-de-curation")

    # Feature a notice for a groupement, with the reason shown to firms.
    page.get_by_role("link", name=FEATURED).click()
    page.get_by_label("Pourquoi cet avis se prête à un groupement").fill(
        "Gros œuvre, menuiseries et électricité : un groupement local a toutes ses chances."
    )
    page.get_by_role("button", name="Mettre en avant").click()
    expect(page.get_by_role("note")).to_contain_text("Mis en avant pour un groupement")
    expect(page.get_by_role("note")).to_contain_text("un groupement local a toutes ses chances")
    j.check_page("avis-mis-en-avant")

    # Reject another one, with a reason.
    page.get_by_role("link", name="Curation").first.click()
    page.get_by_role("link", name="Tous").click()
    page.get_by_role("link", name=REJECTED).click()
    page.get_by_label("Motif du rejet").fill("Hors du champ des entreprises adhérentes (nettoyage).")
    page.get_by_role("button", name="Rejeter").click()
    expect(page.locator(".flash-error").first).to_contain_text("Rejeté par la")
    expect(page.get_by_role("button", name="Remettre dans le fonds commun")).to_be_visible()

    # Bulk tag two notices from the queue.
    page.get_by_role("link", name="Curation").first.click()
    page.get_by_role("link", name="Tous").click()
    for title in TAGGED:
        _row(page, title).get_by_role("checkbox").check()
    page.get_by_role("radio", name="Étiqueter").check()
    page.get_by_label("Secteurs (étiquetage").fill("bâtiment, rénovation énergétique")
    page.get_by_role("button", name="Appliquer à la sélection").click()
    expect(page.locator(".flash-success")).to_contain_text("2 avis traités")
    page.get_by_role("link", name="Tous").click()
    for title in TAGGED:
        tags = _row(page, title).locator("xpath=following-sibling::p[contains(@class,'tags')][1]")
        expect(tags).to_contain_text("bâtiment")
        expect(tags).to_contain_text("rénovation énergétique")
    page.get_by_role("link", name="Mis en avant").click()
    expect(page.get_by_role("main")).to_contain_text(FEATURED)
    page.get_by_role("link", name="Rejetés").click()
    expect(page.get_by_role("main")).to_contain_text(REJECTED)
    j.check_page("file-rejetes")

    # A notice found elsewhere, added by hand; it turns out to duplicate a collected one.
    page.get_by_role("link", name="Tous").click()
    page.get_by_role("link", name=ORIGINAL).click()
    original_id = _notice_id(page)
    page.get_by_role("link", name="Curation").first.click()
    page.get_by_role("link", name="+ Ajouter un avis trouvé ailleurs").click()
    page.get_by_label("Adresse où l'avis a été trouvé").fill(
        "https://www.le-pays-briard.example/annonces/2026-1187"
    )
    page.get_by_label("Intitulé", exact=True).fill(DUPLICATE)
    page.get_by_label("Acheteur", exact=True).fill("Mairie de Nemours")
    page.get_by_label("Date limite de réponse").fill((dt.date.today() + dt.timedelta(days=20)).isoformat())
    page.get_by_label("Heure limite (heure de Paris)").fill("12:00")
    page.get_by_label("Montant estimé (€ HT)").fill("175000")
    page.get_by_label("Type de marché").select_option("works")
    page.get_by_label("Départements (séparés par des virgules)").fill("77")
    cpv = page.get_by_label("Codes CPV (séparés par des virgules)")
    cpv.press_sequentially("menuiserie", delay=20)
    option = page.get_by_role("option", name=re.compile(r"^45421000 "))
    option.click()
    expect(cpv).to_have_value("45421000, ")
    page.get_by_label("Description", exact=True).fill("Remplacement de 42 fenêtres bois (journal local).")
    j.check_page("avis-manuel-formulaire")
    page.get_by_role("button", name="Ajouter au fonds commun").click()
    expect(page.locator(".flash-success")).to_contain_text("Avis ajouté au fonds commun")
    expect(page.get_by_role("heading", level=1)).to_have_text(DUPLICATE)
    expect(page.get_by_role("main")).to_contain_text("Saisi par l'équipe des CCI")
    duplicate_id = _notice_id(page)

    # Merge the duplicate into the collected notice.
    j.goto(f"/avis/{original_id}")
    page.get_by_label("Fusionner dans cet avis l'avis n°").fill(str(duplicate_id))
    page.get_by_role("button", name="Fusionner").click()
    merged = f"L'avis n° {duplicate_id} est fusionné dans celui-ci"
    expect(page.locator(".flash-success")).to_contain_text(merged)
    expect(page.get_by_role("heading", level=1)).to_have_text(ORIGINAL)
    j.check_page("avis-fusionne")
    j.goto(f"/avis/{duplicate_id}")  # the merged notice leads to the survivor
    assert page.url.endswith(f"/avis/{original_id}"), page.url
    page.get_by_role("link", name="Curation").first.click()
    page.get_by_role("link", name="Tous").click()
    expect(page.get_by_role("link", name=DUPLICATE)).to_have_count(0)
