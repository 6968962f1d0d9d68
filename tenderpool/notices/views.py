"""Notice pages: browse and search, the notice page, following, saved searches, and staff curation."""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import re
from decimal import Decimal
from typing import Any
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

from flask import Blueprint, abort, flash, jsonify, redirect, render_template, request, url_for
from flask_login import current_user
from sqlalchemy import func, select
from sqlalchemy.orm import selectinload
from werkzeug.wrappers import Response

from tenderpool.accounts.models import AuditEvent
from tenderpool.errors import DomainError, NotFound, ValidationError
from tenderpool.firms.matching import staff_notice_matches
from tenderpool.notices import curation, services
from tenderpool.notices.forms import EditNoticeForm, ManualNoticeForm
from tenderpool.notices.models import Notice, NoticeCpv, NoticeDepartment, Publication
from tenderpool.notices.scrape import last_runs
from tenderpool.notices.search import CONTRACT_TYPES, SearchQuery, search_notices
from tenderpool.pagination import paginate
from tenderpool.reference import cpv_codes, cpv_label, departments
from tenderpool.web import Access, access, client_ip, current_membership, db_session, settings

bp = Blueprint("notices", __name__)
PARIS = ZoneInfo("Europe/Paris")
PER_PAGE = 20
CONTRACT_LABELS = {"works": "Travaux", "supplies": "Fournitures", "services": "Services"}
STATUS_LABELS = {"open": "Ouvert", "closed": "Clos", "awarded": "Attribué", "cancelled": "Annulé"}
SOURCE_LABELS = {
    "boamp": "BOAMP",
    "ted": "TED",
    "eforms": "eForms",
    "boamp-xml": "BOAMP (archive)",
    "manual": "Saisie CCI",
}


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _is_staff() -> bool:
    return bool(current_user.is_staff or current_user.is_admin)


def _firm_id() -> int | None:
    if not current_user.is_firm_user:
        return None
    membership = current_membership()
    return membership.firm_id if membership else None


def _int_arg(name: str, default: int = 1) -> int:
    raw = request.args.get(name, "")
    return int(raw) if raw.isdigit() and 0 < int(raw) < 100000 else default


@bp.app_template_filter("days_left")
def days_left(deadline: dt.datetime | None) -> str:
    """« dans 5 jours », « aujourd'hui », « clos depuis 3 jours »."""
    if deadline is None:
        return "date limite non précisée"
    now = _now()
    days = (deadline.astimezone(PARIS).date() - now.astimezone(PARIS).date()).days
    if deadline <= now:
        return "clos" if days == 0 else f"clos depuis {-days} jour{'s' if -days > 1 else ''}"
    if days == 0:
        return "aujourd'hui"
    if days == 1:
        return "demain"
    return f"dans {days} jours"


PROCEDURE_LABELS = {
    "open": "Procédure ouverte",
    "restricted": "Procédure restreinte",
    "adapted": "Procédure adaptée",
    "negotiated": "Procédure négociée",
    "negotiated-without-call": "Procédure négociée sans publicité",
    "competitive-dialogue": "Dialogue compétitif",
    "innovation": "Partenariat d'innovation",
    "innovation-partnership": "Partenariat d'innovation",
    "competitive-tendering": "Procédure concurrentielle avec négociation",
    "other-single-stage": "Autre procédure en une étape",
    "other-multiple-stage": "Autre procédure en plusieurs étapes",
}


@bp.app_template_filter("procedure_label")
def procedure_label(code: str | None) -> str:
    """The French name of a procedure code; a source's own label is shown as it is."""
    if not code:
        return "non renseignée"
    return PROCEDURE_LABELS.get(code, code)


@bp.app_template_filter("cpv_label")
def _cpv_label(code: str) -> str:
    return cpv_label(code) or "code inconnu"


def _search_context(query: SearchQuery) -> dict[str, Any]:
    return {
        "contract_labels": CONTRACT_LABELS,
        "status_labels": STATUS_LABELS,
        "source_labels": SOURCE_LABELS,
        "chamber_departments": settings().chamber_departments,
        "department_names": departments(),
        "query": query,
        "query_string": urlencode(query.to_args()),
    }


