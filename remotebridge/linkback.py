"""Runs in ``auth`` resume by themselves once their site's link works again.

``exec`` and ``poll`` call :func:`resume_auth` first. For every site with a run in
``auth`` it asks :func:`remotebridge.ssh.live_frontends` (once per site):

* some front end answers -> each such run goes back to the state it came from
  (``prev_state``; ``pending`` when unknown) with one guarded UPDATE through
  :func:`remotebridge.db.statemachine.transition` and the history line
  ``resumed: link back``. A run that another process moved first (an operator's
  ``revertauth``, a cancel) is left alone. The command then works on the resumed runs
  in the same call: exec submits them, poll polls them.
* none answers -> the runs stay in ``auth`` and are reported as :class:`Held`, so that
  exec and poll report ``auth`` for them and exit 75 on every call while the link is
  down (cron keeps mailing the key-card holder, not only the first time).

``remotetool revertauth`` stays for the operator who wants to resume by hand.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from sqlalchemy import Engine, select

from remotebridge.config import Config, SiteConfig
from remotebridge.db import statemachine
from remotebridge.db.bridge import RemoteRun
from remotebridge.db.engine import read_session, write_session
from remotebridge.errors import ConcurrentUpdate
from remotebridge.ssh.base import Link
from remotebridge.states import RunState

RESUMED_NOTE = "resumed: link back"
"""The history line (and note) of a run resumed by exec or poll."""

LiveCheck = Callable[[SiteConfig], tuple[list[Link], str]]
"""A site's live front ends and why none answer (see ``live_frontends``)."""


@dataclass(frozen=True)
class Held:
    """A run left in ``auth`` because its site's link is still down."""

    remote_id: int
    site: str
    job_id: str | None
    why: str

    @property
    def note(self) -> str:
        """The line exec and poll report for it."""
        return statemachine.clip(f"still in auth, link down: {self.why}")


@dataclass
class LinkBack:
    """What :func:`resume_auth` did: runs resumed (id, state), runs still held."""

    resumed: list[tuple[int, RunState]] = field(default_factory=list)
    held: list[Held] = field(default_factory=list)


@dataclass(frozen=True)
class _AuthRun:
    remote_id: int
    site: str
    job_id: str | None
    prev: RunState


def _auth_runs(engine: Engine) -> dict[str, list[_AuthRun]]:
    """The runs in ``auth``, by site name, oldest id first."""
    with read_session(engine) as s:
        rows = s.execute(select(RemoteRun.remote_id, RemoteRun.site, RemoteRun.job_id,
                                RemoteRun.prev_state)
                         .where(RemoteRun.state == RunState.AUTH.value)
                         .order_by(RemoteRun.remote_id)).all()
    by_site: dict[str, list[_AuthRun]] = {}
    for rid, site, job_id, prev in rows:
        back = RunState(prev) if prev else RunState.PENDING
        by_site.setdefault(site or "", []).append(_AuthRun(rid, site or "", job_id, back))
    return by_site


def _resume(engine: Engine, run: _AuthRun) -> bool:
    """auth -> the state it came from, guarded (state still ``auth``, no live lease)."""
    try:
        with write_session(engine) as s:
            statemachine.transition(s, run.remote_id, RunState.AUTH, run.prev,
                                    note=RESUMED_NOTE, where=[statemachine.lease_free()],
                                    prev_state=None)
    except ConcurrentUpdate:
        return False  # another process moved it first: not ours
    return True


def resume_auth(engine: Engine, config: Config, live: LiveCheck) -> LinkBack:
    """Resume the ``auth`` runs of every site whose link works again; report the others.

    ``live`` checks one site (exec passes its per-call cache, poll ``live_frontends``).
    """
    done = LinkBack()
    for name, runs in _auth_runs(engine).items():
        site = config.sites.get(name or config.default_site)
        if site is None:
            continue  # a site no longer configured: only revertauth can move its runs
        links, why = live(site)
        if not links:
            done.held += [Held(r.remote_id, r.site, r.job_id, why) for r in runs]
            continue
        done.resumed += [(r.remote_id, r.prev) for r in runs if _resume(engine, r)]
    return done


__all__ = ["RESUMED_NOTE", "Held", "LinkBack", "LiveCheck", "resume_auth"]
