"""Matching for the daily digest: every firm's matches among a day's new notices, against a naive loop.

    python -m benchmarks.digest [--firms 10000] [--notices 3000] [--engines sqlite,postgres]

Builds N notices as benchmarks.search does (a day's worth: created yesterday) and F approved firms
with realistic profiles drawn from the CPV 2008 list: 1 to 5 skills each, at the division, group,
class or category level, in the divisions public buyers use most; a département of the 77 or the
91 and sometimes a wider zone; a turnover; keywords for half of them; an owner with an alert search
for one firm in five; a few "not interested" marks. Everything is written with Core executemany.

Then, per engine:

* ``match_notices_for_firms(session, every notice, every firm)``, timed (one core), and again
  under tracemalloc for its peak memory;
* the digest job's way: one Matcher (the notices read once), firms in batches of 200, the twenty
  best matches of each firm explained in French;
* the naive baseline, measured in the same run on a tenth of the firms and a tenth of the notices:
  every (firm, notice) pair scored in a Python loop, with the same rules; the indexed service on
  that same tenth, whose matches must be identical; the naive time extrapolated to the full size
  (pairs grow with F × N).

Times are wall-clock and CPU time of the process (``*_cpu_seconds``: the "one core" figure on a
busy machine). Prints one JSON object. Goal (issue 5): the full matching in < 20 s on one core.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import random
import resource
import sys
import tempfile
import time
import tracemalloc
from collections import defaultdict
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

from sqlalchemy import insert, select, text

ROOT = Path(__file__).resolve().parents[1]
CHUNK = 5000

sys.path.insert(0, str(ROOT))

from benchmarks.common import throwaway_database  # noqa: E402
from benchmarks.search import build  # noqa: E402
from tenderpool import migrate  # noqa: E402
from tenderpool.db import Database  # noqa: E402
from tenderpool.firms import matching  # noqa: E402
from tenderpool.firms.models import Firm, FirmCpv, FirmMembership, FirmYear  # noqa: E402
from tenderpool.notices.models import Notice, NoticeDismissal, SavedSearch  # noqa: E402
from tenderpool.reference import cpv_codes  # noqa: E402

# Divisions by how often French public buyers use them (BOAMP, roughly), the weights of the draw.
DIVISIONS = {
    "45": 30, "71": 8, "90": 7, "79": 6, "50": 6, "77": 5, "72": 5, "55": 4, "60": 3, "33": 3,
    "34": 3, "39": 3, "30": 3, "44": 3, "48": 2, "80": 2, "85": 2, "09": 2, "15": 2, "66": 2,
    "31": 2, "32": 2, "35": 1, "42": 1, "43": 1, "73": 1, "92": 1, "98": 1,
}  # fmt: skip
LEVELS = {1: 5, 2: 20, 3: 45, 4: 30}  # division, group, class, category: how specific skills are
NOTICE_LEVELS = {3: 15, 4: 45, 5: 30, 6: 10}  # notices name precise codes (class and below)
# Trade words, as firms type them (not "entretien" or "travaux", which every notice has).
KEYWORDS = [
    "toiture", "menuiseries extérieures", "espaces verts", "éclairage public", "désamiantage",
    "restauration collective", "transport scolaire", "plomberie", "isolation thermique", "élagage",
    "vidéoprotection", "mobilier scolaire", "gros œuvre", "étanchéité", "serrurerie", "carrelage",
    "climatisation", "ascenseurs", "signalisation", "câblage", "charpente", "clôtures", "bardage",
]  # fmt: skip
SEARCHES = [
    "q=nettoyage&dep=77", "q=toiture", "q=espaces+verts&dep=91", "cpv=45000000&dep=77", "q=voirie",
    "q=chauffage+maintenance", "cpv=90900000", "q=%22isolation+thermique%22", "q=menuiseries&type=works",
    "cpv=71000000&dep=91", "q=restauration+collective",
]  # fmt: skip
DISMISS = ["too_far", "too_big", "too_small", "not_our_trade", "buyer", "deadline", "other"]


def skill_pool() -> dict[int, list[str]]:  # also the notices' pool, at finer levels
    """CPV codes by level, in the divisions drawn, each repeated by its division's weight."""
    pool: dict[int, list[str]] = defaultdict(list)
    for code, cpv in cpv_codes().items():
        weight = DIVISIONS.get(code[:2])
        if weight:
            pool[cpv.level] += [code] * weight
    return pool


