"""Firm profile pages, documents and the partner directory."""

from __future__ import annotations

import datetime as dt
import io
from collections.abc import Callable
from typing import Any, TypeVar
from zoneinfo import ZoneInfo

from flask import (
    Blueprint,
    abort,
    flash,
    g,
    redirect,
    render_template,
    request,
    send_file,
    url_for,
)
from flask_login import current_user
from werkzeug.wrappers import Response
from wtforms import SelectChoice

from tenderpool.accounts.forms import EmptyForm
from tenderpool.accounts.services import record_audit
from tenderpool.errors import DomainError, NotFound, ValidationError
from tenderpool.firms import documents, profile
from tenderpool.firms.models import Firm, FirmMembership
from tenderpool.firms.profile import PROFILE_PATHS
from tenderpool.firms.profile_forms import (
    CapacitiesForm,
    CertificationForm,
    DirectorySettingsForm,
    DocumentForm,
    IdentityForm,
    ReferenceForm,
    SkillsForm,
)
from tenderpool.firms.services import get_firm_for_staff
from tenderpool.reference import cpv_label, departments
from tenderpool.web import (
    Access,
    access,
    client_ip,
    current_membership,
    db_session,
    read_upload,
    settings,
    storage,
    uploads,
)

bp = Blueprint("profiles", __name__)
PARIS = ZoneInfo("Europe/Paris")
PER_PAGE = 20
F = TypeVar("F")


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _today() -> dt.date:
    # Validity dates are calendar days in France.
    return _now().astimezone(PARIS).date()


_uploads = uploads
_storage = storage


def _membership() -> FirmMembership:
    membership: FirmMembership = g.membership
    return membership


def _firm() -> Firm:
    return _membership().firm


def _show_error(form: Any, exc: DomainError) -> None:
    """Put a service's message on the field it concerns, or flash it."""
    target = getattr(form, exc.field, None) if exc.field else None
    if target is not None and hasattr(target, "errors"):
        target.errors = [*target.errors, exc.message]
    else:
        flash(exc.message, "error")


def _not_found_or(call: Callable[[], F]) -> F:
    try:
        return call()
    except NotFound:
        abort(404)


_read_upload = read_upload


def _commit_or_forget(keys: list[str]) -> None:
    """Commit; if that fails, the files stored for the rolled-back rows are deleted."""
    db = db_session()
    try:
        db.commit()
    except Exception:
        db.rollback()
        for key in keys:
            documents.forget_stored(_storage(), key)
        raise


def _status() -> int:
    """A form page shown again after a POST is an answer to a refused submission."""
    return 400 if request.method == "POST" else 200


# --------------------------------------------------------------------------- profile page


def _profile_context(firm: Firm, *, readonly: bool) -> dict[str, Any]:
    today = _today()
    percent, missing = profile.profile_completeness(firm, today=today)
    current = documents.current_documents(list(firm.documents))
    return {
        "firm": firm,
        "readonly": readonly,
        "today": today,
        "percent": percent,
        "missing": missing,
        "vat": profile.vat_number(firm.siren),
        "legal_form": profile.legal_form_label(firm.legal_form_code),
        "department_names": departments(),
        "years": {row.year: row for row in firm.years},
        "financial_years": profile.financial_years(today),
        "zone": profile.zone_text(firm),
        "alerts": documents.expiring_documents(db_session(), firm, today=today),
        "current_ids": {d.id for d in current},
        "kinds": documents.DOCUMENT_KINDS,
        "roles": profile.REFERENCE_ROLES,
        "directory_fields": profile.DIRECTORY_FIELDS,
        "status_of": lambda d: documents.document_status(d, today),
        "chamber": settings().chamber(firm.chamber_slug),
        "delete_form": EmptyForm(),
    }


@bp.route(PROFILE_PATHS["profile"])
@access(Access.FIRM)
def profile_page() -> str:
    return render_template(
        "profiles/profile.html", membership=_membership(), **_profile_context(_firm(), readonly=False)
    )


@bp.route("/equipe/entreprises/<int:firm_id>/profil")
@access(Access.STAFF)
def staff_profile(firm_id: int) -> str:
    """The profile as the firm's chamber sees it (read only, figures included)."""
    firm = _not_found_or(lambda: get_firm_for_staff(db_session(), current_user, firm_id))
    return render_template("profiles/profile.html", membership=None, **_profile_context(firm, readonly=True))


# --------------------------------------------------------------------------- identity, skills, capacities


