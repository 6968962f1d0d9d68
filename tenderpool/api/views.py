"""Public JSON API (/api/v1) and personal calendar feeds (blueprints registered by tenderpool.app).

Every answer under /api/ is JSON, errors included: the API's own errors are built
here, and :func:`_json_errors_under_api` turns the app's HTML error pages (routing
404/405, unhandled 500) into the same JSON shape for any path under /api/.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
from typing import Any, cast
from urllib.parse import urlencode

from flask import Blueprint, abort, current_app, flash, g, redirect, request, url_for
from flask.sansio.blueprints import BlueprintSetupState
from flask_login import current_user
from sqlalchemy import inspect, select
from sqlalchemy.orm import Session, selectinload
from werkzeug.datastructures import MultiDict
from werkzeug.routing import BuildError
from werkzeug.wrappers import Response

from tenderpool.accounts.models import User
from tenderpool.api import services
from tenderpool.api.services import ApiSettings
from tenderpool.notices.calendar import build_calendar, regenerate_ics_token, user_for_ics_token
from tenderpool.notices.models import Notice
from tenderpool.notices.search import QueryParamError, SearchQuery, search_notices
from tenderpool.notices.services import notice_to_dict
from tenderpool.web import Access, access, client_ip, db_session, external_url, settings

bp = Blueprint("api", __name__, url_prefix="/api/v1")
feeds = Blueprint("feeds", __name__)

API_CACHE_CONTROL = "public, max-age=60"
# Private: the address holds a secret token, so no shared cache may keep the feed.
FEED_CACHE_CONTROL = "private, max-age=300"
_CURSOR_RE = re.compile(r"^[A-Za-z0-9_.~=:-]+$")
# Parameters whose values reach the search: a NUL byte there is refused up front, because
# PostgreSQL rejects it inside a string (a 500 otherwise) and no real value contains one.
_KNOWN_PARAMS = tuple(p["name"] for p in (*services.SEARCH_PARAMETERS, *services.PAGINATION_PARAMETERS))
_ERROR_CODES = {
    400: "invalid_parameter",
    404: "not_found",
    405: "method_not_allowed",
    429: "rate_limited",
    500: "server_error",
}
_ERROR_MESSAGES = {
    400: "Requête incorrecte.",
    404: "Cette adresse n'existe pas dans l'API.",
    405: "Méthode non autorisée sur cette adresse.",
    413: "Requête trop volumineuse.",
    429: "Trop de requêtes : réessayez dans une minute.",
    500: "Erreur inattendue du serveur. L'équipe technique en est informée.",
}


def _now() -> dt.datetime:
    """The request's clock (tests replace it to stay within one rate-limit window)."""
    return dt.datetime.now(dt.UTC)


@bp.record_once
def _configure(state: BlueprintSetupState) -> None:
    # Validated when the app is built, so a bad [api] value stops the service at start-up.
    app_settings = state.app.extensions["tenderpool.settings"]
    state.app.extensions["tenderpool.api"] = services.api_settings(app_settings.raw)


def _config() -> ApiSettings:
    return cast(ApiSettings, current_app.extensions["tenderpool.api"])


# --------------------------------------------------------------------------- JSON helpers


def _json(body: Any, status: int = 200) -> Response:
    data = json.dumps(body, ensure_ascii=False, separators=(",", ":"))
    return Response(data, status=status, mimetype="application/json")


def _error(status: int, message: str, *, param: str | None = None) -> Response:
    error: dict[str, Any] = {"code": _ERROR_CODES.get(status, "error"), "message": message}
    if param is not None:
        error["param"] = param
    response = _json({"error": error}, status)
    response.headers["Cache-Control"] = "no-store"
    return response


def _cacheable(body: Any) -> Response:
    """A 200 JSON answer with an ETag of its body; 304 when the client already has it."""
    response = _json(body)
    response.set_etag(hashlib.sha256(response.get_data()).hexdigest()[:40])
    response.headers["Cache-Control"] = API_CACHE_CONTROL
    return response.make_conditional(request)


