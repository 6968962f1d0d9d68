"""What every benchmark shares: a throwaway database per engine."""

from __future__ import annotations

import os
import platform
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import create_engine, text

PG_ADMIN = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"


@contextmanager
def throwaway_database(engine: str, tmp: str, *, admin_url: str = PG_ADMIN) -> Iterator[str]:
    """The URL of an empty database: a file in ``tmp`` on SQLite; on PostgreSQL a database
    created on the ``admin_url`` server and dropped afterwards, whatever happens."""
    if engine == "sqlite":
        yield f"sqlite:///{tmp}/bench-{uuid.uuid4().hex[:8]}.db"
        return
    if engine != "postgres":
        raise SystemExit(f"unknown engine {engine!r} (sqlite, postgres)")
    name = f"tenderpool_bench_{uuid.uuid4().hex[:8]}"
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield admin_url.rsplit("/", 1)[0] + "/" + name
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE "{name}" WITH (FORCE)'))
        admin.dispose()


def machine() -> dict[str, object]:
    """What the figures were measured on: they differ by a factor of 2 or 3 between the machines
    this project has run on, so a figure is compared only with one from the same machine."""
    cpu = platform.processor() or platform.machine()
    memory = None
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                memory = round(int(line.split()[1]) / 1024 / 1024, 1)
                break
    except OSError:  # not Linux: what platform says
        pass
    return {"cpu": cpu, "cores": os.cpu_count(), "memory_gb": memory, "python": platform.python_version()}
