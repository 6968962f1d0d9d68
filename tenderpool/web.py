"""Request plumbing shared by every blueprint: the request session, access rules, helpers.

Every view declares who may use it with :func:`access`. The rule is enforced
once, in a ``before_request`` hook, so a view cannot forget its check, and
``create_app`` refuses to start if any endpoint has no declared rule.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from typing import Any, TypeVar, cast

from flask import abort, current_app, g, has_request_context, redirect, request, url_for
from flask_login import current_user
from sqlalchemy.orm import Session
from werkzeug.wrappers import Response

from tenderpool.config import Settings
from tenderpool.db import Database
from tenderpool.storage import LocalStorage, Storage, UploadSettings, upload_settings

F = TypeVar("F", bound=Callable[..., Any])


class Access(enum.StrEnum):
    PUBLIC = "public"  # anyone
    ANONYMOUS = "anonymous"  # only when logged out (login, sign-up): others are sent home
    USER = "user"  # any logged-in account, pending firms included
    MEMBER = "member"  # a member of an approved firm, chamber staff or an admin (the shared pool)
    FIRM = "firm"  # a member of an approved firm
    FIRM_OWNER = "firm_owner"  # the owner of an approved firm
    STAFF = "staff"  # chamber staff and admins
    ADMIN = "admin"


def access(rule: Access) -> Callable[[F], F]:
    """Declare who may call the decorated view."""

    def decorate(view: F) -> F:
        view.tenderpool_access = rule  # type: ignore[attr-defined]
        return view

    return decorate


def access_rule(endpoint: str) -> Access | None:
    view = current_app.view_functions.get(endpoint)
    rule = getattr(view, "tenderpool_access", None)
    return None if rule is None else Access(rule)


def settings() -> Settings:
    return cast(Settings, current_app.extensions["tenderpool.settings"])


def database() -> Database:
    return cast(Database, current_app.extensions["tenderpool.db"])


def db_session() -> Session:
    """The session of the current request (opened on first use, closed at teardown)."""
    if "db_session" not in g:
        g.db_session = database().session(reads=_reads_only())
    return cast(Session, g.db_session)


# Blueprints whose GET requests write on purpose: the public API counts each request for its rate
# limit (tests/security/test_get_is_safe.py lists every GET that writes).
WRITING_GETS = frozenset({"api"})


def _reads_only() -> bool:
    """Whether the current request only reads: a GET or HEAD (they change nothing, tested for
    every route), outside the blueprints that count their requests."""
    return (
        has_request_context() and request.method in ("GET", "HEAD") and request.blueprint not in WRITING_GETS
    )


def uploads() -> UploadSettings:
    """The validated ``[uploads]`` settings (checked once at start-up by ``create_app``)."""
    ext = current_app.extensions
    if "tenderpool.uploads" not in ext:
        ext["tenderpool.uploads"] = upload_settings(settings())
    value: UploadSettings = ext["tenderpool.uploads"]
    return value


def storage() -> Storage:
    """The app's storage; tests (and a future object store) put their own in app.extensions."""
    ext = current_app.extensions
    if "tenderpool.storage" not in ext:
        ext["tenderpool.storage"] = LocalStorage(uploads().root)
    value: Storage = ext["tenderpool.storage"]
    return value


def read_upload(file: Any) -> tuple[str | None, bytes]:
    """The upload's name and at most max_bytes + 1 bytes: enough to tell it is too big."""
    if file is None or not file.filename:
        return None, b""
    return file.filename, file.stream.read(uploads().max_bytes + 1)


def close_db_session(_exc: BaseException | None = None) -> None:
    session = g.pop("db_session", None)
    if session is not None:
        session.close()


def client_ip() -> str:
    # ProxyFix (app.proxy_fix_hops) has already replaced remote_addr when proxies are trusted.
    return request.remote_addr or "unknown"


def current_membership() -> Any:
    """The logged-in firm user's membership (a ``FirmMembership``, its firm loaded), or None.

    Loaded once per request and kept in ``g``: the access check, the navigation and the view all
    need it, and each extra load was two queries.
    """
    if "membership" not in g:
        membership = None
        if current_user.is_authenticated and current_user.is_firm_user:
            from tenderpool.firms.services import membership_of  # firms sits above web

            membership = membership_of(db_session(), current_user)
        g.membership = membership
    return g.membership


def enforce_access() -> Response | None:
    """``before_request`` hook: apply the declared rule of the endpoint."""
    # Tests may run several requests in one app context (one ``g``): start from a clean slate.
    g.pop("membership", None)
    if request.endpoint is None:
        return None  # 404 / 405 are answered by Flask itself
    rule = access_rule(request.endpoint)
    if rule is None:
        abort(500)  # create_app prevents this; never serve an undeclared view
    user = current_user
    if rule is Access.PUBLIC:
        return None
    if rule is Access.ANONYMOUS:
        return redirect(url_for("main.home")) if user.is_authenticated else None
    if not user.is_authenticated:
        return cast(Response, current_app.login_manager.unauthorized())  # type: ignore[attr-defined]
    if rule is Access.USER:
        return None
    if rule is Access.MEMBER and (user.is_staff or user.is_admin):
        return None
    if rule in (Access.MEMBER, Access.FIRM, Access.FIRM_OWNER):
        if not user.is_firm_user:
            abort(403)
        membership = current_membership()
        if membership is None or not membership.firm.is_approved:
            return redirect(url_for("firms.pending"))
        if rule is Access.FIRM_OWNER and not membership.is_owner:
            abort(403)
        return None
    if rule is Access.STAFF:
        if not (user.is_staff or user.is_admin):
            abort(403)
        return None
    if rule is Access.ADMIN:
        if not user.is_admin:
            abort(403)
        return None
    abort(500)


def safe_next(target: str | None, default: str) -> str:
    """Only follow ``next=`` to a path on this site (no open redirect)."""
    if target and target.startswith("/") and not target.startswith("//") and "\\" not in target:
        return target
    return default


def external_url(endpoint: str, **values: Any) -> str:
    """An absolute link for emails, built on ``app.base_url`` whatever the current request."""
    adapter = current_app.url_map.bind("localhost")
    return settings().base_url + adapter.build(endpoint, values)
