"""Route expectations of the operations area; see tests/test_route_matrix.py."""

from __future__ import annotations

from tests.routes import Case, only

ROUTES: dict[str, Case] = {
    # Staff and admins see the jobs; only admins ask for a run (queued for the scheduler).
    "ops.overview": Case("GET", "/equipe/operations", only({"staff77": 200, "staff91": 200, "admin": 200})),
    "ops.run_now": Case("POST", "/equipe/operations/heartbeat/lancer", only({"admin": 302})),
}
