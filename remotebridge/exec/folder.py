"""What exec reads from a local job folder: where it goes, which files, which inputs.

The folder is the one ``remotetool prepare`` wrote (docs/formats.md). Exec pushes
every file of it to ``job_dir`` (from ``job.json``) except what the job itself makes
on the remote side and poll may have brought home (``status/``, ``dbinfo/``,
``job_summary.jsonl``, the scheduler's output files, and any local path named in
``outputs.manifest``): pushing those back would hand a new attempt stale results.
"""

from __future__ import annotations

import json
import os
import posixpath
from dataclasses import dataclass
from pathlib import Path

from remotebridge.errors import BridgeError
from remotebridge.transfer import FileSpec

JOB_MADE_DIRS = frozenset({"status", "dbinfo"})
"""Top-level folders of the job folder that the job writes on the remote side."""

JOB_MADE_FILES = ("job_summary.jsonl",)
JOB_MADE_PREFIXES = ("job.", "rb_local.")
JOB_MADE_SUFFIXES = (".out", ".err")

INPUTS_HEADER = "# remotebridge.inputs v1"
OUTPUTS_HEADER = "# remotebridge.outputs v1"


class JobFolderError(BridgeError):
    """The local job folder is missing or unreadable (prepare it again)."""


@dataclass(frozen=True)
class InputFile:
    """One line of ``inputs.manifest``."""

    local: str
    remote: str
    size: int
    area: str = "scratch"
    shared: bool = False

    def spec(self) -> FileSpec:
        """The transfer spec (local -> remote, expected size)."""
        return FileSpec(self.local, self.remote, self.size)


@dataclass(frozen=True)
class JobFolder:
    """A prepared job folder at home and its remote twin."""

    local: Path
    job_dir: str

    @property
    def script(self) -> str:
        """The remote path of the batch script."""
        return posixpath.join(self.job_dir, "job.sh")

    @property
    def helper(self) -> str:
        """The remote path of ``rbhelper.py``."""
        return posixpath.join(self.job_dir, "rbhelper.py")

    @property
    def manifest(self) -> str:
        """The remote path of ``inputs.manifest``."""
        return posixpath.join(self.job_dir, "inputs.manifest")


def open_folder(local: str | os.PathLike[str]) -> JobFolder:
    """Read ``job.json`` of the folder; JobFolderError when it is not a prepared folder."""
    path = Path(local)
    try:
        info = json.loads((path / "job.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise JobFolderError(f"cannot read {path / 'job.json'}: {exc}",
                             hint="prepare the run again ('remotetool revert --to new ID' then "
                                  "'remotetool prepare')") from exc
    job_dir = info.get("job_dir") if isinstance(info, dict) else None
    if not isinstance(job_dir, str) or not job_dir.startswith("/"):
        raise JobFolderError(f"{path / 'job.json'} names no absolute job_dir")
    return JobFolder(path, posixpath.normpath(job_dir))


def _job_made(rel: str, outputs: set[str], full: str) -> bool:
    top, _, rest = rel.partition("/")
    if rest and top in JOB_MADE_DIRS:
        return True
    if not rest and (top in JOB_MADE_FILES or (top.startswith(JOB_MADE_PREFIXES)
                                               and top.endswith(JOB_MADE_SUFFIXES))):
        return True
    return full in outputs


def folder_files(folder: JobFolder) -> list[FileSpec]:
    """Every file exec pushes: the folder's files mapped under ``job_dir`` (sorted)."""
    outputs = {o for o in output_locals(folder.local)}
    specs: list[FileSpec] = []
    for dirpath, dirnames, filenames in os.walk(folder.local):
        dirnames.sort()
        for name in sorted(filenames):
            full = os.path.join(dirpath, name)
            rel = os.path.relpath(full, folder.local).replace(os.sep, "/")
            if name.endswith((".rbpart", ".tmp")) or _job_made(rel, outputs, full):
                continue
            specs.append(FileSpec(full, posixpath.join(folder.job_dir, rel),
                                  os.stat(full).st_size))
    return specs


def output_locals(local: Path) -> list[str]:
    """The local paths of ``outputs.manifest`` (empty when there is none)."""
    try:
        lines = (local / "outputs.manifest").read_text(encoding="utf-8").splitlines()
    except OSError:
        return []
    return [ln.split("\t")[1] for ln in lines[1:]
            if ln and not ln.startswith("#") and ln.count("\t") >= 1]


def read_inputs(local: Path) -> list[InputFile]:
    """The lines of ``inputs.manifest`` (JobFolderError for a wrong header)."""
    try:
        lines = (local / "inputs.manifest").read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise JobFolderError(f"cannot read {local / 'inputs.manifest'}: {exc}") from exc
    if not lines or lines[0].strip() != INPUTS_HEADER:
        raise JobFolderError(f"{local / 'inputs.manifest'}: not a remotebridge.inputs v1 file")
    files = []
    for n, line in enumerate(lines[1:], start=2):
        if not line.strip() or line.startswith("#"):
            continue
        parts = line.split("\t")
        if len(parts) < 3 or not parts[2].isdigit():
            raise JobFolderError(f"{local / 'inputs.manifest'}:{n}: bad line")
        area = parts[3] if len(parts) > 3 else "scratch"
        shared = len(parts) > 4 and parts[4] == "1"
        files.append(InputFile(parts[0], parts[1], int(parts[2]), area, shared))
    return files
