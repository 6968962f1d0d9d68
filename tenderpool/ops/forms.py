"""Forms of the operations page."""

from __future__ import annotations

from flask_wtf import FlaskForm


class RunNowForm(FlaskForm):
    """ "Lancer maintenant": no field, only the CSRF token."""
