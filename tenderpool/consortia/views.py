"""Consortia on the web: forming, partners, membership, répartition, workspace, life cycle.

Views are thin: they read the form, call one service, commit, and say what happened. Who may
do what is decided by the services; a consortium the user may not see answers 404, so that
guessing ids reveals nothing.
"""

from __future__ import annotations

import datetime as dt
import io
from collections.abc import Callable
from typing import Any
from zoneinfo import ZoneInfo

from flask import Blueprint, abort, flash, redirect, render_template, request, send_file, url_for
from flask.blueprints import BlueprintSetupState
from flask_login import current_user
from sqlalchemy import select
from werkzeug.wrappers import Response

from tenderpool.consortia import services, suggestions, workspace
from tenderpool.consortia.models import (
    WHOLE_MARKET,
    Consortium,
    Form,
    MemberState,
    SectionStatus,
    Status,
    Visibility,
)
from tenderpool.errors import DomainError, NotFound
from tenderpool.firms.documents import download_name
from tenderpool.firms.models import Firm, FirmStatus
from tenderpool.notices.models import Notice
from tenderpool.pagination import PER_PAGE, Page, paginate
from tenderpool.reference import cpv_label
from tenderpool.web import Access, access, client_ip, db_session, read_upload, settings, storage, uploads

bp = Blueprint("consortia", __name__)
PARIS = ZoneInfo("Europe/Paris")


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _today() -> dt.date:
    return _now().astimezone(PARIS).date()


@bp.record_once
def _setup(state: BlueprintSetupState) -> None:
    # The notice page belongs to the notices domain, which must not import consortia: it asks
    # for this panel through a template global instead.
    state.app.add_template_global(_notice_panel, "consortium_panel_for")


def _notice_panel(notice: Notice) -> dict[str, Any]:
    """What the notice page shows about groupements: the user's, the open ones, the rules."""
    db = db_session()
    firm_id = services.firm_id_of(db, current_user) if current_user.is_authenticated else None
    mine = []
    if firm_id is not None:
        mine = [
            c
            for c in services.consortia_of_notice(db, notice.id)
            if (m := services.member_of(c, firm_id)) is not None and m.state in services.LIVE_STATES
        ]
    staff_view = current_user.is_authenticated and (current_user.is_staff or current_user.is_admin)
    return {
        "firm_id": firm_id,
        "mine": mine,
        "open": [c for c in services.open_consortia(db, notice_id=notice.id, now=_now()) if c not in mine],
        "all": [
            c
            for c in services.consortia_of_notice(db, notice.id)
            if services.can_see_workspace(db, current_user, c)
        ]
        if staff_view
        else [],
        "solo_lots": services.solo_lots(db, firm_id, notice.id),
        "lots": services.notice_lot_numbers(notice),
        "lot_label": services.lot_label,
        "staff": staff_view,
    }


def _save(action: Callable[[], Any]) -> DomainError | None:
    """Call a service and commit; or roll back and return the rule it broke (404 aborts)."""
    db = db_session()
    try:
        action()
    except NotFound:
        db.rollback()
        abort(404)
    except DomainError as exc:
        db.rollback()
        return exc
    db.commit()
    return None


def _status(refused: DomainError | None) -> int:
    """A page shown again after a refusal: 409 when another member saved first, else 400."""
    if refused is None:
        return 200
    return 409 if isinstance(refused, services.EditConflict) else 400


def _run(action: Callable[[], Any], success: str | None, back: str) -> Response:
    """Call a service; commit and flash success, or roll back and flash the rule it broke."""
    refused = _save(action)
    if refused is not None:
        flash(refused.message, "error")
    elif success:
        flash(success, "success")
    return redirect(back)


def _workspace(consortium_id: int) -> Consortium:
    try:
        return services.workspace_for(db_session(), current_user, consortium_id)
    except NotFound:
        abort(404)


