"""Search latency: the search service and the notice list page on N notices, against a naive LIKE scan.

    python -m benchmarks.search [--notices 200000] [--engines sqlite,postgres] [--queries 200] [--keep]
    python -m benchmarks.search --reuse URL [--reuse URL] [--kinds combo,deadline] [--repeat 3]

Builds N notices varied from the real samples (their buyers, descriptions, lots and CPV codes, with
titles, places, dates and values drawn from a realistic vocabulary), written straight into the tables
with Core executemany: notices, notice_cpv, notice_departments, lots, notice_search and the engine's
index (notice_fts with its facets on SQLite; the trigger fills tsv, facets included, on PostgreSQL),
then the statistics are gathered (ANALYZE; what autovacuum does after an ingestion on a server).
Then a fixed mix of queries (words, phrases, CPV prefixes, départements, deadline windows,
combinations, the three sorts) runs once to warm the caches and once measured, through:

* the service, ``search_notices`` (first page of 20, with its total);
* the list page, ``GET /avis?<params>`` through the Flask test client (skipped, saying so, while
  the ``notices.browse`` endpoint does not exist);
* for the text queries, a naive ``LIKE '%word%'`` scan over title and description with the same
  filters, count and page: the baseline, measured in the same run, after the service (a scan reads
  every notice: between two searches it would leave the caches cold for the second).

Prints one JSON object. Goal (issue 4): p95 < 50 ms for the service and < 150 ms for the page.

Building 200 000 notices takes minutes: ``--keep`` keeps the databases (and prints their URLs),
``--reuse URL`` measures a kept one again (after applying the migrations written since), and
``--kinds`` measures some kinds of queries only, ``--repeat N`` keeps the median of N runs of each
query. Drop a kept PostgreSQL database by hand
(``DROP DATABASE tenderpool_bench_kept_…``) and delete a kept SQLite file.
Not generated: publications (the ``source`` filter is not measured) and staff tags.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import random
import secrets
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

from sqlalchemy import create_engine, func, insert, or_, select, text

ROOT = Path(__file__).resolve().parents[1]
PARIS = ZoneInfo("Europe/Paris")
CHUNK = 5000

sys.path.insert(0, str(ROOT))

from benchmarks.common import PG_ADMIN, machine, throwaway_database  # noqa: E402
from benchmarks.ingest import boamp_templates, eforms_templates  # noqa: E402
from scrapers.base import RawRecord  # noqa: E402
from scrapers.registry import parse_raw  # noqa: E402
from tenderpool.db import Database  # noqa: E402
from tenderpool.notices.models import Lot, Notice, NoticeCpv, NoticeDepartment, NoticeSearch  # noqa: E402
from tenderpool.notices.sanitize import sanitize_html  # noqa: E402
from tenderpool.notices.search import (  # noqa: E402
    SearchQuery,
    apply_filters,
    fts_content,
    search_document,
    search_notices,
    write_fts_rows,
)
from tenderpool.reference import cpv_codes  # noqa: E402

# (subject of the contract, its CPV codes, contract type): what notices of the 77/91 area are about.
SUBJECTS = [
    ("réhabilitation de l'école élémentaire", ["45453000", "45214200"], "works"),
    ("nettoyage des locaux administratifs", ["90910000", "90919200"], "services"),
    ("entretien des espaces verts", ["77310000"], "services"),
    ("travaux de voirie et réseaux divers", ["45233140", "45232410"], "works"),
    ("maîtrise d'œuvre pour la rénovation du gymnase", ["71000000", "71300000"], "services"),
    ("fourniture de repas en liaison froide", ["55520000", "55523100"], "services"),
    ("maintenance des installations de chauffage", ["50720000", "45331000"], "services"),
    ("réfection de la toiture de la salle des fêtes", ["45261000", "45261210"], "works"),
    ("remplacement des menuiseries extérieures", ["45421000", "44221000"], "works"),
    ("travaux d'éclairage public", ["45316110", "45310000"], "works"),
    ("transport scolaire des élèves", ["60130000"], "services"),
    ("collecte des déchets ménagers", ["90511000"], "services"),
    ("fourniture de matériel informatique", ["30200000"], "supplies"),
    ("assurance des risques statutaires", ["66510000"], "services"),
    ("restauration collective du groupe scolaire", ["55520000"], "services"),
    ("désamiantage avant démolition", ["45262660"], "works"),
    ("élagage et abattage d'arbres", ["77211400"], "services"),
    ("installation de vidéoprotection urbaine", ["32323500", "45310000"], "works"),
    ("mise en accessibilité des bâtiments communaux", ["45000000", "45454000"], "works"),
    ("nettoyage des vitres et parties communes", ["90911200"], "services"),
    ("construction d'un groupe scolaire", ["45214200", "45210000"], "works"),
    ("fourniture de mobilier scolaire", ["39160000"], "supplies"),
    ("location de véhicules utilitaires", ["34144900"], "supplies"),
    ("isolation thermique par l'extérieur", ["45443000", "45442100"], "works"),
    ("travaux de plomberie et de ventilation", ["45330000", "45331000"], "works"),
]
QUALIFIERS = [
    "",
    "",
    "(accord-cadre à bons de commande)",
    "– lot unique",
    "et prestations associées",
    "pour la commune",
    "des sites municipaux",
    "– relance",
    "2026-2029",
]
TOWNS_77 = [
    "Meaux",
    "Melun",
    "Chelles",
    "Pontault-Combault",
    "Savigny-le-Temple",
    "Bussy-Saint-Georges",
    "Fontainebleau",
    "Provins",
    "Nemours",
    "Torcy",
    "Lagny-sur-Marne",
    "Coulommiers",
]
TOWNS_91 = [
    "Évry-Courcouronnes",
    "Massy",
    "Corbeil-Essonnes",
    "Savigny-sur-Orge",
    "Palaiseau",
    "Étampes",
    "Sainte-Geneviève-des-Bois",
    "Viry-Châtillon",
    "Athis-Mons",
    "Brétigny-sur-Orge",
]
LOT_TITLES = [
    "Gros œuvre",
    "Électricité courants forts et faibles",
    "Plomberie sanitaires",
    "Peinture",
    "Menuiseries intérieures",
    "Carrelage faïence",
    "Couverture étanchéité",
    "Chauffage ventilation",
    "Espaces verts",
    "Voirie",
    "Serrurerie métallerie",
    "Cloisons doublages",
]
BUYERS = [
    "Commune de {town}",
    "Communauté d'agglomération de {town}",
    "Syndicat intercommunal de {town}",
    "CCAS de {town}",
    "Office public de l'habitat de {town}",
]

WORD_QUERIES = [
    "nettoyage",
    "réhabilitation",
    "voirie",
    "toiture",
    "espaces verts",
    "chauffage maintenance",
    "NETTOYAGES",
    "rehabilitation ecole",
    "menuiseries extérieures",
    "désamiantage",
    "restauration collective",
    "éclairage",
    "transport scolaire",
    "vidéoprotection",
    "informatique",
    "assurance statutaires",
    "élagage",
    "gymnase",
    "Meaux",
    "voirie Évry",
    "plomberie ventilation",
    "mobilier",
    "isolation thermique",
    "démolition",
    "accord-cadre nettoyage",
]
PHRASES = [
    '"espaces verts"',
    '"maîtrise d\'œuvre"',
    '"éclairage public"',
    '"transport scolaire"',
    '"groupe scolaire"',
    '"liaison froide"',
    '"isolation thermique"',
    '"vitres et parties communes"',
]
CPV_QUERIES = [
    "45000000",
    "45200000",
    "90900000",
    "77300000",
    "50700000",
    "71000000",
    "30200000",
    "55500000",
    "45400000",
]


# --------------------------------------------------------------------------- data


def sample_templates() -> list[dict[str, Any]]:
    """The real samples, parsed: buyer, sanitised description, lot titles, CPV codes."""
    fetched = dt.datetime(2026, 11, 28, 6, 0, tzinfo=dt.UTC)
    raws = [
        RawRecord("boamp", r["idweb"], json.dumps(r).encode(), "application/json", fetched)
        for r in boamp_templates()
    ]
    raws += [
        RawRecord("eforms", f"x{i}", x.encode(), "application/xml", fetched)
        for i, x in enumerate(eforms_templates())
    ]
    known = cpv_codes()
    out = []
    for raw in raws:
        parsed = parse_raw(raw)
        out.append({
            "buyer": parsed.buyer_name,
            "description": sanitize_html(parsed.description) if parsed.description else "",
            "lots": [lot.title for lot in parsed.lots if lot.title][:6],
            "cpv": [c for c in parsed.cpv if c in known][:3],
        })  # fmt: skip
    return out


def generate(n: int, now: dt.datetime, seed: int = 11) -> Iterator[dict[str, list[dict[str, Any]]]]:
    """Rows for N notices, CHUNK at a time: {"notices": [...], "cpv": [...], ...}."""
    rng = random.Random(seed)
    templates = sample_templates()
    known = cpv_codes()
    subjects = [(s, [c for c in codes if c in known], kind) for s, codes, kind in SUBJECTS]
    created = now - dt.timedelta(days=1)
    chunk: dict[str, list[dict[str, Any]]] = {
        "notices": [],
        "cpv": [],
        "departments": [],
        "lots": [],
        "search": [],
    }
    for i in range(1, n + 1):
        template = templates[i % len(templates)]
        subject, codes, kind = rng.choice(subjects)
        other, _, _ = rng.choice(subjects)
        area = rng.random()
        town = rng.choice(TOWNS_77 if area < 0.5 else TOWNS_91)
        departments = (
            ["77"] if area < 0.47 else ["91"] if area < 0.94 else [rng.choice(["75", "92", "93", "94"])]
        )
        if rng.random() < 0.05:
            departments.append("91" if departments[0] == "77" else "77")
        title = f"{subject[0].upper()}{subject[1:]} {rng.choice(QUALIFIERS)} – {town}".replace("  ", " ")
        buyer = rng.choice(BUYERS).format(town=town) if rng.random() < 0.8 else template["buyer"]
        description = (
            f"<p>Le présent marché porte sur la {subject} pour la ville de {town}. "
            f"Il comprend également la {other}.</p>{template['description']}"
        )
        lots = (
            template["lots"] if rng.random() < 0.3 else rng.sample(LOT_TITLES, rng.choice([0, 0, 1, 2, 3, 5]))
        )
        published = (now - dt.timedelta(days=rng.randint(0, 700))).date()
        deadline = None
        if rng.random() > 0.05:
            day = published + dt.timedelta(days=rng.randint(7, 60))
            deadline = dt.datetime.combine(day, dt.time(12), tzinfo=PARIS).astimezone(dt.UTC)
        value = Decimal(rng.randrange(10_000, 5_000_000, 500)) if rng.random() < 0.4 else None
        roll = rng.random()
        status = "awarded" if roll < 0.06 else "cancelled" if roll < 0.08 else "open"
        cpv = list(dict.fromkeys(codes + (template["cpv"] if rng.random() < 0.3 else [])))
        chunk["notices"].append(
            {
                "id": i,
                "title": title,
                "buyer_name": buyer,
                "description": description,
                "contract_type": kind,
                "procedure_type": "open",
                "published_at": published,
                "deadline_at": deadline,
                "estimated_value": value,
                "currency": "EUR" if value else None,
                "nuts": ["FR102"] if "77" in departments else ["FR104"],
                "url": f"https://example.test/avis/{i}",
                "status": status,
                "field_dates": {},
                "is_demo": False,
                "created_at": created,
                "updated_at": created,
                "is_manual": False,
                "is_featured": rng.random() < 0.01,
                "is_rejected": rng.random() < 0.005,
                "locked_fields": {},
                "conflicts": {},
            }
        )
        chunk["cpv"] += [{"notice_id": i, "cpv": c, "position": p} for p, c in enumerate(cpv)]
        chunk["departments"] += [{"notice_id": i, "department": d} for d in sorted(set(departments))]
        chunk["lots"] += [
            {
                "notice_id": i,
                "number": str(k + 1),
                "position": k,
                "title": t,
                "cpv": [],
                "estimated_value": None,
            }
            for k, t in enumerate(lots)
        ]
        document = search_document(title, buyer, description, lots)
        chunk["search"].append({"notice_id": i, "document": document})
        if i % CHUNK == 0 or i == n:
            yield chunk
            chunk = {key: [] for key in chunk}


def build(db: Database, n: int, now: dt.datetime) -> float:
    start = time.perf_counter()
    sqlite = db.is_sqlite
    for chunk in generate(n, now):
        with db.engine.begin() as conn:
            conn.execute(insert(Notice), chunk["notices"])
            conn.execute(insert(NoticeCpv), chunk["cpv"])
            conn.execute(insert(NoticeDepartment), chunk["departments"])
            if chunk["lots"]:
                conn.execute(insert(Lot), chunk["lots"])
            conn.execute(insert(NoticeSearch), chunk["search"])  # PostgreSQL: the trigger fills tsv
            if sqlite:  # with the facets that the rows just written give (search.write_fts_rows)
                write_fts_rows(conn, [(r["notice_id"], fts_content(r["document"])) for r in chunk["search"]])
    if sqlite:
        with db.engine.begin() as conn:
            conn.execute(text("INSERT INTO notice_fts (notice_fts) VALUES ('optimize')"))
            conn.execute(text("ANALYZE"))
    else:
        with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(text("VACUUM ANALYZE"))
    return time.perf_counter() - start


# --------------------------------------------------------------------------- queries


def query_mix(count: int, now: dt.datetime, seed: int = 5) -> list[tuple[str, dict[str, Any]]]:
    """(kind, URL parameters) for ``count`` queries, the same in every run."""
    rng = random.Random(seed)
    today = now.astimezone(PARIS).date()
    mix: list[tuple[str, dict[str, Any]]] = []
    kinds = ["words", "words", "phrase", "cpv", "dep", "deadline", "combo", "combo"]
    for k in range(count):
        kind = kinds[k % len(kinds)]
        params: dict[str, Any] = {}
        if kind == "words":
            params["q"] = rng.choice(WORD_QUERIES)
        elif kind == "phrase":
            params["q"] = rng.choice(PHRASES)
        elif kind == "cpv":
            params["cpv"] = rng.choice(CPV_QUERIES)
        elif kind == "dep":
            params["dep"] = rng.choice(["77", "91", "77,91", "75"])
        elif kind == "deadline":
            if rng.random() < 0.5:
                params["closing"] = str(rng.choice([7, 15, 30]))
            else:
                start = today - dt.timedelta(days=rng.randint(0, 300))
                params["deadline_from"] = start.isoformat()
                params["deadline_to"] = (start + dt.timedelta(days=30)).isoformat()
        else:
            choice = rng.randrange(6)
            if choice == 0:
                params.update(q=rng.choice(WORD_QUERIES), dep=rng.choice(["77", "91"]), status="open")
            elif choice == 1:
                params.update(cpv=rng.choice(CPV_QUERIES), dep=rng.choice(["77", "91"]), closing="30")
            elif choice == 2:
                params.update(q=rng.choice(WORD_QUERIES), cpv=rng.choice(CPV_QUERIES))
            elif choice == 3:
                params.update(q=rng.choice(PHRASES), dep="77,91", status="open", sort="deadline")
            elif choice == 4:
                params.update(q=rng.choice(WORD_QUERIES), min="50000", max="1000000")
            else:
                params.update(featured="1", dep=rng.choice(["77", "91"]))
        roll = rng.random()
        if "sort" not in params and roll < 0.2:
            params["sort"] = "deadline"
        elif "sort" not in params and roll < 0.3 and "q" in params:
            params["sort"] = "published"
        mix.append((kind, params))
    return mix


def naive_search(session: Any, query: SearchQuery, now: dt.datetime) -> tuple[int, list[int]]:
    """The baseline: every word as LIKE '%word%' on title or description, same filters, count and page."""
    words = [w for w in query.text.replace('"', " ").split() if w.lower() != "or"]
    stmt = apply_filters(select(Notice.id), query.with_(text=""), now=now)
    for word in words:
        stmt = stmt.where(or_(Notice.title.ilike(f"%{word}%"), Notice.description.ilike(f"%{word}%")))
    total = session.scalar(select(func.count()).select_from(stmt.subquery())) or 0
    page = stmt.order_by(Notice.published_at.desc().nulls_last(), Notice.id.desc()).limit(20)
    return total, list(session.scalars(page))


def percentiles(values: list[float]) -> dict[str, float]:
    if not values:
        return {}
    ordered = sorted(values)
    p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
    return {"p50": round(statistics.median(ordered), 2), "p95": round(p95, 2), "max": round(ordered[-1], 2)}


def timed(fn: Any) -> tuple[float, Any]:
    start = time.perf_counter()
    result = fn()
    return (time.perf_counter() - start) * 1000, result


def measure_service(
    db: Database, mix: list[tuple[str, dict[str, Any]]], now: dt.datetime, repeat: int = 1
) -> dict[str, Any]:
    queries = [(kind, SearchQuery.from_args(params)) for kind, params in mix]
    for _, query in queries:  # warm the caches (and the stemmer's) once
        with db.session() as session:
            search_notices(session, query, now=now, per_page=20)
    times: list[float] = []
    by_kind: dict[str, list[float]] = {}
    totals: dict[str, list[int]] = {}
    text_service: list[float] = []
    text_like: list[float] = []
    zero_results = 0
    for kind, query in queries:
        each = []
        for _ in range(repeat):
            with db.session() as session:
                one, page = timed(lambda s=session, q=query: search_notices(s, q, now=now, per_page=20))
            each.append(one)
        ms = statistics.median(each)
        times.append(ms)
        by_kind.setdefault(kind, []).append(ms)
        zero_results += page.total == 0
        totals.setdefault(kind, []).append(page.total)
        if query.text:
            text_service.append(ms)
    # The baseline afterwards: each LIKE scan reads every notice, and would leave the caches cold
    # for the next search were they interleaved.
    for _, query in queries:
        if query.text:
            with db.session() as session:
                like_ms, _ = timed(lambda s=session, q=query: naive_search(s, q, now))
            text_like.append(like_ms)
    service = percentiles(times)
    like = percentiles(text_like)
    text_side = percentiles(text_service)
    return {
        "service_ms": service,
        "service_ms_by_kind": {kind: percentiles(values) for kind, values in sorted(by_kind.items())},
        # How many notices the queries of each kind match (median): the work a total costs.
        "median_total_by_kind": {
            kind: int(statistics.median(values)) for kind, values in sorted(totals.items())
        },
        "queries_without_result": zero_results,
        "text_queries": {
            "count": len(text_service),
            "service_ms": text_side,
            "naive_like_ms": like,
            "like_over_service_p50": round(like["p50"] / text_side["p50"], 1) if text_side else None,
            "like_over_service_p95": round(like["p95"] / text_side["p95"], 1) if text_side else None,
        },
    }


def signed_in_client(app: Any, db: Database) -> Any:
    """A Flask test client signed in as a new staff user of CCI 77 (who sees every list page)."""
    from tenderpool.accounts import services as accounts
    from tenderpool.accounts.services import create_user

    settings = app.extensions["tenderpool.settings"]
    with app.app_context(), db.session() as session:
        user = create_user(
            session,
            settings,
            email=f"bench-{uuid.uuid4().hex[:6]}@example.com",
            password=secrets.token_urlsafe(16) + "-1",  # letters only, 1 time in 100, is refused
            full_name="Benchmark",
            role="staff",
            chamber_slug="cci77",
        )
        # Signed-in sessions are recorded on the server: the cookie must name one.
        accounts.start_session(session, user, user_agent="benchmark", now=dt.datetime.now(dt.UTC))
        session.commit()
        user_id = user.get_id()
    client = app.test_client()
    with client.session_transaction() as sess:
        sess["_user_id"] = user_id
        sess["_fresh"] = True
    return client


def bench_app(db: Database, url: str, tmp: str) -> Any:
    """The web app on ``db``, with its instance folder in ``tmp`` and no mail."""
    from tenderpool.app import build_app

    overrides = {
        "env": "test",
        "secret_key": "benchmark-secret-key",
        "database_url": url,
        "app": {"instance_path": f"{tmp}/instance-{uuid.uuid4().hex[:6]}"},
        "mail": {"host": ""},
    }
    return build_app(overrides, database=db)


def measure_page(
    db: Database, url: str, mix: list[tuple[str, dict[str, Any]]], tmp: str, repeat: int = 1
) -> dict[str, Any]:
    app = bench_app(db, url, tmp)
    if "notices.browse" not in app.view_functions:
        return {"page": "skipped: no notices.browse endpoint (GET /avis) in this build yet"}
    client = signed_in_client(app, db)
    paths = ["/avis?" + urlencode(params) for _, params in mix]
    statuses: dict[int, int] = {}
    for path in paths:  # warm-up (templates compiled, caches filled)
        client.get(path)
    times = []
    for path in paths:
        each = []
        for _ in range(repeat):
            one, response = timed(lambda p=path: client.get(p))
            each.append(one)
        ms = statistics.median(each)
        statuses[response.status_code] = statuses.get(response.status_code, 0) + 1
        times.append(ms)
    if set(statuses) != {200}:  # a redirection to the sign-in page is no list page
        raise SystemExit(f"the list page answered {statuses}, not always 200: see measure_page")
    return {"page_ms": percentiles(times), "page_statuses": statuses}


# --------------------------------------------------------------------------- engines


def run_engine(
    url: str,
    n: int,
    mix_size: int,
    tmp: str,
    *,
    reuse: bool = False,
    kinds: set[str] | None = None,
    repeat: int = 1,
) -> dict[str, Any]:
    from tenderpool import migrate

    db = Database(url)
    try:
        migrate.upgrade(db.engine)  # a kept database gets the migrations written since it was built
        if reuse:
            now, n = built_at(db)
            build_seconds = 0.0
            analyze(db)
        else:
            now = dt.datetime.now(dt.UTC)
            build_seconds = build(db, n, now)
        mix = [(kind, params) for kind, params in query_mix(mix_size, now) if not kinds or kind in kinds]
        result: dict[str, Any] = {"notices": n, "build_seconds": round(build_seconds, 1)}
        if reuse:
            result["reused"] = True
        if not db.is_sqlite:  # the figures depend on how much of the tables the server keeps in memory
            with db.engine.connect() as conn:
                result["shared_buffers"] = conn.execute(text("SHOW shared_buffers")).scalar()
        result.update(measure_service(db, mix, now, repeat))
        result.update(measure_page(db, url, mix, tmp, repeat))
        return result
    finally:
        db.engine.dispose()


def built_at(db: Database) -> tuple[dt.datetime, int]:
    """The ``now`` a kept database was built for (its notices were created a day before) and its size.

    The query mix and the deadline windows are relative to it, so a reused database is measured
    with the same queries as when it was built.
    """
    with db.engine.connect() as conn:
        created, count = conn.execute(
            select(func.max(Notice.created_at), func.count()).select_from(Notice)
        ).one()
    if not count:
        raise SystemExit(f"{db.engine.url!r}: no notices to reuse; build one with --keep")
    if isinstance(created, str):  # SQLite through a bare select
        created = dt.datetime.fromisoformat(created)
    if created.tzinfo is None:
        created = created.replace(tzinfo=dt.UTC)
    return created + dt.timedelta(days=1), count


def analyze(db: Database) -> None:
    """Fresh statistics (new indexes from a migration run on a kept database included)."""
    if db.is_sqlite:
        with db.engine.begin() as conn:
            conn.execute(text("ANALYZE"))
    else:
        with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(text("VACUUM ANALYZE"))


@contextmanager
def kept_database(engine: str, n: int, admin_url: str) -> Iterator[str]:
    """Like throwaway_database, but kept afterwards (``--keep``): its URL is printed for ``--reuse``."""
    tag = f"{n}_{uuid.uuid4().hex[:6]}"
    if engine == "sqlite":
        url = f"sqlite:///{tempfile.gettempdir()}/tenderpool-bench-{tag}.db"
    elif engine == "postgres":
        name = f"tenderpool_bench_kept_{tag}"
        admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
        admin.dispose()
        url = admin_url.rsplit("/", 1)[0] + "/" + name
    else:
        raise SystemExit(f"unknown engine {engine!r} (sqlite, postgres)")
    yield url
    print(f"kept {engine} database: {url}  (measure again with --reuse {url})", file=sys.stderr)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--notices", type=int, default=200_000)
    parser.add_argument("--engines", default="sqlite,postgres")
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument(
        "--postgres-admin-url", default=PG_ADMIN, help="a server where a throwaway database may be created"
    )
    parser.add_argument(
        "--keep",
        action="store_true",
        help="keep the databases built (a file in the temporary directory on SQLite, a database on "
        "PostgreSQL, to drop by hand) and print their URLs for --reuse",
    )
    parser.add_argument(
        "--reuse",
        action="append",
        default=[],
        metavar="URL",
        help="measure a database kept by an earlier --keep run instead of building one (repeatable: "
        "one per engine; --engines and --notices are then ignored). Migrations written since are "
        "applied and statistics refreshed first",
    )
    parser.add_argument(
        "--kinds", default="", help="measure only these query kinds (words,phrase,cpv,dep,deadline,combo)"
    )
    parser.add_argument(
        "--repeat",
        type=int,
        default=1,
        help="run each query this many times and keep its median: steadier figures on a busy machine",
    )
    args = parser.parse_args()
    kinds = {k for k in args.kinds.split(",") if k} or None
    result: dict[str, Any] = {
        "notices": args.notices,
        "queries": args.queries,
        "repeat": args.repeat,
        "machine": machine(),
    }
    with tempfile.TemporaryDirectory() as tmp:
        if args.reuse:
            for url in args.reuse:
                engine = "sqlite" if url.startswith("sqlite") else "postgres"
                result[engine] = run_engine(
                    url, args.notices, args.queries, tmp, reuse=True, kinds=kinds, repeat=args.repeat
                )
                result["notices"] = result[engine]["notices"]
        else:
            for engine in args.engines.split(","):
                if args.keep:
                    database = kept_database(engine, args.notices, args.postgres_admin_url)
                else:
                    database = throwaway_database(engine, tmp, admin_url=args.postgres_admin_url)
                with database as url:
                    result[engine] = run_engine(
                        url, args.notices, args.queries, tmp, kinds=kinds, repeat=args.repeat
                    )
    print(json.dumps(result, indent=2, ensure_ascii=False))


if __name__ == "__main__":
    main()
