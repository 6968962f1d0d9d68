"""Building a consortium's response dossier, end to end, on one core.

    python -m benchmarks.dossier [--output-dir DIR]

Two cases, each built once to warm up (fonts, templates) and then timed:

* ``large``: 10 members, 3 lots, about 20 pages of mémoire technique, 10 attachments (one Kbis
  per member, 2 pages each). Goal (issue 7): under 8 s.
* ``small``: 3 members, 2 lots, a short mémoire, no attachment. Goal: under 3 s.

What is timed is :func:`tenderpool.dossiers.services.process_pending_dossiers` for one queued
version: reading the data, checking the attachments, rendering the dossier, writing the DC1 and
each DC2 as separate PDFs, merging the attachments and writing the ZIP bundle, storing every file.
The baseline measured in the same run is one WeasyPrint rendering of the dossier's HTML alone (no
separate forms, no attachments, no storage): what the rest of the pipeline adds on top of the
layout engine.

``pages_written`` counts the pages of every PDF produced: the dossier's and those of the separate
DC1 and DC2 files (these are the dossier's own pages, laid out once and drawn twice, see
docs/dossiers.md); ``ms_per_page`` divides the wall-clock time by it.

Times are wall-clock and CPU time of the process; the goal is checked against the CPU time, which
other processes on the machine disturb less. Peak memory is ``ru_maxrss`` of the process
(resource.getrusage), which includes the set-up. Prints one JSON object.
"""

from __future__ import annotations

import argparse
import datetime as dt
import io
import json
import resource
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pypdf import PdfReader  # noqa: E402
from sqlalchemy.orm import Session  # noqa: E402

from tenderpool import migrate, pdf  # noqa: E402
from tenderpool.config import load_settings  # noqa: E402
from tenderpool.db import Database  # noqa: E402
from tenderpool.dossiers import services  # noqa: E402
from tenderpool.dossiers.models import DossierVersion  # noqa: E402
from tenderpool.storage import LocalStorage  # noqa: E402
from tests import dossier_factories as df  # noqa: E402
from tests import factories  # noqa: E402


def attachment_pdf(label: str) -> bytes:
    body = "".join(
        f'<p style="break-before: page; font-size: 14pt">{label} — page {n + 1}</p><p>{df.LOREM * 6}</p>'
        for n in range(2)
    )
    return pdf.Renderer().render(f"<html><body>{body}</body></html>").data


def build_case(session: Session, settings: Any, storage: LocalStorage, *, large: bool) -> int:
    built = df.make_dossier_consortium(
        session,
        settings,
        members=10 if large else 3,
        lots=3 if large else 2,
        storage=None,
        sections=8 if large else 3,
        memoire_paragraphs=9 if large else 2,
        name="Benchmark " + ("10 membres" if large else "3 membres"),
    )
    if large:
        for firm in built.firms:
            factories.make_document(
                session,
                firm,
                kind="kbis",
                issued_on=df.TODAY - dt.timedelta(days=10),
                expires_on=df.TODAY + dt.timedelta(days=80),
                storage=storage,
                data=attachment_pdf(f"Extrait Kbis de {firm.name}"),
                name=f"kbis-{firm.id}.pdf",
            )
    session.commit()
    return built.consortium.id


def time_build(db: Database, settings: Any, storage: LocalStorage, consortium_id: int) -> dict[str, Any]:
    from tenderpool.consortia.models import Consortium

    with db.session_scope() as session:
        consortium = session.get(Consortium, consortium_id)
        assert consortium is not None
        version_id = services.queue_dossier(session, consortium, by=None, now=df.NOW).id
    wall, cpu = time.perf_counter(), time.process_time()
    services.process_pending_dossiers(db, settings, now=df.NOW, storage=storage)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    with db.session_scope() as session:
        version = session.get(DossierVersion, version_id)
        assert version is not None and version.status == "ready", version and version.error
        main = next(f for f in version.files if f.kind == "dossier")
        data = storage.open(main.storage_key)
        pages = len(PdfReader(io.BytesIO(data)).pages)
        total_pages = sum(f.page_count or 0 for f in version.files if f.kind in ("dc1", "dc2")) + pages
        return {
            "seconds": round(wall, 3),
            "cpu_seconds": round(cpu, 3),
            "dossier_pages": pages,
            "pages_written": total_pages,
            "ms_per_page": round(1000 * wall / total_pages, 1),
            "files": len(version.files),
            "skipped_attachments": len(version.skipped),
            "_bytes": data,
        }


def time_baseline(db: Database, consortium_id: int) -> tuple[float, float]:
    from tenderpool.consortia.models import Consortium

    with db.session_scope() as session:
        consortium = session.get(Consortium, consortium_id)
        assert consortium is not None
        data = services.dossier_data(
            session,
            consortium,
            today=df.TODAY,
            version=0,
            generated_at=df.NOW,
            generated_by=None,
            draft=False,
            readiness_count=0,
        )
    html = pdf.render_html("pdf/dossier.html", {"d": data})
    wall, cpu = time.perf_counter(), time.process_time()
    pdf.Renderer().render(html)
    return round(time.perf_counter() - wall, 3), round(time.process_time() - cpu, 3)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--output-dir", type=Path, help="Keep the generated dossiers here.")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{tmp}/bench.db"
        db = Database(url)
        migrate.upgrade(db.engine)
        settings = load_settings(
            environ={},
            overrides={
                "env": "test",
                "secret_key": "bench",
                "app": {"instance_path": tmp},
                "mail": {"host": ""},
            },
        )
        storage = LocalStorage(Path(tmp) / "uploads")
        with db.session_scope() as session:
            large_id = build_case(session, settings, storage, large=True)
            small_id = build_case(session, settings, storage, large=False)
        results: dict[str, Any] = {}
        for name, consortium_id, goal in (("large", large_id, 8.0), ("small", small_id, 3.0)):
            time_build(db, settings, storage, consortium_id)  # warm-up: fonts, templates
            result = time_build(db, settings, storage, consortium_id)
            data = result.pop("_bytes")
            if args.output_dir:
                args.output_dir.mkdir(parents=True, exist_ok=True)
                (args.output_dir / f"dossier-{name}.pdf").write_bytes(data)
            result["goal_seconds"] = goal
            result["meets_goal"] = result["cpu_seconds"] < goal
            (
                result["baseline_dossier_html_only_seconds"],
                result["baseline_dossier_html_only_cpu_seconds"],
            ) = time_baseline(db, consortium_id)
            results[name] = result
        results["peak_memory_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
        db.engine.dispose()
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
