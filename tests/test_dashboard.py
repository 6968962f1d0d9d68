"""The chambers' dashboard: figures checked against raw SQL, period parsing, charts, table, CSV."""

from __future__ import annotations

import csv
import datetime as dt
import io
import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import bindparam, text
from sqlalchemy.orm import Session

from tenderpool.accounts.models import AuditEvent, User
from tenderpool.consortia.models import Consortium, ConsortiumEvent, ConsortiumMember
from tenderpool.dashboard import services
from tenderpool.dashboard.charts import format_value
from tenderpool.dashboard.services import ALL, Period, PeriodError, parse_period
from tenderpool.db import UTCDateTime
from tenderpool.firms.models import Firm
from tenderpool.notices.models import NoticeFollow
from tests import factories
from tests.conftest import BACKEND, Seed, login_as, text_of

UTC = dt.UTC
YEAR_2025 = Period(dt.date(2025, 1, 1), dt.date(2025, 12, 31), services.CUSTOM)
URL_2025 = "/equipe/tableau-de-bord?du=2025-01-01&au=2025-12-31"
CSV_2025 = "/equipe/tableau-de-bord.csv?du=2025-01-01&au=2025-12-31"


def at(*args: int) -> dt.datetime:
    return dt.datetime(*args, tzinfo=UTC)


# --------------------------------------------------------------------------- the seeded dataset


@dataclass
class Data:
    firms: dict[str, int]


def _firm(session: Session, name: str, department: str, *, status: str = "approved") -> Firm:
    firm = Firm(
        siret=factories.valid_siret(),
        siren="",
        name=name,
        address="1 rue de la Gare",
        postcode=department + "000",
        city="Meaux" if department == "77" else "Évry",
        department=department,
        chamber_slug="cci77" if department == "77" else "cci91",
        status=status,
        created_at=at(2024, 1, 1),
    )
    firm.siren = firm.siret[:9]
    session.add(firm)
    session.flush()
    return firm


def _user(session: Session, firm: Firm, email: str) -> User:
    from tenderpool.firms.models import FirmMembership

    user = User(email=email, full_name=email, password_hash="x", role="firm")
    session.add(user)
    session.flush()
    session.add(FirmMembership(user_id=user.id, firm_id=firm.id, is_owner=True))
    return user


def _consortium(
    session: Session,
    notice_id: int,
    status: str,
    created: dt.datetime,
    members: list[tuple[Firm, str, dt.datetime | None]],  # firm, state, joined_at
    *,
    submitted: dt.datetime | None = None,
    outcome: dt.datetime | None = None,
    amount: str | None = None,
    was_ready: bool = False,
) -> Consortium:
    consortium = Consortium(
        notice_id=notice_id,
        name=f"Groupement {status}",
        form="conjoint",
        status=status,
        created_at=created,
        updated_at=created,
        submitted_at=submitted,
        outcome_at=outcome,
        outcome_amount=Decimal(amount) if amount else None,
        skills_cpv=[],
    )
    session.add(consortium)
    session.flush()
    for i, (firm, state, joined) in enumerate(members):
        session.add(
            ConsortiumMember(
                consortium_id=consortium.id,
                firm_id=firm.id,
                role="mandataire" if i == 0 else "cotraitant",
                state=state,
                created_at=created,
                joined_at=joined,
            )
        )
    session.add(
        ConsortiumEvent(consortium_id=consortium.id, at=created, kind="created", text="Créé.", detail={})
    )
    if was_ready:
        session.add(
            ConsortiumEvent(
                consortium_id=consortium.id,
                at=created + dt.timedelta(days=5),
                kind="status",
                text="Prêt.",
                detail={"to": "ready"},
            )
        )
    session.flush()
    return consortium


