"""Builders for dossier tests and the benchmark: a consortium with complete member profiles.

Rows are written straight into the tables (no emails, no events): what the consortia services
would have produced after members joined, filled their profiles and the répartition.
"""

from __future__ import annotations

import datetime as dt
import itertools
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from sqlalchemy.orm import Session

from tenderpool.consortia.models import (
    Consortium,
    ConsortiumLot,
    ConsortiumMember,
    MemoireSection,
    WorkShare,
)
from tenderpool.firms.models import Firm, FirmCertification, FirmCpv, FirmReference, FirmYear
from tenderpool.firms.profile import financial_years
from tests import factories

TODAY = dt.date(2026, 11, 28)
NOW = dt.datetime(2026, 11, 28, 9, 0, tzinfo=dt.UTC)
_names = itertools.count(1)

LOREM = (
    "Notre groupement s'appuie sur des équipes locales expérimentées : chaque membre intervient sur "
    "son cœur de métier, sous la coordination du mandataire, interlocuteur unique de l'acheteur. "
    "Les interfaces entre lots sont traitées en réunion hebdomadaire de synthèse ; le planning "
    "détaillé, les moyens humains et matériels et le plan d'assurance qualité sont décrits ci-après. "
)


@dataclass
class BuiltConsortium:
    consortium: Consortium
    firms: list[Firm]
    mandataire: Firm
    lots: list[str]
    documents: list[Any] = field(default_factory=list)


def complete_profile(session: Session, firm: Firm, *, index: int, today: dt.date = TODAY) -> None:
    """Everything a DC2 asks for, with figures that differ per firm (index)."""
    firm.legal_form_code = "5499"
    firm.naf_code = "43.21A"
    firm.is_sme = True
    firm.cpv_links = [FirmCpv(cpv="45310000")]
    firm.years = [
        FirmYear(
            year=year,
            turnover=Decimal(1_000_000 + 100_000 * index + 1_000 * n),
            turnover_by_field={"45": str(600_000 + 10_000 * index)},
            headcount=10 + index + n,
        )
        for n, year in enumerate(financial_years(today))
    ]
    firm.references = [
        FirmReference(
            buyer=f"Commune de Melun {index}",
            object=f"Rénovation de l'école n° {index}",
            year=today.year - 2,
            amount=Decimal(250_000 + index),
            cpv=["45310000"],
            role="alone",
            is_public=True,
        )
    ]
    firm.certifications = [
        FirmCertification(
            name="Qualifelec", number=f"QF-{index}", valid_until=today + dt.timedelta(days=200)
        ),
        FirmCertification(name=f"RGE {index % 2}", number=None, valid_until=None),
    ]
    session.flush()


def add_documents(
    session: Session, firm: Firm, storage: Any, *, today: dt.date = TODAY, data: bytes | None = None
) -> list[Any]:
    """Current Kbis, URSSAF, tax, RC pro and décennale attestations, stored as real PDFs."""
    documents = []
    for kind in ("kbis", "urssaf", "tax", "rc_pro", "decennale"):
        documents.append(
            factories.make_document(
                session,
                firm,
                kind=kind,
                issued_on=today - dt.timedelta(days=20),
                expires_on=today + dt.timedelta(days=60),
                storage=storage,
                data=data,
                name=f"{kind}-{firm.id}.pdf",
            )
        )
    return documents


def make_dossier_consortium(
    session: Session,
    settings: Any,
    *,
    members: int = 3,
    lots: int = 2,
    storage: Any = None,
    documents: bool = True,
    memoire_paragraphs: int = 3,
    sections: int = 3,
    mandataire: Firm | None = None,
    form: str = "conjoint",
    ready: bool = True,
    name: str | None = None,
) -> BuiltConsortium:
    """A consortium of ``members`` approved firms (the first one mandataire) on a notice with
    ``lots`` lots, a complete répartition and a mémoire whose sections are ready."""
    n = next(_names)
    notice = factories.make_plain_notice(
        session,
        title=f"Rénovation énergétique du groupe scolaire Jules-Ferry ({n})",
        cpv=["45310000", "45210000"],
        departments=["77"],
        buyer_name="Commune de Meaux",
        buyer_siret="21770284000016",
        lots=[
            {
                "number": str(i + 1),
                "title": f"Lot technique {i + 1}",
                "cpv": ["45310000"],
                "estimated_value": 900_000,
            }
            for i in range(lots)
        ],
        created_at=NOW,
        deadline_at=NOW + dt.timedelta(days=40),
    )
    firms: list[Firm] = []
    if mandataire is not None:
        firms.append(mandataire)
    while len(firms) < members:
        firm, _owner = factories.make_firm(
            session, settings, name=f"Électricité Briarde {n}-{len(firms) + 1}"
        )
        firms.append(firm)
    for index, firm in enumerate(firms):
        complete_profile(session, firm, index=index + 1)
    consortium = Consortium(
        notice_id=notice.id,
        name=name or f"Ferry Rénov {n}",
        form=form,
        mandataire_solidaire=True,
        visibility="invitation",
        status="assembling",
        skills_cpv=[],
        created_at=NOW,
        updated_at=NOW,
    )
    session.add(consortium)
    session.flush()
    lot_numbers = [str(i + 1) for i in range(lots)]
    for position, number in enumerate(lot_numbers):
        consortium.lots.append(
            ConsortiumLot(lot_number=number, position=position, offer_amount=Decimal(300_000 * members))
        )
    for index, firm in enumerate(firms):
        consortium.members.append(
            ConsortiumMember(
                firm_id=firm.id,
                role="mandataire" if index == 0 else "cotraitant",
                state="active",
                created_at=NOW,
                joined_at=NOW,
            )
        )
        for number in lot_numbers:
            share = Decimal(100) / members
            consortium.shares.append(
                WorkShare(
                    firm_id=firm.id,
                    lot_number=number,
                    tasks=f"Tâches du lot {number} confiées à {firm.name}",
                    amount=Decimal(300_000),
                    share=share.quantize(Decimal("0.01")),
                )
            )
    # Shares that do not divide evenly: the last member takes the rest so the lot makes 100 %.
    if members:
        for number in lot_numbers:
            lot_shares = [s for s in consortium.shares if s.lot_number == number]
            rest = Decimal(100) - sum((s.share or Decimal(0) for s in lot_shares[:-1]), Decimal(0))
            lot_shares[-1].share = rest
    for position in range(sections):
        body = "\n\n".join(
            [
                f"## Partie {position + 1}.{p + 1}\n\n{LOREM * 3}\n\n- moyen **humain**\n- moyen *matériel*"
                for p in range(memoire_paragraphs)
            ]
        )
        consortium.sections.append(
            MemoireSection(
                position=position,
                title=f"Section {position + 1} : organisation du chantier",
                status="ready" if ready else "draft",
                body=body,
                assignee_firm_id=firms[position % len(firms)].id,
            )
        )
    session.flush()
    built = BuiltConsortium(consortium, firms, firms[0], lot_numbers)
    if documents and storage is not None:
        for firm in firms:
            built.documents.extend(add_documents(session, firm, storage))
    session.refresh(consortium)
    return built