@bp.route("/avis")
@access(Access.MEMBER)
def browse() -> str | tuple[str, int]:
    db = db_session()
    try:
        query = SearchQuery.from_args(request.args)
    except ValueError as exc:
        message = getattr(exc, "message", str(exc))
        param = getattr(exc, "param", "")
        flash(f"Recherche incorrecte ({param}) : {message}", "error")
        return render_template("notices/browse.html", page=None, **_search_context(SearchQuery())), 400
    query = query.with_(include_rejected=False, firm_id=_firm_id())
    page = search_notices(db, query, now=_now(), page=_int_arg("page"), per_page=PER_PAGE)
    followed = set()
    if page.items:
        from tenderpool.notices.models import NoticeFollow

        followed = set(
            db.scalars(
                select(NoticeFollow.notice_id).where(
                    NoticeFollow.user_id == current_user.id,
                    NoticeFollow.notice_id.in_([n.id for n in page.items]),
                )
            )
        )
    return render_template("notices/browse.html", page=page, followed=followed, **_search_context(query))


@bp.route("/avis/<int:notice_id>")
@access(Access.MEMBER)
def detail(notice_id: int) -> str | Response:
    db = db_session()
    notice = db.get(Notice, notice_id)
    if notice is None or (notice.is_rejected and not _is_staff()):
        abort(404)
    if notice.merged_into_id:
        return redirect(url_for("notices.detail", notice_id=notice.merged_into_id), 301)
    firm_id = _firm_id()
    curation_events: list[AuditEvent] = []
    if _is_staff():
        curation_events = list(db.scalars(
            select(AuditEvent)
            .where(AuditEvent.target_type == "notice", AuditEvent.target_id == str(notice.id))
            .order_by(AuditEvent.at.desc()).limit(30)
        ))  # fmt: skip
    now = _now()
    recent = now - dt.timedelta(days=7)
    return render_template(
        "notices/detail.html",
        notice=notice,
        status=notice.status_at(now),
        status_labels=STATUS_LABELS,
        contract_labels=CONTRACT_LABELS,
        source_labels=SOURCE_LABELS,
        department_names=departments(),
        following=services.is_following(db, current_user.id, notice.id),
        dismissal=services.dismissal_of(db, firm_id, notice.id) if firm_id else None,
        dismiss_reasons=services.DISMISS_REASONS,
        tags=curation.tags_of(db, [notice.id]).get(notice.id, []),
        curation_events=curation_events,
        recent=recent,
        is_staff=_is_staff(),
        firm_id=firm_id,
        editable_fields=curation.EDITABLE_FIELDS,
        firm_matches=staff_notice_matches(db, notice, current_user) if _is_staff() else None,
    )


def _back_to_notice(notice_id: int) -> Response:
    return redirect(url_for("notices.detail", notice_id=notice_id))


def _member_notice(notice_id: int) -> Notice:
    notice = db_session().get(Notice, notice_id)
    if notice is None or notice.merged_into_id or (notice.is_rejected and not _is_staff()):
        abort(404)
    return notice


@bp.route("/avis/<int:notice_id>/suivre", methods=["POST"])
@access(Access.MEMBER)
def follow(notice_id: int) -> Response:
    notice = _member_notice(notice_id)
    db = db_session()
    services.follow(db, current_user.id, notice, now=_now())
    db.commit()
    flash("Avis ajouté à vos avis suivis. Vous serez prévenu de ses changements.", "success")
    return _back_to_notice(notice_id)


@bp.route("/avis/<int:notice_id>/ne-plus-suivre", methods=["POST"])
@access(Access.MEMBER)
def unfollow(notice_id: int) -> Response:
    notice = _member_notice(notice_id)
    db = db_session()
    services.unfollow(db, current_user.id, notice)
    db.commit()
    flash("Vous ne suivez plus cet avis.", "info")
    return _back_to_notice(notice_id)