def _to(consortium_id: int, endpoint: str = "consortia.workspace", anchor: str = "") -> str:
    return url_for(endpoint, consortium_id=consortium_id) + (f"#{anchor}" if anchor else "")


def _common(consortium: Consortium, active_tab: str) -> dict[str, Any]:
    db = db_session()
    firm_id = services.firm_id_of(db, current_user)
    me = services.active_member(consortium, firm_id)
    return {
        "c": consortium,
        "notice": consortium.notice,
        "tab": active_tab,
        "me": me,
        "is_mandataire": me is not None and me.is_mandataire,
        "lot_label": services.lot_label,
        "form_text": services.form_text(consortium),
        "deadline": consortium.notice.deadline_at,
        "now": _now(),
        "Status": Status,
        "MemberState": MemberState,
    }


def _int(name: str) -> int | None:
    value = request.form.get(name, "").strip()
    return int(value) if value.isdigit() else None


# --------------------------------------------------------------------------- lists and forming


@bp.route("/groupements")
@access(Access.MEMBER)
def index() -> str:
    """The user's groupements (its chamber's for staff) and those looking for partners, each list
    paginated on its own (``page`` and ``ouverts``)."""
    db = db_session()
    firm_id = services.firm_id_of(db, current_user)
    query = services.consortia_query(db, current_user, awaiting=False)
    mine = paginate(db, query, request.args.get("page")) if query is not None else Page([], 1, PER_PAGE, 0)
    return render_template(
        "consortia/index.html",
        mine=mine,
        pending=services.awaiting_answer(db, firm_id),
        member_of=services.member_of,
        MemberState=MemberState,
        open=paginate(db, services.open_consortia_query(now=_now()), request.args.get("ouverts")),
        firm_id=firm_id,
        lot_label=services.lot_label,
        now=_now(),
    )


@bp.route("/avis/<int:notice_id>/groupement", methods=["GET", "POST"])
@access(Access.FIRM)
def create(notice_id: int) -> str | Response:
    db = db_session()
    notice = db.get(Notice, notice_id)
    if notice is None:
        abort(404)
    notice = services.live_notice(db, notice)
    error = None
    values: dict[str, Any] = {
        "name": "",
        "form": Form.CONJOINT.value,
        "mandataire_solidaire": False,
        "visibility": Visibility.OPEN.value,
        "lots": request.args.getlist("lot") or services.notice_lot_numbers(notice),
        "skills_cpv": "",
        "skills_text": "",
    }
    if request.method == "POST":
        values = {
            "name": request.form.get("name", ""),
            "form": request.form.get("form", ""),
            "mandataire_solidaire": request.form.get("mandataire_solidaire") == "1",
            "visibility": request.form.get("visibility", ""),
            "lots": request.form.getlist("lots"),
            "skills_cpv": request.form.get("skills_cpv", ""),
            "skills_text": request.form.get("skills_text", ""),
        }
        try:
            consortium = services.create_consortium(db, notice=notice, by=current_user, now=_now(), **values)
        except DomainError as exc:
            db.rollback()
            error = exc
        else:
            db.commit()
            flash(
                "Groupement créé : vous en êtes le mandataire. Invitez maintenant vos partenaires.", "success"
            )
            return redirect(_to(consortium.id, "consortia.partners"))
    return render_template(
        "consortia/create.html",
        notice=services.live_notice(db, notice) if error else notice,
        values=values,
        error=error,
        lots=services.notice_lot_numbers(notice),
        lot_label=services.lot_label,
        Form=Form,
        Visibility=Visibility,
    )


# --------------------------------------------------------------------------- the workspace


