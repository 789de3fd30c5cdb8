"""Read-only views of a run beyond ``list``/``show``: counts per state, creation times,
and what its local job folder holds (allocation, products list, task logs, named files).

Used by the status page (:mod:`remotebridge.web`); nothing here writes. Files are
read only from inside the run's own job folder (``<path_base>/remote_<id>``): a name
that leaves it (``..``, an absolute path, a symbolic link pointing out) is refused
with :class:`~remotebridge.errors.NotFoundError`, as if absent.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, func, select

from remotebridge.db.bridge import RemoteRun
from remotebridge.db.engine import read_session
from remotebridge.errors import NotFoundError
from remotebridge.prepare.paths import resolve_uri

#: the job folder files an operator may open, in the order they are listed
FOLDER_FILES = ("job.sh", "plan.jsonl", "inputs.manifest", "outputs.manifest",
                "allocation.json", "job.json", "outdirs.list")
LOG_DIR = "logs"
#: most bytes of one log shown (its end is kept: that is where the error is)
LOG_TAIL_BYTES = 16 * 1024
#: words of the exec/poll notes that carry transfer figures (see exec.runner.summary)
TRANSFER_WORDS = ("pushed ", "pulled ", " bytes")
#: most log files listed for one run
MAX_LOGS = 50


@dataclass(frozen=True)
class LogFile:
    """One file under the job folder's ``logs/``, with its (tail of) text."""

    name: str
    """Path relative to the job folder, e.g. ``logs/task-3.log``."""
    size: int
    text: str
    truncated: bool


@dataclass(frozen=True)
class ProductRef:
    """One line of outputs.manifest: where a product lives at home."""

    local: str
    stage_id: int
    permanent: bool


def state_counts(engine: Engine, *, label: str | None = None,
                 stage: str | None = None) -> dict[str, int]:
    """How many runs are in each state (only states that have runs)."""
    query = select(RemoteRun.state, func.count()).group_by(RemoteRun.state)
    if label is not None:
        query = query.where(RemoteRun.label == label)
    if stage is not None:
        query = query.where(RemoteRun.stage == stage)
    with read_session(engine) as session:
        return {state: int(n) for state, n in session.execute(query).all()}


def created_times(engine: Engine, ids: Sequence[int] | None = None) -> dict[int, datetime]:
    """Each run's creation time (``remoteRun.created``), by remote_id (all runs, or
    those of ``ids``)."""
    query = select(RemoteRun.remote_id, RemoteRun.created)
    if ids is not None:
        query = query.where(RemoteRun.remote_id.in_(list(ids)))
    with read_session(engine) as session:
        rows = session.execute(query).all()
        return {rid: created for rid, created in rows}


def run_note(engine: Engine, remote_id: int) -> str:
    """The run's current note (the last command's summary, e.g. transfer figures)."""
    with read_session(engine) as session:
        run = session.get(RemoteRun, remote_id)
        if run is None:
            raise NotFoundError(f"no remote run {remote_id}")
        return run.note or ""


def transfer_lines(history: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The history lines that carry transfer figures (exec's push summary, poll's pull)."""
    return [h for h in history
            if any(word in (h.get("note") or "") for word in TRANSFER_WORDS)]


def job_folder(path_base: str, remote_id: int) -> Path:
    """The run's local job folder (``<path_base>/remote_<id>``)."""
    return Path(resolve_uri(path_base)) / f"remote_{remote_id}"


def read_allocation(folder: Path) -> dict[str, Any] | None:
    """The job's allocation.json (nodes, tasks, walltime, steps); None if absent/unreadable."""
    try:
        data = json.loads((folder / "allocation.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def present_files(folder: Path) -> list[str]:
    """The names of :data:`FOLDER_FILES` that exist (as regular files) in the folder."""
    return [name for name in FOLDER_FILES if _inside(folder, name) is not None]


def read_products(folder: Path) -> list[ProductRef]:
    """The products listed in outputs.manifest (empty when it is absent or malformed)."""
    try:
        lines = (folder / "outputs.manifest").read_text(encoding="utf-8").splitlines()
    except OSError:
        return []
    out = []
    for line in lines[1:]:
        fields = line.split("\t")
        if line.startswith("#") or len(fields) < 4 or not fields[3].isdigit():
            continue
        out.append(ProductRef(fields[1], int(fields[3]), fields[2] == "1"))
    return out


def read_logs(folder: Path) -> list[LogFile]:
    """The files under ``logs/`` (names sorted), each with the tail of its text."""
    root = folder / LOG_DIR
    if not root.is_dir() or _inside(folder, LOG_DIR, want_dir=True) is None:
        return []
    logs = []
    for path in sorted(root.rglob("*"))[:MAX_LOGS]:
        name = path.relative_to(folder).as_posix()
        real = _inside(folder, name)
        if real is not None:
            logs.append(_tail(name, real))
    return logs


def open_file(folder: Path, name: str) -> Path:
    """The real path of ``name`` inside the job folder (a listed file or one under logs/).

    NotFoundError when the name is not one of those, leaves the folder (``..``, an
    absolute path, a symbolic link out) or is not a regular file.
    """
    allowed = name in FOLDER_FILES or (name.startswith(LOG_DIR + "/") and "\\" not in name)
    real = _inside(folder, name) if allowed else None
    if real is None:
        raise NotFoundError(f"no file {name!r} in the job folder {folder}")
    return real


def _inside(folder: Path, name: str, *, want_dir: bool = False) -> Path | None:
    """``folder/name`` resolved, if it stays inside the folder and is a file (or dir)."""
    if not name or name.startswith("/") or "\0" in name or ".." in name.split("/"):
        return None
    try:
        base = folder.resolve(strict=True)
        real = (folder / name).resolve(strict=True)
    except (OSError, RuntimeError):
        return None
    if not real.is_relative_to(base):
        return None
    ok = real.is_dir() if want_dir else real.is_file()
    return real if ok else None


def _tail(name: str, path: Path) -> LogFile:
    size = path.stat().st_size
    with path.open("rb") as fh:
        if size > LOG_TAIL_BYTES:
            fh.seek(size - LOG_TAIL_BYTES, os.SEEK_SET)
        data = fh.read(LOG_TAIL_BYTES)
    return LogFile(name, size, data.decode("utf-8", errors="replace"), size > LOG_TAIL_BYTES)
