"""Cross-site scripting, checked in the real browser: injected text is shown, never run.

Payloads (tests/browser/seed.py: <script>, event handlers, <svg onload>, an iframe srcdoc,
javascript: URLs; each would set ``window.__xss`` and open an alert) go into every text field
that is displayed again — the firm name (sign-up and identity), a notice edited by staff, the
mémoire's Markdown, the consortium's messages, the search box reflected in the results page —
and come from a source: a BOAMP record whose HTML description is laced with them, imported by
`tenderpool import` before the server starts (conftest.py). Then every page that shows them is
opened twice: as users get it, Content-Security-Policy in force, and once more with the CSP
bypassed, so that the escaping and the sanitising are proven on their own, not only the CSP.
On each page: no dialog opened, ``window.__xss`` unset, and nothing in the DOM that could run
(no on* attribute, no javascript: URL, no script or srcdoc carrying the payload).
"""

from __future__ import annotations

import re
from urllib.parse import quote

import pytest
from playwright.sync_api import Page, expect

from tests.browser import seed
from tests.browser.conftest import Journey

pytestmark = pytest.mark.browser

PAYLOAD = seed.XSS_TEXT
SIGNUP_NAME = "Zinc <img src=x onerror=window.__xss=1;alert(1)> & Fils"
MARKDOWN = f"""## Sécurité <script>{seed.XSS_SIGNAL}</script>

Texte **gras** <img src=x onerror="{seed.XSS_SIGNAL}"> et <svg onload={seed.XSS_SIGNAL}></svg>.

- [lien piégé](javascript:{seed.XSS_SIGNAL})
- [lien encodé](jav&#x61;script:{seed.XSS_SIGNAL})
- ![image](javascript:{seed.XSS_SIGNAL})
- <a href="javascript:{seed.XSS_SIGNAL}">ancre HTML</a>

<iframe srcdoc="<script>parent.{seed.XSS_SIGNAL}</script>"></iframe>
<details open ontoggle="{seed.XSS_SIGNAL}"><summary>déplier</summary></details>
"""

INERT = """() => {
  const URL_ATTRIBUTES = ['href', 'src', 'action', 'formaction', 'data', 'xlink:href'];
  const found = [];
  if (window.__xss !== undefined) found.push('window.__xss is set');
  for (const el of document.querySelectorAll('*')) {
    for (const attr of el.attributes) {
      const name = attr.name.toLowerCase();
      const value = attr.value.replace(/[\\s\\u0000-\\u001f]/g, '').toLowerCase();
      if (name.startsWith('on')) found.push(`${el.tagName} has ${name}`);
      if (URL_ATTRIBUTES.includes(name) && value.startsWith('javascript:'))
        found.push(`${el.tagName} ${name}=${attr.value}`);
      if (name === 'srcdoc') found.push(`${el.tagName} has srcdoc`);
    }
    if (el.tagName === 'SCRIPT' && el.textContent.includes('__xss')) found.push('a script has the payload');
  }
  return found;
}"""


def _assert_inert(page: Page, where: str) -> None:
    page.wait_for_timeout(150)  # onerror, onload and SVG animations fire just after the load event
    found = page.evaluate(INERT)
    assert not found, f"{where}: {found}"


def _visit(j: Journey, path: str, *, shows: str | None = None) -> None:
    """Open ``path`` with the CSP in force and again without it; nothing may run in either."""
    response = j.page.goto(j.url(path))
    assert response is not None and response.status == 200, f"{path}: {response and response.status}"
    if shows is not None:
        expect(j.page.get_by_role("main")).to_contain_text(shows)  # shown as text, not dropped
    _assert_inert(j.page, path)
    bare = j.side_page("nocsp")
    response = bare.goto(j.url(path))
    assert response is not None and response.status == 200
    _assert_inert(bare, path + " (CSP bypassed)")


