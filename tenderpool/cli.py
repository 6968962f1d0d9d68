"""The `tenderpool` command. Thin: parse options, call a service inside session_scope, print."""

from __future__ import annotations

import datetime as dt
import sys
from pathlib import Path
from typing import Any

import click
from sqlalchemy import select

from tenderpool.config import ConfigError, Settings, load_settings
from tenderpool.db import Database
from tenderpool.errors import DomainError


class Context:
    """Settings and database, created on first use so that `--help` needs neither."""

    def __init__(self) -> None:
        self._settings: Settings | None = None
        self._db: Database | None = None

    @property
    def settings(self) -> Settings:
        if self._settings is None:
            try:
                self._settings = load_settings()
            except ConfigError as exc:
                raise click.ClickException(str(exc)) from exc
        return self._settings

    @property
    def db(self) -> Database:
        if self._db is None:
            self._db = Database(self.settings.database_url)
        return self._db

    def close(self) -> None:
        if self._db is not None:
            self._db.engine.dispose()
            self._db = None


pass_ctx = click.make_pass_decorator(Context, ensure=True)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.pass_context
def main(ctx: click.Context) -> None:
    """TenderPool: public tenders answered together (CCI Seine-et-Marne, CCI Essonne).

    Settings come from config/default.toml, the file named by TENDERPOOL_CONFIG
    and TENDERPOOL_* environment variables.
    """
    ctx.call_on_close(ctx.ensure_object(Context).close)


# --- database -----------------------------------------------------------------------------------


@main.group()
def db() -> None:
    """Create, upgrade or inspect the database schema (Alembic migrations)."""


@db.command("upgrade")
@click.option("--revision", default="head", show_default=True, help="Target revision.")
@pass_ctx
def db_upgrade(ctx: Context, revision: str) -> None:
    """Create the database or upgrade it to the latest schema."""
    from tenderpool import migrate

    migrate.upgrade(ctx.db.engine, revision)
    click.echo(f"Base de données à jour ({migrate.current_revision(ctx.db.engine)}) : {_safe_url(ctx)}")


@db.command("downgrade")
@click.option(
    "--revision", default="-1", show_default=True, help="Target revision (-1 = one step back, base = empty)."
)
@pass_ctx
def db_downgrade(ctx: Context, revision: str) -> None:
    """Undo migrations down to REVISION."""
    from tenderpool import migrate

    migrate.downgrade(ctx.db.engine, revision)
    click.echo(f"Schéma ramené à {migrate.current_revision(ctx.db.engine) or 'base (vide)'}.")


@db.command("current")
@pass_ctx
def db_current(ctx: Context) -> None:
    """Print the schema revision of the database and the latest one available."""
    from tenderpool import migrate

    current = migrate.current_revision(ctx.db.engine)
    head = migrate.head_revision(ctx.db.engine)
    click.echo(f"actuelle : {current or 'aucune (base vide)'}\ndernière : {head}")
    if current != head:
        click.echo("La base n'est pas à jour : lancez `tenderpool db upgrade`.")


@db.command("check")
@pass_ctx
def db_check(ctx: Context) -> None:
    """Fail if the models and the migrations disagree (like `alembic check`)."""
    from tenderpool import migrate

    diffs = migrate.schema_differences(ctx.db.engine)
    if diffs:
        for diff in diffs:
            click.echo(f"  {diff}")
        raise click.ClickException("les modèles et les migrations ne concordent pas")
    click.echo("Modèles et migrations concordent.")


@db.command("revision")
@click.option("-m", "--message", required=True, help="What the migration does.")
@pass_ctx
def db_revision(ctx: Context, message: str) -> None:
    """(Developers) Autogenerate a dated migration from the models; review it by hand."""
    from tenderpool import migrate

    migrate.revision(ctx.db.engine, message)


def _safe_url(ctx: Context) -> str:
    return ctx.db.engine.url.render_as_string(hide_password=True)


