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
"""

from __future__ import annotations

import os
import socket
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, or_, select, update
from sqlalchemy.orm import Session

from remotebridge.db.base import utcnow
from remotebridge.db.bridge import RemoteEvent, RemoteRun
from remotebridge.errors import ConcurrentUpdate, IllegalTransition, NotFoundError
from remotebridge.states import CANCELLABLE, RunState, is_legal

DEFAULT_LEASE = timedelta(minutes=30)


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
    """Append one line to the run's history."""
    session.add(
        RemoteEvent(remote_id=remote_id, from_state=before, to_state=after, actor=actor(),
                    note=note)
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


def renew_lease(session: Session, remote_id: int, lease: timedelta = DEFAULT_LEASE) -> bool:
    """Extend this process's lease before a long step; False if it is no longer ours."""
    stmt = (
        update(RemoteRun)
        .where(RemoteRun.remote_id == remote_id, held_by_me())
        .values(lease_until=utcnow() + lease)
        .execution_options(synchronize_session=False)
    )
    return bool(session.execute(stmt).rowcount == 1)  # type: ignore[attr-defined]


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
    lease: timedelta = DEFAULT_LEASE,
) -> list[int]:
    """Take a lease on up to ``limit`` runs in ``state`` that nobody else holds.

    Returns the ids claimed by this process. Safe to call from many processes at
    once: each run is claimed by exactly one of them.
    """
    now = utcnow()
    query = select(RemoteRun.remote_id).where(RemoteRun.state == state.value, lease_free(now))
    if remote_ids is not None:
        query = query.where(RemoteRun.remote_id.in_(list(remote_ids)))
    if label is not None:
        query = query.where(RemoteRun.label == label)
    if stage is not None:
        query = query.where(RemoteRun.stage == stage)
    query = query.order_by(RemoteRun.remote_id).limit(limit)
    if session.bind is not None and session.bind.dialect.name == "postgresql":
        query = query.with_for_update(skip_locked=True)
    candidates = list(session.execute(query).scalars())
    me, until = actor(), now + lease
    return [rid for rid in candidates if _take_lease(session, rid, state, me, until, now)]


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


def release(session: Session, remote_id: int) -> None:
    """Give up a lease without changing state (work failed softly; retry later)."""
    session.execute(
        update(RemoteRun)
        .where(RemoteRun.remote_id == remote_id, RemoteRun.owner == actor())
        .values(owner=None, lease_until=None)
        .execution_options(synchronize_session=False)
    )


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
    """Withdraw a run that has not been submitted; its stage runs become free again."""
    run = get_run(session, remote_id)
    current = RunState(run.state)
    if current not in CANCELLABLE:
        raise IllegalTransition(
            remote_id, current.value, RunState.CANCELLED.value,
            hint="only runs in 'new' or 'pending' can be cancelled",
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
           note=f"released {len(ids)} components: {_id_ranges(ids)}")
    run.components.clear()
    return current


def _id_ranges(ids: Sequence[int]) -> str:
    """Compact '1-5,8,10-12' rendering of ids for history notes."""
    spans: list[list[int]] = []
    for i in sorted(ids):
        if spans and spans[-1][1] == i - 1:
            spans[-1][1] = i
        else:
            spans.append([i, i])
    return ",".join(str(a) if a == b else f"{a}-{b}" for a, b in spans)
