"""The dynamic runner's compact progress (``runner/progress.json``), read while a job runs.

Poll asks the scheduler for the state of every job of a site in one call; for the jobs
that are running it then reads their ``runner/progress.json`` files, all of them in ONE
more remote command, and stores each as compact JSON on the run (``remoteRun.progress``)
for ``show``. The file is **untrusted data**: bounded in size, parsed as strict JSON,
its format and version checked, and only the known counters (non-negative integers)
and the ``at``, ``started`` and ``end`` times (short strings) are kept. A file that is
missing, too large or malformed is skipped (progress is a display, never a reason to fail a poll).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from remotebridge import jobfolder as jf
from remotebridge.poll.remote_files import strict_loads
from remotebridge.ssh.base import Link

MAX_BYTES = 4096
"""A progress file is a few hundred bytes; anything above is not read."""
COUNTERS = ("done", "failed", "running", "left", "not_started", "tasks", "workers")
"""The fields of the runner's progress that poll keeps."""
PHASES = ("pre", "cmd", "post")
"""The runner's phases (``rbdispatch.PHASES``) whose counts poll keeps."""
TIMES = ("at", "started", "end")
"""The times poll keeps (short strings): last rewrite, runner start, walltime end."""

# job folders as arguments; frames each progress file as '<size> <dir>\n<bytes>'
PROGRESS_SCRIPT = r"""
lim=$1; shift
for d; do
  f="$d/runner/progress.json"
  [ -f "$f" ] || continue
  n=$(wc -c < "$f" | tr -d ' ')
  [ "$n" -le "$lim" ] || continue
  printf '%s %s\n' "$n" "$d"
  head -c "$n" -- "$f"
done
exit 0
"""


def fetch_progress(link: Link, job_dirs: Sequence[str]) -> dict[str, str]:
    """``{job_dir: compact progress JSON}`` for those of ``job_dirs`` whose runner wrote a
    readable progress file (one remote call; none when ``job_dirs`` is empty)."""
    if not job_dirs:
        return {}
    result = link.run(["sh", "-c", PROGRESS_SCRIPT, "rb-poll-progress", str(MAX_BYTES),
                       *job_dirs], timeout=120)
    return parse_frames(result.stdout, set(job_dirs))


def parse_frames(raw: bytes, wanted: set[str]) -> dict[str, str]:
    """The frames of :data:`PROGRESS_SCRIPT`'s output; a frame for a folder not asked
    about, or one that does not parse, ends the reading or is skipped."""
    found: dict[str, str] = {}
    pos = 0
    while pos < len(raw):
        eol = raw.find(b"\n", pos)
        if eol < 0:
            break
        size, _, name = raw[pos:eol].decode("utf-8", "replace").partition(" ")
        if not size.isdigit() or int(size) > MAX_BYTES or name not in wanted:
            break
        body, pos = raw[eol + 1:eol + 1 + int(size)], eol + 1 + int(size)
        compact = parse_progress(body)
        if compact is not None:
            found[name] = compact
    return found


def parse_progress(body: bytes) -> str | None:
    """The kept fields of one progress file as compact JSON, or None when it is not a
    progress document (``jf.PROGRESS``) of our version."""
    try:
        doc = strict_loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        return None
    if not isinstance(doc, dict) or doc.get("format") != jf.PROGRESS.format \
            or doc.get("version") != jf.PROGRESS.version:
        return None
    kept: dict[str, Any] = {k: doc[k] for k in COUNTERS
                            if type(doc.get(k)) is int and doc[k] >= 0}
    for key in TIMES:
        if isinstance(doc.get(key), str) and len(doc[key]) <= 40:
            kept[key] = doc[key]
    phases = _phases(doc.get("phases"))
    if phases:
        kept["phases"] = phases
    if doc.get("final") is True:
        kept["final"] = True
    return json.dumps(kept, sort_keys=True, separators=(",", ":"))


def _phases(raw: Any) -> dict[str, dict[str, int | float]]:
    """The known phases' ``tasks``/``done`` (non-negative integers) and ``elapsed``
    (non-negative seconds); anything else is dropped."""
    if not isinstance(raw, dict):
        return {}
    kept: dict[str, dict[str, int | float]] = {}
    for phase in PHASES:
        got = raw.get(phase)
        if not isinstance(got, dict):
            continue
        one: dict[str, int | float] = {k: got[k] for k in ("tasks", "done")
                                       if type(got.get(k)) is int and got[k] >= 0}
        if type(got.get("elapsed")) in (int, float) and 0 <= got["elapsed"] < 1e9:
            one["elapsed"] = got["elapsed"]
        if one:
            kept[phase] = one
    return kept


def describe_phases(progress: str | None) -> str:
    """One line for ``show``: ``pre 2/2 (3.1 s), cmd 5/10 (600.0 s), post 0/2``."""
    try:
        phases = json.loads(progress or "").get("phases")
    except (ValueError, AttributeError):
        return ""
    if not isinstance(phases, dict):
        return ""
    parts = []
    for phase in PHASES:  # stored with sorted keys; shown in the runner's order
        c = phases.get(phase)
        if not isinstance(c, dict):
            continue
        text = f"{phase} {c.get('done', '?')}/{c.get('tasks', '?')}"
        parts.append(text + (f" ({c['elapsed']} s)" if c.get("elapsed") else ""))
    return ", ".join(parts)


def describe(progress: str | None) -> str:
    """One line for ``show``: ``done 12, failed 1, running 8, left 30 ... (at ...)``."""
    if not progress:
        return ""
    try:
        doc = json.loads(progress)
    except ValueError:
        return ""
    parts = [f"{k.replace('_', ' ')} {doc[k]}" for k in COUNTERS if k in doc]
    return ", ".join(parts) + (f" (at {doc['at']})" if "at" in doc else "")


def _when(doc: dict[str, Any], key: str) -> datetime | None:
    """An ISO time of the stored progress, None when absent or not one (or naive)."""
    try:
        when = datetime.fromisoformat(str(doc.get(key)))
    except ValueError:
        return None
    return when if when.tzinfo is not None else None


def estimated_end(progress: str | None) -> str | None:
    """When the runner should be through, as ISO UTC, or None when unknown.

    The runner's rate so far (elapsed since it started / tasks done) times the tasks
    still to finish (left and running), from the time of the progress file; the file's
    own time once nothing is left. Unknown without a start time or before a task is done.
    """
    try:
        doc = json.loads(progress or "")
    except ValueError:
        return None
    if not isinstance(doc, dict):
        return None
    at, started = _when(doc, "at"), _when(doc, "started")
    done = doc.get("done")
    todo = sum(doc.get(k, 0) for k in ("left", "running") if type(doc.get(k)) is int)
    if at is None:
        return None
    if not todo:
        return at.isoformat(timespec="seconds")
    if started is None or type(done) is not int or done <= 0:
        return None
    return (at + (at - started) / done * todo).isoformat(timespec="seconds")


def describe_end(progress: str | None) -> str:
    """One line for ``show``: ``estimated end ...`` (with a warning past the walltime end)
    or ``estimated end unknown``."""
    end = estimated_end(progress)
    if end is None:
        return "estimated end unknown"
    try:
        wall = _when(json.loads(progress or ""), "end")
    except ValueError:
        wall = None
    if wall is not None and datetime.fromisoformat(end) > wall:
        return (f"estimated end {end} (after the walltime end {wall.isoformat()}: "
                "what does not fit is reported not started)")
    return f"estimated end {end}"
