"""Fixtures of the API and calendar tests: real sample notices, a frozen request clock."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from scrapers.base import RawRecord
from tenderpool.db import Database
from tenderpool.notices.ingest import ingest_records
from tenderpool.notices.models import Notice
from tests.notices.conftest import boamp_raw, boamp_records, fixture_records, xml_raw

# The request clock of the API and feed views during these tests: inside one rate-limit
# minute, and a day when some sample notices are still open and others closed.
NOW = dt.datetime(2026, 1, 25, 9, 0, 10, tzinfo=dt.UTC)

SAMPLE_FILES = [
    "boamp/nicolasmura_boamp-query_2records_MAPA_2024.json",
    "eforms/sdk-example_cn_24_FRA_comments.xml",
    "eforms/ted-published_2024-OJS017-00047522.xml",
    "eforms/ted-published_2024-OJS065-00191534.xml",
    "eforms/ted-published_00000372-2025_EST_can.xml",
    "eforms/ted-published_2024-OJS074-00219998.xml",
    "eforms/sdk-example_cn_23.xml",
    "eforms/sdk-example_pin-only_24.xml",
    "ted/ted-rdf-conversion-pipeline_ted_api_response.json",
    *[
        f"boamp-xml/boamp-rdf_test-{name}.xml"
        for name in ("pub", "pub-2", "pub-4", "pub-5", "pub-8", "pub-9")
    ],
]


def sample_records() -> list[RawRecord]:
    records = [boamp_raw(record) for record in boamp_records()]
    return records + [record for name in SAMPLE_FILES for record in fixture_records(name)]


def change_and_call() -> tuple[RawRecord, RawRecord]:
    """A real eForms change notice moving the deadline, and a real call made to be the one it changes
    (the pair of tests/notices/test_ingest.py)."""
    change = xml_raw("eforms/sdk-example_change-cn_24_open_dates.xml", source="eforms")
    call = xml_raw(
        "eforms/sdk-example_cn_24_FRA_comments.xml",
        source="eforms",
        replace={"da4d46e9-490b-41ff-a2ae-8166d356a619": "c4c415ee-ac08-4465-8fa6-57568cf69462"},
        ref="c4c415ee-ac08-4465-8fa6-57568cf69462-01",
    )
    return change, call


@pytest.fixture(autouse=True)
def frozen_clock(monkeypatch: pytest.MonkeyPatch) -> dt.datetime:
    from tenderpool.api import views

    monkeypatch.setattr(views, "_now", lambda: NOW)
    return NOW


@pytest.fixture
def notices(session: Session) -> list[Notice]:
    """Every sample notice ingested (with the seed's own notice), committed for the app's requests."""
    ingest_records(session, sample_records(), now=NOW - dt.timedelta(days=3))
    session.commit()
    return list(session.scalars(select(Notice).order_by(Notice.id)))


@pytest.fixture
def make_app(overrides: dict[str, Any], database: Database) -> Any:
    """Build another app on the test's database with some settings changed (layout of default.toml)."""
    from tenderpool.app import build_app

    def build(**tables: dict[str, Any]) -> Flask:
        return build_app({**overrides, **tables}, database=database)

    return build


@pytest.fixture
def limited_client(make_app: Any) -> FlaskClient:
    """A client of an app allowing 3 API requests per minute."""
    app: Flask = make_app(api={"rate_limit_per_minute": 3})
    return app.test_client()
