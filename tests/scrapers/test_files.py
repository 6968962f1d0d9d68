"""iter_file_records: format detection, streaming JSON Lines, malformed lines, errors."""

from __future__ import annotations

import gzip
import json
import shutil
from pathlib import Path

import pytest

from scrapers.base import Nature, ParseError
from scrapers.files import UnknownFormatError, UnreadableFileError, iter_file_records
from scrapers.registry import parse_raw

from .support import boamp_records, fixture_bytes, fixture_path


def copy_fixture(tmp_path: Path, relative: str) -> Path:
    target = tmp_path / Path(relative).name
    shutil.copyfile(fixture_path(relative), target)
    return target


def test_boamp_records_page(tmp_path: Path) -> None:
    records = list(iter_file_records(fixture_path("boamp/nicolasmura_boamp-query_2records_MAPA_2024.json")))
    assert [(r.source, r.source_ref) for r in records] == [("boamp", "24-76932"), ("boamp", "24-76638")]
    assert all(r.content_type == "application/json" for r in records)
    assert parse_raw(records[0]).title.startswith("MISSION DE MAITRISE")


def test_wrapped_boamp_page(tmp_path: Path) -> None:
    path = fixture_path("boamp/jpbenga_where-dateparution-2026_5records_FNSimple.json")
    records = list(iter_file_records(path, source="boamp"))
    assert [r.source_ref for r in records] == ["26-7298", "26-7308", "26-7319", "26-7109", "26-7113"]
    assert records[0].fetched_at.tzinfo is not None
    assert records[0].url == str(path)
    assert parse_raw(records[4]).departments[-1] == "77"


def test_wrapper_holding_an_error_is_refused() -> None:
    with pytest.raises(UnknownFormatError, match="Unknown field: departement"):
        list(iter_file_records(fixture_path("boamp/jpbenga_error-400_unknown-field.json")))


def test_json_array_of_boamp_records(tmp_path: Path) -> None:
    path = tmp_path / "export.json"
    path.write_text(json.dumps(list(boamp_records().values()), ensure_ascii=False, indent=2))
    records = list(iter_file_records(path))
    assert len(records) == 7
    assert {r.source for r in records} == {"boamp"}
    assert json.loads(records[0].payload) == next(iter(boamp_records().values()))


def test_jsonl_with_a_malformed_line_is_streamed_and_the_bad_line_quarantinable(tmp_path: Path) -> None:
    good = [json.dumps(r, ensure_ascii=False) for r in boamp_records().values()]
    lines = [good[0], "", good[1], '{"idweb": "26-99", "objet": "cut here', good[2], "[1, 2]", good[3]]
    path = tmp_path / "boamp.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")

    records = iter_file_records(path)
    first = next(records)  # a generator: nothing else needs to be read yet
    rest = list(records)
    all_records = [first, *rest]
    assert [r.source_ref for r in all_records] == [
        "26-7298", "26-7308", "boamp.jsonl:4", "26-7319", "boamp.jsonl:6", "26-7109",
    ]  # fmt: skip
    bad = all_records[2]
    assert bad.source == "boamp"
    assert bad.payload == b'{"idweb": "26-99", "objet": "cut here'  # the line exactly as read
    assert bad.url == f"{path}#L4"
    with pytest.raises(ParseError, match="not valid JSON"):
        parse_raw(bad)
    with pytest.raises(ParseError):
        parse_raw(all_records[4])  # "[1, 2]": valid JSON, not a record
    assert parse_raw(all_records[3]).source_ref == "26-7319"


def test_leading_bad_lines_wait_for_the_first_good_one(tmp_path: Path) -> None:
    notice = fixture_json_line("ted")
    path = tmp_path / "notices.ndjson"
    path.write_text("not json\n" + notice + "\n")
    records = list(iter_file_records(path))
    assert [(r.source, r.source_ref) for r in records] == [("ted", "notices.ndjson:1"), ("ted", "67623-2022")]


def fixture_json_line(kind: str) -> str:
    assert kind == "ted"
    response = json.loads(fixture_bytes("ted/ted-rdf-conversion-pipeline_ted_api_response.json"))
    return json.dumps(response["notices"][0])


def test_a_file_of_garbage_lines_is_an_unknown_format(tmp_path: Path) -> None:
    path = tmp_path / "junk.jsonl"
    path.write_text("{oops\n" * 150)
    with pytest.raises(UnknownFormatError, match="none of the first 100 lines"):
        list(iter_file_records(path))


