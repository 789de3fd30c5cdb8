"""The scheduler interface: submit, status of many jobs at once, find by token, cancel.

Shaped like psij's ``BatchSchedulerExecutor``: the base class runs the commands
through a :class:`~remotebridge.ssh.Link` and each scheduler only supplies small
hooks that build argv lists and parse answers (``submit_argv``/``parse_submit``,
``status_argv``/``parse_status``, ``find_argv``/``parse_find``, ``cancel_argv``).

Every scheduler maps its native states to :class:`JobState` with one dict; a native
state missing from the dict becomes ``LISTED`` with a warning: the scheduler still
lists the job, so it is never timed out. A job missing from every answer is
``UNKNOWN``: never assumed done either, but poll may take it as ended once its
walltime has long passed.
"""

from __future__ import annotations

import abc
import enum
import logging
import re
import warnings
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from remotebridge.config import SiteConfig
from remotebridge.errors import (
    CommandEvidence,
    RemoteCommandFailed,
    SchedulerError,
    TransientLinkError,
)
from remotebridge.ssh.base import Link, Result

log = logging.getLogger(__name__)

_TOKEN_RE = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
_NAME_RE = re.compile(r"[^A-Za-z0-9_.-]+")


class JobState(enum.StrEnum):
    """Where one batch job stands, in scheduler-neutral words."""

    QUEUED = "queued"
    """Waiting for resources (Slurm PENDING, Moab Idle/Blocked)."""

    HELD = "held"
    """Will not start until someone releases it (user/admin/batch hold, Moab Deferred)."""

    RUNNING = "running"
    """Has its allocation and runs (or is starting, completing, being cancelled)."""

    SUSPENDED = "suspended"
    """Has an allocation but is stopped for now (Slurm SUSPENDED, Moab Suspended)."""

    COMPLETED = "completed"
    """Finished with exit code 0. Terminal."""

    FAILED = "failed"
    """Finished with a non-zero exit code, or a node/launch/memory failure. Terminal."""

    CANCELLED = "cancelled"
    """Cancelled by a user or an administrator (Moab Removed/Vacated). Terminal."""

    TIMEOUT = "timeout"
    """Killed at the end of its walltime (or deadline). Terminal."""

    LISTED = "listed"
    """Listed by the scheduler under a native state not in our tables: it exists (it may
    still be queued), so it is never taken as ended because time has passed."""

    UNKNOWN = "unknown"
    """No answer mentions the job (the scheduler forgot it, or never had it)."""

    @property
    def terminal(self) -> bool:
        """True for states a job never leaves."""
        return self in TERMINAL_JOB_STATES


TERMINAL_JOB_STATES: frozenset[JobState] = frozenset(
    {JobState.COMPLETED, JobState.FAILED, JobState.CANCELLED, JobState.TIMEOUT}
)
"""The explicit terminal set (UNKNOWN is not terminal: ask again later)."""


def map_state(native: str, table: Mapping[str, JobState], scheduler: str) -> JobState:
    """``table[native]``, or LISTED with a warning for a state we do not know."""
    key = native.strip()
    if key in table:
        return table[key]
    message = (f"{scheduler}: unknown native job state {native!r}; the job is listed, "
               "treating it as alive (LISTED)")
    warnings.warn(message, RuntimeWarning, stacklevel=3)
    log.warning(message)
    return JobState.LISTED


def check_token(token: str) -> str:
    """Tokens go into job names and comments: letters, digits, ``_ . -`` only."""
    if not _TOKEN_RE.match(token):
        raise ValueError(f"bad job token {token!r}: use 1-64 of [A-Za-z0-9_.-]")
    return token


def job_name(name: str, token: str) -> str:
    """The scheduler job name carrying the token: ``<name>.<token>`` (name sanitised)."""
    clean = _NAME_RE.sub("_", name).strip("_")[:40] or "rb"
    return f"{clean}.{check_token(token)}"


def evidence_of(result: Result, argv: Sequence[str], host: str) -> CommandEvidence:
    """The evidence of a scheduler answer, for a SchedulerError."""
    return CommandEvidence(argv=list(argv), rc=result.rc, stdout=result.out[-4000:],
                           stderr=result.err[-4000:], host=host)


@dataclass(frozen=True)
class SubmitAnswer:
    """What a submission produced: the job id, and whether it was found by token."""

    job_id: str
    adopted: bool = False
    """True when the submit answer was lost and the job was found by its token."""


