"""What the browser journeys need in the database before the server starts.

The notice pool comes from `tenderpool demo load` (the demo firms and the real sample notices)
and a crafted BOAMP record goes through `tenderpool import` (see ``xss_boamp_page``); staff are
created with `tenderpool users create`. This module writes the rest straight into the tables,
like tests/dossier_factories.py: two firms with complete DC2 profiles and their documents (real
PDFs in the uploads storage) for the groupement journey, the two-lot notice they answer, and a
firm with its own groupement for the cross-site scripting checks.
"""

from __future__ import annotations

import copy
import datetime as dt
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session
from stdnum import luhn

from tenderpool.accounts.models import User
from tenderpool.config import Settings
from tenderpool.db import Database
from tenderpool.firms.models import Firm, FirmCpv, FirmMembership

PASSWORD = "parcours-navigateur-2026"
REPO = Path(__file__).resolve().parents[2]

# Something that an injection would run: each payload sets window.__xss and opens a dialog.
XSS_SIGNAL = "window.__xss=1;alert(1)"
XSS_PAYLOADS = (
    f"<script>{XSS_SIGNAL}</script>",
    f'<img src=x onerror="{XSS_SIGNAL}">',
    f"<svg onload={XSS_SIGNAL}>",
    f'"><iframe srcdoc="<script>parent.{XSS_SIGNAL}</script>"></iframe>',
    f"javascript:{XSS_SIGNAL}",
)
XSS_TEXT = "Test " + " ".join(XSS_PAYLOADS)


def siret(seed: int) -> str:
    """A made-up SIRET passing the Luhn check (SIREN from ``seed``, establishment 00015-ish)."""
    base = f"8{seed:07d}"
    siren = base + luhn.calc_check_digit(base)
    head = siren + "0001"
    return head + luhn.calc_check_digit(head)


@dataclass(frozen=True)
class Account:
    email: str
    password: str = PASSWORD


@dataclass
class Seeded:
    firm_a: Account  # mandataire of the groupement journey (77)
    firm_a_name: str
    firm_b: Account  # the partner it finds in the suggestions (91)
    firm_b_name: str
    two_lot_notice_id: int
    two_lot_notice_title: str
    xss_firm: Account  # owner of a firm with its own groupement, for the injection checks
    xss_consortium_id: int
    xss_notice_id: int


STAFF77 = Account("agent.curation@cci77.example")
DEMO_OWNER = Account("claire.morel@batiments-briards.example", "demo-tenderpool-2026")


def _firm(
    session: Session,
    *,
    settings: Settings,
    seed: int,
    name: str,
    email: str,
    postcode: str,
    city: str,
    cpv: list[str],
    today: dt.date,
    storage: Any,
) -> Firm:
    from tenderpool.accounts.services import create_user
    from tenderpool.firms.services import department_of_postcode
    from tests.dossier_factories import add_documents, complete_profile

    department = department_of_postcode(postcode)
    chamber = settings.chamber_for_department(department)
    assert chamber is not None
    now = dt.datetime.now(dt.UTC)
    user = create_user(
        session, settings, email=email, password=PASSWORD, full_name=email.split("@")[0], role="firm"
    )
    number = siret(seed)
    firm = Firm(
        siret=number,
        siren=number[:9],
        name=name,
        address="5 rue des Tanneurs",
        postcode=postcode,
        city=city,
        department=department,
        chamber_slug=chamber.slug,
        status="approved",
        created_at=now,
        decided_at=now,
    )
    session.add(firm)
    session.flush()
    session.add(FirmMembership(user_id=user.id, firm_id=firm.id, is_owner=True, created_at=now))
    complete_profile(session, firm, index=seed % 10, today=today)
    firm.cpv_links = [FirmCpv(cpv=code) for code in cpv]
    firm.zone_departments = ["77", "91"]
    firm.directory_opt_in = True
    firm.directory_fields = ["skills", "headcount_band", "references"]
    add_documents(session, firm, storage, today=today)
    session.flush()
    return firm


