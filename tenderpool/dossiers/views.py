"""The dossier page of a consortium: readiness check, generation requests, versions, downloads.

Generation never happens in the request: the POST queues a version, the scheduler builds it
(:func:`tenderpool.dossiers.services.process_pending_dossiers`), and the page refreshes itself
(meta refresh, no JavaScript) while a version is pending.
"""

from __future__ import annotations

import datetime as dt
import io
from typing import Any, cast
from zoneinfo import ZoneInfo

from flask import Blueprint, abort, current_app, flash, redirect, render_template, send_file, url_for
from flask_login import current_user
from werkzeug.routing import BuildError
from werkzeug.wrappers import Response

from tenderpool.accounts.models import User
from tenderpool.consortia.services import workspace_for
from tenderpool.dossiers import services
from tenderpool.dossiers.forms import GenerateForm
from tenderpool.errors import NotFound
from tenderpool.storage import Storage
from tenderpool.web import Access, access, db_session, settings

bp = Blueprint("dossiers", __name__)
PARIS = ZoneInfo("Europe/Paris")
REFRESH_SECONDS = 5


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _user() -> User:
    return cast(User, current_user._get_current_object())


def _storage() -> Storage:
    """The app's storage (shared with the firm documents; tests put their own in extensions)."""
    ext = current_app.extensions
    if "tenderpool.storage" not in ext:
        ext["tenderpool.storage"] = services.storage_for(settings())
    storage: Storage = ext["tenderpool.storage"]
    return storage


def _consortium(consortium_id: int) -> Any:
    try:
        return workspace_for(db_session(), _user(), consortium_id)
    except NotFound:
        abort(404)


def _item_url(item: services.Item, consortium_id: int) -> str | None:
    if item.url:
        return item.url
    if item.endpoint:
        values: dict[str, Any] = {"consortium_id": consortium_id}
        if item.section_id is not None:
            values["section_id"] = item.section_id
        return url_for(item.endpoint, **values) + item.anchor
    return None


@bp.get("/groupements/<int:consortium_id>/dossier")
@access(Access.MEMBER)
def dossier_page(consortium_id: int) -> str:
    consortium = _consortium(consortium_id)
    session = db_session()
    today = _now().astimezone(PARIS).date()
    readiness = services.check_readiness(session, consortium, today=today)
    versions = services.versions_of(session, consortium)
    try:
        workspace_url: str | None = url_for(services.WORKSPACE_ENDPOINT, consortium_id=consortium.id)
    except BuildError:
        workspace_url = None
    return render_template(
        "dossiers/dossier.html",
        consortium={"id": consortium.id, "name": consortium.name, "notice_title": consortium.notice.title},
        workspace_url=workspace_url,
        readiness={
            "ok": readiness.ok,
            "count": readiness.count,
            "general": [{"label": i.label, "url": _item_url(i, consortium.id)} for i in readiness.general],
            "members": [
                {
                    "name": m.name,
                    "items": [{"label": i.label, "url": _item_url(i, consortium.id)} for i in m.items],
                }
                for m in readiness.members
            ],
        },
        versions=versions,
        pending=any(v.is_pending for v in versions),
        refresh_seconds=REFRESH_SECONDS,
        form=GenerateForm(),
    )


@bp.post("/groupements/<int:consortium_id>/dossier/generer")
@access(Access.MEMBER)
def generate(consortium_id: int) -> Response:
    consortium = _consortium(consortium_id)
    form = GenerateForm()
    form.validate_on_submit()  # only the CSRF token matters; the checkbox is optional
    session = db_session()
    version = services.queue_dossier(
        session,
        consortium,
        by=_user(),
        pdf_variant=services.PDFA if form.pdfa.data else None,
        now=_now(),
    )
    session.commit()
    flash(
        f"La version {version.number} du dossier est en cours de génération : cette page se met à jour "
        "toute seule.",
        "info",
    )
    return redirect(url_for("dossiers.dossier_page", consortium_id=consortium.id))


@bp.get("/groupements/<int:consortium_id>/dossier/fichiers/<int:file_id>")
@access(Access.MEMBER)
def download(consortium_id: int, file_id: int) -> Response:
    try:
        stored = services.file_for_download(db_session(), _user(), consortium_id, file_id)
    except NotFound:
        abort(404)
    data = _storage().open(stored.storage_key)
    response = send_file(
        io.BytesIO(data),
        mimetype=stored.content_type,
        as_attachment=True,
        download_name=stored.filename,
        etag=False,
        max_age=0,
    )
    response.headers["Cache-Control"] = "private, no-store"
    response.headers["Content-Security-Policy"] = "default-src 'none'; sandbox"
    return response
