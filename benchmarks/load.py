"""Load: gunicorn under a realistic mix of 100 concurrent users for 2 minutes (locust, headless).

    python -m benchmarks.load [--engines postgres,sqlite] [--notices 200000] [--firms 10000]
                              [--consortia 500] [--users 100] [--duration 2m]

Per engine: a throwaway database filled like production (benchmarks.search ``build``: notices;
benchmarks.digest ``firm_rows``: firms; Core inserts: groupements of 2–3 members), then
``tenderpool serve`` (gunicorn; 4 workers on PostgreSQL, 1 on SQLite, the embedded baseline) and
locust in headless mode with this very file as its locustfile. Each simulated user logs in as a
firm user once, then picks, by weight:

- 60 % search and lists: /avis with a text or filter query, /suivis, /annuaire;
- 20 % notice pages: /avis/<id>;
- 10 % its groupement's workspace: /groupements/<id> and its tabs;
- 5 % profile edits: the identity form, read then posted back with its CSRF token;
- 5 % logins: a new session, the login form (CSRF), the password check (scrypt).

While it runs, the CPU use of the machine, of gunicorn, of the database server and of locust is
sampled every 5 seconds (from /proc), and on PostgreSQL the active connections and what they wait
on. It prints one JSON document: requests/s, median, p95, p99, errors by kind, and the samples
that tell what limits the figures. Goal: ≥ 300 requests/s, p95 < 250 ms, no errors.
Needs locust (the ``bench`` extra).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import random
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
PASSWORD = "charge-2026-bench"  # noqa: S105 - the throwaway accounts of the benchmark
CONFIG_ENV = "TENDERPOOL_LOAD_CONFIG"
CSRF_RE = re.compile(r'<meta name="csrf-token" content="([^"]+)"')
SEARCH_WORDS = ["travaux", "voirie", "nettoyage", "école", "maintenance", "chauffage", "toiture", "gymnase"]


# =========================================================================== the locust side
# Imported by locust (``locust -f benchmarks/load.py``): keep the imports of this part light.

try:
    from locust import HttpUser, between, task
except ImportError:  # the driver side runs without locust installed until it starts it
    HttpUser = None  # type: ignore[assignment,misc]

if HttpUser is not None and os.environ.get(CONFIG_ENV):
    _CONF = json.loads(Path(os.environ[CONFIG_ENV]).read_text())

    def _form_values(html: str, action: str) -> dict[str, str]:
        """The fields of the form posting to ``action``, as the browser would send them."""
        import lxml.html

        document = lxml.html.document_fromstring(html)
        for form in document.forms:
            values = dict(form.form_values())
            # The identity form (it may have no action attribute: it posts to its own page).
            if (form.action or action).endswith(action) and "description" in form.fields:
                return {k: v for k, v in values.items() if k}
        return {}

    class FirmUser(HttpUser):  # type: ignore[misc,valid-type]
        wait_time = between(0.05, 0.3)

        def on_start(self) -> None:
            self.me = random.choice(_CONF["users"])
            self.rng = random.Random()
            self._login(self.client, name="/connexion [start]")

        def _login(self, client: Any, name: str) -> None:
            page = client.get("/connexion", name="/connexion [form]")
            match = CSRF_RE.search(page.text)
            token = match.group(1) if match else ""
            with client.post(
                "/connexion",
                data={"csrf_token": token, "email": self.me["email"], "password": PASSWORD},
                allow_redirects=False,
                name=name,
                catch_response=True,
            ) as response:
                if response.status_code != 302:
                    response.failure(f"login answered {response.status_code}")

        @task(30)
        def search_text(self) -> None:
            word = self.rng.choice(SEARCH_WORDS)
            self.client.get(f"/avis?q={word}", name="/avis?q=")

        @task(15)
        def search_filters(self) -> None:
            dep = self.rng.choice(["77", "91"])
            cpv = self.rng.choice(["45000000", "90910000", "50700000", "45233140"])
            self.client.get(f"/avis?dep={dep}&cpv={cpv}", name="/avis?dep=&cpv=")

        @task(8)
        def directory(self) -> None:
            self.client.get(f"/annuaire?dep={self.rng.choice(['77', '91'])}", name="/annuaire")

        @task(7)
        def lists(self) -> None:
            self.client.get(self.rng.choice(["/suivis", "/groupements", "/avis"]), name="lists")

        @task(20)
        def notice_page(self) -> None:
            notice = self.rng.choice(_CONF["notice_ids"])
            self.client.get(f"/avis/{notice}", name="/avis/<id>")

        @task(10)
        def workspace(self) -> None:
            tab = self.rng.choice(["", "", "/repartition", "/discussion", "/memoire", "/documents"])
            self.client.get(f"/groupements/{self.me['consortium']}{tab}", name="/groupements/<id>[tab]")

        @task(5)
        def profile_edit(self) -> None:
            page = self.client.get("/entreprise/profil/identite", name="/entreprise/profil/identite [form]")
            values = _form_values(page.text, "/entreprise/profil/identite")
            if not values:
                return
            values["description"] = f"Entreprise de travaux ({self.rng.randint(1, 10**6)})."
            with self.client.post(
                "/entreprise/profil/identite",
                data=values,
                allow_redirects=False,
                name="/entreprise/profil/identite [post]",
                catch_response=True,
            ) as response:
                if response.status_code != 302:
                    response.failure(f"profile edit answered {response.status_code}")

        @task(5)
        def login(self) -> None:
            self.client.cookies.clear()
            self._login(self.client, name="/connexion [post]")


# =========================================================================== the driver side


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def build_world(url: str, notices: int, firms: int, consortia: int, now: dt.datetime) -> dict[str, Any]:
    """Fill the database; returns what the simulated users need (logins, ids)."""
    from sqlalchemy import func, insert, select, text, update
    from werkzeug.security import generate_password_hash

    from benchmarks.digest import build_firms
    from benchmarks.search import build
    from tenderpool import migrate
    from tenderpool.accounts.models import User
    from tenderpool.consortia.models import Consortium, ConsortiumLot, ConsortiumMember
    from tenderpool.db import Database
    from tenderpool.firms.models import FirmMembership
    from tenderpool.notices.models import Notice

    db = Database(url)
    timings: dict[str, float] = {}
    migrate.upgrade(db.engine)
    start = time.perf_counter()
    build(db, notices, now)
    timings["notices_seconds"] = round(time.perf_counter() - start, 1)
    start = time.perf_counter()
    build_firms(db, firms, now)
    timings["firms_seconds"] = round(time.perf_counter() - start, 1)
    start = time.perf_counter()
    rng = random.Random(29)
    password_hash = generate_password_hash(PASSWORD, method="scrypt")  # one hash, shared by all
    with db.engine.begin() as conn:
        conn.execute(update(User).values(password_hash=password_hash))
        if not db.is_sqlite:  # explicit ids were inserted: move the sequences past them
            for table in ("users", "firms", "notices"):
                sequence = f"pg_get_serial_sequence('{table}', 'id')"
                conn.execute(text(f"SELECT setval({sequence}, (SELECT max(id) FROM {table}))"))
        firm_users = list(conn.execute(select(FirmMembership.firm_id, User.id, User.email).join(User)))
        # Rejected notices (0.5 % of the build) are 404 to firms by design: not asked for.
        visible = select(Notice.id).where(Notice.is_rejected.is_(False))
        notice_ids = list(conn.scalars(visible.order_by(func.random()).limit(20_000)))
        open_notices = list(
            conn.scalars(select(Notice.id).where(Notice.deadline_at > now).order_by(Notice.id).limit(5000))
        )
        all_firms = [row[0] for row in conn.execute(text("SELECT id FROM firms"))]
        users = []
        for index in range(consortia):
            firm_id, user_id, email = firm_users[index % len(firm_users)]
            cid = conn.execute(
                insert(Consortium)
                .values(
                    notice_id=rng.choice(open_notices),
                    name=f"Groupement {index}",
                    form=rng.choice(["conjoint", "solidaire"]),
                    visibility="invitation",
                    status="assembling",
                    created_by_id=user_id,
                    created_at=now,
                    updated_at=now,
                    skills_cpv=[],
                )
                .returning(Consortium.id)
            ).scalar_one()
            conn.execute(insert(ConsortiumLot), [{"consortium_id": cid, "lot_number": "", "position": 0}])
            partners = rng.sample([f for f in all_firms if f != firm_id][:2000], rng.randint(1, 2))
            conn.execute(
                insert(ConsortiumMember),
                [
                    {"consortium_id": cid, "firm_id": firm_id, "role": "mandataire", "state": "active",
                     "created_at": now, "joined_at": now},
                    *[
                        {"consortium_id": cid, "firm_id": p, "role": "cotraitant", "state": "active",
                         "created_at": now, "joined_at": now}
                        for p in partners
                    ],
                ],
            )  # fmt: skip
            if index < len(firm_users):
                users.append({"email": email, "consortium": cid})
    timings["consortia_seconds"] = round(time.perf_counter() - start, 1)
    db.engine.dispose()
    return {"users": users, "notice_ids": notice_ids, "build": timings}


class Sampler:
    """CPU of the machine, of gunicorn and of the database server, and PostgreSQL activity."""

    def __init__(self, url: str, gunicorn_pid: int) -> None:
        self.url = url
        self.gunicorn_pid = gunicorn_pid
        self.samples: list[dict[str, Any]] = []

    @staticmethod
    def _cpu_times() -> tuple[int, int]:
        fields = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
        idle = fields[3] + fields[4]
        return sum(fields), idle

    @staticmethod
    def _process_ticks() -> dict[str, int]:
        """CPU ticks used so far by gunicorn (master and workers), the database server and locust."""
        groups = {"gunicorn": 0, "postgres": 0, "locust": 0}
        for proc in Path("/proc").iterdir():
            if not proc.name.isdigit():
                continue
            try:
                cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
                stat = (proc / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            ticks = int(stat[11]) + int(stat[12])  # utime + stime
            if "tenderpool.cli serve" in cmdline or "gunicorn" in cmdline:
                groups["gunicorn"] += ticks
            elif cmdline.startswith("postgres"):
                groups["postgres"] += ticks
            elif "locust" in cmdline:
                groups["locust"] += ticks
        return groups

    def run(self, seconds: float, interval: float = 5.0) -> None:
        from sqlalchemy import create_engine, text

        pg = None if self.url.startswith("sqlite") else create_engine(self.url, pool_size=1)
        deadline = time.monotonic() + seconds
        hertz = os.sysconf("SC_CLK_TCK")
        total0, idle0 = self._cpu_times()
        ticks0, at0 = self._process_ticks(), time.monotonic()
        while time.monotonic() < deadline:
            time.sleep(interval)
            total1, idle1 = self._cpu_times()
            ticks1, at1 = self._process_ticks(), time.monotonic()
            sample: dict[str, Any] = {
                "machine_cpu_percent": round(100 * (1 - (idle1 - idle0) / max(1, total1 - total0)), 1),
                "load1": round(os.getloadavg()[0], 2),
            }
            for name in ticks1:  # percent of one core (200 = both cores of a 2-core machine)
                used = max(0, ticks1[name] - ticks0.get(name, 0)) / hertz
                sample[f"{name}_cpu_percent"] = round(100 * used / (at1 - at0))
            total0, idle0, ticks0, at0 = total1, idle1, ticks1, at1
            if pg is not None:
                with pg.connect() as conn:
                    rows = conn.execute(
                        text(
                            "SELECT state, coalesce(wait_event_type, 'CPU'), count(*) FROM pg_stat_activity "
                            "WHERE datname = current_database() AND pid <> pg_backend_pid() GROUP BY 1, 2"
                        )
                    ).all()
                sample["pg_activity"] = {f"{state}/{wait}": n for state, wait, n in rows}
            self.samples.append(sample)
        if pg is not None:
            pg.dispose()


def run_engine(url: str, engine: str, args: argparse.Namespace, tmp: str) -> dict[str, Any]:
    now = dt.datetime.now(dt.UTC)
    world = build_world(url, args.notices, args.firms, args.consortia, now)
    config_path = Path(tmp) / f"load-{engine}.json"
    config_path.write_text(json.dumps(world))
    workers = args.pg_workers if engine == "postgres" else args.sqlite_workers
    port = _free_port()
    instance = Path(tmp) / f"instance-{engine}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("TENDERPOOL_")}
    env.update(
        TENDERPOOL_ENV="development",
        TENDERPOOL_DATABASE_URL=url,
        TENDERPOOL_SECRET_KEY="load-benchmark-secret-key-0123456789",  # noqa: S106 - throwaway server
        TENDERPOOL_APP_INSTANCE_PATH=str(instance),
        TENDERPOOL_APP_LOG_LEVEL="WARNING",
        TENDERPOOL_MAIL_HOST="",
    )
    server_log = open(Path(tmp) / f"gunicorn-{engine}.log", "w")  # noqa: SIM115 - closed below
    server = subprocess.Popen(
        [sys.executable, "-m", "tenderpool.cli", "serve", "--host", "127.0.0.1", "--port", str(port),
         "--workers", str(workers)],
        env=env, cwd=ROOT, stdout=server_log, stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    result: dict[str, Any] = {"engine": engine, "workers": workers, **world["build"]}
    try:
        _wait_http(port, server)
        csv_prefix = Path(tmp) / f"locust-{engine}"
        locust_env = {**env, CONFIG_ENV: str(config_path)}
        locust = subprocess.Popen(
            [sys.executable, "-m", "locust", "-f", str(Path(__file__).resolve()), "--headless",
             "-u", str(args.users), "-r", str(args.spawn_rate), "-t", args.duration,
             "--host", f"http://127.0.0.1:{port}", "--csv", str(csv_prefix), "--only-summary",
             "--stop-timeout", "10"],
            env=locust_env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )  # fmt: skip
        sampler = Sampler(url, server.pid)
        sampler.run(_seconds(args.duration) - 2)
        output, _ = locust.communicate(timeout=_seconds(args.duration) + 120)
        result.update(_read_stats(csv_prefix))
        result["samples"] = sampler.samples
        result["cpu_summary"] = _cpu_summary(sampler.samples)
        result["goal_met"] = (
            result["requests_per_second"] >= 300 and result["p95_ms"] < 250 and result["failures"] == 0
        )
        if result["failures"]:
            result["locust_tail"] = output[-3000:]
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=60)
        server_log.close()
    return result


def _seconds(duration: str) -> float:
    units = {"s": 1, "m": 60, "h": 3600}
    return float(duration[:-1]) * units[duration[-1]] if duration[-1] in units else float(duration)


def _wait_http(port: int, server: subprocess.Popen[bytes], timeout: float = 120) -> None:
    import urllib.request

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError("gunicorn exited at start")
        with (
            contextlib.suppress(OSError),
            urllib.request.urlopen(f"http://127.0.0.1:{port}/connexion", timeout=5) as response,
        ):
            if response.status == 200:
                return
        time.sleep(0.5)
    raise RuntimeError("gunicorn did not answer")


def _read_stats(prefix: Path) -> dict[str, Any]:
    import csv

    with open(f"{prefix}_stats.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    total = next(r for r in rows if r["Name"] == "Aggregated")
    by_name = {
        r["Name"]: {
            "requests": int(r["Request Count"]),
            "failures": int(r["Failure Count"]),
            "median_ms": float(r["Median Response Time"]),
            "p95_ms": float(r["95%"]),
            "rps": round(float(r["Requests/s"]), 1),
        }
        for r in rows
        if r["Name"] != "Aggregated"
    }
    failures: dict[str, int] = {}
    with contextlib.suppress(FileNotFoundError), open(f"{prefix}_failures.csv", newline="") as fh:
        for r in csv.DictReader(fh):
            failures[f"{r['Method']} {r['Name']}: {r['Error'][:120]}"] = int(r["Occurrences"])
    return {
        "requests": int(total["Request Count"]),
        "failures": int(total["Failure Count"]),
        "requests_per_second": round(float(total["Requests/s"]), 1),
        "median_ms": float(total["Median Response Time"]),
        "p95_ms": float(total["95%"]),
        "p99_ms": float(total["99%"]),
        "by_request": by_name,
        "failures_by_kind": failures,
    }


def _cpu_summary(samples: list[dict[str, Any]]) -> dict[str, Any]:
    if not samples:
        return {}
    cpu = [s["machine_cpu_percent"] for s in samples]
    summary: dict[str, Any] = {
        "machine_cpu_percent_mean": round(sum(cpu) / len(cpu), 1),
        "cores": os.cpu_count(),
    }
    for name in ("gunicorn", "postgres", "locust"):
        values = [s.get(f"{name}_cpu_percent", 0) for s in samples]
        summary[f"{name}_cpu_percent_of_one_core_mean"] = round(sum(values) / len(values))
    waits: dict[str, int] = {}
    for s in samples:
        for key, n in (s.get("pg_activity") or {}).items():
            waits[key] = waits.get(key, 0) + n
    if waits:
        summary["pg_activity_mean"] = {k: round(v / len(samples), 1) for k, v in sorted(waits.items())}
    return summary


def main() -> None:
    # Imported here like the rest of the project: locust's workers import this module too.
    from benchmarks.common import PG_ADMIN, throwaway_database

    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--engines", default="postgres,sqlite")
    parser.add_argument("--notices", type=int, default=200_000)
    parser.add_argument("--firms", type=int, default=10_000)
    parser.add_argument("--consortia", type=int, default=500)
    parser.add_argument("--users", type=int, default=100)
    parser.add_argument("--spawn-rate", type=int, default=20)
    parser.add_argument("--duration", default="2m")
    parser.add_argument("--pg-workers", type=int, default=4)
    parser.add_argument("--sqlite-workers", type=int, default=1)
    parser.add_argument("--postgres-admin-url", default=PG_ADMIN)
    args = parser.parse_args()

    result: dict[str, Any] = {"users": args.users, "duration": args.duration, "cores": os.cpu_count()}
    with tempfile.TemporaryDirectory() as tmp:
        for engine in args.engines.split(","):
            with throwaway_database(engine, tmp, admin_url=args.postgres_admin_url) as url:
                result[engine] = run_engine(url, engine, args, tmp)
    print(json.dumps(result, indent=2, ensure_ascii=False))


if __name__ == "__main__":
    main()
