"""Fan bundles out over every front end: ``jobs_per_link`` bundles at a time on each.

One worker thread per (link, job): each takes the next bundle from one shared queue
(largest first), so a faster front end simply takes more bundles (least-loaded
without bookkeeping). Every remote process still takes one of its master's session
slots (:class:`~remotebridge.ssh.slots.SessionSlots`), which bounds the channels on
a master across all local processes.

Faults: a bundle that fails with :class:`TransientLinkError` goes back to the queue
once, for another front end (the same one if it is the only one left). A link that
answers :class:`LinkDown` stops taking work and its bundle goes back to the others;
when every link is down, :func:`push`/:func:`pull` raise :class:`LinkDown`. Every
other failure (unreadable file, size mismatch, unsafe archive) is reported in the
:class:`TransferReport`, never raised.
"""

from __future__ import annotations

import functools
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from remotebridge.errors import BridgeError, LinkDown, LinkError, TransientLinkError
from remotebridge.ssh.base import Link
from remotebridge.transfer.bundles import (
    DEFAULT_BUNDLE_BYTES,
    Bundle,
    BundleResult,
    FileSpec,
    check_unique,
    plan_bundles,
)
from remotebridge.transfer.pull import STALE_STAGING_SECONDS, pull_bundle, sweep_staging
from remotebridge.transfer.push import DEFAULT_PYTHON, ByteCallback, push_bundle

Progress = Callable[[int, int], None]
"""``progress(bytes_done, bytes_total)``, called from worker threads (serialized)."""

BundleWorker = Callable[..., BundleResult]

DEFAULT_JOBS_PER_LINK = 4


@dataclass
class TransferReport:
    """What a push or pull did: counts of what moved, per front end, and what failed."""

    files: int = 0
    bytes: int = 0
    bundles: int = 0
    seconds: float = 0.0
    per_link: dict[str, int] = field(default_factory=dict)
    failed: list[FileSpec] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    swept: int = 0
    """Stale staging folders of killed pulls removed before this pull."""

    @property
    def rate_mb_s(self) -> float:
        """Payload rate in MB/s (10^6 bytes per second)."""
        return self.bytes / 1e6 / self.seconds if self.seconds > 0 else 0.0

    @property
    def ok(self) -> bool:
        """True when nothing failed."""
        return not self.failed and not self.errors


@dataclass
class _Item:
    bundle: Bundle
    tries: int = 0
    avoid: str | None = None


class _Scheduler:
    """The shared queue of bundles, the live links, and the report being built."""

    def __init__(self, links: Sequence[Link], bundles: list[Bundle],
                 progress: Progress | None) -> None:
        self.cond = threading.Condition()
        self.queue = [_Item(b) for b in sorted(bundles, key=lambda b: (-b.bytes, b.index))]
        self.live = {link.host for link in links}
        self.in_flight = 0
        self.report = TransferReport(per_link={link.host: 0 for link in links})
        self.link_down: LinkDown | None = None
        self.total = sum(b.bytes for b in bundles)
        self.done_bytes = 0
        self.progress = progress
        self.stopped = False

    def stop(self) -> None:
        """No new bundle starts (the caller was interrupted); running ones finish."""
        with self.cond:
            self.stopped = True
            self.cond.notify_all()

    def take(self, host: str) -> _Item | None:
        """The next bundle for ``host``; None when there is nothing left (or it is down)."""
        with self.cond:
            while True:
                if host not in self.live or self.stopped:
                    return None
                for i, item in enumerate(self.queue):
                    if item.avoid != host or self.live == {host}:
                        self.in_flight += 1
                        return self.queue.pop(i)
                if self.in_flight == 0:
                    return None
                self.cond.wait()

    def add_bytes(self, n: int) -> None:
        """Count ``n`` payload bytes towards the progress callback."""
        with self.cond:
            self.done_bytes += n
            if self.progress is not None:
                self.progress(self.done_bytes, self.total)

    def finish(self, result: BundleResult) -> None:
        """Record a bundle that reached the far side (some files may have failed)."""
        with self.cond:
            rep = self.report
            rep.files += len(result.moved)
            rep.bytes += result.bytes_moved
            rep.bundles += 1
            rep.per_link[result.host] = rep.per_link.get(result.host, 0) + result.bytes_moved
            for spec, reason in result.failed:
                rep.failed.append(spec)
                rep.errors.append(f"{spec.local} <-> {spec.remote}: {reason}")
            self._release()

    def give_up(self, item: _Item, host: str, exc: BaseException) -> None:
        """Record a bundle that failed as a whole."""
        with self.cond:
            self.report.failed.extend(item.bundle.files)
            self.report.errors.append(
                f"bundle {item.bundle.index} ({len(item.bundle)} files) on {host}: {exc}")
            self._release()

    def requeue(self, item: _Item, host: str, *, down: LinkDown | None = None) -> None:
        """Put a bundle back for another link (after a transient fault or a dead link)."""
        with self.cond:
            if down is not None:
                self.live.discard(host)
                self.link_down = down
            else:
                item.tries += 1
                item.avoid = host
            self.queue.append(item)
            self._release()

    def forget_bytes(self, n: int) -> None:
        """Take back the progress of a failed attempt."""
        self.add_bytes(-n)

    def _release(self) -> None:
        self.in_flight -= 1
        self.cond.notify_all()


