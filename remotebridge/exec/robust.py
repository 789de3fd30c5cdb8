"""Exec's answers to a scheduler that keeps refusing and to a job folder on another host.

Both are counted from the run's history (no column of their own): the lines since
the run last entered ``pending`` from another state (prepare, poll's resubmission,
``revert``, ``revertauth``), so a fresh attempt starts counting from zero.

* A refused submission leaves the run ``pending`` with the scheduler's message; the
  ``max_attempts``-th refusal in a row sends it to ``error`` (fault 24) with that
  message, instead of leaving it ``pending`` for ever.
* A job folder missing on this host (cron on several hosts whose ``path_base`` is not
  shared) is not an error of the run: the lease is given back with a note and another
  host that has the folder takes it. Only a run that no host could serve for a whole
  lease period goes to ``error`` (fault 25).
"""

from __future__ import annotations

import socket
from datetime import datetime, timedelta

from sqlalchemy import Engine, select

from remotebridge.db.base import utcnow
from remotebridge.db.bridge import RemoteEvent
from remotebridge.db.engine import read_session
from remotebridge.db.statemachine import lease_length
from remotebridge.states import RunState

FAULT_REFUSED = 24
"""The scheduler refused ``max_attempts`` submissions in a row."""

FAULT_FOLDER_NOWHERE = 25
"""No host that ran exec had the run's job folder for a whole lease period."""

REFUSED = "scheduler refused submission"
"""How a refusal note starts (after exec's ``exec (failed): ``); counted below."""

NOT_HERE = "job folder not on host"
"""How a folder-missing note starts (after ``exec (retry): ``)."""

_STAY_PREFIX = {REFUSED: "exec (failed): ", NOT_HERE: "exec (retry): "}


def _since_pending(engine: Engine, rid: int) -> list[RemoteEvent]:
    """The run's history lines since it last entered ``pending`` from another state."""
    with read_session(engine) as s:
        rows = list(s.execute(select(RemoteEvent).where(RemoteEvent.remote_id == rid)
                              .order_by(RemoteEvent.event_id.desc())).scalars())
        s.expunge_all()
    out: list[RemoteEvent] = []
    for row in rows:
        if row.to_state == RunState.PENDING.value and row.from_state != RunState.PENDING.value:
            break
        out.append(row)
    return out


def _ours(row: RemoteEvent, kind: str) -> bool:
    return (row.note or "").startswith(_STAY_PREFIX[kind] + kind)


def refusal(engine: Engine, rid: int, max_attempts: int, message: str) -> tuple[bool, str]:
    """(give up?, note) for a submission the scheduler just refused with ``message``."""
    count = 1 + sum(_ours(r, REFUSED) for r in _since_pending(engine, rid))
    if count >= max_attempts:
        return True, (f"exec: the scheduler refused {count} submissions in a row "
                      f"(max_attempts {max_attempts}); last: {message}; hint: fix the "
                      f"cause, then remotetool revert {rid}")
    return False, f"{REFUSED} ({count} of {max_attempts}): {message}"


def folder_elsewhere(engine: Engine, rid: int, folder: str,
                     lease: timedelta | None = None) -> tuple[bool, str]:
    """(give up?, note) for a run whose job folder ``folder`` is not on this host.

    Gives up when the run's latest history lines, for at least ``lease``, are all
    folder-missing notes: no host that tried in that time could serve it.
    """
    host = socket.gethostname()
    streak: list[datetime] = []
    for row in _since_pending(engine, rid):
        if not _ours(row, NOT_HERE):
            break
        streak.append(row.at)
    first = min(streak) if streak else None
    if first is not None and utcnow() - first >= (lease or lease_length()):
        return True, (f"exec: job folder {folder} was on no host that tried since "
                      f"{first:%Y-%m-%dT%H:%M:%SZ} (last: {host}); path_base must be a "
                      f"folder every exec host sees; hint: remotetool revert --to new {rid}")
    return False, f"{NOT_HERE} {host}: {folder}; left for a host that has it"
