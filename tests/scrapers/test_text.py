"""Shared text, code and date helpers."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest

from scrapers import text

PARIS = ZoneInfo("Europe/Paris")


def test_as_list() -> None:
    assert text.as_list(None) == []
    assert text.as_list("a") == ["a"]
    assert text.as_list({"a": 1}) == [{"a": 1}]
    assert text.as_list([1, 2]) == [1, 2]


def test_entities_including_windows_1252_code_points() -> None:
    assert text.clean_text("Ma&#238;trise d&#146;&#156;uvre &#150; lot&nbsp;1") == "Maîtrise d’œuvre – lot 1"
    assert text.clean_text("&#140;UVRE") == "ŒUVRE"
    assert text.clean_text("SCARA &amp; Cie") == "SCARA & Cie"
    # raw C1 characters left by a wrong decoding are read as Windows-1252 too
    assert text.clean_text("d\x92\x9cuvre \x96 fin") == "d’œuvre – fin"


def test_whitespace_collapsed_and_empty_is_none() -> None:
    assert text.clean_text("  Marché Public \nDe La Spl   Levaparc \t") == "Marché Public De La Spl Levaparc"
    assert text.clean_text(" \n ") is None
    assert text.clean_text(None) is None
    assert text.clean_text({"#text": " x "}) == "x"
    assert text.clean_multiline("a  b\r\n\r\n\r\nc ") == "a b\n\nc"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("45432111", "45432111"),
        ("45432111-5", "45432111"),
        ("45432111-5 : Travaux", "45432111"),
        ("4543", None),
    ],
)
def test_normalize_cpv(value: str, expected: str | None) -> None:
    assert text.normalize_cpv(value) == expected


def test_cpv_check_digit_and_codes_in_free_text() -> None:
    assert text.cpv_check_digit("45432111") == 5
    assert text.cpv_check_digit("03000000") == 1
    found = text.cpvs_in_text("45432111-5 : Travaux de pose / 44111400-5 : Peintures / 45000000-9 faux")
    assert found == ["45432111", "44111400"]  # 45000000's check digit is 7, not 9


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2", "02"),
        ("02", "02"),
        ("8", "08"),
        ("77", "77"),
        ("2a", "2A"),
        ("2B", "2B"),
        ("971", "971"),
        ("99", None),
    ],
)
def test_normalize_department(value: str, expected: str | None) -> None:
    assert text.normalize_department(value) == expected


def test_department_from_postcode() -> None:
    assert text.department_from_postcode("91405") == "91"
    assert text.department_from_postcode("20000") == "2A"
    assert text.department_from_postcode("20200") == "2B"
    assert text.department_from_postcode("97110") == "971"
    assert text.department_from_postcode("ABC123") is None


def test_clean_siret() -> None:
    assert text.clean_siret("215 903 683 00013") == "21590368300013"
    assert text.clean_siret("123 456 789") is None  # a SIREN, not a SIRET
    assert text.clean_siret("0308356862_4661") is None  # a Belgian id
    assert text.clean_siret("not available") is None


def test_publication_number_and_idweb() -> None:
    assert text.normalize_publication_number("00047522-2024") == "47522-2024"
    assert text.normalize_publication_number("67623-2022") == "67623-2022"
    assert text.normalize_idweb("26_7298") == "26-7298"
    assert text.normalize_idweb("2026-01-21") is None


@pytest.mark.parametrize(
    ("label", "number", "rest"),
    [
        ("Lot 2 : Finition", "2", "Finition"),
        ("1- Prestations pour l’URSSAF de Rouen", "1", "Prestations pour l’URSSAF de Rouen"),
        ("Lot n°03 - Toiture", "3", "Toiture"),
        ("LOT 5_MENUISERIE", "5", "MENUISERIE"),
        ("2 rue de la Gendarmerie", None, "2 rue de la Gendarmerie"),
        ("2025SGAMI57045 - Rénovation", None, "2025SGAMI57045 - Rénovation"),
        ("TOITURE", None, "TOITURE"),
    ],
)
def test_split_lot_label(label: str, number: str | None, rest: str) -> None:
    assert text.split_lot_label(label) == (number, rest)


def test_lot_number_from_eforms_id() -> None:
    assert text.lot_number_from_id("LOT-0001") == "1"
    assert text.lot_number_from_id("LOT-0000") == "0"
    assert text.lot_number_from_id("PAR-0002") == "2"


def test_amounts() -> None:
    assert text.parse_decimal("159691.6") == Decimal("159691.6")
    assert text.parse_decimal("1 234,50") == Decimal("1234.50")
    assert text.positive_amount("0.00") is None
    assert text.parse_decimal("n/a") is None


def test_deadline_is_wall_clock_paris_time_whatever_the_offset() -> None:
    expected = dt.datetime(2026, 2, 16, 12, 0, tzinfo=PARIS)
    for value in ("2026-02-16T12:00:00+00:00", "2026-02-16T12:00:00.000+01:00", "2026-02-16T12:00:00"):
        deadline = text.parse_local_deadline(value)
        assert deadline == expected
        assert deadline is not None and deadline.utcoffset() == dt.timedelta(hours=1)
    summer = text.parse_local_deadline("2017-04-26T12:00:00+01:00")
    assert summer is not None and summer.isoformat() == "2017-04-26T12:00:00+02:00"


def test_wall_clock_in_dst_gap_and_overlap() -> None:
    gap = text.wall_clock(dt.date(2026, 3, 29), dt.time(2, 30), PARIS)
    assert gap.isoformat() == "2026-03-29T03:30:00+02:00"
    overlap = text.wall_clock(dt.date(2026, 10, 25), dt.time(2, 30), PARIS)
    assert overlap.isoformat() == "2026-10-25T02:30:00+02:00"


def test_parse_date() -> None:
    assert text.parse_date("2024-01-24Z") == dt.date(2024, 1, 24)
    assert text.parse_date("2019-05-10+01:00") == dt.date(2019, 5, 10)
    # TED's PD: 23:00 UTC is already the next day in Brussels
    assert text.parse_date("2022-02-06T23:00:00Z") == dt.date(2022, 2, 7)
    assert text.parse_date("garbage") is None


def test_pick_language() -> None:
    assert text.pick_language({"eng": "x", "fra": "y"}) == "y"
    assert text.pick_language({"deu": "z", "eng": "x"}) == "x"
    assert text.pick_language({"pol": ["a"]}) == ["a"]
    assert text.pick_language({}) is None


def test_overseas_zone() -> None:
    assert text.french_zone("971") == ZoneInfo("America/Guadeloupe")
    assert text.french_zone("77") == PARIS
    assert text.NUTS3_TO_DEPARTMENT["FR102"] == "77"
    assert text.NUTS3_TO_DEPARTMENT["FR104"] == "91"
