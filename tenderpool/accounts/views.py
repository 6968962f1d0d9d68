"""Login, logout, password reset and change, the account page, and the admin's user and audit pages."""

from __future__ import annotations

import datetime as dt

from flask import Blueprint, abort, flash, redirect, render_template, request, session, url_for
from flask_login import current_user, login_user, logout_user
from sqlalchemy import func, select
from werkzeug.wrappers import Response
from wtforms import SelectChoice

from tenderpool.accounts import services
from tenderpool.accounts.forms import (
    ChangePasswordForm,
    EmptyForm,
    ForgotPasswordForm,
    LoginForm,
    ResetPasswordForm,
    RoleForm,
)
from tenderpool.accounts.models import AuditEvent, User
from tenderpool.errors import DomainError, InvalidToken, Throttled
from tenderpool.pagination import paginate
from tenderpool.web import Access, access, client_ip, db_session, safe_next, settings

bp = Blueprint("accounts", __name__)

# French names of the audit actions (an action without a name here is shown as its code).
AUDIT_LABELS = {
    "login": "connexion",
    "logout": "déconnexion",
    "login_failed": "échec de connexion",
    "login_throttled": "connexion bloquée (trop de tentatives)",
    "login_refused_inactive": "connexion refusée (compte désactivé)",
    "password_changed": "mot de passe changé",
    "password_reset_requested": "réinitialisation demandée",
    "password_reset_unknown": "réinitialisation demandée pour une adresse inconnue",
    "password_reset": "mot de passe réinitialisé",
    "password_set_by_operator": "mot de passe défini par un opérateur",
    "role_changed": "rôle modifié",
    "firm_signup": "inscription d'entreprise",
    "firm_approved": "entreprise validée",
    "firm_refused": "entreprise refusée",
    "firm_colleague_invited": "collègue invité",
    "firm_colleague_joined": "collègue inscrit",
    "firm_invitation_revoked": "invitation retirée",
    "firm_profile_updated": "profil modifié",
    "firm_directory_updated": "annuaire modifié",
    "firm_document_uploaded": "document déposé",
    "firm_document_downloaded": "document téléchargé",
    "firm_document_deleted": "document supprimé",
    "ics_token_created": "flux agenda créé",
    "ics_token_regenerated": "flux agenda renouvelé",
    "notice_featured": "avis mis en avant",
    "notice_unfeatured": "mise en avant retirée",
    "notice_rejected": "avis rejeté",
    "notice_restored": "avis remis dans le fonds commun",
    "notice_tagged": "avis étiqueté",
    "notice_untagged": "étiquette retirée",
    "notice_edited": "avis modifié",
    "notice_conflict_resolved": "conflit résolu",
    "notice_merged": "avis fusionnés",
    "notice_split": "publication détachée",
    "notice_created_manually": "avis ajouté à la main",
}


@bp.app_template_filter("audit_label")
def audit_label(action: str) -> str:
    return AUDIT_LABELS.get(action, action)


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def sign_in(user: User, *, remember: bool = False) -> None:
    """Log ``user`` in on this browser: a fresh Flask session (no fixation), a new server-side
    session row (committed), and flask-login's cookies carrying its key (see ``load_user``)."""
    db = db_session()
    session.clear()
    services.start_session(db, user, user_agent=request.user_agent.string, now=_now())
    db.commit()
    login_user(user, remember=remember, duration=dt.timedelta(days=settings().security.remember_days))


@bp.route("/connexion", methods=["GET", "POST"])
@access(Access.ANONYMOUS)
def login() -> str | Response | tuple[str, int]:
    form = LoginForm()
    status = 200
    if form.validate_on_submit():
        db = db_session()
        try:
            user = services.authenticate(
                db,
                settings(),
                email=form.email.data or "",
                password=form.password.data or "",
                ip=client_ip(),
                now=_now(),
            )
        except Throttled as exc:
            db.commit()  # keep the audit line
            flash(exc.message, "error")
            status = 429
        except DomainError as exc:
            db.commit()  # the failed attempt must count
            flash(exc.message, "error")
            status = 401
        else:
            db.commit()
            next_url = safe_next(request.args.get("next"), url_for("main.home"))
            sign_in(user, remember=bool(form.remember.data))
            flash(f"Bienvenue, {user.full_name}.", "success")
            return redirect(next_url)
    elif request.method == "POST":
        status = 400
    return render_template("accounts/login.html", form=form), status


@bp.route("/deconnexion", methods=["POST"])
@access(Access.USER)
def logout() -> Response:
    db = db_session()
    services.record_logout(db, current_user, ip=client_ip(), now=_now())  # deletes the session's row
    db.commit()
    logout_user()
    session.clear()
    flash("Vous êtes déconnecté.", "info")
    return redirect(url_for("main.home"))


