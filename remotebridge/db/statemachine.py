"""The remoteRun state machine: guarded transitions, leases and claiming.

Every state change is ONE guarded UPDATE::

    UPDATE remoteRun SET state = :wanted, ... WHERE remote_id = :id AND state = :expected

and its row count is checked, so two processes on two hosts can never both move
the same run: the loser sees 0 rows and gets ``ConcurrentUpdate``. Long work (a
prepare, a push) is not done inside a transaction; instead a command *claims* a
run by setting a short lease (``owner``, ``lease_until``) with the same kind of
guarded UPDATE, works, and then transitions the run, which clears the lease.
Claiming selects candidates with ``FOR UPDATE SKIP LOCKED`` on PostgreSQL; on SQLite
the write transaction itself (``BEGIN IMMEDIATE``) serialises claimers.

The run's bookkeeping lives here: a transition carries its note (cut to
:data:`NOTE_MAX`) and the figures a command records in its one guarded UPDATE; the
lease API is :func:`claim`, :func:`renew`, :func:`release` and :func:`held_by_me`;
:func:`candidates` is the one query for "the runs of this state, label or id".
"""

from __future__ import annotations

import os
import socket
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, TypeVar

from sqlalchemy import ColumnElement, Engine, Select, or_, select, update
from sqlalchemy.orm import Session

from remotebridge.db import pause
from remotebridge.db.base import utcnow
from remotebridge.db.bridge import RemoteEvent, RemoteRun
from remotebridge.db.engine import write_session
from remotebridge.errors import ConcurrentUpdate, IllegalTransition, NotFoundError
from remotebridge.states import CANCELLABLE_OFFLINE, RunState, is_legal

DEFAULT_LEASE = timedelta(minutes=30)
"""How long a claim on a run lasts unless ``[database] lease_seconds`` says otherwise."""

_lease = DEFAULT_LEASE


def set_lease(length: timedelta) -> None:
    """Use ``length`` for every later claim, renewal and staleness test of this process
    (the CLI sets it from ``[database] lease_seconds``)."""
    global _lease
    if length <= timedelta(0):
        raise ValueError(f"a lease must be positive, not {length}")
    _lease = length


def lease_length() -> timedelta:
    """The lease this process takes: :data:`DEFAULT_LEASE` unless :func:`set_lease`."""
    return _lease

_Q = TypeVar("_Q", bound="Select[*tuple[Any, ...]]")

NOTE_MAX = 2000
"""Longest note kept on a run and in its history (remote messages can be long)."""


def clip(note: str) -> str:
    """The note as stored: at most :data:`NOTE_MAX` characters."""
    return note[:NOTE_MAX]


def actor() -> str:
    """Who is acting: host and process id (recorded in history and leases)."""
    return f"{socket.gethostname()}:{os.getpid()}"


def get_run(session: Session, remote_id: int) -> RemoteRun:
    """The run with this id, or NotFoundError."""
    run = session.get(RemoteRun, remote_id)
    if run is None:
        raise NotFoundError(
            f"no remote run with remote_id {remote_id}", hint="see 'remotetool list'"
        )
    return run


def record(
    session: Session, remote_id: int, before: str | None, after: str, note: str = ""
) -> None:
    """Append one line to the run's history (the note cut to :data:`NOTE_MAX`)."""
    session.add(
        RemoteEvent(remote_id=remote_id, from_state=before, to_state=after, actor=actor(),
                    note=clip(note))
    )


def transition(
    session: Session,
    remote_id: int,
    expected: RunState,
    wanted: RunState,
    *,
    note: str = "",
    where: Sequence[ColumnElement[bool]] = (),
    **values: Any,
) -> None:
    """Move one run from ``expected`` to ``wanted`` with one guarded UPDATE.

    A non-empty ``note`` goes into the run's ``note`` column in the same statement
    and into its history, both cut to :data:`NOTE_MAX`.
    ``values`` are further columns to set in the same statement (job_id, fault...);
    ``where`` adds conditions to the guard, e.g. ``held_by_me()`` so that a process
    whose lease expired cannot move a run another process now owns, or
    ``RemoteRun.job_id == polled`` so that a late poll cannot finish a resubmission.
    The lease is cleared. Raises IllegalTransition when the table forbids the move,
    NotFoundError for an unknown run and ConcurrentUpdate when another process
    moved (or took) the run first.
    """
    if not is_legal(expected, wanted):
        raise IllegalTransition(remote_id, expected.value, wanted.value)
    if wanted in (RunState.AUTH, RunState.ERROR) and "prev_state" not in values:
        values["prev_state"] = expected.value
    if note:
        values["note"] = clip(note)
    stmt = (
        update(RemoteRun)
        .where(RemoteRun.remote_id == remote_id, RemoteRun.state == expected.value, *where)
        .values(state=wanted.value, owner=None, lease_until=None, updated=utcnow(), **values)
        .execution_options(synchronize_session=False)
    )
    if session.execute(stmt).rowcount != 1:  # type: ignore[attr-defined]
        _explain_miss(session, remote_id, expected)
    record(session, remote_id, expected.value, wanted.value, note)


