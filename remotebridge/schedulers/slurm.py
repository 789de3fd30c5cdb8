"""Slurm: ``sbatch --parsable``, ``squeue``, ``sacct`` / ``scontrol``, ``scancel``.

* submit: the token goes into ``--job-name=<name>.<token>`` and ``--comment=rb:<token>``;
  ``--partition``/``--account`` come from the site configuration when set.
* status: ONE ``squeue -h --me -t all`` call lists every live (and recently ended)
  job of ours; we never pass ``-j`` because ``squeue -j`` with an id slurmctld has
  forgotten fails with "Invalid job id specified". Jobs it does not list (ended, or
  submitted as another user before ``control-tool switch-user``) are asked in one more
  call of ``sacct -a -j`` when the site has accounting, else of ONE ``scontrol show job
  -o`` (every job, one RPC: never one call per job, see squeue(1) PERFORMANCE); a job
  no answer mentions is UNKNOWN, never assumed done.
* find: by job name across all users (``squeue --name``, ``sacct -a --name``), since
  the job may have been submitted under the previous login user; cancel is by id.
* A pending job held by a user or an administrator (reason ``JobHeld*``) is HELD.
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Sequence

from remotebridge.errors import SchedulerError
from remotebridge.schedulers.base import (
    JobState,
    Scheduler,
    evidence_of,
    job_name,
    map_state,
)
from remotebridge.ssh.base import Result

SQUEUE_FORMAT = "%i|%T|%r|%j|%k"
"""id | long state | reason | name | comment (comment last: it may hold '|')."""

COMMENT_PREFIX = "rb:"

SLURM_STATES: dict[str, JobState] = {
    "PENDING": JobState.QUEUED,
    "CONFIGURING": JobState.QUEUED,
    "REQUEUED": JobState.QUEUED,
    "REQUEUE_FED": JobState.QUEUED,
    "EXPEDITING": JobState.QUEUED,  # 25.11: eligible at once with top priority
    "REQUEUE_HOLD": JobState.HELD,
    "RESV_DEL_HOLD": JobState.HELD,
    "SPECIAL_EXIT": JobState.HELD,  # "same as REQUEUE_HOLD": a release reruns it
    "RUNNING": JobState.RUNNING,
    "COMPLETING": JobState.RUNNING,
    "RESIZING": JobState.RUNNING,
    "SIGNALING": JobState.RUNNING,
    "STAGE_OUT": JobState.RUNNING,
    "STOPPED": JobState.SUSPENDED,
    "SUSPENDED": JobState.SUSPENDED,
    "COMPLETED": JobState.COMPLETED,
    "FAILED": JobState.FAILED,
    "BOOT_FAIL": JobState.FAILED,
    "NODE_FAIL": JobState.FAILED,
    "OUT_OF_MEMORY": JobState.FAILED,
    "PREEMPTED": JobState.FAILED,
    "CANCELLED": JobState.CANCELLED,
    "REVOKED": JobState.LISTED,  # federation: the job started on a sibling cluster
    "TIMEOUT": JobState.TIMEOUT,
    "DEADLINE": JobState.TIMEOUT,
}
"""Slurm's long state names (squeue %T, sacct State, scontrol JobState)."""

HOLD_REASONS = frozenset({"JobHeldUser", "JobHeldAdmin"})

# one remote call for jobs squeue no longer lists: sacct (every user: -a) if accounting
# works, else ONE scontrol listing of every job slurmctld still holds
_FINISHED_SCRIPT = r"""
if out=$(sacct -a -n -P -X -j "$1" -o JobIDRaw,State 2>/dev/null); then
  printf '@@sacct\n%s\n' "$out"
else
  printf '@@scontrol\n'
  scontrol show job -o 2>/dev/null
fi
exit 0
"""

# find: live jobs of every user by name, then two weeks of accounting (every user)
_FIND_SCRIPT = r"""
if [ -n "$2" ]; then
  squeue -h -t all --name="$2" -o "$1" || exit $?
  printf '@@sacct\n'
  sacct -a -n -P -X --name="$2" -S now-14days -o JobIDRaw,JobName 2>/dev/null
else
  squeue -h -t all -o "$1" || exit $?
  printf '@@sacct\n'
  sacct -a -n -P -X -S now-14days -o JobIDRaw,JobName 2>/dev/null
fi
exit 0
"""

_SCONTROL_ID = re.compile(r"(?:^|\s)JobId=(\S+)")
_SCONTROL_STATE = re.compile(r"(?:^|\s)JobState=(\S+)")


def slurm_state(native: str, reason: str = "") -> JobState:
    """Map a Slurm state (``CANCELLED by 0`` -> CANCELLED) and a hold reason."""
    word = native.strip().split(" ")[0].rstrip("+")
    state = map_state(word, SLURM_STATES, "slurm")
    if state is JobState.QUEUED and reason.strip() in HOLD_REASONS:
        return JobState.HELD
    return state


def parse_squeue(text: str) -> dict[str, tuple[JobState, str, str]]:
    """``id -> (state, name, comment)`` from ``squeue -h -o '%i|%T|%r|%j|%k'``."""
    rows: dict[str, tuple[JobState, str, str]] = {}
    for line in text.splitlines():
        parts = line.strip().split("|", 4)
        if len(parts) < 5 or not parts[0]:
            continue
        job_id, native, reason, name, comment = parts
        rows[job_id] = (slurm_state(native, reason), name, comment)
    return rows


