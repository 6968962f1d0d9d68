"""The explicit source registry."""

from __future__ import annotations

import pytest

from scrapers.boamp import BoampSource
from scrapers.registry import SOURCES, UnknownSourceError, fetchable_sources, make_source, parse_raw
from scrapers.ted import TedSource

from .support import boamp_record, fixture_bytes, make_client, raw_json, raw_xml


def test_sources_listed_explicitly() -> None:
    assert list(SOURCES) == ["boamp", "ted", "eforms", "boamp-xml"]
    assert fetchable_sources() == ["boamp", "ted"]


def test_make_source_builds_configured_sources() -> None:
    with make_client() as client:
        boamp = make_source("boamp", client, departments=("77",))
        ted = make_source("ted", client, fetch_xml=False)
        assert isinstance(boamp, BoampSource) and boamp.departments == ("77",)
        assert isinstance(ted, TedSource) and not ted.fetch_xml
        assert boamp.name == "boamp" and ted.name == "ted"
        with pytest.raises(UnknownSourceError, match="only imported"):
            make_source("eforms", client)
        with pytest.raises(UnknownSourceError, match="unknown source"):
            make_source("place", client)


def test_parse_raw_dispatches_on_the_record_source() -> None:
    assert parse_raw(raw_json(boamp_record("26-7298"))).source_ref == "26-7298"
    eforms = raw_xml(fixture_bytes("eforms/sdk-example_cn_23.xml"), "eforms")
    assert parse_raw(eforms).source_ref == "4039abd1-af19-42cf-bce0-7c55806601e8-01"
    legacy = raw_xml(fixture_bytes("boamp-xml/boamp-rdf_test-pub-9.xml"), "boamp-xml", "16-652")
    assert parse_raw(legacy).source_ref == "16-652"
