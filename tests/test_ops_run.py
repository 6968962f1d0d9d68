"""`tenderpool run` in a fresh folder serves the real sample notices, with its scheduler, within 60 s."""

from __future__ import annotations

import html
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.conftest import BACKEND, TempDatabase

pytestmark = pytest.mark.slow


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_run_serves_real_notices_from_the_bundled_samples(tmp_path: Path, temp_db_factory: Any) -> None:
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("TENDERPOOL_")}
    if BACKEND == "postgres":
        db: TempDatabase = temp_db_factory("run")
        env["TENDERPOOL_DATABASE_URL"] = db.url
    base = f"http://127.0.0.1:{port}"
    with (tmp_path / "run.log").open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-c", "import sys; from tenderpool.cli import main; sys.exit(main())", "run",
             "--port", str(port)],
            cwd=tmp_path, env=env, stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        health = None
        while time.monotonic() < deadline:
            try:
                health = requests.get(f"{base}/healthz", timeout=5)
                if health.status_code == 200:
                    break
            except requests.ConnectionError:
                pass
            time.sleep(0.3)
        output = (tmp_path / "run.log").read_text(errors="replace")
        assert health is not None and health.status_code == 200, output
        assert health.json()["scheduler"]["status"] == "ok"
        assert health.json()["sources"] == {}  # demo mode: no live source is scraped

        web = requests.Session()
        page = web.get(f"{base}/connexion", timeout=10).text
        token = re.search(r'name="csrf-token" content="([^"]+)"', page)
        assert token
        login = web.post(
            f"{base}/connexion",
            data={"csrf_token": token.group(1), "email": "admin@tenderpool.example",
                  "password": "demo-tenderpool-2026"},
            timeout=10,
        )  # fmt: skip
        assert login.status_code == 200 and "Se déconnecter" in login.text
        # A real BOAMP notice (26-7113) of the bundled samples, found by the search.
        found = html.unescape(web.get(f"{base}/avis", params={"q": "gendarmerie"}, timeout=10).text)
        assert "Rénovation de la caserne de gendarmerie" in found
        # A real eForms notice (TED 2024-OJS017) too.
        found = html.unescape(web.get(f"{base}/avis", params={"q": "colonnes de verre"}, timeout=10).text)
        assert "collecte des colonnes de verre" in found
        child = re.search(r"Planificateur lancé \(processus (\d+)", output)
        assert child, output
    finally:
        process.send_signal(signal.SIGTERM)
        exit_code = process.wait(timeout=60)
    assert exit_code == 0
    scheduler_pid = int(child.group(1))
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            os.kill(scheduler_pid, 0)
        except ProcessLookupError:
            break
        time.sleep(0.2)
    else:
        raise AssertionError("the scheduler of `tenderpool run` outlived the server")
