"""Demo data for `tenderpool demo load` and `tenderpool run`, loaded idempotently.

Firms, users and a few notices are fictitious but realistic: the SIRETs are made up and pass
the Luhn check like real ones; every demo account uses ``demo.password``. With
``samples=True`` the **real** notices bundled in ``tenderpool/data/demo_samples`` (BOAMP, TED,
eForms; origins and licences in its SOURCES.md) are imported too, through the ordinary import
code, and their dates shifted so that the demo is alive today. Every demo notice is marked
``is_demo``.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from tenderpool.accounts.models import Role, User
from tenderpool.accounts.services import create_user
from tenderpool.config import Settings
from tenderpool.firms.models import Firm, FirmCpv, FirmMembership, FirmStatus, FirmYear
from tenderpool.firms.services import department_of_postcode


@dataclass(frozen=True)
class DemoProfile:
    """What the matching and the digests read: skills, keywords, zone, turnover, a saved search."""

    cpv: tuple[str, ...]
    keywords: tuple[str, ...]
    zone: tuple[str, ...]
    naf_code: str
    description: str
    turnover: tuple[tuple[int, int, int], ...]  # (year, turnover in euros, headcount)
    searches: tuple[tuple[str, str], ...] = ()  # (name, query string) of the owner


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
    profile: DemoProfile | None = field(default=None, compare=False)


DEMO_FIRMS = (
    DemoFirm(
        "81245673900018",
        "Bâtiments Briards SARL",
        "12 rue du Faubourg Saint-Nicolas",
        "77100",
        "Meaux",
        "Claire Morel",
        "claire.morel@batiments-briards.example",
        profile=DemoProfile(
            cpv=("45210000", "45453000", "45223220", "45262500"),
            keywords=("gros œuvre", "maçonnerie", "réhabilitation"),
            zone=("77", "93", "94"),
            naf_code="41.20B",
            description="Entreprise générale de bâtiment : gros œuvre, maçonnerie, réhabilitation.",
            turnover=((2023, 1_850_000, 13), (2024, 2_100_000, 14), (2025, 2_300_000, 15)),
            searches=(("Réhabilitations en Seine-et-Marne", "q=réhabilitation&dep=77"),),
        ),
    ),
    DemoFirm(
        "82390145900011",
        "Menuiserie du Gâtinais",
        "4 chemin des Prés",
        "77140",
        "Nemours",
        "Julien Petit",
        "julien.petit@menuiserie-gatinais.example",
        profile=DemoProfile(
            cpv=("45421000", "44221000"),
            keywords=("menuiseries extérieures", "fenêtres", "bois"),
            zone=("77", "45", "89"),
            naf_code="43.32A",
            description="Fabrication et pose de menuiseries bois et aluminium, portes et fenêtres.",
            turnover=((2024, 610_000, 6), (2025, 650_000, 7)),
            searches=(("Menuiseries", "q=menuiseries"),),
        ),
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
        profile=DemoProfile(
            cpv=("45310000", "45311000"),
            keywords=("électricité", "éclairage public"),
            zone=("77",),
            naf_code="43.21A",
            description="Installations électriques, courants forts et faibles, éclairage public.",
            turnover=((2025, 480_000, 5),),
        ),
    ),
    DemoFirm(
        "84012376400010",
        "Essonne Rénovation SAS",
        "3 boulevard de France",
        "91000",
        "Évry-Courcouronnes",
        "Marc Lefèvre",
        "marc.lefevre@essonne-renovation.example",
        profile=DemoProfile(
            cpv=("45440000", "45430000", "45443000", "45321000"),
            keywords=("peinture", "isolation thermique", "ravalement"),
            zone=("91", "94", "77"),
            naf_code="43.34Z",
            description="Peinture, revêtements, ravalement et isolation thermique par l'extérieur.",
            turnover=((2024, 1_100_000, 11), (2025, 1_200_000, 12)),
        ),
    ),
    DemoFirm(
        "85233418400011",
        "Paysages du Hurepoix",
        "17 route d'Étampes",
        "91290",
        "Arpajon",
        "Sophie Garnier",
        "sophie.garnier@paysages-hurepoix.example",
        profile=DemoProfile(
            cpv=("77310000", "77211400", "77340000"),
            keywords=("espaces verts", "élagage", "tonte"),
            zone=("91", "78"),
            naf_code="81.30Z",
            description="Création et entretien d'espaces verts, élagage et abattage.",
            turnover=((2025, 420_000, 8),),
            searches=(("Espaces verts en Essonne", 'q="espaces verts"&dep=91'),),
        ),
    ),
    DemoFirm(
        "87345612300017",
        "Courants Forts Essonne",
        "21 rue de la Gare",
        "91150",
        "Étampes",
        "Karim Haddad",
        "karim.haddad@courants-forts-essonne.example",
        profile=DemoProfile(
            cpv=("45310000", "45315000", "45311000"),
            keywords=("électricité", "courants faibles", "chauffage électrique"),
            zone=("91", "77", "45"),
            naf_code="43.21A",
            description="Électricité générale, courants forts et faibles, dans les bâtiments publics.",
            turnover=((2024, 690_000, 9), (2025, 740_000, 10)),
        ),
    ),
    DemoFirm(
        "86104597900015",
        "Numérique Saclay Services",
        "9 rue de la Noue",
        "91120",
        "Palaiseau",
        "Thomas Nguyen",
        "thomas.nguyen@numerique-saclay.example",
        profile=DemoProfile(
            cpv=("72000000", "48000000", "50312000"),
            keywords=("infogérance", "maintenance informatique", "logiciel"),
            zone=("91", "75", "92", "78"),
            naf_code="62.02A",
            description="Infogérance, maintenance de parcs informatiques et développement de logiciels.",
            turnover=((2024, 820_000, 9), (2025, 900_000, 10)),
        ),
    ),
)

ADMIN_EMAIL = "admin@tenderpool.example"


@dataclass(frozen=True)
class DemoNotice:
    key: str  # kept as the notice's procedure_id ("tenderpool-demo-…"): how a second load finds it
    title: str
    buyer: str
    department: str
    cpv: tuple[str, ...]
    value: int | None
    days_left: int
    contract_type: str = "works"
    description: str = ""
    lots: tuple[tuple[str, str, int], ...] = ()  # (title, CPV, estimated value)
    followed_by: tuple[str, ...] = ()  # owners' emails


# Fictitious notices of the kind the chambers' territory publishes, so that a digest run on the
# demo has something to announce (and the matching something to explain).
DEMO_NOTICES = (
    DemoNotice(
        "tenderpool-demo-01", "Réhabilitation de l'école élémentaire Jean Jaurès", "Commune de Meaux", "77",
        ("45453000", "45210000"), 2_400_000, 24,
        description="<p>Réhabilitation lourde et mise en accessibilité de l'école, en site occupé.</p>",
        lots=(("Gros œuvre", "45223220", 1_100_000), ("Menuiseries extérieures", "45421000", 380_000),
              ("Peinture", "45442100", 160_000), ("Électricité", "45310000", 420_000)),
        followed_by=("julien.petit@menuiserie-gatinais.example",),
    ),
    DemoNotice(
        "tenderpool-demo-02", "Remplacement des menuiseries extérieures de la mairie", "Commune de Nemours",
        "77", ("45421000",), 180_000, 18,
        description="<p>Remplacement de 42 fenêtres bois par des menuiseries à isolation renforcée.</p>",
    ),
    DemoNotice(
        "tenderpool-demo-03", "Entretien des espaces verts communaux 2027-2029", "Commune d'Arpajon", "91",
        ("77310000",), 240_000, 21, contract_type="services",
        description="<p>Tonte, taille, désherbage et fleurissement des espaces verts de la commune.</p>",
    ),
    DemoNotice(
        "tenderpool-demo-04", "Ravalement et isolation thermique par l'extérieur du gymnase",
        "Évry-Courcouronnes", "91", ("45443000", "45321000"), 1_600_000, 30,
        description="<p>Isolation thermique par l'extérieur, ravalement et peinture des façades.</p>",
    ),
    DemoNotice(
        "tenderpool-demo-05", "Infogérance et maintenance du parc informatique",
        "Communauté d'agglomération Paris-Saclay", "91", ("72250000", "50312000"), 450_000, 28,
        contract_type="services",
        description="<p>Maintenance de 600 postes de travail, assistance aux utilisateurs, supervision.</p>",
    ),
    DemoNotice(
        "tenderpool-demo-06", "Construction d'un centre technique municipal", "Commune de Chelles", "77",
        ("45210000",), 6_500_000, 35,
        description="<p>Construction d'un bâtiment de 2 400 m² : ateliers, garages et bureaux.</p>",
    ),
    DemoNotice(
        "tenderpool-demo-07", "Élagage et abattage d'arbres d'alignement", "Département de l'Essonne", "91",
        ("77211400", "77340000"), 90_000, 3, contract_type="services",
        followed_by=("sophie.garnier@paysages-hurepoix.example",),
    ),
    DemoNotice(
        "tenderpool-demo-08", "Nettoyage des locaux administratifs", "CCAS de Melun", "77", ("90910000",),
        120_000, 15, contract_type="services",
    ),
)  # fmt: skip


def staff_email(slug: str) -> str:
    return f"equipe.{slug}@tenderpool.example"


@dataclass(frozen=True)
class DemoLogin:
    email: str
    role: str
    label: str


def load_demo(
    session: Session, settings: Settings, *, now: dt.datetime, samples: bool = False
) -> list[DemoLogin]:
    """Create what is missing of the demo data (idempotent) and return the demo logins.

    ``samples``: also import the real sample notices (:func:`load_sample_notices`).
    """
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
        if demo.profile is not None:
            _ensure_profile(session, firm, owner, demo.profile, now=now)
        status = "en attente de validation" if demo.status is FirmStatus.PENDING else "validée"
        logins.append(DemoLogin(demo.owner_email, "firm", f"{demo.name} ({status})"))
    session.flush()
    _ensure_notices(session, now=now)
    _ensure_consortium(session, now=now)
    if samples:
        load_sample_notices(session, settings, now=now)
    return logins


def _ensure_profile(
    session: Session, firm: Firm, owner: User, profile: DemoProfile, *, now: dt.datetime
) -> None:
    """Fill what the firm has left empty (a second load never overwrites what a user changed)."""
    from tenderpool.notices.models import SavedSearch
    from tenderpool.notices.search import SearchQuery

    if not firm.cpv_links:
        firm.cpv_links = [FirmCpv(cpv=code) for code in profile.cpv]
    if not firm.keywords:
        firm.keywords = list(profile.keywords)
    if not firm.zone_departments:
        firm.zone_departments = list(profile.zone)
    firm.naf_code = firm.naf_code or profile.naf_code
    firm.description = firm.description or profile.description
    if firm.is_sme is None:
        firm.is_sme = True
    if not firm.years:
        firm.years = [
            FirmYear(year=year, turnover=Decimal(turnover), turnover_by_field={}, headcount=headcount)
            for year, turnover, headcount in profile.turnover
        ]
    if firm.profile_updated_at is None:
        firm.profile_updated_at = now
        # Listed in the partner directory, so that the demo groupement gets suggestions.
        firm.directory_opt_in = True
        firm.directory_fields = ["description", "skills", "keywords", "zone", "headcount_band", "references"]
    existing = set(session.scalars(select(SavedSearch.name).where(SavedSearch.user_id == owner.id)))
    for name, raw in profile.searches:
        if name not in existing:
            # Stored in the canonical form the search page saves.
            query = urlencode(SearchQuery.from_args(parse_qs(raw)).to_args())
            session.add(SavedSearch(user_id=owner.id, name=name, query=query, is_alert=True, created_at=now))
    session.flush()


def _ensure_notices(session: Session, *, now: dt.datetime) -> None:
    """Create the demo notices that are missing; give those whose deadline passed a new one."""
    from tenderpool.notices.models import Lot, Notice, NoticeCpv, NoticeDepartment, NoticeFollow
    from tenderpool.notices.search import refresh_search_index

    touched: list[int] = []
    for demo in DEMO_NOTICES:
        deadline = (now + dt.timedelta(days=demo.days_left)).replace(
            hour=11, minute=0, second=0, microsecond=0
        )
        notice = session.scalar(select(Notice).where(Notice.procedure_id == demo.key))
        if notice is None:
            notice = Notice(
                procedure_id=demo.key, title=demo.title, buyer_name=demo.buyer,
                description=demo.description or None,
                contract_type=demo.contract_type, procedure_type="adapted", published_at=now.date(),
                deadline_at=deadline, estimated_value=Decimal(demo.value) if demo.value else None,
                currency="EUR" if demo.value else None, nuts=[], status="open", field_dates={}, is_demo=True,
                is_manual=True, created_at=now, updated_at=now,
            )  # fmt: skip
            notice.cpv_links = [NoticeCpv(cpv=code, position=i) for i, code in enumerate(demo.cpv)]
            notice.department_links = [NoticeDepartment(department=demo.department)]
            notice.lots = [
                Lot(number=str(i + 1), position=i, title=title, cpv=[code], estimated_value=Decimal(value))
                for i, (title, code, value) in enumerate(demo.lots)
            ]
            session.add(notice)
            session.flush()
            touched.append(notice.id)
        elif notice.is_demo and notice.deadline_at is not None and notice.deadline_at <= now:
            # Keeps an old demo database usable: its notices would otherwise all be closed.
            notice.deadline_at, notice.updated_at = deadline, now
        for email in demo.followed_by:
            user_id = session.scalar(select(User.id).where(User.email == email))
            if user_id is not None and session.get(NoticeFollow, (user_id, notice.id)) is None:
                session.add(NoticeFollow(user_id=user_id, notice_id=notice.id, created_at=now))
    session.flush()
    refresh_search_index(session, touched)


# The demo groupement: three firms of both chambers on three lots of the school notice, with a
# complete répartition and a written mémoire, so that a newcomer can generate a real dossier.
DEMO_CONSORTIUM = "Groupement École Jean Jaurès"
DEMO_SHARES = (  # lot number, member SIRET, tasks, amount excl. VAT
    (
        "1",
        "81245673900018",
        "Gros œuvre, maçonnerie, reprises structurelles et mise en accessibilité",
        1_050_000,
    ),
    ("2", "82390145900011", "Dépose et pose des menuiseries extérieures bois-aluminium", 365_000),
    ("3", "84012376400010", "Peinture intérieure et revêtements muraux des salles de classe", 152_000),
)
DEMO_MEMOIRE = (
    (
        "Présentation du groupement et de son organisation",
        "Le groupement **conjoint** réunit trois entreprises des territoires des CCI de Seine-et-Marne "
        "et de l'Essonne. Bâtiments Briards SARL en est le **mandataire solidaire** et coordonne le "
        "chantier.\n\n- Bâtiments Briards SARL : gros œuvre (lot 1)\n- Menuiserie du Gâtinais : "
        "menuiseries extérieures (lot 2)\n- Essonne Rénovation SAS : peinture (lot 3)",
    ),
    (
        "Compréhension du besoin",
        "L'école reste **occupée** pendant les travaux : les interventions bruyantes sont placées "
        "pendant les vacances scolaires et les zones de chantier sont isolées des élèves.",
    ),
    (
        "Méthodologie et moyens affectés",
        "## Organisation\n\nUn conducteur de travaux unique, une réunion hebdomadaire de "
        "coordination entre les trois entreprises, un planning partagé.\n\n## Moyens\n\n"
        "| Entreprise | Compagnons | Encadrement |\n|---|---|---|\n| Bâtiments Briards | 8 | 2 |\n"
        "| Menuiserie du Gâtinais | 3 | 1 |\n| Essonne Rénovation | 4 | 1 |",
    ),
    (
        "Planning d'exécution",
        "1. Été : gros œuvre et reprises structurelles\n2. Toussaint : menuiseries extérieures\n"
        "3. Vacances d'hiver : peinture des salles de classe",
    ),
    (
        "Démarche qualité, sécurité et environnement",
        "Tri des déchets de chantier sur place, menuiseries à isolation renforcée, peintures à faible "
        "teneur en COV.",
    ),
)


def _ensure_consortium(session: Session, *, now: dt.datetime) -> None:
    """Create the demo groupement if it is missing (written directly: no email is sent)."""
    from tenderpool.consortia.models import (
        ChecklistItem,
        Consortium,
        ConsortiumEvent,
        ConsortiumLot,
        ConsortiumMember,
        MemoireSection,
        WorkShare,
    )
    from tenderpool.consortia.services import DEFAULT_CHECKLIST
    from tenderpool.notices.models import Notice

    notice = session.scalar(select(Notice).where(Notice.procedure_id == "tenderpool-demo-01"))
    if notice is None or session.scalar(select(Consortium.id).where(Consortium.name == DEMO_CONSORTIUM)):
        return
    firms = {
        f.siret: f
        for f in session.scalars(select(Firm).where(Firm.siret.in_([s for _, s, _, _ in DEMO_SHARES])))
    }
    if len(firms) != len(DEMO_SHARES):
        return  # a deployment whose chambers do not cover the demo firms
    mandataire = firms[DEMO_SHARES[0][1]]
    owner_id = session.scalar(select(FirmMembership.user_id).where(FirmMembership.firm_id == mandataire.id))
    consortium = Consortium(
        notice_id=notice.id, name=DEMO_CONSORTIUM, form="conjoint", mandataire_solidaire=True,
        visibility="open", skills_cpv=["45310000"], status="assembling", created_by_id=owner_id,
        skills_text="Un électricien pour le lot 4 (courants forts et faibles).",
        created_at=now, updated_at=now,
    )  # fmt: skip
    consortium.lots = [
        ConsortiumLot(lot_number=lot, position=i, offer_amount=Decimal(amount), updated_at=now)
        for i, (lot, _siret, _tasks, amount) in enumerate(DEMO_SHARES)
    ]
    consortium.members = [
        ConsortiumMember(
            firm_id=firms[siret].id,
            role="mandataire" if i == 0 else "cotraitant",
            state="active",
            created_at=now,
            answered_at=now,
            joined_at=now,
        )
        for i, (_lot, siret, _tasks, _amount) in enumerate(DEMO_SHARES)
    ]
    consortium.shares = [
        WorkShare(
            firm_id=firms[siret].id, lot_number=lot, tasks=tasks, amount=Decimal(amount), share=Decimal(100)
        )
        for lot, siret, tasks, amount in DEMO_SHARES
    ]
    consortium.sections = [
        MemoireSection(
            title=title,
            position=i,
            assignee_firm_id=mandataire.id,
            status="ready",
            body=body,
            updated_at=now,
            updated_by_id=owner_id,
        )
        for i, (title, body) in enumerate(DEMO_MEMOIRE)
    ]
    consortium.checklist = [
        ChecklistItem(title=title, days_before=days, position=i)
        for i, (title, days) in enumerate(DEFAULT_CHECKLIST)
    ]
    session.add(consortium)
    session.flush()
    session.add(
        ConsortiumEvent(
            consortium_id=consortium.id, at=now, kind="created", actor_id=owner_id, firm_id=mandataire.id,
            text=f"{mandataire.name} forme le groupement (données de démonstration).", detail={},
        )
    )  # fmt: skip
    session.flush()


SAMPLES_DIR = Path(__file__).resolve().parent / "data" / "demo_samples"
# Folder -> `tenderpool import --source` format of its files.
SAMPLE_FORMATS = {"boamp": "boamp", "ted": "ted", "eforms": "eforms", "boamp-xml": "boamp-xml"}


def load_sample_notices(session: Session, settings: Settings, *, now: dt.datetime) -> int:
    """Import the bundled real notices (once) and keep their deadlines open; returns how many were new.

    The first import shifts each new notice's dates: published in the last two weeks, the
    deadline as long after publication as in the original (between 12 and 45 days), so that
    calls are open in the coming weeks. A later load gives a new deadline to the demo notices
    whose deadline has passed. The raw payloads stay as published.
    """
    from tenderpool.notices.models import Notice
    from tenderpool.notices.services import import_file

    before = session.scalar(select(func.max(Notice.id))) or 0
    for folder, fmt in SAMPLE_FORMATS.items():
        for path in sorted((SAMPLES_DIR / folder).glob("*")):
            if path.suffix in (".json", ".xml"):
                import_file(session, path, source=fmt, now=now, is_demo=True)
    session.flush()
    new = list(
        session.scalars(
            select(Notice).where(Notice.id > before, Notice.is_demo.is_(True)).order_by(Notice.id)
        )
    )
    tz = settings.tz
    for index, notice in enumerate(new):
        _shift_dates(notice, index, now=now, tz=tz)
    stale = session.scalars(
        select(Notice).where(
            Notice.is_demo.is_(True),
            Notice.is_manual.is_(False),
            Notice.status == "open",
            Notice.deadline_at <= now,
        )
    )
    for index, notice in enumerate(stale):
        notice.deadline_at = _open_deadline(notice.deadline_at, now + dt.timedelta(days=14 + index % 20), tz)
        notice.updated_at = now
    session.flush()
    return len(new)


def _open_deadline(original: dt.datetime | None, day: dt.datetime, tz: Any) -> dt.datetime:
    """``day`` at the original deadline's Paris clock time (noon without one)."""
    clock = original.astimezone(tz).time() if original is not None else dt.time(12, 0)
    return dt.datetime.combine(day.astimezone(tz).date(), clock, tzinfo=tz).astimezone(dt.UTC)