def firm_rows(
    n: int, now: dt.datetime, notice_ids: list[int], seed: int = 17
) -> Iterator[dict[str, list[dict[str, Any]]]]:
    rng = random.Random(seed)
    pool = skill_pool()
    levels, level_weights = list(LEVELS), list(LEVELS.values())
    chunk: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for i in range(1, n + 1):
        department = "77" if rng.random() < 0.5 else "91"
        zone = (
            []
            if rng.random() < 0.6
            else sorted({department, *rng.sample(["75", "77", "78", "91", "93", "94"], 2)})
        )
        keywords = rng.sample(KEYWORDS, rng.choice([0, 0, 1, 2, 3])) if rng.random() < 0.5 else []
        chunk["firms"].append({
            "id": i, "siret": f"{i:014d}", "siren": f"{i:09d}", "name": f"Entreprise {i}",
            "address": "1 rue de la Gare", "postcode": department + "100", "city": "Meaux",
            "department": department, "chamber_slug": "cci77" if department == "77" else "cci91",
            "status": "approved", "created_at": now, "keywords": keywords, "zone_departments": zone,
            "zone_radius_km": rng.choice([None, None, 30, 60]), "directory_opt_in": False,
            "directory_fields": [],
        })  # fmt: skip
        skills = {rng.choice(pool[rng.choices(levels, level_weights)[0]]) for _ in range(rng.randint(1, 5))}
        chunk["cpv"] += [{"firm_id": i, "cpv": code} for code in sorted(skills)]
        turnover = Decimal(int(rng.lognormvariate(13.5, 1.0)))  # median ≈ 730 k€
        chunk["years"].append({"firm_id": i, "year": 2025, "turnover": turnover, "turnover_by_field": {},
                               "headcount": rng.randint(1, 60)})  # fmt: skip
        if rng.random() < 0.2:
            chunk["users"].append({
                "id": i, "email": f"gerant{i}@bench.example", "full_name": f"Gérant {i}",
                "password_hash": "x", "role": "firm", "chamber_slug": None, "is_active": True,
                "auth_version": 1, "created_at": now,
            })  # fmt: skip
            chunk["memberships"].append({"user_id": i, "firm_id": i, "is_owner": True, "created_at": now})
            chunk["searches"].append({"user_id": i, "name": "Alerte", "query": rng.choice(SEARCHES),
                                      "is_alert": True, "created_at": now})  # fmt: skip
        if rng.random() < 0.05:
            for notice_id in rng.sample(notice_ids, 2):
                reason = rng.choice(DISMISS)
                chunk["dismissals"].append({"firm_id": i, "notice_id": notice_id, "reason": reason,
                                            "created_at": now})  # fmt: skip
        if i % CHUNK == 0 or i == n:
            yield dict(chunk)
            chunk = defaultdict(list)


# Trade lots of a works notice and their codes.
LOTS = [
    ("Gros œuvre", "45223220"), ("Électricité courants forts et faibles", "45311000"),
    ("Plomberie sanitaires", "45330000"), ("Peinture", "45442100"), ("Menuiseries intérieures", "45421000"),
    ("Carrelage faïence", "45431000"), ("Couverture étanchéité", "45261000"),
    ("Chauffage ventilation", "45331000"), ("Serrurerie métallerie", "45421160"),
    ("Cloisons doublages", "45421152"), ("Voirie réseaux divers", "45233140"), ("Espaces verts", "45112710"),
]  # fmt: skip