def held_by_me() -> ColumnElement[bool]:
    """Guard condition: this process holds the run's lease."""
    return RemoteRun.owner == actor()


def lease_free(now: datetime | None = None) -> ColumnElement[bool]:
    """Guard condition: nobody holds a live lease on the run."""
    return or_(RemoteRun.lease_until.is_(None), RemoteRun.lease_until < (now or utcnow()))


def renew(engine: Engine, remote_id: int, state: RunState,
          lease: timedelta | None = None) -> None:
    """Extend this process's lease before a long step, in a short transaction of its own.

    Raises ConcurrentUpdate when the lease is no longer ours (expired and taken, or
    the run moved out of ``state``): the caller stops and changes nothing.
    """
    stmt = (
        update(RemoteRun)
        .where(RemoteRun.remote_id == remote_id, RemoteRun.state == state.value, held_by_me())
        .values(lease_until=utcnow() + (lease or lease_length()))
        .execution_options(synchronize_session=False)
    )
    with write_session(engine) as session:
        if session.execute(stmt).rowcount != 1:  # type: ignore[attr-defined]
            raise ConcurrentUpdate(remote_id, state.value)


def _explain_miss(session: Session, remote_id: int, expected: RunState) -> None:
    """Turn a zero-row guarded update into the right error."""
    current = session.execute(
        select(RemoteRun.state).where(RemoteRun.remote_id == remote_id)
    ).scalar_one_or_none()
    if current is None:
        raise NotFoundError(f"no remote run with remote_id {remote_id}",
                            hint="see 'remotetool list'")
    # The run exists but is no longer where we expected it: someone else moved it.
    raise ConcurrentUpdate(remote_id, expected.value)


def move(session: Session, remote_id: int, wanted: RunState, *, note: str = "",
         **values: Any) -> RunState:
    """Move a run from its current state to ``wanted`` (guarded); returns the old state."""
    run = get_run(session, remote_id)
    current = RunState(run.state)
    transition(session, remote_id, current, wanted, note=note, **values)
    return current


def claim(
    session: Session,
    state: RunState,
    *,
    limit: int = 1,
    remote_ids: Sequence[int] | None = None,
    label: str | None = None,
    stage: str | None = None,
    lease: timedelta | None = None,
) -> list[int]:
    """Take a lease on up to ``limit`` runs in ``state`` that nobody else holds.

    Returns the ids claimed by this process. Safe to call from many processes at
    once: each run is claimed by exactly one of them.
    """
    now = utcnow()
    query = _select(select(RemoteRun.remote_id), state, remote_ids, label, stage)
    query = query.where(lease_free(now)).limit(limit)
    if state in (RunState.PENDING, RunState.RUN):  # exec and poll: control-tool pause
        query = query.where(pause.unpaused())
    if session.bind is not None and session.bind.dialect.name == "postgresql":
        query = query.with_for_update(skip_locked=True)
    candidates = list(session.execute(query).scalars())
    me, until = actor(), now + (lease or lease_length())
    return [rid for rid in candidates if _take_lease(session, rid, state, me, until, now)]


@dataclass(frozen=True)
class Candidate:
    """A run a command may work on: its id, site and last poll."""

    remote_id: int
    site: str
    last_poll: datetime | None


def _select(query: _Q, state: RunState | None, remote_ids: Sequence[int] | None,
            label: str | None, stage: str | None = None) -> _Q:
    """``query`` narrowed to the runs of this state, ids, label and stage, oldest first."""
    if state is not None:
        query = query.where(RemoteRun.state == state.value)
    for col, value in ((RemoteRun.label, label), (RemoteRun.stage, stage)):
        if value is not None:
            query = query.where(col == value)
    if remote_ids is not None:
        query = query.where(RemoteRun.remote_id.in_(list(remote_ids)))
    return query.order_by(RemoteRun.remote_id)


def candidates(session: Session, state: RunState | None, *, remote_id: int | None = None,
               label: str | None = None) -> list[Candidate]:
    """The runs in ``state`` (any state when None) of one id or one label, oldest first.

    The one query behind "which runs are due" of prepare, exec and poll (each then
    claims them). An explicit ``remote_id`` that names no run raises NotFoundError,
    so a typo is refused by the library, not only by the CLI.
    """
    ids = None if remote_id is None else [remote_id]
    query = _select(select(RemoteRun.remote_id, RemoteRun.site, RemoteRun.last_poll),
                    state, ids, label)
    found = [Candidate(rid, site, last) for rid, site, last in session.execute(query).all()]
    if remote_id is not None and not found:
        get_run(session, remote_id)
    return found


