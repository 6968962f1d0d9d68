"""A normal (non-editable) install works: build the wheel, install it in a fresh venv, run the CLI there."""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
import venv
import zipfile
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import BACKEND, TempDatabase

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    subprocess.run(
        [sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir", str(out), str(ROOT)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    (path,) = out.glob("tenderpool-*.whl")
    return path


def test_wheel_ships_templates_migrations_and_config(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    for needed in (
        "tenderpool/_data/templates/base.html",
        "tenderpool/_data/migrations/env.py",
        "tenderpool/_data/config/default.toml",
        "tenderpool/static/css/app.css",
        "tenderpool/data/demo_samples/boamp/jpbenga_where-dateparution-2026_5records_FNSimple.json",
        "scrapers/base.py",
    ):
        assert needed in names, needed
    assert any(n.startswith("tenderpool/_data/migrations/versions/") for n in names)


@pytest.mark.slow
def test_installed_wheel_runs_help_and_db_upgrade(wheel: Path, tmp_path: Path, temp_db_factory: Any) -> None:
    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=True)
    python = env_dir / "bin" / "python"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TENDERPOOL_", "PYTHON", "PIP_"))}
    # pip installs the wheel and its console script offline (--no-deps --no-index); the
    # dependencies are borrowed from the test venv through a .pth line. The test venv's
    # editable hook is a .pth file *inside* its site-packages, which a path line does not
    # execute, so the checkout cannot leak in.
    subprocess.run(
        [str(python), "-m", "pip", "install", "--no-deps", "--no-index", "-q", str(wheel)],
        env=env,
        check=True,
        capture_output=True,
        timeout=300,
    )
    site = Path(
        subprocess.run(
            [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
            env=env,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    )
    (site / "_deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n", encoding="utf-8")
    workdir = tmp_path / "work"
    workdir.mkdir()

    where = subprocess.run(
        [str(python), "-c", "import tenderpool; print(tenderpool.__file__)"],
        cwd=workdir,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    assert where.stdout.startswith(str(site)), where.stdout

    cli = [str(env_dir / "bin" / "tenderpool")]
    helped = subprocess.run(
        [*cli, "--help"], cwd=workdir, env=env, capture_output=True, text=True, check=True
    )
    assert "Usage:" in helped.stdout
    db: TempDatabase = temp_db_factory("wheel")
    env["TENDERPOOL_DATABASE_URL"] = db.url
    upgraded = subprocess.run(
        [*cli, "db", "upgrade"], cwd=workdir, env=env, capture_output=True, text=True, timeout=120
    )
    assert upgraded.returncode == 0, upgraded.stderr
    assert "Base de données à jour" in upgraded.stdout
    checked = subprocess.run([*cli, "db", "check"], cwd=workdir, env=env, capture_output=True, text=True)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert BACKEND in ("sqlite", "postgres")