def test_jsonl_detected_by_content_and_gzip(tmp_path: Path) -> None:
    lines = [json.dumps(r, ensure_ascii=False) for r in list(boamp_records().values())[:3]]
    path = tmp_path / "export.json.gz"
    with gzip.open(path, "wt", encoding="utf-8") as handle:
        handle.write("\ufeff" + "\n".join(lines) + "\n")
    assert [r.source_ref for r in iter_file_records(path)] == ["26-7298", "26-7308", "26-7319"]


def test_ted_search_response() -> None:
    records = list(iter_file_records(fixture_path("ted/ted-rdf-conversion-pipeline_ted_api_response.json")))
    assert [(r.source, r.source_ref) for r in records] == [("ted", "67623-2022"), ("ted", "67623-2022")]
    assert parse_raw(records[0]).published_at is not None


def test_eforms_xml_file() -> None:
    (record,) = iter_file_records(fixture_path("eforms/ted-published_2024-OJS017-00047522.xml"))
    assert (record.source, record.source_ref, record.content_type) == (
        "eforms",
        "47522-2024",
        "application/xml",
    )
    assert record.payload == fixture_bytes("eforms/ted-published_2024-OJS017-00047522.xml")
    notice = parse_raw(record)
    assert notice.source == "eforms" and notice.source_ref == "47522-2024"
    (sdk,) = iter_file_records(fixture_path("eforms/sdk-example_change-cn_24_open_dates.xml"))
    assert sdk.source_ref == "71397268-6c47-4f2f-8ab0-f41a26138f81-01"
    assert parse_raw(sdk).nature is Nature.CORRIGENDUM


def test_legacy_boamp_xml_file() -> None:
    (record,) = iter_file_records(
        fixture_path("boamp-xml/boamp-rdf_test-attribution-3.xml"), source="boamp-xml"
    )
    assert (record.source, record.source_ref) == ("boamp-xml", "16-178891")
    assert parse_raw(record).previous_refs == ("16-139506",)


def test_every_fixture_round_trips_through_the_registry() -> None:
    for folder in ("boamp-xml", "eforms"):
        for path in sorted((fixture_path(folder)).glob("*.xml")):
            for record in iter_file_records(path):
                assert parse_raw(record).source_ref == record.source_ref


def test_errors(tmp_path: Path) -> None:
    with pytest.raises(UnreadableFileError, match="cannot read"):
        list(iter_file_records(tmp_path / "missing.json"))
    csv = tmp_path / "data.csv"
    csv.write_text("idweb;objet\n26-1;x\n")
    with pytest.raises(UnknownFormatError, match="neither JSON nor XML"):
        list(iter_file_records(csv))
    empty = tmp_path / "empty.json"
    empty.write_text("\n\n")
    with pytest.raises(UnknownFormatError, match="empty"):
        list(iter_file_records(empty))
    broken = tmp_path / "broken.json"
    broken.write_text('{"total_count": 2, "results": [')
    with pytest.raises(UnreadableFileError, match="malformed JSON"):
        list(iter_file_records(broken))
    other = tmp_path / "other.json"
    other.write_text(json.dumps({"hello": "world"}))
    with pytest.raises(UnknownFormatError, match="no known format"):
        list(iter_file_records(other))
    bad_xml = tmp_path / "bad.xml"
    bad_xml.write_bytes(fixture_bytes("eforms/sdk-example_cn_23.xml")[:3000])
    with pytest.raises(UnreadableFileError, match="malformed XML"):
        list(iter_file_records(bad_xml))
    rss = tmp_path / "feed.xml"
    rss.write_text("<rss><channel/></rss>")
    with pytest.raises(UnknownFormatError, match="<rss>"):
        list(iter_file_records(rss))
    with pytest.raises(UnknownFormatError, match="not ted"):
        list(
            iter_file_records(
                fixture_path("boamp/nicolasmura_boamp-query_2records_MAPA_2024.json"), source="ted"
            )
        )
    with pytest.raises(ValueError):
        list(iter_file_records(csv, source="place"))
    bad_gzip = tmp_path / "cut.jsonl.gz"
    bad_gzip.write_bytes(gzip.compress(b'{"idweb": "26-1"}\n' * 1000)[:60])
    with pytest.raises(UnreadableFileError):
        list(iter_file_records(bad_gzip))