def _shift_dates(notice: Any, index: int, *, now: dt.datetime, tz: Any) -> None:
    today = now.astimezone(tz).date()
    published = today - dt.timedelta(days=index % 12)
    original_published = notice.published_at
    if notice.deadline_at is not None and original_published is not None:
        duration = (notice.deadline_at.astimezone(tz).date() - original_published).days
    else:
        duration = 20 + (index * 7) % 25
    duration = min(max(duration, 12), 45)
    deadline_day = published + dt.timedelta(days=duration)
    if deadline_day < today + dt.timedelta(days=7):
        deadline_day = today + dt.timedelta(days=7 + index % 10)
    new_deadline = _open_deadline(
        notice.deadline_at, dt.datetime.combine(deadline_day, dt.time(12), tzinfo=tz), tz
    )
    if notice.deadline_at is not None or notice.status == "open":
        shift = new_deadline - notice.deadline_at if notice.deadline_at is not None else None
        notice.deadline_at = new_deadline
        for lot in notice.lots:
            if lot.deadline_at is not None and shift is not None:
                lot.deadline_at = lot.deadline_at + shift
    if original_published is not None:
        days = published - original_published
        for publication in notice.publications:
            if publication.published_at is not None:
                publication.published_at = publication.published_at + days
    notice.published_at = published
    notice.updated_at = now