def parse_sacct(text: str) -> dict[str, JobState]:
    """``id -> state`` from ``sacct -n -P -X -o JobIDRaw,State``."""
    states: dict[str, JobState] = {}
    for line in text.splitlines():
        parts = line.strip().split("|")
        if len(parts) >= 2 and parts[0]:
            states[parts[0]] = slurm_state(parts[1])
    return states


def parse_scontrol(text: str) -> dict[str, JobState]:
    """``id -> state`` from ``scontrol show job -o`` lines (one job per line)."""
    states: dict[str, JobState] = {}
    for line in text.splitlines():
        jid, st = _SCONTROL_ID.search(line), _SCONTROL_STATE.search(line)
        if jid and st:
            reason = re.search(r"(?:^|\s)Reason=(\S+)", line)
            states[jid.group(1)] = slurm_state(st.group(1), reason.group(1) if reason else "")
    return states


def split_sections(text: str) -> dict[str, str]:
    """Split ``@@name`` sections of a combined answer (text before any marker: '')."""
    sections: dict[str, list[str]] = {"": []}
    current = ""
    for line in text.splitlines():
        if line.startswith("@@"):
            current = line[2:].strip()
            sections.setdefault(current, [])
        else:
            sections[current].append(line)
    return {k: "\n".join(v) for k, v in sections.items()}


class SlurmScheduler(Scheduler):
    """Slurm over a link."""

    kind = "slurm"
    states = SLURM_STATES

    def submit_argv(self, script_path: str, name: str, token: str) -> list[str]:
        """``sbatch --parsable`` with the token in the job name and the comment."""
        argv = ["sbatch", "--parsable", f"--job-name={job_name(name, token)}",
                f"--comment={COMMENT_PREFIX}{token}"]
        folder = posixpath.dirname(script_path)
        if folder:
            argv.append(f"--chdir={folder}")
        if self.site.partition:
            argv.append(f"--partition={self.site.partition}")
        if self.site.account:
            argv.append(f"--account={self.site.account}")
        return [*argv, "--", script_path]

    def parse_submit(self, result: Result) -> str:
        """``--parsable`` answers ``jobid[;cluster]``."""
        for line in result.out.splitlines():
            job_id = line.strip().split(";")[0]
            if re.fullmatch(r"\d+(_\d+)?", job_id):
                return job_id
        raise SchedulerError("sbatch answered no job id",
                             evidence=evidence_of(result, ["sbatch"], self.link.host))

    def status_argv(self, job_ids: Sequence[str]) -> list[str]:
        """All our jobs in one listing (never ``-j``: see the module docstring)."""
        return ["squeue", "-h", "--me", "-t", "all", "-o", SQUEUE_FORMAT]

    def parse_status(self, result: Result, job_ids: Sequence[str]) -> dict[str, JobState]:
        """States of the wanted jobs among squeue's rows."""
        rows = parse_squeue(result.out)
        return {j: rows[j][0] for j in job_ids if j in rows}

    def finished_argv(self, job_ids: Sequence[str]) -> list[str] | None:
        """sacct (or scontrol without accounting) for the jobs squeue forgot."""
        return ["sh", "-c", _FINISHED_SCRIPT, "rb-slurm-finished", ",".join(job_ids)]

    def parse_finished(self, result: Result, job_ids: Sequence[str]) -> dict[str, JobState]:
        """States from the sacct or scontrol section."""
        sections = split_sections(result.out)
        states = parse_sacct(sections.get("sacct", ""))
        states.update(parse_scontrol(sections.get("scontrol", "")))
        return {j: states[j] for j in job_ids if j in states}

    def find_argv(self, token: str, name: str = "") -> list[str]:
        """Live jobs and two weeks of accounting of every user, in one call."""
        wanted = job_name(name, token) if name else ""
        return ["sh", "-c", _FIND_SCRIPT, "rb-slurm-find", SQUEUE_FORMAT, wanted]

    def parse_find(self, result: Result, token: str) -> list[str]:
        """Ids whose comment is ``rb:<token>`` or whose name ends in ``.<token>``."""
        sections = split_sections(result.out)
        found: list[str] = []
        for job_id, (_state, name, comment) in parse_squeue(sections.get("", "")).items():
            if comment.strip() == COMMENT_PREFIX + token or name.endswith("." + token):
                found.append(job_id)
        for line in sections.get("sacct", "").splitlines():
            job_id, _, name = line.strip().partition("|")
            if name.endswith("." + token) and job_id not in found:
                found.append(job_id)
        return sorted(found, key=_id_key)

    def cancel_argv(self, job_id: str) -> list[str]:
        """``scancel ID``."""
        return ["scancel", "--", job_id]

    def cancel_gone(self, result: Result) -> bool:
        """scancel of a job slurmctld forgot, or one already ending."""
        text = result.err + result.out
        return "Invalid job id" in text or "already completing or completed" in text

    def probe_argv(self) -> list[str]:
        """``sinfo -h`` lists the partitions when slurmctld answers."""
        return ["sinfo", "-h", "-o", "%P %a %D %t"]


def _id_key(job_id: str) -> tuple[int, str]:
    head = job_id.split("_")[0].split(".")[-1]
    return (int(head) if head.isdigit() else 0, job_id)
