"""scheduler and job runs

Revision ID: c0a5e7b1d202
Revises: c0a5e7b1d201
Create Date: 2026-11-28 09:35:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import tenderpool.db

revision: str = "c0a5e7b1d202"
down_revision: str | None = "c0a5e7b1d201"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "job_states",
        sa.Column("job", sa.String(length=64), nullable=False),
        sa.Column("data", sa.JSON(), server_default=sa.text("'{}'"), nullable=False),
        sa.Column("updated_at", tenderpool.db.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("job", name=op.f("pk_job_states")),
    )
    op.create_table(
        "scheduler_instances",
        sa.Column("instance", sa.String(length=200), nullable=False),
        sa.Column("role", sa.String(length=16), server_default="standby", nullable=False),
        sa.Column("started_at", tenderpool.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("seen_at", tenderpool.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("jobs", sa.JSON(), server_default=sa.text("'{}'"), nullable=False),
        sa.CheckConstraint(
            "role IN ('active', 'standby', 'stopped')", name=op.f("ck_scheduler_instances_role")
        ),
        sa.PrimaryKeyConstraint("instance", name=op.f("pk_scheduler_instances")),
    )
    with op.batch_alter_table("scheduler_instances", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_scheduler_instances_seen_at"), ["seen_at"], unique=False)

    op.create_table(
        "job_requests",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("job", sa.String(length=64), nullable=False),
        sa.Column("requested_at", tenderpool.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("requested_by_id", sa.Integer(), nullable=True),
        sa.Column("picked_at", tenderpool.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("picked_by", sa.String(length=200), nullable=True),
        sa.ForeignKeyConstraint(
            ["requested_by_id"],
            ["users.id"],
            name=op.f("fk_job_requests_requested_by_id_users"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_job_requests")),
    )
    with op.batch_alter_table("job_requests", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_job_requests_picked_at"), ["picked_at"], unique=False)

    op.create_table(
        "job_runs",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("job", sa.String(length=64), nullable=False),
        sa.Column("trigger", sa.String(length=16), server_default="schedule", nullable=False),
        sa.Column("scheduled_for", tenderpool.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("attempt", sa.Integer(), server_default=sa.text("1"), nullable=False),
        sa.Column("started_at", tenderpool.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("finished_at", tenderpool.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("status", sa.String(length=16), server_default="running", nullable=False),
        sa.Column("summary", sa.Text(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("instance", sa.String(length=200), nullable=False),
        sa.Column("requested_by_id", sa.Integer(), nullable=True),
        sa.CheckConstraint("status IN ('running', 'ok', 'failed')", name=op.f("ck_job_runs_status")),
        sa.CheckConstraint("trigger IN ('schedule', 'manual', 'retry')", name=op.f("ck_job_runs_trigger")),
        sa.ForeignKeyConstraint(
            ["requested_by_id"],
            ["users.id"],
            name=op.f("fk_job_runs_requested_by_id_users"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_job_runs")),
        sa.UniqueConstraint(
            "job", "scheduled_for", "attempt", name=op.f("uq_job_runs_job_scheduled_for_attempt")
        ),
    )
    with op.batch_alter_table("job_runs", schema=None) as batch_op:
        batch_op.create_index("ix_job_runs_job_started_at", ["job", "started_at"], unique=False)
        batch_op.create_index(batch_op.f("ix_job_runs_started_at"), ["started_at"], unique=False)

    op.create_table(
        "document_reminders",
        sa.Column("document_id", sa.Integer(), nullable=False),
        sa.Column("threshold_days", sa.Integer(), nullable=False),
        sa.Column("sent_at", tenderpool.db.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["document_id"],
            ["firm_documents.id"],
            name=op.f("fk_document_reminders_document_id_firm_documents"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("document_id", "threshold_days", name=op.f("pk_document_reminders")),
    )


def downgrade() -> None:
    op.drop_table("document_reminders")
    with op.batch_alter_table("job_runs", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_job_runs_started_at"))
        batch_op.drop_index("ix_job_runs_job_started_at")

    op.drop_table("job_runs")
    with op.batch_alter_table("job_requests", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_job_requests_picked_at"))

    op.drop_table("job_requests")
    with op.batch_alter_table("scheduler_instances", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_scheduler_instances_seen_at"))

    op.drop_table("scheduler_instances")
    op.drop_table("job_states")
