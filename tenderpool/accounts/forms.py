"""Forms of the accounts domain (Flask-WTF: every form carries a CSRF token)."""

from __future__ import annotations

from flask_wtf import FlaskForm
from wtforms import (
    BooleanField,
    EmailField,
    PasswordField,
    SelectChoice,
    SelectField,
    TextAreaField,
)
from wtforms.validators import DataRequired, Email, EqualTo, Length, Optional

REQUIRED = "Ce champ est obligatoire."


class LoginForm(FlaskForm):
    email = EmailField("Adresse e-mail", validators=[DataRequired(REQUIRED), Length(max=254)])
    password = PasswordField("Mot de passe", validators=[DataRequired(REQUIRED), Length(max=200)])
    remember = BooleanField("Se souvenir de moi")


class ForgotPasswordForm(FlaskForm):
    email = EmailField(
        "Adresse e-mail",
        validators=[DataRequired(REQUIRED), Email("Adresse e-mail invalide.", check_deliverability=False)],
    )


class NewPasswordMixin:
    password = PasswordField("Nouveau mot de passe", validators=[DataRequired(REQUIRED), Length(max=200)])
    confirm = PasswordField(
        "Confirmez le mot de passe",
        validators=[
            DataRequired(REQUIRED),
            EqualTo("password", "Les deux mots de passe ne correspondent pas."),
        ],
    )


class ResetPasswordForm(NewPasswordMixin, FlaskForm):
    pass


class ChangePasswordForm(FlaskForm):
    current_password = PasswordField("Mot de passe actuel", validators=[DataRequired(REQUIRED)])
    new_password = PasswordField("Nouveau mot de passe", validators=[DataRequired(REQUIRED), Length(max=200)])
    confirm = PasswordField(
        "Confirmez le nouveau mot de passe",
        validators=[
            DataRequired(REQUIRED),
            EqualTo("new_password", "Les deux mots de passe ne correspondent pas."),
        ],
    )


class RoleForm(FlaskForm):
    role = SelectField(
        "Rôle", choices=[SelectChoice("staff", "Équipe de la CCI"), SelectChoice("admin", "Administrateur")]
    )
    chamber = SelectField("Chambre", choices=[], validators=[Optional()])


class EmptyForm(FlaskForm):
    """A form with nothing but its CSRF token (logout, one-click actions)."""


class NoteForm(FlaskForm):
    note = TextAreaField("Motif", validators=[Length(max=2000)])
