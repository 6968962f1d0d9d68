"""Ingestion throughput: real BOAMP and eForms payloads, varied into N distinct records.

    python -m benchmarks.ingest [--records 50000] [--engines sqlite,postgres] [--interleaved]

Prints one JSON object: records/s end to end per engine, the time to only parse
the same payloads (measured in the same run), their ratio, and the peak RSS.
Goal (issue 3): ≥ 700 records/s on SQLite, ingestion < 3 × parse-only time.

On a shared machine the load changes between the parse-only pass and an engine's
pass, minutes apart, and so does their ratio. ``--interleaved`` also parses each
batch of 500 again right after ingesting it, and reports per engine the ratio of
the ingestion time to that parse-only time (``interleaved_ratio``): both are
measured under the same load. Parsing second, with warm caches, makes this ratio
the stricter one. The ingestion figures exclude that extra parsing.
"""

from __future__ import annotations

import argparse
import copy
import datetime as dt
import json
import random
import re
import resource
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "tests" / "fixtures"

sys.path.insert(0, str(ROOT))

from benchmarks.common import throwaway_database  # noqa: E402
from scrapers.base import RawRecord  # noqa: E402
from scrapers.registry import parse_raw  # noqa: E402

_FOLDER = re.compile(r"<cbc:ContractFolderID>[^<]*</cbc:ContractFolderID>")
_NOTICE_ID = re.compile(r'<cbc:ID schemeName="notice-id">[^<]*</cbc:ID>')
_NAME = re.compile(
    r"(<cac:ProcurementProject>\s*(?:<[^>]+>[^<]*</[^>]+>\s*)*?<cbc:Name[^>]*>)[^<]*</cbc:Name>"
)
WORDS = [
    "réhabilitation",
    "nettoyage",
    "entretien",
    "voirie",
    "école",
    "gymnase",
    "chauffage",
    "toiture",
    "menuiseries",
    "espaces verts",
    "restauration",
    "transport",
    "maintenance",
    "éclairage",
    "piscine",
]
TOWNS = [
    "Meaux",
    "Melun",
    "Évry",
    "Massy",
    "Chelles",
    "Corbeil-Essonnes",
    "Fontainebleau",
    "Étampes",
    "Provins",
]


def boamp_templates() -> list[dict[str, Any]]:
    data = json.loads((FIXTURES / "boamp/jpbenga_where-dateparution-2026_5records_FNSimple.json").read_text())
    records = list(data["data"]["results"])
    records += json.loads((FIXTURES / "boamp/nicolasmura_boamp-query_2records_MAPA_2024.json").read_text())[
        "results"
    ]
    return records


def eforms_templates() -> list[str]:
    names = [
        "ted-published_2024-OJS017-00047522.xml",
        "ted-published_2024-OJS074-00219998.xml",
        "sdk-example_cn_24_FRA_comments.xml",
        "ted-published_2024-OJS065-00191534.xml",
    ]
    return [(FIXTURES / "eforms" / name).read_text("utf-8") for name in names]


def varied_records(n: int, seed: int = 7) -> Iterator[RawRecord]:
    """N distinct records: 80 % BOAMP API records, 20 % eForms XML, each with its own identity and text."""
    rng = random.Random(seed)
    boamp, eforms = boamp_templates(), eforms_templates()
    fetched = dt.datetime(2026, 11, 28, 6, 0, tzinfo=dt.UTC)
    for i in range(n):
        title = f"{rng.choice(WORDS).capitalize()} {rng.choice(WORDS)} à {rng.choice(TOWNS)} n°{i}"
        if i % 5:
            record = copy.deepcopy(boamp[i % len(boamp)])
            idweb = f"{25 + i % 2}-{100000 + i}"
            day = dt.date(2026, 1, 1) + dt.timedelta(days=i % 300)
            record.update(idweb=idweb, id=idweb.replace("-", "_"), objet=title, dateparution=day.isoformat())
            donnees = record["donnees"]
            for key in ("intitule", "objetComplet"):
                donnees = donnees.replace(f'"{key}": "', f'"{key}": "{title} — ', 1)
            record["donnees"] = donnees.replace(boamp[i % len(boamp)]["idweb"], idweb)
            payload = json.dumps(record, ensure_ascii=False).encode()
            yield RawRecord("boamp", idweb, payload, "application/json", fetched)
        else:
            new_id = str(uuid.UUID(int=rng.getrandbits(128)))
            folder = str(uuid.UUID(int=rng.getrandbits(128)))
            out = _FOLDER.sub(
                f"<cbc:ContractFolderID>{folder}</cbc:ContractFolderID>", eforms[i % len(eforms)], 1
            )
            out = _NOTICE_ID.sub(f'<cbc:ID schemeName="notice-id">{new_id}</cbc:ID>', out, 1)

            def named(match: re.Match[str], title: str = title) -> str:  # the title as it is, no escapes
                return f"{match.group(1)}{title}</cbc:Name>"

            out = _NAME.sub(named, out, 1)
            yield RawRecord("eforms", f"{new_id}-01", out.encode(), "application/xml", fetched)