@pytest.fixture
def data(session: Session) -> Data:
    """Firms of both chambers, notices featured inside and outside 2025, consortia in every status."""
    a77 = _firm(session, "Alpha 77", "77")
    b77 = _firm(session, "Bravo 77", "77")
    c91 = _firm(session, "Charlie 91", "91")
    d91 = _firm(session, "Delta 91", "91")
    e91 = _firm(session, "Echo 91", "91")
    p77 = _firm(session, "Pending 77", "77", status="pending")
    ua, uc = _user(session, a77, "a@alpha.test"), _user(session, c91, "c@charlie.test")
    session.flush()

    # Activity of the firms (the period is 2025 in Paris time: [2024-12-31 23:00, 2025-12-31 23:00) UTC).
    session.add(AuditEvent(at=at(2025, 12, 31, 22, 59), actor_id=ua.id, action="login"))  # 23:59 Paris
    session.add(AuditEvent(at=at(2024, 12, 31, 22, 30), actor_id=uc.id, action="login"))  # 2024 in Paris
    session.add(AuditEvent(at=at(2025, 6, 1), actor_id=uc.id, action="logout"))  # not a login
    b77.profile_updated_at = at(2025, 4, 2)
    p77.profile_updated_at = at(2025, 4, 2)  # pending firms never count
    e91.profile_updated_at = at(2026, 2, 1)  # after the period

    n1 = factories.make_plain_notice(
        session, title="Travaux", cpv=["45000000", "45210000"], departments=["77"]
    )
    n2 = factories.make_plain_notice(session, title="Logiciel", cpv=["72000000"], departments=["91"])
    n3 = factories.make_plain_notice(session, title="Mixte", cpv=["45330000", "79000000"], departments=["77"])
    n4 = factories.make_plain_notice(session, title="Hors période", cpv=["45000000"], departments=["91"])
    n5 = factories.make_plain_notice(session, title="Retiré", cpv=["30000000"], departments=["91"])
    n6 = factories.make_plain_notice(session, title="Admin", cpv=["50000000"], departments=["77"])
    featured = [
        (n1, "cci77", at(2025, 3, 1), True),
        (n2, "cci91", at(2025, 6, 1), True),
        (n3, "cci77", at(2024, 12, 31, 23, 30), True),  # 00:30 on 1 January in Paris: inside
        (n4, "cci91", at(2024, 12, 31, 22, 30), True),  # 23:30 on 31 December in Paris: outside
        (n5, "cci91", at(2025, 5, 1), False),  # featured, then unfeatured
        (n6, None, at(2025, 7, 1), True),  # featured by an admin
    ]
    for notice, chamber, when, still in featured:
        notice.is_featured, notice.featured_chamber, notice.featured_at = still, chamber, when
    session.add(NoticeFollow(user_id=uc.id, notice_id=n2.id, created_at=at(2025, 5, 5)))

    j = at(2025, 1, 10)
    _consortium(session, n1.id, "forming", at(2025, 2, 1), [(a77, "active", j)])
    _consortium(session, n1.id, "assembling", at(2025, 3, 1), [(a77, "active", j), (b77, "active", j)])
    # Interconsular, ready; an invitation pending to a firm of 91.
    _consortium(
        session,
        n3.id,
        "ready",
        at(2025, 4, 1),
        [(a77, "active", j), (c91, "active", j), (d91, "invited", None)],
        was_ready=True,
    )
    _consortium(
        session,
        n2.id,
        "submitted",
        at(2025, 5, 1),
        [(c91, "active", at(2025, 5, 1)), (d91, "active", at(2025, 5, 2))],
        submitted=at(2025, 6, 1),
        was_ready=True,
    )
    # Formed in 2024, submitted and won in 2025: interconsular, but not formed in the period.
    _consortium(
        session,
        n1.id,
        "won",
        at(2024, 11, 1),
        [(b77, "active", at(2024, 11, 1)), (c91, "active", at(2024, 11, 2))],
        submitted=at(2025, 1, 15),
        outcome=at(2025, 9, 1),
        amount="120000.50",
    )
    # Formed in 2025, result declared in 2026: won in the funnel, not "won in the period".
    _consortium(
        session,
        n2.id,
        "won",
        at(2025, 7, 1),
        [(c91, "active", j), (e91, "active", at(2024, 6, 1)), (d91, "left", j)],
        submitted=at(2025, 8, 1),
        outcome=at(2026, 1, 15),
        amount="50000",
    )
    _consortium(
        session,
        n3.id,
        "lost",
        at(2025, 2, 15),
        [(a77, "active", j), (b77, "active", j)],
        submitted=at(2025, 3, 15),
        outcome=at(2025, 4, 1),
    )
    # Ready once (the journal says so), then withdrawn: interconsular.
    _consortium(
        session, n1.id, "withdrawn", at(2025, 3, 10), [(a77, "active", j), (c91, "active", j)], was_ready=True
    )
    # Everyone left: it counts nowhere.
    _consortium(session, n2.id, "withdrawn", at(2025, 5, 5), [(a77, "left", j)])
    _consortium(
        session,
        n3.id,
        "won",
        at(2025, 10, 1),
        [(a77, "active", j), (b77, "active", j)],
        submitted=at(2025, 10, 15),
        outcome=at(2025, 11, 1),
        amount="30000",
    )
    session.commit()
    firms = {"a77": a77.id, "b77": b77.id, "c91": c91.id, "d91": d91.id, "e91": e91.id, "p77": p77.id}
    return Data(firms)


