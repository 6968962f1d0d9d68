"""Route expectations of the consortia area; see tests/test_route_matrix.py.

Membership is a further dimension: the seed firm (roles "member" and "owner") is the
mandataire of the seed consortium, made of 77 firms only, so staff of 91 get 404 and staff
of 77 see it. ``OUTSIDER`` below gives, for an approved firm outside the groupement, the
status of every route (tested in test_route_matrix.test_consortium_outsider).
"""

from __future__ import annotations

from tests.routes import Case

C = "/groupements/{consortium_id}"

# Pages of the workspace: members' users, staff of the members' chambers, admins.
SEEN = {
    "anonymous": 302,
    "pending": 302,
    "member": 200,
    "owner": 200,
    "staff77": 200,
    "staff91": 404,
    "admin": 200,
}
# Acts in a firm's name: firm users only; staff and admins help but never act for a firm.
ACT = {
    "anonymous": 302,
    "pending": 302,
    "member": 302,
    "owner": 302,
    "staff77": 403,
    "staff91": 403,
    "admin": 403,
}
FIRM_PAGE = {**ACT, "member": 200, "owner": 200}
FIRM_404 = {**ACT, "member": 404, "owner": 404}  # a firm act that does not apply to a member
STAFF_ACT = {
    "anonymous": 302,
    "pending": 403,
    "member": 403,
    "owner": 403,
    "staff77": 302,
    "staff91": 404,
    "admin": 302,
}

ROUTES: dict[str, Case] = {
    "consortia.index": Case("GET", "/groupements", {**SEEN, "staff91": 200}),
    "consortia.create": Case("GET", "/avis/{consortium_notice_id}/groupement", FIRM_PAGE),
    "consortia.workspace": Case("GET", C, SEEN),
    "consortia.settings": Case("GET", C + "/parametres", FIRM_PAGE),
    "consortia.partners": Case("GET", C + "/partenaires", SEEN),
    "consortia.repartition": Case("GET", C + "/repartition", SEEN),
    "consortia.discussion": Case("GET", C + "/discussion", SEEN),
    "consortia.documents": Case("GET", C + "/documents", SEEN),
    "consortia.document_download": Case("GET", C + "/documents/{version_id}", SEEN),
    "consortia.memoire": Case("GET", C + "/memoire", SEEN),
    "consortia.section": Case("GET", C + "/memoire/{section_id}", SEEN),
    "consortia.invitation": Case("GET", "/groupements/invitation/not-a-token", dict.fromkeys(SEEN, 400)),
    "consortia.invite": Case("POST", C + "/inviter", ACT, {"firm_id": "{outsider_firm_id}"}),
    "consortia.invite_email": Case(
        "POST", C + "/inviter-par-courriel", ACT, {"email": "nouvelle@example.com"}
    ),
    "consortia.answer": Case("POST", C + "/reponse", FIRM_404, {"decision": "accept"}),
    "consortia.request_join": Case("POST", C + "/demande", FIRM_404),
    "consortia.decide": Case("POST", C + "/demandes/{invited_member_id}", FIRM_404, {"decision": "accept"}),
    "consortia.cancel_invite": Case("POST", C + "/invitations/{invited_member_id}/retirer", ACT),
    "consortia.leave": Case("POST", C + "/quitter", ACT),
    "consortia.mandate": Case("POST", C + "/mandataire", ACT, {"firm_id": "{outsider_firm_id}"}),
    "consortia.composition": Case("POST", C + "/composition", ACT, {"reason": "restructuring"}),
    "consortia.status": Case("POST", C + "/statut", ACT, {"action": "ready"}),
    "consortia.outcome": Case("POST", C + "/resultat", ACT, {"won": "0"}),
    "consortia.section_action": Case("POST", C + "/memoire/{section_id}/action", ACT, {"action": "down"}),
    "consortia.checklist_add": Case("POST", C + "/checklist", ACT, {"title": "Relire", "days_before": "2"}),
    "consortia.checklist_toggle": Case("POST", C + "/checklist/{item_id}", ACT),
    "consortia.facilitator": Case("POST", C + "/referent", STAFF_ACT, {"attach": "1"}),
    "consortia.multiple_bids": Case(
        "POST",
        "/avis/{consortium_notice_id}/offres-multiples",
        {**STAFF_ACT, "staff91": 302},  # one shared pool: any chamber records the rule
        {"forbidden": "1"},
    ),
    "consortia.solo_bid": Case("POST", "/avis/{consortium_notice_id}/candidature-seule", ACT, {"lots": "1"}),
}

# An approved firm outside the groupement (invitation only): nothing of it, not even its card.
OUTSIDER: dict[str, int] = {
    **{endpoint: 404 for endpoint in ROUTES},
    "consortia.index": 200,
    "consortia.create": 200,
    "consortia.invitation": 400,
    "consortia.solo_bid": 302,
    "consortia.facilitator": 403,
    "consortia.multiple_bids": 403,
}
