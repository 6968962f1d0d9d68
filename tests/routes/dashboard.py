"""Route expectations of the chambers' dashboard; see tests/test_route_matrix.py."""

from __future__ import annotations

from tests.routes import Case, only

STAFF = {"staff77": 200, "staff91": 200, "admin": 200}

ROUTES: dict[str, Case] = {
    # A cooperation dashboard: staff of either chamber see both chambers, like admins.
    "dashboard.overview": Case("GET", "/equipe/tableau-de-bord", only(STAFF)),
    "dashboard.export": Case("GET", "/equipe/tableau-de-bord.csv?periode=annee", only(STAFF)),
}
