"""Route expectations of the profiles area (firm profile, documents, partner directory).

The seed firm ({firm_id}, département 77) is approved and not listed in the directory; its
owner and member belong to it. Object routes use ids that do not exist (404 for those who may
reach them).
"""

from __future__ import annotations

from tests.routes import ROLES, Case, logged_in, only

# Pages of the firm's own profile: members of an approved firm; a pending firm goes to its waiting page.
FIRM = only({"member": 200, "owner": 200, "pending": 302})
FIRM_MISSING = only({"member": 404, "owner": 404, "pending": 302})
# The shared area: approved firms' members, staff and admins.
MEMBERS = {**dict.fromkeys(ROLES, 200), "anonymous": 302, "pending": 302}

ROUTES: dict[str, Case] = {
    "profiles.profile_page": Case("GET", "/entreprise/profil", FIRM),
    "profiles.identity": Case("GET", "/entreprise/profil/identite", FIRM),
    "profiles.skills": Case("GET", "/entreprise/profil/competences", FIRM),
    "profiles.capacities": Case("GET", "/entreprise/profil/capacites", FIRM),
    "profiles.new_reference": Case("GET", "/entreprise/profil/references/nouvelle", FIRM),
    "profiles.edit_reference": Case("GET", "/entreprise/profil/references/999999", FIRM_MISSING),
    "profiles.delete_reference": Case("POST", "/entreprise/profil/references/999999/supprimer", FIRM_MISSING),
    "profiles.new_certification": Case("GET", "/entreprise/profil/certifications/nouvelle", FIRM),
    "profiles.edit_certification": Case("GET", "/entreprise/profil/certifications/999999", FIRM_MISSING),
    "profiles.delete_certification": Case(
        "POST", "/entreprise/profil/certifications/999999/supprimer", FIRM_MISSING
    ),
    "profiles.documents_page": Case("GET", "/entreprise/profil/documents", FIRM),
    "profiles.delete_document": Case("POST", "/entreprise/profil/documents/999999/supprimer", FIRM_MISSING),
    # Every logged-in role reaches the view, which answers 404 for a document it may not read.
    "profiles.download_document": Case("GET", "/documents/999999", logged_in(404)),
    "profiles.directory_settings": Case("GET", "/entreprise/profil/annuaire", FIRM),
    # Only the owner decides what the directory shows.
    "profiles.save_directory_settings": Case(
        "POST",
        "/entreprise/profil/annuaire",
        only({"owner": 302, "pending": 302}),
        data={"opt_in": "", "parts": "skills"},
    ),
    # Staff of the firm's chamber (77) and admins; staff of another chamber do not see it exists.
    "profiles.staff_profile": Case(
        "GET", "/equipe/entreprises/{firm_id}/profil", only({"staff77": 200, "staff91": 404, "admin": 200})
    ),
    "profiles.directory": Case("GET", "/annuaire?q=maconnerie&dep=77&cpv=45000000", MEMBERS),
    # The seed firm is not listed: only its own members see the page (as a preview).
    "profiles.directory_firm": Case(
        "GET",
        "/annuaire/{firm_id}",
        {**MEMBERS, "staff77": 404, "staff91": 404, "admin": 404},
    ),
}