@bp.route("/groupements/<int:consortium_id>", endpoint="workspace")
@access(Access.MEMBER)
def workspace_page(consortium_id: int) -> str:
    """The workspace for members, their chambers' staff and admins; the public card for the
    firms it invited and, when open, for every member firm; 404 for anyone else."""
    db = db_session()
    try:
        consortium = services.card_for(db, current_user, consortium_id)
    except NotFound:
        abort(404)
    if not services.can_see_workspace(db, current_user, consortium):
        firm_id = services.firm_id_of(db, current_user)
        return render_template(
            "consortia/card.html",
            c=consortium,
            notice=consortium.notice,
            member=services.member_of(consortium, firm_id),
            lot_label=services.lot_label,
            skills=[(code, cpv_label(code)) for code in consortium.skills_cpv],
            warnings=services.overlaps(
                db,
                firm_id=firm_id or 0,
                notice_id=consortium.notice_id,
                lots=consortium.lot_numbers,
                exclude=consortium.id,
            ),
            MemberState=MemberState,
        )
    today = _today()
    services.preload_members(db, consortium)
    missing, covered = suggestions.missing_skills(consortium)
    return render_template(
        "consortia/workspace.html",
        **_common(consortium, "overview"),
        warnings=services.warnings_for(db, consortium),
        problems=services.readiness_problems(db, consortium)
        if consortium.status in (Status.FORMING, Status.ASSEMBLING, Status.READY)
        else [],
        pooled=services.pooled_capacities(consortium, today=today),
        checklist=workspace.checklist_rows(consortium, today=today),
        events=services.events_of(db, consortium),
        missing=[(code, cpv_label(code)) for code in missing],
        covered=[(code, cpv_label(code), names) for code, names in covered.items()],
        reasons=services.R2142_26_REASONS,
    )


@bp.route("/groupements/<int:consortium_id>/parametres", methods=["GET", "POST"], endpoint="settings")
@access(Access.FIRM)
def settings_page(consortium_id: int) -> tuple[str, int] | Response:
    db = db_session()
    consortium = _workspace(consortium_id)
    refused = None
    if request.method == "POST":
        refused = _save(
            lambda: services.update_settings(
                db,
                consortium,
                by=current_user,
                version=_int("version") or 0,
                name=request.form.get("name", ""),
                form=request.form.get("form", ""),
                mandataire_solidaire=request.form.get("mandataire_solidaire") == "1",
                visibility=request.form.get("visibility", ""),
                lots=request.form.getlist("lots"),
                skills_cpv=request.form.get("skills_cpv", ""),
                skills_text=request.form.get("skills_text", ""),
                required_turnover=request.form.get("required_turnover", ""),
                requirements_note=request.form.get("requirements_note", ""),
                now=_now(),
            )
        )
        if refused is None:
            flash("Groupement mis à jour.", "success")
            return redirect(_to(consortium_id))
        consortium = _workspace(consortium_id)
    return render_template(
        "consortia/settings.html",
        **_common(consortium, "settings"),
        error=refused,
        conflict=isinstance(refused, services.EditConflict),
        lots=services.notice_lot_numbers(consortium.notice),
        Form=Form,
        Visibility=Visibility,
    ), _status(refused)


# --------------------------------------------------------------------------- partners and members


@bp.route("/groupements/<int:consortium_id>/partenaires")
@access(Access.MEMBER)
def partners(consortium_id: int) -> str:
    """Suggested partners with their explanation, a directory search and the email invitation."""
    db = db_session()
    consortium = _workspace(consortium_id)
    territory = {d for chamber in settings().chambers for d in chamber.departments}
    missing, found = suggestions.suggest_partners(db, consortium, territory=territory, today=_today())
    query = request.args.get("q", "").strip()[:100]
    directory: list[Firm] = []
    if query:
        members = {m.firm_id for m in consortium.members if m.state in services.LIVE_STATES}
        directory = [
            f
            for f in db.scalars(
                select(Firm)
                .where(
                    Firm.status == FirmStatus.APPROVED.value,
                    Firm.directory_opt_in.is_(True),
                    Firm.name.ilike(f"%{query.replace('%', '').replace('_', '')}%"),
                )
                .order_by(Firm.name)
                .limit(20)
            )
            if f.id not in members
        ]
    return render_template(
        "consortia/partners.html",
        **_common(consortium, "partners"),
        missing=[(code, cpv_label(code)) for code in missing],
        suggestions=found,
        query=query,
        directory=directory,
    )


