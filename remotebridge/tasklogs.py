"""Task logs and the job's output file, read over the master in ONE remote call.

``remotetool logs`` prints them; poll keeps the logs of the failed or abandoned tasks
and the job's output file in the run's local job folder (``logs/``, names from
:mod:`remotebridge.jobfolder`) so they survive the scratch purge.

One ``sh`` call per run: task ids and their log paths (from our own plan.jsonl) go on
stdin, each file comes back framed as ``file <bytes> <full size> <label> <path>``
followed by at most ``tail`` of its last lines, and the whole answer is bounded by
``total`` bytes. What comes back is untrusted: it is decoded with replacement and
every control character is escaped before it reaches a terminal
(:func:`remotebridge.textsafe.visible`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import Engine

from remotebridge import jobfolder
from remotebridge.config import Config
from remotebridge.db import statemachine
from remotebridge.db.engine import read_session
from remotebridge.errors import BridgeError, LinkDown, NotFoundError, Refused
from remotebridge.ssh import links_for, live_frontends
from remotebridge.ssh.base import Link
from remotebridge.states import RunState

log = logging.getLogger(__name__)

DEFAULT_TAIL = 200
"""Lines of each file by default."""
TOTAL_BYTES = 1 << 20
"""Most bytes of one answer (all files together)."""
LOG_STATES = frozenset({RunState.RUN, RunState.FULL, RunState.ERROR, RunState.AUTH,
                        RunState.CANCELLED})
"""States whose run may have logs on the site (it was submitted)."""

# $1 job folder, $2 lines per file, $3 total bytes, $4 1 = failed tasks only (2: and
# the job has ended, so a task with no status never ran: abandoned),
# $5 1 = the job's output files too. "TASK_ID PATH" lines on stdin.
LOGS_SCRIPT = r"""
cd -- "$1" 2>/dev/null || { printf 'nodir\n'; exit 0; }
n=$2; left=$3; failed=$4
tmp=$(mktemp) || exit 1
trap 'rm -f -- "$tmp"' EXIT
send() {
  if [ ! -f "$2" ]; then printf 'gone - - %s %s\n' "$1" "$2"; return; fi
  full=$(wc -c < "$2" | tr -d ' ')
  if [ "$left" -le 0 ]; then printf 'cut 0 %s %s %s\n' "$full" "$1" "$2"; return; fi
  tail -n "$n" -- "$2" | head -c "$left" > "$tmp"
  got=$(wc -c < "$tmp" | tr -d ' ')
  left=$((left - got))
  printf 'file %s %s %s %s\n' "$got" "$full" "$1" "$2"
  cat -- "$tmp"
}
if [ "$5" = 1 ]; then
  for f in job.*.out job.*.err rb_local.*.out rb_local.*.err; do
    [ -f "$f" ] && send job "$f"
  done
fi
ended=0; [ -f job_summary.jsonl ] && ended=1
[ "$failed" = 2 ] && { failed=1; ended=1; }
while read -r tid path; do
  if [ "$failed" = 1 ]; then
    st="status/$tid.json"
    if [ -f "$st" ]; then
      grep -q '"rc": 0[,}]' "$st" && continue
    elif [ "$ended" = 0 ]; then
      continue
    fi
  fi
  send "task:$tid" "$path"
done
exit 0
"""


@dataclass(frozen=True)
class LogText:
    """One file of the answer: its label (``job`` or ``task:N``), remote path, text."""

    label: str
    path: str
    size: int
    """Its full size on the site (bytes)."""
    text: str
    """Its last lines (untrusted: escape before showing)."""
    missing: bool = False
    cut: bool = False
    """Left out or shortened by the total cap."""

    @property
    def task_id(self) -> int | None:
        """The task's id, None for the job's output file."""
        kind, _, tid = self.label.partition(":")
        return int(tid) if kind == "task" and tid.isdigit() else None

    @property
    def home_name(self) -> str:
        """Where poll keeps this file in the job folder."""
        tid = self.task_id
        return jobfolder.task_log_name(tid) if tid is not None \
            else jobfolder.job_output_name(self.path)


@dataclass
class LogAnswer:
    """Every file the one call brought."""

    files: list[LogText] = field(default_factory=list)
    folder_missing: bool = False
    """The job folder is gone from the site (purged)."""


@dataclass(frozen=True)
class LogRequest:
    """What to read: one task or the failed tasks (or none); the job output; the bounds."""

    tasks: bool = True
    """Read task logs at all (``task`` or, with ``failed``, the failed ones)."""
    task: int | None = None
    failed: bool = True
    job: bool = True
    ended: bool = False
    """The job has ended: a failed-only read counts tasks with no status as failed."""
    tail: int = DEFAULT_TAIL
    total: int = TOTAL_BYTES


def plan_logs(folder: Path, task: int | None = None) -> list[tuple[int, str]]:
    """(task id, remote log path) of the tasks in the run's plan that have a log."""
    plan = jobfolder.read_jsonl(folder, jobfolder.PLAN)
    found = [(int(r["task_id"]), str(r.get("log") or "")) for r in plan.records]
    found = [(tid, log) for tid, log in found if log and "\n" not in log]
    if task is not None:
        found = [(tid, log) for tid, log in found if tid == task]
        if not found:
            raise NotFoundError(f"task {task} is not in the plan, or has no log",
                                hint="see plan.jsonl in the job folder")
    return found


