"""Moab: ``msub``, ``showq --xml`` / ``checkjob --format=XML``, ``canceljob``.

Formats (Adaptive Computing's documentation; samples in ``tests/fixtures/moab/``):

* ``msub`` prints the new job id on stdout, possibly after blank lines; the id is
  ``123`` or ``Moab.123`` depending on the site. The token goes into ``-N <name>.<token>``.
* ``showq --xml`` answers ``<Data><Object>queue</Object><cluster .../>`` then
  ``<queue option="active|eligible|blocked">`` blocks of ``<job JobID=.. JobName=..
  State=.. .../>``; ``showq -c --xml`` lists recently completed jobs in a
  ``<queue option="completed">`` block with ``CompletionCode``. We ask both in ONE
  remote call; their concatenated ``<Data>`` documents are parsed together.
* Jobs neither listing shows are asked of ``checkjob --format=XML`` (one call for all),
  which answers ``<Data><job .../></Data>`` per job (or an error for a purged one).
* ``canceljob ID`` answers ``job 'ID' cancelled``; for a job Moab no longer knows it
  fails with ``ERROR:  invalid job specified (ID)``, which is not an error for us.

A completed job with a non-zero ``CompletionCode`` is FAILED, except ``CNCLD`` (a job
cancelled while it ran) which is CANCELLED; ``Removed`` (cancelled before it ran) and
``Vacated`` (cancelled after it started) are CANCELLED.

``showq`` lists every user's jobs, and ``DRMJID`` is the resource manager's own number
(it differs from ``JobID`` on real sites): a job is matched on ``JobID`` only, and only
when its ``User`` is one we log in as (the remote ``id -un``, asked in the same call,
and every user the site has been run as, :func:`~remotebridge.config.site_users`).

A Moab client that cannot reach the server prints ``ERROR:  client timed out after N
seconds`` (or ``cannot connect to Moab server``) and exits non-zero: a transient fault
(:class:`~remotebridge.errors.TransientLinkError`), not a failed job.
"""

from __future__ import annotations

import posixpath
import re
import xml.etree.ElementTree as ET
from collections.abc import Iterator, Sequence

from remotebridge.config import site_users
from remotebridge.errors import SchedulerError
from remotebridge.schedulers.base import (
    JobState,
    Scheduler,
    evidence_of,
    job_name,
    map_state,
)
from remotebridge.ssh.base import Result

MOAB_STATES: dict[str, JobState] = {
    "Idle": JobState.QUEUED,
    "Blocked": JobState.QUEUED,
    "NotQueued": JobState.QUEUED,
    "Staging": JobState.QUEUED,
    "Staged": JobState.QUEUED,  # handed to another scheduler, not started yet
    "Migrated": JobState.QUEUED,
    "Hold": JobState.HELD,
    "UserHold": JobState.HELD,
    "SystemHold": JobState.HELD,
    "BatchHold": JobState.HELD,
    "Deferred": JobState.HELD,
    "Allocating": JobState.RUNNING,  # resources being allocated: the job is starting
    "Starting": JobState.RUNNING,
    "Running": JobState.RUNNING,
    "Canceling": JobState.RUNNING,
    "Suspended": JobState.SUSPENDED,
    "Completed": JobState.COMPLETED,
    "Removed": JobState.CANCELLED,
    "Vacated": JobState.CANCELLED,
    "SubmitErr": JobState.FAILED,  # the resource manager refused the job: it never runs
    "NotRun": JobState.FAILED,  # ended without running
    "Lost": JobState.UNKNOWN,  # the resource manager lost it: the walltime rule applies
    "Unknown": JobState.LISTED,  # listed, state not known: never timed out
}
"""Moab job states (showq/checkjob ``State`` attribute)."""

# the login user first (as an element the XML reader keeps), then both listings
_STATUS_SCRIPT = ('printf \'<rbuser name="%s"/>\\n\' "$(id -un)"; '
                  "showq --xml || exit $?; showq -c --xml 2>/dev/null; exit 0")
_CHECKJOB_SCRIPT = ('printf \'<rbuser name="%s"/>\\n\' "$(id -un)"; '
                    'for j; do checkjob --format=XML "$j" 2>/dev/null; done; exit 0')
_CLIENT_TIMEOUT = re.compile(r"client timed out after|cannot connect to Moab server|"
                             r"communication error|server not responding", re.I)


def short_id(job_id: str) -> str:
    """``Moab.123`` -> ``123`` (the numeric part both id forms share)."""
    return job_id.strip().rsplit(".", 1)[-1]


def iter_jobs(text: str) -> Iterator[dict[str, str]]:
    """Attributes of every ``<job>`` in one or more concatenated ``<Data>`` documents."""
    body = re.sub(r"<\?xml[^>]*\?>", "", text)
    if not body.strip():
        return
    try:
        root = ET.fromstring(f"<rbroot>{body}</rbroot>")
    except ET.ParseError as exc:
        raise SchedulerError(f"moab answered XML we cannot read: {exc}") from exc
    for job in root.iter("job"):
        yield dict(job.attrib)


