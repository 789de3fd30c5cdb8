"""``remotetool poll``: job status, job summary, product return, dbinfo replay, retries.

See docs/poll.md. Entry points: :func:`poll_runs` (one round) and :func:`poll_until`
(rounds until the selection has left ``run`` or the time is up).
"""

from __future__ import annotations

from remotebridge.poll.faults import (
    FAULT_ABANDONED,
    FAULT_DBINFO_REFUSED,
    FAULT_JOB_UNREADABLE,
    FAULT_MALFORMED,
    FAULT_OTHER,
    FAULT_PRODUCT_MISSING,
    FAULT_UNSAFE_ARCHIVE,
    PollFault,
)
from remotebridge.poll.runner import PollOutcome, poll_runs, poll_until, runs_in_run

__all__ = [
    "FAULT_ABANDONED", "FAULT_DBINFO_REFUSED", "FAULT_JOB_UNREADABLE", "FAULT_MALFORMED",
    "FAULT_OTHER", "FAULT_PRODUCT_MISSING", "FAULT_UNSAFE_ARCHIVE", "PollFault",
    "PollOutcome", "poll_runs", "poll_until", "runs_in_run",
]
