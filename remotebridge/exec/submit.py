"""Submitting a job exactly once: a token committed before the submission, adoption by token.

The order is what makes a lost answer harmless:

1. a fresh token ``rb<remote_id>a<attempt>-<8 hex>`` is stored in ``submit_token`` in
   its own committed transaction, guarded by our lease;
2. the scheduler gets the job with the token in its name (and comment);
3. if the answer is lost (the link broke after sending), the scheduler adapter looks
   the job up by token and adopts it; if even that fails, the run stays ``pending``
   with the token stored, and the next exec looks for the token *before* submitting
   again (:func:`pending_token`), so the job is never submitted twice.

The attempt number in the token tells a token of this attempt from the token of
an earlier, finished submission (poll resubmits by moving ``run -> pending``; exec
then counts one attempt more and must not adopt the old job).
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import Engine, update

from remotebridge.db import statemachine
from remotebridge.db.base import utcnow
from remotebridge.db.bridge import RemoteRun
from remotebridge.db.engine import write_session
from remotebridge.errors import ConcurrentUpdate
from remotebridge.schedulers import Scheduler
from remotebridge.states import RunState

_TOKEN_RE = re.compile(r"^rb(\d+)a(\d+)-[0-9a-f]{8}$")


@dataclass(frozen=True)
class Submitted:
    """A job the scheduler holds for a run."""

    job_id: str
    token: str
    adopted: bool = False
    """True when the job was found by its token rather than by the submit answer."""


def new_token(remote_id: int, attempt: int) -> str:
    """A unique token for submission number ``attempt`` (1-based) of a run."""
    return f"rb{remote_id}a{attempt}-{secrets.token_hex(4)}"


def token_attempt(token: str | None, remote_id: int) -> int | None:
    """The attempt a token was made for (None when it is not one of ours for this run)."""
    m = _TOKEN_RE.match(token or "")
    if m is None or int(m.group(1)) != remote_id:
        return None
    return int(m.group(2))


def pending_token(run_token: str | None, remote_id: int, attempt: int) -> str | None:
    """The stored token if it belongs to the submission about to be made (``attempt``+1).

    Such a token was stored by an exec that did not record the outcome: the job may
    exist under it.
    """
    if token_attempt(run_token, remote_id) == attempt + 1:
        return run_token
    return None


def store_token(engine: Engine, remote_id: int, token: str) -> None:
    """Commit ``token`` on a pending run we hold the lease of (ConcurrentUpdate if not)."""
    with write_session(engine) as s:
        done = s.execute(
            update(RemoteRun)
            .where(RemoteRun.remote_id == remote_id,
                   RemoteRun.state == RunState.PENDING.value,
                   RemoteRun.owner == statemachine.actor())
            .values(submit_token=token, updated=utcnow())
            .execution_options(synchronize_session=False)
        ).rowcount  # type: ignore[attr-defined]
    if done != 1:
        raise ConcurrentUpdate(remote_id, RunState.PENDING.value)


def adopt(scheduler: Scheduler, token: str, name: str = "") -> Submitted | None:
    """The job already carrying ``token``, if the scheduler knows one."""
    found = scheduler.find(token, name)
    return Submitted(found[-1], token, adopted=True) if found else None


def submit_once(engine: Engine, scheduler: Scheduler, *, remote_id: int, attempt: int,
                stored_token: str | None, script: str,
                look: Callable[[str], str | None] | None = None) -> Submitted:
    """Submit ``script`` for submission ``attempt + 1`` of the run, at most once.

    A token of this very attempt left by an earlier exec is looked up first; then a
    fresh token is committed and the job submitted (the adapter adopts the job by
    token if the answer is lost). Link faults propagate with the token stored.
    ``look`` (token -> job id or None) reads the job folder for a job of the stored
    token that the scheduler has forgotten (:mod:`remotebridge.exec.trace`); it may
    raise to stop the submission.
    """
    name = f"rb{remote_id}"
    old = pending_token(stored_token, remote_id, attempt)
    if old is not None and (found := adopt(scheduler, old, name)) is not None:
        return found
    if old is not None and look is not None and (job_id := look(old)) is not None:
        return Submitted(job_id, old, adopted=True)
    token = new_token(remote_id, attempt + 1)
    store_token(engine, remote_id, token)
    answer = scheduler.submit_job(script, name=name, token=token)
    return Submitted(answer.job_id, token, adopted=answer.adopted)