# --- users ----------------------------------------------------------------------------------------


@main.group()
def users() -> None:
    """Create accounts and set passwords."""


@users.command("create")
@click.option("--email", required=True)
@click.option("--password", required=True, help="At least security.password_min_length characters.")
@click.option("--role", type=click.Choice(["admin", "staff", "firm"]), required=True)
@click.option("--chamber", help="Chamber key (e.g. cci77), for --role staff.")
@click.option("--firm-siret", help="SIRET of an existing firm, for --role firm.")
@click.option("--name", default="", help="Full name (defaults to the email).")
@click.option("--owner/--no-owner", default=False, help="Make the firm user an owner of the firm.")
@pass_ctx
def users_create(
    ctx: Context,
    email: str,
    password: str,
    role: str,
    chamber: str | None,
    firm_siret: str | None,
    name: str,
    owner: bool,
) -> None:
    """Create an admin, a chamber's staff member, or a member of an existing firm."""
    from tenderpool.accounts.services import create_user
    from tenderpool.firms.models import Firm, FirmMembership
    from tenderpool.firms.services import clean_siret

    try:
        with ctx.db.session_scope() as session:
            firm = None
            if role == "firm":
                if not firm_siret:
                    raise click.UsageError("--firm-siret is required with --role firm")
                firm = session.scalar(select(Firm).where(Firm.siret == clean_siret(firm_siret)))
                if firm is None:
                    raise click.ClickException(f"no firm with SIRET {firm_siret}")
            user = create_user(
                session,
                ctx.settings,
                email=email,
                password=password,
                full_name=name or email,
                role=role,
                chamber_slug=chamber,
            )
            if firm is not None:
                session.add(FirmMembership(user_id=user.id, firm_id=firm.id, is_owner=owner))
            click.echo(f"Compte créé : {user.email} ({user.role_label})")
    except DomainError as exc:
        raise click.ClickException(exc.message) from exc


@users.command("set-password")
@click.option("--email", required=True)
@click.option("--password", required=True)
@pass_ctx
def users_set_password(ctx: Context, email: str, password: str) -> None:
    """Set a new password for an account (its sessions are logged out)."""
    from tenderpool.accounts.services import set_password

    try:
        with ctx.db.session_scope() as session:
            set_password(session, ctx.settings, email=email, password=password)
    except DomainError as exc:
        raise click.ClickException(exc.message) from exc
    click.echo(f"Mot de passe changé pour {email}.")


# --- notices --------------------------------------------------------------------------------------


def _print_stats(stats: Any, *, label: str = "") -> None:
    from tenderpool.notices.ingest import IngestStats

    if not isinstance(stats, IngestStats):
        raise TypeError(stats)
    counts = stats.as_dict()
    names = {
        "read": "lus",
        "created": "créés",
        "updated": "mis à jour",
        "linked": "rattachés",
        "unchanged": "inchangés",
        "waiting": "en attente de leur avis initial",
        "rejected": "rejetés",
    }
    click.echo((label + " " if label else "") + ", ".join(f"{names[k]} : {v}" for k, v in counts.items()))
    for ref, reason in stats.rejections:
        click.echo(f"  rejeté {ref} : {reason}")