@bp.route(PROFILE_PATHS["identity"], methods=["GET", "POST"])
@access(Access.FIRM)
def identity() -> str | Response | tuple[str, int]:
    firm = _firm()
    form = IdentityForm(
        data={
            "name": firm.name,
            "legal_form_code": firm.legal_form_code or "",
            "naf_code": firm.naf_code or "",
            "address": firm.address,
            "postcode": firm.postcode,
            "city": firm.city,
            "website": firm.website or "",
            "description": firm.description or "",
            "is_sme": None if firm.is_sme is None else ("yes" if firm.is_sme else "no"),
        }
    )
    if form.validate_on_submit():
        db = db_session()
        try:
            profile.update_identity(
                db,
                firm,
                by=current_user,
                name=form.name.data,
                legal_form_code=form.legal_form_code.data,
                naf_code=form.naf_code.data,
                address=form.address.data,
                postcode=form.postcode.data,
                city=form.city.data,
                website=form.website.data,
                description=form.description.data,
                is_sme={"yes": True, "no": False}.get(form.is_sme.data or ""),
                chamber_departments=settings().chamber(firm.chamber_slug).departments,
                ip=client_ip(),
                now=_now(),
            )
        except DomainError as exc:
            db.rollback()
            _show_error(form, exc)
        else:
            db.commit()
            flash("Identité enregistrée.", "success")
            return redirect(url_for("profiles.profile_page") + "#identite")
    return render_template(
        "profiles/identity.html",
        form=form,
        firm=firm,
        vat=profile.vat_number(firm.siren),
        common_forms=profile.common_legal_forms(),
        legal_forms=profile.legal_forms(),
    ), _status()


@bp.route(PROFILE_PATHS["skills"], methods=["GET", "POST"])
@access(Access.FIRM)
def skills() -> str | Response | tuple[str, int]:
    firm = _firm()
    form = SkillsForm(data={"cpv": ", ".join(firm.cpv), "keywords": ", ".join(firm.keywords or [])})
    if form.validate_on_submit():
        db = db_session()
        try:
            profile.update_skills(
                db,
                firm,
                by=current_user,
                cpv=form.cpv.data,
                keywords=form.keywords.data,
                ip=client_ip(),
                now=_now(),
            )
        except DomainError as exc:
            db.rollback()
            _show_error(form, exc)
        else:
            db.commit()
            flash("Compétences enregistrées.", "success")
            return redirect(url_for("profiles.profile_page") + "#competences")
    return render_template(
        "profiles/skills.html", form=form, firm=firm, cpv_labels={c: cpv_label(c) for c in firm.cpv}
    ), _status()


def _by_field_text(row: Any) -> str:
    if row is None or not row.turnover_by_field:
        return ""
    return "\n".join(f"{division} : {amount}" for division, amount in sorted(row.turnover_by_field.items()))


@bp.route(PROFILE_PATHS["capacities"], methods=["GET", "POST"])
@access(Access.FIRM)
def capacities() -> str | Response | tuple[str, int]:
    firm = _firm()
    years = profile.financial_years(_today())
    rows = {row.year: row for row in firm.years}
    initial: dict[str, Any] = {
        "equipment": firm.equipment or "",
        "zone_kind": "departments" if firm.zone_departments else ("radius" if firm.zone_radius_km else ""),
        "zone_departments": ", ".join(firm.zone_departments or []),
        "zone_radius_km": str(firm.zone_radius_km or ""),
    }
    for index, year in enumerate(years, start=1):
        row = rows.get(year)
        turnover = row.turnover if row is not None else None
        headcount = row.headcount if row is not None else None
        initial[f"y{index}_turnover"] = "" if turnover is None else f"{turnover:f}"
        initial[f"y{index}_headcount"] = "" if headcount is None else str(headcount)
        initial[f"y{index}_by_field"] = _by_field_text(row)
    form = CapacitiesForm(data=initial)
    for index, year in enumerate(years, start=1):
        getattr(form, f"y{index}_turnover").label.text = f"Chiffre d'affaires {year} (€ HT)"
        getattr(form, f"y{index}_headcount").label.text = f"Effectif moyen {year}"
        getattr(form, f"y{index}_by_field").label.text = f"Part du chiffre d'affaires par domaine en {year}"
    if form.validate_on_submit():
        db = db_session()
        entries = [
            profile.YearInput(
                year=year,
                turnover=getattr(form, f"y{index}_turnover").data,
                headcount=getattr(form, f"y{index}_headcount").data,
                by_field=getattr(form, f"y{index}_by_field").data,
            )
            for index, year in enumerate(years, start=1)
        ]
        try:
            profile.update_capacities(
                db,
                firm,
                by=current_user,
                years=entries,
                equipment=form.equipment.data,
                zone_kind=form.zone_kind.data,
                zone_departments=form.zone_departments.data,
                zone_radius_km=form.zone_radius_km.data,
                ip=client_ip(),
                now=_now(),
            )
        except DomainError as exc:
            db.rollback()
            _show_error(form, exc)
        else:
            db.commit()
            flash("Capacités enregistrées.", "success")
            return redirect(url_for("profiles.profile_page") + "#capacites")
    return render_template("profiles/capacities.html", form=form, firm=firm, years=years), _status()


