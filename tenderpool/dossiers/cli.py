"""`tenderpool dossier build`: generate a consortium's dossier from the command line."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import click

from tenderpool.cli import Context, pass_ctx

# Declared with its type: tenderpool.cli imports this module at its end (an import cycle), and
# mypy cannot infer the type of a decorated function across it.
dossier: click.Group = click.Group(
    "dossier",
    help="Response dossiers of consortia (DC1, DC2, capacities, répartition, mémoire, attachments).",
)


@dossier.command("build")
@click.argument("consortium_id", type=int)
@click.option(
    "--output",
    type=click.Path(dir_okay=False, writable=True, path_type=Path),
    help="Also write the dossier PDF to this file.",
)
@click.option("--pdfa", is_flag=True, help="Archival variant: PDF/A-3b.")
@pass_ctx
def dossier_build(ctx: Context, consortium_id: int, output: Path | None, pdfa: bool) -> None:
    """Build a new version of the dossier of CONSORTIUM_ID now, and store it like the web does.

    Exit 1 when the consortium does not exist or the build failed.
    """
    from tenderpool.consortia.models import Consortium
    from tenderpool.dossiers import services

    now = dt.datetime.now(dt.UTC)
    storage = services.storage_for(ctx.settings)
    with ctx.db.session_scope() as session:
        consortium = session.get(Consortium, consortium_id)
        if consortium is None:
            raise click.ClickException(f"aucun groupement n° {consortium_id}")
        version = services.queue_dossier(
            session, consortium, by=None, pdf_variant=services.PDFA if pdfa else None, now=now
        )
        version_id, number = version.id, version.number
        was_queued = version.status == "queued"
    if not was_queued:
        raise click.ClickException(f"la version {number} est déjà en cours de génération")
    click.echo(f"Version {number} : génération…")
    if not services.claim(ctx.db, version_id, now):
        raise click.ClickException(f"la version {number} est déjà prise par un autre processus")
    built = services.build_version(ctx.db, storage, version_id, now=now)
    if built is None:
        raise click.ClickException(f"la génération de la version {number} a échoué (voir le journal)")
    with ctx.db.session_scope() as session:
        from tenderpool.dossiers.models import DossierVersion

        done = session.get(DossierVersion, version_id)
        if done is None:
            raise click.ClickException(f"la version {number} a disparu")
        for stored in done.files:
            click.echo(f"  {stored.filename}  {stored.size} octets  sha256 {stored.sha256}")
        for skipped in done.skipped:
            click.echo(
                f"  pièce non jointe : {skipped['member']} « {skipped['name']} » — {skipped['reason']}"
            )
        if done.is_draft:
            click.echo(f"  BROUILLON : {len(done.open_items)} point(s) à compléter :")
            for line in done.open_items:
                click.echo(f"    - {line}")
        if output is not None:
            main = next(f for f in done.files if f.kind == "dossier")
            output.write_bytes(storage.open(main.storage_key))
            click.echo(f"Dossier écrit dans {output} ({done.page_count} pages).")