# --------------------------------------------------------------------------- the same figures in raw SQL


def _bounds(period: Period) -> tuple[dt.datetime, dt.datetime]:
    """Midnight in Paris, written out by hand (not the service's code): CET in winter."""
    assert period == YEAR_2025
    return at(2024, 12, 31, 23), at(2025, 12, 31, 23)


def _sql(session: Session, sql: str, start: dt.datetime, end: dt.datetime, **params: Any) -> list[Any]:
    statement = text(sql).bindparams(
        bindparam("start", type_=UTCDateTime()), bindparam("end", type_=UTCDateTime())
    )
    return list(session.execute(statement, {"start": start, "end": end, **params}))


def _chamber_test(key: str) -> tuple[str, dict[str, Any]]:
    """A consortium ``c`` counts for the column when an active member's firm is of the chamber(s)."""
    chambers = ("cci77", "cci91") if key == ALL else (key,)
    sql = """EXISTS (SELECT 1 FROM consortium_members m JOIN firms f ON f.id = m.firm_id
                     WHERE m.consortium_id = c.id AND m.state = 'active'
                       AND f.chamber_slug IN (:ch0, :ch1))"""
    return sql, {"ch0": chambers[0], "ch1": chambers[-1]}


ACTIVE_COUNT = (
    "(SELECT COUNT(*) FROM consortium_members am WHERE am.consortium_id = c.id AND am.state = 'active')"
)
CHAMBER_COUNT = """(SELECT COUNT(DISTINCT cf.chamber_slug) FROM consortium_members cm
                    JOIN firms cf ON cf.id = cm.firm_id
                    WHERE cm.consortium_id = c.id AND cm.state = 'active')"""
FORMED = "c.created_at >= :start AND c.created_at < :end"
READY_EVENT = (
    "json_extract(e.detail, '$.to') = 'ready'" if BACKEND == "sqlite" else "(e.detail ->> 'to') = 'ready'"
)
SUBMITTED_STAGE = "(c.submitted_at IS NOT NULL OR c.status IN ('submitted', 'won', 'lost'))"


def sql_column(session: Session, key: str, period: Period) -> dict[str, Any]:
    start, end = _bounds(period)
    chamber, params = _chamber_test(key)

    def scalar(sql: str) -> Any:
        return _sql(session, sql, start, end, **params)[0][0]

    def consortia(where: str) -> int:
        return int(scalar(f"SELECT COUNT(*) FROM consortia c WHERE {chamber} AND {where}"))

    featured_sql = (
        "SELECT COUNT(*) FROM notices WHERE is_featured = :yes AND merged_into_id IS NULL "
        "AND featured_at >= :start AND featured_at < :end"
    )
    by_chamber: dict[str, Any] = {}
    if key != ALL:  # all chambers: every featured notice, an admin's too
        featured_sql += " AND featured_chamber = :chamber"
        by_chamber["chamber"] = key
    featured = _sql(session, featured_sql, start, end, yes=True, **by_chamber)[0][0]
    active_firms = scalar(
        """SELECT COUNT(*) FROM firms f WHERE f.status = 'approved' AND f.chamber_slug IN (:ch0, :ch1) AND (
             EXISTS (SELECT 1 FROM firm_memberships fm JOIN audit_events a ON a.actor_id = fm.user_id
                     WHERE fm.firm_id = f.id AND a.action = 'login' AND a.at >= :start AND a.at < :end)
          OR EXISTS (SELECT 1 FROM firm_memberships fm JOIN notice_follows nf ON nf.user_id = fm.user_id
                     WHERE fm.firm_id = f.id AND nf.created_at >= :start AND nf.created_at < :end)
          OR EXISTS (SELECT 1 FROM consortium_members m
                     WHERE m.firm_id = f.id AND m.joined_at >= :start AND m.joined_at < :end)
          OR (f.profile_updated_at >= :start AND f.profile_updated_at < :end))"""
    )
    won_where = "c.status = 'won' AND c.outcome_at >= :start AND c.outcome_at < :end"
    amount = scalar(
        f"SELECT COALESCE(SUM(c.outcome_amount), 0) FROM consortia c WHERE {chamber} AND {won_where}"
    )
    members_total = scalar(
        f"SELECT COALESCE(SUM({ACTIVE_COUNT}), 0) FROM consortia c WHERE {chamber} AND {FORMED}"
    )
    formed = consortia(FORMED)
    two = f"{FORMED} AND {ACTIVE_COUNT} >= 2"
    ready = (
        f"{two} AND (c.status IN ('ready', 'submitted', 'won', 'lost') OR {SUBMITTED_STAGE} OR EXISTS "
        "(SELECT 1 FROM consortium_events e WHERE e.consortium_id = c.id AND e.kind = 'status' "
        f"AND {READY_EVENT}))"
    )
    divisions = _sql(
        session,
        f"""SELECT SUBSTR(nc.cpv, 1, 2) AS division, COUNT(DISTINCT c.id) FROM consortia c
            JOIN notice_cpv nc ON nc.notice_id = c.notice_id
            WHERE {chamber} AND {FORMED} GROUP BY SUBSTR(nc.cpv, 1, 2)""",
        start,
        end,
        **params,
    )
    return {
        "featured_notices": int(featured),
        "active_firms": int(active_firms),
        "consortia_formed": formed,
        "consortia_submitted": consortia("c.submitted_at >= :start AND c.submitted_at < :end"),
        "consortia_won": consortia(won_where),
        "amount_won": Decimal(str(amount)).quantize(Decimal("0.01")),
        "funnel": (
            formed,
            consortia(two),
            consortia(ready),
            consortia(f"{two} AND {SUBMITTED_STAGE}"),
            consortia(f"{two} AND {SUBMITTED_STAGE} AND c.status = 'won'"),
        ),
        "average_members": (Decimal(int(members_total)) / formed).quantize(Decimal("0.1"))
        if formed
        else None,
        "interconsular": consortia(f"{FORMED} AND {CHAMBER_COUNT} >= 2"),
        "divisions": {division: int(count) for division, count in divisions},
    }