@bp.route("/avis/<int:notice_id>/pas-interesse", methods=["POST"])
@access(Access.FIRM)
def dismiss(notice_id: int) -> Response:
    notice = _member_notice(notice_id)
    db = db_session()
    firm_id = _firm_id()
    if firm_id is None:
        abort(403)
    try:
        services.dismiss(
            db,
            firm_id,
            notice,
            by_id=current_user.id,
            reason=request.form.get("reason", ""),
            comment=request.form.get("comment"),
            now=_now(),
        )
    except DomainError as exc:
        db.rollback()
        flash(exc.message, "error")
    else:
        db.commit()
        flash("C'est noté : cet avis ne vous sera plus proposé.", "info")
    return _back_to_notice(notice_id)


@bp.route("/avis/<int:notice_id>/interesse", methods=["POST"])
@access(Access.FIRM)
def undismiss(notice_id: int) -> Response:
    notice = _member_notice(notice_id)
    db = db_session()
    firm_id = _firm_id()
    if firm_id is None:
        abort(403)
    services.undismiss(db, firm_id, notice)
    db.commit()
    flash("Cet avis vous sera de nouveau proposé.", "info")
    return _back_to_notice(notice_id)


@bp.route("/suivis")
@access(Access.MEMBER)
def watchlist() -> str:
    db = db_session()
    user_ids = [current_user.id]
    if current_user.is_firm_user:
        membership = current_membership()
        if membership is not None:
            from tenderpool.firms.models import FirmMembership

            user_ids = list(
                db.scalars(select(FirmMembership.user_id).where(FirmMembership.firm_id == membership.firm_id))
            )
    page = paginate(db, services.followed_notices_query(user_ids), request.args.get("page"))
    return render_template("notices/watchlist.html", page=page, now=_now(), status_labels=STATUS_LABELS,
                           source_labels=SOURCE_LABELS)  # fmt: skip


@bp.route("/recherches")
@access(Access.MEMBER)
def saved_searches() -> str:
    searches = services.saved_searches(db_session(), current_user.id)
    return render_template("notices/saved_searches.html", searches=searches)


@bp.route("/recherches", methods=["POST"])
@access(Access.MEMBER)
def save_search() -> Response:
    db = db_session()
    raw_query = request.form.get("query", "")
    try:
        # Store the canonical form: it also proves the saved query is valid.
        query = SearchQuery.from_args(_parse_qs(raw_query))
        services.save_search(
            db,
            current_user.id,
            name=request.form.get("name", ""),
            query=urlencode(query.to_args()),
            now=_now(),
        )
    except (DomainError, ValueError) as exc:
        db.rollback()
        flash(getattr(exc, "message", str(exc)), "error")
        return redirect(url_for("notices.browse") + ("?" + raw_query if raw_query else ""))
    db.commit()
    flash("Recherche enregistrée : ses nouveaux avis figureront dans votre courriel quotidien.", "success")
    return redirect(url_for("notices.saved_searches"))


def _parse_qs(raw: str) -> dict[str, list[str]]:
    from urllib.parse import parse_qs

    return parse_qs(raw, keep_blank_values=False)


@bp.route("/recherches/<int:search_id>/supprimer", methods=["POST"])
@access(Access.MEMBER)
def delete_saved_search(search_id: int) -> Response:
    db = db_session()
    try:
        services.delete_saved_search(db, current_user.id, search_id)
    except NotFound:
        abort(404)
    db.commit()
    flash("Recherche supprimée.", "info")
    return redirect(url_for("notices.saved_searches"))


@bp.route("/cpv")
@access(Access.USER)
def cpv_lookup() -> Response:
    """The CPV picker's look-up: codes whose number or French label contains the words typed."""
    q = " ".join((request.args.get("q") or "").split())[:80]
    if len(q) < 2:
        return jsonify([])
    folded = _fold(q)
    words = folded.split()
    results = []
    for code, cpv in cpv_codes().items():
        if code.startswith(q.replace(" ", "")) or all(w in _folded_label(code) for w in words):
            results.append({"code": code, "label": cpv.label_fr, "level": cpv.level})
            if len(results) >= 30:
                break
    results.sort(key=lambda r: (r["level"], r["code"]))
    return jsonify(results)