# --------------------------------------------------------------------------- references


def _reference_form(firm: Firm, initial: dict[str, Any] | None = None) -> ReferenceForm:
    form = ReferenceForm(data=initial or {"role": "alone", "is_public": True})
    form.attestation_id.choices = [SelectChoice("", "— Aucune —")] + [
        SelectChoice(str(d.id), f"{d.title} ({d.original_name})")
        for d in firm.documents
        if d.kind == "reference"
    ]
    return form


def _save_reference(form: ReferenceForm, reference: Any) -> bool:
    """Save the reference and, if a file was sent, its attestation; False when something was refused."""
    firm, db, now = _firm(), db_session(), _now()
    raw_id = (form.attestation_id.data or "").strip()
    data = profile.ReferenceInput(
        buyer=form.buyer.data,
        object=form.object.data,
        year=form.year.data,
        amount=form.amount.data,
        cpv=form.cpv.data,
        lot=form.lot.data,
        role=form.role.data,
        is_public=bool(form.is_public.data),
        attestation_id=int(raw_id) if raw_id.isdigit() else None,
    )
    stored: list[str] = []
    try:
        saved = profile.save_reference(
            db, firm, data, by=current_user, today=_today(), reference=reference, ip=client_ip(), now=now
        )
        filename, content = _read_upload(request.files.get("attestation_file"))
        if filename is not None:
            try:
                document = documents.upload_document(
                    db,
                    _storage(),
                    firm,
                    by=current_user,
                    kind="reference",
                    title=f"Attestation — {saved.buyer} ({saved.year})"[:200],
                    filename=filename,
                    data=content,
                    issued_on=None,
                    expires_on=None,
                    max_bytes=_uploads().max_bytes,
                    today=_today(),
                    now=now,
                    ip=client_ip(),
                )
            except ValidationError as exc:
                raise ValidationError(exc.message, field="attestation_file") from exc
            stored.append(document.storage_key)
            saved.attestation_id = document.id
            db.flush()
    except DomainError as exc:
        db.rollback()
        for key in stored:
            documents.forget_stored(_storage(), key)
        _show_error(form, exc)
        return False
    _commit_or_forget(stored)
    return True


@bp.route(PROFILE_PATHS["new_reference"], methods=["GET", "POST"])
@access(Access.FIRM)
def new_reference() -> str | Response | tuple[str, int]:
    form = _reference_form(_firm())
    if form.validate_on_submit() and _save_reference(form, None):
        flash("Référence ajoutée.", "success")
        return redirect(url_for("profiles.profile_page") + "#references")
    return render_template("profiles/reference_form.html", form=form, reference=None), _status()


@bp.route("/entreprise/profil/references/<int:reference_id>", methods=["GET", "POST"])
@access(Access.FIRM)
def edit_reference(reference_id: int) -> str | Response | tuple[str, int]:
    firm = _firm()
    reference = _not_found_or(lambda: profile.firm_reference(db_session(), firm, reference_id))
    form = _reference_form(
        firm,
        {
            "buyer": reference.buyer,
            "object": reference.object,
            "year": str(reference.year),
            "amount": "" if reference.amount is None else f"{reference.amount:f}",
            "cpv": ", ".join(reference.cpv or []),
            "lot": reference.lot or "",
            "role": reference.role,
            "is_public": reference.is_public,
            "attestation_id": str(reference.attestation_id or ""),
        },
    )
    if form.validate_on_submit() and _save_reference(form, reference):
        flash("Référence enregistrée.", "success")
        return redirect(url_for("profiles.profile_page") + "#references")
    return render_template("profiles/reference_form.html", form=form, reference=reference), _status()


@bp.route("/entreprise/profil/references/<int:reference_id>/supprimer", methods=["POST"])
@access(Access.FIRM)
def delete_reference(reference_id: int) -> Response:
    db = db_session()
    _not_found_or(lambda: profile.firm_reference(db, _firm(), reference_id))
    profile.delete_reference(db, _firm(), reference_id, by=current_user, ip=client_ip(), now=_now())
    db.commit()
    flash("Référence supprimée.", "info")
    return redirect(url_for("profiles.profile_page") + "#references")


