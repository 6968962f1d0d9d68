"""Journey 4: the digest preview, then unsubscribing through the link of the emailed digest."""

from __future__ import annotations

import email
import email.policy
import re

import pytest
from playwright.sync_api import expect

from tests.browser import seed
from tests.browser.conftest import Journey

pytestmark = pytest.mark.browser


def test_digest_preview_then_unsubscribe_from_the_email_link(journey: Journey) -> None:
    j, page = journey, journey.page
    owner = seed.DEMO_OWNER  # Bâtiments Briards (demo firm: skills, zone, saved search)

    # Preferences: daily, at midnight, so that today's digest is due whatever the time.
    j.login(owner)
    j.goto("/compte/resume")
    page.get_by_role("radio", name="Chaque jour").check()
    page.get_by_label("Heure d'envoi (heure de Paris)").select_option("0")
    page.get_by_role("button", name="Enregistrer").click()
    expect(page.locator(".flash-success")).to_be_visible()
    j.check_page("preferences-resume")

    # The preview: what the digest would hold now (nothing is recorded or sent).
    page.get_by_role("link", name="Voir le résumé que je recevrais maintenant").click()
    main = page.get_by_role("main")
    expect(main).to_contain_text("Réhabilitation de l'école élémentaire Jean Jaurès")
    j.check_page("apercu-resume")
    assert j.server.outbox_for(owner.email) == []

    # The digest goes out (`tenderpool digests send`, as cron or the scheduler would) to the outbox.
    sent = j.server.cli("digests", "send", "--user", owner.email)
    assert "Envoyés : 1" in sent.stdout, sent.stdout
    messages = j.server.outbox_for(owner.email)
    assert len(messages) == 1
    message = email.message_from_bytes(messages[0].read_bytes(), policy=email.policy.default)
    assert "Réhabilitation de l'école élémentaire Jean Jaurès" in message.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    header = message["List-Unsubscribe"]
    link = re.search(r"<(http://[^>]+/desabonnement/[^>]+)>", header)
    assert link and link.group(1).startswith(j.server.url), header
    assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    j.logout()

    # The reader opens the HTML digest and follows « Ne plus recevoir ce résumé » (not logged in).
    html = message.get_body(("html",)).get_content()  # type: ignore[union-attr]
    page.set_content(html)
    j.screenshot("courriel-resume")
    unsubscribe = page.get_by_role("link", name="Ne plus recevoir ce résumé")
    assert unsubscribe.get_attribute("href") == link.group(1)
    unsubscribe.click()
    expect(page.get_by_role("heading", name="Désabonnement du résumé")).to_be_visible()
    expect(page.get_by_role("main")).to_contain_text(f"Ne plus envoyer le résumé des avis à {owner.email}")
    j.check_page("desabonnement-confirmation")
    page.get_by_role("button", name="Me désabonner").click()
    done = f"C'est fait : {owner.email} ne recevra plus le résumé"
    expect(page.locator(".flash-success")).to_contain_text(done)
    j.check_page("desabonnement-fait", phone=True)

    # The preferences now say « Jamais », and no further digest is sent.
    j.login(owner)
    j.goto("/compte/resume")
    expect(page.get_by_role("radio", name="Jamais (désabonné)")).to_be_checked()
    again = j.server.cli("digests", "send", "--user", owner.email)
    assert "Envoyés : 0" in again.stdout, again.stdout
    assert len(j.server.outbox_for(owner.email)) == 1
