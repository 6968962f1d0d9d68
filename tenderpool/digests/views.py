"""Digest preferences, preview and one-click unsubscribe."""

from __future__ import annotations

import datetime as dt
from typing import cast

from flask import Blueprint, current_app, flash, redirect, render_template, request, url_for
from flask.blueprints import BlueprintSetupState
from flask_login import current_user
from werkzeug.wrappers import Response

from tenderpool.accounts.models import User
from tenderpool.digests import services
from tenderpool.digests.forms import PreferencesForm
from tenderpool.web import Access, access, db_session, settings

bp = Blueprint("digests", __name__)


@bp.record_once
def _setup(state: BlueprintSetupState) -> None:
    # Validated at start-up, like every setting: a bad [digests] table stops the service.
    state.app.extensions["tenderpool.digests"] = services.digest_settings(
        state.app.extensions["tenderpool.settings"].raw
    )
    # The one-click unsubscribe is POSTed by mail clients (RFC 8058), which have no CSRF token:
    # the signed token in the URL is what authorises it.
    state.app.extensions["csrf"].exempt(unsubscribe)


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


@bp.route("/compte/resume", methods=["GET", "POST"])
@access(Access.MEMBER)
def preferences() -> str | Response:
    db = db_session()
    pref = services.preference_of(db, current_user.id)
    form = PreferencesForm(
        data={"frequency": pref.frequency, "hour": pref.hour, "weekday": pref.weekday}
        if request.method == "GET"
        else None
    )
    if form.validate_on_submit():
        services.set_preference(
            db,
            current_user.id,
            frequency=form.frequency.data or "daily",
            hour=int(form.hour.data or 0),
            weekday=int(form.weekday.data or 0),
            now=_now(),
        )
        db.commit()
        flash(_saved_message(form), "success")
        return redirect(url_for("digests.preferences"))
    return render_template(
        "digests/preferences.html",
        form=form,
        runs=services.recent_runs(db, current_user.id),
        is_firm_user=current_user.is_firm_user,
    )


def _saved_message(form: PreferencesForm) -> str:
    hour = f"{int(form.hour.data or 0):02d} h"
    if form.frequency.data == "off":
        return "C'est noté : vous ne recevrez plus le résumé par courriel."
    if form.frequency.data == "weekly":
        day = services.WEEKDAYS[int(form.weekday.data or 0)]
        return f"C'est noté : vous recevrez le résumé chaque {day} à {hour}."
    return f"C'est noté : vous recevrez le résumé chaque jour à {hour}."


@bp.route("/compte/resume/apercu")
@access(Access.MEMBER)
def preview() -> str:
    """The digest the user would get now, nothing recorded or sent."""
    db = db_session()
    user: User = current_user._get_current_object()
    content = services.preview_digest(db, user, settings=settings(), now=_now())
    mail = services.render_digest(content, settings=settings(), digest=_digest_settings())
    return render_template("digests/preview.html", content=content, mail=mail)


def _digest_settings() -> services.DigestSettings:
    return cast(services.DigestSettings, current_app.extensions["tenderpool.digests"])


@bp.route("/desabonnement/<token>", methods=["GET", "POST"])
@access(Access.PUBLIC)
def unsubscribe(token: str) -> tuple[str, int] | str:
    """One-click unsubscribe from the emailed link, without logging in.

    GET shows a confirmation page (a link preview or a prefetch must not unsubscribe anyone);
    POST, from that page or from the mail client's one-click button (RFC 8058), unsubscribes.
    """
    db = db_session()
    user_id = services.user_of_token(settings().secret_key, token)
    user = db.get(User, user_id) if user_id is not None else None
    if user is None:
        return render_template("digests/unsubscribe.html", state="invalid"), 400
    if request.method == "POST":
        services.unsubscribe(db, user.id, now=_now())
        db.commit()
        return render_template("digests/unsubscribe.html", state="done", email=user.email)
    already = services.preference_of(db, user.id).frequency == "off"
    return render_template(
        "digests/unsubscribe.html", state="already" if already else "confirm", email=user.email
    )