@main.command("import")
@click.option(
    "--source",
    type=click.Choice(["auto", "boamp", "ted", "eforms", "boamp-xml"]),
    default="auto",
    show_default=True,
    help="Format of the files (auto: recognised by content).",
)
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=Path))
@pass_ctx
def import_(ctx: Context, source: str, paths: tuple[Path, ...]) -> None:
    """Ingest saved API responses and notice files (BOAMP, TED, eForms XML, legacy BOAMP XML).

    Prints read, created, updated, linked, unchanged and rejected (with reasons).
    Exit status 0 when the run completed, whatever was rejected; 2 when nothing
    could be read (bad paths or unknown formats).
    """
    from scrapers.files import ImportFileError
    from tenderpool.notices.ingest import IngestStats
    from tenderpool.notices.services import import_file

    total = IngestStats()
    readable = 0
    for path in paths:
        try:
            with ctx.db.session_scope() as session:
                stats = import_file(session, path, source=source, now=dt.datetime.now(dt.UTC))
        except (ImportFileError, OSError, ValueError) as exc:
            click.echo(f"{path} : illisible ({exc})", err=True)
            continue
        readable += 1
        total.add(stats)
        if len(paths) > 1:
            _print_stats(stats, label=f"{path} :")
    _print_stats(total, label="Total :" if len(paths) > 1 else "")
    if not readable:
        sys.exit(2)


@main.command()
@click.argument("source", type=click.Choice(["boamp", "ted"]))
@click.option(
    "--since",
    type=click.DateTime(formats=["%Y-%m-%d"]),
    help="First publication day (default: cursor - overlap).",
)
@click.option(
    "--until", type=click.DateTime(formats=["%Y-%m-%d"]), help="Last publication day (default: today)."
)
@click.option("--dry-run", is_flag=True, help="Fetch and parse, store nothing.")
@pass_ctx
def scrape(
    ctx: Context, source: str, since: dt.datetime | None, until: dt.datetime | None, dry_run: bool
) -> None:
    """Fetch a source's notices for a window of publication days and store them."""
    from tenderpool.notices.scrape import Progress, build_source, default_window, run_scrape

    def now() -> dt.datetime:
        return dt.datetime.now(dt.UTC)

    with ctx.db.session_scope() as session:
        default_since, default_until = default_window(session, ctx.settings, source, now=now())
    start = since.date() if since else default_since
    end = until.date() if until else default_until
    if start > end:
        raise click.UsageError("--since is after --until")
    click.echo(
        f"{source} : avis publiés du {start:%d/%m/%Y} au {end:%d/%m/%Y}"
        + (" (essai à blanc)" if dry_run else "")
    )
    adapter = build_source(ctx.settings, source)
    if sys.stdout.isatty():
        with click.progressbar(length=1, label="Récupération", show_pos=True) as bar:

            def on_page(fetched: int, expected: int | None) -> None:
                bar.length = max(expected or fetched, fetched, 1)
                bar.update(fetched - bar.pos)

            run = run_scrape(
                ctx.db,
                source,
                adapter,
                since=start,
                until=end,
                now=now,
                dry_run=dry_run,
                progress=Progress(on_page=on_page),
            )
    else:

        def log_page(fetched: int, expected: int | None) -> None:
            click.echo(f"  {fetched} avis reçus" + (f" sur {expected}" if expected is not None else ""))

        run = run_scrape(
            ctx.db,
            source,
            adapter,
            since=start,
            until=end,
            now=now,
            dry_run=dry_run,
            progress=Progress(on_page=log_page),
        )
    click.echo(
        f"Statut : {run.status} — reçus {run.fetched}"
        + (f"/{run.expected}" if run.expected is not None else "")
        + f", créés {run.created}, mis à jour {run.updated}, rattachés {run.linked},"
        + f" inchangés {run.unchanged},"
        f" rejetés {run.rejected}"
    )
    for error in run.errors[:20]:
        click.echo(f"  {error}")
    if run.status == "failed":
        sys.exit(1)


@main.group()
def notices() -> None:
    """Export and maintain notices."""


