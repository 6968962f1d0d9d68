"""Forms of the digests domain (Flask-WTF: every form carries a CSRF token)."""

from __future__ import annotations

from flask_wtf import FlaskForm
from wtforms import RadioField, SelectChoice, SelectField
from wtforms.validators import AnyOf, InputRequired

from tenderpool.digests.services import FREQUENCIES, WEEKDAYS

REQUIRED = "Ce champ est obligatoire."

# WTForms' own "Not a valid choice" is English: the choices are checked by AnyOf, in French.


class PreferencesForm(FlaskForm):
    frequency = RadioField(
        "Recevoir le résumé",
        choices=[SelectChoice(value, label) for value, label in FREQUENCIES.items()],
        validate_choice=False,
        validators=[InputRequired(REQUIRED), AnyOf(list(FREQUENCIES), message="Choisissez une fréquence.")],
    )
    hour = SelectField(
        "Heure d'envoi (heure de Paris)",
        coerce=int,
        choices=[SelectChoice(h, f"{h:02d} h 00") for h in range(24)],
        validate_choice=False,
        validators=[InputRequired(REQUIRED), AnyOf(list(range(24)), message="Choisissez une heure.")],
    )
    weekday = SelectField(
        "Jour d'envoi du résumé hebdomadaire",
        coerce=int,
        choices=[SelectChoice(i, day) for i, day in enumerate(WEEKDAYS)],
        validate_choice=False,
        validators=[InputRequired(REQUIRED), AnyOf(list(range(7)), message="Choisissez un jour.")],
    )