def _fold(text: str) -> str:
    from tenderpool.notices.ingest import fold_text

    return fold_text(text)


_FOLDED: dict[str, str] = {}


def _folded_label(code: str) -> str:
    if not _FOLDED:
        _FOLDED.update({c: _fold(v.label_fr) for c, v in cpv_codes().items()})
    return _FOLDED[code]


# --------------------------------------------------------------------------- staff


QUEUE_STATES = {"new": "À traiter", "featured": "Mis en avant", "rejected": "Rejetés", "all": "Tous"}


@bp.route("/equipe/avis")
@access(Access.STAFF)
def queue() -> str | tuple[str, int]:
    """New notices of the chambers' territory, newest first, with filters and bulk actions."""
    db = db_session()
    state = request.args.get("etat", "new")
    if state not in QUEUE_STATES:
        state = "new"
    stmt = select(Notice).where(Notice.merged_into_id.is_(None))
    territory = settings().chamber_departments
    stmt = stmt.where(
        select(NoticeDepartment.notice_id)
        .where(NoticeDepartment.notice_id == Notice.id, NoticeDepartment.department.in_(territory)).exists()
        | Notice.is_manual.is_(True)
    )  # fmt: skip
    if state == "new":
        stmt = stmt.where(Notice.is_featured.is_(False), Notice.is_rejected.is_(False))
    elif state == "featured":
        stmt = stmt.where(Notice.is_featured.is_(True))
    elif state == "rejected":
        stmt = stmt.where(Notice.is_rejected.is_(True))
    filters = {k: request.args.get(k, "") for k in ("source", "dep", "division", "type", "status")}
    if filters["source"] in SOURCE_LABELS:
        if filters["source"] == "manual":
            stmt = stmt.where(Notice.is_manual.is_(True))
        else:
            stmt = stmt.where(
                select(Publication.id)
                .where(Publication.notice_id == Notice.id, Publication.source == filters["source"])
                .exists()
            )
    if filters["dep"] in territory:
        stmt = stmt.where(
            select(NoticeDepartment.notice_id)
            .where(NoticeDepartment.notice_id == Notice.id, NoticeDepartment.department == filters["dep"])
            .exists()
        )
    if re.fullmatch(r"\d{2}", filters["division"]):
        stmt = stmt.where(
            select(NoticeCpv.notice_id)
            .where(NoticeCpv.notice_id == Notice.id, NoticeCpv.cpv.startswith(filters["division"]))
            .exists()
        )
    if filters["type"] in CONTRACT_TYPES:
        stmt = stmt.where(Notice.contract_type == filters["type"])
    now = _now()
    if filters["status"] == "open":
        stmt = stmt.where(Notice.status == "open", Notice.deadline_at.is_(None) | (Notice.deadline_at > now))
    elif filters["status"] == "closed":
        stmt = stmt.where(Notice.status == "open", Notice.deadline_at <= now)
    elif filters["status"] in ("awarded", "cancelled"):
        stmt = stmt.where(Notice.status == filters["status"])
    stmt = stmt.order_by(Notice.created_at.desc(), Notice.id.desc()).options(
        selectinload(Notice.lots), selectinload(Notice.publications), selectinload(Notice.department_links)
    )
    page = paginate(db, stmt, request.args.get("page"), per_page=30)
    divisions = sorted({c[:2] for c in cpv_codes()})
    return render_template(
        "notices/queue.html", page=page, state=state, states=QUEUE_STATES, filters=filters,
        territory=territory,
        divisions=divisions, source_labels=SOURCE_LABELS, contract_labels=CONTRACT_LABELS,
        status_labels=STATUS_LABELS,
        tags=curation.tags_of(db, [n.id for n in page.items]), now=now, department_names=departments(),
        cpv_division_label=lambda d: cpv_label(d + "000000") or d,
    )  # fmt: skip


