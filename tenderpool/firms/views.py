"""Firm sign-up, the firm page (colleagues, invitations) and the staff's approval queue."""

from __future__ import annotations

import datetime as dt

from flask import Blueprint, abort, flash, g, redirect, render_template, request, url_for
from flask_login import current_user
from werkzeug.wrappers import Response

from tenderpool.accounts.forms import EmptyForm
from tenderpool.accounts.views import sign_in
from tenderpool.errors import DomainError, InvalidToken
from tenderpool.firms import services
from tenderpool.firms.forms import AcceptInvitationForm, InviteForm, RefuseForm, SignupForm
from tenderpool.firms.models import FirmStatus
from tenderpool.web import Access, access, client_ip, current_membership, db_session, settings

bp = Blueprint("firms", __name__)


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _field_error(form: SignupForm | AcceptInvitationForm | InviteForm, exc: DomainError) -> None:
    field = getattr(form, exc.field, None) if exc.field else None
    if field is not None:
        field.errors = [*field.errors, exc.message]
    else:
        flash(exc.message, "error")


@bp.route("/inscription", methods=["GET", "POST"])
@access(Access.ANONYMOUS)
def signup() -> str | Response | tuple[str, int]:
    form = SignupForm()
    if form.validate_on_submit():
        db = db_session()
        try:
            firm = services.register_firm(
                db,
                settings(),
                siret=form.siret.data or "",
                name=form.name.data or "",
                address=form.address.data or "",
                postcode=form.postcode.data or "",
                city=form.city.data or "",
                full_name=form.full_name.data or "",
                email=form.email.data or "",
                password=form.password.data or "",
                ip=client_ip(),
                now=_now(),
            )
        except DomainError as exc:
            db.rollback()
            _field_error(form, exc)
        else:
            owner = firm.memberships[0].user
            db.commit()
            sign_in(owner)
            return redirect(url_for("firms.pending"))
    status = 400 if request.method == "POST" else 200
    chambers = settings().chambers
    return render_template("firms/signup.html", form=form, chambers=chambers), status


@bp.route("/entreprise/en-attente")
@access(Access.USER)
def pending() -> str | Response:
    membership = current_membership()
    if membership is None:
        return redirect(url_for("main.home"))
    if membership.firm.status == FirmStatus.APPROVED:
        return redirect(url_for("firms.my_firm"))
    chamber = settings().chamber(membership.firm.chamber_slug)
    return render_template("firms/pending.html", firm=membership.firm, chamber=chamber)


@bp.route("/entreprise")
@access(Access.FIRM)
def my_firm() -> str:
    db = db_session()
    membership = g.membership
    return render_template(
        "firms/my_firm.html",
        firm=membership.firm,
        membership=membership,
        members=services.firm_members(db, membership.firm),
        invitations=services.open_invitations(db, membership.firm, now=_now()) if membership.is_owner else [],
        invite_form=InviteForm(),
        revoke_form=EmptyForm(),
        chamber=settings().chamber(membership.firm.chamber_slug),
    )


@bp.route("/entreprise/inviter", methods=["POST"])
@access(Access.FIRM_OWNER)
def invite() -> Response | tuple[str, int]:
    form = InviteForm()
    db = db_session()
    if form.validate_on_submit():
        try:
            services.invite_colleague(
                db, settings(), g.membership, email=form.email.data or "", ip=client_ip(), now=_now()
            )
        except DomainError as exc:
            db.rollback()
            flash(exc.message, "error")
        else:
            db.commit()
            flash(f"Invitation envoyée à {form.email.data}.", "success")
    else:
        for errors in form.errors.values():
            for error in errors:
                flash(str(error), "error")
    return redirect(url_for("firms.my_firm"))


@bp.route("/entreprise/invitations/<int:invitation_id>/retirer", methods=["POST"])
@access(Access.FIRM_OWNER)
def revoke_invitation(invitation_id: int) -> Response:
    db = db_session()
    try:
        services.revoke_invitation(db, g.membership, invitation_id, ip=client_ip(), now=_now())
    except DomainError as exc:
        db.rollback()
        if exc.status_code == 404:
            abort(404)
        flash(exc.message, "error")
    else:
        db.commit()
        flash("Invitation retirée.", "success")
    return redirect(url_for("firms.my_firm"))


@bp.route("/invitation/<token>", methods=["GET", "POST"])
@access(Access.ANONYMOUS)
def accept_invitation(token: str) -> str | Response | tuple[str, int]:
    db = db_session()
    try:
        invitation = services.get_invitation(db, token, now=_now())
    except InvalidToken as exc:
        return render_template("accounts/reset_invalid.html", message=exc.message), 400
    form = AcceptInvitationForm()
    if form.validate_on_submit():
        try:
            user = services.accept_invitation(
                db,
                settings(),
                token=token,
                full_name=form.full_name.data or "",
                password=form.password.data or "",
                ip=client_ip(),
                now=_now(),
            )
        except DomainError as exc:
            db.rollback()
            _field_error(form, exc)
        else:
            db.commit()
            sign_in(user)
            flash(f"Bienvenue dans l'espace de {invitation.firm.name}.", "success")
            return redirect(url_for("main.home"))
    return render_template("firms/accept_invitation.html", form=form, invitation=invitation)


@bp.route("/equipe/entreprises")
@access(Access.STAFF)
def approval_queue() -> str:
    db = db_session()
    return render_template(
        "firms/approval_queue.html",
        firms=services.pending_firms(db, current_user),
        approve_form=EmptyForm(),
        refuse_form=RefuseForm(),
        chambers={c.slug: c for c in settings().chambers},
    )


@bp.route("/equipe/entreprises/<int:firm_id>/valider", methods=["POST"])
@access(Access.STAFF)
def approve(firm_id: int) -> Response:
    db = db_session()
    try:
        firm = services.get_firm_for_staff(db, current_user, firm_id)
    except DomainError:
        abort(404)
    try:
        services.approve_firm(db, firm, by=current_user, ip=client_ip(), now=_now())
    except DomainError as exc:
        db.rollback()
        flash(exc.message, "error")
    else:
        db.commit()
        flash(f"{firm.name} est validée ; l'entreprise est prévenue par e-mail.", "success")
    return redirect(url_for("firms.approval_queue"))


@bp.route("/equipe/entreprises/<int:firm_id>/refuser", methods=["POST"])
@access(Access.STAFF)
def refuse(firm_id: int) -> Response:
    db = db_session()
    try:
        firm = services.get_firm_for_staff(db, current_user, firm_id)
    except DomainError:
        abort(404)
    form = RefuseForm()
    if not form.validate_on_submit():
        flash("Indiquez le motif du refus (5 caractères au moins).", "error")
        return redirect(url_for("firms.approval_queue"))
    try:
        services.refuse_firm(
            db, firm, by=current_user, reason=form.reason.data or "", ip=client_ip(), now=_now()
        )
    except DomainError as exc:
        db.rollback()
        flash(exc.message, "error")
    else:
        db.commit()
        flash(f"L'inscription de {firm.name} est refusée ; l'entreprise est prévenue par e-mail.", "success")
    return redirect(url_for("firms.approval_queue"))