def _board(app: Flask, session: Session, period: Period = YEAR_2025) -> services.Dashboard:
    settings = app.extensions["tenderpool.settings"]
    return services.dashboard(session, period, chambers=settings.chambers, tz=settings.tz)


def test_figures_equal_raw_sql_counts(app: Flask, session: Session, data: Data) -> None:
    board = _board(app, session)
    assert [c.key for c in board.columns] == ["cci77", "cci91", ALL]
    for column in board.columns:
        expected = sql_column(session, column.key, YEAR_2025)
        got = {name: getattr(column, name) for name in expected}
        got["amount_won"] = Decimal(got["amount_won"]).quantize(Decimal("0.01"))
        assert got == expected, column.key


def test_seeded_dataset_exercises_every_rule(app: Flask, session: Session, data: Data) -> None:
    """The hand-counted figures of the dataset: each rule of the definitions is exercised."""
    cci77, cci91, both = _board(app, session).columns
    # n1 + n3 (00:30 on 1 January in Paris); n4 is 23:30 on 31 December; n5 unfeatured; n6 admin.
    assert (cci77.featured_notices, cci91.featured_notices, both.featured_notices) == (2, 1, 4)
    # a77 login at 23:59, b77 profile, c91 follow (its login was in 2024), d91 joined in May; not e91, p77.
    # (The conftest seed firms have no activity.)
    assert (cci77.active_firms, cci91.active_firms, both.active_firms) == (2, 2, 4)
    assert (cci77.consortia_formed, cci91.consortia_formed, both.consortia_formed) == (6, 4, 8)
    assert (cci77.consortia_won, cci91.consortia_won, both.consortia_won) == (2, 1, 2)
    assert (cci77.amount_won, cci91.amount_won, both.amount_won) == (
        Decimal("150000.50"),
        Decimal("120000.50"),
        Decimal("150000.50"),
    )
    assert both.consortia_submitted == 5  # the 2024 one submitted in January counts
    assert both.funnel == (8, 7, 6, 4, 2)
    assert (cci77.interconsular, cci91.interconsular, both.interconsular) == (2, 2, 2)
    assert both.average_members == Decimal("1.9")  # 15 active members / 8
    assert both.divisions == {"45": 6, "79": 3, "72": 2}
    board = _board(app, session)
    assert [d.code for d in board.top_divisions] == ["45", "79", "72"]
    assert board.top_divisions[0].label.startswith("Travaux de construction")


def test_an_empty_period_has_zeros(app: Flask, session: Session, data: Data) -> None:
    board = _board(app, session, Period(dt.date(2001, 1, 1), dt.date(2001, 1, 31), services.CUSTOM))
    for column in board.columns:
        assert column.consortia_formed == 0 and column.average_members is None
        assert column.funnel == (0, 0, 0, 0, 0) and column.amount_won == 0
    assert board.top_divisions == ()


