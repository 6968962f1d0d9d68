"""The app factory's table of contents: settings → database → mail → security → blueprints → errors."""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any

import jinja2
import jinja2.bccache
from flask import Flask, g, render_template, request
from flask_login import LoginManager
from flask_wtf.csrf import CSRFError, CSRFProtect
from werkzeug.exceptions import HTTPException
from werkzeug.middleware.proxy_fix import ProxyFix
from werkzeug.wrappers import Response

from tenderpool import formatting, logs, mail
from tenderpool.accounts.services import SESSION_COOKIE_DAYS
from tenderpool.config import Settings, load_settings
from tenderpool.db import Database
from tenderpool.errors import DomainError
from tenderpool.resources import STATIC_DIR, resource_dir
from tenderpool.web import (
    Access,
    access_rule,
    close_db_session,
    current_membership,
    db_session,
    enforce_access,
)

log = logging.getLogger(__name__)

CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; font-src 'self'; "
    "object-src 'none'; base-uri 'self'; form-action 'self'; frame-ancestors 'none'"
)


class _SharedBytecodeCache(jinja2.BytecodeCache):
    """Compiled templates shared by every app of the process. Production builds one app per
    process; the test suite builds one per test, and compiling the templates again each time
    was most of its run time. Buckets are keyed by template name and source checksum."""

    def __init__(self) -> None:
        self._code: dict[str, bytes] = {}

    def load_bytecode(self, bucket: jinja2.bccache.Bucket) -> None:
        code = self._code.get(bucket.key)
        if code is not None:
            bucket.bytecode_from_string(code)

    def dump_bytecode(self, bucket: jinja2.bccache.Bucket) -> None:
        self._code[bucket.key] = bucket.bytecode_to_string()


_BYTECODE_CACHE = _SharedBytecodeCache()


def build_app(overrides: dict[str, Any] | None = None, *, database: Database | None = None) -> Flask:
    settings = load_settings(overrides=overrides)
    logs.configure(settings)
    app = Flask(
        "tenderpool",
        template_folder=str(resource_dir("templates")),
        static_folder=str(STATIC_DIR),
        instance_path=str(settings.instance_path.resolve()),
    )
    app.jinja_options = {**app.jinja_options, "bytecode_cache": _BYTECODE_CACHE}
    app.config.update(
        SECRET_KEY=settings.secret_key,
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_SECURE=settings.security.cookie_secure,
        PERMANENT_SESSION_LIFETIME=dt.timedelta(days=SESSION_COOKIE_DAYS),
        REMEMBER_COOKIE_HTTPONLY=True,
        REMEMBER_COOKIE_SAMESITE="Lax",
        REMEMBER_COOKIE_SECURE=settings.security.cookie_secure,
        WTF_CSRF_TIME_LIMIT=None,  # the token lives as long as the session
        MAX_CONTENT_LENGTH=32 * 1024 * 1024,
        TESTING=settings.env == "test",
    )
    if settings.proxy_fix_hops:
        app.wsgi_app = ProxyFix(  # type: ignore[method-assign]
            app.wsgi_app,
            x_for=settings.proxy_fix_hops,
            x_proto=settings.proxy_fix_hops,
            x_host=settings.proxy_fix_hops,
        )
    app.extensions["tenderpool.settings"] = settings
    # Tables read by later modules are validated here too, so a bad value stops start-up.
    from tenderpool.storage import upload_settings

    upload_settings(settings)
    from tenderpool.scheduler import check_job_settings  # the job tables name registered jobs

    check_job_settings(settings)

    _init_database(app, settings, database)
    _init_security(app)
    _register_blueprints(app)
    _register_errors(app)
    formatting.register(app)
    app.context_processor(lambda: {"tp_settings": settings, "nav_firm_approved": _nav_firm_approved()})
    _check_access_declared(app)
    return app


def _init_database(app: Flask, settings: Settings, database: Database | None) -> None:
    db = database or Database(settings.database_url)
    outbox = settings.instance_path / settings.mail.outbox_dir
    app.extensions["tenderpool.mailer"] = mailer = mail.Mailer(settings.mail, outbox)
    mail.send_queued_after_commit(db.session_factory, mailer)
    app.extensions["tenderpool.db"] = db
    app.teardown_appcontext(close_db_session)


