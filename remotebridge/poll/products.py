"""Bringing the permanent products of finished components home.

The job folder's ``outputs.manifest`` (written at home by prepare, so trusted) lists
every product with its remote path, local path, ``permanent`` flag and component.
The permanent ones of the components whose tasks all succeeded are pulled with
:mod:`remotebridge.transfer` (tar bundles over every front end, extracted safely into
staging, verified, renamed into place). Each product must arrive with the size and
sha256 the job recorded in its summary (v2) when it ended; a product the job did not
record (absent then) counts as missing. An unsafe bundle raises
:class:`~remotebridge.poll.faults.PollFault` (fault 33), a product of another size or
content fault 41 (nothing of its bundle installed); files that do not exist on
the remote side are reported per component (the component failed); any other
transfer failure raises :class:`Deferred` (the run is polled again later).
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from remotebridge import jobfolder
from remotebridge.config import SiteConfig
from remotebridge.errors import BridgeError, ContentMismatch, UnsafeArchive
from remotebridge.jobfolder import OutputLine as Product
from remotebridge.poll.faults import (
    FAULT_PRODUCT_ALTERED,
    FAULT_UNSAFE_ARCHIVE,
    PollFault,
    local_folder_fault,
)
from remotebridge.ssh.base import Link
from remotebridge.transfer import (
    UNKNOWN_SIZE,
    BundleResult,
    FileSpec,
    plan_bundles,
    pull_bundle,
    remote_sizes,
    run_bundles,
)
from remotebridge.transfer.bundles import Bundle


class Deferred(BridgeError):
    """Something worth trying again at the next poll (the run stays in ``run``)."""


@dataclass
class PullOutcome:
    """What came home, and which components miss a product on the remote side."""

    files: int = 0
    bytes: int = 0
    seconds: float = 0.0
    missing: dict[int, list[str]] = field(default_factory=dict)
    swept: int = 0
    """Stale staging folders of killed pulls removed beside the products."""


def read_outputs(job_folder: Path) -> list[Product]:
    """The products listed in the local job folder's outputs.manifest (fault 35 when it
    is not what prepare wrote)."""
    with local_folder_fault():
        return jobfolder.read_outputs(job_folder)


def _specs(products: Sequence[Product], components: Collection[int],
           recorded: dict[str, tuple[int, str]] | None, outcome: PullOutcome
           ) -> dict[str, tuple[FileSpec, int]]:
    """What to pull, with the recorded size and digest; unrecorded products are missing."""
    specs = {}
    for p in products:
        if not p.permanent or p.stage_id not in components:
            continue
        if recorded is None:
            specs[p.remote] = (FileSpec(p.local, p.remote, UNKNOWN_SIZE), p.stage_id)
        elif p.remote in recorded:
            size, digest = recorded[p.remote]
            specs[p.remote] = (FileSpec(p.local, p.remote, size, digest), p.stage_id)
        else:
            outcome.missing.setdefault(p.stage_id, []).append(p.remote)
    return specs


def _checked_on_site(site: SiteConfig, links: Sequence[Link], products: Sequence[Product],
                     specs: dict[str, tuple[FileSpec, int]], job_dir: str,
                     outcome: PullOutcome) -> dict[str, tuple[FileSpec, int]]:
    """The specs still to pull after ONE call on the site: fault 37 for a link or a path
    leaving the run's folders (``job_dir`` and the planned ones), fault 38 for a socket,
    fifo, device or folder; a product absent on the site fails its
    component; an unrecorded size is taken from the site. Stale staging folders of
    killed pulls are swept (counted in ``outcome.swept``)."""
    from remotebridge.db.statemachine import lease_length
    from remotebridge.poll.remote_files import check_products, planned_roots
    from remotebridge.transfer.pull import sweep_staging

    roots = planned_roots(job_dir, [p.remote for p in products])
    sizes = check_products(links[0], list(specs), roots, python=site.remote_python or "python3",
                           anchors=[site.remote_root, site.permanent_root])
    outcome.swept = sweep_staging([s.local for s, _ in specs.values()],
                                  lease_length().total_seconds())
    kept: dict[str, tuple[FileSpec, int]] = {}
    for remote, (spec, sid) in specs.items():
        if remote not in sizes:
            outcome.missing.setdefault(sid, []).append(remote)
        elif spec.size == UNKNOWN_SIZE:
            kept[remote] = (FileSpec(spec.local, remote, sizes[remote]), sid)
        else:
            kept[remote] = (spec, sid)  # the recorded size and digest: the pull checks both
    return kept


def pull_products(site: SiteConfig, links: Sequence[Link], products: Sequence[Product],
                  components: Collection[int], *, job_dir: str = "",
                  recorded: dict[str, tuple[int, str]] | None = None) -> PullOutcome:
    """Pull the permanent products of ``components``; see the module docstring.

    Only products the job recorded in its summary (``recorded``: size and sha256) are
    pulled, and they must arrive as recorded (fault 38 otherwise). First ONE call
    checks them on the site (:func:`_checked_on_site`)."""
    outcome = PullOutcome()
    specs = _specs(products, components, recorded, outcome)
    if specs:
        specs = _checked_on_site(site, links, products, specs, job_dir, outcome)
    if not specs:
        return outcome
    unsafe: list[UnsafeArchive] = []
    altered: list[ContentMismatch] = []

    def worker(link: Link, bundle: Bundle, **kwargs: Any) -> BundleResult:
        try:
            return pull_bundle(link, bundle, **kwargs)
        except UnsafeArchive as exc:
            unsafe.append(exc)
            raise
        except ContentMismatch as exc:
            altered.append(exc)
            raise

    bundles = plan_bundles([s for s, _ in specs.values()], site.bundle_bytes)
    report = run_bundles(links, bundles, worker, jobs_per_link=site.jobs_per_frontend)
    if unsafe:
        raise PollFault(f"unsafe product bundle from the site: {unsafe[0]}",
                        fault=FAULT_UNSAFE_ARCHIVE)
    if altered:
        raise PollFault(f"a product is not what the job recorded: {altered[0]}",
                        fault=FAULT_PRODUCT_ALTERED)
    outcome.files, outcome.bytes, outcome.seconds = report.files, report.bytes, report.seconds
    if report.failed:
        _sort_failures(links[0], report.failed, report.errors, specs, outcome)
    return outcome


def _sort_failures(link: Link, failed: Sequence[FileSpec], errors: Sequence[str],
                   specs: dict[str, tuple[FileSpec, int]], outcome: PullOutcome) -> None:
    """Files absent on the site fail their component; anything else is retried later."""
    present = remote_sizes(link, [f.remote for f in failed])
    for spec in failed:
        if spec.remote in present:
            raise Deferred(f"{len(failed)} products could not be brought home; first: "
                           f"{errors[0] if errors else spec.remote}",
                           hint="poll again later; the transfer is safe to repeat")
        outcome.missing.setdefault(specs[spec.remote][1], []).append(spec.remote)
