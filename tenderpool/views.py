"""The home page and the health check."""

from __future__ import annotations

from flask import Blueprint, jsonify, render_template
from flask_login import current_user
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError
from werkzeug.wrappers import Response

from tenderpool.web import Access, access, db_session, settings

bp = Blueprint("main", __name__)


@bp.route("/")
@access(Access.PUBLIC)
def home() -> str:
    membership = None
    if current_user.is_authenticated and current_user.is_firm_user:
        from tenderpool.firms.services import membership_of

        membership = membership_of(db_session(), current_user)
    return render_template("home.html", chambers=settings().chambers, membership=membership)


@bp.route("/healthz")
@access(Access.PUBLIC)
def healthz() -> tuple[Response, int]:
    """Machine-readable health: 200 when the database answers, 503 otherwise."""
    try:
        db_session().execute(text("SELECT 1"))
        database = "ok"
    except SQLAlchemyError:
        database = "unreachable"
    ok = database == "ok"
    body = {"status": "ok" if ok else "error", "database": database}
    return jsonify(body), 200 if ok else 503
