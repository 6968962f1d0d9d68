"""Route expectations of the notices area; see tests/test_route_matrix.py."""

from __future__ import annotations

from tests.routes import Case

ROUTES: dict[str, Case] = {}
