"""Write a job folder: every file atomically, the whole folder published by one rename.

The writing itself belongs to the job-folder module (:mod:`remotebridge.jobfolder`),
the one owner of the folder's files; these names stay here for prepare's callers.
"""

from __future__ import annotations

from remotebridge.jobfolder import EXECUTABLE, atomic_write, write_folder

__all__ = ["EXECUTABLE", "atomic_write", "write_folder"]