def _queue_redirect() -> Response:
    target = request.form.get("next") or ""
    if target.startswith("/equipe/avis") and "//" not in target:
        return redirect(target)
    return redirect(url_for("notices.queue"))


@bp.route("/equipe/avis/actions", methods=["POST"])
@access(Access.STAFF)
def bulk() -> Response:
    db = db_session()
    action = request.form.get("action", "")
    ids = [int(i) for i in request.form.getlist("ids") if i.isdigit()]
    try:
        notices = curation.load_for_staff(db, ids)
        count = _run_action(action, notices)
    except DomainError as exc:
        db.rollback()
        flash(exc.message, "error")
    else:
        db.commit()
        flash(f"{count} avis traité{'s' if count > 1 else ''}.", "success")
    return _queue_redirect()


def _run_action(action: str, notices: list[Notice]) -> int:
    db, now, ip = db_session(), _now(), client_ip()
    if action == "feature":
        return curation.feature(
            db, notices, by=current_user, note=request.form.get("note", ""), now=now, ip=ip
        )
    if action == "reject":
        return curation.reject(
            db, notices, by=current_user, reason=request.form.get("reason", ""), now=now, ip=ip
        )
    if action == "tag":
        tags = curation.parse_tags(request.form.get("tags", ""))
        return curation.tag(db, notices, by=current_user, tags=tags, now=now, ip=ip)
    raise ValidationError("Choisissez une action.")


@bp.route(
    "/equipe/avis/<int:notice_id>/<any(feature, unfeature, reject, restore, tag, untag):action>",
    methods=["POST"],
)
@access(Access.STAFF)
def curate(notice_id: int, action: str) -> Response:
    db = db_session()
    notice = _member_notice(notice_id)
    now, ip = _now(), client_ip()
    try:
        if action in ("feature", "reject", "tag"):
            _run_action(action, [notice])
        elif action == "unfeature":
            curation.unfeature(db, notice, by=current_user, now=now, ip=ip)
        elif action == "restore":
            curation.restore(db, notice, by=current_user, now=now, ip=ip)
        else:
            curation.untag(db, notice, by=current_user, tag_name=request.form.get("tag", ""), now=now, ip=ip)
    except DomainError as exc:
        db.rollback()
        flash(exc.message, "error")
    else:
        db.commit()
        flash("C'est fait.", "success")
    return _back_to_notice(notice_id)


def _deadline_from(form: EditNoticeForm | ManualNoticeForm) -> dt.datetime | None:
    if not form.deadline_date.data:
        return None
    time = form.deadline_time.data or dt.time(12, 0)
    return dt.datetime.combine(form.deadline_date.data, time, tzinfo=PARIS)


def _departments_from(raw: str | None) -> list[str]:
    values = [d.strip().upper() for d in (raw or "").split(",") if d.strip()]
    known = departments()
    for value in values:
        if value not in known:
            raise ValidationError(f"Département inconnu : {value[:5]}.", field="departments")
    return sorted(set(values))


