"""Moving files between home and the site: tar bundles fanned out over the front ends.

The transfer code knows files and hosts, nothing of stages, runs or the database:
it takes :class:`~remotebridge.ssh.base.Link` objects (one per front end) and
:class:`FileSpec` lists (local path, remote path, size), and answers with a
:class:`TransferReport`. The same engine pushes inputs and pulls products.
See docs/transfer.md.
"""

from __future__ import annotations

from remotebridge.transfer.bundles import (
    DEFAULT_BUNDLE_BYTES,
    UNKNOWN_SIZE,
    Bundle,
    BundleResult,
    FileSpec,
    member_name,
    plan_bundles,
)
from remotebridge.transfer.fanout import (
    DEFAULT_JOBS_PER_LINK,
    Progress,
    TransferReport,
    pull,
    push,
    run_bundles,
)
from remotebridge.transfer.pull import pull_bundle
from remotebridge.transfer.push import push_bundle
from remotebridge.transfer.verify import remote_sizes

__all__ = [
    "DEFAULT_BUNDLE_BYTES", "DEFAULT_JOBS_PER_LINK", "UNKNOWN_SIZE", "Bundle", "BundleResult",
    "FileSpec", "Progress", "TransferReport", "member_name", "plan_bundles", "pull",
    "pull_bundle", "push", "push_bundle", "remote_sizes", "run_bundles",
]
