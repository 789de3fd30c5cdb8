"""The age of a run's inputs on the site, against the site's scratch purge.

Exec records in ``remoteRun.inputs_pushed`` when it first pushed (or found) a run's
inputs on the site; later submissions keep that time, since inputs already present are
not pushed again and so keep aging. A site with ``purge_days`` deletes scratch files
older than that; a run still waiting (``pending``, ``run``, ``auth``) whose inputs are
older than ``purge_days`` minus :data:`MARGIN` is at risk: ``remotetool list`` warns.
A purge that does happen is survived anyway (the job's precheck, then a re-push), this
only says it is coming.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import ColumnElement, Engine, func, select

from remotebridge.config import Config
from remotebridge.db.base import utcnow
from remotebridge.db.bridge import RemoteRun
from remotebridge.db.engine import read_session
from remotebridge.states import RunState

MARGIN = timedelta(days=1)
"""How long before the purge age a run is flagged (a day's queue wait, a weekend)."""

WAITING = (RunState.PENDING, RunState.RUN, RunState.AUTH)
"""States in which a run's pushed inputs are still needed on the site."""


def first_push() -> ColumnElement[datetime]:
    """The value exec sets at each submission: the recorded time, else now."""
    return func.coalesce(RemoteRun.inputs_pushed, utcnow())


@dataclass(frozen=True)
class AgingInputs:
    """A waiting run whose inputs near (or passed) its site's purge age."""

    remote_id: int
    site: str
    state: str
    pushed: datetime
    purge_days: float

    @property
    def age_days(self) -> float:
        """How old the inputs are, in days."""
        return (utcnow() - self.pushed).total_seconds() / 86400

    def warning(self) -> str:
        """One line for the operator."""
        return (f"run {self.remote_id} ({self.state}): inputs pushed {self.age_days:.1f} days "
                f"ago, site '{self.site}' purges after {self.purge_days:g} days; a purged "
                "input is pushed again before the job starts")


def aging_inputs(engine: Engine, config: Config, ids: Sequence[int] | None = None,
                 now: datetime | None = None) -> list[AgingInputs]:
    """The waiting runs (of ``ids``, default all) whose inputs are older than their
    site's ``purge_days`` minus :data:`MARGIN`."""
    now = now or utcnow()
    query = select(RemoteRun.remote_id, RemoteRun.site, RemoteRun.state,
                   RemoteRun.inputs_pushed).where(
        RemoteRun.state.in_([s.value for s in WAITING]), RemoteRun.inputs_pushed.is_not(None))
    if ids is not None:
        query = query.where(RemoteRun.remote_id.in_(list(ids)))
    with read_session(engine) as s:
        rows = s.execute(query.order_by(RemoteRun.remote_id)).all()
    out = []
    for rid, site_name, state, pushed in rows:
        site = config.sites.get(site_name or config.default_site)
        if site is None or site.purge_days <= 0 or pushed is None:
            continue
        if pushed < now - (timedelta(days=site.purge_days) - MARGIN):
            out.append(AgingInputs(rid, site.name, state, pushed, site.purge_days))
    return out
