"""The chambers' dashboard page and its CSV export (chamber staff and admins)."""

from __future__ import annotations

import datetime as dt

from flask import Blueprint, render_template, request, url_for
from werkzeug.wrappers import Response

from tenderpool.dashboard import charts, services
from tenderpool.db import utcnow
from tenderpool.web import Access, access, db_session, settings

bp = Blueprint("dashboard", __name__)


def _today() -> dt.date:
    return utcnow().astimezone(settings().tz).date()


def _board(period: services.Period) -> services.Dashboard:
    config = settings()
    return services.dashboard(db_session(), period, chambers=config.chambers, tz=config.tz)


@bp.route("/equipe/tableau-de-bord")
@access(Access.STAFF)
def overview() -> tuple[str, int]:
    today = _today()
    try:
        period = services.parse_period(request.args, today=today)
    except services.PeriodError as exc:
        # The page again, with the message and the period form, so the dates can be corrected.
        return render_template(
            "dashboard/overview.html",
            error=exc.message,
            presets=services.PRESETS,
            period=None,
            form_start=request.args.get("du", ""),
            form_end=request.args.get("au", ""),
            today=today,
        ), 400
    board = _board(period)
    return render_template(
        "dashboard/overview.html",
        error=None,
        presets=services.PRESETS,
        period=period,
        form_start=period.start.isoformat(),
        form_end=period.end.isoformat(),
        today=today,
        board=board,
        rows=services.rows(board),
        sections=services.SECTIONS,
        charts=charts.dashboard_charts(board),
        fmt=charts.format_value,
        csv_url=url_for("dashboard.export", du=period.start.isoformat(), au=period.end.isoformat()),
    ), 200


@bp.route("/equipe/tableau-de-bord.csv")
@access(Access.STAFF)
def export() -> Response | tuple[str, int]:
    """The table as CSV for Excel: UTF-8 with a BOM, ``;``-separated, French header row."""
    try:
        period = services.parse_period(request.args, today=_today())
    except services.PeriodError as exc:
        return render_template(
            "errors/error.html", code=400, title="Période incorrecte", message=exc.message
        ), 400
    body = "\ufeff" + services.csv_text(_board(period))
    filename = f"tableau-de-bord-{period.start.isoformat()}-{period.end.isoformat()}.csv"
    return Response(
        body.encode("utf-8"),
        mimetype="text/csv",
        headers={
            "Content-Disposition": f'attachment; filename="{filename}"',
            "Cache-Control": "no-store",  # the figures are for staff only
        },
    )