def write_jsonl(path: Path, n: int) -> None:
    """The batch as a JSONL-like stream on disk (raw payloads, one per line, base64-free: JSON-escaped)."""
    with path.open("w", encoding="utf-8") as fh:
        for raw in varied_records(n):
            fh.write(
                json.dumps(
                    {"s": raw.source, "r": raw.source_ref, "p": raw.payload.decode(), "c": raw.content_type},
                    ensure_ascii=False,
                )
                + "\n"
            )


def read_jsonl(path: Path) -> Iterator[RawRecord]:
    fetched = dt.datetime(2026, 11, 28, 6, 0, tzinfo=dt.UTC)
    with path.open(encoding="utf-8") as fh:
        for line in fh:
            row = json.loads(line)
            yield RawRecord(row["s"], row["r"], row["p"].encode(), row["c"], fetched)


def parse_only(path: Path) -> tuple[float, int]:
    start = time.perf_counter()
    count = 0
    for raw in read_jsonl(path):
        parse_raw(raw)
        count += 1
    return time.perf_counter() - start, count


def ingest(path: Path, url: str, *, interleaved: bool = False) -> dict[str, Any]:
    from tenderpool import migrate
    from tenderpool.db import Database
    from tenderpool.notices.ingest import Ingester

    db = Database(url)
    migrate.upgrade(db.engine)
    now = dt.datetime.now(dt.UTC)
    start = time.perf_counter()
    totals: dict[str, int] = {}
    batch: list[RawRecord] = []
    parse_again = 0.0

    def flush() -> None:
        nonlocal parse_again
        with db.session_scope() as session:
            stats = Ingester(session, now=now).ingest_batch(batch)
        for key, value in stats.as_dict().items():
            totals[key] = totals.get(key, 0) + value
        if interleaved:
            begin = time.perf_counter()
            for raw in batch:
                parse_raw(raw)
            parse_again += time.perf_counter() - begin
        batch.clear()

    for raw in read_jsonl(path):
        batch.append(raw)
        if len(batch) >= 500:
            flush()
    if batch:
        flush()
    elapsed = time.perf_counter() - start - parse_again
    db.engine.dispose()
    result = {
        "seconds": round(elapsed, 2),
        "records_per_second": round(totals["read"] / elapsed, 1),
        **totals,
    }
    if interleaved:
        result["interleaved_parse_only_seconds"] = round(parse_again, 2)
        result["interleaved_ratio"] = round(elapsed / parse_again, 2)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--records", type=int, default=50_000)
    parser.add_argument("--engines", default="sqlite,postgres")
    parser.add_argument(
        "--interleaved", action="store_true", help="also parse each batch again right after ingesting it"
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "records.jsonl"
        write_jsonl(data, args.records)
        parse_seconds, count = parse_only(data)
        result: dict[str, Any] = {
            "records": count,
            "parse_only_seconds": round(parse_seconds, 2),
            "parse_only_records_per_second": round(count / parse_seconds, 1),
        }
        for engine in args.engines.split(","):
            with throwaway_database(engine, tmp) as url:
                result[engine] = ingest(data, url, interleaved=args.interleaved)
            result[engine]["ratio_to_parse_only"] = round(result[engine]["seconds"] / parse_seconds, 2)
        result["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
        print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
