"""Real-browser journeys: the real app in subprocesses, driven by Debian's Chromium through Playwright.

One server for the package (gunicorn through `tenderpool serve`, plus a `tenderpool scheduler`
that builds the dossiers the pages queue), on a free localhost port, against a fresh database of
the engine under test (``TENDERPOOL_TEST_DB``: a temporary SQLite file, or a throwaway PostgreSQL
database from tests/conftest.py's factory) and a temporary instance folder (uploads, file outbox).
The database is prepared as an operator would: `tenderpool db upgrade`, `tenderpool demo load`,
`tenderpool users create` for a chamber's staff member, `tenderpool import` of a crafted BOAMP page;
plus the rows of tests/browser/seed.py.

One Chromium for the package (``/usr/bin/chromium``, never a downloaded build), a fresh context
per test. Each journey saves screenshots (under the pytest tmp folder and a copy in
``test-artifacts/browser/<engine>/``), runs axe-core on its key pages (no serious or critical
violation) and checks them on a 390-pixel-wide phone viewport (no horizontal scroll).
"""

from __future__ import annotations

import datetime as dt
import email
import email.policy
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import requests
from playwright.sync_api import Browser, BrowserContext, Page, Playwright, expect, sync_playwright

from tests.browser import seed
from tests.conftest import BACKEND, TempDatabase

# Never a downloaded browser: Playwright drives Debian's Chromium (`playwright install` is never run).
os.environ.setdefault("PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD", "1")

# A loaded CI machine (2 cores) can be slow to answer: assertions wait up to 10 s, actions 15 s.
expect.set_options(timeout=10_000)

