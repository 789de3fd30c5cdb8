"""Write a job folder: every file atomically, the whole folder published by one rename.

Files are written into ``<path_base>/.remote_<id>.staging-<pid>/`` (each through a
temporary file and ``os.replace``), then the staging folder is renamed to
``remote_<id>``. A folder left by an earlier attempt is moved aside and removed, so
a reader never sees a half-written job folder.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Mapping
from pathlib import Path

EXECUTABLE = {"job.sh", "rbhelper.py"}


def atomic_write(path: Path, text: str, mode: int = 0o644) -> None:
    """Write ``text`` to ``path`` through a temporary file and a rename."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_folder(target: Path, files: Mapping[str, str]) -> Path:
    """Write ``files`` (relative name -> text) as the folder ``target``."""
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = target.parent / f".{target.name}.staging-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    made: set[Path] = set()
    try:
        for name, text in files.items():
            path = staging / name
            if path.parent not in made:
                path.parent.mkdir(parents=True, exist_ok=True)
                made.add(path.parent)
            atomic_write(path, text, 0o755 if name in EXECUTABLE else 0o644)
        _publish(staging, target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return target


def _publish(staging: Path, target: Path) -> None:
    old = None
    if target.exists():
        old = target.parent / f".{target.name}.old-{os.getpid()}"
        os.replace(target, old)
    os.replace(staging, target)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