def _attempt(sched: _Scheduler, link: Link, item: _Item, worker: BundleWorker) -> None:
    """Run one bundle on one link and file the outcome with the scheduler."""
    moved = 0

    def on_bytes(n: int) -> None:
        nonlocal moved
        moved += n
        sched.add_bytes(n)

    try:
        result = worker(link, item.bundle, on_bytes=on_bytes)
    except LinkDown as exc:
        sched.forget_bytes(moved)
        sched.requeue(item, link.host, down=exc)
    except TransientLinkError as exc:
        sched.forget_bytes(moved)
        if item.tries == 0:
            sched.requeue(item, link.host)
        else:
            sched.give_up(item, link.host, exc)
    except (BridgeError, LinkError, OSError) as exc:
        sched.forget_bytes(moved)
        sched.give_up(item, link.host, exc)
    except BaseException as exc:
        sched.give_up(item, link.host, exc)
        sched.stop()  # an interruption: start no more bundles anywhere
        raise
    else:
        sched.finish(result)


def _worker_loop(sched: _Scheduler, link: Link, worker: BundleWorker) -> None:
    while (item := sched.take(link.host)) is not None:
        _attempt(sched, link, item, worker)


def run_bundles(links: Sequence[Link], bundles: list[Bundle], worker: BundleWorker, *,
                jobs_per_link: int = DEFAULT_JOBS_PER_LINK,
                progress: Progress | None = None) -> TransferReport:
    """Move ``bundles`` with ``worker(link, bundle, on_bytes=...)`` over all ``links``."""
    if not links:
        raise ValueError("no links to transfer over")
    if len({link.host for link in links}) != len(links):
        raise ValueError("two links to the same host")
    jobs = max(1, jobs_per_link)
    sched = _Scheduler(links, bundles, progress)
    start = time.monotonic()
    with ThreadPoolExecutor(max_workers=len(links) * jobs,
                            thread_name_prefix="rb-transfer") as pool:
        # interleaved (fe1, fe2, fe3, fe1, ...) so the first bundles go round-robin
        futures = [pool.submit(_worker_loop, sched, link, worker)
                   for _ in range(jobs) for link in links]
        try:
            for fut in futures:
                fut.result()
        except BaseException:
            sched.stop()  # e.g. Ctrl-C: let the bundles in flight end, start no more
            raise
    sched.report.seconds = time.monotonic() - start
    if sched.queue:
        assert sched.link_down is not None
        raise LinkDown(f"every front end is down; {len(sched.queue)} bundles not moved",
                       evidence=sched.link_down.evidence) from sched.link_down
    return sched.report


def push(links: Sequence[Link], files: Sequence[FileSpec], *,
         bundle_bytes: int = DEFAULT_BUNDLE_BYTES,
         jobs_per_link: int = DEFAULT_JOBS_PER_LINK,
         progress: Progress | None = None, python: str = DEFAULT_PYTHON) -> TransferReport:
    """Copy local files to their remote paths as tar bundles over every link
    (``python``: the site's python that unpacks them, atomically per file)."""
    check_unique(files, "remote")
    return run_bundles(links, plan_bundles(files, bundle_bytes),
                       functools.partial(push_bundle, python=python),
                       jobs_per_link=jobs_per_link, progress=progress)


def pull(links: Sequence[Link], files: Sequence[FileSpec], *,
         bundle_bytes: int = DEFAULT_BUNDLE_BYTES,
         jobs_per_link: int = DEFAULT_JOBS_PER_LINK,
         progress: Progress | None = None,
         stale_after: float = STALE_STAGING_SECONDS) -> TransferReport:
    """Copy remote files to their local paths as tar bundles over every link; first
    sweep the staging folders killed pulls left beside them (``report.swept``)."""
    check_unique(files, "local")
    check_unique(files, "remote")
    swept = sweep_staging([f.local for f in files], stale_after)
    report = run_bundles(links, plan_bundles(files, bundle_bytes), pull_bundle,
                         jobs_per_link=jobs_per_link, progress=progress)
    report.swept = swept
    return report


__all__ = ["ByteCallback", "Progress", "TransferReport", "pull", "push", "run_bundles"]
