"""Demo data for `tenderpool demo load` and `tenderpool run`: fictitious but realistic, loaded idempotently.

The SIRETs are made up; they pass the Luhn check like real ones. Every demo
account uses ``demo.password`` from the settings.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from tenderpool.accounts.models import Role, User
from tenderpool.accounts.services import create_user
from tenderpool.config import Settings
from tenderpool.firms.models import Firm, FirmMembership, FirmStatus
from tenderpool.firms.services import department_of_postcode


@dataclass(frozen=True)
class DemoFirm:
    siret: str
    name: str
    address: str
    postcode: str
    city: str
    owner_name: str
    owner_email: str
    status: FirmStatus = FirmStatus.APPROVED


DEMO_FIRMS = (
    DemoFirm(
        "81245673900018",
        "Bâtiments Briards SARL",
        "12 rue du Faubourg Saint-Nicolas",
        "77100",
        "Meaux",
        "Claire Morel",
        "claire.morel@batiments-briards.example",
    ),
    DemoFirm(
        "82390145900011",
        "Menuiserie du Gâtinais",
        "4 chemin des Prés",
        "77140",
        "Nemours",
        "Julien Petit",
        "julien.petit@menuiserie-gatinais.example",
    ),
    DemoFirm(
        "83571209200013",
        "Électricité de la Marne",
        "28 avenue de la Résistance",
        "77500",
        "Chelles",
        "Nadia Benali",
        "nadia.benali@elec-marne.example",
        FirmStatus.PENDING,
    ),
    DemoFirm(
        "84012376400010",
        "Essonne Rénovation SAS",
        "3 boulevard de France",
        "91000",
        "Évry-Courcouronnes",
        "Marc Lefèvre",
        "marc.lefevre@essonne-renovation.example",
    ),
    DemoFirm(
        "85233418400011",
        "Paysages du Hurepoix",
        "17 route d'Étampes",
        "91290",
        "Arpajon",
        "Sophie Garnier",
        "sophie.garnier@paysages-hurepoix.example",
    ),
    DemoFirm(
        "86104597900015",
        "Numérique Saclay Services",
        "9 rue de la Noue",
        "91120",
        "Palaiseau",
        "Thomas Nguyen",
        "thomas.nguyen@numerique-saclay.example",
    ),
)

ADMIN_EMAIL = "admin@tenderpool.example"


def staff_email(slug: str) -> str:
    return f"equipe.{slug}@tenderpool.example"


@dataclass(frozen=True)
class DemoLogin:
    email: str
    role: str
    label: str


def load_demo(session: Session, settings: Settings, *, now: dt.datetime) -> list[DemoLogin]:
    """Create what is missing of the demo data (idempotent) and return the demo logins."""
    password = settings.demo_password
    logins: list[DemoLogin] = []

    def ensure_user(email: str, name: str, role: Role, chamber: str | None = None) -> User:
        user = session.scalar(select(User).where(User.email == email))
        if user is None:
            user = create_user(
                session,
                settings,
                email=email,
                password=password,
                full_name=name,
                role=role,
                chamber_slug=chamber,
                check_policy=False,
            )
        return user

    ensure_user(ADMIN_EMAIL, "Administrateur TenderPool", Role.ADMIN)
    logins.append(DemoLogin(ADMIN_EMAIL, "admin", "administrateur"))
    for chamber in settings.chambers:
        email = staff_email(chamber.slug)
        ensure_user(email, f"Équipe {chamber.name}", Role.STAFF, chamber.slug)
        logins.append(DemoLogin(email, "staff", f"équipe {chamber.name}"))

    for demo in DEMO_FIRMS:
        department = department_of_postcode(demo.postcode)
        home = settings.chamber_for_department(department)
        if home is None:
            continue  # a deployment whose chambers do not cover this demo firm
        firm = session.scalar(select(Firm).where(Firm.siret == demo.siret))
        if firm is None:
            firm = Firm(
                siret=demo.siret,
                siren=demo.siret[:9],
                name=demo.name,
                address=demo.address,
                postcode=demo.postcode,
                city=demo.city,
                department=department,
                chamber_slug=home.slug,
                status=demo.status.value,
                created_at=now,
                decided_at=now if demo.status is FirmStatus.APPROVED else None,
            )
            session.add(firm)
            session.flush()
        owner = ensure_user(demo.owner_email, demo.owner_name, Role.FIRM)
        if session.get(FirmMembership, owner.id) is None:
            session.add(FirmMembership(user_id=owner.id, firm_id=firm.id, is_owner=True, created_at=now))
        status = "en attente de validation" if demo.status is FirmStatus.PENDING else "validée"
        logins.append(DemoLogin(demo.owner_email, "firm", f"{demo.name} ({status})"))
    session.flush()
    return logins