def _take_lease(session: Session, remote_id: int, state: RunState, owner: str,
                until: datetime, now: datetime) -> bool:
    stmt = (
        update(RemoteRun)
        .where(RemoteRun.remote_id == remote_id, RemoteRun.state == state.value,
               lease_free(now))
        .values(owner=owner, lease_until=until)
        .execution_options(synchronize_session=False)
    )
    return bool(session.execute(stmt).rowcount == 1)  # type: ignore[attr-defined]


def release(session: Session, remote_id: int, *, note: str = "",
            state: RunState | None = None, where: Sequence[ColumnElement[bool]] = (),
            **values: Any) -> bool:
    """Give up our lease without changing state (work failed softly; retry later).

    ``values`` (e.g. ``last_poll``) are set in the same guarded UPDATE and ``where``
    adds to its guard. A non-empty ``note`` is set on the run and, with the run's
    ``state`` given, recorded as a history line ``state -> state``; all only while
    the lease is ours. Returns whether it was.
    """
    if note:
        values["note"] = clip(note)
    stmt = (
        update(RemoteRun)
        .where(RemoteRun.remote_id == remote_id, held_by_me(), *where)
        .values(owner=None, lease_until=None, **values)
        .execution_options(synchronize_session=False)
    )
    mine = bool(session.execute(stmt).rowcount == 1)  # type: ignore[attr-defined]
    if mine and note and state is not None:
        record(session, remote_id, state.value, state.value, note)
    return mine


def revertauth(session: Session, label: str | None = None,
               remote_ids: Sequence[int] | None = None) -> list[tuple[int, RunState]]:
    """Return every run in ``auth`` (optionally of one label) to the state it came from."""
    query = select(RemoteRun.remote_id, RemoteRun.prev_state).where(
        RemoteRun.state == RunState.AUTH.value
    )
    if label is not None:
        query = query.where(RemoteRun.label == label)
    if remote_ids is not None:
        query = query.where(RemoteRun.remote_id.in_(list(remote_ids)))
    moved = []
    for rid, prev in session.execute(query.order_by(RemoteRun.remote_id)).all():
        target = RunState(prev) if prev else RunState.PENDING
        transition(session, rid, RunState.AUTH, target, note="revertauth", prev_state=None)
        moved.append((rid, target))
    return moved


def revert(session: Session, remote_id: int, to: RunState | None = None) -> RunState:
    """Send a run in ``error`` back to the state to retry from, resetting the fault.

    By default that is the state it failed in; ``to=RunState.NEW`` makes prepare
    write its job folder again (after a fault in the folder or its inputs).
    """
    run = get_run(session, remote_id)
    if run.state != RunState.ERROR.value:
        raise IllegalTransition(
            remote_id, run.state, "the state it failed in",
            hint="only runs in state 'error' can be reverted; for 'auth' use revertauth",
        )
    target = to or (RunState(run.prev_state) if run.prev_state else RunState.NEW)
    if target in (RunState.AUTH, RunState.ERROR):
        target = RunState.NEW
    transition(session, remote_id, RunState.ERROR, target, note="revert", fault=0,
               prev_state=None)
    return target


def cancel(session: Session, remote_id: int) -> RunState:
    """Withdraw a run whose job cannot be alive (never submitted, or in ``auth``/``error``
    entered before submission); its stage runs become free again. A run in ``run`` needs
    its scheduler job cancelled first: :func:`remotebridge.cancel.cancel_run`."""
    run = get_run(session, remote_id)
    current = RunState(run.state)
    if current not in CANCELLABLE_OFFLINE:
        raise IllegalTransition(
            remote_id, current.value, RunState.CANCELLED.value,
            hint="a run in 'run' is cancelled with its scheduler job ('remotetool cancel'); "
                 "'full' and 'cancelled' are final",
        )
    if run.lease_until is not None and run.lease_until >= utcnow():
        # exec may be pushing or submitting it right now: cancelling would orphan a job
        raise ConcurrentUpdate(remote_id, current.value)
    transition(session, remote_id, current, RunState.CANCELLED, note="cancel",
               where=[lease_free()])
    # Free the stage runs for a later definebyquery (the unique constraint would
    # otherwise keep them). The history keeps what the run held.
    ids = [c.stage_id for c in run.components]
    record(session, remote_id, RunState.CANCELLED.value, RunState.CANCELLED.value,
           note=f"released {len(ids)} components: {id_ranges(ids)}")
    run.components.clear()
    return current


def id_ranges(ids: Sequence[int]) -> str:
    """Compact '1-5,8,10-12' rendering of ids for history notes."""
    spans: list[list[int]] = []
    for i in sorted(ids):
        if spans and spans[-1][1] == i - 1:
            spans[-1][1] = i
        else:
            spans.append([i, i])
    return ",".join(str(a) if a == b else f"{a}-{b}" for a, b in spans)
