"""The bridge's own tables: remoteRun, remoteComponent and remoteEvent (history).

A ``remoteRun`` is one job on one site for one stage; it holds many components,
each one stage run of the pipeline (``stage_id`` is e.g. a chip_id). The unique
constraint on (stage, stage_id) of *active* components is what makes
``definebyquery`` safe to run twice at once: the database, not the code, refuses
to put one stage run into two remote runs.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from remotebridge.db.base import Base, utcnow


class RemoteRun(Base):
    """One remote job: a batch of stage runs of one stage, on one site."""

    __tablename__ = "remoteRun"
    remote_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    stage: Mapped[str] = mapped_column(String(16), index=True)
    label: Mapped[str] = mapped_column(String(64), index=True)
    site: Mapped[str] = mapped_column(String(64))
    state: Mapped[str] = mapped_column(String(16), index=True, default="new")
    #: state a run was in before it went to ``auth`` or ``error`` (where to resume)
    prev_state: Mapped[str | None] = mapped_column(String(16))
    path_base: Mapped[str] = mapped_column(String(255))
    job_id: Mapped[str | None] = mapped_column(String(64))
    #: unique token put in the job name, to find a job whose submit answer was lost
    submit_token: Mapped[str | None] = mapped_column(String(64), unique=True)
    attempt: Mapped[int] = mapped_column(Integer, default=0)
    last_poll: Mapped[datetime | None] = mapped_column(DateTime)
    inputs_pushed: Mapped[datetime | None] = mapped_column(DateTime)
    """When exec first pushed (or found) this run's inputs on the site: their age."""
    fault: Mapped[int] = mapped_column(Integer, default=0)
    note: Mapped[str] = mapped_column(Text, default="")
    #: the job's runner/progress.json as poll last read it (compact JSON), else NULL
    progress: Mapped[str | None] = mapped_column(Text)
    #: lease: who is working on the run, until when (cron-safe claiming)
    owner: Mapped[str | None] = mapped_column(String(128))
    lease_until: Mapped[datetime | None] = mapped_column(DateTime)
    created: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    updated: Mapped[datetime] = mapped_column(DateTime, default=utcnow, onupdate=utcnow)

    components: Mapped[list[RemoteComponent]] = relationship(
        back_populates="run", order_by="RemoteComponent.stage_id", cascade="all, delete-orphan"
    )


class RemoteComponent(Base):
    """One stage run inside a remote run."""

    __tablename__ = "remoteComponent"
    __table_args__ = (UniqueConstraint("stage", "stage_id"),)
    remote_id: Mapped[int] = mapped_column(
        ForeignKey("remoteRun.remote_id", ondelete="CASCADE"), primary_key=True
    )
    stage_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    #: duplicated from the run so the unique constraint can span remote runs
    stage: Mapped[str] = mapped_column(String(16))
    state: Mapped[str] = mapped_column(String(16), default="new")
    fault: Mapped[int] = mapped_column(Integer, default=0)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    #: measured seconds per command of the component's tasks, all phases (runner records)
    elapsed: Mapped[float | None] = mapped_column(Float)

    run: Mapped[RemoteRun] = relationship(back_populates="components")


class RemoteEvent(Base):
    """One line of a run's history: every state change and who made it."""

    __tablename__ = "remoteEvent"
    __table_args__ = (Index("ix_remoteEvent_remote_id_at", "remote_id", "at"),)
    event_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    remote_id: Mapped[int] = mapped_column(Integer)
    at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    from_state: Mapped[str | None] = mapped_column(String(16))
    to_state: Mapped[str] = mapped_column(String(16))
    actor: Mapped[str] = mapped_column(String(128))
    note: Mapped[str] = mapped_column(Text, default="")


class SitePause(Base):
    """A site paused for maintenance (``control-tool pause``): exec and poll claim no run.

    Kept in the database, not in a local file, so every local host that runs cron
    sees the same pause. ``default_site`` marks the configured default site, whose
    runs may carry an empty ``site``.
    """

    __tablename__ = "sitePause"
    site: Mapped[str] = mapped_column(String(64), primary_key=True)
    default_site: Mapped[bool] = mapped_column(Boolean, default=False)
    reason: Mapped[str] = mapped_column(Text, default="")
    paused_by: Mapped[str] = mapped_column(String(128))
    paused_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