def answer_users(text: str) -> set[str]:
    """The login user our scripts print first (``<rbuser name=..>``), if any."""
    return set(re.findall(r'<rbuser name="([^"<>]*)"/>', text)) - {""}


def moab_state(attrs: dict[str, str]) -> JobState:
    """The JobState of one ``<job>``: Completed with a non-zero code is FAILED, with
    ``CNCLD`` (cancelled while running) CANCELLED."""
    state = map_state(attrs.get("State", ""), MOAB_STATES, "moab")
    code = attrs.get("CompletionCode", "0").strip() or "0"
    if state is JobState.COMPLETED and code.upper() == "CNCLD":
        return JobState.CANCELLED
    if state is JobState.COMPLETED and code != "0":
        return JobState.FAILED
    return state


def ours(attrs: dict[str, str], users: set[str]) -> bool:
    """True when the job's ``User`` is one of ``users`` (no users known: any job)."""
    return not users or attrs.get("User", "") in users


def states_by_id(text: str, job_ids: Sequence[str],
                 users: set[str] | None = None) -> dict[str, JobState]:
    """States of the wanted ids (matched on JobID in either id form, never on DRMJID,
    and only for jobs of ``users``) in an XML answer."""
    wanted = {short_id(j): j for j in job_ids}
    found: dict[str, JobState] = {}
    for attrs in iter_jobs(text):
        key = short_id(attrs.get("JobID", "")) if attrs.get("JobID") else ""
        if key in wanted and ours(attrs, users or set()):
            found[wanted[key]] = moab_state(attrs)
    return found


class MoabScheduler(Scheduler):
    """Moab over a link."""

    kind = "moab"
    states = MOAB_STATES

    def submit_argv(self, script_path: str, name: str, token: str) -> list[str]:
        """``msub -N <name>.<token> -v RB_TOKEN=.. [-d folder] [-q ..] [-A ..] SCRIPT``.

        ``-d`` makes the script's folder the job's working directory (like Slurm's
        ``--chdir``), so ``job.moab.out`` lands there, not in the login directory.
        """
        argv = ["msub", "-N", job_name(name, token), "-v", f"RB_TOKEN={token}"]
        folder = posixpath.dirname(script_path)
        if folder:
            argv += ["-d", folder]
        if self.site.partition:
            argv += ["-q", self.site.partition]
        if self.site.account:
            argv += ["-A", self.site.account]
        return [*argv, script_path]

    def parse_submit(self, result: Result) -> str:
        """The last non-blank line of msub's answer is the job id."""
        lines = [ln.strip() for ln in result.out.splitlines() if ln.strip()]
        if lines and re.fullmatch(r"[A-Za-z0-9_-]*\.?\d+(\[\d*\])?", lines[-1]):
            return lines[-1]
        raise SchedulerError("msub answered no job id",
                             evidence=evidence_of(result, ["msub"], self.link.host))

    def status_argv(self, job_ids: Sequence[str]) -> list[str]:
        """Live and completed listings in one call."""
        return ["sh", "-c", _STATUS_SCRIPT]

    def users(self, result: Result) -> set[str]:
        """Users whose jobs are ours: the remote login user and the site's users."""
        return answer_users(result.out) | set(site_users(self.site))

    def transient_answer(self, result: Result) -> bool:
        """A Moab client that timed out or could not reach the server."""
        return bool(_CLIENT_TIMEOUT.search(result.err + result.out))

    def parse_status(self, result: Result, job_ids: Sequence[str]) -> dict[str, JobState]:
        """States of the wanted jobs in the showq documents."""
        return states_by_id(result.out, job_ids, self.users(result))

    def finished_argv(self, job_ids: Sequence[str]) -> list[str] | None:
        """``checkjob --format=XML`` for each job showq no longer lists, in one call."""
        return ["sh", "-c", _CHECKJOB_SCRIPT, "rb-moab-checkjob", *job_ids]

    def parse_finished(self, result: Result, job_ids: Sequence[str]) -> dict[str, JobState]:
        """States from the checkjob documents."""
        return states_by_id(result.out, job_ids, self.users(result))

    def find_argv(self, token: str, name: str = "") -> list[str]:
        """Same listings as status: we filter by job name."""
        return ["sh", "-c", _STATUS_SCRIPT]

    def parse_find(self, result: Result, token: str) -> list[str]:
        """Ids of our users' jobs named ``*.<token>``."""
        users = self.users(result)
        ids = [a["JobID"] for a in iter_jobs(result.out)
               if a.get("JobName", "").endswith("." + token) and a.get("JobID")
               and ours(a, users)]
        return sorted(dict.fromkeys(ids), key=lambda j: (len(short_id(j)), short_id(j)))

    def cancel_argv(self, job_id: str) -> list[str]:
        """``canceljob ID``."""
        return ["canceljob", job_id]

    def cancel_gone(self, result: Result) -> bool:
        """``ERROR:  invalid job specified`` means Moab no longer knows the job."""
        return "invalid job specified" in (result.err + result.out)

    def probe_argv(self) -> list[str]:
        """``showq --xml`` answers when the Moab server does."""
        return ["showq", "--xml"]