# --------------------------------------------------------------------------- period parsing

TODAY = dt.date(2026, 5, 14)


@pytest.mark.parametrize(
    ("args", "start", "end"),
    [
        ({}, dt.date(2025, 5, 15), TODAY),
        ({"periode": "12-mois"}, dt.date(2025, 5, 15), TODAY),
        ({"periode": "mois"}, dt.date(2026, 5, 1), TODAY),
        ({"periode": "3-mois"}, dt.date(2026, 2, 15), TODAY),
        ({"periode": "annee"}, dt.date(2026, 1, 1), TODAY),
        ({"periode": "annee-derniere"}, dt.date(2025, 1, 1), dt.date(2025, 12, 31)),
        ({"du": "2025-03-01", "au": "2025-03-31"}, dt.date(2025, 3, 1), dt.date(2025, 3, 31)),
        ({"du": "2025-03-01"}, dt.date(2025, 3, 1), TODAY),
        (
            {"du": "2025-03-01", "au": "2025-03-01", "periode": "mois"},
            dt.date(2025, 3, 1),
            dt.date(2025, 3, 1),
        ),
    ],
)
def test_period_presets_and_dates(args: dict[str, str], start: dt.date, end: dt.date) -> None:
    period = parse_period(args, today=TODAY)
    assert (period.start, period.end) == (start, end)


def test_last_months_end_of_month_and_leap_day() -> None:
    assert parse_period({"periode": "3-mois"}, today=dt.date(2026, 5, 31)).start == dt.date(2026, 3, 1)
    assert parse_period({}, today=dt.date(2024, 2, 29)).start == dt.date(2023, 3, 1)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ({"du": "01/03/2025"}, "n'est pas au format AAAA-MM-JJ"),
        ({"du": "2025-02-30"}, "n'existe pas"),
        ({"du": "2025-01-01", "au": "demain"}, "La date de fin « demain »"),
        ({"au": "2025-01-01"}, "Indiquez la date de début"),
        ({"du": "2025-06-01", "au": "2025-01-01"}, "doit précéder la date de fin"),
        ({"du": "1999-12-31", "au": "2000-01-01"}, "entre 2000 et 2100"),
        ({"du": "2000-01-01", "au": "2010-01-01"}, "ne peut pas dépasser 10 ans"),
        ({"periode": "semaine"}, "Période inconnue"),
    ],
)
def test_bad_periods_are_refused_in_french(args: dict[str, str], message: str) -> None:
    with pytest.raises(PeriodError) as info:
        parse_period(args, today=TODAY)
    assert message in info.value.message


def test_period_bounds_are_paris_midnights() -> None:
    from zoneinfo import ZoneInfo

    summer = Period(dt.date(2025, 7, 1), dt.date(2025, 7, 31), services.CUSTOM)
    assert summer.bounds(ZoneInfo("Europe/Paris")) == (at(2025, 6, 30, 22), at(2025, 7, 31, 22))


# --------------------------------------------------------------------------- the page, its charts, the CSV


_SVG = re.compile(r"<svg\b.*?</svg>", re.S)
_TABLE = re.compile(r"<table>.*?</table>", re.S)


def _parse(fragment: str) -> ET.Element:
    return ET.fromstring(fragment)  # noqa: S314 - our own markup, parsed to prove it is well-formed


def _table_cells(page: str) -> dict[tuple[str, str], str]:
    """(column label, row label) → the cell's text, from every table of the page."""
    cells: dict[tuple[str, str], str] = {}
    for fragment in _TABLE.findall(page):
        table = _parse(fragment)
        headers = [th.text or "" for th in table.iter("th") if th.get("scope") == "col"][1:]
        for tr in table.find("tbody") or []:
            label = tr.find("th")
            assert label is not None
            for header, td in zip(headers, tr.findall("td"), strict=True):
                cells[(header, label.text or "")] = td.text or ""
    return cells


