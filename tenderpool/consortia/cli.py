"""`tenderpool consortia list`: every groupement, for staff and operators."""

from __future__ import annotations

import json
import sys

import click
from sqlalchemy import select
from sqlalchemy.orm import selectinload

from tenderpool.cli import Context, pass_ctx
from tenderpool.consortia.models import Consortium, ConsortiumMember

# Declared with its type: `tenderpool.cli` imports this module at its end (import cycle), and
# mypy cannot infer a decorated group's type through it.
consortia: click.Group = click.Group("consortia", help="Groupements (consortia) of the member firms.")


def _row(consortium: Consortium) -> dict[str, object]:
    mandataire = consortium.mandataire
    return {
        "id": consortium.id,
        "name": consortium.name,
        "notice_id": consortium.notice_id,
        "notice": consortium.notice.title,
        "lots": consortium.lot_numbers,
        "form": consortium.form,
        "mandataire_solidaire": consortium.mandataire_solidaire,
        "mandataire": mandataire.firm.name if mandataire else None,
        "members": [
            {"firm_id": m.firm_id, "name": m.firm.name, "siret": m.firm.siret, "role": m.role}
            for m in consortium.active_members
        ],
        "status": consortium.status,
        "created_at": consortium.created_at.isoformat(),
    }


@consortia.command("list")
@click.option("--format", "fmt", type=click.Choice(["table", "jsonl"]), default="table", show_default=True)
@click.option("--status", help="Only consortia in this status (forming, assembling, ready, submitted…).")
@pass_ctx
def consortia_list(ctx: Context, fmt: str, status: str | None) -> None:
    """Print each consortium: id, notice, lots, form, mandataire, members and status."""
    with ctx.db.session_scope() as session:
        query = (
            select(Consortium)
            .options(
                selectinload(Consortium.members).selectinload(ConsortiumMember.firm),
                selectinload(Consortium.lots),
                selectinload(Consortium.notice),
            )
            .order_by(Consortium.id)
        )
        if status:
            query = query.where(Consortium.status == status)
        rows = [_row(c) for c in session.scalars(query)]
    if fmt == "jsonl":
        for row in rows:
            sys.stdout.write(json.dumps(row, ensure_ascii=False) + "\n")
        return
    header = f"{'id':>5}  {'statut':<10}  {'forme':<9}  {'lots':<10}  {'mandataire':<28}  membres  avis"
    click.echo(header)
    for row in rows:
        lots = ",".join(str(n) or "unique" for n in row["lots"])  # type: ignore[attr-defined]
        members = row["members"]
        click.echo(
            f"{row['id']:>5}  {row['status']:<10}  {row['form']:<9}  {lots[:10]:<10}  "
            f"{str(row['mandataire'] or '—')[:28]:<28}  {len(members):>7}  {str(row['notice'])[:60]}"  # type: ignore[arg-type]
        )
    click.echo(f"{len(rows)} groupement(s).", err=True)
