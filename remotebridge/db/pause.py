"""Maintenance pauses of a site, kept in the database (``control-tool pause``/``resume``).

exec and poll honour a pause at claim time (:func:`unpaused`, used by
:func:`remotebridge.db.statemachine.claim`): a process already working on a run
finishes it, and no process takes a new one while the run's site is paused.
prepare (no link) is not paused.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import ColumnElement, and_, delete, exists, or_, select
from sqlalchemy.orm import Session

from remotebridge.db.base import utcnow
from remotebridge.db.bridge import RemoteRun, SitePause


@dataclass(frozen=True)
class Pause:
    """One site's pause: who, when, why."""

    site: str
    reason: str
    paused_by: str
    paused_at: datetime


def unpaused() -> ColumnElement[bool]:
    """SQL condition: the run's site is not paused (a run with an empty site is the
    default site's)."""
    named = exists().where(SitePause.site == RemoteRun.site)
    default = and_(RemoteRun.site == "", exists().where(SitePause.default_site.is_(True)))
    return ~or_(named, default)


def get(session: Session, site: str) -> Pause | None:
    """The pause of ``site``, or None."""
    row = session.get(SitePause, site)
    return None if row is None else Pause(row.site, row.reason, row.paused_by, row.paused_at)


def all_pauses(session: Session) -> list[Pause]:
    """Every paused site, by name."""
    rows = session.execute(select(SitePause).order_by(SitePause.site)).scalars()
    return [Pause(r.site, r.reason, r.paused_by, r.paused_at) for r in rows]


def pause(session: Session, site: str, *, default_site: bool, reason: str,
          by: str) -> tuple[Pause, bool]:
    """Pause ``site``; returns the pause and False when it was paused already (kept as is)."""
    found = get(session, site)
    if found is not None:
        return found, False
    row = SitePause(site=site, default_site=default_site, reason=reason, paused_by=by,
                    paused_at=utcnow())
    session.add(row)
    session.flush()
    return Pause(site, reason, by, row.paused_at), True


def resume(session: Session, site: str) -> Pause | None:
    """Lift the pause of ``site``; returns the pause lifted, None when it was not paused."""
    found = get(session, site)
    if found is not None:
        session.execute(delete(SitePause).where(SitePause.site == site))
    return found