@bp.after_app_request
def _json_errors_under_api(response: Response) -> Response:
    """Answer JSON for errors under /api/ that never reached an API view (routing 404/405, 500…)."""
    under_api = request.path == "/api" or request.path.startswith("/api/")
    if under_api and response.status_code >= 400 and response.mimetype == "text/html":
        status = response.status_code
        message = _ERROR_MESSAGES.get(status, "Erreur.")
        response.set_data(json.dumps({"error": {"code": _ERROR_CODES.get(status, "error"),
                                                "message": message}}, ensure_ascii=False))  # fmt: skip
        response.mimetype = "application/json"
        response.headers["Cache-Control"] = "no-store"
        if status == 405 and "Allow" not in response.headers:
            # RFC 9110 requires Allow on a 405; the app's error page drops the exception's headers.
            adapter = current_app.url_map.bind_to_environ(request.environ)
            response.headers["Allow"] = ", ".join(sorted(adapter.allowed_methods()))
    return response


# --------------------------------------------------------------------------- rate limit


@bp.before_request
def _before_api_request() -> Response | None:
    config = _config()
    if not config.enabled:
        return _error(404, "L'API publique est désactivée sur ce service.")
    db = db_session()
    now = _now()
    state = services.count_request(db, client_ip(), now=now, limit=config.rate_limit_per_minute)
    db.commit()  # at once: the other workers must see this request counted
    g.api_rate_limit = state
    if not state.allowed:
        response = _error(429, _ERROR_MESSAGES[429])
        response.headers["Retry-After"] = str(state.retry_after(now))
        return response
    return None


@bp.after_request
def _rate_limit_headers(response: Response) -> Response:
    state = g.get("api_rate_limit")
    if state is not None:
        response.headers["X-RateLimit-Limit"] = str(state.limit)
        response.headers["X-RateLimit-Remaining"] = str(state.remaining)
    return response


# --------------------------------------------------------------------------- parameters


def _one(args: MultiDict[str, str], name: str) -> str | None:
    values = args.getlist(name)
    if len(values) > 1:
        raise QueryParamError(name, "une seule valeur attendue")
    return values[0] if values else None


def _limit(args: MultiDict[str, str]) -> int:
    raw = _one(args, "limit")
    if raw is None or raw == "":
        return services.DEFAULT_LIMIT
    # isascii: str.isdigit accepts "²" and other digits int() refuses.
    if not (raw.isascii() and raw.isdigit() and len(raw) <= 3) or not 1 <= int(raw) <= services.MAX_LIMIT:
        raise QueryParamError("limit", f"un nombre entier entre 1 et {services.MAX_LIMIT}")
    return int(raw)


def _cursor(args: MultiDict[str, str]) -> str | None:
    raw = _one(args, "cursor")
    if raw is None or raw == "":
        return None
    if len(raw) > services.MAX_CURSOR_LENGTH or not _CURSOR_RE.match(raw):
        raise QueryParamError("cursor", "curseur invalide : reprenez la valeur next_cursor d'une réponse")
    return raw


def _search_query(args: MultiDict[str, str]) -> SearchQuery:
    for name in _KNOWN_PARAMS:
        if any("\x00" in value for value in args.getlist(name)):
            raise QueryParamError(name, "caractère nul interdit")
    try:
        return SearchQuery.from_args(args)
    except QueryParamError:
        raise
    except (ValueError, ArithmeticError):
        # A value the parser did not foresee (not a QueryParamError): find which parameter
        # it was, so the client still learns what to fix, and never answer 500.
        for name in _KNOWN_PARAMS:
            try:
                SearchQuery.from_args({name: args.getlist(name)})
            except (ValueError, ArithmeticError):
                raise QueryParamError(name, "valeur invalide") from None
        raise QueryParamError("q", "valeur invalide") from None


_EXPORT_RELATIONS = ("lots", "awards", "cpv_links", "department_links", "publications", "changes")


def _with_export_relations(session: Session, notices: list[Notice]) -> None:
    """Load the relations notice_to_dict reads that are not loaded yet, a query per relation
    for the whole page instead of one per notice."""
    if not notices:
        return
    unloaded: set[str] = set().union(*(inspect(notice).unloaded for notice in notices))
    options = [selectinload(getattr(Notice, name)) for name in _EXPORT_RELATIONS if name in unloaded]
    if options:
        session.scalars(select(Notice).where(Notice.id.in_([n.id for n in notices])).options(*options)).all()


def _list_url(query: SearchQuery, *, limit: int, cursor: str) -> str:
    params = [*query.to_args()]
    if limit != services.DEFAULT_LIMIT:
        params.append(("limit", str(limit)))
    params.append(("cursor", cursor))
    return external_url("api.list_notices") + "?" + urlencode(params)


# --------------------------------------------------------------------------- API views


