"""States of remote runs and their components, and the legal transitions between them.

The transition table is the single source of truth: the database layer refuses any
move that is not listed here, and ``remotetool`` commands are thin wrappers over it.
"""

from __future__ import annotations

import enum


class RunState(enum.StrEnum):
    """Where one remote run (a ``remoteRun`` row) stands."""

    NEW = "new"
    """Defined by ``definebyquery``; nothing written yet. ``prepare`` takes it."""

    PENDING = "pending"
    """The job folder is written and reviewable; ``exec`` will push and submit it."""

    RUN = "run"
    """Submitted to the remote scheduler (``job_id`` is set); ``poll`` watches it."""

    FULL = "full"
    """Done: products are home and the pipeline database was updated. Terminal."""

    ERROR = "error"
    """Failed with a fault code; ``revert`` sends it back to the state to retry from."""

    AUTH = "auth"
    """The link was down when needed; ``revertauth`` restores the remembered state."""

    CANCELLED = "cancelled"
    """Withdrawn by an operator (its scheduler job cancelled first if it had one); its
    components that did not come home are free again. Terminal."""

    @property
    def terminal(self) -> bool:
        """True for states nothing moves out of."""
        return self in TERMINAL_RUN_STATES


TERMINAL_RUN_STATES = frozenset({RunState.FULL, RunState.CANCELLED})

#: Every legal move. ``auth`` may be entered from any state a command works on
#: (it remembers where it came from); ``error`` likewise.
TRANSITIONS: dict[RunState, frozenset[RunState]] = {
    RunState.NEW: frozenset({RunState.PENDING, RunState.ERROR, RunState.CANCELLED}),
    RunState.PENDING: frozenset(
        {RunState.RUN, RunState.AUTH, RunState.ERROR, RunState.CANCELLED, RunState.NEW}
    ),
    RunState.RUN: frozenset(
        {RunState.FULL, RunState.AUTH, RunState.ERROR, RunState.PENDING, RunState.CANCELLED}
    ),
    RunState.AUTH: frozenset({RunState.PENDING, RunState.RUN, RunState.CANCELLED}),
    RunState.ERROR: frozenset({RunState.NEW, RunState.PENDING, RunState.RUN, RunState.CANCELLED}),
    RunState.FULL: frozenset(),
    RunState.CANCELLED: frozenset(),
}

#: States from which a run can be cancelled in the database alone (it has not been
#: submitted). A run in ``run`` (or in ``auth``/``error`` entered from ``run``) is
#: cancelled by :mod:`remotebridge.cancel`, which cancels its scheduler job first.
CANCELLABLE = frozenset({RunState.NEW, RunState.PENDING})

#: States whose runs have no job that may be alive on the site.
CANCELLABLE_OFFLINE = frozenset({RunState.NEW, RunState.PENDING, RunState.AUTH, RunState.ERROR})


def is_legal(current: RunState, wanted: RunState) -> bool:
    """Whether the state machine allows moving a run from ``current`` to ``wanted``."""
    return wanted in TRANSITIONS[current]


class ComponentState(enum.StrEnum):
    """Where one component (one stage run inside a remote run) stands."""

    NEW = "new"
    """Part of a run that has not finished yet."""

    FULL = "full"
    """Its results came home and were replayed into the pipeline database."""

    FAILED = "failed"
    """Its task failed on the remote side; it may be retried in a follow-up submission."""

    ABANDONED = "abandoned"
    """Failed on every allowed attempt; left out from now on."""

    @property
    def terminal(self) -> bool:
        """True when nothing more will happen to this component."""
        return self in (ComponentState.FULL, ComponentState.ABANDONED)


class Stage(enum.StrEnum):
    """The reference pipeline's stages, in processing order."""

    CHIP = "chip"
    """Detrend and measure each chip image of an exposure."""

    CAM = "cam"
    """Per-exposure astrometry and photometry over all chips."""

    WARP = "warp"
    """Resample each exposure onto the skycells of the tessellation."""

    STACK = "stack"
    """Combine the warps of one skycell into a deep image."""


class ExecResult(enum.StrEnum):
    """What ``exec`` did with one claimed ``pending`` run (``--json`` ``result``)."""

    RUN = "run"
    """Submitted (or adopted by its token) and moved to ``run``."""

    AUTH = "auth"
    """No front end could run a command: the run went to ``auth``."""

    RETRY = "retry"
    """A passing fault or a lost lease: the run stays ``pending`` for the next round."""

    FAILED = "failed"
    """The scheduler refused or a transfer failed: stays ``pending``, the note says why."""

    ERROR = "error"
    """The job folder is unusable or an input is gone: the run went to ``error``."""

    CANCELLED = "cancelled"
    """The job was submitted but the run could not record it, so the job was cancelled."""

    ORPHAN = "orphan"
    """Like ``cancelled``, but even the cancel failed: cancel the job by hand."""


class PollAction(enum.StrEnum):
    """What ``poll`` did with one claimed ``run`` run (``--json`` ``action``)."""

    WAITING = "waiting"
    """The job has not ended; ``last_poll`` was set."""

    FULL = "full"
    """The job ended and every component is done: the run went to ``full``."""

    RETRY = "retry"
    """Some components failed and are retried: the run went back to ``pending``."""

    ERROR = "error"
    """Bad remote data or an unusable job folder: the run went to ``error``."""

    AUTH = "auth"
    """No front end could run a command: the run went to ``auth``."""

    DEFERRED = "deferred"
    """A passing problem (or another process took the run): polled again next time."""

    @property
    def changed(self) -> bool:
        """True when the run moved (anything but 'still waiting' or 'try later')."""
        return self not in (PollAction.WAITING, PollAction.DEFERRED)