def fetch_logs(link: Link, job_dir: str, tasks: Sequence[tuple[int, str]],
               req: LogRequest) -> LogAnswer:
    """The logs of ``tasks`` (and the job's output files) in one remote call."""
    stdin = "".join(f"{tid} {path}\n" for tid, path in tasks).encode()
    argv = ["sh", "-c", LOGS_SCRIPT, "rb-logs", job_dir, str(max(1, req.tail)),
            str(max(0, req.total)), _failed_flag(req), "1" if req.job else "0"]
    result = link.run(argv, stdin=stdin, timeout=300)
    return parse_answer(result.stdout)


def _failed_flag(req: LogRequest) -> str:
    """$4 of the script: 0 every task, 1 failed only, 2 failed or never run."""
    return ("2" if req.ended else "1") if req.failed else "0"


def parse_answer(data: bytes) -> LogAnswer:
    """Split the framed answer of :data:`LOGS_SCRIPT` (a malformed frame ends it)."""
    answer, pos = LogAnswer(), 0
    while pos < len(data):
        end = data.find(b"\n", pos)
        if end < 0:
            break
        head = data[pos:end].decode("utf-8", "replace").split(" ", 4)
        pos = end + 1
        if head == ["nodir"]:
            answer.folder_missing = True
            continue
        if len(head) != 5 or head[0] not in ("file", "gone", "cut"):
            break
        kind, got, full, label, path = head
        size = int(full) if full.isdigit() else 0
        if kind != "file" or not got.isdigit():
            answer.files.append(LogText(label, path, size, "", missing=kind == "gone",
                                        cut=kind == "cut"))
            continue
        body = data[pos:pos + int(got)]
        pos += int(got)
        answer.files.append(LogText(label, path, size, body.decode("utf-8", "replace"),
                                    cut=len(body) < int(got)))
    return answer


LinksFor = Callable[..., Sequence[Link]]


def run_logs(engine: Engine, config: Config, remote_id: int, req: LogRequest, *,
             links: LinksFor = links_for) -> LogAnswer:
    """The logs of one submitted run, read from its site now (one call)."""
    with read_session(engine) as s:
        run = statemachine.get_run(s, remote_id)
        state, site_name = RunState(run.state), run.site
        folder = jobfolder.local_folder(run.path_base, remote_id)
    if state not in LOG_STATES:
        raise Refused(f"remote run {remote_id} is in state '{state.value}': it has not been "
                      "submitted, so there are no logs yet")
    tasks = plan_logs(folder, req.task) if req.tasks else []
    site = config.site(site_name or None)
    live, why = live_frontends(site, links)
    if not live:
        raise LinkDown(why)
    return fetch_logs(live[0], jobfolder.remote_job_dir(folder), tasks, req)


def keep_home(folder: Path, answer: LogAnswer) -> list[str]:
    """Write the answer's files under the job folder's ``logs/`` (each cut to its last
    :data:`~remotebridge.jobfolder.LOGS_MAX_BYTES`); the names written."""
    written = []
    for log in answer.files[:jobfolder.LOGS_MAX_FILES]:
        if log.missing or (log.cut and not log.text):
            continue
        data = log.text.encode("utf-8")[-jobfolder.LOGS_MAX_BYTES:]
        (folder / jobfolder.LOGS_DIR).mkdir(exist_ok=True)
        jobfolder.atomic_write(folder / log.home_name, data.decode("utf-8", "replace"))
        written.append(log.home_name)
    return written


HOME_REQUEST = LogRequest(tasks=True, failed=True, job=True, ended=True, tail=1000,
                          total=4 << 20)
"""What poll brings home: the failed/abandoned tasks' logs and the job output file."""


def bring_home(link: Link, job_dir: str, folder: Path) -> list[str]:
    """Poll's step: keep the failed tasks' logs and the job output in ``logs/``.

    Best effort (the products matter, the logs help): any problem is logged and
    nothing is kept; the names written otherwise.
    """
    try:
        answer = fetch_logs(link, job_dir, plan_logs(folder), HOME_REQUEST)
        return keep_home(folder, answer)
    except (BridgeError, OSError, ValueError) as exc:
        log.warning("logs of %s not brought home: %s", job_dir, exc)
        return []


def home_logs(folder: Path) -> list[str]:
    """The names of the logs kept in the job folder (for ``show``)."""
    root = folder / jobfolder.LOGS_DIR
    if not root.is_dir():
        return []
    return sorted(f"{jobfolder.LOGS_DIR}/{p.name}" for p in root.iterdir() if p.is_file())