@notices.command("export")
@click.option("--format", "fmt", type=click.Choice(["jsonl", "csv"]), default="jsonl", show_default=True)
@click.option(
    "--since", type=click.DateTime(formats=["%Y-%m-%d"]), help="Only notices published on or after."
)
@click.option("--output", type=click.Path(path_type=Path), help="File to write (default: standard output).")
@pass_ctx
def notices_export(ctx: Context, fmt: str, since: dt.datetime | None, output: Path | None) -> None:
    """Write one line per notice (keys in the README) as JSON Lines or CSV."""
    from tenderpool.notices.export import write_export

    now = dt.datetime.now(dt.UTC)
    with ctx.db.session_scope() as session:
        if output is None:
            count = write_export(session, sys.stdout, fmt=fmt, since=since.date() if since else None, now=now)
        else:
            with output.open("w", encoding="utf-8", newline="") as fh:
                count = write_export(session, fh, fmt=fmt, since=since.date() if since else None, now=now)
    click.echo(f"{count} avis exportés.", err=True)


@notices.command("reparse")
@click.option(
    "--source", type=click.Choice(["boamp", "ted", "eforms", "boamp-xml"]), help="Only this source."
)
@click.option("--quarantined", is_flag=True, help="Only publications that failed to parse.")
@pass_ctx
def notices_reparse(ctx: Context, source: str | None, quarantined: bool) -> None:
    """Parse every stored raw payload again and apply what changed (after a parser fix)."""
    from tenderpool.notices.services import reparse

    with ctx.db.session_scope() as session:
        stats = reparse(session, now=dt.datetime.now(dt.UTC), source=source, quarantined_only=quarantined)
    _print_stats(stats)


@notices.command("reindex")
@pass_ctx
def notices_reindex(ctx: Context) -> None:
    """Rebuild the full-text search index of every notice (after a change to what is indexed)."""
    from tenderpool.notices.search import rebuild_search_index

    with ctx.db.session_scope() as session:
        count = rebuild_search_index(session)
    click.echo(f"{count} avis indexés.")


# --- digests --------------------------------------------------------------------------------------


@main.group()
def digests() -> None:
    """Daily and weekly email digests (run `digests send` every few minutes, from cron or a timer)."""


@digests.command("send")
@click.option(
    "--now",
    "now_text",
    help="Act as if it were this ISO date-time (default: now; without an offset, Paris time).",
)
@click.option("--dry-run", is_flag=True, help="Print each recipient and its notices; send nothing.")
@click.option("--user", "email", help="Only the digest of this account (email).")
@pass_ctx
def digests_send(ctx: Context, now_text: str | None, dry_run: bool, email: str | None) -> None:
    """Send every digest that is due, and retry the failed ones whose time has come.

    Each (user, period) is sent once: running it twice, after a crash or while the SMTP server
    is down sends each digest exactly once in the end (see docs/digests.md).
    """
    from zoneinfo import ZoneInfo

    from tenderpool.app import build_app
    from tenderpool.digests.services import send_due_digests

    now = dt.datetime.now(dt.UTC)
    if now_text:
        try:
            now = dt.datetime.fromisoformat(now_text)
        except ValueError as exc:
            raise click.BadParameter(f"not an ISO date-time: {now_text}", param_hint="--now") from exc
        if now.tzinfo is None:
            now = now.replace(tzinfo=ZoneInfo(ctx.settings.timezone))
    app = build_app(database=ctx.db)
    with app.app_context():
        report = send_due_digests(
            ctx.db,
            app.extensions["tenderpool.mailer"],
            settings=app.extensions["tenderpool.settings"],
            now=now,
            dry_run=dry_run,
            only_email=email,
            echo=click.echo,
        )
    if dry_run:
        click.echo(f"Essai à blanc : {len(report.dry_run)} résumé(s) calculé(s), rien envoyé.")
        return
    click.echo(
        f"Envoyés : {report.sent}, vides : {report.empty}, en échec : {report.failed}"
        f" (abandonnés : {report.given_up}), renvois : {report.retried}, déjà faits : {report.skipped}"
    )


# --- demo, run, serve -----------------------------------------------------------------------------


@main.group()
def demo() -> None:
    """Demo data."""


@demo.command("load")
@click.option("--force", is_flag=True, help="Allow loading demo data in production.")
@pass_ctx
def demo_load(ctx: Context, force: bool) -> None:
    """Load the demo chambers' staff, firms and users (idempotent)."""
    _load_demo(ctx, force=force, quiet=False)


