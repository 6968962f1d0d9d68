"""The operations page: each job's timing, next and last run, errors; "run now" for admins."""

from __future__ import annotations

from flask import Blueprint, flash, redirect, render_template, url_for
from flask_login import current_user
from werkzeug.wrappers import Response

from tenderpool.db import utcnow
from tenderpool.ops import services
from tenderpool.ops.forms import RunNowForm
from tenderpool.scheduler import JOBS
from tenderpool.web import Access, access, db_session, settings

bp = Blueprint("ops", __name__)

STATUS_LABELS = {"running": "en cours", "ok": "réussi", "failed": "échoué"}
TRIGGER_LABELS = {"schedule": "planifié", "manual": "à la demande", "retry": "nouvel essai"}
ROLE_LABELS = {"active": "active", "standby": "en attente (relève)", "stopped": "arrêtée"}


@bp.route("/equipe/operations")
@access(Access.STAFF)
def overview() -> str:
    session = db_session()
    jobs = services.job_overview(session, settings(), [(spec.name, spec.label) for spec in JOBS.values()])
    return render_template(
        "ops/overview.html",
        jobs=jobs,
        instances=services.instances(session),
        pending=services.pending_requests(session),
        runs=services.recent_runs(session, limit=30),
        labels={spec.name: spec.label for spec in JOBS.values()},
        status_labels=STATUS_LABELS,
        trigger_labels=TRIGGER_LABELS,
        role_labels=ROLE_LABELS,
        form=RunNowForm(),
        can_run=current_user.is_admin,
    )


@bp.route("/equipe/operations/<job>/lancer", methods=["POST"])
@access(Access.ADMIN)
def run_now(job: str) -> Response:
    form = RunNowForm()
    if not form.validate_on_submit():  # the CSRF token is checked before the view; this is the rest
        flash("La demande n'a pas pu être enregistrée. Rechargez la page.", "error")
        return redirect(url_for("ops.overview"))
    session = db_session()
    services.request_run(session, job, known_jobs=JOBS, by=current_user, now=utcnow())
    session.commit()
    flash(
        f"« {JOBS[job].label} » est demandé : le planificateur actif le lancera dans quelques secondes.",
        "success",
    )
    return redirect(url_for("ops.overview"))
