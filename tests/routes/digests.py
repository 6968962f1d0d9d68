"""Route expectations of the digests area; see tests/test_route_matrix.py."""

from __future__ import annotations

from tests.routes import ROLES, Case, everyone

# Digests are for the shared pool's users: approved firms' members, staff and admins.
MEMBERS = {**dict.fromkeys(ROLES, 200), "anonymous": 302, "pending": 302}

ROUTES: dict[str, Case] = {
    "digests.preferences": Case("GET", "/compte/resume", MEMBERS),
    "digests.preview": Case("GET", "/compte/resume/apercu", MEMBERS),
    # Public and login-free (the emailed link); its POST is the RFC 8058 one-click, exempt from
    # CSRF on purpose (the signed token authorises it), tested in tests/digests/test_web.py.
    "digests.unsubscribe": Case("GET", "/desabonnement/not-a-token", everyone(400)),
}
