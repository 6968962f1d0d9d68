"""Builders for consortium tests: a two-lot notice, partner firms listed in the directory."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

from sqlalchemy.orm import Session

from tenderpool.accounts.models import User
from tenderpool.consortia import services
from tenderpool.consortia.models import Consortium
from tenderpool.firms.models import Firm, FirmYear
from tenderpool.notices.models import Notice
from tests import factories

# Views use the real clock: notices are built around it so that their deadlines are ahead.
NOW = dt.datetime.now(dt.UTC).replace(microsecond=0)


def two_lot_notice(session: Session, *, now: dt.datetime = NOW, **changes: Any) -> Notice:
    """A works notice in Seine-et-Marne with a structural lot and a plumbing lot."""
    values: dict[str, Any] = {
        "title": "Réhabilitation du groupe scolaire Jean Jaurès",
        "cpv": ["45000000"],
        "departments": ["77"],
        "estimated_value": 900000,
        "deadline_at": now + dt.timedelta(days=30),
        "created_at": now - dt.timedelta(days=1),
        "lots": [
            {"number": "1", "title": "Gros œuvre", "cpv": ["45210000"], "estimated_value": 600000},
            {"number": "2", "title": "Plomberie", "cpv": ["45330000"], "estimated_value": 300000},
        ],
    }
    values.update(changes)
    return factories.make_plain_notice(session, **values)


def partner(
    session: Session,
    settings: Any,
    *,
    name: str,
    postcode: str = "91000",
    cpv: list[str] | None = None,
    directory: bool = True,
    turnover: int | None = None,
    headcount: int | None = None,
    year: int = 2025,
) -> tuple[Firm, User]:
    """An approved firm listed in the partner directory with its skills public."""
    firm, owner = factories.make_firm(session, settings, postcode=postcode, name=name)
    factories.set_profile(session, firm, cpv=cpv or [])
    firm.directory_opt_in = directory
    firm.directory_fields = ["skills", "headcount_band", "references"]
    if turnover is not None or headcount is not None:
        firm.years = [
            FirmYear(
                year=year,
                turnover=Decimal(turnover) if turnover is not None else None,
                headcount=headcount,
                turnover_by_field={},
            )
        ]
    session.flush()
    return firm, owner


def consortium_of(
    session: Session,
    owner: User,
    notice: Notice,
    *,
    lots: list[str] | None = None,
    now: dt.datetime = NOW,
    **kw: Any,
) -> Consortium:
    return services.create_consortium(
        session,
        notice=notice,
        by=owner,
        name=kw.pop("name", "Groupement Jean Jaurès"),
        form=kw.pop("form", "conjoint"),
        lots=lots if lots is not None else ["1", "2"],
        now=now,
        **kw,
    )


def join(
    session: Session, consortium: Consortium, firm: Firm, owner: User, by: User, *, now: dt.datetime = NOW
) -> None:
    """Invite ``firm`` (by a member user ``by``) and accept as its ``owner``."""
    services.invite_firm(session, consortium, firm=firm, by=by, now=now)
    services.answer_invitation(session, consortium, accept=True, message=None, by=owner, now=now)
