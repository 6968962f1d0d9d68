"""Partner suggestions for a 3-lot notice over 10 000 firms.

    python -m benchmarks.suggest [--firms 10000] [--runs 30] [--engines sqlite,postgres]

Builds F approved firms with the profiles of benchmarks.digest (1 to 5 CPV skills drawn from
the CPV list, weighted by how often buyers use each division, 77 or 91, a headcount), lists
60 % of them in the partner directory with their skills public, gives one in five a public
reference and marks a few "not interested", then writes a works notice with three trade lots
(gros œuvre, plomberie, électricité) and a consortium of one firm that covers the first lot,
plus a few awards won by some firms in the territory. It then times
``suggest_partners(session, consortium, …)``, the whole service as the partners page calls it,
with a fresh session each run (nothing cached between runs), and prints p50 / p95 / max.

Goal (issue 6): under 300 ms. Prints one JSON object.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import random
import resource
import statistics
import sys
import tempfile
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

from sqlalchemy import insert, select, text, update

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.common import throwaway_database  # noqa: E402
from benchmarks.digest import firm_rows  # noqa: E402
from tenderpool import migrate  # noqa: E402
from tenderpool.consortia.models import Consortium, ConsortiumLot, ConsortiumMember  # noqa: E402
from tenderpool.consortia.suggestions import suggest_partners  # noqa: E402
from tenderpool.db import Database  # noqa: E402
from tenderpool.firms.models import Firm, FirmCpv, FirmReference, FirmYear  # noqa: E402
from tenderpool.notices.models import (  # noqa: E402
    Award,
    Lot,
    Notice,
    NoticeCpv,
    NoticeDepartment,
    NoticeDismissal,
)

LOTS = [("1", "Gros œuvre", "45223220", 600_000), ("2", "Plomberie", "45330000", 250_000),
        ("3", "Électricité", "45311000", 180_000)]  # fmt: skip
TERRITORY = {"77", "91"}


def build(db: Database, firms: int, now: dt.datetime) -> tuple[int, float]:
    """Write the firms, the notice, past awards and the consortium; return its id and the time."""
    rng = random.Random(5)
    start = time.perf_counter()
    with db.engine.begin() as conn:
        notice_id = conn.execute(
            insert(Notice).returning(Notice.id),
            {"title": "Réhabilitation du gymnase municipal", "buyer_name": "Commune de Melun",
             "contract_type": "works", "published_at": now.date(), "deadline_at": now + dt.timedelta(days=30),
             "estimated_value": Decimal(1_030_000), "nuts": [], "status": "open", "field_dates": {},
             "created_at": now, "updated_at": now, "locked_fields": {}, "conflicts": {}},
        ).scalar_one()  # fmt: skip
        conn.execute(insert(NoticeCpv), [{"notice_id": notice_id, "cpv": "45000000", "position": 0}])
        conn.execute(insert(NoticeDepartment), [{"notice_id": notice_id, "department": "77"}])
        conn.execute(
            insert(Lot),
            [{"notice_id": notice_id, "number": n, "position": i, "title": t, "cpv": [c],
              "estimated_value": Decimal(v)} for i, (n, t, c, v) in enumerate(LOTS)],
        )  # fmt: skip
    # firm_rows marks a few notices "not interested" among those given: ours and a dummy id.
    for chunk in firm_rows(firms, now, [notice_id, -1]):
        chunk["dismissals"] = [d for d in chunk.get("dismissals", []) if d["notice_id"] == notice_id]
        with db.engine.begin() as conn:
            conn.execute(insert(Firm), chunk["firms"])
            conn.execute(insert(FirmCpv), chunk["cpv"])
            conn.execute(insert(FirmYear), chunk["years"])
            if chunk.get("dismissals"):
                conn.execute(insert(NoticeDismissal), chunk["dismissals"])
    with db.engine.begin() as conn:
        ids = list(conn.scalars(select(Firm.id).order_by(Firm.id)))
        listed = [i for i in ids if rng.random() < 0.6]
        for begin in range(0, len(listed), 5000):
            conn.execute(
                update(Firm)
                .where(Firm.id.in_(listed[begin : begin + 5000]))
                .values(directory_opt_in=True, directory_fields=["skills", "headcount_band", "references"])
            )
        skills = dict(conn.execute(select(FirmCpv.firm_id, FirmCpv.cpv)).all())
        conn.execute(
            insert(FirmReference),
            [{"firm_id": i, "buyer": "Commune de Meaux", "object": "Travaux de rénovation d'une école",
              "year": 2024, "cpv": [skills[i]], "role": "alone", "is_public": True}
             for i in ids if rng.random() < 0.2 and i in skills],
        )  # fmt: skip
        # Past awards in the territory, won by some of the firms.
        for k, firm_id in enumerate(rng.sample(ids, 200)):
            past_row = {
                "title": f"Travaux {k}",
                "contract_type": "works",
                "published_at": now.date() - dt.timedelta(days=300),
                "nuts": [],
                "status": "awarded",
                "field_dates": {},
                "created_at": now,
                "updated_at": now,
                "locked_fields": {},
                "conflicts": {},
            }
            past = conn.execute(insert(Notice).returning(Notice.id), past_row).scalar_one()
            code = skills.get(firm_id, "45000000")
            conn.execute(insert(NoticeCpv), [{"notice_id": past, "cpv": code, "position": 0}])
            department = rng.choice(["77", "91"])
            conn.execute(insert(NoticeDepartment), [{"notice_id": past, "department": department}])
            award = {"notice_id": past, "winner_name": f"Entreprise {firm_id}", "unsuccessful": False}
            conn.execute(insert(Award), [{**award, "winner_siret": f"{firm_id:014d}"}])
        mandataire = next(i for i in ids if skills.get(i, "").startswith("4522"))
        consortium_row = {
            "notice_id": notice_id,
            "name": "Groupement du gymnase",
            "form": "conjoint",
            "mandataire_solidaire": False,
            "visibility": "open",
            "skills_cpv": [],
            "status": "forming",
            "created_at": now,
            "updated_at": now,
            "version": 1,
        }
        consortium_id = conn.execute(insert(Consortium).returning(Consortium.id), consortium_row).scalar_one()
        conn.execute(
            insert(ConsortiumLot),
            [{"consortium_id": consortium_id, "lot_number": lot[0], "position": i, "version": 1}
             for i, lot in enumerate(LOTS)],
        )  # fmt: skip
        member = {
            "consortium_id": consortium_id,
            "firm_id": mandataire,
            "role": "mandataire",
            "state": "active",
        }
        conn.execute(insert(ConsortiumMember), [{**member, "created_at": now}])
        if db.is_sqlite:
            conn.execute(text("ANALYZE"))
    if not db.is_sqlite:
        with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(text("VACUUM ANALYZE"))
    return consortium_id, time.perf_counter() - start


def run_engine(url: str, firms: int, runs: int) -> dict[str, Any]:
    db = Database(url)
    migrate.upgrade(db.engine)
    now = dt.datetime.now(dt.UTC)
    consortium_id, build_seconds = build(db, firms, now)
    times, cpu = [], []
    result: tuple[list[str], list[Any]] = ([], [])
    for _ in range(runs):
        with db.session() as session:
            wall, proc = time.perf_counter(), time.process_time()
            consortium = session.get_one(Consortium, consortium_id)
            result = suggest_partners(session, consortium, territory=TERRITORY, today=now.date())
            times.append((time.perf_counter() - wall) * 1000)
            cpu.append((time.process_time() - proc) * 1000)
    missing, found = result
    db.engine.dispose()
    times.sort()
    return {
        "build_seconds": round(build_seconds, 1),
        "missing_skills": missing,
        "suggestions": len(found),
        "in_cover": [s.firm.name for s in found if s.in_cover],
        "example": found[0].explanation if found else None,
        "p50_ms": round(statistics.median(times), 1),
        "p95_ms": round(times[int(0.95 * (len(times) - 1))], 1),
        "max_ms": round(times[-1], 1),
        "cpu_p50_ms": round(statistics.median(cpu), 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--firms", type=int, default=10_000)
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--engines", default="sqlite,postgres")
    args = parser.parse_args()
    out: dict[str, Any] = {"firms": args.firms, "lots": len(LOTS), "runs": args.runs}
    with tempfile.TemporaryDirectory() as tmp:
        for engine in args.engines.split(","):
            with throwaway_database(engine, tmp) as url:
                out[engine] = run_engine(url, args.firms, args.runs)
    out["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    out["goal_ms"] = 300
    print(json.dumps(out, indent=2, ensure_ascii=False))


if __name__ == "__main__":
    main()