class Scheduler(abc.ABC):
    """Runs one scheduler's commands over a link. Subclasses supply the hooks."""

    kind: str = "scheduler"
    states: Mapping[str, JobState] = {}

    def __init__(self, link: Link, site: SiteConfig) -> None:
        """Talk to the scheduler of ``site`` through ``link`` (one front end)."""
        self.link = link
        self.site = site

    # --- hooks ------------------------------------------------------------------------

    @abc.abstractmethod
    def submit_argv(self, script_path: str, name: str, token: str) -> list[str]:
        """The argv that submits ``script_path`` with ``token`` in its name/comment."""

    @abc.abstractmethod
    def parse_submit(self, result: Result) -> str:
        """The job id in the submission answer (SchedulerError if none)."""

    @abc.abstractmethod
    def status_argv(self, job_ids: Sequence[str]) -> list[str]:
        """The argv (ONE remote call) answering for many jobs."""

    @abc.abstractmethod
    def parse_status(self, result: Result, job_ids: Sequence[str]) -> dict[str, JobState]:
        """States of the jobs the answer mentions (others are left out)."""

    @abc.abstractmethod
    def find_argv(self, token: str, name: str = "") -> list[str]:
        """The argv listing jobs (of every user the site was run as) carrying ``token``.

        ``name`` is the name given at submission (the job is ``job_name(name, token)``),
        "" when not known.
        """

    @abc.abstractmethod
    def parse_find(self, result: Result, token: str) -> list[str]:
        """Job ids in the find answer that carry ``token``."""

    @abc.abstractmethod
    def cancel_argv(self, job_id: str) -> list[str]:
        """The argv that cancels ``job_id``."""

    def cancel_gone(self, result: Result) -> bool:
        """True when a failed cancel says the job is already gone (not an error)."""
        return False

    def finished_argv(self, job_ids: Sequence[str]) -> list[str] | None:
        """A second ONE-call query for jobs the live listing no longer shows."""
        return None

    def parse_finished(self, result: Result, job_ids: Sequence[str]) -> dict[str, JobState]:
        """States from the :meth:`finished_argv` answer."""
        return {}

    def probe_argv(self) -> list[str]:
        """A cheap command showing the scheduler answers (site check)."""
        return ["true"]

    def transient_answer(self, result: Result) -> bool:
        """True when a failed answer says the scheduler could not be reached for now
        (a client time-out): a transient fault, never a failed command."""
        return False

    def _failed(self, result: Result, argv: Sequence[str], what: str) -> Exception:
        evidence = evidence_of(result, argv, self.link.host)
        if self.transient_answer(result):
            return TransientLinkError(f"{self.kind} {what}: scheduler did not answer in time",
                                      evidence=evidence)
        return SchedulerError(f"{self.kind} {what} failed", evidence=evidence)

    # --- the operations ---------------------------------------------------------------

    def _run(self, argv: Sequence[str], what: str, *, retry: bool = True,
             ok_rcs: Iterable[int] = (0,)) -> Result:
        result = self.link.run(argv, check=False, retry=retry)
        if result.rc not in set(ok_rcs):
            raise self._failed(result, argv, what)
        return result

    def submit(self, script_path_remote: str, name: str, token: str) -> str:
        """Submit the job script; returns the job id (see :meth:`submit_job`)."""
        return self.submit_job(script_path_remote, name, token).job_id

    def submit_job(self, script_path_remote: str, name: str, token: str) -> SubmitAnswer:
        """Submit the job script; the answer says whether the job was adopted by token.

        Never retried blindly: if the link fails after sending, the job may have been
        accepted; we look for it by ``token`` (adopt it) and re-raise if none is found.
        """
        argv = self.submit_argv(script_path_remote, name, check_token(token))
        try:
            result = self._run(argv, "submission", retry=False)
        except TransientLinkError:
            found = self.find(token, name)
            if found:
                log.warning("submission answer lost; adopted job %s by token", found[-1])
                return SubmitAnswer(found[-1], adopted=True)
            raise
        return SubmitAnswer(self.parse_submit(result))

    def status(self, job_ids: Sequence[str]) -> dict[str, JobState]:
        """The state of every job in ``job_ids`` (UNKNOWN when no answer mentions it)."""
        ids = list(dict.fromkeys(str(j) for j in job_ids))
        if not ids:
            return {}
        argv = self.status_argv(ids)
        found = self.parse_status(self._run(argv, "status query"), ids)
        missing = [j for j in ids if j not in found]
        if missing:
            more = self.finished_argv(missing)
            if more is not None:
                found.update(self.parse_finished(self._run(more, "history query"), missing))
        return {j: found.get(j, JobState.UNKNOWN) for j in ids}

    def find(self, token: str, name: str = "") -> list[str]:
        """Ids of jobs carrying ``token`` (to adopt a job whose submit answer was lost).

        ``name``: the name the job was submitted with, when known (a narrower search).
        """
        argv = self.find_argv(check_token(token), name)
        return self.parse_find(self._run(argv, "job search"), token)

    def cancel(self, job_id: str) -> None:
        """Cancel ``job_id``; a job that is already gone is not an error."""
        argv = self.cancel_argv(job_id)
        result = self.link.run(argv, check=False)
        if result.rc != 0 and not self.cancel_gone(result):
            raise self._failed(result, argv, f"cancel of {job_id}")

    def probe(self) -> Result:
        """Run :meth:`probe_argv` (raises RemoteCommandFailed if it fails)."""
        try:
            return self.link.run(self.probe_argv(), timeout=60)
        except RemoteCommandFailed as exc:
            raise SchedulerError(f"{self.kind} does not answer",
                                 evidence=exc.evidence) from exc
