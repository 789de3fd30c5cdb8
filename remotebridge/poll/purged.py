"""Inputs purged from the site between exec's check and the job's start.

The job's first step, ``rbhelper.py precheck``, checks every input of
``inputs.manifest`` (size, and digest when the manifest has one). When some are gone
(the site purges scratch by age) the job ends before any task starts, with exit code
:data:`EXIT_INPUTS_MISSING` and a job summary whose header says ``inputs_missing``.
Poll then sends the run back to ``pending`` (exec pushes what is missing again and
submits anew) without counting an attempt against any component.
"""

from __future__ import annotations

import json

from remotebridge.errors import BridgeError
from remotebridge.poll.remote_files import SUMMARY_FORMAT
from remotebridge.remote.rbhelper import EXIT_INPUTS_MISSING
from remotebridge.ssh.base import Link

__all__ = ["EXIT_INPUTS_MISSING", "InputsPurged", "clear_summary", "raise_if_purged"]

_CLEAR = 'cd -- "$1" || exit 3\nrm -f job_summary.jsonl\n'


class InputsPurged(BridgeError):
    """The job ended before its first task: inputs were gone from the site."""

    def __init__(self, count: int, first: str) -> None:
        super().__init__(f"{count} inputs gone on the site before the job started"
                         + (f" (first {first})" if first else "") + "; purged by age?")
        self.count, self.first = count, first


def raise_if_purged(summary: bytes | None) -> None:
    """InputsPurged when the job summary's header (untrusted) says inputs were missing."""
    line = (summary or b"").split(b"\n", 1)[0]
    try:
        head = json.loads(line)
    except ValueError:
        return  # not ours to judge: the summary parser reports bad data
    if not isinstance(head, dict) or head.get("format") != SUMMARY_FORMAT:
        return
    count = head.get("inputs_missing")
    if type(count) is not int or count <= 0:
        return
    paths = head.get("inputs_missing_paths")
    first = paths[0] if isinstance(paths, list) and paths and isinstance(paths[0], str) else ""
    raise InputsPurged(count, first[:500])


def clear_summary(link: Link, job_dir: str) -> None:
    """Delete the early summary, so that the next poll does not take it for the new job's."""
    link.run(["sh", "-c", _CLEAR, "rb-poll-clear", job_dir], timeout=300)