@bp.route("/equipe/avis/<int:notice_id>/modifier", methods=["GET", "POST"])
@access(Access.STAFF)
def edit(notice_id: int) -> str | Response:
    db = db_session()
    notice = _member_notice(notice_id)
    form = EditNoticeForm(obj=notice if request.method == "GET" else None)
    if request.method == "GET":
        if notice.deadline_at:
            local = notice.deadline_at.astimezone(PARIS)
            form.deadline_date.data, form.deadline_time.data = local.date(), local.time()
        form.departments.data = ", ".join(notice.departments)
        form.cpv.data = ", ".join(notice.cpv)
        form.contract_type.data = notice.contract_type or ""
    if form.validate_on_submit():
        try:
            changes = {
                "title": form.title.data, "buyer_name": form.buyer_name.data,
                "buyer_siret": (form.buyer_siret.data or "").replace(" ", "") or None,
                "description": form.description.data or None, "deadline_at": _deadline_from(form),
                "estimated_value": form.estimated_value.data,
                "contract_type": form.contract_type.data or None,
                "dce_url": form.dce_url.data or None, "departments": _departments_from(form.departments.data),
                "cpv": curation.clean_cpv_list((form.cpv.data or "").split(",")),
            }  # fmt: skip
            edited = curation.edit(db, notice, changes, by=current_user, now=_now(), ip=client_ip())
        except DomainError as exc:
            db.rollback()
            flash(exc.message, "error")
        else:
            db.commit()
            _reindex([notice.id])
            names = ", ".join(curation.EDITABLE_FIELDS[f] for f in edited) or "aucun champ"
            flash(
                f"Modifié : {names}. Ces champs ne seront pas écrasés par une prochaine collecte.", "success"
            )
            return _back_to_notice(notice_id)
    return render_template("notices/edit.html", form=form, notice=notice)


def _reindex(ids: list[int]) -> None:
    from tenderpool.notices.search import refresh_search_index

    db = db_session()
    refresh_search_index(db, ids)
    db.commit()


@bp.route("/equipe/avis/<int:notice_id>/conflit/<field>", methods=["POST"])
@access(Access.STAFF)
def resolve_conflict(notice_id: int, field: str) -> Response:
    db = db_session()
    notice = _member_notice(notice_id)
    try:
        curation.resolve_conflict(
            db,
            notice,
            field,
            keep_edit=request.form.get("keep") == "edit",
            by=current_user,
            now=_now(),
            ip=client_ip(),
        )
    except NotFound:
        abort(404)
    except DomainError as exc:
        db.rollback()
        flash(exc.message, "error")
    else:
        db.commit()
        flash("Conflit résolu.", "success")
    return _back_to_notice(notice_id)


@bp.route("/equipe/avis/<int:notice_id>/fusionner", methods=["POST"])
@access(Access.STAFF)
def merge(notice_id: int) -> Response:
    db = db_session()
    survivor = _member_notice(notice_id)
    raw = request.form.get("duplicate_id", "").strip().lstrip("#")
    duplicate = db.get(Notice, int(raw)) if raw.isdigit() else None
    if duplicate is None:
        flash("Indiquez le numéro de l'avis en double.", "error")
        return _back_to_notice(notice_id)
    try:
        curation.merge(db, survivor, duplicate, by=current_user, now=_now(), ip=client_ip())
    except DomainError as exc:
        db.rollback()
        flash(exc.message, "error")
    else:
        db.commit()
        _reindex([survivor.id, duplicate.id])
        flash(f"L'avis n° {duplicate.id} est fusionné dans celui-ci.", "success")
    return _back_to_notice(notice_id)


@bp.route("/equipe/avis/<int:notice_id>/scinder/<int:publication_id>", methods=["POST"])
@access(Access.STAFF)
def split(notice_id: int, publication_id: int) -> Response:
    db = db_session()
    notice = _member_notice(notice_id)
    publication = db.get(Publication, publication_id)
    if publication is None:
        abort(404)
    try:
        fresh = curation.split(db, notice, publication, by=current_user, now=_now(), ip=client_ip())
    except NotFound:
        abort(404)
    except DomainError as exc:
        db.rollback()
        flash(exc.message, "error")
        return _back_to_notice(notice_id)
    db.commit()
    _reindex([notice_id, fresh.id])
    flash(f"La publication forme désormais l'avis n° {fresh.id}.", "success")
    return redirect(url_for("notices.detail", notice_id=fresh.id))


def _manual_lots(raw: str | None) -> list[curation.ManualLot]:
    lots = []
    for number, line in enumerate((raw or "").splitlines(), start=1):
        if not line.strip():
            continue
        parts = [p.strip() for p in line.split(";")]
        parts += [""] * (4 - len(parts))
        value = None
        if parts[3]:
            try:
                value = Decimal(parts[3].replace(" ", "").replace(",", "."))
            except ArithmeticError:
                raise ValidationError(f"Lot {parts[0] or number} : montant invalide.", field="lots") from None
        lots.append(curation.ManualLot(
            number=parts[0] or str(number), title=parts[1] or None,
            cpv=curation.clean_cpv_list(parts[2].replace(",", " ").split()), estimated_value=value,
        ))  # fmt: skip
    return lots


