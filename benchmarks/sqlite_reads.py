"""SQLite, the embedded engine: list pages read by several threads while a writer works.

    python -m benchmarks.sqlite_reads [--notices 20000] [--readers 4] [--seconds 10] [--reuse URL]

``tenderpool run`` serves SQLite from one process with a thread per request, next to the
scheduler's jobs. Builds N notices (benchmarks.search), then, for ``--seconds`` each:

* ``quiet``: ``--readers`` threads, each with its own signed-in test client, GET the notice list
  with the search benchmark's queries, one after the other;
* ``writer``: the same, while a thread writes like an ingestion does, in transactions that hold the
  write lock for 200 ms (a page of records) with 50 ms between them.

Each is measured twice: with the sessions of GET requests taking no lock (``reads``, the service's
behaviour) and with every session taking the write lock at BEGIN (``immediate``, as before).
Prints one JSON object: pages per second, p50/p95/max latency of the pages, writes done.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import tempfile
import threading
import time
from typing import Any
from urllib.parse import urlencode

from sqlalchemy import text

from benchmarks.common import machine
from benchmarks.search import bench_app, build, built_at, percentiles, query_mix, signed_in_client
from tenderpool import migrate
from tenderpool.db import Database

HOLD = 0.2  # seconds a write transaction holds the lock
PAUSE = 0.05  # seconds between two write transactions


def run(
    db: Database, url: str, now: dt.datetime, *, readers: int, seconds: float, writer: bool
) -> dict[str, Any]:
    app = bench_app(db, url, tempfile.mkdtemp())
    paths = ["/avis?" + urlencode(params) for _, params in query_mix(50, now)]
    clients = [signed_in_client(app, db) for _ in range(readers)]
    for path in paths[:10]:  # warm-up: templates compiled, caches filled
        clients[0].get(path)
    stop = time.monotonic() + seconds
    times: list[float] = []
    statuses: dict[int, int] = {}
    writes = 0
    lock = threading.Lock()

    def read(client: Any, offset: int) -> None:
        k = offset
        while time.monotonic() < stop:
            start = time.perf_counter()
            status = client.get(paths[k % len(paths)]).status_code
            ms = (time.perf_counter() - start) * 1000
            with lock:
                times.append(ms)
                statuses[status] = statuses.get(status, 0) + 1
            k += 1

    def write() -> None:
        nonlocal writes
        k = 0
        while time.monotonic() < stop:
            with db.session() as session:
                session.execute(
                    text("UPDATE notices SET updated_at = updated_at WHERE id = :id"), {"id": k % 1000 + 1}
                )
                time.sleep(HOLD)
                session.commit()
            writes += 1
            k += 1
            time.sleep(PAUSE)

    threads = [threading.Thread(target=read, args=(c, i * 7)) for i, c in enumerate(clients)]
    if writer:
        threads.append(threading.Thread(target=write))
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return {
        "pages_per_s": round(len(times) / seconds, 1),
        "page_ms": percentiles(times),
        "statuses": statuses,
        "writes": writes,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--notices", type=int, default=20000)
    parser.add_argument("--readers", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--reuse", help="a SQLite database kept by benchmarks.search --keep")
    args = parser.parse_args()
    if args.reuse:
        url = args.reuse
        db = Database(url)
        migrate.upgrade(db.engine)
        now, count = built_at(db)
    else:
        url = f"sqlite:///{tempfile.mkdtemp()}/reads.db"
        db = Database(url)
        migrate.upgrade(db.engine)
        now, count = dt.datetime.now(dt.UTC), args.notices
        build(db, count, now)
    if not db.is_sqlite:
        raise SystemExit("benchmarks.sqlite_reads measures SQLite only")
    reader = db._reader  # the engine of the sessions that only read (see Database.session)
    result: dict[str, Any] = {
        "notices": count,
        "readers": args.readers,
        "seconds": args.seconds,
        "machine": machine(),
    }
    for locking in ("reads", "immediate"):
        # "immediate": every session takes the write lock at BEGIN, the behaviour before.
        db._reader = reader if locking == "reads" else db.engine
        for scenario in ("quiet", "writer"):
            result[f"{locking}/{scenario}"] = run(
                db, url, now, readers=args.readers, seconds=args.seconds, writer=scenario == "writer"
            )
    print(json.dumps(result, indent=2, ensure_ascii=False))


if __name__ == "__main__":
    main()
