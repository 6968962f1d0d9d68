"""Route expectations of the notices area (browse, notice page, following, curation)."""

from __future__ import annotations

from tests.routes import ROLES, Case, logged_in, only

STAFF = {"staff77": 200, "staff91": 200, "admin": 200}
STAFF_REDIRECT = {"staff77": 302, "staff91": 302, "admin": 302}
# The shared pool: approved firms' members, staff and admins; a pending firm is sent to its waiting page.
MEMBERS = {**dict.fromkeys(ROLES, 200), "anonymous": 302, "pending": 302}
MEMBERS_REDIRECT = {**dict.fromkeys(ROLES, 302)}
FIRMS_ONLY = only({"member": 302, "owner": 302, "pending": 302})

ROUTES: dict[str, Case] = {
    "notices.browse": Case("GET", "/avis?q=gendarmerie&dep=77", MEMBERS),
    "notices.detail": Case("GET", "/avis/{notice_id}", MEMBERS),
    "notices.follow": Case("POST", "/avis/{notice_id}/suivre", MEMBERS_REDIRECT),
    "notices.unfollow": Case("POST", "/avis/{notice_id}/ne-plus-suivre", MEMBERS_REDIRECT),
    "notices.dismiss": Case(
        "POST", "/avis/{notice_id}/pas-interesse", FIRMS_ONLY, data={"reason": "too_far"}
    ),
    "notices.undismiss": Case("POST", "/avis/{notice_id}/interesse", FIRMS_ONLY),
    "notices.watchlist": Case("GET", "/suivis", MEMBERS),
    "notices.saved_searches": Case("GET", "/recherches", MEMBERS),
    "notices.save_search": Case(
        "POST", "/recherches", MEMBERS_REDIRECT, data={"name": "Travaux 77", "query": "dep=77&type=works"}
    ),
    "notices.delete_saved_search": Case(
        "POST",
        "/recherches/999999/supprimer",
        {**MEMBERS, **dict.fromkeys(("member", "owner", "staff77", "staff91", "admin"), 404)},
    ),
    "notices.cpv_lookup": Case("GET", "/cpv?q=beton", logged_in(200)),
    # staff curation
    "notices.queue": Case("GET", "/equipe/avis", only(STAFF)),
    "notices.bulk": Case(
        "POST",
        "/equipe/avis/actions",
        only(STAFF_REDIRECT),
        data={"action": "tag", "tags": "BTP", "ids": "{notice_id}"},
    ),
    "notices.curate": Case(
        "POST",
        "/equipe/avis/{notice_id}/feature",
        only(STAFF_REDIRECT),
        data={"note": "Quatre lots complémentaires, idéal pour un groupement."},
    ),
    "notices.edit": Case("GET", "/equipe/avis/{notice_id}/modifier", only(STAFF)),
    "notices.resolve_conflict": Case(
        "POST", "/equipe/avis/{notice_id}/conflit/title", only(dict.fromkeys(STAFF, 404))
    ),
    "notices.merge": Case(
        "POST", "/equipe/avis/{notice_id}/fusionner", only(STAFF_REDIRECT), data={"duplicate_id": "999999"}
    ),
    "notices.split": Case("POST", "/equipe/avis/{notice_id}/scinder/{publication_id}", only(STAFF_REDIRECT)),
    "notices.create_manual": Case("GET", "/equipe/avis/nouveau", only(STAFF)),
    "notices.quarantine": Case("GET", "/equipe/quarantaine", only(STAFF)),
    "notices.quarantine_detail": Case("GET", "/equipe/quarantaine/{publication_id}", only(STAFF)),
    "notices.retry_quarantine": Case("POST", "/equipe/quarantaine/reessayer", only(STAFF_REDIRECT)),
    "notices.runs": Case("GET", "/equipe/collectes", only(STAFF)),
}