@bp.route("/groupements/<int:consortium_id>/inviter", methods=["POST"])
@access(Access.FIRM)
def invite(consortium_id: int) -> Response:
    db = db_session()
    consortium = _workspace(consortium_id)
    firm = db.get(Firm, _int("firm_id") or 0)
    if firm is None:
        abort(404)
    return _run(
        lambda: services.invite_firm(
            db, consortium, firm=firm, by=current_user, message=request.form.get("message"), now=_now()
        ),
        f"Invitation envoyée à {firm.name}.",
        _to(consortium_id, "consortia.partners"),
    )


@bp.route("/groupements/<int:consortium_id>/inviter-par-courriel", methods=["POST"])
@access(Access.FIRM)
def invite_email(consortium_id: int) -> Response:
    db = db_session()
    consortium = _workspace(consortium_id)
    return _run(
        lambda: services.invite_by_email(
            db,
            consortium,
            email=request.form.get("email", ""),
            firm_name=request.form.get("firm_name"),
            message=request.form.get("message"),
            by=current_user,
            now=_now(),
        ),
        "Invitation envoyée par courriel : le lien permet à l'entreprise de s'inscrire puis de répondre.",
        _to(consortium_id, "consortia.partners"),
    )


@bp.route("/groupements/invitation/<token>", methods=["GET", "POST"])
@access(Access.PUBLIC)
def invitation(token: str) -> str | tuple[str, int] | Response:
    """The emailed link: explains the invitation; once the firm is signed up and approved, it
    turns into an invitation to accept or decline on the consortium's card."""
    db = db_session()
    try:
        invite_row = services.email_invitation(db, token, now=_now())
    except DomainError as exc:
        return render_template("consortia/invitation.html", error=exc.message, token=token), 400
    firm_id = services.firm_id_of(db, current_user) if current_user.is_authenticated else None
    if request.method == "POST":
        if firm_id is None:
            abort(403)
        return _run(
            lambda: services.claim_email_invitation(db, token, by=current_user, now=_now()),
            "Invitation rattachée à votre entreprise : répondez-y ci-dessous.",
            _to(invite_row.consortium_id),
        )
    return render_template(
        "consortia/invitation.html",
        invite=invite_row,
        c=invite_row.consortium,
        notice=invite_row.consortium.notice,
        token=token,
        firm_id=firm_id,
        error=None,
        lots=services.lots_text(invite_row.consortium.lot_numbers),
    )


@bp.route("/groupements/<int:consortium_id>/reponse", methods=["POST"])
@access(Access.FIRM)
def answer(consortium_id: int) -> Response:
    db = db_session()
    try:
        consortium = services.card_for(db, current_user, consortium_id)
    except NotFound:
        abort(404)
    accept = request.form.get("decision") == "accept"
    return _run(
        lambda: services.answer_invitation(
            db, consortium, accept=accept, message=request.form.get("message"), by=current_user, now=_now()
        ),
        "Bienvenue dans le groupement." if accept else "Vous avez décliné l'invitation.",
        _to(consortium_id) if accept else url_for("consortia.index"),
    )


@bp.route("/groupements/<int:consortium_id>/demande", methods=["POST"])
@access(Access.FIRM)
def request_join(consortium_id: int) -> Response:
    db = db_session()
    try:
        consortium = services.card_for(db, current_user, consortium_id)
    except NotFound:
        abort(404)
    return _run(
        lambda: services.request_to_join(
            db, consortium, message=request.form.get("message"), by=current_user, now=_now()
        ),
        "Demande envoyée au mandataire.",
        _to(consortium_id),
    )


