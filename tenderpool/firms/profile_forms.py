"""Forms of the firm profile, the documents and the directory settings.

Forms only carry the fields and the CSRF token: every rule (formats, reference lists, dates)
is checked by the services in ``tenderpool.firms.profile`` and ``documents``, whose French
messages are put back on the field they concern. Choice fields therefore do not validate
their choice themselves (WTForms' message would be in English).
"""

from __future__ import annotations

from flask_wtf import FlaskForm
from flask_wtf.file import FileField
from wtforms import (
    BooleanField,
    RadioField,
    SelectChoice,
    SelectField,
    SelectMultipleField,
    StringField,
    TextAreaField,
)
from wtforms.validators import DataRequired, Length
from wtforms.widgets import CheckboxInput, ListWidget

from tenderpool.accounts.forms import REQUIRED
from tenderpool.firms.documents import DOCUMENT_KINDS
from tenderpool.firms.profile import CERTIFICATION_SUGGESTIONS, DIRECTORY_FIELDS, REFERENCE_ROLES


def _max(length: int) -> Length:
    return Length(max=length, message=f"{length} caractères au plus.")


DATE = {"type": "date", "placeholder": "JJ/MM/AAAA"}
# A hint for the browser's file picker only: the server judges the file by its content.
ACCEPT = {"accept": ".pdf,.png,.jpg,.jpeg,application/pdf,image/png,image/jpeg"}
NUMBER = {"inputmode": "decimal", "autocomplete": "off"}


class ProfileForm(FlaskForm):  # type: ignore[misc]  # FlaskForm has no type information
    """Base of this module's forms (one place for the untyped base class)."""


class IdentityForm(ProfileForm):
    name = StringField("Raison sociale", validators=[DataRequired(REQUIRED), _max(200)])
    # Rendered by hand (grouped options: the usual forms first); checked against the INSEE list.
    legal_form_code = SelectField("Forme juridique", choices=[], validate_choice=False)
    naf_code = StringField(
        "Code NAF (APE)",
        validators=[_max(10)],
        description=(
            "Quatre chiffres et une lettre, par exemple 43.21A (extrait Kbis ou avis de situation Sirene)."
        ),
    )
    address = StringField("Adresse", validators=[DataRequired(REQUIRED), _max(300)])
    postcode = StringField("Code postal", validators=[DataRequired(REQUIRED), _max(5)])
    city = StringField("Commune", validators=[DataRequired(REQUIRED), _max(120)])
    website = StringField("Site internet", validators=[_max(300)], description="Par exemple www.exemple.fr")
    description = TextAreaField(
        "Présentation de l'entreprise",
        validators=[_max(5000)],
        description="Métiers, savoir-faire, types de chantiers ou de prestations (5 000 caractères au plus).",
    )
    is_sme = RadioField(
        "Votre entreprise est-elle une PME ?",
        choices=[SelectChoice("yes", "Oui"), SelectChoice("no", "Non")],
        validate_choice=False,
        description=(
            "PME au sens européen : moins de 250 personnes, et un chiffre d'affaires d'au plus 50 M€ "
            "ou un total de bilan d'au plus 43 M€."
        ),
    )


class SkillsForm(ProfileForm):
    cpv = StringField(
        "Codes CPV de vos métiers",
        validators=[_max(2000)],
        render_kw={"data-cpv-picker": "1"},
        description=(
            "Tapez un mot (« maçonnerie ») ou un code, séparez les codes par des virgules. Un code de "
            "division ou de groupe couvre tous les codes en dessous : 45000000 couvre tous les travaux, "
            "45210000 tous les travaux de construction de bâtiments."
        ),
    )
    keywords = StringField(
        "Mots-clés",
        validators=[_max(1500)],
        description=(
            "Séparés par des virgules, 30 au plus : par exemple « pierre de taille, monuments historiques »."
        ),
    )


