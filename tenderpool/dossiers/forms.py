"""Forms of the dossiers domain (Flask-WTF: every form carries a CSRF token)."""

from __future__ import annotations

from flask_wtf import FlaskForm
from wtforms import BooleanField


class GenerateForm(FlaskForm):
    pdfa = BooleanField("Variante d'archivage PDF/A-3b")
