"""Backups: the database and the uploaded files in one archive, and back.

The archive is a gzip-compressed tar holding ``manifest.json`` (format, engine, schema
revision, date), the database (``database.sqlite3``, copied with SQLite's online backup API
while the service runs; or ``database.pgdump``, PostgreSQL's custom format from ``pg_dump``)
and ``uploads/`` (the files of ``uploads.path``). It is written to a temporary file beside
the target and renamed, so a failed backup never leaves a half archive under the final name.

A restore goes to the same engine the backup came from. Stop the web and scheduler processes
first: the database is replaced (SQLite: the file; PostgreSQL: ``pg_restore --clean``) and so
is the uploads folder.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import sqlite3
import subprocess
import tarfile
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import Engine
from sqlalchemy.engine import URL, make_url

FORMAT = "tenderpool-backup/1"
MANIFEST = "manifest.json"
SQLITE_MEMBER = "database.sqlite3"
PG_MEMBER = "database.pgdump"
UPLOADS = "uploads"


class BackupError(Exception):
    """The backup or restore could not be made; the message says why."""


@dataclass(frozen=True)
class BackupReport:
    path: Path
    engine: str
    revision: str | None
    files: int
    size: int


def _pg_env(url: URL) -> dict[str, str]:
    """libpq settings for pg_dump / pg_restore: in the environment, so the password is never in argv."""
    env = dict(os.environ)
    for key, value in (
        ("PGHOST", url.host),
        ("PGPORT", str(url.port) if url.port else None),
        ("PGUSER", url.username),
        ("PGPASSWORD", url.password),
        ("PGDATABASE", url.database),
    ):
        if value:
            env[key] = str(value)
    return env


def _run(command: list[str], env: Mapping[str, str]) -> None:
    try:
        result = subprocess.run(command, env=dict(env), capture_output=True, text=True, check=False)  # noqa: S603
    except FileNotFoundError as exc:
        raise BackupError(f"{command[0]} is not installed (PostgreSQL client tools are needed)") from exc
    if result.returncode != 0:
        raise BackupError(f"{command[0]} failed: {result.stderr.strip()[-2000:]}")


def backup(engine: Engine, uploads_root: Path, output: Path, *, now: dt.datetime) -> BackupReport:
    """Write the archive ``output`` (see the module docstring)."""
    from tenderpool import migrate

    url = engine.url
    backend = url.get_backend_name()
    revision = migrate.current_revision(engine)
    output = output.resolve()
    output.parent.mkdir(parents=True, exist_ok=True)
    files = 0
    with tempfile.TemporaryDirectory(prefix="tenderpool-backup-") as work:
        work_dir = Path(work)
        if backend == "sqlite":
            dump = work_dir / SQLITE_MEMBER
            source = sqlite3.connect(str(url.database))
            target = sqlite3.connect(str(dump))
            try:
                source.backup(target)  # a consistent copy, even while others write
            finally:
                target.close()
                source.close()
        elif backend == "postgresql":
            dump = work_dir / PG_MEMBER
            _run(["pg_dump", "--format=custom", "--no-owner", "--file", str(dump)], _pg_env(url))
        else:
            raise BackupError(f"no backup method for the {backend} engine")
        manifest = {
            "format": FORMAT,
            "engine": backend,
            "revision": revision,
            "created_at": now.isoformat(),
            "database": dump.name,
        }
        (work_dir / MANIFEST).write_text(json.dumps(manifest, indent=2), encoding="utf-8")
        fd, tmp_name = tempfile.mkstemp(dir=output.parent, prefix=f".{output.name}.", suffix=".tmp")
        os.close(fd)
        try:
            with tarfile.open(tmp_name, "w:gz") as archive:
                archive.add(work_dir / MANIFEST, arcname=MANIFEST)
                archive.add(dump, arcname=dump.name)
                if uploads_root.is_dir():
                    for path in sorted(uploads_root.rglob("*")):
                        if path.is_file() and not path.name.startswith(".upload-"):  # skip half-written files
                            archive.add(
                                path, arcname=f"{UPLOADS}/{path.relative_to(uploads_root).as_posix()}"
                            )
                            files += 1
            os.replace(tmp_name, output)
        except BaseException:
            Path(tmp_name).unlink(missing_ok=True)
            raise
    return BackupReport(output, backend, revision, files, output.stat().st_size)


def read_manifest(archive_path: Path) -> dict[str, Any]:
    try:
        with tarfile.open(archive_path, "r:gz") as archive:
            member = archive.extractfile(MANIFEST)
            if member is None:
                raise KeyError(MANIFEST)
            manifest: dict[str, Any] = json.loads(member.read().decode("utf-8"))
    except (OSError, KeyError, tarfile.TarError, ValueError) as exc:
        raise BackupError(f"{archive_path} is not a TenderPool backup ({exc})") from exc
    if manifest.get("format") != FORMAT:
        raise BackupError(f"{archive_path}: unknown backup format {manifest.get('format')!r}")
    return manifest


def restore(engine: Engine, uploads_root: Path, archive_path: Path) -> dict[str, Any]:
    """Replace the database and the uploaded files by those of the archive; returns its manifest."""
    manifest = read_manifest(archive_path)
    url = engine.url
    backend = url.get_backend_name()
    if manifest["engine"] != backend:
        raise BackupError(
            f"this backup is of a {manifest['engine']} database; the configured database is {backend}"
            " (restore it on the same engine, then move the data over if needed)"
        )
    with tempfile.TemporaryDirectory(prefix="tenderpool-restore-") as work:
        work_dir = Path(work)
        with tarfile.open(archive_path, "r:gz") as archive:
            # The "data" filter refuses absolute paths, "..", links out of the folder, devices.
            archive.extractall(work_dir, filter="data")
        dump = work_dir / str(manifest["database"])
        engine.dispose()  # no pooled connection may survive into the replaced database
        if backend == "sqlite":
            _restore_sqlite(dump, Path(str(url.database)))
        else:
            _run(
                ["pg_restore", "--clean", "--if-exists", "--no-owner", "--single-transaction", "--dbname",
                 str(make_url(url).database), str(dump)],
                _pg_env(url),
            )  # fmt: skip
        _replace_uploads(work_dir / UPLOADS, uploads_root)
    return manifest


def _restore_sqlite(dump: Path, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    source = sqlite3.connect(str(dump))
    destination = sqlite3.connect(str(target))
    try:
        # The backup API writes every page of the target in one go, WAL included.
        source.backup(destination)
    finally:
        destination.close()
        source.close()


def _replace_uploads(extracted: Path, root: Path) -> None:
    """Swap the uploads folder for the archive's (renames on the same filesystem: no half state)."""
    root.parent.mkdir(parents=True, exist_ok=True)
    incoming = Path(tempfile.mkdtemp(dir=root.parent, prefix=f".{root.name}.restore-"))
    if extracted.is_dir():
        for path in extracted.rglob("*"):
            if path.is_file():
                destination = incoming / path.relative_to(extracted)
                destination.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(path, destination)
    old = root.parent / f".{root.name}.old-{os.getpid()}"
    if root.exists():
        root.rename(old)
    incoming.rename(root)
    if old.exists():
        shutil.rmtree(old)
