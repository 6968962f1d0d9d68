"""Tables of the operations domain: what the scheduler ran, what it was asked to run, who is active."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import JSON, CheckConstraint, ForeignKey, Index, String, Text, UniqueConstraint, text
from sqlalchemy.orm import Mapped, mapped_column

from tenderpool.db import Base, UTCDateTime, utcnow

JOB_RUN_STATUSES = ("running", "ok", "failed")
TRIGGERS = ("schedule", "manual", "retry")


class JobRun(Base):
    """One run of one scheduled job, by one scheduler instance.

    ``(job, scheduled_for, attempt)`` is unique: the run is recorded (committed) *before* the job
    starts, so that even two schedulers that both believed they were active (a broken file lock
    on a network disk) could not run the same period twice.
    """

    __tablename__ = "job_runs"
    __table_args__ = (
        CheckConstraint("status IN ('running', 'ok', 'failed')", name="status"),
        CheckConstraint("trigger IN ('schedule', 'manual', 'retry')", name="trigger"),
        UniqueConstraint("job", "scheduled_for", "attempt"),
        Index("ix_job_runs_job_started_at", "job", "started_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    job: Mapped[str] = mapped_column(String(64))
    trigger: Mapped[str] = mapped_column(String(16), default="schedule", server_default="schedule")
    # The period this run is for: the trigger's fire time (a retry keeps its period's time).
    scheduled_for: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    attempt: Mapped[int] = mapped_column(default=1, server_default=text("1"))
    started_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
    finished_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    status: Mapped[str] = mapped_column(String(16), default="running", server_default="running")
    summary: Mapped[str | None] = mapped_column(Text)
    error: Mapped[str | None] = mapped_column(Text)  # the traceback of a failed run
    instance: Mapped[str] = mapped_column(String(200))  # host:pid of the scheduler that ran it
    requested_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))

    @property
    def duration_seconds(self) -> float | None:
        if self.finished_at is None:
            return None
        return (self.finished_at - self.started_at).total_seconds()


class JobRequest(Base):
    """ "Run now", asked on the operations page: the active scheduler picks it up and runs the job."""

    __tablename__ = "job_requests"

    id: Mapped[int] = mapped_column(primary_key=True)
    job: Mapped[str] = mapped_column(String(64))
    requested_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    requested_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    picked_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, index=True)
    picked_by: Mapped[str | None] = mapped_column(String(200))


class SchedulerInstance(Base):
    """A scheduler process: the active one writes its heartbeat and the next run of each job."""

    __tablename__ = "scheduler_instances"
    __table_args__ = (CheckConstraint("role IN ('active', 'standby', 'stopped')", name="role"),)

    instance: Mapped[str] = mapped_column(String(200), primary_key=True)
    role: Mapped[str] = mapped_column(String(16), default="standby", server_default="standby")
    started_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    seen_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
    # job name -> ISO time of its next run (null when paused), as the active scheduler plans it.
    jobs: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict, server_default=text("'{}'"))


class JobState(Base):
    """What a job remembers between runs (a checkpoint: e.g. how far retention has gone)."""

    __tablename__ = "job_states"

    job: Mapped[str] = mapped_column(String(64), primary_key=True)
    data: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict, server_default=text("'{}'"))
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)


class DocumentReminder(Base):
    """An expiring-document reminder already sent: once per document and threshold (30, 7, 0 days)."""

    __tablename__ = "document_reminders"

    document_id: Mapped[int] = mapped_column(
        ForeignKey("firm_documents.id", ondelete="CASCADE"), primary_key=True
    )
    threshold_days: Mapped[int] = mapped_column(primary_key=True)
    sent_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
