"""exec: check the link, push the job folder and missing inputs, submit once.

``exec_runs(engine, config, remote_id=, label=, limit=, progress=)`` is the library
behind ``remotetool exec``; see :mod:`remotebridge.exec.runner`.
"""

from __future__ import annotations

from remotebridge.exec.folder import JobFolder, JobFolderError, folder_files, open_folder
from remotebridge.exec.inputs import InputPush, MissingInputs, check_inputs, push_inputs
from remotebridge.exec.runner import (
    FAULT_INPUT_MISSING,
    FAULT_JOB_FOLDER,
    ExecOutcome,
    exec_runs,
    summary,
)
from remotebridge.exec.submit import Submitted, new_token, submit_once, token_attempt

__all__ = [
    "FAULT_INPUT_MISSING", "FAULT_JOB_FOLDER", "ExecOutcome", "InputPush", "JobFolder",
    "JobFolderError", "MissingInputs", "Submitted", "check_inputs", "exec_runs",
    "folder_files", "new_token", "open_folder", "push_inputs", "submit_once", "summary",
    "token_attempt",
]
