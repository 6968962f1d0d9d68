"""The demo data gives the digest something to send: profiles, saved searches, notices, follows."""

from __future__ import annotations

import datetime as dt
from typing import Any

from flask import Flask
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from tenderpool.db import Database
from tenderpool.demo import DEMO_NOTICES, load_demo
from tenderpool.firms.models import FirmCpv, FirmYear
from tenderpool.notices.models import Notice, NoticeFollow, SavedSearch
from tests.digests.conftest import NOW, run_job


def _counts(session: Session) -> tuple[int, ...]:
    return tuple(
        session.scalar(select(func.count()).select_from(model)) or 0
        for model in (FirmCpv, FirmYear, SavedSearch, Notice, NoticeFollow)
    )


def test_demo_digests(app: Flask, database: Database, session: Session, settings: Any) -> None:
    load_demo(session, settings, now=NOW - dt.timedelta(hours=2))
    session.commit()
    before = _counts(session)
    load_demo(session, settings, now=NOW - dt.timedelta(hours=1))  # idempotent
    session.commit()
    assert _counts(session) == before
    demo_notices = session.scalar(select(func.count()).select_from(Notice).where(Notice.is_demo.is_(True)))
    assert demo_notices == len(DEMO_NOTICES)

    report = run_job(app, database, dry_run=True)
    by_email = {c.email: c for c in report.dry_run}
    claire = by_email["claire.morel@batiments-briards.example"]
    titles = {n.title: n for n in claire.notices}
    assert "Réhabilitation de l'école élémentaire Jean Jaurès" in titles
    assert titles["Construction d'un centre technique municipal"].is_group_candidate
    julien = by_email["julien.petit@menuiserie-gatinais.example"]
    assert {n.title for n in julien.notices} >= {
        "Remplacement des menuiseries extérieures de la mairie",
        "Réhabilitation de l'école élémentaire Jean Jaurès",
    }
    sophie = by_email["sophie.garnier@paysages-hurepoix.example"]
    assert [d.title for d in sophie.deadlines] == ["Élagage et abattage d'arbres d'alignement"]
    assert "nadia.benali@elec-marne.example" not in by_email  # her firm is still pending
    assert all(not c.notices for c in report.dry_run if c.firm_id is None)  # staff: no saved search

    sent = run_job(app, database)
    assert sent.sent >= 5