# --------------------------------------------------------------------------- certifications


@bp.route(PROFILE_PATHS["new_certification"], methods=["GET", "POST"])
@access(Access.FIRM)
def new_certification() -> str | Response | tuple[str, int]:
    return _certification_page(None)


@bp.route("/entreprise/profil/certifications/<int:certification_id>", methods=["GET", "POST"])
@access(Access.FIRM)
def edit_certification(certification_id: int) -> str | Response | tuple[str, int]:
    certification = _not_found_or(lambda: profile.firm_certification(db_session(), _firm(), certification_id))
    return _certification_page(certification)


def _certification_page(certification: Any) -> str | Response | tuple[str, int]:
    initial = (
        {
            "name": certification.name,
            "number": certification.number or "",
            "valid_until": certification.valid_until.isoformat() if certification.valid_until else "",
        }
        if certification is not None
        else None
    )
    form = CertificationForm(data=initial)
    if form.validate_on_submit():
        db = db_session()
        try:
            profile.save_certification(
                db,
                _firm(),
                by=current_user,
                name=form.name.data,
                number=form.number.data,
                valid_until=form.valid_until.data,
                certification=certification,
                ip=client_ip(),
                now=_now(),
            )
        except DomainError as exc:
            db.rollback()
            _show_error(form, exc)
        else:
            db.commit()
            flash("Certification enregistrée.", "success")
            return redirect(url_for("profiles.profile_page") + "#certifications")
    return render_template(
        "profiles/certification_form.html",
        form=form,
        certification=certification,
        suggestions=profile.CERTIFICATION_SUGGESTIONS,
    ), _status()


@bp.route("/entreprise/profil/certifications/<int:certification_id>/supprimer", methods=["POST"])
@access(Access.FIRM)
def delete_certification(certification_id: int) -> Response:
    db = db_session()
    _not_found_or(lambda: profile.firm_certification(db, _firm(), certification_id))
    profile.delete_certification(db, _firm(), certification_id, by=current_user, ip=client_ip(), now=_now())
    db.commit()
    flash("Certification supprimée.", "info")
    return redirect(url_for("profiles.profile_page") + "#certifications")


# --------------------------------------------------------------------------- documents


@bp.route(PROFILE_PATHS["documents"], methods=["GET", "POST"])
@access(Access.FIRM)
def documents_page() -> str | Response | tuple[str, int]:
    firm = _firm()
    wanted = request.args.get("type", "")
    form = DocumentForm(data={"kind": wanted if wanted in documents.DOCUMENT_KINDS else "kbis"})
    status = _status()
    if form.validate_on_submit():
        db, now = db_session(), _now()
        filename, content = _read_upload(request.files.get("file"))
        try:
            document = documents.upload_document(
                db,
                _storage(),
                firm,
                by=current_user,
                kind=form.kind.data or "",
                title=form.title.data,
                filename=filename,
                data=content,
                issued_on=profile.parse_date(
                    form.issued_on.data, field_name="issued_on", label="Date de délivrance"
                ),
                expires_on=profile.parse_date(
                    form.expires_on.data, field_name="expires_on", label="Fin de validité"
                ),
                max_bytes=_uploads().max_bytes,
                today=_today(),
                now=now,
                ip=client_ip(),
            )
        except DomainError as exc:
            db.rollback()
            _show_error(form, exc)
            status = exc.status_code  # 400 for a refused file, 503 when the storage failed
        else:
            _commit_or_forget([document.storage_key])
            flash(f"Document « {document.title} » enregistré.", "success")
            return redirect(url_for("profiles.documents_page"))
    today = _today()
    every = list(firm.documents)
    return render_template(
        "profiles/documents.html",
        form=form,
        firm=firm,
        membership=_membership(),
        documents=every,
        current_ids={d.id for d in documents.current_documents(every)},
        kinds=documents.DOCUMENT_KINDS,
        status_of=lambda d: documents.document_status(d, today),
        max_bytes=_uploads().max_bytes,
        delete_form=EmptyForm(),
    ), status


@bp.route("/entreprise/profil/documents/<int:document_id>/supprimer", methods=["POST"])
@access(Access.FIRM)
def delete_document(document_id: int) -> Response:
    db = db_session()
    _not_found_or(lambda: documents.firm_document(db, _firm(), document_id))
    try:
        key = documents.delete_document(db, _membership(), document_id, ip=client_ip(), now=_now())
    except DomainError as exc:
        db.rollback()
        flash(exc.message, "error")
        return redirect(url_for("profiles.documents_page"))
    db.commit()
    # The file goes only once its row is gone for good: a failed commit keeps both.
    documents.forget_stored(_storage(), key)
    flash("Document supprimé.", "info")
    return redirect(url_for("profiles.documents_page"))


