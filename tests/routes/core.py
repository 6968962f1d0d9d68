"""Route expectations of the foundation (accounts, firms, main); see tests/test_route_matrix.py."""

from __future__ import annotations

from tests.routes import Case, everyone, logged_in, only

STAFF_OK = {"staff77": 200, "staff91": 200, "admin": 200}
FIRM_PENDING_REDIRECT = {"pending": 302}

ROUTES: dict[str, Case] = {
    "static": Case("GET", "/static/css/app.css", everyone(200)),
    "main.home": Case("GET", "/", everyone(200)),
    # 503: no scheduler has ever run on the test database (tests/test_ops.py covers the 200).
    "main.healthz": Case("GET", "/healthz", everyone(503)),
    # accounts
    "accounts.login": Case("GET", "/connexion", {**everyone(302), "anonymous": 200}),
    "accounts.logout": Case("POST", "/deconnexion", everyone(302)),
    "accounts.forgot_password": Case("GET", "/mot-de-passe/oublie", everyone(200)),
    "accounts.reset_password": Case("GET", "/mot-de-passe/reinitialiser/not-a-token", everyone(400)),
    "accounts.account": Case("GET", "/compte", logged_in(200)),
    "accounts.change_password": Case("GET", "/compte/mot-de-passe", logged_in(200)),
    "accounts.users": Case("GET", "/admin/utilisateurs", only({"admin": 200})),
    "accounts.user_detail": Case("GET", "/admin/utilisateurs/{staff77_id}", only({"admin": 200})),
    "accounts.audit_log": Case("GET", "/admin/journal", only({"admin": 200})),
    # firms
    "firms.signup": Case("GET", "/inscription", {**everyone(302), "anonymous": 200}),
    "firms.pending": Case("GET", "/entreprise/en-attente", {**logged_in(302), "pending": 200}),
    "firms.my_firm": Case("GET", "/entreprise", only({"member": 200, "owner": 200, **FIRM_PENDING_REDIRECT})),
    "firms.invite": Case(
        "POST",
        "/entreprise/inviter",
        only({"owner": 302, **FIRM_PENDING_REDIRECT}),
        data={"email": "nouveau.collegue@example.com"},
    ),
    "firms.revoke_invitation": Case(
        "POST", "/entreprise/invitations/999999/retirer", only({"owner": 404, **FIRM_PENDING_REDIRECT})
    ),
    "firms.accept_invitation": Case("GET", "/invitation/not-a-token", {**everyone(302), "anonymous": 400}),
    "firms.approval_queue": Case("GET", "/equipe/entreprises", only(STAFF_OK)),
    # The pending firm is in 91: staff of 77 cannot see it at all.
    "firms.approve": Case(
        "POST",
        "/equipe/entreprises/{pending_firm_id}/valider",
        only({"staff77": 404, "staff91": 302, "admin": 302}),
    ),
    "firms.refuse": Case(
        "POST",
        "/equipe/entreprises/{pending_firm_id}/refuser",
        only({"staff77": 404, "staff91": 302, "admin": 302}),
        data={"reason": "SIRET fermé au répertoire Sirene"},
    ),
}
