"""The legacy BOAMP XML parser on every legacy fixture."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest

from scrapers.base import ContractType, Nature, ParsedNotice, ParseError
from scrapers.boamp_xml import parse_boamp_xml

from .support import fixture_bytes

PARIS = ZoneInfo("Europe/Paris")


def parse(name: str) -> ParsedNotice:
    return parse_boamp_xml(fixture_bytes(f"boamp-xml/boamp-rdf_{name}.xml"))


def test_pub_16_186394_paris_two_lots() -> None:
    notice = parse("test-pub")
    assert notice.source == "boamp-xml"
    assert notice.source_ref == "16-186394"
    assert notice.nature is Nature.INITIAL
    assert notice.title == "2016 DFA 167 - Prestations de remorquage pour les véhicules de la ville de Paris"
    assert notice.published_at == dt.date(2017, 1, 1)
    assert notice.deadline_at == dt.datetime(2017, 2, 7, 12, 0, tzinfo=PARIS)
    assert notice.buyer_name == "Ville de Paris"
    assert notice.buyer_internal_ref == "2016V12019350"
    assert notice.contract_type is ContractType.SERVICES
    assert notice.procedure_type == "open"
    assert notice.departments == ("75",)
    assert notice.cpv == ("50118110",)
    assert [lot.number for lot in notice.lots] == ["1", "2"]
    assert notice.lots[1].title == "Prestations de remorquage pour les poids lourds de la ville de Paris"
    assert notice.nuts == ("FR10", "FR101")
    assert notice.url == "https://www.boamp.fr/pages/avis/?q=idweb:16-186394"
    assert notice.dce_url == "https://marches.maximilien.fr"


def test_pub_2_not_divided_single_lot_merged_into_the_notice() -> None:
    notice = parse("test-pub-2")
    assert notice.source_ref == "16-181902"
    assert notice.lots == ()
    assert notice.cpv == ("71240000", "79311000", "71335000")
    assert notice.estimated_value == Decimal("50000") and notice.currency == "EUR"
    assert notice.deadline_at == dt.datetime(2017, 1, 30, 16, 0, tzinfo=PARIS)
    assert notice.departments == ("13",)


def test_pub_4_concession() -> None:
    notice = parse("test-pub-4")
    assert notice.source_ref == "16-186173"
    assert notice.buyer_name == "COMMUNE DE LES ANDELYS"
    assert notice.deadline_at == dt.datetime(2017, 2, 28, 12, 0, tzinfo=PARIS)
    assert notice.cpv == ("65110000", "65100000")
    assert notice.departments == ("27",)


def test_pub_5_lot_values() -> None:
    notice = parse("test-pub-5")
    assert notice.source_ref == "16-186359"
    assert [(lot.number, lot.estimated_value) for lot in notice.lots] == [
        ("1", Decimal("1083333")),
        ("2", Decimal("6333333")),
    ]
    assert notice.dce_url is not None and "refConsultation=316558" in notice.dce_url


def test_pub_8_summer_deadline_written_plus_one_hour_is_paris_noon() -> None:
    notice = parse("test-pub-8")
    assert notice.source_ref == "17-40964"
    # written "2017-04-26T12:00:00+01:00" although Paris is at +02:00 in April
    assert notice.deadline_at == dt.datetime(2017, 4, 26, 12, 0, tzinfo=PARIS)
    assert notice.deadline_at is not None and notice.deadline_at.utcoffset() == dt.timedelta(hours=2)
    assert notice.estimated_value == Decimal("3200000")
    assert notice.lots == ()  # DIV_EN_LOTS/NON
    assert notice.nuts == ("FR612", "FR")


def test_pub_9_fns() -> None:
    notice = parse("test-pub-9")
    assert notice.source_ref == "16-652"
    assert notice.deadline_at == dt.datetime(2016, 1, 25, 16, 0, tzinfo=PARIS)
    assert notice.cpv == ("79625000",)
    assert notice.procedure_type == "adapted"
    assert notice.buyer_internal_ref == "DAMR 2016/01"
    assert (
        notice.dce_url
        == "https://www.achats-hopitaux.com/sdm/ent/gen/ent_detail.do?PCSLID=CSL_2016_lXSMZ9P7PH"
    )


def test_attribution_2_single_winner_gets_the_total_value() -> None:
    notice = parse("test-attribution-2")
    assert notice.nature is Nature.AWARD
    assert notice.previous_refs == ("16-119846",)
    assert [(a.winner_name, a.amount, a.currency) for a in notice.awards] == [
        ("SARL ENVIRONNEMENT & SOLUTIONS", Decimal("38820"), "EUR")
    ]


def test_attribution_3_essonne_points_to_16_139506() -> None:
    notice = parse("test-attribution-3")
    assert notice.source_ref == "16-178891"
    assert notice.previous_refs == ("16-139506",)
    assert notice.departments == ("91",)
    assert notice.buyer_name == "Université paris Sud"
    assert notice.title == "Plan de déplacement Campus de l'Université Paris Sud"
    assert [a.winner_name for a in notice.awards] == ["Axe Sig/Atmosphère"]


def test_attribution_4_sans_suite() -> None:
    notice = parse("test-attribution-4")
    assert notice.source_ref == "16-183123"
    assert notice.previous_refs == ("16-155545", "16-159242")
    assert len(notice.awards) == 1
    assert notice.awards[0].unsuccessful and notice.awards[0].winner_name is None
    assert [lot.number for lot in notice.lots] == ["1", "2", "3"]  # described by the decisions
    assert notice.departments == ("10",)


def test_attribution_5_amount_from_renseignement() -> None:
    notice = parse("test-attribution-5")
    assert notice.previous_refs == ("16-36319",)
    assert [(a.winner_name, a.amount) for a in notice.awards] == [("Moter", Decimal("159691.6"))]


def test_attribution_7_three_winners_in_one_decision() -> None:
    notice = parse("test-attribution-7")
    assert notice.previous_refs == ("16-166926",)
    assert notice.departments == ("92",)
    assert [a.winner_name for a in notice.awards] == [
        "ADECCO MEDICAL",
        "SELECT TT APPEL MEDICAL",
        "TROOPS IZUMA",
    ]
    assert all(a.amount is None for a in notice.awards)  # only min/max amounts given


def test_attribution_9_department_5_becomes_05() -> None:
    notice = parse("test-attribution-9")
    assert notice.departments == ("05",)
    assert notice.previous_refs == ("16-105311",)
    assert [(a.winner_name, a.amount) for a in notice.awards] == [
        ("ROIRET Energies", Decimal("150000")),
        ("SCARA & Cie", Decimal("150000")),
    ]
    assert notice.cpv == ("45314320", "45311000")


def test_attribution_11_two_previous_notices() -> None:
    notice = parse("test-attribution-11")
    assert notice.source_ref == "17-8864"
    assert notice.previous_refs == ("16-106898", "16-114771")
    assert [a.winner_name for a in notice.awards] == ["INS GLOBAL CONSULTING", "SOPEXA HONG KONG"]
    assert notice.dce_url == "https://www.boamp.fr/demat/consultation/CONS-16-106898"


def test_errors() -> None:
    with pytest.raises(ParseError, match="malformed XML"):
        parse_boamp_xml(b"<ANNONCE><GESTION>")
    with pytest.raises(ParseError, match="not a legacy BOAMP notice"):
        parse_boamp_xml(fixture_bytes("eforms/sdk-example_cn_23.xml"))
    with pytest.raises(ParseError, match="IDWEB"):
        parse_boamp_xml(b"<ANNONCE><GESTION/><DONNEES/></ANNONCE>")