class CapacitiesForm(ProfileForm):
    # One set of fields per financial year (N-1, N-2, N-3); the labels carry the year and are
    # set by the view.
    y1_turnover = StringField("Chiffre d'affaires (€ HT)", render_kw=NUMBER)
    y1_headcount = StringField("Effectif moyen", render_kw={"inputmode": "numeric"})
    y1_by_field = TextAreaField("Part par domaine", render_kw={"rows": 3})
    y2_turnover = StringField("Chiffre d'affaires (€ HT)", render_kw=NUMBER)
    y2_headcount = StringField("Effectif moyen", render_kw={"inputmode": "numeric"})
    y2_by_field = TextAreaField("Part par domaine", render_kw={"rows": 3})
    y3_turnover = StringField("Chiffre d'affaires (€ HT)", render_kw=NUMBER)
    y3_headcount = StringField("Effectif moyen", render_kw={"inputmode": "numeric"})
    y3_by_field = TextAreaField("Part par domaine", render_kw={"rows": 3})
    equipment = TextAreaField(
        "Moyens techniques et matériel",
        validators=[_max(5000)],
        description=(
            "Engins, ateliers, véhicules, logiciels… ce qu'un acheteur demande à la rubrique G du DC2."
        ),
    )
    zone_kind = RadioField(
        "Zone d'intervention",
        choices=[
            SelectChoice("departments", "Une liste de départements"),
            SelectChoice("radius", "Un rayon autour de l'entreprise"),
            SelectChoice("", "Non précisée"),
        ],
        validate_choice=False,
    )
    zone_departments = StringField(
        "Départements d'intervention",
        validators=[_max(400)],
        description="Numéros séparés par des virgules : 77, 91, 93.",
    )
    zone_radius_km = StringField("Rayon d'intervention (km)", render_kw={"inputmode": "numeric"})


class ReferenceForm(ProfileForm):
    buyer = StringField("Acheteur (maître d'ouvrage)", validators=[DataRequired(REQUIRED), _max(300)])
    object = TextAreaField("Objet du marché", validators=[DataRequired(REQUIRED), _max(5000)])
    year = StringField(
        "Année d'exécution", validators=[DataRequired(REQUIRED)], render_kw={"inputmode": "numeric"}
    )
    amount = StringField("Montant (€ HT)", render_kw=NUMBER)
    cpv = StringField(
        "Codes CPV du marché",
        validators=[_max(300)],
        render_kw={"data-cpv-picker": "1"},
        description="10 codes au plus, séparés par des virgules.",
    )
    lot = StringField("Lot", validators=[_max(60)], description="Numéro ou intitulé du lot, s'il y en avait.")
    role = SelectField(
        "Rôle de l'entreprise",
        choices=[SelectChoice(code, label) for code, label in REFERENCE_ROLES.items()],
        validate_choice=False,
    )
    is_public = BooleanField(
        "Référence publique : l'annuaire peut la montrer (sans son montant)", default=True
    )
    attestation_id = SelectField(
        "Attestation de bonne exécution déjà déposée", choices=[], validate_choice=False
    )
    attestation_file = FileField(
        "… ou déposez l'attestation maintenant (PDF, PNG ou JPEG)",
        render_kw=ACCEPT,
        description="Facultatif. Le fichier rejoint vos documents, type « attestation de bonne exécution ».",
    )


class CertificationForm(ProfileForm):
    name = StringField(
        "Certification ou qualification",
        validators=[DataRequired(REQUIRED), _max(120)],
        render_kw={"list": "certification-suggestions", "autocomplete": "off"},
        description="Par exemple : " + ", ".join(CERTIFICATION_SUGGESTIONS[:6]) + "…",
    )
    number = StringField("Numéro", validators=[_max(80)])
    valid_until = StringField("Valable jusqu'au", render_kw=DATE)


class DocumentForm(ProfileForm):
    kind = SelectField(
        "Type de document",
        choices=[SelectChoice(code, kind.label) for code, kind in DOCUMENT_KINDS.items()],
        validate_choice=False,
    )
    title = StringField(
        "Intitulé", validators=[_max(200)], description="Facultatif : le type de document par défaut."
    )
    file = FileField("Fichier (PDF, PNG ou JPEG)", render_kw=ACCEPT)
    issued_on = StringField("Date de délivrance", render_kw=DATE)
    expires_on = StringField(
        "Fin de validité",
        render_kw=DATE,
        description=(
            "Facultatif : sinon calculée (Kbis 3 mois, URSSAF 6 mois, attestation fiscale et "
            "assurances 12 mois après la délivrance)."
        ),
    )


class DirectorySettingsForm(ProfileForm):
    opt_in = BooleanField("Publier mon entreprise dans l'annuaire des partenaires")
    parts = SelectMultipleField(
        "Rubriques visibles",
        choices=[SelectChoice(code, label) for code, label in DIRECTORY_FIELDS.items()],
        validate_choice=False,
        widget=ListWidget(prefix_label=False),
        option_widget=CheckboxInput(),
    )