def _init_security(app: Flask) -> None:
    CSRFProtect(app)
    login_manager = LoginManager(app)
    login_manager.login_view = "accounts.login"
    login_manager.login_message = "Connectez-vous pour accéder à cette page."
    login_manager.login_message_category = "info"
    login_manager.session_protection = "basic"

    @login_manager.user_loader
    def _load(user_id: str) -> Any:
        from tenderpool.accounts.services import load_user, session_lifetime

        lifetime = session_lifetime(app.extensions["tenderpool.settings"].security)
        return load_user(db_session(), user_id, now=dt.datetime.now(dt.UTC), lifetime=lifetime)

    @app.before_request
    def _request_id() -> None:
        g.request_id = logs.request_id_from(request.headers.get("X-Request-ID"))

    app.before_request(enforce_access)

    @app.after_request
    def _headers(response: Response) -> Response:
        h = response.headers
        h.setdefault("Content-Security-Policy", CSP)
        h.setdefault("X-Content-Type-Options", "nosniff")
        h.setdefault("X-Frame-Options", "DENY")
        h.setdefault("Referrer-Policy", "same-origin")
        h.setdefault("Permissions-Policy", "camera=(), microphone=(), geolocation=()")
        h.setdefault("Cross-Origin-Opener-Policy", "same-origin")
        h["X-Request-Id"] = g.get("request_id", "")
        if app.config["SESSION_COOKIE_SECURE"]:
            h.setdefault("Strict-Transport-Security", "max-age=31536000; includeSubDomains")
        if request.endpoint != "static" and response.mimetype == "text/html":
            # Pages may show private data: never keep them in a shared or browser cache.
            h["Cache-Control"] = "no-store"
        return response


def _register_blueprints(app: Flask) -> None:
    from tenderpool import views
    from tenderpool.accounts.views import bp as accounts_bp
    from tenderpool.api import views as api_views
    from tenderpool.consortia.views import bp as consortia_bp
    from tenderpool.dashboard.views import bp as dashboard_bp
    from tenderpool.digests.views import bp as digests_bp
    from tenderpool.dossiers.views import bp as dossiers_bp
    from tenderpool.firms.profile_views import bp as profiles_bp
    from tenderpool.firms.views import bp as firms_bp
    from tenderpool.notices.views import bp as notices_bp
    from tenderpool.ops.views import bp as ops_bp

    app.register_blueprint(views.bp)
    app.register_blueprint(accounts_bp)
    app.register_blueprint(firms_bp)
    app.register_blueprint(notices_bp)
    app.register_blueprint(api_views.bp)
    app.register_blueprint(api_views.feeds)
    app.register_blueprint(profiles_bp)
    app.register_blueprint(digests_bp)
    app.register_blueprint(consortia_bp)
    app.register_blueprint(ops_bp)
    app.register_blueprint(dossiers_bp)
    app.register_blueprint(dashboard_bp)
    # Static files are public by nature.
    static_view: Any = app.view_functions["static"]
    static_view.tenderpool_access = Access.PUBLIC


def _register_errors(app: Flask) -> None:
    @app.errorhandler(CSRFError)
    def _csrf(exc: CSRFError) -> tuple[str, int]:
        message = "Le formulaire a expiré ou n'est pas valide. Rechargez la page et recommencez."
        return render_template("errors/error.html", code=400, title="Requête refusée", message=message), 400

    @app.errorhandler(DomainError)
    def _domain(exc: DomainError) -> tuple[str, int]:
        return render_template(
            "errors/error.html", code=exc.status_code, title="Action impossible", message=exc.message
        ), exc.status_code

    @app.errorhandler(HTTPException)
    def _http(exc: HTTPException) -> tuple[str, int, dict[str, str]] | HTTPException:
        code = exc.code or 500
        if code < 400:
            return exc
        titles = {
            400: ("Requête incorrecte", "La requête n'a pas pu être comprise."),
            403: ("Accès refusé", "Vous n'avez pas accès à cette page."),
            404: ("Page introuvable", "Cette page n'existe pas ou plus."),
            405: ("Méthode non autorisée", "Cette action n'est pas possible ici."),
            413: ("Fichier trop volumineux", "Le fichier envoyé dépasse la taille autorisée."),
            429: ("Trop de requêtes", "Vous avez fait trop de requêtes. Réessayez dans quelques minutes."),
        }
        title, message = titles.get(code, ("Erreur", exc.description or ""))
        # Keep what the exception says about the resource (Allow on 405, Retry-After on 429).
        kept = {k: v for k, v in exc.get_headers() if k in ("Allow", "Retry-After")}
        return render_template("errors/error.html", code=code, title=title, message=message), code, kept

    @app.errorhandler(500)
    def _server_error(exc: Exception) -> tuple[str, int]:
        log.error("unhandled error on %s", request.path, exc_info=exc)
        message = "Une erreur inattendue s'est produite. L'équipe technique en est informée."
        return render_template("errors/error.html", code=500, title="Erreur du serveur", message=message), 500


def _nav_firm_approved() -> bool:
    """Whether the logged-in firm user's firm is approved (the navigation shows the pool only then)."""
    from flask import has_request_context
    from flask_login import current_user

    if not has_request_context() or not current_user.is_authenticated or not current_user.is_firm_user:
        return False
    membership = current_membership()
    return bool(membership is not None and membership.firm.is_approved)


def _check_access_declared(app: Flask) -> None:
    with app.app_context():
        missing = [endpoint for endpoint in app.view_functions if access_rule(endpoint) is None]
    if missing:
        raise RuntimeError(
            f"views without an access rule (tenderpool.web.access): {', '.join(sorted(missing))}"
        )
