"""Journey 1: a firm signs up, its chamber approves it, it completes its profile and finds a notice."""

from __future__ import annotations

import datetime as dt
import re
from urllib.parse import parse_qs, urlsplit

import icalendar
import pytest
import requests
from playwright.sync_api import expect

from tests.browser import seed
from tests.browser.conftest import Journey
from tests.factories import pdf_bytes

pytestmark = pytest.mark.browser

FIRM = "Couverture Zinguerie du Provinois"
OWNER = seed.Account("gerante@zinguerie-provinois.example")
NOTICE = "Réhabilitation de l'école élémentaire Jean Jaurès"  # a demo notice (tenderpool demo load)


def test_firm_signs_up_is_approved_completes_profile_and_follows_a_notice(journey: Journey) -> None:
    j, page = journey, journey.page

    # Sign-up with a SIRET (Luhn-valid) and a postcode of Seine-et-Marne.
    j.goto("/")
    j.check_page("accueil")
    page.get_by_role("link", name="Inscrire mon entreprise").first.click()
    expect(page.get_by_role("heading", name="Inscrire mon entreprise")).to_be_visible()
    j.check_page("inscription")
    page.get_by_label("SIRET de l'établissement").fill(seed.siret(7790))
    page.get_by_label("Raison sociale").fill(FIRM)
    page.get_by_label("Adresse", exact=True).fill("14 rue du Val")
    page.get_by_label("Code postal").fill("77160")
    page.get_by_label("Commune").fill("Provins")
    page.get_by_label("Vos prénom et nom").fill("Hélène Marchand")
    page.get_by_label("Votre adresse e-mail professionnelle").fill(OWNER.email)
    page.get_by_label("Mot de passe", exact=True).fill(OWNER.password)
    page.get_by_label("Confirmez le mot de passe").fill(OWNER.password)
    page.get_by_role("button", name="Envoyer mon inscription").click()
    expect(page).to_have_url(re.compile(r"/entreprise/en-attente$"))
    expect(page.get_by_role("main")).to_contain_text("CCI Seine-et-Marne")
    j.check_page("en-attente")
    j.logout()
    j.goto("/connexion")
    j.check_page("connexion")

    # Staff of the chamber approve it.
    j.login(seed.STAFF77)
    page.get_by_role("link", name="Inscriptions à valider").click()
    card = page.locator("article.card", has=page.get_by_role("heading", name=FIRM))
    expect(card).to_contain_text(seed.siret(7790))
    j.check_page("inscriptions-a-valider")
    card.get_by_role("button", name="Valider").click()
    expect(page.locator(".flash-success")).to_contain_text(f"{FIRM} est validée")
    j.logout()

    # The firm completes its profile: skills through the CPV picker, turnover, a document.
    j.login(OWNER)
    page.get_by_role("link", name="Profil et documents").click()
    j.check_page("profil-vide")
    page.get_by_role("link", name="Modifier les compétences").click()
    cpv = page.get_by_label("Codes CPV de vos métiers")
    cpv.fill("")
    cpv.press_sequentially("couverture", delay=20)
    suggestions = page.get_by_role("listbox")
    expect(suggestions).to_be_visible()
    option = suggestions.get_by_role("option", name=re.compile(r"^45261210 "))
    expect(option).to_be_visible()
    j.screenshot("selecteur-cpv")
    option.click()  # the picker writes the code, not the label
    expect(cpv).to_have_value(re.compile(r"^45261210, $"))
    cpv.press_sequentially("isolation de toiture", delay=20)
    expect(page.get_by_role("option", name=re.compile(r"^45261410 "))).to_be_visible()
    cpv.press("ArrowDown")  # the keyboard works too
    expect(page.get_by_role("option").first).to_have_attribute("aria-selected", "true")
    cpv.press("Enter")
    expect(cpv).to_have_value("45261210, 45261410, ")
    page.get_by_label("Mots-clés").fill("couverture, zinguerie, ardoise")
    page.get_by_role("button", name="Enregistrer").click()
    expect(page.locator(".flash-success")).to_contain_text("Compétences enregistrées")
    skills = page.locator("section#competences, section[aria-labelledby=competences]")
    expect(skills).to_contain_text("45261210")

    page.get_by_role("link", name="Modifier les capacités").click()
    year = dt.date.today().year - 1
    page.get_by_label(f"Chiffre d'affaires {year} (€ HT)").fill("860 000")
    page.get_by_label(f"Effectif moyen {year}").fill("7")
    j.check_page("capacites")
    page.get_by_role("button", name="Enregistrer").click()
    expect(page.locator(".flash-success")).to_contain_text("Capacités enregistrées")
    expect(page.locator("section[aria-labelledby=capacites]")).to_contain_text("860 000 € HT")

    page.get_by_role("link", name="Gérer les documents").click()
    page.get_by_label("Type de document").select_option("kbis")
    page.get_by_label("Fichier (PDF, PNG ou JPEG)").set_input_files(
        {"name": "kbis-zinguerie.pdf", "mimeType": "application/pdf", "buffer": pdf_bytes()}
    )
    page.get_by_label("Date de délivrance").fill((dt.date.today() - dt.timedelta(days=12)).isoformat())
    page.get_by_role("button", name="Déposer").click()
    expect(page.locator(".flash-success")).to_contain_text("enregistré")
    expect(page.locator("section[aria-labelledby=titre-liste]")).to_contain_text("Extrait Kbis")
    j.check_page("documents")

    # Search with filters (kept in the URL), open a notice, follow it.
    page.get_by_role("link", name="Avis", exact=True).click()
    page.get_by_label("Mots-clés").fill("réhabilitation")
    page.locator("details.filters summary").click()
    page.get_by_role("checkbox", name="Seine-et-Marne (77)").check()
    page.get_by_role("checkbox", name="Travaux").check()
    page.get_by_role("checkbox", name="Ouvert").check()
    page.get_by_role("button", name="Rechercher").click()
    query = parse_qs(urlsplit(page.url).query)
    assert query["q"] == ["réhabilitation"] and query["dep"] == ["77"], page.url
    assert query["type"] == ["works"] and query["status"] == ["open"], page.url
    results = page.locator("article.notice-row")
    expect(results.first).to_be_visible()
    titles = results.locator("h3").all_inner_texts()
    assert NOTICE in titles, titles
    assert not any("Espaces verts" in t or "informatique" in t for t in titles), titles
    j.check_page("recherche-filtres")
    page.get_by_role("link", name=NOTICE).click()
    expect(page.get_by_role("heading", level=1)).to_have_text(NOTICE)
    page.get_by_role("button", name="Suivre cet avis").click()
    expect(page.get_by_role("button", name="Ne plus suivre")).to_be_visible()
    j.check_page("avis-suivi")
    page.get_by_role("link", name="Suivis").click()
    expect(page.get_by_role("main")).to_contain_text(NOTICE)
    j.check_page("suivis")

    # The ICS feed of followed deadlines, fetched like a calendar application (no cookies).
    page.get_by_role("link", name="Mon compte").click()
    page.get_by_role("button", name="Créer mon lien de calendrier").click()
    feed = page.get_by_label("Lien de votre calendrier").input_value()
    assert feed.startswith(j.server.url + "/calendrier/") and feed.endswith(".ics"), feed
    expect(page.get_by_role("link", name="S'abonner dans mon agenda")).to_have_attribute(
        "href", "webcal://" + feed.split("://", 1)[1]
    )
    j.check_page("compte-calendrier")
    response = requests.get(feed, timeout=10)
    assert response.status_code == 200 and response.headers["Content-Type"].startswith("text/calendar")
    calendar = icalendar.Calendar.from_ical(response.content)
    events = [str(e.get("SUMMARY")) for e in calendar.walk("VEVENT")]
    assert any(NOTICE in e for e in events), events
