"""`tenderpool import`, `scrape`, `notices export` and `notices reparse` against a fresh database."""

from __future__ import annotations

import csv
import io
import json
import os
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from pytest_httpserver import HTTPServer

from tenderpool.cli import main
from tenderpool.notices.services import EXPORT_KEYS
from tests.conftest import TempDatabase
from tests.notices.conftest import FIXTURES, boamp_records
from tests.scrapers.support import FakeOds

BOAMP_PAGE = FIXTURES / "boamp/jpbenga_where-dateparution-2026_5records_FNSimple.json"
EFORMS = FIXTURES / "eforms/ted-published_2024-OJS017-00047522.xml"


@pytest.fixture
def env(temp_db_factory: Any, tmp_path: Path) -> dict[str, str]:
    db: TempDatabase = temp_db_factory(f"ncli{os.urandom(2).hex()}")
    values = {
        "TENDERPOOL_DATABASE_URL": db.url,
        "TENDERPOOL_APP_INSTANCE_PATH": str(tmp_path / "instance"),
        "TENDERPOOL_CONFIG": "",
        "TENDERPOOL_SCRAPERS_POLITENESS_DELAY_SECONDS": "0",
    }
    assert run(values, "db", "upgrade").exit_code == 0
    return values


def run(env: dict[str, str], *args: str) -> Any:
    return CliRunner().invoke(main, list(args), env=env)


def test_import_prints_a_summary_and_reimport_is_unchanged(env: dict[str, str]) -> None:
    first = run(env, "import", str(BOAMP_PAGE), str(EFORMS))
    assert first.exit_code == 0, first.output
    assert "Total : lus : 6, créés : 6" in first.output
    again = run(env, "import", str(BOAMP_PAGE), str(EFORMS))
    assert "inchangés : 6" in again.output and "créés : 0" in again.output


def test_import_rejects_bad_lines_and_goes_on(env: dict[str, str], tmp_path: Path) -> None:
    jsonl = tmp_path / "export.jsonl"
    records = boamp_records()
    lines = [json.dumps(records[0]), '{"idweb": "26-1", "objet": "tronqu', json.dumps(records[1])]
    jsonl.write_text("\n".join(lines) + "\n", encoding="utf-8")
    result = run(env, "import", "--source", "boamp", str(jsonl))
    assert result.exit_code == 0, result.output
    assert "lus : 3, créés : 2" in result.output and "rejetés : 1" in result.output
    assert "rejeté boamp:export.jsonl:2" in result.output


def test_import_exit_status_2_when_nothing_can_be_read(env: dict[str, str], tmp_path: Path) -> None:
    missing = run(env, "import", str(tmp_path / "absent.json"))
    assert missing.exit_code == 2 and "illisible" in missing.output
    unknown = tmp_path / "notes.json"
    unknown.write_text('{"hello": "world"}', encoding="utf-8")
    assert run(env, "import", str(unknown)).exit_code == 2
    # One readable file is enough for status 0.
    assert run(env, "import", str(unknown), str(EFORMS)).exit_code == 0


def test_export_jsonl_and_csv(env: dict[str, str], tmp_path: Path) -> None:
    run(env, "import", str(BOAMP_PAGE), str(EFORMS))
    jsonl = run(env, "notices", "export", "--format", "jsonl")
    rows = [json.loads(line) for line in jsonl.stdout.splitlines() if line.startswith("{")]
    assert len(rows) == 6
    assert all(set(row) == set(EXPORT_KEYS) for row in rows)
    assert {row["status"] for row in rows} <= {"open", "closed", "awarded", "cancelled"}
    ted = next(row for row in rows if row["publications"][0]["source"] == "eforms")
    assert ted["publications"][0]["source_ref"] == "47522-2024"
    assert all(len(code) == 8 for row in rows for code in row["cpv"])

    out = tmp_path / "notices.csv"
    assert (
        run(
            env, "notices", "export", "--format", "csv", "--since", "2026-01-01", "--output", str(out)
        ).exit_code
        == 0
    )
    table = list(csv.DictReader(io.StringIO(out.read_text(encoding="utf-8"))))
    assert len(table) == 5  # the eForms notice was published in 2024
    assert list(table[0]) == list(EXPORT_KEYS)
    assert json.loads(table[0]["departments"])


def test_reparse_changes_nothing_on_unchanged_parsers(env: dict[str, str]) -> None:
    run(env, "import", str(BOAMP_PAGE))
    result = run(env, "notices", "reparse")
    assert result.exit_code == 0 and "lus : 5, créés : 0, mis à jour : 0" in result.output


def test_scrape_command_against_a_local_source(env: dict[str, str], httpserver: HTTPServer) -> None:
    import datetime as dt

    fake = FakeOds(days={dt.date(2026, 11, 26): [("FNS", 120)]}, templates=boamp_records())
    httpserver.expect_request("/api/explore/v2.1/catalog/datasets/boamp/records").respond_with_handler(
        fake.handler
    )
    env = {**env, "TENDERPOOL_SCRAPERS_BOAMP_BASE_URL": httpserver.url_for("/api/explore/v2.1")}
    result = run(env, "scrape", "boamp", "--since", "2026-11-25", "--until", "2026-11-27")
    assert result.exit_code == 0, result.output
    assert "avis publiés du 25/11/2026 au 27/11/2026" in result.output
    assert "100 avis reçus sur 120" in result.output  # plain progress lines when not on a terminal
    assert "Statut : ok — reçus 120/120" in result.output
    dry = run(env, "scrape", "boamp", "--since", "2026-11-25", "--until", "2026-11-27", "--dry-run")
    assert "essai à blanc" in dry.output and "Statut : ok" in dry.output