@bp.route("/documents/<int:document_id>")
@access(Access.USER)
def download_document(document_id: int) -> Response:
    """The file, to members of its firm, staff of its chamber and admins; 404 for anyone else."""
    db = db_session()
    membership = current_membership()
    document = _not_found_or(
        lambda: documents.document_for_download(db, current_user, membership, document_id)
    )
    data = _not_found_or(lambda: _storage().open(document.storage_key))
    if current_user.is_staff or current_user.is_admin:
        # The firm can see who at the chambers opened its administrative documents.
        record_audit(
            db,
            "firm_document_downloaded",
            actor=current_user,
            target_type="firm",
            target_id=document.firm_id,
            ip=client_ip(),
            detail={"document_id": document.id},
        )
        db.commit()
    response = send_file(
        io.BytesIO(data),
        mimetype=document.content_type,
        as_attachment=True,
        download_name=documents.download_name(document),
        etag=False,
        max_age=0,
    )
    response.headers["Cache-Control"] = "private, no-store"
    # Were it ever opened in place, the file may run nothing and load nothing.
    response.headers["Content-Security-Policy"] = "default-src 'none'; sandbox"
    return response


# --------------------------------------------------------------------------- directory


@bp.route(PROFILE_PATHS["directory_settings"])
@access(Access.FIRM)
def directory_settings() -> str:
    firm = _firm()
    form = DirectorySettingsForm(
        data={"opt_in": firm.directory_opt_in, "parts": list(firm.directory_fields or [])}
    )
    return render_template(
        "profiles/directory_settings.html", form=form, firm=firm, membership=_membership(),
        fields=profile.DIRECTORY_FIELDS,
    )  # fmt: skip


@bp.route(PROFILE_PATHS["directory_settings"], methods=["POST"])
@access(Access.FIRM_OWNER)
def save_directory_settings() -> str | Response | tuple[str, int]:
    form = DirectorySettingsForm()
    if form.validate_on_submit():
        db = db_session()
        try:
            profile.update_directory_settings(
                db,
                _membership(),
                opt_in=bool(form.opt_in.data),
                fields=form.parts.data or [],
                ip=client_ip(),
                now=_now(),
            )
        except DomainError as exc:
            db.rollback()
            _show_error(form, exc)
        else:
            db.commit()
            listed = _firm().directory_opt_in
            flash(
                "Votre entreprise figure dans l'annuaire des partenaires."
                if listed
                else "Votre entreprise ne figure pas dans l'annuaire des partenaires.",
                "success",
            )
            return redirect(url_for("profiles.directory_settings"))
    return render_template(
        "profiles/directory_settings.html", form=form, firm=_firm(), membership=_membership(),
        fields=profile.DIRECTORY_FIELDS,
    ), 400  # fmt: skip


def _page_arg() -> int:
    raw = request.args.get("page", "")
    return int(raw) if raw.isdigit() and 0 < int(raw) < 100000 else 1


@bp.route("/annuaire")
@access(Access.MEMBER)
def directory() -> str | tuple[str, int]:
    """Partner directory: search works with plain GET parameters, without JavaScript."""
    status = 200
    try:
        query = profile.DirectoryQuery.from_args(request.args)
    except ValidationError as exc:
        flash(f"Recherche incorrecte : {exc.message}", "error")
        query, status = profile.DirectoryQuery(), 400
    page = (
        profile.search_directory(db_session(), query, page=_page_arg(), per_page=PER_PAGE, today=_today())
        if status == 200
        else None
    )
    chamber_deps = settings().chamber_departments
    return render_template(
        "profiles/directory.html",
        page=page,
        query=query,
        query_args=query.to_args(),
        department_names=departments(),
        chamber_departments=chamber_deps,
        bands=profile.HEADCOUNT_BANDS,
        suggestions=profile.CERTIFICATION_SUGGESTIONS,
        cpv_query_label=cpv_label(query.cpv) if query.cpv else None,
    ), status


@bp.route("/annuaire/<int:firm_id>")
@access(Access.MEMBER)
def directory_firm(firm_id: int) -> str:
    db = db_session()
    viewer = current_membership()
    firm = _not_found_or(
        lambda: profile.directory_firm(db, firm_id, viewer_firm_id=viewer.firm_id if viewer else None)
    )
    return render_template(
        "profiles/directory_firm.html",
        card=profile.directory_card(firm, today=_today()),
        preview=not firm.directory_opt_in,
        own=viewer is not None and viewer.firm_id == firm.id,
        department_names=departments(),
    )