def recode_notices(db: Database, seed: int = 23) -> None:
    """Give the generated notices CPV codes drawn from the CPV list, and lots that fit them.

    benchmarks.search draws codes from 25 subjects only, and gives any notice random trade lots:
    every construction firm would match a third of the pool and every plumber a notice about
    school meals. Here a notice has a main code and sometimes one or two more of its division;
    works notices (division 45) have trade lots two times in five, others none.
    """
    from tenderpool.notices.models import Lot, NoticeCpv

    rng = random.Random(seed)
    pool = skill_pool()
    levels, weights = list(NOTICE_LEVELS), list(NOTICE_LEVELS.values())
    by_division: dict[str, list[str]] = defaultdict(list)
    for level in NOTICE_LEVELS:
        for code in set(pool[level]):
            by_division[code[:2]].append(code)
    for codes in by_division.values():
        codes.sort()
    with db.engine.begin() as conn:
        ids = list(conn.scalars(select(Notice.id).order_by(Notice.id)))
        conn.execute(NoticeCpv.__table__.delete())
        conn.execute(Lot.__table__.delete())
        rows, lots = [], []
        for notice_id in ids:
            main = rng.choice(pool[rng.choices(levels, weights)[0]])
            extra = rng.sample(by_division[main[:2]], rng.choice([0, 0, 1, 2]))
            codes = list(dict.fromkeys([main, *extra]))
            rows += [{"notice_id": notice_id, "cpv": code, "position": i} for i, code in enumerate(codes)]
            if main.startswith("45") and rng.random() < 0.4:
                for k, (title, code) in enumerate(rng.sample(LOTS, rng.randint(2, 5))):
                    value = Decimal(rng.randrange(20_000, 900_000, 1000))
                    lots.append({"notice_id": notice_id, "number": str(k + 1), "position": k, "title": title,
                                 "cpv": [code], "estimated_value": value})  # fmt: skip
        for start in range(0, len(rows), CHUNK):
            conn.execute(insert(NoticeCpv), rows[start : start + CHUNK])
        for start in range(0, len(lots), CHUNK):
            conn.execute(insert(Lot), lots[start : start + CHUNK])


def build_firms(db: Database, n: int, now: dt.datetime) -> float:
    from tenderpool.accounts.models import User

    start = time.perf_counter()
    with db.engine.connect() as conn:
        notice_ids = list(conn.scalars(select(Notice.id)))
    for chunk in firm_rows(n, now, notice_ids):
        with db.engine.begin() as conn:
            conn.execute(insert(Firm), chunk["firms"])
            conn.execute(insert(FirmCpv), chunk["cpv"])
            conn.execute(insert(FirmYear), chunk["years"])
            if chunk.get("users"):
                conn.execute(insert(User), chunk["users"])
                conn.execute(insert(FirmMembership), chunk["memberships"])
                conn.execute(insert(SavedSearch), chunk["searches"])
            if chunk.get("dismissals"):
                conn.execute(insert(NoticeDismissal), chunk["dismissals"])
    with db.engine.begin() as conn:
        if db.is_sqlite:
            conn.execute(text("ANALYZE"))
    if not db.is_sqlite:
        with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(text("VACUUM ANALYZE"))
    return time.perf_counter() - start


# --------------------------------------------------------------------------- the naive baseline


def naive(session: Any, notice_ids: list[int], firm_ids: list[int]) -> dict[int, list[matching.Match]]:
    """Every (firm, notice) pair scored in turn, with the service's own rules and facts."""
    notices = matching._load_notices(session, notice_ids)
    index = matching._load_firms(session, firm_ids)
    facts = matching._Facts(index.firms, notices)
    out: dict[int, list[matching.Match]] = defaultdict(list)
    for firm in index.firms.values():
        for notice in notices.values():
            found = matching._match_one(firm, notice, matching.pair_hits(firm, notice), facts)
            if found is not None:
                out[firm.id].append(found)
    for matches in out.values():
        matches.sort(key=lambda m: (-m.score, m.notice_id))
    return dict(out)


def _pairs(result: dict[int, list[matching.Match]]) -> set[tuple[int, int, int]]:
    return {(m.firm_id, m.notice_id, m.score) for matches in result.values() for m in matches}