@bp.get("/notices")
@access(Access.PUBLIC)
def list_notices() -> Response:
    args = request.args
    db = db_session()
    now = _now()
    try:
        limit = _limit(args)
        cursor = _cursor(args)
        query = _search_query(args)
        page = search_notices(db, query, now=now, per_page=limit, cursor=cursor)
    except QueryParamError as exc:
        return _error(400, exc.message, param=exc.param)
    _with_export_relations(db, page.items)
    next_url = _list_url(query, limit=limit, cursor=page.next_cursor) if page.next_cursor else None
    return _cacheable(
        {
            "items": [notice_to_dict(notice, now=now) for notice in page.items],
            "total": page.total,
            "next_cursor": page.next_cursor,
            "links": {"next": next_url},
        }
    )


@bp.get("/notices/<int:notice_id>")
@access(Access.PUBLIC)
def get_notice(notice_id: int) -> Response:
    db = db_session()
    notice = db.get(Notice, notice_id)
    if notice is not None and notice.merged_into_id is not None:
        # The id may be bookmarked: send the client on to the notice it now lives in.
        response = _json({"id": notice.id, "merged_into_id": notice.merged_into_id}, 301)
        response.headers["Location"] = url_for("api.get_notice", notice_id=notice.merged_into_id)
        response.headers["Cache-Control"] = API_CACHE_CONTROL
        return response
    if notice is None or notice.is_rejected:
        return _error(404, "Avis introuvable.")
    _with_export_relations(db, [notice])
    return _cacheable(notice_to_dict(notice, now=_now()))


@bp.get("/openapi.json")
@access(Access.PUBLIC)
def openapi() -> Response:
    server_url = external_url("api.list_notices").removesuffix("/notices")
    return _cacheable(
        services.openapi_document(
            server_url=server_url, rate_limit_per_minute=_config().rate_limit_per_minute
        )
    )


# --------------------------------------------------------------------------- calendar feeds


def _notice_page_url(notice_id: int) -> str:
    try:
        return external_url("notices.detail", notice_id=notice_id)
    except BuildError:
        # The notice page is not registered in this build: its address is fixed anyway.
        return f"{settings().base_url}/avis/{notice_id}"


@feeds.app_template_global()
def ics_feed_url(user: Any) -> str | None:
    """The absolute address of the user's calendar feed, or None before they create one (templates)."""
    token = getattr(user, "ics_token", None)
    return external_url("feeds.calendar", token=token) if token else None


def _consortium_notice_ids(session: Session, user: User) -> set[int]:
    """The notices of the user's live consortia, whose deadlines also belong in the feed.

    The consortia domain sits above notices, so it is asked here and its ids are passed to
    build_calendar. A firm user gets its own groupements' (staff, their territory's).
    """
    from tenderpool.consortia.models import Status
    from tenderpool.consortia.services import consortia_for_user

    live = {Status.FORMING, Status.ASSEMBLING, Status.READY, Status.SUBMITTED}
    return {c.notice_id for c in consortia_for_user(session, user) if c.status in live}


@feeds.get("/calendrier/<token>.ics")
@access(Access.PUBLIC)
def calendar(token: str) -> Response:
    db = db_session()
    user = user_for_ics_token(db, token)
    if user is None:
        abort(404)
    body = build_calendar(
        db,
        user,
        now=_now(),
        notice_url=_notice_page_url,
        extra_notice_ids=_consortium_notice_ids(db, user),
    )
    response = Response(body, mimetype="text/calendar")  # werkzeug adds "; charset=utf-8"
    response.headers["Content-Disposition"] = 'inline; filename="tenderpool.ics"'
    response.set_etag(hashlib.sha256(body).hexdigest()[:40])
    response.headers["Cache-Control"] = FEED_CACHE_CONTROL
    return response.make_conditional(request)


@feeds.post("/compte/calendrier/regenerer")
@access(Access.USER)
def regenerate_token() -> Response:
    db = db_session()
    user = cast(User, current_user._get_current_object())
    had_token = user.ics_token is not None
    regenerate_ics_token(db, user, now=_now(), ip=client_ip())
    db.commit()
    if had_token:
        flash(
            "Un nouveau lien de calendrier a été créé. L'ancien ne fonctionne plus : "
            "mettez à jour l'abonnement dans votre agenda.",
            "success",
        )
    else:
        flash("Votre lien de calendrier est créé. Ajoutez-le à votre agenda.", "success")
    return redirect(url_for("accounts.account"))