@bp.route("/groupements/<int:consortium_id>/demandes/<int:member_id>", methods=["POST"])
@access(Access.FIRM)
def decide(consortium_id: int, member_id: int) -> Response:
    db = db_session()
    consortium = _workspace(consortium_id)
    accept = request.form.get("decision") == "accept"
    return _run(
        lambda: services.decide_request(
            db,
            consortium,
            member_id=member_id,
            accept=accept,
            message=request.form.get("message"),
            by=current_user,
            now=_now(),
        ),
        "Demande acceptée." if accept else "Demande déclinée.",
        _to(consortium_id, anchor="membres"),
    )


@bp.route("/groupements/<int:consortium_id>/invitations/<int:member_id>/retirer", methods=["POST"])
@access(Access.FIRM)
def cancel_invite(consortium_id: int, member_id: int) -> Response:
    db = db_session()
    consortium = _workspace(consortium_id)
    return _run(
        lambda: services.cancel_invitation(db, consortium, member_id=member_id, by=current_user, now=_now()),
        "Invitation retirée.",
        _to(consortium_id, anchor="membres"),
    )


@bp.route("/groupements/<int:consortium_id>/quitter", methods=["POST"])
@access(Access.FIRM)
def leave(consortium_id: int) -> Response:
    db = db_session()
    consortium = _workspace(consortium_id)
    return _run(
        lambda: services.leave(db, consortium, by=current_user, now=_now()),
        "Votre entreprise a quitté le groupement.",
        url_for("consortia.index"),
    )


@bp.route("/groupements/<int:consortium_id>/mandataire", methods=["POST"])
@access(Access.FIRM)
def mandate(consortium_id: int) -> Response:
    db = db_session()
    consortium = _workspace(consortium_id)
    return _run(
        lambda: services.hand_over_mandate(
            db, consortium, to_firm_id=_int("firm_id") or 0, by=current_user, now=_now()
        ),
        "Le rôle de mandataire a été confié.",
        _to(consortium_id, anchor="membres"),
    )


@bp.route("/groupements/<int:consortium_id>/composition", methods=["POST"])
@access(Access.FIRM)
def composition(consortium_id: int) -> Response:
    """After submission: a change of composition under R2142-26, with its reason."""
    db = db_session()
    consortium = _workspace(consortium_id)
    return _run(
        lambda: services.change_after_submission(
            db,
            consortium,
            member_id=_int("member_id") or 0,
            reason=request.form.get("reason", ""),
            explanation=request.form.get("explanation", ""),
            replacement_firm_id=_int("replacement_firm_id"),
            by=current_user,
            now=_now(),
        ),
        "Changement de composition enregistré (art. R2142-26).",
        _to(consortium_id, anchor="membres"),
    )


# --------------------------------------------------------------------------- life cycle


_TRANSITIONS: dict[str, tuple[Callable[..., None], str]] = {
    "ready": (services.mark_ready, "Le groupement est prêt à déposer."),
    "reopen": (services.reopen, "Le groupement est rouvert pour modifications."),
    "submit": (services.mark_submitted, "Candidature déposée : la composition est figée."),
}


@bp.route("/groupements/<int:consortium_id>/statut", methods=["POST"])
@access(Access.FIRM)
def status(consortium_id: int) -> Response:
    db = db_session()
    consortium = _workspace(consortium_id)
    action = request.form.get("action", "")
    if action == "withdraw":
        return _run(
            lambda: services.withdraw(
                db, consortium, by=current_user, reason=request.form.get("reason"), now=_now()
            ),
            "Le groupement est abandonné.",
            _to(consortium_id),
        )
    if action not in _TRANSITIONS:
        abort(400)
    call, message = _TRANSITIONS[action]
    return _run(lambda: call(db, consortium, by=current_user, now=_now()), message, _to(consortium_id))


@bp.route("/groupements/<int:consortium_id>/resultat", methods=["POST"])
@access(Access.FIRM)
def outcome(consortium_id: int) -> Response:
    db = db_session()
    consortium = _workspace(consortium_id)
    won = request.form.get("won") == "1"
    return _run(
        lambda: services.record_outcome(
            db,
            consortium,
            won=won,
            amount=request.form.get("amount"),
            note=request.form.get("note"),
            by=current_user,
            now=_now(),
        ),
        "Résultat enregistré : merci, il nourrit le bilan des deux CCI.",
        _to(consortium_id),
    )


