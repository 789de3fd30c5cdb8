"""What exec reads from a local job folder: where it goes, which files, which inputs.

The folder is the one ``remotetool prepare`` wrote (docs/formats.md). Exec pushes
every file of it to ``job_dir`` (from ``job.json``) except what the job itself makes
on the remote side and poll may have brought home (``status/``, ``dbinfo/``,
``job_summary.jsonl``, the scheduler's output files, and any local path named in
``outputs.manifest``): pushing those back would hand a new attempt stale results.
"""

from __future__ import annotations

import os
import posixpath
from dataclasses import dataclass
from pathlib import Path

from remotebridge import jobfolder as jf
from remotebridge.errors import JobFolderError
from remotebridge.jobfolder import InputLine as InputFile
from remotebridge.transfer import FileSpec

__all__ = ["InputFile", "JobFolder", "JobFolderError", "folder_files", "open_folder",
           "output_locals", "read_inputs"]


@dataclass(frozen=True)
class JobFolder:
    """A prepared job folder at home and its remote twin."""

    local: Path
    job_dir: str

    @property
    def script(self) -> str:
        """The remote path of the batch script."""
        return posixpath.join(self.job_dir, jf.SCRIPT.name)

    @property
    def helper(self) -> str:
        """The remote path of ``rbhelper.py``."""
        return posixpath.join(self.job_dir, jf.HELPER)

    @property
    def manifest(self) -> str:
        """The remote path of ``inputs.manifest``."""
        return posixpath.join(self.job_dir, jf.INPUTS.name)


def open_folder(local: str | os.PathLike[str]) -> JobFolder:
    """Read ``job.json`` of the folder; JobFolderError when it is not a prepared folder."""
    path = Path(local)
    return JobFolder(path, jf.remote_job_dir(path))


def _job_made(rel: str, outputs: set[str], full: str) -> bool:
    top, _, rest = rel.partition("/")
    if rest and top in jf.REMOTE_MADE_DIRS:
        return True
    if not rest and (top in jf.REMOTE_MADE_FILES
                     or (top.startswith(jf.SCHEDULER_OUTPUT_PREFIXES)
                         and top.endswith(jf.SCHEDULER_OUTPUT_SUFFIXES))):
        return True
    return full in outputs


def folder_files(folder: JobFolder) -> list[FileSpec]:
    """Every file exec pushes: the folder's files mapped under ``job_dir`` (sorted)."""
    outputs = set(output_locals(folder.local))
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
    """The local paths of ``outputs.manifest`` (empty when there is none; JobFolderError
    when it is not a remotebridge outputs manifest)."""
    if not (local / jf.OUTPUTS.name).exists():
        return []
    return [o.local for o in jf.read_outputs(local)]


def read_inputs(local: Path) -> list[InputFile]:
    """The lines of ``inputs.manifest`` (JobFolderError naming the file and line)."""
    return jf.read_inputs(local)
