"""Route expectations of the api area (public JSON API and calendar feeds); see tests/test_route_matrix.py."""

from __future__ import annotations

from tests.routes import Case, everyone, logged_in

ROUTES: dict[str, Case] = {
    "api.list_notices": Case("GET", "/api/v1/notices", everyone(200)),
    "api.get_notice": Case("GET", "/api/v1/notices/{notice_id}", everyone(200)),
    "api.openapi": Case("GET", "/api/v1/openapi.json", everyone(200)),
    # The token is the credential; the matrix cannot know a real one, and a wrong one is 404 for all.
    "feeds.calendar": Case("GET", "/calendrier/not-a-real-token.ics", everyone(404)),
    "feeds.regenerate_token": Case("POST", "/compte/calendrier/regenerer", logged_in(302)),
}
