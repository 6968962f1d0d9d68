"""BoampSource.parse on every donnees shape.

The 7 real records of the fixtures cover FNSimple and MAPA initial notices. No real
legacy, rectificatif, attribution, annulation or EFORMS record exists in public
repositories, so those shapes are built here from real material: legacy ``donnees``
/ ``gestion`` are the JSON conversion of the real legacy XML fixtures (the API
stores exactly these elements), EFORMS is the JSON conversion of a real TED eForms
notice, and the 3.2.5 rectificatif/attribution blocks follow the paths documented
in data-sources.md §1.4 (marked *synthetic* below).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from scrapers.base import ContractType, Nature, ParsedNotice, ParseError
from scrapers.boamp import BoampSource, parse_boamp_record

from .support import boamp_record, fixture_bytes, make_client, raw_json, xml_root, xml_to_json

PARIS = ZoneInfo("Europe/Paris")


def parse(record: dict[str, Any]) -> ParsedNotice:
    return parse_boamp_record(raw_json(record, ref=record.get("idweb", "x")))


# ------------------------------------------------------------------- real FNSimple


def test_fnsimple_26_7298_deadline_is_noon_paris_not_one_hour_off() -> None:
    notice = parse(boamp_record("26-7298"))
    assert notice.source == "boamp"
    assert notice.source_ref == "26-7298"
    assert notice.nature is Nature.INITIAL
    assert notice.title == "TRAVAUX D'AMENAGEMENTS INTERIEURS ET EXTERIEURS"
    assert notice.deadline_at == dt.datetime(2026, 2, 16, 12, 0, tzinfo=PARIS)
    assert notice.deadline_at is not None and notice.deadline_at.utcoffset() == dt.timedelta(hours=1)
    assert notice.published_at == dt.date(2026, 1, 21)
    assert notice.buyer_name == "COMMUNE DE LA MADELEINE"
    assert notice.buyer_siret == "21590368300013"
    assert notice.buyer_internal_ref == "2026_TX_AMENAGEMENTS"
    assert notice.contract_type is ContractType.WORKS
    assert notice.procedure_type == "open"
    assert notice.departments == ("59",)
    # main CPV, then the two full codes quoted in categorieAcheteur ("45432111-5 : …")
    assert notice.cpv == ("45432111", "44111400")
    assert notice.url == "https://www.boamp.fr/pages/avis/?q=idweb:26-7298"
    assert (
        notice.dce_url == "https://marchespublics596280.fr/entreprise/consultation/581998?orgAcronyme=50368"
    )
    assert notice.lots == ()
    assert notice.awards == ()
    assert notice.previous_refs == ()


def test_fnsimple_26_7308_lots_from_free_text_and_value_range() -> None:
    notice = parse(boamp_record("26-7308"))
    assert notice.deadline_at == dt.datetime(2026, 2, 27, 12, 0, tzinfo=PARIS)  # naive in donnees
    assert notice.departments == ("76", "14", "27", "50", "61")
    assert notice.contract_type is ContractType.SERVICES
    assert notice.buyer_siret == "90209799700016"
    assert notice.estimated_value == Decimal("75000")  # high bound of the 1–75000 range
    assert notice.currency == "EUR"
    assert any("range" in w for w in notice.warnings)
    assert [lot.number for lot in notice.lots] == ["1", "2", "3", "4", "5", "6", "7"]
    assert notice.lots[0].title == "Prestations pour l’URSSAF de Rouen (Seine Maritime)"
    assert notice.lots[6].title == "Prestations pour l’URSSAF d’Alençon-Valframbert (Orne)"
    assert notice.lots[0].cpv == ("55520000",)


def test_fnsimple_26_7319_lot_numbers_and_zero_values() -> None:
    notice = parse(boamp_record("26-7319"))
    assert [(lot.number, lot.title) for lot in notice.lots] == [("2", "Finition"), ("5", "Menuiserie")]
    assert all(lot.estimated_value is None for lot in notice.lots)  # "0.00" means unknown
    assert notice.cpv == ("45454100", "45410000", "45421000")
    assert notice.buyer_name == "Région Auvergne-Rhône-ALpes"
    assert notice.departments == ("74", "69")


def test_fnsimple_26_7109_newlines_collapsed_in_title() -> None:
    notice = parse(boamp_record("26-7109"))
    assert notice.title == (
        "Marché Public Relatif à La Réalisation De Prestations De Mandat De Commissaires Aux Comptes "
        "Pour Les Exercices Comptables 2026-2031 De La Spl Levaparc"
    )
    assert notice.deadline_at == dt.datetime(2026, 3, 6, 12, 0, tzinfo=PARIS)
    assert notice.cpv == ("79200000",)
    assert notice.buyer_siret == "35334722200286"


def test_fnsimple_26_7113_departments_keep_leading_zeros_and_lots_without_numbers() -> None:
    notice = parse(boamp_record("26-7113"))
    assert notice.departments == ("02", "08", "10", "51", "52", "54", "55", "57", "77")
    assert notice.deadline_at == dt.datetime(2026, 2, 20, 11, 0, tzinfo=PARIS)
    assert notice.dce_url is not None and notice.dce_url.startswith("https://www.marches-publics.gouv.fr/")
    assert [lot.number for lot in notice.lots] == ["1", "2", "3", "4"]
    assert [lot.title for lot in notice.lots] == [
        "Rénovation de l'isolement thermique par l'extérieur (ITE)",
        "TOITURE",
        "MENUISERIE EXTÉRIEURE",
        "PEINTURE INTÉRIEURE",
    ]
    assert notice.lots[1].cpv == ("45261900",)
    assert any("inferred" in w for w in notice.warnings)


def test_flat_departments_are_normalised_when_gestion_is_missing() -> None:
    record = boamp_record("26-7113")
    del record["gestion"]
    notice = parse(record)
    assert notice.departments == ("02", "08", "10", "51", "52", "54", "55", "57", "77")
    # flat 3.2.5 deadline "11:00+00:00" is Paris clock time labelled UTC; donnees agree
    assert notice.deadline_at == dt.datetime(2026, 2, 20, 11, 0, tzinfo=PARIS)


def test_flat_deadline_alone_is_read_as_paris_clock_time_for_3_2_5() -> None:
    record = boamp_record("26-7298")
    del record["gestion"]
    del record["donnees"]
    notice = parse(record)
    assert notice.deadline_at == dt.datetime(2026, 2, 16, 12, 0, tzinfo=PARIS)  # not 13:00
    assert any("flat fields only" in w for w in notice.warnings)


# ------------------------------------------------------------------------- real MAPA


def test_mapa_24_76932() -> None:
    notice = parse(boamp_record("24-76932"))
    assert notice.title.startswith("MISSION DE MAITRISE D’ŒUVRE")
    assert notice.deadline_at == dt.datetime(2024, 7, 25, 12, 0, tzinfo=PARIS)
    assert notice.deadline_at is not None and notice.deadline_at.utcoffset() == dt.timedelta(hours=2)
    assert notice.buyer_name == "Communauté de Communes Pays d'Orange en Provence (84)"
    assert notice.buyer_internal_ref == "24-061P"
    assert notice.contract_type is ContractType.SERVICES
    assert notice.procedure_type == "adapted"
    assert notice.dce_url == "https://www.marches-securises.fr"
    assert notice.departments == ("84",)
    assert notice.buyer_siret is None


def test_mapa_24_76638() -> None:
    notice = parse(boamp_record("24-76638"))
    assert notice.departments == ("54", "57")
    assert notice.deadline_at == dt.datetime(2024, 9, 2, 12, 0, tzinfo=PARIS)
    assert notice.buyer_internal_ref == "2024DPI_GEM_782_MOE"
    assert notice.dce_url is not None and "orgAcronyme=f2h" in notice.dce_url


def test_html_entities_and_cp1252_in_flat_texts() -> None:
    record = boamp_record("24-76638")
    record["objet"] = "Ma&#238;trise d&#146;&#156;uvre &#150; lot&nbsp;1\n  suite"
    record["nomacheteur"] = "UNIVERSIT&#201; DE   LORRAINE "
    notice = parse(record)
    assert notice.title == "Maîtrise d’œuvre – lot 1 suite"
    assert notice.buyer_name == "UNIVERSITÉ DE LORRAINE"


def test_buyer_name_with_an_embedded_address_falls_back_to_donnees() -> None:
    record = boamp_record("24-76638")
    record["nomacheteur"] = "Université de Lorraine\n34 cours Léopold\n54000 Nancy"
    assert parse(record).buyer_name == "UNIVERSITE DE LORRAINE"


# ------------------------------------------------------------ natures and links


def test_annulation_and_avis_annule() -> None:
    record = boamp_record("26-7109")
    record["nature"] = "ANNULATION"
    notice = parse(record)
    assert notice.nature is Nature.CANCELLATION and notice.is_cancelled
    record = boamp_record("26-7109")
    record["etat"] = "AVIS_ANNULE"
    notice = parse(record)
    assert notice.nature is Nature.CANCELLATION and notice.is_cancelled


@pytest.mark.parametrize(
    ("code", "nature"),
    [
        ("PRE-INFORMATION", Nature.PRIOR_INFORMATION),
        ("MODIFICATION", Nature.OTHER),
        ("EX_ANTE_VOLONTAIRE", Nature.OTHER),
    ],
)
def test_other_natures(code: str, nature: Nature) -> None:
    record = boamp_record("26-7109")
    record["nature"] = code
    assert parse(record).nature is nature


def test_rectificatif_3_2_5_synthetic() -> None:
    record = boamp_record("26-7298")
    donnees = json.loads(record["donnees"])
    body = donnees["FNSimple"]
    body["rectificatif"] = {
        "avisInitial": {"idWeb": "26-1234", "datePublication": "2026-01-05"},
        "infosRectif": {"rubrique": "Date limite", "lire": "2026-03-02T12:00:00"},
    }
    del body["initial"]
    record["donnees"] = json.dumps(donnees, ensure_ascii=False)
    record["nature"] = "RECTIFICATIF"
    record["annonce_lie"] = ["26-1234"]
    record["annonces_anterieures"] = json.dumps({"ANNONCE_ANTERIEURE": {"REFERENCE": {"IDWEB": "25-99887"}}})
    notice = parse(record)
    assert notice.nature is Nature.CORRIGENDUM
    assert notice.previous_refs == ("26-1234", "25-99887")
    # the indexed (gestion) deadline is the current one for a rectificatif
    assert notice.deadline_at == dt.datetime(2026, 2, 16, 12, 0, tzinfo=PARIS)
    assert notice.buyer_siret == "21590368300013"


def test_attribution_3_2_5_synthetic_winners_and_flat_titulaire_fallback() -> None:
    record = boamp_record("24-76638")
    donnees = json.loads(record["donnees"])
    body = donnees["MAPA"]
    del body["initial"]
    body["attribution"] = {
        "avisInitial": {"idWeb": "24-70001"},
        "attribution": {
            "resultat": [
                {
                    "numLot": "1",
                    "attribue": {
                        "titulaire": {
                            "denomination": "ACME INGENIERIE",
                            "codeIdentificationNational": "123 456 789 00012",
                        },
                        "montant": {"@devise": "EUR", "valeur": "45000"},
                    },
                },
                {"numLot": "2", "sansSuite": ""},
            ]
        },
    }
    record["donnees"] = json.dumps(donnees, ensure_ascii=False)
    record["nature"] = "ATTRIBUTION"
    record["titulaire"] = ["ACME Ingénierie", "BETA CONSEIL", "BETA CONSEIL"]
    notice = parse(record)
    assert notice.nature is Nature.AWARD
    assert notice.previous_refs == ("24-70001",)
    won = [a for a in notice.awards if not a.unsuccessful]
    assert [(a.lot, a.winner_name, a.winner_siret, a.amount, a.currency) for a in won] == [
        ("1", "ACME INGENIERIE", "12345678900012", Decimal("45000"), "EUR"),
        (None, "BETA CONSEIL", None, None, None),  # from the flat list, once
    ]
    assert [a.lot for a in notice.awards if a.unsuccessful] == ["2"]


def test_annonce_lie_is_a_previous_ref() -> None:
    record = boamp_record("26-7109")
    record["nature"] = "ATTRIBUTION"
    record["annonce_lie"] = ["26-22817"]
    record["titulaire"] = ["SOCIETE X", "SOCIETE X"]
    notice = parse(record)
    assert notice.previous_refs == ("26-22817",)
    assert notice.nature is Nature.AWARD
    assert [a.winner_name for a in notice.awards] == ["SOCIETE X"]


# ----------------------------------------------------------------- legacy Boamp_v230


def legacy_record(xml_name: str, **flat: Any) -> dict[str, Any]:
    """A legacy API record: flat fields + gestion/donnees = JSON of the real XML elements."""
    root = xml_root(f"boamp-xml/{xml_name}")
    gestion = xml_to_json(root.find("GESTION"))
    donnees = xml_to_json(root.find("DONNEES"))
    idweb = gestion["REFERENCE"]["IDWEB"]
    record = {
        "idweb": idweb,
        "id": idweb.replace("-", "_"),
        "objet": gestion["INDEXATION"].get("RESUME_OBJET"),
        "source_schema": "Boamp_v230.xsd",
        "url_avis": f"https://www.boamp.fr/pages/avis/?q=idweb:{idweb}",
        "gestion": json.dumps(gestion, ensure_ascii=False),
        "donnees": json.dumps(donnees, ensure_ascii=False),
    }
    record.update(flat)
    return record


def test_legacy_attribution_16_178891_points_to_16_139506() -> None:
    notice = parse(
        legacy_record("boamp-rdf_test-attribution-3.xml", nature="ATTRIBUTION", code_departement=["91"])
    )
    assert notice.source == "boamp"
    assert notice.source_ref == "16-178891"
    assert notice.nature is Nature.AWARD
    assert notice.previous_refs == ("16-139506",)
    assert notice.departments == ("91",)
    assert notice.buyer_name == "Université paris Sud"
    assert [a.winner_name for a in notice.awards] == ["Axe Sig/Atmosphère"]
    assert notice.url == "https://www.boamp.fr/pages/avis/?q=idweb:16-178891"


def test_legacy_attribution_11_two_previous_notices_and_two_winners() -> None:
    notice = parse(
        legacy_record(
            "boamp-rdf_test-attribution-11.xml", nature="ATTRIBUTION", titulaire=["SOPEXA HONG KONG"]
        )
    )
    assert notice.previous_refs == ("16-106898", "16-114771")
    assert [a.winner_name for a in notice.awards] == ["INS GLOBAL CONSULTING", "SOPEXA HONG KONG"]


def test_legacy_call_for_tenders_deadline_and_cpv() -> None:
    notice = parse(legacy_record("boamp-rdf_test-pub-9.xml", nature="APPEL_OFFRE"))
    assert notice.nature is Nature.INITIAL
    assert notice.deadline_at == dt.datetime(2016, 1, 25, 16, 0, tzinfo=PARIS)
    assert notice.cpv == ("79625000",)
    assert notice.nuts == ("FR715",)
    assert notice.title == "prestation d'interim médical en anesthesie-réanimation, CHU, à Saint-Etienne"


def test_legacy_flat_deadline_converted_back_from_utc() -> None:
    # a legacy record fetched without donnees: "12:00+01:00" was stored as "11:00+00:00"
    record = legacy_record("boamp-rdf_test-pub-8.xml", datelimitereponse="2017-04-26T11:00:00+00:00")
    del record["donnees"]
    gestion = json.loads(record["gestion"])
    record["gestion"] = json.dumps(gestion)
    notice = parse(record)
    assert notice.deadline_at == dt.datetime(2017, 4, 26, 12, 0, tzinfo=PARIS)


# ---------------------------------------------------------------------------- EFORMS


def eforms_record(xml_name: str) -> dict[str, Any]:
    root = xml_root(f"eforms/{xml_name}")
    record = boamp_record("26-7113")
    record.update(
        {
            "idweb": "24-12345",
            "id": "24_12345",
            "famille": "JOUE",
            "contractfolderid": "240D1AD9-B2D8-45EC-BEA9-D11E7A75B28E",
            "source_schema": "3.2.5",
            "code_departement": ["30"],
            "datelimitereponse": "2024-02-28T12:00:00+00:00",
            "objet": None,
            "gestion": None,
            "donnees": json.dumps({"EFORMS": {"ContractNotice": xml_to_json(root)}}, ensure_ascii=False),
            "url_avis": "https://www.boamp.fr/pages/avis/?q=idweb:24-12345",
        }
    )
    return record


def test_eforms_donnees_parsed_with_the_eforms_parser() -> None:
    notice = parse(eforms_record("ted-published_2024-OJS017-00047522.xml"))
    assert notice.source == "boamp"
    assert notice.source_ref == "24-12345"
    assert notice.nature is Nature.INITIAL
    assert notice.title.startswith("Prestations de collecte des colonnes de verre et de papier")
    assert notice.procedure_id == "240d1ad9-b2d8-45ec-bea9-d11e7a75b28e"
    assert notice.notice_uuid == "a638ab6b-7005-48a9-a9c7-b91bfc6142f1"
    assert notice.buyer_siret == "20003441100013"
    assert notice.deadline_at == dt.datetime(2024, 2, 28, 12, 0, tzinfo=PARIS)
    assert [lot.number for lot in notice.lots] == ["1", "2"]
    assert notice.cpv == ("90511100", "90511400")
    assert notice.departments == ("30",)
    assert notice.url == "https://www.boamp.fr/pages/avis/?q=idweb:24-12345"


def test_eforms_award_in_boamp_keeps_the_4_hop_winners() -> None:
    root = xml_root("eforms/ted-published_2024-OJS065-00191534.xml")
    record = eforms_record("ted-published_2024-OJS017-00047522.xml")
    record["donnees"] = json.dumps({"EFORMS": {"ContractAwardNotice": xml_to_json(root)}}, ensure_ascii=False)
    record["nature"] = "ATTRIBUTION"
    notice = parse(record)
    assert notice.nature is Nature.AWARD
    assert sorted((a.lot, a.winner_name) for a in notice.awards) == [
        ("1", "Belgo Facility Services"),
        ("2", "M&G CLEANING"),
        ("3", "Belgo Facility Services"),
        ("4", "Belgo Facility Services"),
        ("5", "Belgo Facility Services"),
    ]


# ---------------------------------------------------------------------------- errors


def test_unknown_donnees_shape_is_a_parse_error() -> None:
    record = boamp_record("26-7298")
    record["donnees"] = json.dumps({"FORMULAIRE_X": {"a": 1}})
    with pytest.raises(ParseError, match="forme de donnees inconnue: FORMULAIRE_X"):
        parse(record)


def test_bad_json_in_donnees_is_a_parse_error() -> None:
    record = boamp_record("26-7298")
    record["donnees"] = record["donnees"][:200]
    with pytest.raises(ParseError, match="donnees: invalid JSON"):
        parse(record)


def test_payload_that_is_not_json_is_a_parse_error() -> None:
    broken = dataclasses.replace(raw_json({}), payload=b'{"idweb": "26-1')
    with pytest.raises(ParseError, match="not valid JSON"):
        parse_boamp_record(broken)


def test_record_without_idweb_is_a_parse_error() -> None:
    record = boamp_record("26-7298")
    del record["idweb"]
    del record["id"]
    with pytest.raises(ParseError, match="idweb"):
        parse(record)


def test_source_parse_method_is_the_same_parser() -> None:
    with make_client() as client:
        source = BoampSource(client)
        notice = source.parse(raw_json(boamp_record("26-7298")))
    assert notice.source_ref == "26-7298"


def test_fixture_records_are_bytes_of_the_real_files() -> None:
    assert b"26-7298" in fixture_bytes("boamp/jpbenga_where-dateparution-2026_5records_FNSimple.json")
