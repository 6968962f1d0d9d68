"""The eForms parser on every eForms fixture (SDK examples and published notices)."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from scrapers.base import ContractType, Nature, ParsedAward, ParsedNotice, ParseError
from scrapers.eforms import eforms_reference, parse_eforms

from .support import fixture_bytes, xml_root

PARIS = ZoneInfo("Europe/Paris")


def parse(name: str) -> ParsedNotice:
    return parse_eforms(fixture_bytes(f"eforms/{name}"))


def test_cn_24_fra_comments_two_lots_and_deadline_read_as_paris_time() -> None:
    notice = parse("sdk-example_cn_24_FRA_comments.xml")
    assert notice.source == "eforms"
    assert notice.nature is Nature.INITIAL
    assert notice.title == "Service d'entretien de remise en état et de nettoyage des espaces verts"
    assert notice.procedure_id == "e3cdabf1-e057-47a5-9210-b1f6fc757228"
    assert notice.notice_uuid == "da4d46e9-490b-41ff-a2ae-8166d356a619"
    assert notice.notice_version == "01"
    assert notice.source_ref == "da4d46e9-490b-41ff-a2ae-8166d356a619-01"  # not published: no OJ S number
    assert notice.published_at is None
    assert notice.buyer_name == "Rouen Habitat"
    assert notice.buyer_siret is None  # "123 456 789" is a SIREN-like 9 digits
    assert notice.buyer_internal_ref == "19S0001"
    assert notice.contract_type is ContractType.SERVICES
    assert notice.procedure_type == "open"
    # "2019-06-24Z" + "16:00:00Z": the written offset is wrong, the clock time is Paris time
    assert notice.deadline_at == dt.datetime(2019, 6, 24, 16, 0, tzinfo=PARIS)
    assert [(lot.number, lot.title) for lot in notice.lots] == [
        ("1", "Agence centre"),
        ("2", "Agence Hauts de Rouen"),
    ]
    assert all(lot.deadline_at is None for lot in notice.lots)  # same deadline for both lots
    assert notice.lots[0].nuts == ("FRD22",)
    assert notice.cpv == ("77310000",)
    assert notice.nuts == ("FRD22",)
    assert notice.departments == ("76",)
    assert notice.dce_url == "https://www.marches-publics.info/accueil.htm"


def test_cn_23_buyer_siret_and_no_lot_0000() -> None:
    notice = parse("sdk-example_cn_23.xml")
    assert notice.buyer_name == "Communauté de communes Loches sud Touraine"
    assert notice.buyer_siret == "20007158700014"
    assert notice.lots == ()  # LOT-0000 is the procedure itself
    assert notice.cpv == ("85312110",)
    assert notice.departments == ("37",)
    assert notice.deadline_at is None
    assert notice.title.startswith("Concession de service public pour la gestion des équipements")


def test_can_24_minimal_winner_through_the_4_hop_join() -> None:
    notice = parse("sdk-example_can_24_minimal.xml")
    assert notice.nature is Nature.AWARD
    assert notice.awards == (
        ParsedAward(lot=None, winner_name="Espaces Verts Lemire", amount=Decimal("95414"), currency="EUR"),
    )
    assert notice.procedure_id == "022d0ef9-6338-42d9-afa4-a87709128061"


def test_change_notice_is_a_corrigendum_pointing_to_the_changed_notice() -> None:
    notice = parse("sdk-example_change-cn_24_open_dates.xml")
    assert notice.nature is Nature.CORRIGENDUM
    assert not notice.is_cancelled
    assert notice.previous_refs == ("c4c415ee-ac08-4465-8fa6-57568cf69462-01",)
    assert notice.buyer_name == "Renfrewshire Council"
    # a UK buyer: the clock time is London time
    assert notice.deadline_at == dt.datetime(2020, 6, 12, 12, 0, tzinfo=ZoneInfo("Europe/London"))
    assert notice.estimated_value == Decimal("500000") and notice.currency == "EUR"
    assert notice.cpv == ("71630000", "71314100", "50300000", "31600000")


def test_change_notice_with_cancel_reason_is_a_cancellation() -> None:
    data = fixture_bytes("eforms/sdk-example_change-cn_24_open_dates.xml").replace(
        b'listName="change-corrig-justification">update-add<',
        b'listName="change-corrig-justification">cancel<',
    )
    notice = parse_eforms(data)
    assert notice.nature is Nature.CANCELLATION
    assert notice.is_cancelled


def test_can_modif_points_to_the_modified_award_by_publication_number() -> None:
    notice = parse("sdk-example_can-modif_24_value.xml")
    assert notice.nature is Nature.OTHER
    assert notice.previous_refs == ("342558-2018",)
    assert notice.awards == (
        ParsedAward(lot=None, winner_name="PwC UK LLP", amount=Decimal("6430000"), currency="GBP"),
    )


def test_pin_only_has_no_contract_folder_id() -> None:
    notice = parse("sdk-example_pin-only_24.xml")
    assert notice.nature is Nature.PRIOR_INFORMATION
    assert notice.procedure_id is None
    assert notice.title == "ProPrName1234"
    assert notice.estimated_value == Decimal("100000")
    assert notice.cpv == ("72000000", "50000000")
    assert notice.nuts == ("DE123", "DE401")
    assert notice.lots == ()  # a single part (PAR-0000)


def test_published_french_cn_47522_2024() -> None:
    notice = parse("ted-published_2024-OJS017-00047522.xml")
    assert notice.source_ref == "47522-2024"
    assert notice.published_at == dt.date(2024, 1, 24)
    assert notice.url == "https://ted.europa.eu/fr/notice/-/detail/47522-2024"
    assert notice.buyer_name == "Communauté de Communes du Piémont Cévenol"
    assert notice.buyer_siret == "20003441100013"
    # "2024-02-28+02:00" / "12:00:00+02:00" in winter: noon Paris time (CET, +01:00)
    assert notice.deadline_at == dt.datetime(2024, 2, 28, 12, 0, tzinfo=PARIS)
    assert notice.deadline_at is not None and notice.deadline_at.utcoffset() == dt.timedelta(hours=1)
    assert [(lot.number, lot.cpv) for lot in notice.lots] == [("1", ("90511100",)), ("2", ("90511400",))]
    assert notice.cpv == ("90511100", "90511400")
    assert notice.nuts == ("FRJ12",)
    assert notice.departments == ("30",)
    assert notice.dce_url == "https://www.achatpublic.com"


def test_published_french_pin_cfc_overseas_buyer_without_nuts() -> None:
    notice = parse("ted-published_2024-OJS074-00219998.xml")
    assert notice.nature is Nature.INITIAL  # a PIN used as a call for competition
    assert notice.source_ref == "219998-2024"
    assert notice.nuts == ()
    assert notice.departments == ("971",)  # from the buyer's postcode 97110
    # expression-of-interest deadline, read on Guadeloupe clocks
    assert notice.deadline_at == dt.datetime(2024, 5, 13, 12, 0, tzinfo=ZoneInfo("America/Guadeloupe"))
    assert notice.buyer_siret == "20001865300051"


def test_published_bilingual_belgian_award_with_swapped_lot_results() -> None:
    notice = parse("ted-published_2024-OJS065-00191534.xml")
    assert notice.source_ref == "191534-2024"
    assert notice.notice_version == "02"
    assert notice.buyer_name == "SPF Intérieur"  # FRA preferred over NLD
    assert notice.buyer_siret is None  # "0308356862_4661" is not a SIRET
    assert notice.title.startswith("PROCEDURE OUVERTE POUR LE NETTOYAGE DES MAISONS FITT")
    assert notice.lots[2].description == "Maisons FITT à Tielt"
    assert sorted((a.lot, a.winner_name, a.amount) for a in notice.awards) == [
        ("1", "Belgo Facility Services", Decimal("8819.09")),
        ("2", "M&G CLEANING", Decimal("13768.11")),
        ("3", "Belgo Facility Services", Decimal("11016.45")),
        ("4", "Belgo Facility Services", Decimal("11807.88")),
        ("5", "Belgo Facility Services", Decimal("9317.85")),
    ]


def test_published_estonian_award() -> None:
    notice = parse("ted-published_00000372-2025_EST_can.xml")
    assert notice.source_ref == "372-2025"
    assert notice.published_at == dt.date(2025, 1, 2)
    assert notice.title == "Lootemonitor"
    assert notice.contract_type is ContractType.SUPPLIES
    assert notice.awards == (
        ParsedAward(lot=None, winner_name="Medivar OÜ", amount=Decimal("23185.00"), currency="EUR"),
    )


def test_eforms_reference() -> None:
    assert eforms_reference(xml_root("eforms/ted-published_2024-OJS017-00047522.xml")) == "47522-2024"
    assert (
        eforms_reference(xml_root("eforms/sdk-example_pin-only_24.xml"))
        == "f252f386-55ac-4fa8-9be4-9f950b9904c8-01"
    )


def test_malformed_xml_is_a_parse_error() -> None:
    with pytest.raises(ParseError, match="malformed XML"):
        parse_eforms(fixture_bytes("eforms/sdk-example_cn_23.xml")[:5000])


def test_not_an_eforms_root_is_a_parse_error() -> None:
    with pytest.raises(ParseError, match="not an eForms notice"):
        parse_eforms(fixture_bytes("boamp-xml/boamp-rdf_test-pub.xml"))


def test_external_entities_are_not_resolved(tmp_path: Path) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("TOP-SECRET")
    data = (
        f'<?xml version="1.0"?><!DOCTYPE ContractNotice [<!ENTITY x SYSTEM "{secret.as_uri()}">]>'
        '<ContractNotice xmlns="urn:oasis:names:specification:ubl:schema:xsd:ContractNotice-2" '
        'xmlns:cac="urn:oasis:names:specification:ubl:schema:xsd:CommonAggregateComponents-2" '
        'xmlns:cbc="urn:oasis:names:specification:ubl:schema:xsd:CommonBasicComponents-2">'
        '<cbc:ID schemeName="notice-id">n-1</cbc:ID>'
        "<cac:ProcurementProject><cbc:Name>Titre &x;</cbc:Name></cac:ProcurementProject></ContractNotice>"
    ).encode()
    notice = parse_eforms(data)
    assert "TOP-SECRET" not in repr(notice)
