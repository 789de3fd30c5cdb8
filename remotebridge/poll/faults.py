"""Fault codes set by ``remotetool poll`` (documented in docs/poll.md).

Run faults (``remoteRun.fault``, run moved to ``error``, nothing applied):

* 31: a dbinfo record was refused (table or column not allowed, wrong type, a key
  of a stage run that is not a component of this run, an over-long string);
* 32: a file from the remote side is malformed (not strict JSON, unknown format or
  version, too large, wrong field types): the message names the file and line;
* 33: a tar bundle of products was unsafe (absolute path, ``..``, link, device);
* 35: the job ended but its folder or summary cannot be read (purged scratch,
  helper missing);
* 37: a product on the site is a symbolic link, or its real path leaves the run's own
  remote folders (the job folder and the planned output folders): not pulled;
* 38: a product on the site is not a regular file (socket, fifo, device, folder);
* 39: anything else that retrying will not fix;
* 40: the dbinfo records are not the planned ones (``expected.jsonl``): a planned
  record missing, a record never planned, or a value naming a file (uri, path) changed;
* 41: a product came home with another size or sha256 than the job recorded in its
  summary when it ended (changed on the site afterwards, or damaged on the way).

Component faults (``remoteComponent.fault`` and the stage run's ``fault``):

* 34: abandoned after ``max_attempts`` failed attempts;
* 36: a task succeeded but a permanent product is missing on the remote side
  (counted as a failed attempt).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from remotebridge.errors import BridgeError, JobFolderError

FAULT_DBINFO_REFUSED = 31
FAULT_MALFORMED = 32
FAULT_UNSAFE_ARCHIVE = 33
FAULT_ABANDONED = 34
FAULT_JOB_UNREADABLE = 35
FAULT_PRODUCT_MISSING = 36
FAULT_PRODUCT_LINK = 37
FAULT_PRODUCT_NOT_REGULAR = 38
FAULT_OTHER = 39
FAULT_NOT_PLANNED = 40
FAULT_PRODUCT_ALTERED = 41


class PollFault(BridgeError):
    """A problem with what the remote side sent: the run goes to ``error`` with ``fault``."""

    def __init__(self, message: str, *, fault: int, hint: str = "") -> None:
        super().__init__(message, hint=hint or "inspect the run ('remotetool show ID'); "
                         "'remotetool revert ID' retries the poll once fixed")
        self.fault = fault


@contextmanager
def local_folder_fault() -> Iterator[None]:
    """Turn a :class:`~remotebridge.errors.JobFolderError` (the local job folder is not
    what prepare wrote; the message names the file and line) into fault 35."""
    try:
        yield
    except JobFolderError as exc:
        raise PollFault(f"the local job folder: {exc.message}",
                        fault=FAULT_JOB_UNREADABLE) from exc