def _chart_values(page: str) -> dict[tuple[str, str], str]:
    """(series, row label) → the bar's value, from each bar's <title> of every chart."""
    values: dict[tuple[str, str], str] = {}
    svgs = _SVG.findall(page)
    assert len(svgs) == 5
    ns = "{http://www.w3.org/2000/svg}"
    for fragment in svgs:
        svg = _parse(fragment)
        assert svg.get("role") == "img" and svg.find(f"{ns}title") is not None
        for group in svg.iter(f"{ns}g"):
            title = group.find(f"{ns}title")
            assert title is not None and title.text
            series, rest = title.text.split(" — ", 1)
            row, value = rest.rsplit(" : ", 1)
            shown = [t.text for t in group.findall(f"{ns}text")]
            assert value in shown  # the value is written on the chart, not only in the tooltip
            values[(series, row)] = value
    return values


def test_page_charts_and_table_show_the_same_numbers(
    app: Flask, client: FlaskClient, session: Session, seed: Seed, data: Data
) -> None:
    login_as(client, session, seed.staff91_id)
    response = client.get(URL_2025)
    assert response.status_code == 200
    page = response.get_data(as_text=True)
    assert "script" not in page.split("<main", 1)[1]  # no JavaScript on the page
    cells = _table_cells(page)
    charted = _chart_values(page)
    assert charted  # every bar…
    for key, value in charted.items():
        assert cells[key] == value, key  # …is in the table with the same number
    with app.app_context():
        board = _board(app, session)
    for row in services.rows(board):  # and the table is the service's figures
        for column, value in zip(board.columns, row.values, strict=True):
            assert cells[(column.label, row.label)] == format_value(value, row.kind)
    assert cells[("Les deux chambres", "Groupements constitués")] == "8"
    assert cells[("CCI Essonne", "Groupements interconsulaires")] == "2"
    assert cells[("CCI Seine-et-Marne", "Montant remporté (€ HT)")] == "150\u202f000 € HT"
    assert "/equipe/tableau-de-bord.csv?du=2025-01-01&amp;au=2025-12-31" in page


def test_csv_export(app: Flask, client: FlaskClient, session: Session, seed: Seed, data: Data) -> None:
    login_as(client, session, seed.admin_id)
    response = client.get(CSV_2025)
    assert response.status_code == 200
    assert response.content_type == "text/csv; charset=utf-8"
    assert "attachment" in response.headers["Content-Disposition"]
    assert "tableau-de-bord-2025-01-01-2025-12-31.csv" in response.headers["Content-Disposition"]
    raw = response.get_data()
    assert raw.startswith(b"\xef\xbb\xbf")  # the BOM Excel needs to read UTF-8
    lines = list(csv.reader(io.StringIO(raw.decode("utf-8-sig")), delimiter=";"))
    assert lines[0] == [
        "Rubrique",
        "Indicateur",
        "CCI Seine-et-Marne",
        "CCI Essonne",
        "Les deux chambres",
        "Début de période",
        "Fin de période",
    ]
    by_label = {line[1]: line[2:] for line in lines[1:]}
    assert by_label["Groupements constitués"] == ["6", "4", "8", "01/01/2025", "31/12/2025"]
    assert by_label["Montant remporté (€ HT)"][:3] == ["150000,50", "120000,50", "150000,50"]
    assert by_label["Nombre moyen de membres actifs"][2] == "1,9"
    assert by_label["Remportés"][:3] == ["1", "1", "2"]
    assert by_label["45 — Travaux de construction"][:3] == ["6", "2", "6"]
    with app.app_context():
        assert len(lines) - 1 == len(services.rows(_board(app, session)))


def test_bad_dates_answer_400_in_french(client: FlaskClient, session: Session, seed: Seed) -> None:
    login_as(client, session, seed.staff77_id)
    response = client.get("/equipe/tableau-de-bord?du=2025-13-01&au=2025-12-31")
    assert response.status_code == 400
    page = text_of(response)
    assert "La date de début « 2025-13-01 » n'existe pas." in page
    assert 'role="alert"' in page and "<svg" not in page
    response = client.get("/equipe/tableau-de-bord.csv?du=2025-12-01&au=2025-01-01")
    assert response.status_code == 400
    assert "doit précéder la date de fin" in text_of(response)
    assert client.get("/equipe/tableau-de-bord?periode=jamais").status_code == 400


def test_default_period_and_nav_link(client: FlaskClient, session: Session, seed: Seed) -> None:
    login_as(client, session, seed.staff77_id)
    page = text_of(client.get("/equipe/tableau-de-bord"))
    assert "12 derniers mois (du " in page
    assert 'href="/equipe/tableau-de-bord?periode=12-mois" aria-current="page"' in page
    assert 'href="/equipe/tableau-de-bord">Tableau de bord</a>' in page  # the staff navigation
    assert "Aucun groupement constitué" in page or "Principales divisions CPV" in page
