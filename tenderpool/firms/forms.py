"""Forms of the firms domain."""

from __future__ import annotations

from flask_wtf import FlaskForm
from wtforms import EmailField, PasswordField, StringField, TextAreaField
from wtforms.validators import DataRequired, Email, EqualTo, Length

from tenderpool.accounts.forms import REQUIRED, NewPasswordMixin

EMAIL = Email("Adresse e-mail invalide.", check_deliverability=False)


class SignupForm(FlaskForm):
    siret = StringField(
        "SIRET de l'établissement",
        description="14 chiffres, tels qu'ils figurent sur votre extrait Kbis ou l'avis de situation Sirene.",
        validators=[DataRequired(REQUIRED), Length(max=20)],
    )
    name = StringField("Raison sociale", validators=[DataRequired(REQUIRED), Length(max=200)])
    address = StringField("Adresse", validators=[DataRequired(REQUIRED), Length(max=300)])
    postcode = StringField("Code postal", validators=[DataRequired(REQUIRED), Length(min=5, max=5)])
    city = StringField("Commune", validators=[DataRequired(REQUIRED), Length(max=120)])
    full_name = StringField("Vos prénom et nom", validators=[DataRequired(REQUIRED), Length(max=200)])
    email = EmailField("Votre adresse e-mail professionnelle", validators=[DataRequired(REQUIRED), EMAIL])
    password = PasswordField("Mot de passe", validators=[DataRequired(REQUIRED), Length(max=200)])
    confirm = PasswordField(
        "Confirmez le mot de passe",
        validators=[
            DataRequired(REQUIRED),
            EqualTo("password", "Les deux mots de passe ne correspondent pas."),
        ],
    )


class InviteForm(FlaskForm):
    email = EmailField("Adresse e-mail du collègue", validators=[DataRequired(REQUIRED), EMAIL])


class AcceptInvitationForm(NewPasswordMixin, FlaskForm):
    full_name = StringField("Vos prénom et nom", validators=[DataRequired(REQUIRED), Length(max=200)])


class RefuseForm(FlaskForm):
    reason = TextAreaField(
        "Motif du refus (envoyé à l'entreprise)", validators=[DataRequired(REQUIRED), Length(min=5, max=2000)]
    )