# --------------------------------------------------------------------------- répartition


@bp.route("/groupements/<int:consortium_id>/repartition", methods=["GET", "POST"])
@access(Access.MEMBER)
def repartition(consortium_id: int) -> str | tuple[str, int] | Response:
    db = db_session()
    consortium = _workspace(consortium_id)
    conflict: dict[str, Any] | None = None
    error: dict[str, Any] | None = None
    submitted: dict[str, Any] | None = None
    refused: DomainError | None = None
    if request.method == "POST":
        lot_number = request.form.get("lot", WHOLE_MARKET)
        rows = [
            services.ShareInput(
                firm_id=m.firm_id,
                tasks=request.form.get(f"tasks_{m.firm_id}"),
                amount=request.form.get(f"amount_{m.firm_id}"),
                share=request.form.get(f"share_{m.firm_id}"),
            )
            for m in consortium.active_members
        ]
        refused = _save(
            lambda: services.save_repartition(
                db,
                consortium,
                lot_number=lot_number,
                version=_int("version") or 0,
                offer_amount=request.form.get("offer_amount"),
                rows=rows,
                by=current_user,
                now=_now(),
            )
        )
        if refused is None:
            flash(f"Répartition enregistrée ({services.lot_label(lot_number).lower()}).", "success")
            return redirect(
                _to(consortium_id, "consortia.repartition", anchor=f"lot-{lot_number or 'unique'}")
            )
        shown = {"lot": lot_number, "message": refused.message}
        conflict, error = (shown, None) if isinstance(refused, services.EditConflict) else (None, shown)
        submitted = {"lot": lot_number, "form": request.form}
        consortium = _workspace(consortium_id)
    shares = {(s.firm_id, s.lot_number): s for s in consortium.shares}
    body = render_template(
        "consortia/repartition.html",
        **_common(consortium, "repartition"),
        shares=shares,
        issues=services.repartition_issues(consortium),
        conflict=conflict,
        error=error,
        submitted=submitted,
        lot_value=lambda number: services.lot_value(consortium.notice, number),
    )
    return body, _status(refused)


# --------------------------------------------------------------------------- discussion and documents


@bp.route("/groupements/<int:consortium_id>/discussion", methods=["GET", "POST"])
@access(Access.MEMBER)
def discussion(consortium_id: int) -> str | Response:
    db = db_session()
    consortium = _workspace(consortium_id)
    if request.method == "POST":
        return _run(
            lambda: workspace.post_message(
                db, consortium, body=request.form.get("body", ""), by=current_user, now=_now()
            ),
            None,
            _to(consortium_id, "consortia.discussion", anchor="nouveau-message"),
        )
    return render_template(
        "consortia/discussion.html",
        **_common(consortium, "discussion"),
        messages=workspace.messages_of(db, consortium),
    )


@bp.route("/groupements/<int:consortium_id>/documents", methods=["GET", "POST"])
@access(Access.MEMBER)
def documents(consortium_id: int) -> str | Response:
    db = db_session()
    consortium = _workspace(consortium_id)
    if request.method == "POST":
        filename, data = read_upload(request.files.get("file"))
        return _run(
            lambda: workspace.upload_shared_document(
                db,
                storage(),
                consortium,
                title=request.form.get("title"),
                document_id=_int("document_id"),
                filename=filename,
                data=data,
                max_bytes=uploads().max_bytes,
                by=current_user,
                now=_now(),
            ),
            "Document déposé.",
            _to(consortium_id, "consortia.documents"),
        )
    return render_template(
        "consortia/documents.html",
        **_common(consortium, "documents"),
        documents=workspace.documents_of(db, consortium),
        max_mb=uploads().max_bytes // (1024 * 1024),
    )


