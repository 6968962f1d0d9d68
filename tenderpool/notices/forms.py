"""Forms of the notices domain: edit and manual notice."""

from __future__ import annotations

from flask_wtf import FlaskForm
from wtforms import DateField, DecimalField, SelectChoice, SelectField, StringField, TextAreaField, TimeField
from wtforms.validators import URL, DataRequired, Length, NumberRange, Optional

from tenderpool.accounts.forms import REQUIRED

CONTRACT_CHOICES = [
    SelectChoice("", "—"),
    SelectChoice("works", "Travaux"),
    SelectChoice("supplies", "Fournitures"),
    SelectChoice("services", "Services"),
]


class NoticeFieldsMixin:
    title = StringField("Intitulé", validators=[DataRequired(REQUIRED), Length(max=500)])
    buyer_name = StringField("Acheteur", validators=[DataRequired(REQUIRED), Length(max=300)])
    buyer_siret = StringField("SIRET de l'acheteur", validators=[Optional(), Length(max=20)])
    description = TextAreaField("Description", validators=[Optional(), Length(max=20000)])
    deadline_date = DateField("Date limite de réponse", validators=[Optional()])
    deadline_time = TimeField("Heure limite (heure de Paris)", validators=[Optional()])
    estimated_value = DecimalField(
        "Montant estimé (€ HT)", places=2, validators=[Optional(), NumberRange(min=0, max=1e12)]
    )
    contract_type = SelectField("Type de marché", choices=CONTRACT_CHOICES, validators=[Optional()])
    dce_url = StringField(
        "Lien vers le DCE", validators=[Optional(), URL(message="Adresse invalide."), Length(max=1000)]
    )
    departments = StringField(
        "Départements (séparés par des virgules)", validators=[Optional(), Length(max=200)]
    )
    cpv = StringField(
        "Codes CPV (séparés par des virgules)",
        validators=[Optional(), Length(max=1000)],
        render_kw={"data-cpv-picker": "1"},
    )


class EditNoticeForm(NoticeFieldsMixin, FlaskForm):
    pass


class ManualNoticeForm(NoticeFieldsMixin, FlaskForm):
    url = StringField(
        "Adresse où l'avis a été trouvé (journal, profil d'acheteur)",
        validators=[DataRequired(REQUIRED), URL(message="Adresse invalide."), Length(max=1000)],
    )
    procedure_id = StringField(
        "Identifiant de procédure eForms (si connu)", validators=[Optional(), Length(max=64)]
    )
    lots = TextAreaField(
        "Lots (un par ligne : numéro ; intitulé ; codes CPV ; montant)",
        validators=[Optional(), Length(max=10000)],
        description="Exemple : 1 ; Gros œuvre ; 45210000 ; 250000",
    )