@bp.route("/equipe/avis/nouveau", methods=["GET", "POST"])
@access(Access.STAFF)
def create_manual() -> str | Response:
    db = db_session()
    form = ManualNoticeForm()
    if form.validate_on_submit():
        try:
            notice = curation.create_manual(
                db, by=current_user, title=form.title.data or "", buyer_name=form.buyer_name.data or "",
                buyer_siret=(form.buyer_siret.data or "").replace(" ", "") or None, url=form.url.data or "",
                dce_url=form.dce_url.data or None, description=form.description.data or None,
                deadline_at=_deadline_from(form), estimated_value=form.estimated_value.data,
                contract_type=form.contract_type.data or None,
                departments=_departments_from(form.departments.data),
                cpv=curation.clean_cpv_list((form.cpv.data or "").split(",")),
                lots=_manual_lots(form.lots.data),
                procedure_id=form.procedure_id.data, now=_now(), ip=client_ip(),
            )  # fmt: skip
        except DomainError as exc:
            db.rollback()
            flash(exc.message, "error")
        else:
            db.commit()
            flash("Avis ajouté au fonds commun.", "success")
            return _back_to_notice(notice.id)
    return render_template("notices/manual.html", form=form)


@bp.route("/equipe/quarantaine")
@access(Access.STAFF)
def quarantine() -> str:
    db = db_session()
    stmt = (
        select(Publication).where(Publication.state == "quarantined").order_by(Publication.created_at.desc())
    )
    page = paginate(db, stmt, request.args.get("page"), per_page=50)
    waiting = (
        db.scalar(select(func.count()).select_from(Publication).where(Publication.state == "waiting")) or 0
    )
    return render_template("notices/quarantine.html", page=page, waiting=waiting)


@bp.route("/equipe/quarantaine/<int:publication_id>")
@access(Access.STAFF)
def quarantine_detail(publication_id: int) -> str:
    db = db_session()
    publication = db.get(Publication, publication_id)
    if publication is None:
        abort(404)
    payload = services.raw_record_of(publication).payload
    text = payload.decode("utf-8", errors="replace")
    if publication.content_type == "application/json":
        with contextlib.suppress(ValueError):  # an unreadable payload is shown as it is
            text = json.dumps(json.loads(text), ensure_ascii=False, indent=2)
    return render_template("notices/quarantine_detail.html", publication=publication, payload=text[:200_000])


@bp.route("/equipe/quarantaine/reessayer", methods=["POST"])
@access(Access.STAFF)
def retry_quarantine() -> Response:
    """Parse quarantined records again (after a parser fix)."""
    db = db_session()
    raw_id = request.form.get("publication_id", "")
    ids = [int(raw_id)] if raw_id.isdigit() else None
    stats = services.reparse(db, now=_now(), quarantined_only=True, publication_ids=ids)
    db.commit()
    fixed = stats.read - stats.rejected
    flash(
        f"{stats.read} enregistrement(s) analysé(s) de nouveau : {fixed} accepté(s), "
        f"{stats.rejected} toujours en quarantaine.",
        "success" if fixed else "info",
    )
    return redirect(url_for("notices.quarantine"))


@bp.route("/equipe/collectes")
@access(Access.STAFF)
def runs() -> str:
    db = db_session()
    by_source = {name: last_runs(db, name, limit=15) for name in ("boamp", "ted")}
    from tenderpool.notices.models import SourceCursor

    cursors = {c.source: c for c in db.scalars(select(SourceCursor))}
    return render_template(
        "notices/runs.html", by_source=by_source, cursors=cursors, source_labels=SOURCE_LABELS
    )
