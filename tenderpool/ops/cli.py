"""Operations commands: `scheduler`, `jobs`, `backup`, `restore` (registered at the end of tenderpool.cli)."""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import click

from tenderpool.cli import Context, pass_ctx


@click.command("scheduler")
@click.option(
    "--live-sources/--no-live-sources",
    default=True,
    show_default=True,
    help="Scrape the enabled live sources (off: no network, e.g. for the demo).",
)
@click.option("--parent-pid", type=int, hidden=True, help="Stop when this process is gone (tenderpool run).")
@pass_ctx
def scheduler(ctx: Context, live_sources: bool, parent_pid: int | None) -> None:
    """Run the scheduled jobs (scrapes, digests, reminders, retention, heartbeat) until SIGTERM.

    Start one or more: exactly one is active, the others take over if it dies. SIGTERM lets
    the running jobs finish, then exits.
    """
    from tenderpool.config import ConfigError
    from tenderpool.scheduler import run_scheduler

    try:
        status = run_scheduler(ctx.settings, ctx.db, live_sources=live_sources, parent_pid=parent_pid)
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from exc
    sys.exit(status)


@click.group("jobs")
def jobs() -> None:
    """The scheduled jobs: their recent runs, and "run now"."""


@jobs.command("list")
@click.option("--format", "fmt", type=click.Choice(["table", "jsonl"]), default="table", show_default=True)
@click.option("--job", "job", help="Only this job.")
@click.option("--limit", default=50, show_default=True, help="How many runs, newest first.")
@pass_ctx
def jobs_list(ctx: Context, fmt: str, job: str | None, limit: int) -> None:
    """Print the recent job runs, with the scheduler instance that ran each."""
    from tenderpool.formatting import datetime_fr
    from tenderpool.ops.services import recent_runs, runs_as_jsonl
    from tenderpool.scheduler import JOBS

    if job is not None and job not in JOBS:
        raise click.BadParameter(f"no such job (known: {', '.join(sorted(JOBS))})", param_hint="--job")
    with ctx.db.session_scope() as session:
        runs = recent_runs(session, job=job, limit=limit)
        if fmt == "jsonl":
            for line in runs_as_jsonl(runs):
                click.echo(line)
            return
        header = f"{'id':>6}  {'job':<20} {'started (Paris)':<20} {'duration':>9}  {'status':<8} {'try':>3}"
        header += "  instance"
        click.echo(header)
        for run in runs:
            duration = f"{run.duration_seconds:.1f} s" if run.duration_seconds is not None else "—"
            click.echo(
                f"{run.id:>6}  {run.job:<20} {datetime_fr(run.started_at):<20} {duration:>9}  "
                f"{run.status:<8} {run.attempt:>3}  {run.instance}"
            )
            if run.summary:
                click.echo(f"{'':8}{run.summary}")
        if not runs:
            click.echo("Aucun passage enregistré.")


@jobs.command("request")
@click.argument("name")
@pass_ctx
def jobs_request(ctx: Context, name: str) -> None:
    """Ask the active scheduler to run job NAME now (like the operations page's button)."""
    from tenderpool.ops.models import JobRequest
    from tenderpool.scheduler import JOBS

    if name not in JOBS:
        raise click.BadParameter(f"no such job (known: {', '.join(sorted(JOBS))})", param_hint="NAME")
    with ctx.db.session_scope() as session:
        session.add(JobRequest(job=name, requested_at=dt.datetime.now(dt.UTC)))
    click.echo(f"Demandé : {name} (le planificateur actif le lancera dans quelques secondes).")


def _uploads_root(ctx: Context) -> Path:
    from tenderpool.storage import upload_settings

    return upload_settings(ctx.settings).root


@click.command("backup")
@click.argument("output", type=click.Path(path_type=Path, dir_okay=False))
@pass_ctx
def backup(ctx: Context, output: Path) -> None:
    """Write the database and the uploaded files to one archive OUTPUT (.tar.gz)."""
    from tenderpool.ops.backup import BackupError
    from tenderpool.ops.backup import backup as make_backup

    try:
        report = make_backup(ctx.db.engine, _uploads_root(ctx), output, now=dt.datetime.now(dt.UTC))
    except BackupError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(
        f"Sauvegarde écrite : {report.path} ({report.engine}, schéma {report.revision}, "
        f"{report.files} fichier(s) déposé(s), {report.size} octets)"
    )


@click.command("restore")
@click.argument("archive", type=click.Path(path_type=Path, dir_okay=False, exists=True))
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@pass_ctx
def restore(ctx: Context, archive: Path, yes: bool) -> None:
    """Replace the database and the uploaded files by those of ARCHIVE (stop the service first)."""
    from tenderpool import migrate
    from tenderpool.ops.backup import BackupError, read_manifest
    from tenderpool.ops.backup import restore as do_restore

    try:
        manifest = read_manifest(archive)
    except BackupError as exc:
        raise click.ClickException(str(exc)) from exc
    target = ctx.db.engine.url.render_as_string(hide_password=True)
    if not yes:
        click.confirm(
            f"Remplacer la base {target} et les fichiers déposés"
            f" par la sauvegarde du {manifest['created_at']} ?",
            abort=True,
        )
    try:
        do_restore(ctx.db.engine, _uploads_root(ctx), archive)
    except BackupError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"Restauré : {archive} → {target} (schéma {manifest['revision']}).")
    head = migrate.head_revision(ctx.db.engine)
    if manifest["revision"] != head:
        click.echo("Le schéma de la sauvegarde est plus ancien : lancez `tenderpool db upgrade`.")


COMMANDS: tuple[click.Command, ...] = (scheduler, jobs, backup, restore)


@contextlib.contextmanager
def dev_scheduler(*, enabled: bool, live_sources: bool) -> Iterator[None]:
    """`tenderpool run`: a `tenderpool scheduler` child process for as long as the server runs.

    The child stops with the server (SIGTERM here, and it watches its parent in case this
    process is killed outright). A `tenderpool scheduler` already running on the same database
    stays the active one; this one waits as a standby.
    """
    if not enabled:
        yield
        return
    command = [
        sys.executable,
        "-c",
        "import sys; from tenderpool.cli import main; sys.exit(main())",
        "scheduler",
        "--live-sources" if live_sources else "--no-live-sources",
        "--parent-pid",
        str(os.getpid()),
    ]
    child = subprocess.Popen(command)  # noqa: S603 - our own interpreter and arguments
    click.echo(f"Planificateur lancé (processus {child.pid}{', sources en direct' if live_sources else ''}).")

    def stop(_signum: int, _frame: object) -> None:
        raise SystemExit(0)  # unwinds the development server, then the finally below

    previous = signal.signal(signal.SIGTERM, stop)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
        child.terminate()
        try:
            child.wait(timeout=60)
        except subprocess.TimeoutExpired:
            child.kill()