def _load_demo(ctx: Context, *, force: bool, quiet: bool) -> list[Any]:
    from tenderpool.demo import load_demo

    if ctx.settings.is_production and not force:
        raise click.ClickException(
            "refusing to load demo accounts in production (use --force if you mean it)"
        )
    with ctx.db.session_scope() as session:
        logins = load_demo(session, ctx.settings, now=dt.datetime.now(dt.UTC), samples=True)
    if not quiet:
        click.echo(f"Données de démonstration chargées ({len(logins)} comptes).")
    return logins


@main.command()
@click.option("--host", default=None, help="Address to listen on (server.host).")
@click.option("--port", default=None, type=int, help="Port (server.port).")
@click.option("--no-demo", is_flag=True, help="Do not load the demo data.")
@click.option("--no-scheduler", is_flag=True, help="Do not start a scheduler beside the server.")
@pass_ctx
def run(ctx: Context, host: str | None, port: int | None, no_demo: bool, no_scheduler: bool) -> None:
    """Development: upgrade the database, load the demo data once, and serve the app with a scheduler."""
    from tenderpool import migrate
    from tenderpool.app import build_app
    from tenderpool.ops.cli import dev_scheduler

    settings = ctx.settings
    migrate.upgrade(ctx.db.engine)
    logins = [] if no_demo or not settings.demo_load_on_run else _load_demo(ctx, force=False, quiet=True)
    app = build_app(database=ctx.db)
    host = host or settings.server_host
    port = port or settings.server_port
    click.echo(f"\nTenderPool — http://{host}:{port}/  (base : {_safe_url(ctx)})")
    if logins:
        click.echo(f"Comptes de démonstration (mot de passe : {settings.demo_password}) :")
        for login in logins:
            click.echo(f"  {login.email:<45} {login.label}")
    click.echo("")
    sys.stdout.flush()
    # Its own process, never inside the app: live sources only without the demo data (demo.live_sources).
    demo_mode = not no_demo and settings.demo_load_on_run
    live = settings.demo_live_sources if demo_mode else True
    with dev_scheduler(enabled=not no_scheduler, live_sources=live):
        app.run(host=host, port=port, debug=False, use_reloader=False, threaded=True)


@main.command()
@click.option("--host", default=None, help="Address to listen on (server.host).")
@click.option("--port", default=None, type=int, help="Port (server.port).")
@click.option("--workers", default=None, type=int, help="Worker processes (server.workers).")
@pass_ctx
def serve(ctx: Context, host: str | None, port: int | None, workers: int | None) -> None:
    """Production: serve the app with gunicorn (run `tenderpool db upgrade` first)."""
    from tenderpool.wsgi_server import serve as gunicorn_serve

    settings = ctx.settings
    gunicorn_serve(
        host=host or settings.server_host,
        port=port or settings.server_port,
        workers=workers or settings.server_workers,
    )


# --- operations: scheduler, jobs, backup, restore (tenderpool/ops/cli.py) ---------------------------
# Under `python -m tenderpool.cli` this module is __main__: the command modules below import
# `tenderpool.cli` and must find this very module (its Context), not a second copy.
sys.modules.setdefault("tenderpool.cli", sys.modules[__name__])
from tenderpool.ops.cli import COMMANDS as _OPS_COMMANDS  # noqa: E402 - needs `main` and Context above

for _command in _OPS_COMMANDS:
    main.add_command(_command)

from tenderpool.dossiers.cli import dossier as _dossier_command  # noqa: E402 - needs Context above

main.add_command(_dossier_command)

from tenderpool.consortia.cli import consortia as _consortia_command  # noqa: E402 - needs Context above

main.add_command(_consortia_command)

if __name__ == "__main__":  # pragma: no cover
    main()
