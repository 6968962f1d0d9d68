"""dossiers: generated versions of a consortium's response dossier and their files

Revision ID: c0a5e7b1d203
Revises: c0a5e7b1d202
Create Date: 2026-11-28 09:40:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import tenderpool.db

revision: str = "c0a5e7b1d203"
down_revision: str | None = "c0a5e7b1d202"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "dossier_versions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("consortium_id", sa.Integer(), nullable=False),
        sa.Column("number", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(length=16), server_default=sa.text("'queued'"), nullable=False),
        sa.Column("progress", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("progress_label", sa.String(length=200), nullable=True),
        sa.Column("pdf_variant", sa.String(length=16), nullable=True),
        sa.Column("is_draft", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.Column("requested_by_id", sa.Integer(), nullable=True),
        sa.Column(
            "requested_at",
            tenderpool.db.UTCDateTime(timezone=True),
            server_default=sa.text("CURRENT_TIMESTAMP"),
            nullable=False,
        ),
        sa.Column("started_at", tenderpool.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("finished_at", tenderpool.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("page_count", sa.Integer(), nullable=True),
        sa.Column("skipped", sa.JSON(), server_default=sa.text("'[]'"), nullable=False),
        sa.Column("open_items", sa.JSON(), server_default=sa.text("'[]'"), nullable=False),
        sa.CheckConstraint(
            "status IN ('queued', 'building', 'ready', 'failed')", name=op.f("ck_dossier_versions_status")
        ),
        sa.CheckConstraint("progress >= 0 AND progress <= 100", name=op.f("ck_dossier_versions_progress")),
        sa.ForeignKeyConstraint(
            ["consortium_id"],
            ["consortia.id"],
            name=op.f("fk_dossier_versions_consortium_id_consortia"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["requested_by_id"],
            ["users.id"],
            name=op.f("fk_dossier_versions_requested_by_id_users"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_dossier_versions")),
        sa.UniqueConstraint("consortium_id", "number", name=op.f("uq_dossier_versions_consortium_id_number")),
    )
    with op.batch_alter_table("dossier_versions", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_dossier_versions_consortium_id"), ["consortium_id"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_dossier_versions_status"), ["status"], unique=False)

    op.create_table(
        "dossier_files",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("version_id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("firm_id", sa.Integer(), nullable=True),
        sa.Column("filename", sa.String(length=200), nullable=False),
        sa.Column("content_type", sa.String(length=40), nullable=False),
        sa.Column("storage_key", sa.String(length=80), nullable=False),
        sa.Column("size", sa.Integer(), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("page_count", sa.Integer(), nullable=True),
        sa.CheckConstraint("kind IN ('dossier', 'dc1', 'dc2', 'bundle')", name=op.f("ck_dossier_files_kind")),
        sa.ForeignKeyConstraint(
            ["firm_id"], ["firms.id"], name=op.f("fk_dossier_files_firm_id_firms"), ondelete="SET NULL"
        ),
        sa.ForeignKeyConstraint(
            ["version_id"],
            ["dossier_versions.id"],
            name=op.f("fk_dossier_files_version_id_dossier_versions"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_dossier_files")),
        sa.UniqueConstraint("storage_key", name=op.f("uq_dossier_files_storage_key")),
    )
    with op.batch_alter_table("dossier_files", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_dossier_files_version_id"), ["version_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("dossier_files", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_dossier_files_version_id"))
    op.drop_table("dossier_files")
    with op.batch_alter_table("dossier_versions", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_dossier_versions_status"))
        batch_op.drop_index(batch_op.f("ix_dossier_versions_consortium_id"))
    op.drop_table("dossier_versions")
