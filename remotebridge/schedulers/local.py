"""The local "scheduler" of the demo site: a detached process runs the job script.

``submit`` starts a small POSIX-sh wrapper in a new session (``setsid``), so the job
outlives the process that submitted it (the next ``poll`` cron run reads its state).
The wrapper runs ``bash SCRIPT`` in the script's folder with stdout/stderr in
``rb_local.<token>.out``/``.err`` there, then writes the exit code atomically
(temp file + rename) into the registry folder of the job::

    <remote_root or link cwd>/.rb_local_jobs/<job id>/
        pid  token  name  script  started   rc (at the end)   cancelled (by cancel)

Job ids look like ``local.<pid>.<token>``. ``status`` of many jobs is ONE remote
call (a shell loop over the registry). States:

* ``rc`` present: COMPLETED when 0, else FAILED; ``cancelled`` present: CANCELLED;
* no ``rc`` and the wrapper process (checked by pid AND by the token in its command
  line, so a recycled pid is not mistaken for it) is alive: RUNNING;
* no ``rc`` and the process is gone: FAILED (it was killed, or the machine rebooted:
  it can never write its exit code now, so waiting longer would not help);
* no registry folder at all: UNKNOWN.

``cancel`` marks the job cancelled, then kills its whole process group.
Everything runs through the link, so the same code works over ssh too.
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Sequence

from remotebridge.errors import SchedulerError
from remotebridge.schedulers.base import (
    JobState,
    Scheduler,
    check_token,
    evidence_of,
    job_name,
    map_state,
)
from remotebridge.ssh.base import Result

REGISTRY = ".rb_local_jobs"

LOCAL_STATES: dict[str, JobState] = {
    "running": JobState.RUNNING,
    "completed": JobState.COMPLETED,
    "failed": JobState.FAILED,
    "cancelled": JobState.CANCELLED,
    "vanished": JobState.FAILED,
    "unknown": JobState.UNKNOWN,
}
"""Words the status loop prints (``vanished``: process gone without an exit code)."""

# $1 registry, $2 script, $3 token, $4 name. Prints the job id.
_SUBMIT = r"""
reg=$1 script=$2 token=$3 name=$4
case $script in /*) ;; *) script=$(pwd)/$script ;; esac
[ -f "$script" ] || { echo "no such job script: $script" >&2; exit 2; }
dir=$(dirname -- "$script")
mkdir -p -- "$reg" && tmp=$(mktemp -d "$reg/.new.XXXXXX") || exit 1
reg=$(cd -- "$reg" && pwd)
setsid sh -c '
  reg=$1 script=$2 token=$3 dir=$4
  jd="$reg/local.$$.$token" n=0
  while [ ! -f "$jd/started" ]; do
    n=$((n + 1)); [ "$n" -gt 1000 ] && exit 1; sleep 0.01
  done
  cd -- "$dir" || exit 1
  export RB_JOB_NAME="$token" RB_JOB_ID="local.$$.$token"  # for the start marker
  bash "$script" > "rb_local.$token.out" 2> "rb_local.$token.err" < /dev/null
  rc=$?
  printf "%s\n" "$rc" > "$jd/rc.tmp" && mv -f -- "$jd/rc.tmp" "$jd/rc"
' rb-local-job "$reg" "$script" "$token" "$dir" < /dev/null > /dev/null 2>&1 &
pid=$!
id="local.$pid.$token"
printf '%s\n' "$pid" > "$tmp/pid"; printf '%s\n' "$token" > "$tmp/token"
printf '%s\n' "$name" > "$tmp/name"; printf '%s\n' "$script" > "$tmp/script"
mv -- "$tmp" "$reg/$id" || { kill -9 "-$pid"; exit 1; }
date +%s > "$reg/$id/started"
printf '%s\n' "$id"
"""

# $1 registry, then job ids. Prints "id|word" per job.
_STATUS = r"""
reg=$1; shift
rcword() { if [ "$(cat "$1/rc")" = 0 ]; then echo completed; else echo failed; fi; }
for id; do
  d=$reg/$id
  if [ ! -d "$d" ]; then w=unknown
  elif [ -f "$d/cancelled" ]; then w=cancelled
  elif [ -f "$d/rc" ]; then w=$(rcword "$d")
  else
    pid=$(cat "$d/pid" 2>/dev/null); tok=$(cat "$d/token" 2>/dev/null)
    if [ -n "$pid" ] && ps -ww -o args= -p "$pid" 2>/dev/null | grep -qF -- "$tok"; then
      w=running
    elif [ -f "$d/rc" ]; then w=$(rcword "$d")  # it ended just now
    else w=vanished; fi
  fi
  printf '%s|%s\n' "$id" "$w"
done
exit 0
"""

# $1 registry, $2 token
_FIND = r"""
[ -d "$1" ] || exit 0
for d in "$1"/local.*; do
  [ -f "$d/token" ] && [ "$(cat "$d/token")" = "$2" ] && basename -- "$d"
done
exit 0
"""

# $1 registry, $2 id
_CANCEL = r"""
d=$1/$2
[ -d "$d" ] || { echo "no such job: $2" >&2; exit 3; }
[ -f "$d/rc" ] && exit 0
: > "$d/cancelled"
pid=$(cat "$d/pid")
kill -TERM "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null
exit 0
"""

_ID_RE = re.compile(r"^local\.\d+\.[A-Za-z0-9_.-]+$")


class LocalScheduler(Scheduler):
    """Detached local processes, for ``scheduler = "local"`` (the demo site)."""

    kind = "local"
    states = LOCAL_STATES

    @property
    def registry(self) -> str:
        """The registry folder, on the link's side."""
        root = self.site.remote_root
        return posixpath.join(root, REGISTRY) if root else REGISTRY

    def submit_argv(self, script_path: str, name: str, token: str) -> list[str]:
        """The wrapper that detaches the job and prints its id."""
        return ["sh", "-c", _SUBMIT, "rb-local-submit", self.registry, script_path,
                check_token(token), job_name(name, token)]

    def parse_submit(self, result: Result) -> str:
        """The wrapper prints ``local.<pid>.<token>``."""
        job_id = result.out.strip().splitlines()[-1] if result.out.strip() else ""
        if not _ID_RE.match(job_id):
            raise SchedulerError("local submission answered no job id",
                                 evidence=evidence_of(result, ["sh"], self.link.host))
        return job_id

    def status_argv(self, job_ids: Sequence[str]) -> list[str]:
        """One shell loop over the registry for all ids."""
        return ["sh", "-c", _STATUS, "rb-local-status", self.registry, *job_ids]

    def parse_status(self, result: Result, job_ids: Sequence[str]) -> dict[str, JobState]:
        """``id|word`` lines -> states (``unknown`` rows are left out)."""
        states: dict[str, JobState] = {}
        for line in result.out.splitlines():
            job_id, _, word = line.strip().partition("|")
            if job_id in job_ids and word != "unknown":
                states[job_id] = map_state(word, LOCAL_STATES, "local")
        return states

    def find_argv(self, token: str, name: str = "") -> list[str]:
        """Scan the registry for the token."""
        return ["sh", "-c", _FIND, "rb-local-find", self.registry, token]

    def parse_find(self, result: Result, token: str) -> list[str]:
        """One id per line."""
        return sorted(ln.strip() for ln in result.out.splitlines() if _ID_RE.match(ln.strip()))

    def cancel_argv(self, job_id: str) -> list[str]:
        """Mark cancelled, then kill the process group."""
        return ["sh", "-c", _CANCEL, "rb-local-cancel", self.registry, job_id]

    def cancel_gone(self, result: Result) -> bool:
        """Never: an unknown id is an error for the local scheduler."""
        return False

    def probe_argv(self) -> list[str]:
        """``setsid`` must exist for detaching jobs."""
        return ["sh", "-c", "command -v setsid && command -v bash"]
