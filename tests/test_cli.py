"""The `tenderpool` command against a fresh database of the tested engine."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import requests
from click.testing import CliRunner
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from tenderpool.accounts.models import User
from tenderpool.cli import main
from tenderpool.demo import DEMO_FIRMS
from tenderpool.firms.models import Firm, FirmMembership
from tests.conftest import TempDatabase


@pytest.fixture
def cli_db(temp_db_factory: Any, tmp_path: Path) -> tuple[TempDatabase, dict[str, str]]:
    db: TempDatabase = temp_db_factory(f"cli{os.urandom(2).hex()}")
    env = {
        "TENDERPOOL_DATABASE_URL": db.url,
        "TENDERPOOL_APP_INSTANCE_PATH": str(tmp_path / "instance"),
        "TENDERPOOL_ENV": "development",
        "TENDERPOOL_CONFIG": "",
    }
    return db, env


def invoke(env: dict[str, str], *args: str) -> Any:
    result = CliRunner().invoke(main, list(args), env=env, catch_exceptions=False)
    return result


def test_help_on_every_command() -> None:
    runner = CliRunner()
    for args in (
        [],
        ["db"],
        ["db", "upgrade"],
        ["db", "downgrade"],
        ["db", "current"],
        ["users"],
        ["users", "create"],
        ["users", "set-password"],
        ["demo", "load"],
        ["run"],
        ["serve"],
    ):
        result = runner.invoke(main, [*args, "--help"])
        assert result.exit_code == 0, (args, result.output)
        assert "Usage:" in result.output


def test_db_commands(cli_db: tuple[TempDatabase, dict[str, str]]) -> None:
    _db, env = cli_db
    assert "aucune" in invoke(env, "db", "current").output
    assert invoke(env, "db", "upgrade").exit_code == 0
    current = invoke(env, "db", "current").output
    assert "pas à jour" not in current
    assert invoke(env, "db", "check").exit_code == 0
    assert invoke(env, "db", "downgrade", "--revision", "base").exit_code == 0
    assert "aucune" in invoke(env, "db", "current").output


def test_users_and_demo(cli_db: tuple[TempDatabase, dict[str, str]]) -> None:
    db, env = cli_db
    invoke(env, "db", "upgrade")
    assert invoke(env, "demo", "load").exit_code == 0
    assert invoke(env, "demo", "load").exit_code == 0  # idempotent
    with Session(db.engine) as s:
        assert s.scalar(select(func.count()).select_from(Firm)) == len(DEMO_FIRMS)
        assert s.scalar(select(func.count()).select_from(FirmMembership)) == len(DEMO_FIRMS)
        staff = s.scalars(select(User.chamber_slug).where(User.role == "staff")).all()
        assert sorted(staff) == ["cci77", "cci91"]
        # One complete demo groupement: three members, a consistent répartition, a written mémoire.
        from tenderpool.consortia.models import Consortium
        from tenderpool.consortia.services import readiness_problems

        consortium = s.scalars(select(Consortium)).one()
        assert len(consortium.active_members) == 3 and consortium.mandataire is not None
        assert readiness_problems(s, consortium) == []

    result = invoke(
        env,
        "users",
        "create",
        "--email",
        "Nouvel.Admin@example.com",
        "--password",
        "admin-secret-1",
        "--role",
        "admin",
    )
    assert result.exit_code == 0, result.output
    result = CliRunner().invoke(
        main,
        [
            "users",
            "create",
            "--email",
            "x@example.com",
            "--password",
            "admin-secret-1",
            "--role",
            "staff",
            "--chamber",
            "cci99",
        ],
        env=env,
    )
    assert result.exit_code != 0 and "Chambre inconnue" in result.output
    result = invoke(
        env,
        "users",
        "create",
        "--email",
        "salarie@example.com",
        "--password",
        "salarie-secret-1",
        "--role",
        "firm",
        "--firm-siret",
        DEMO_FIRMS[0].siret,
    )
    assert result.exit_code == 0, result.output
    result = invoke(
        env, "users", "set-password", "--email", "nouvel.admin@example.com", "--password", "autre-secret-2"
    )
    assert result.exit_code == 0
    result = CliRunner().invoke(
        main,
        ["users", "set-password", "--email", "nobody@example.com", "--password", "autre-secret-2"],
        env=env,
    )
    assert result.exit_code != 0 and "Aucun compte" in result.output
    with Session(db.engine) as s:
        admin = s.scalar(select(User).where(User.email == "nouvel.admin@example.com"))
        assert admin is not None and admin.auth_version == 2


def test_demo_sirets_are_valid() -> None:
    from stdnum.fr import siret

    for firm in DEMO_FIRMS:
        assert siret.is_valid(firm.siret), firm.siret


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.slow
def test_run_serves_the_french_home_page_with_demo_logins(tmp_path: Path) -> None:
    """The README's first command, in an empty directory, on the embedded default (SQLite)."""
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("TENDERPOOL_")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "tenderpool.cli", "run", "--port", str(port)],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                home = requests.get(f"http://127.0.0.1:{port}/", timeout=2)
                break
            except requests.ConnectionError:
                time.sleep(0.2)
        else:
            raise AssertionError("tenderpool run did not answer within 60 s")
        assert home.status_code == 200 and "Répondre à plusieurs aux marchés publics" in home.text
        login = requests.get(f"http://127.0.0.1:{port}/connexion", timeout=5)
        assert login.status_code == 200 and "Connexion" in login.text
        assert (tmp_path / "instance" / "tenderpool.db").exists()
    finally:
        proc.terminate()
        output, _ = proc.communicate(timeout=20)
    assert "admin@tenderpool.example" in output and "equipe.cci77@tenderpool.example" in output


def test_demo_firms_belong_to_the_chamber_of_their_department(
    cli_db: tuple[TempDatabase, dict[str, str]],
) -> None:
    db, env = cli_db
    invoke(env, "db", "upgrade")
    invoke(env, "demo", "load")
    with Session(db.engine) as s:
        rows = s.execute(select(Firm.department, Firm.chamber_slug)).all()
    assert rows and all(slug == f"cci{dep}" for dep, slug in rows)