@bp.route("/groupements/<int:consortium_id>/documents/<int:version_id>")
@access(Access.MEMBER)
def document_download(consortium_id: int, version_id: int) -> Response:
    db = db_session()
    consortium = _workspace(consortium_id)
    try:
        version = workspace.document_version(db, consortium, version_id)
        data = storage().open(version.storage_key)
    except NotFound:
        abort(404)
    response = send_file(
        io.BytesIO(data),
        mimetype=version.content_type,
        as_attachment=True,
        download_name=download_name(version),  # type: ignore[arg-type]
        etag=False,
        max_age=0,
    )
    response.headers["Cache-Control"] = "private, no-store"
    response.headers["Content-Security-Policy"] = "default-src 'none'; sandbox"
    return response


# --------------------------------------------------------------------------- mémoire technique


@bp.route("/groupements/<int:consortium_id>/memoire", methods=["GET", "POST"])
@access(Access.MEMBER)
def memoire(consortium_id: int) -> str | Response:
    db = db_session()
    consortium = _workspace(consortium_id)
    if request.method == "POST":
        return _run(
            lambda: workspace.add_section(
                db,
                consortium,
                title=request.form.get("title", ""),
                assignee_firm_id=_int("assignee_firm_id"),
                by=current_user,
                now=_now(),
            ),
            "Section ajoutée.",
            _to(consortium_id, "consortia.memoire"),
        )
    return render_template(
        "consortia/memoire.html",
        **_common(consortium, "memoire"),
        render=workspace.render_markdown,
        SectionStatus=SectionStatus,
    )


@bp.route("/groupements/<int:consortium_id>/memoire/<int:section_id>", methods=["GET", "POST"])
@access(Access.MEMBER)
def section(consortium_id: int, section_id: int) -> str | tuple[str, int] | Response:
    db = db_session()
    consortium = _workspace(consortium_id)
    current = next((s for s in consortium.sections if s.id == section_id), None)
    if current is None:
        abort(404)
    conflict: dict[str, Any] | None = None
    error: str | None = None
    draft: dict[str, Any] | None = None
    refused: DomainError | None = None
    if request.method == "POST":
        draft = {
            "title": request.form.get("title", ""),
            "body": request.form.get("body", ""),
            "status": request.form.get("status", ""),
            "assignee_firm_id": _int("assignee_firm_id"),
        }
        values = dict(draft)
        refused = _save(
            lambda: workspace.save_section(
                db,
                consortium,
                section_id,
                version=_int("version") or 0,
                by=current_user,
                now=_now(),
                **values,
            )
        )
        if refused is None:
            flash("Section enregistrée.", "success")
            return redirect(_to(consortium_id, "consortia.memoire", anchor=f"section-{section_id}"))
        if isinstance(refused, services.EditConflict):
            conflict = {"message": refused.message, **refused.current}
        else:
            error = refused.message
        consortium = _workspace(consortium_id)
        current = next(s for s in consortium.sections if s.id == section_id)
    body = render_template(
        "consortia/section.html",
        **_common(consortium, "memoire"),
        section=current,
        draft=draft,
        conflict=conflict,
        error=error,
        render=workspace.render_markdown,
        SectionStatus=SectionStatus,
    )
    return body, _status(refused)


@bp.route("/groupements/<int:consortium_id>/memoire/<int:section_id>/action", methods=["POST"])
@access(Access.FIRM)
def section_action(consortium_id: int, section_id: int) -> Response:
    db = db_session()
    consortium = _workspace(consortium_id)
    action = request.form.get("action")
    back = _to(consortium_id, "consortia.memoire")
    if action == "delete":
        return _run(
            lambda: workspace.delete_section(db, consortium, section_id, by=current_user, now=_now()),
            "Section supprimée.",
            back,
        )
    if action in ("up", "down"):
        return _run(
            lambda: workspace.move_section(db, consortium, section_id, up=action == "up", by=current_user),
            None,
            back,
        )
    abort(400)