def run_engine(url: str, firms: int, notices: int) -> dict[str, Any]:
    db = Database(url)
    migrate.upgrade(db.engine)
    now = dt.datetime(2026, 11, 28, 6, 0, tzinfo=dt.UTC)
    notices_seconds = build(db, notices, now)
    recode_notices(db)
    firms_seconds = build_firms(db, firms, now)
    result: dict[str, Any] = {"build_seconds": round(notices_seconds + firms_seconds, 1)}
    with db.session() as session:
        notice_ids = sorted(session.scalars(select(Notice.id)))
        firm_ids = sorted(session.scalars(select(Firm.id)))

        # Wall time, and the process's CPU time: the figure for "one core" when the machine is busy.
        start, cpu = time.perf_counter(), time.process_time()
        full = matching.match_notices_for_firms(session, notice_ids)
        result["match_seconds"] = round(time.perf_counter() - start, 2)
        result["match_cpu_seconds"] = round(time.process_time() - cpu, 2)
        result["matches"] = sum(len(m) for m in full.values())
        result["matches_per_firm"] = round(result["matches"] / len(firm_ids), 1)
        result["firms_with_a_match"] = len(full)
        result["group_candidates"] = sum(m.is_group_candidate for ms in full.values() for m in ms)
        example = next(iter(full.values()))[0].explanation if full else None
        del full
        session.expunge_all()

        # What the digest job does: batches of 200 firms (digests.batch_size) against the day's
        # notices, read once (one Matcher), each firm's twenty best matches explained.
        matcher = matching.Matcher(session)
        matcher.match(notice_ids, firm_ids[:1])  # reads and stems the notices, once per job
        start, cpu = time.perf_counter(), time.process_time()
        batches = [firm_ids[i : i + 200] for i in range(0, len(firm_ids), 200)]
        explained = 0
        for batch in batches:
            for matches in matcher.match(notice_ids, batch).values():
                explained += len([m.explanation for m in matches[:20]])
        result["digest_batches_cpu_seconds"] = round(time.process_time() - cpu, 2)
        result["digest_batches_seconds"] = round(time.perf_counter() - start, 2)
        result["explained"] = explained
        result["example"] = example
        del matcher

        tracemalloc.start()
        matching.match_notices_for_firms(session, notice_ids)
        _current, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        result["match_peak_traced_mb"] = round(peak / 2**20, 1)
        session.expunge_all()

        # The tenth: every tenth firm and every tenth notice (1 % of the pairs).
        few_notices, few_firms = notice_ids[::10], firm_ids[::10]
        cpu = time.process_time()
        indexed = matching.match_notices_for_firms(session, few_notices, few_firms)
        indexed_seconds = time.process_time() - cpu
        cpu = time.process_time()
        baseline = naive(session, few_notices, few_firms)
        naive_seconds = time.process_time() - cpu
        assert _pairs(indexed) == _pairs(baseline), "the index and the naive loop disagree"
        scale = (len(firm_ids) / len(few_firms)) * (len(notice_ids) / len(few_notices))
        result["tenth"] = {
            "firms": len(few_firms),
            "notices": len(few_notices),
            "pairs": len(few_firms) * len(few_notices),
            "matches": sum(len(m) for m in indexed.values()),
            "indexed_cpu_seconds": round(indexed_seconds, 3),
            "naive_cpu_seconds": round(naive_seconds, 3),
            "naive_to_indexed": round(naive_seconds / indexed_seconds, 1),
        }
        result["naive_extrapolated_cpu_seconds"] = round(naive_seconds * scale, 1)
        result["speedup_vs_naive_extrapolated"] = round(
            naive_seconds * scale / result["match_cpu_seconds"], 1
        )
    db.engine.dispose()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--firms", type=int, default=10_000)
    parser.add_argument("--notices", type=int, default=3_000)
    parser.add_argument("--engines", default="sqlite,postgres")
    args = parser.parse_args()
    out: dict[str, Any] = {"firms": args.firms, "notices": args.notices, "pairs": args.firms * args.notices}
    with tempfile.TemporaryDirectory() as tmp:
        for engine in args.engines.split(","):
            with throwaway_database(engine, tmp) as url:
                out[engine] = run_engine(url, args.firms, args.notices)
    out["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    out["goal_seconds"] = 20
    print(json.dumps(out, indent=2, ensure_ascii=False))


if __name__ == "__main__":
    main()
