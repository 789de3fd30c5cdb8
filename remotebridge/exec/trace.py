"""What an earlier submission left in the job folder: the start marker and output files.

Exec adopts by token while the scheduler remembers the job. When the submit answer
was lost AND the scheduler has forgotten the job (it finished and aged out of the
scheduler's memory), the job itself still says it ran: its first action writes the
start marker (:data:`remotebridge.jobfolder.STARTED`) with its token and job id. Before
a resubmission exec reads, in ONE remote call, that marker and the names of the
files in the job folder that carry the token (the local scheduler's
``rb_local.<token>.out``). A marker of this token: the job is adopted under the id it
names. Output without a marker: the earlier attempt ran but cannot be identified;
it is reported (:class:`EarlierAttemptFound`) and nothing is submitted.
Remote output is untrusted: only a well-formed marker of the expected token counts.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from remotebridge import jobfolder as jf
from remotebridge.errors import BridgeError
from remotebridge.ssh import Link

LOOK_SCRIPT = r"""
d=$1 token=$2 marker=$3
[ -f "$d/$marker" ] && head -c 1024 -- "$d/$marker" && echo
for f in "$d"/*"$token"*; do [ -f "$f" ] && printf 'output=%s\n' "${f##*/}"; done
exit 0
"""
"""$1 job folder, $2 token, $3 marker name; prints the marker's lines and output=NAME lines."""

_JOB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._\[\]-]{0,63}$")
_NAME = re.compile(r"^[A-Za-z0-9._-]{1,200}$")


class EarlierAttemptFound(BridgeError):
    """An earlier submission of this attempt left output but no start marker."""


@dataclass(frozen=True)
class StartTrace:
    """What the job folder shows of the submission with one token."""

    job_id: str | None
    outputs: tuple[str, ...] = ()
    marked: bool = False
    """A marker of this token is there (its job id may still be unusable)."""


def parse_trace(text: str, token: str) -> StartTrace:
    """The marker's job id (only if the marker names ``token``) and the output names."""
    fields: dict[str, str] = {}
    outputs: list[str] = []
    for line in text.splitlines():
        key, _, value = line.strip().partition("=")
        if key == "output" and _NAME.match(value) and token in value:
            outputs.append(value)
        elif key in ("token", "job_id") and key not in fields:
            fields[key] = value
    job_id = fields.get("job_id", "")
    marked = fields.get("token") == token
    usable = marked and _JOB_ID.match(job_id) is not None and job_id != "local"
    return StartTrace(job_id if usable else None, tuple(outputs), marked)


def adopt_or_report(trace: StartTrace, token: str) -> str | None:
    """The job id to adopt; None when nothing was left (EarlierAttemptFound when only
    traces without a usable id were)."""
    if trace.job_id is not None:
        return trace.job_id
    if trace.marked or trace.outputs:
        seen = ", ".join([jf.STARTED] * trace.marked + list(trace.outputs))
        raise EarlierAttemptFound(
            f"an earlier submission with token {token} ran (the job folder holds {seen}) "
            f"but cannot be identified; not submitted again",
            hint="check the job on the site; remove those files there to submit again")
    return None


def look_for_start(link: Link, job_dir: str, token: str) -> StartTrace:
    """ONE remote call: the start marker and token-named files in ``job_dir``."""
    argv = ["sh", "-c", LOOK_SCRIPT, "rb-look-start", job_dir, token, jf.STARTED]
    result = link.run(argv)
    return parse_trace(result.out if result.rc == 0 else "", token)


def earlier_job(link: Link, job_dir: str, token: str) -> str | None:
    """The job id of an earlier submission with ``token`` to adopt, from its start marker.

    None when the job folder holds nothing of it (submit afresh); EarlierAttemptFound
    when it holds traces that name no usable job.
    """
    return adopt_or_report(look_for_start(link, job_dir, token), token)