# --------------------------------------------------------------------------- checklist


@bp.route("/groupements/<int:consortium_id>/checklist", methods=["POST"])
@access(Access.FIRM)
def checklist_add(consortium_id: int) -> Response:
    db = db_session()
    consortium = _workspace(consortium_id)
    raw_due = request.form.get("due_on", "").strip()
    try:
        due = dt.date.fromisoformat(raw_due) if raw_due else None
    except ValueError:
        flash("Indiquez la date au format jj/mm/aaaa.", "error")
        return redirect(_to(consortium_id, anchor="checklist"))
    days = request.form.get("days_before", "").strip()
    return _run(
        lambda: workspace.add_checklist_item(
            db,
            consortium,
            title=request.form.get("title", ""),
            days_before=int(days) if days.isdigit() else None,
            due=due,
            assignee_firm_id=_int("assignee_firm_id"),
            by=current_user,
        ),
        "Étape ajoutée.",
        _to(consortium_id, anchor="checklist"),
    )


@bp.route("/groupements/<int:consortium_id>/checklist/<int:item_id>", methods=["POST"])
@access(Access.FIRM)
def checklist_toggle(consortium_id: int, item_id: int) -> Response:
    db = db_session()
    consortium = _workspace(consortium_id)
    return _run(
        lambda: workspace.toggle_checklist_item(db, consortium, item_id, by=current_user, now=_now()),
        None,
        _to(consortium_id, anchor="checklist"),
    )


# --------------------------------------------------------------------------- staff, notice rules


@bp.route("/groupements/<int:consortium_id>/referent", methods=["POST"])
@access(Access.STAFF)
def facilitator(consortium_id: int) -> Response:
    db = db_session()
    consortium = _workspace(consortium_id)
    attach = request.form.get("attach") == "1"
    return _run(
        lambda: services.attach_facilitator(db, consortium, by=current_user, attach=attach, now=_now()),
        "Vous êtes le référent CCI de ce groupement." if attach else "Vous n'êtes plus référent.",
        _to(consortium_id),
    )


@bp.route("/avis/<int:notice_id>/offres-multiples", methods=["POST"])
@access(Access.STAFF)
def multiple_bids(notice_id: int) -> Response:
    db = db_session()
    notice = db.get(Notice, notice_id)
    if notice is None:
        abort(404)
    forbidden = request.form.get("forbidden") == "1"
    return _run(
        lambda: services.set_multiple_bids_rule(
            db, notice, forbidden=forbidden, by=current_user, ip=client_ip(), now=_now()
        ),
        "Règle enregistrée : "
        + (
            "le règlement interdit les candidatures multiples."
            if forbidden
            else "candidatures multiples permises."
        ),
        url_for("notices.detail", notice_id=notice_id) + "#groupements",
    )


@bp.route("/avis/<int:notice_id>/candidature-seule", methods=["POST"])
@access(Access.FIRM)
def solo_bid(notice_id: int) -> Response:
    db = db_session()
    notice = db.get(Notice, notice_id)
    if notice is None:
        abort(404)
    back = url_for("notices.detail", notice_id=notice_id) + "#groupements"
    if request.form.get("action") == "withdraw":
        return _run(
            lambda: services.withdraw_solo_bid(db, notice, by=current_user), "Déclaration retirée.", back
        )
    try:
        warnings = services.declare_solo_bid(
            db, notice, lots=request.form.getlist("lots"), by=current_user, now=_now()
        )
    except DomainError as exc:
        db.rollback()
        flash(exc.message, "error")
        return redirect(back)
    db.commit()
    flash("C'est noté : votre entreprise répond seule à ces lots.", "success")
    for text in warnings:
        flash(
            f"Attention : votre entreprise est aussi {text}. C'est permis, sauf si le règlement l'interdit.",
            "warning",
        )
    return redirect(back)
