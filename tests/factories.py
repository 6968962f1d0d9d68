"""Small builders for test data: make_user(session, settings, **kw), make_firm(...)."""

from __future__ import annotations

import itertools
from typing import Any

from sqlalchemy.orm import Session
from stdnum import luhn

from tenderpool.accounts.models import User
from tenderpool.accounts.services import create_user
from tenderpool.firms.models import Firm, FirmMembership
from tenderpool.firms.services import department_of_postcode

PASSWORD = "motdepasse-2026"
_counter = itertools.count(1)


def valid_siret(seed: int | None = None) -> str:
    """A made-up SIRET that passes the Luhn check."""
    n = next(_counter) if seed is None else seed
    base = f"9{n:07d}"
    siren = base + luhn.calc_check_digit(base)
    head = siren + "0001"
    return head + luhn.calc_check_digit(head)


def make_user(
    session: Session,
    settings: Any,
    *,
    email: str | None = None,
    role: str = "firm",
    chamber_slug: str | None = None,
    password: str = PASSWORD,
    full_name: str | None = None,
) -> User:
    email = email or f"user{next(_counter)}@example.com"
    return create_user(
        session,
        settings,
        email=email,
        password=password,
        full_name=full_name or email.split("@")[0],
        role=role,
        chamber_slug=chamber_slug,
    )


def make_firm(
    session: Session,
    settings: Any,
    *,
    owner_email: str | None = None,
    postcode: str = "77100",
    status: str = "approved",
    name: str | None = None,
    siret: str | None = None,
) -> tuple[Firm, User]:
    department = department_of_postcode(postcode)
    chamber = settings.chamber_for_department(department)
    owner = make_user(session, settings, email=owner_email)
    firm = Firm(
        siret=siret or valid_siret(),
        siren="",
        name=name or f"Entreprise {owner.email}",
        address="1 rue de la Gare",
        postcode=postcode,
        city="Meaux" if department == "77" else "Évry",
        department=department,
        chamber_slug=chamber.slug,
        status=status,
    )
    firm.siren = firm.siret[:9]
    session.add(firm)
    session.flush()
    session.add(FirmMembership(user_id=owner.id, firm_id=firm.id, is_owner=True))
    session.flush()
    return firm, owner


def add_member(session: Session, settings: Any, firm: Firm, *, email: str | None = None) -> User:
    user = make_user(session, settings, email=email)
    session.add(FirmMembership(user_id=user.id, firm_id=firm.id, is_owner=False))
    session.flush()
    return user