@bp.route("/mot-de-passe/oublie", methods=["GET", "POST"])
@access(Access.PUBLIC)
def forgot_password() -> str | Response:
    form = ForgotPasswordForm()
    if form.validate_on_submit():
        db = db_session()
        services.request_password_reset(
            db, settings(), email=form.email.data or "", ip=client_ip(), now=_now()
        )
        db.commit()
        # The same answer whether or not the address has an account.
        flash(
            "Si un compte existe pour cette adresse, un lien de réinitialisation vient d'y être envoyé. "
            f"Il est valable {settings().security.reset_link_minutes} minutes.",
            "info",
        )
        return redirect(url_for("accounts.login"))
    return render_template("accounts/forgot_password.html", form=form)


@bp.route("/mot-de-passe/reinitialiser/<token>", methods=["GET", "POST"])
@access(Access.PUBLIC)
def reset_password(token: str) -> str | Response | tuple[str, int]:
    db = db_session()
    try:
        services.check_reset_token(db, settings(), token, now=_now())
    except InvalidToken as exc:
        return render_template("accounts/reset_invalid.html", message=exc.message), 400
    form = ResetPasswordForm()
    if form.validate_on_submit():
        try:
            services.reset_password(
                db, settings(), token=token, new_password=form.password.data or "", ip=client_ip(), now=_now()
            )
        except DomainError as exc:
            db.rollback()
            form.password.errors = [*form.password.errors, exc.message]
        else:
            db.commit()
            if current_user.is_authenticated:
                logout_user()
            flash("Votre mot de passe est changé. Connectez-vous avec le nouveau.", "success")
            return redirect(url_for("accounts.login"))
    return render_template("accounts/reset_password.html", form=form, token=token)


@bp.route("/compte")
@access(Access.USER)
def account() -> str:
    return render_template("accounts/account.html", logout_form=EmptyForm())


@bp.route("/compte/mot-de-passe", methods=["GET", "POST"])
@access(Access.USER)
def change_password() -> str | Response:
    form = ChangePasswordForm()
    if form.validate_on_submit():
        db = db_session()
        try:
            services.change_password(
                db,
                settings(),
                current_user,
                current=form.current_password.data or "",
                new=form.new_password.data or "",
                ip=client_ip(),
                now=_now(),
            )
        except DomainError as exc:
            db.rollback()
            target = form.current_password if exc.field == "current_password" else form.new_password
            target.errors = [*target.errors, exc.message]
        else:
            db.commit()
            # Every session of the account was deleted (auth_version changed too); start a new one here.
            sign_in(current_user._get_current_object())
            flash("Votre mot de passe est changé. Vos autres sessions ont été fermées.", "success")
            return redirect(url_for("accounts.account"))
    return render_template("accounts/change_password.html", form=form)


@bp.route("/admin/utilisateurs")
@access(Access.ADMIN)
def users() -> str:
    db = db_session()
    query = select(User).order_by(User.role, User.email)
    q = (request.args.get("q") or "").strip()
    if q:
        query = query.where(
            func.lower(User.email).contains(q.lower()) | func.lower(User.full_name).contains(q.lower())
        )
    page = paginate(db, query, request.args.get("page"))
    return render_template("accounts/users.html", page=page, q=q)


@bp.route("/admin/utilisateurs/<int:user_id>", methods=["GET", "POST"])
@access(Access.ADMIN)
def user_detail(user_id: int) -> str | Response:
    db = db_session()
    user = db.get(User, user_id)
    if user is None:
        abort(404)
    form = RoleForm(obj=None, role=user.role, chamber=user.chamber_slug)
    form.chamber.choices = [SelectChoice("", "—")] + [
        SelectChoice(c.slug, c.name) for c in settings().chambers
    ]
    if form.validate_on_submit():
        try:
            services.change_role(
                db,
                settings(),
                user,
                role=form.role.data or "",
                chamber_slug=form.chamber.data or None,
                by=current_user,
                ip=client_ip(),
                now=_now(),
            )
        except DomainError as exc:
            db.rollback()
            flash(exc.message, "error")
        else:
            db.commit()
            flash("Le rôle est modifié.", "success")
            return redirect(url_for("accounts.user_detail", user_id=user.id))
    events = db.scalars(
        select(AuditEvent)
        .where(
            (AuditEvent.actor_id == user.id)
            | ((AuditEvent.target_type == "user") & (AuditEvent.target_id == str(user.id)))
        )
        .order_by(AuditEvent.at.desc())
        .limit(20)
    ).all()
    return render_template("accounts/user_detail.html", user=user, form=form, events=events)


@bp.route("/admin/journal")
@access(Access.ADMIN)
def audit_log() -> str:
    db = db_session()
    query = select(AuditEvent).order_by(AuditEvent.at.desc(), AuditEvent.id.desc())
    action = (request.args.get("action") or "").strip()
    if action:
        query = query.where(AuditEvent.action == action)
    page = paginate(db, query, request.args.get("page"), per_page=50)
    actions = db.scalars(select(AuditEvent.action).distinct().order_by(AuditEvent.action)).all()
    return render_template("accounts/audit_log.html", page=page, action=action, actions=actions)
