"""The home page and the health check."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, jsonify, render_template
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError
from werkzeug.wrappers import Response

from tenderpool.web import Access, access, current_membership, db_session, settings

bp = Blueprint("main", __name__)


@bp.route("/")
@access(Access.PUBLIC)
def home() -> str:
    membership = current_membership()
    return render_template("home.html", chambers=settings().chambers, membership=membership)


@bp.route("/healthz")
@access(Access.PUBLIC)
def healthz() -> tuple[Response, int]:
    """Machine-readable health for a monitor: 200, or 503 when something needs a human.

    503 when the database does not answer, when the active scheduler's heartbeat is older than
    ``health.heartbeat_max_age_seconds`` (or no scheduler ever ran), or when a source the
    scheduler scrapes has had no complete run for ``health.source_max_age_hours``. A few small
    queries; no host names, errors or settings in the answer.
    """
    from tenderpool.db import utcnow
    from tenderpool.ops.services import health_report
    from tenderpool.scheduler import scrape_sources

    session = db_session()
    try:
        session.execute(text("SELECT 1"))
        database = "ok"
    except SQLAlchemyError:
        database = "unreachable"
    body: dict[str, Any] = {"status": "error", "database": database}
    ok = False
    if database == "ok":
        try:
            ok, details = health_report(session, settings(), now=utcnow(), sources_of_jobs=scrape_sources())
        except SQLAlchemyError:
            ok, details = False, {"scheduler": {"status": "unknown"}}
        body.update(details)
        body["status"] = "ok" if ok else "error"
    response = jsonify(body)
    response.headers["Cache-Control"] = "no-store"
    return response, 200 if ok else 503