def test_injected_text_never_runs_in_the_browser(journey: Journey) -> None:
    j, page = journey, journey.page
    s = j.server.seeded
    source_notice = j.server.xss_notice_id

    # The source payload (BOAMP HTML description): its harmless formatting is kept.
    j.login(s.xss_firm)
    _visit(j, f"/avis/{source_notice}", shows="Réfection complète des toitures.")
    description = page.locator("section[aria-labelledby=titre-description] .prose")
    expect(description).to_contain_text("Règlement de consultation")
    expect(description.locator("script, img, svg, iframe, form")).to_have_count(0)
    expect(page.get_by_role("heading", level=1)).to_contain_text("<img src=x onerror=")
    # Its javascript: links (buyer profile, notice address) are dropped, not turned into buttons.
    expect(page.get_by_role("link", name="Dossier de consultation (DCE)")).to_have_count(0)
    expect(page.get_by_role("link", name="Voir l'avis à la source")).to_have_count(0)
    j.check_page("xss-avis-source", phone=False)

    # The search box, reflected in the page (typed, then through the URL).
    page.get_by_role("link", name="Avis", exact=True).click()
    page.get_by_label("Mots-clés").fill(PAYLOAD)
    page.get_by_role("button", name="Rechercher").click()
    expect(page.get_by_label("Mots-clés")).to_have_value(PAYLOAD)
    _assert_inert(page, "search results")
    _visit(j, "/avis?q=" + quote(PAYLOAD), shows=f"pour « {PAYLOAD} »")
    _visit(j, "/avis?q=" + quote("Réfection des toitures"), shows="<img src=x onerror=")

    # The firm's name, changed on the identity page.
    j.goto("/entreprise/profil/identite")
    page.get_by_label("Raison sociale").fill(f"Atelier {PAYLOAD}")
    page.get_by_role("button", name="Enregistrer").click()
    expect(page.locator(".flash-success")).to_contain_text("Identité enregistrée")

    # The groupement's discussion and mémoire.
    consortium = f"/groupements/{s.xss_consortium_id}"
    j.goto(consortium + "/discussion")
    message = f"Message {PAYLOAD}\n\n**gras** [x](javascript:{seed.XSS_SIGNAL})"
    page.get_by_label("Votre message").fill(message)
    page.get_by_role("button", name="Envoyer").click()
    expect(page.get_by_role("main")).to_contain_text("Message Test <script>")
    _assert_inert(page, "discussion after posting")
    j.goto(consortium + "/memoire")
    page.locator("table tbody tr td:first-child a").first.click()
    page.get_by_label("Titre", exact=True).fill(f"Section {PAYLOAD}"[:200])
    page.get_by_label("Texte (Markdown").fill(MARKDOWN)
    page.get_by_role("button", name="Enregistrer").click()
    expect(page.locator(".flash-success")).to_contain_text("Section enregistrée")
    section = page.url.split("#")[0]
    rendered = page.locator("section.prose").filter(has_text="lien piégé")
    expect(rendered.locator("strong")).to_have_text("gras")  # the Markdown is rendered...
    expect(rendered.locator("script, img, svg, iframe")).to_have_count(0)  # ...the HTML is not
    firm_name = "Atelier Test <script>"
    for path, shows in (
        ("/entreprise/profil", firm_name),
        ("/entreprise", firm_name),
        (consortium, firm_name),
        (consortium + "/discussion", "Message Test <script>"),
        (consortium + "/memoire", "Section Test <script>"),
        (consortium + "/partenaires", None),
        (consortium + "/repartition", firm_name),
        (consortium + "/dossier", "Section Test <script>"),
        ("/groupements", firm_name),
    ):
        _visit(j, path, shows=shows)
    _visit(j, section.removeprefix(j.server.url))
    j.check_page("xss-memoire", phone=False)
    j.logout()

    # A firm signing up with a payload in its name, as chamber staff see it.
    j.goto("/inscription")
    page.get_by_label("SIRET de l'établissement").fill(seed.siret(7791))
    page.get_by_label("Raison sociale").fill(SIGNUP_NAME)
    page.get_by_label("Adresse", exact=True).fill(f"1 rue {seed.XSS_PAYLOADS[1]}")
    page.get_by_label("Code postal").fill("77300")
    page.get_by_label("Commune").fill("Fontainebleau")
    page.get_by_label("Vos prénom et nom").fill(f"Jean {seed.XSS_PAYLOADS[0]}")
    page.get_by_label("Votre adresse e-mail professionnelle").fill("zinc@fils.example")
    page.get_by_label("Mot de passe", exact=True).fill(seed.PASSWORD)
    page.get_by_label("Confirmez le mot de passe").fill(seed.PASSWORD)
    page.get_by_role("button", name="Envoyer mon inscription").click()
    expect(page).to_have_url(re.compile(r"/entreprise/en-attente$"))
    _visit(j, "/entreprise/en-attente")
    j.logout()

    # Staff edit a notice with payloads, then look at everything as staff.
    j.login(seed.STAFF77)
    j.goto(f"/equipe/avis/{s.xss_notice_id}/modifier")
    page.get_by_label("Intitulé", exact=True).fill(f"Conservatoire {PAYLOAD}")
    page.get_by_label("Acheteur", exact=True).fill(f"Commune {seed.XSS_PAYLOADS[1]}")
    page.get_by_label("Description", exact=True).fill(
        f"<p>Description</p>{''.join(seed.XSS_PAYLOADS[:4])}<a href='javascript:{seed.XSS_SIGNAL}'>lien</a>"
    )
    # A link that passes a plain URL check (a host, a path) yet runs as a javascript: URL: refused.
    page.get_by_label("Lien vers le DCE").fill(f"javascript://example.com/%0a{seed.XSS_SIGNAL}")
    page.get_by_role("button", name="Enregistrer").click()
    expect(page.locator("#dce_url-err")).to_contain_text("Adresse invalide")
    _assert_inert(page, "notice edit refused")
    page.get_by_label("Lien vers le DCE").fill("https://marches.fontainebleau.example/dce/2026-14")
    page.get_by_role("button", name="Enregistrer").click()
    expect(page.get_by_role("heading", level=1)).to_contain_text("Conservatoire Test <script>")
    _assert_inert(page, "notice after the edit")
    for path, shows in (
        ("/equipe/entreprises", SIGNUP_NAME),
        (f"/avis/{s.xss_notice_id}", "Conservatoire Test <script>"),
        (f"/avis/{source_notice}", "Réfection complète des toitures."),
        ("/equipe/avis?etat=all", "Conservatoire Test <script>"),
        ("/avis?q=" + quote("conservatoire"), "Conservatoire Test <script>"),
        ("/avis?q=" + quote(PAYLOAD), None),
        (consortium, "Atelier Test <script>"),
        (consortium + "/discussion", "Message Test <script>"),
        (consortium + "/memoire", "lien piégé"),
        ("/groupements", "Conservatoire Test <script>"),
    ):
        _visit(j, path, shows=shows)
    j.check_page("xss-inscriptions", phone=False)
    j.logout()

    # And the firm sees the edited notice where it shows up for it.
    j.login(s.xss_firm)
    for path in (f"/avis/{s.xss_notice_id}", "/avis", consortium, consortium + "/memoire"):
        _visit(j, path, shows="Conservatoire Test <script>")


def test_the_probe_sees_a_payload_that_runs(journey: Journey) -> None:
    """The checks above would catch a payload that got through: here one is put in a page on purpose."""
    bare = journey.side_page("nocsp")
    payload = f"<img src=x onerror=\"{seed.XSS_SIGNAL}\"><a href='javascript:void(0)'>x</a>"
    bare.set_content(f"<p>avant</p>{payload}")
    with pytest.raises(AssertionError, match=r"window.__xss is set.*IMG has onerror.*A href=javascript:"):
        _assert_inert(bare, "probe")
    assert journey.dialogs and journey.dialogs[0].startswith("alert: 1")
    journey.dialogs.clear()  # expected here; any other test fails on a dialog
