"""Is there work for a cron tick? One cheap query before the heavy machinery loads.

``remotetool exec`` and ``remotetool poll`` run from cron every few minutes and most
ticks find nothing to do. These functions answer "is any run due?" with the one
query behind :func:`remotebridge.db.statemachine.candidates`, importing nothing of
the transfer, exec or poll machinery, Jinja2 or rich: the tick with nothing to do
stays close to the interpreter's own start-up. The runners repeat the selection
under their leases, so a run that becomes due in between is simply taken then.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import Engine
from sqlalchemy.orm import Session

from remotebridge.config import Config
from remotebridge.db import statemachine
from remotebridge.db.base import utcnow
from remotebridge.db.engine import read_session
from remotebridge.states import RunState


def pending_due(engine: Engine, *, remote_id: int | None = None,
                label: str | None = None) -> bool:
    """Whether any run of the selection is in ``pending`` (work for exec), or any run
    at all is in ``auth`` (exec resumes it, or exits 75 while its link is down).

    NotFoundError when ``remote_id`` names no run, as exec itself would say.
    """
    with read_session(engine) as s:
        return bool(statemachine.candidates(s, RunState.PENDING, remote_id=remote_id,
                                            label=label)) or _any_auth(s)


def poll_due(engine: Engine, config: Config, *, remote_id: int | None = None,
             label: str | None = None, force: bool = False) -> bool:
    """Whether any run of the selection in ``run`` is due a poll (any with ``force``)."""
    now = utcnow()
    with read_session(engine) as s:
        runs = statemachine.candidates(s, RunState.RUN, remote_id=remote_id, label=label)
        if _any_auth(s):  # poll resumes it, or exits 75 while its link is down
            return True
    return any(force or _due(c.last_poll, config.site(c.site or None).poll_interval, now)
               for c in runs)


def _due(last_poll: datetime | None, interval: int, now: datetime) -> bool:
    return last_poll is None or last_poll <= now - timedelta(seconds=interval)


def _any_auth(session: Session) -> bool:
    """Any run of any label in ``auth``: exec and poll look at its site's link every tick
    (see :mod:`remotebridge.linkback`), whatever the selection."""
    return bool(statemachine.candidates(session, RunState.AUTH))
