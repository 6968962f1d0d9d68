"""Dashboard: notices gathered per source and per week, per chamber, against raw SQL counts."""

from __future__ import annotations

import datetime as dt

from flask import Flask
from sqlalchemy import text
from sqlalchemy.orm import Session

from tenderpool.dashboard import services
from tenderpool.dashboard.services import ALL, Period
from tenderpool.notices.models import Notice
from tests import factories

# The seed notice is real BOAMP record 26-7113 (départements 75, 77, 92…); the others are manual.
WEEK_1 = dt.datetime(2026, 3, 3, 10, tzinfo=dt.UTC)  # Tuesday of the week of Monday 02/03/2026
WEEK_2 = dt.datetime(2026, 3, 12, 10, tzinfo=dt.UTC)  # Thursday of the week of Monday 09/03/2026


def test_notices_gathered_per_source_and_week(app: Flask, session: Session) -> None:
    boamp, _ = factories.make_notice(session)
    boamp.created_at = WEEK_1
    factories.make_plain_notice(session, title="Manuelle 77", departments=["77"], created_at=WEEK_1)
    factories.make_plain_notice(session, title="Manuelle 91", departments=["91"], created_at=WEEK_2)
    factories.make_plain_notice(session, title="Hors territoire", departments=["13"], created_at=WEEK_2)
    factories.make_plain_notice(
        session, title="Avant", departments=["77"], created_at=WEEK_1 - dt.timedelta(days=60)
    )
    merged = factories.make_plain_notice(session, title="Fusionnée", departments=["91"], created_at=WEEK_2)
    merged.merged_into_id = boamp.id
    session.flush()
    settings = app.extensions["tenderpool.settings"]
    period = Period(dt.date(2026, 3, 1), dt.date(2026, 3, 31), "dates")
    board = services.dashboard(session, period, chambers=settings.chambers, tz=settings.tz)
    columns = {c.key: c for c in board.columns}

    assert columns["cci77"].gathered == {"BOAMP": 1, "Saisie manuelle": 1}
    assert columns["cci91"].gathered == {"Saisie manuelle": 1}
    assert columns[ALL].gathered == {"BOAMP": 1, "Saisie manuelle": 2}
    assert columns[ALL].weekly == {
        dt.date(2026, 3, 2): {"BOAMP": 1, "Saisie manuelle": 1},
        dt.date(2026, 3, 9): {"Saisie manuelle": 1},
    }
    # The same figure counted directly in SQL: notices of the period, not merged, in 77 or 91.
    raw = session.execute(
        text(
            "SELECT COUNT(DISTINCT n.id) FROM notices n JOIN notice_departments d ON d.notice_id = n.id "
            "WHERE n.merged_into_id IS NULL AND d.department IN ('77', '91') "
            "AND n.created_at >= :start AND n.created_at < :end"
        ),
        {
            "start": dt.datetime(2026, 2, 28, 23, tzinfo=dt.UTC),
            "end": dt.datetime(2026, 3, 31, 22, tzinfo=dt.UTC),
        },
    ).scalar_one()
    assert sum(columns[ALL].gathered.values()) == raw == 3
    rows = [r for r in services.rows(board) if r.section == "Avis collectés par semaine"]
    assert [r.label for r in rows] == [
        "Semaine du 02/03/2026 — BOAMP",
        "Semaine du 02/03/2026 — Saisie manuelle",
        "Semaine du 09/03/2026 — Saisie manuelle",
    ]
    assert rows[0].values == (1, 0, 1)
    assert "Avis collectés par source" in services.csv_text(board)
    assert session.get(Notice, boamp.id) is not None
