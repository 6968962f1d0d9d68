"""Route expectations of the dossiers area (a consortium's response dossier).

``{consortium_id}`` is the matrix's seed consortium: the seed firm of the 77 ({firm_id}) is its
mandataire, so the seed firm's owner and member are members, staff of the 77 follow it, staff of
the 91 do not see that it exists (404, never 403). File ids that do not exist answer 404 to
those who may see the consortium.
"""

from __future__ import annotations

from tests.routes import Case, only

# Access.MEMBER, then the workspace rule: a pending firm goes to its waiting page.
SEE = only({"member": 200, "owner": 200, "staff77": 200, "admin": 200, "pending": 302, "staff91": 404})
QUEUE = only({"member": 302, "owner": 302, "staff77": 302, "admin": 302, "pending": 302, "staff91": 404})
MISSING = only({"member": 404, "owner": 404, "staff77": 404, "admin": 404, "pending": 302, "staff91": 404})

ROUTES: dict[str, Case] = {
    "dossiers.dossier_page": Case("GET", "/groupements/{consortium_id}/dossier", SEE),
    "dossiers.generate": Case("POST", "/groupements/{consortium_id}/dossier/generer", QUEUE),
    "dossiers.download": Case("GET", "/groupements/{consortium_id}/dossier/fichiers/999999", MISSING),
}