CHROMIUM = Path(os.environ.get("TENDERPOOL_TEST_CHROMIUM", "/usr/bin/chromium"))
REPO = Path(__file__).resolve().parents[2]
AXE_JS = REPO / "tests/browser/node_modules/axe-core/axe.min.js"
ARTIFACTS = REPO / "test-artifacts" / "browser" / BACKEND
PHONE = {"width": 390, "height": 844}
DESKTOP = {"width": 1280, "height": 900}
# The `tenderpool` script of the environment running the tests (`python -m tenderpool.cli` without one).
_SCRIPT = Path(sys.executable).with_name("tenderpool")
TENDERPOOL = [str(_SCRIPT)] if _SCRIPT.exists() else [sys.executable, "-m", "tenderpool.cli"]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class LiveServer:
    url: str
    env: dict[str, str]
    instance: Path
    workdir: Path
    seeded: seed.Seeded
    log: Path
    xss_notice_id: int = 0

    def cli(self, *args: str, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        """Run `tenderpool ARGS` against the server's database and instance folder."""
        result = subprocess.run(
            [*TENDERPOOL, *args],
            cwd=self.workdir,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if check and result.returncode != 0:
            raise AssertionError(f"tenderpool {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}")
        return result

    def outbox_for(self, address: str) -> list[Path]:
        """The .eml files of the file outbox (no SMTP server configured) addressed to ``address``."""
        folder = self.instance / "outbox"
        found = []
        for path in sorted(folder.glob("*.eml")) if folder.exists() else []:
            message = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
            if address in str(message["To"]):
                found.append(path)
        return found


def _wait_healthy(url: str, processes: list[subprocess.Popen[bytes]], log: Path, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for process in processes:
            if process.poll() is not None:
                raise AssertionError(f"a server process exited early:\n{log.read_text(errors='replace')}")
        try:
            if requests.get(f"{url}/healthz", timeout=5).status_code in (200, 503):
                return
        except requests.RequestException:  # not listening yet, or a worker still starting
            pass
        time.sleep(0.2)
    raise AssertionError(f"the server did not answer within {timeout} s:\n{log.read_text(errors='replace')}")


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


@pytest.fixture(scope="package")
def live_server(tmp_path_factory: pytest.TempPathFactory, temp_db_factory: Any) -> Iterator[LiveServer]:
    from tenderpool.config import load_settings
    from tenderpool.db import Database

    workdir = tmp_path_factory.mktemp("browser-server")
    instance = workdir / "instance"
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    db: TempDatabase = temp_db_factory("browser")
    env = {k: v for k, v in os.environ.items() if not k.startswith("TENDERPOOL_")}
    env.update(
        TENDERPOOL_ENV="development",
        TENDERPOOL_DATABASE_URL=db.url,
        TENDERPOOL_SECRET_KEY="browser-journeys-secret-key-0123456789",
        TENDERPOOL_APP_INSTANCE_PATH=str(instance),
        TENDERPOOL_APP_BASE_URL=url,
        TENDERPOOL_APP_LOG_LEVEL="WARNING",
        TENDERPOOL_MAIL_HOST="",
        TENDERPOOL_SERVER_WORKERS="2",
        # The scheduler builds the queued dossiers at once; the journeys send the digests themselves
        # (`tenderpool digests send`), and no scrape ever leaves the machine.
        TENDERPOOL_JOBS_DOSSIERS_INTERVAL_SECONDS="1",
        TENDERPOOL_JOBS_DIGESTS_ENABLED="false",
        TENDERPOOL_SCHEDULER_POLL_SECONDS="1",
    )
    server = LiveServer(url, env, instance, workdir, seeded=None, log=workdir / "server.log")  # type: ignore[arg-type]
    server.cli("db", "upgrade")
    server.cli("demo", "load")
    server.cli("users", "create", "--email", seed.STAFF77.email, "--password", seed.STAFF77.password,
               "--role", "staff", "--chamber", "cci77", "--name", "Agent de curation")  # fmt: skip
    today = dt.datetime.now(dt.UTC).date()
    page = seed.xss_boamp_page(workdir / "boamp-xss.json", today=today)
    imported = server.cli("import", "--source", "boamp", str(page))
    assert "créés : 1" in imported.stdout, imported.stdout
    settings = load_settings(environ=env)
    database = Database(db.url)
    try:
        server.seeded = seed.seed_database(database, settings)
        from sqlalchemy import select

        from tenderpool.notices.models import Publication

        with database.session_scope() as session:
            publication = session.scalars(
                select(Publication).where(Publication.source_ref == seed.XSS_SOURCE_REF)
            ).one()
            assert publication.notice_id is not None
            server.xss_notice_id = publication.notice_id
    finally:
        database.engine.dispose()

    with server.log.open("wb") as log:
        web = subprocess.Popen(
            [*TENDERPOOL, "serve", "--host", "127.0.0.1", "--port", str(port), "--workers", "2"],
            cwd=workdir, env=env, stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
        scheduler = subprocess.Popen(
            [*TENDERPOOL, "scheduler", "--no-live-sources"],
            cwd=workdir, env=env, stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:
        _wait_healthy(url, [web, scheduler], server.log)
        yield server
    finally:
        _stop(web)
        _stop(scheduler)


@pytest.fixture(scope="package")
def playwright_instance() -> Iterator[Playwright]:
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: run .ci/system-packages.sh (Debian's chromium package)")
    with sync_playwright() as p:
        yield p


@pytest.fixture(scope="package")
def browser(playwright_instance: Playwright) -> Iterator[Browser]:
    browser = playwright_instance.chromium.launch(executable_path=str(CHROMIUM), headless=True)
    yield browser
    browser.close()


@dataclass
class Journey:
    """A person at a browser: a fresh context, with helpers to look at each key page."""

    browser: Browser
    server: LiveServer
    name: str
    shots: Path
    context: BrowserContext
    page: Page
    dialogs: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    axe_findings: list[dict[str, Any]] = field(default_factory=list)  # the moderate and minor ones
    side_pages: dict[str, Page] = field(default_factory=dict)
    count: int = 0

    def url(self, path: str) -> str:
        return self.server.url + path

    def goto(self, path: str) -> Page:
        response = self.page.goto(self.url(path))
        assert response is not None and response.status < 400, f"{path}: {response and response.status}"
        return self.page

    def login(self, account: seed.Account) -> None:
        self.goto("/connexion")
        self.page.get_by_label("Adresse e-mail").fill(account.email)
        self.page.get_by_label("Mot de passe", exact=True).fill(account.password)
        self.page.get_by_role("button", name="Se connecter").click()
        expect(self.page.get_by_role("button", name="Se déconnecter")).to_be_visible()

    def logout(self) -> None:
        self.page.get_by_role("button", name="Se déconnecter").click()
        expect(self.page.get_by_role("navigation", name="Navigation principale")).to_contain_text(
            "Se connecter"
        )

    def screenshot(self, label: str, page: Page | None = None) -> Path:
        self.count += 1
        name = f"{self.count:02d}-{label}.png"
        path = self.shots / name
        (page or self.page).screenshot(path=str(path), full_page=True)
        copy = ARTIFACTS / self.name / name
        copy.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, copy)
        return path

    def side_page(self, kind: str) -> Page:
        """A page with the journey's cookies (who is logged in) in a side context.

        ``nocsp``: desktop, Content-Security-Policy bypassed (the axe pass, the XSS checks);
        ``phone``: 390 pixels wide, CSP in force. Dialogs and page errors count as the journey's.
        """
        if kind not in self.side_pages:
            options: dict[str, Any] = (
                {"bypass_csp": True, "viewport": DESKTOP}
                if kind == "nocsp"
                else {"viewport": PHONE, "is_mobile": True, "has_touch": True}
            )
            context = self.browser.new_context(locale="fr-FR", **options)
            self.side_pages[kind] = page = context.new_page()
            self.watch(page)
        page = self.side_pages[kind]
        page.context.clear_cookies()
        page.context.add_cookies(self.context.cookies())  # type: ignore[arg-type]
        return page

    def watch(self, page: Page) -> None:
        def on_dialog(dialog: Any) -> None:
            self.dialogs.append(f"{dialog.type}: {dialog.message} on {page.url}")
            dialog.dismiss()

        page.on("dialog", on_dialog)
        page.on("pageerror", lambda error: self.errors.append(f"{error} on {page.url}"))

    def check_page(self, label: str, *, axe: bool = True, phone: bool = True) -> None:
        """Screenshot the current page, run axe-core on it and check it on a phone.

        axe-core is injected with ``add_script_tag(path=…)``, an inline script that the
        Content-Security-Policy (no inline script) blocks: the axe pass alone loads the page
        again in a context with ``bypass_csp=True``. The phone check loads it with the CSP in
        force, 390 pixels wide, and fails when the page scrolls sideways.
        """
        self.screenshot(label)
        url = self.page.url
        if axe:
            page = self.side_page("nocsp")
            page.goto(url)
            violations = run_axe(page)
            serious = [v for v in violations if v["impact"] in ("serious", "critical")]
            assert not serious, f"axe on {label} ({url}):\n" + format_violations(serious)
            self.axe_findings += [
                {"page": label, "rule": v["id"], "impact": v["impact"], "nodes": len(v["nodes"])}
                for v in violations
            ]
        if phone:
            page = self.side_page("phone")
            page.goto(url)
            width = page.evaluate("document.documentElement.scrollWidth")
            self.screenshot(label + "-telephone", page)
            assert width <= PHONE["width"], (
                f"{label} ({url}) scrolls sideways on a phone: {width} px wide;"
                f" widest: {widest_elements(page)}"
            )

    def close(self) -> None:
        for page in self.side_pages.values():
            page.context.close()
        self.context.close()
        # What axe reported below "serious", for the record (test-artifacts/browser/<engine>/<journey>/).
        report = ARTIFACTS / self.name / "axe-moderate-minor.json"
        report.parent.mkdir(parents=True, exist_ok=True)
        report.write_text(json.dumps(self.axe_findings, ensure_ascii=False, indent=1), encoding="utf-8")


# WCAG 2.x A and AA rules and axe's best practices; only violations are returned (faster).
AXE_OPTIONS = {
    "runOnly": {
        "type": "tag",
        "values": ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "wcag22aa", "best-practice"],
    },
    "resultTypes": ["violations"],
}


def run_axe(page: Page) -> list[dict[str, Any]]:
    if not AXE_JS.exists():
        pytest.fail(f"{AXE_JS} is missing: run `make install` (npm ci --prefix tests/browser)")
    page.add_script_tag(path=str(AXE_JS))
    result = page.evaluate("options => axe.run(document, options)", AXE_OPTIONS)
    violations: list[dict[str, Any]] = result["violations"]
    return violations


def format_violations(violations: list[dict[str, Any]]) -> str:
    lines = []
    for v in violations:
        lines.append(f"- [{v['impact']}] {v['id']}: {v['help']}")
        for node in v["nodes"][:5]:
            lines.append(f"    {node['target']} {node.get('failureSummary', '')[:300]!r}")
    return "\n".join(lines)


def widest_elements(page: Page) -> str:
    """The elements that stick out past the phone's width, outside any scrolling box (a diagnosis)."""
    found = page.evaluate(
        """() => {
          const clipped = e => { if (getComputedStyle(e).position === 'absolute') return false;
              for (let p = e.parentElement; p; p = p.parentElement) {
                if (getComputedStyle(p).overflowX !== 'visible') return true; } return false; };
          return [...document.querySelectorAll('body *')]
            .filter(e => e.getBoundingClientRect().right > 390 && !clipped(e))
            .map(e => [Math.round(e.getBoundingClientRect().right),
                       e.tagName.toLowerCase() + (e.id ? '#' + e.id : '')
                       + (typeof e.className === 'string' && e.className
                          ? '.' + e.className.split(' ').join('.') : '')])
            .sort((a, b) => b[0] - a[0]).slice(0, 8); }"""
    )
    return json.dumps(found, ensure_ascii=False)


@pytest.fixture
def journey(
    request: pytest.FixtureRequest, browser: Browser, live_server: LiveServer, tmp_path: Path
) -> Iterator[Journey]:
    """A fresh browser context; fails the test if a JavaScript dialog opens or a page throws."""
    name = request.node.name.removeprefix("test_")
    shots = tmp_path / "screenshots"
    shots.mkdir()
    if (ARTIFACTS / name).exists():
        shutil.rmtree(ARTIFACTS / name)
    context = browser.new_context(viewport=DESKTOP, locale="fr-FR", accept_downloads=True)
    context.set_default_timeout(15_000)
    page = context.new_page()
    j = Journey(browser, live_server, name, shots, context, page)
    j.watch(page)
    yield j
    j.close()
    assert not j.dialogs, f"JavaScript dialogs opened: {j.dialogs}"
    assert not j.errors, f"JavaScript errors: {j.errors}"
