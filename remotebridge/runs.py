"""Read-side views of remote runs for ``list`` and ``show`` (records, not ORM rows)."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Engine, func, select

from remotebridge.db.bridge import RemoteComponent, RemoteEvent, RemoteRun
from remotebridge.db.engine import read_session
from remotebridge.db.statemachine import get_run
from remotebridge.jobfolder import local_folder
from remotebridge.tasklogs import home_logs


@dataclass
class RunRecord:
    """One remote run as printed by list/show."""

    remote_id: int
    stage: str
    label: str
    site: str
    state: str
    job_id: str | None
    path_base: str
    fault: int
    attempt: int
    components: int
    last_poll: datetime | None
    updated: datetime
    prev_state: str | None = None
    owner: str | None = None
    progress: str | None = None
    """``done/total`` tasks of a run in ``run`` when poll recorded it, else None."""
    note: str = ""
    """The run's last note (why it is in error, auth or pending again), else empty."""

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {k: (v.isoformat() if isinstance(v, datetime) else v)
                for k, v in asdict(self).items()}


@dataclass
class RunDetail:
    """A run with its components and its history (``show``)."""

    run: RunRecord
    components: list[dict[str, Any]] = field(default_factory=list)
    history: list[dict[str, Any]] = field(default_factory=list)
    logs: list[str] = field(default_factory=list)
    """The logs poll kept in the job folder (``logs/...``, relative to it)."""
    progress: str | None = None
    """The dynamic runner's compact progress as poll last read it (JSON), if any."""

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {**self.run.to_dict(), "component_list": self.components,
                "history": self.history, "logs": self.logs,
                "progress": self._progress_dict()}

    def _progress_dict(self) -> dict[str, Any] | None:
        """The stored progress with ``estimated_end`` (None when unknown or the run is
        not in ``run``)."""
        if not self.progress:
            return None
        from remotebridge.poll.progress import estimated_end  # poll imports much

        running = self.run.state == "run"
        return {**json.loads(self.progress),
                "estimated_end": estimated_end(self.progress) if running else None}


def _record(run: RemoteRun, ncomp: int) -> RunRecord:
    return RunRecord(
        remote_id=run.remote_id, stage=run.stage, label=run.label, site=run.site,
        state=run.state, job_id=run.job_id, path_base=run.path_base, fault=run.fault,
        attempt=run.attempt, components=ncomp, last_poll=run.last_poll,
        updated=run.updated, prev_state=run.prev_state, owner=run.owner,
        progress=progress_of(run) if run.state == "run" else None, note=run.note or "",
    )


def progress_of(run: Any) -> str | None:
    """``done/total`` from the progress poll stored on the run, None when unknown.

    Read defensively: the figures may be absent (an older schema, a run not polled
    yet), a mapping (``progress`` with ``done`` and ``total``; as poll stores the runner's
    file, ``done`` and ``tasks``; or ``done``, ``failed``, ``running``, ``left`` and
    ``not_started``), or two columns ``tasks_done``/``tasks_total``.
    """
    data = getattr(run, "progress", None)
    if isinstance(data, str):
        try:
            data = json.loads(data)
        except ValueError:
            return None
    if isinstance(data, dict):
        done, total = data.get("done"), data.get("total", data.get("tasks"))
        if total is None and isinstance(done, int):
            parts = [data.get(k) for k in ("done", "failed", "running", "left", "not_started")]
            total = sum(p for p in parts if isinstance(p, int))
    else:
        done, total = getattr(run, "tasks_done", None), getattr(run, "tasks_total", None)
    if isinstance(done, int) and isinstance(total, int) and total > 0:
        return f"{done}/{total}"
    return None


def list_runs(engine: Engine, *, label: str | None = None, state: str | None = None,
              stage: str | None = None) -> list[RunRecord]:
    """Runs matching the filters, oldest first, with their component counts."""
    counts = (
        select(RemoteComponent.remote_id, func.count().label("n"))
        .group_by(RemoteComponent.remote_id).subquery()
    )
    query = select(RemoteRun, func.coalesce(counts.c.n, 0)).outerjoin(
        counts, counts.c.remote_id == RemoteRun.remote_id
    )
    for col, value in ((RemoteRun.label, label), (RemoteRun.state, state),
                       (RemoteRun.stage, stage)):
        if value is not None:
            query = query.where(col == value)
    with read_session(engine) as session:
        rows = session.execute(query.order_by(RemoteRun.remote_id)).all()
        return [_record(run, n) for run, n in rows]


def show_run(engine: Engine, remote_id: int) -> RunDetail:
    """One run with its components and history (NotFoundError if absent)."""
    with read_session(engine) as session:
        run = get_run(session, remote_id)
        comps = [
            {"stage_id": c.stage_id, "state": c.state, "fault": c.fault, "attempts": c.attempts}
            for c in run.components
        ]
        events = session.execute(
            select(RemoteEvent).where(RemoteEvent.remote_id == remote_id)
            .order_by(RemoteEvent.at, RemoteEvent.event_id)
        ).scalars()
        history = [
            {"at": e.at.isoformat(), "from": e.from_state, "to": e.to_state,
             "actor": e.actor, "note": e.note}
            for e in events
        ]
        folder = local_folder(run.path_base, remote_id)
        return RunDetail(run=_record(run, len(comps)), components=comps, history=history,
                         logs=home_logs(folder), progress=run.progress)
