"""French display of dates and amounts (28/11/2026, 1 234 567 € HT), as Jinja filters."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from zoneinfo import ZoneInfo

from babel.numbers import format_decimal
from flask import Flask

PARIS = ZoneInfo("Europe/Paris")


def to_paris(value: dt.datetime) -> dt.datetime:
    if value.tzinfo is None:
        raise ValueError("naive datetime")
    return value.astimezone(PARIS)


def date_fr(value: dt.date | dt.datetime | None) -> str:
    """28/11/2026 (a datetime is first converted to Paris time)."""
    if value is None:
        return "—"
    if isinstance(value, dt.datetime):
        value = to_paris(value)
    return value.strftime("%d/%m/%Y")


def datetime_fr(value: dt.datetime | None) -> str:
    """28/11/2026 à 12:00, in Paris time."""
    if value is None:
        return "—"
    return to_paris(value).strftime("%d/%m/%Y à %H:%M")


def number_fr(value: int | float | Decimal | None, digits: int = 0) -> str:
    if value is None:
        return "—"
    pattern = "#,##0" if digits == 0 else "#,##0." + "0" * digits
    # Babel's French grouping separator is a narrow no-break space (U+202F).
    return str(format_decimal(value, format=pattern, locale="fr_FR"))


def money_fr(value: int | float | Decimal | None, suffix: str = " € HT") -> str:
    """1 234 567 € HT."""
    if value is None:
        return "non renseigné"
    return number_fr(value) + suffix


def register(app: Flask) -> None:
    app.jinja_env.filters.update(
        date_fr=date_fr, datetime_fr=datetime_fr, money_fr=money_fr, number_fr=number_fr
    )
