"""Expected status per role for every route, one module per area (all merged by test_route_matrix).

Whoever adds a view adds its expectation to the module of its area.
"""

from __future__ import annotations

from dataclasses import dataclass

ROLES = ("anonymous", "pending", "member", "owner", "staff77", "staff91", "admin")
ROLE_USER = {
    "pending": "pending_id",
    "member": "member_id",
    "owner": "owner_id",
    "staff77": "staff77_id",
    "staff91": "staff91_id",
    "admin": "admin_id",
}


@dataclass(frozen=True)
class Case:
    method: str
    path: str  # may use {firm_id}, {pending_firm_id}, {staff77_id}
    expect: dict[str, int]  # role -> status
    data: dict[str, str] | None = None


def everyone(status: int) -> dict[str, int]:
    return dict.fromkeys(ROLES, status)


def logged_in(status: int, anonymous: int = 302) -> dict[str, int]:
    return {**dict.fromkeys(ROLES, status), "anonymous": anonymous}


def only(allowed: dict[str, int], others: int = 403) -> dict[str, int]:
    return {**dict.fromkeys(ROLES, others), "anonymous": 302, **allowed}