def seed_database(db: Database, settings: Settings) -> Seeded:
    from tenderpool.consortia import services as consortia
    from tenderpool.dossiers.services import storage_for
    from tests.factories import make_plain_notice

    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    today = now.astimezone(settings.tz).date()
    storage = storage_for(settings)
    with db.session_scope() as session:
        common = {"settings": settings, "today": today, "storage": storage}
        firm_a = _firm(
            session, seed=7701, name="Maçonnerie des Deux Morin", email="direction@deux-morin.example",
            postcode="77120", city="Coulommiers", cpv=["45210000", "45262500"], **common,
        )  # fmt: skip
        firm_b = _firm(
            session, seed=9102, name="Plomberie Étampoise", email="contact@plomberie-etampoise.example",
            postcode="91150", city="Étampes", cpv=["45330000", "45331000"], **common,
        )  # fmt: skip
        notice = make_plain_notice(
            session,
            title="Extension de la maison de santé pluridisciplinaire de Coulommiers",
            cpv=["45215100"],
            departments=["77"],
            buyer_name="Communauté de communes du Pays de Coulommiers",
            estimated_value=1_200_000,
            description="<p>Extension de 450 m² en deux lots : gros œuvre et plomberie sanitaire.</p>",
            lots=[
                {"number": "1", "title": "Gros œuvre", "cpv": ["45210000"], "estimated_value": 800_000},
                {"number": "2", "title": "Plomberie", "cpv": ["45330000"], "estimated_value": 400_000},
            ],
            created_at=now - dt.timedelta(days=1),
            deadline_at=now + dt.timedelta(days=35),
        )
        _firm(
            session, seed=7703, name="Atelier Sécurité Web", email="audit@atelier-securite.example",
            postcode="77300", city="Fontainebleau", cpv=["45310000"], **common,
        )  # fmt: skip
        xss_notice = make_plain_notice(
            session,
            title="Mise aux normes électriques du conservatoire de Fontainebleau",
            cpv=["45310000"],
            departments=["77"],
            buyer_name="Commune de Fontainebleau",
            estimated_value=300_000,
            created_at=now - dt.timedelta(days=1),
            deadline_at=now + dt.timedelta(days=25),
        )
        owner = session.query(User).filter_by(email="audit@atelier-securite.example").one()
        consortium = consortia.create_consortium(
            session,
            notice=xss_notice,
            by=owner,
            name="Groupement conservatoire",
            form="conjoint",
            lots=[],
            now=now,
        )
        session.flush()
        return Seeded(
            firm_a=Account("direction@deux-morin.example"),
            firm_a_name=firm_a.name,
            firm_b=Account("contact@plomberie-etampoise.example"),
            firm_b_name=firm_b.name,
            two_lot_notice_id=notice.id,
            two_lot_notice_title=notice.title,
            xss_firm=Account("audit@atelier-securite.example"),
            xss_consortium_id=consortium.id,
            xss_notice_id=xss_notice.id,
        )


XSS_SOURCE_REF = "26-990001"
XSS_SOURCE_TITLE = "Réfection des toitures du collège Les Tilleuls"


def xss_boamp_page(path: Path, *, today: dt.date) -> Path:
    """A BOAMP records page (the API's own layout) whose one record carries HTML payloads.

    Built from the real record 26-7113 of tests/fixtures: the title, the buyer, the HTML
    description and a lot description are laced with script, event-handler and javascript:
    payloads; the département becomes 77 and the deadline is moved into the coming weeks.
    """
    source = REPO / "tests/fixtures/boamp/jpbenga_where-dateparution-2026_5records_FNSimple.json"
    page = json.loads(source.read_text(encoding="utf-8"))
    record = copy.deepcopy(next(r for r in page["data"]["results"] if r["idweb"] == "26-7113"))
    deadline = (today + dt.timedelta(days=30)).isoformat()
    html = (
        "<p>Réfection complète des toitures.</p>"
        f"<script>{XSS_SIGNAL}</script>"
        f'<img src="x" onerror="{XSS_SIGNAL}">'
        f'<p><a href="javascript:{XSS_SIGNAL}">Règlement de consultation</a></p>'
        f"<svg><animate onbegin={XSS_SIGNAL} attributeName=x dur=1s></animate></svg>"
        f'<p style="background:url(javascript:{XSS_SIGNAL})" onmouseover="{XSS_SIGNAL}">Survolez-moi</p>'
        f'<iframe src="javascript:{XSS_SIGNAL}"></iframe>'
        f'<form action="javascript:{XSS_SIGNAL}"><button>Envoyer</button></form>'
    )
    donnees = json.loads(record["donnees"])
    initial = donnees["FNSimple"]["initial"]
    initial["natureMarche"]["intitule"] = f"{XSS_SOURCE_TITLE} <img src=x onerror={XSS_SIGNAL}>"
    initial["natureMarche"]["description"] = html
    initial["procedure"]["dateReceptionOffres"] = f"{deadline}T12:00:00.000"
    initial["lots"]["lot"][0]["description"] = f"Lot toiture <script>{XSS_SIGNAL}</script>"
    # Links of the source: the buyer's profile (the DCE button) and the notice's own address.
    initial["communication"]["urlProfilAch"] = f"javascript://example.com/%0a{XSS_SIGNAL}"
    donnees["FNSimple"]["organisme"]["nomOfficiel"] = f"Collège <b onclick={XSS_SIGNAL}>Les Tilleuls</b>"
    record.update(
        idweb=XSS_SOURCE_REF,
        id=XSS_SOURCE_REF.replace("-", "_"),
        filename=XSS_SOURCE_REF,
        objet=f"{XSS_SOURCE_TITLE} <img src=x onerror={XSS_SIGNAL}>",
        nomacheteur=f"Collège <b onclick={XSS_SIGNAL}>Les Tilleuls</b>",
        code_departement=["77"],
        dateparution=today.isoformat(),
        datefindiffusion=deadline,
        datelimitereponse=f"{deadline}T12:00:00+00:00",
        donnees=json.dumps(donnees, ensure_ascii=False),
        url_avis=f"javascript:{XSS_SIGNAL}",
    )
    gestion = record.get("gestion")
    if isinstance(gestion, str):
        record["gestion"] = gestion.replace("26-7113", XSS_SOURCE_REF)
    page["data"]["results"] = [record]
    page["data"]["total_count"] = 1
    path.write_text(json.dumps(page["data"], ensure_ascii=False), encoding="utf-8")
    return path
