"""The inputs of a job: ONE remote check of what is missing, then push only that.

``rbhelper.py check-inputs inputs.manifest`` runs on a front end and prints the
remote path of every input that is missing there, has another size or another
content (the manifest's sha256, computed at prepare). Those files
(and only those) are pushed as tar bundles fanned out over every live front end,
and the check runs once more to verify that nothing is still missing.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field

from remotebridge import digests
from remotebridge.config import SiteConfig
from remotebridge.errors import BridgeError, TransferError
from remotebridge.exec.folder import InputFile, JobFolder, read_inputs
from remotebridge.ssh import Link
from remotebridge.transfer import FileSpec, Progress, TransferReport, push

CHECK_TIMEOUT = 900.0
"""Seconds the remote check may take (it stats every input once)."""


class MissingInputs(BridgeError):
    """An input of the manifest cannot be read at home any more, or its size or content
    changed since prepare (a push would skip it every time): only a new prepare helps."""


@dataclass
class InputPush:
    """What the input step found and moved."""

    total: int = 0
    missing: int = 0
    report: TransferReport = field(default_factory=TransferReport)


def check_inputs(link: Link, site: SiteConfig, folder: JobFolder) -> list[str]:
    """The remote paths the site lacks (or holds with another size or sha256): one
    remote call."""
    result = link.run([site.remote_python or "python3", folder.helper, "check-inputs",
                       folder.manifest], timeout=CHECK_TIMEOUT)
    return [line for line in result.out.splitlines() if line]


def _unreadable(files: Sequence[InputFile]) -> list[str]:
    return [f.local for f in files if not os.access(f.local, os.R_OK)]


def _changed(files: Sequence[InputFile]) -> list[str]:
    """Inputs whose size or content at home is no longer what prepare listed (the
    digests come from the cache unless the file changed: nothing unchanged is hashed
    again)."""
    out, same_size = [], []
    for f in files:
        try:
            size = os.stat(f.local).st_size
        except OSError:
            continue  # unreadable: reported by _unreadable
        if size != f.size:
            out.append(f"{f.local} ({size} bytes, prepare listed {f.size})")
        elif f.sha256:
            same_size.append(f)
    try:
        sums = digests.digests(f.local for f in same_size)
    except OSError as exc:
        return [f"{exc.filename} ({exc.strerror})"]
    return out + [f"{f.local} (sha256 {sums[f.local][:12]}..., prepare listed "
                  f"{f.sha256[:12]}...)" for f in same_size if sums[f.local] != f.sha256]


def push_inputs(live: Sequence[Link], site: SiteConfig, folder: JobFolder, *,
                progress: Progress | None = None) -> InputPush:
    """Check, push what is missing over every live front end, verify (see module doc)."""
    inputs = read_inputs(folder.local)
    by_remote = {f.remote: f for f in inputs}
    missing = [by_remote[p] for p in check_inputs(live[0], site, folder) if p in by_remote]
    out = InputPush(total=len(inputs), missing=len(missing))
    if not missing:
        return out
    gone = _unreadable(missing)
    if gone:
        raise MissingInputs(f"{len(gone)} inputs cannot be read at home, e.g. {gone[0]}",
                            hint="prepare the run again once the files are back")
    changed = _changed(missing)
    if changed:
        raise MissingInputs(f"{len(changed)} inputs changed at home since prepare, "
                            f"e.g. {changed[0]}", hint="prepare the run again")
    specs = [FileSpec(f.local, f.remote, f.size) for f in missing]
    out.report = push(live, specs, bundle_bytes=site.bundle_bytes,
                      jobs_per_link=site.jobs_per_frontend, progress=progress,
                      python=site.remote_python or "python3")
    still = check_inputs(live[0], site, folder)
    if still:
        errors = "; ".join(out.report.errors[:2])
        raise TransferError(f"{len(still)} inputs still missing on the site after the push, "
                            f"e.g. {still[0]}" + (f" ({errors})" if errors else ""))
    return out
