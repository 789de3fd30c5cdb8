"""Push one bundle home -> site: a tar built on the fly, each file installed atomically.

The stream (PAX format so any name fits; headers by :mod:`tarfile`, file data moved
by the kernel with ``sendfile``) goes straight into the stdin of ``rbtransfer.py
unpack`` on the front end (sent inline, ``python -c``, so no copy on the site is
needed); member names are the remote paths without the leading ``/``. The helper
makes missing parent folders, writes each file into a hidden
``.rb-push-<pid>@<host>-*`` folder beside its final path (the same filesystem) and
renames it into place once it is whole: a cut mid-push never leaves a short file at
a final path. Files are ours (no owner kept) and stamped with the time of arrival,
so a scratch purge by age does not take a freshly pushed input. Afterwards ONE
remote call reads the sizes of every file of the bundle and each file whose size
differs is reported as failed.
"""

from __future__ import annotations

import os
import stat
import subprocess
import tarfile
import time
from collections.abc import Callable

from remotebridge.errors import RemoteCommandFailed, TransferError
from remotebridge.remote import inline_transfer_argv
from remotebridge.ssh.base import Link
from remotebridge.transfer.bundles import Bundle, BundleResult, FileSpec
from remotebridge.transfer.verify import remote_sizes, size_problems

ByteCallback = Callable[[int], None]
"""Called with the number of payload bytes that just moved."""

DEFAULT_PYTHON = "python3"
"""The site's python that runs the helper when the caller names none."""


def extract_argv(python: str = DEFAULT_PYTHON) -> list[str]:
    """The remote side of a push: unpack the stream from stdin, atomically per file."""
    return inline_transfer_argv(python, "unpack")

STREAM_BUFSIZE = 1 << 20
"""Read size of a pulled tar stream."""
SENDFILE_CHUNK = 1 << 22
"""Bytes one ``sendfile`` call may move (progress is reported per call)."""


def _tarinfo(spec: FileSpec, st: os.stat_result) -> tarfile.TarInfo:
    info = tarfile.TarInfo(spec.member)
    info.type = tarfile.REGTYPE
    info.size = st.st_size
    info.mode = (stat.S_IMODE(st.st_mode) | 0o600) & 0o755
    info.mtime = int(time.time())
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    return info


class _TarStream:
    """A ustar/PAX stream written straight into a pipe: :mod:`tarfile` makes each
    member's header, the kernel copies the file's bytes (``sendfile``), so the data
    never passes through Python (``tarfile.addfile`` copies it twice in 16 KB pieces,
    which on a 2-core front end competes with ssh for the CPU)."""

    def __init__(self, fd: int, on_bytes: ByteCallback | None) -> None:
        self._fd, self._on_bytes, self.offset = fd, on_bytes, 0

    def _write(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            view = view[os.write(self._fd, view):]
        self.offset += len(data)

    def add(self, info: tarfile.TarInfo, src: int) -> None:
        """One member: header, ``info.size`` bytes of ``src``, padding to a block."""
        self._write(info.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape"))
        done = 0
        while done < info.size:
            n = os.sendfile(self._fd, src, done, min(info.size - done, SENDFILE_CHUNK))
            if n == 0:
                raise TransferError(f"{info.name}: the file shrank while it was sent")
            done += n
            if self._on_bytes is not None:
                self._on_bytes(n)
        self.offset += done
        self._write(tarfile.NUL * (-done % tarfile.BLOCKSIZE))

    def close(self) -> None:
        """The end-of-archive blocks, padded to a whole record as tar writes them."""
        end = self.offset + 2 * tarfile.BLOCKSIZE
        self._write(tarfile.NUL * (end - self.offset + (-end % tarfile.RECORDSIZE)))


def _add_file(tar: _TarStream, spec: FileSpec, sent: dict[str, int],
              skipped: list[tuple[FileSpec, str]]) -> None:
    """Append one local file to the stream, or note why it cannot go."""
    try:
        f = open(spec.local, "rb")  # noqa: SIM115 - closed below
    except OSError as exc:
        skipped.append((spec, f"cannot read {spec.local}: {exc.strerror}"))
        return
    with f:
        st = os.fstat(f.fileno())
        if not stat.S_ISREG(st.st_mode):
            skipped.append((spec, f"{spec.local} is not a regular file"))
            return
        if spec.known_size and st.st_size != spec.size:
            skipped.append((spec, f"{spec.local} is {st.st_size} bytes, the list says "
                                  f"{spec.size}"))
            return
        try:
            tar.add(_tarinfo(spec, st), f.fileno())
        except BrokenPipeError:
            raise
        except OSError as exc:
            raise TransferError(f"{spec.local} changed while it was sent: {exc}") from exc
    sent[spec.remote] = st.st_size


def _send(link: Link, bundle: Bundle, on_bytes: ByteCallback | None, timeout: float | None,
          sent: dict[str, int], skipped: list[tuple[FileSpec, str]], python: str) -> str:
    """Stream the bundle into the remote helper; returns its complaint, if any."""
    try:
        with link.open_process(extract_argv(python), stdin=subprocess.PIPE,
                               timeout=timeout) as proc:
            assert proc.stdin is not None
            try:
                tar = _TarStream(proc.stdin.fileno(), on_bytes)
                for spec in bundle.files:
                    _add_file(tar, spec, sent, skipped)
                tar.close()
            except BrokenPipeError:
                pass  # the remote tar stopped reading: its exit status says why
    except RemoteCommandFailed as exc:
        return last_line(exc)
    return ""


def last_line(exc: RemoteCommandFailed) -> str:
    """The last line of a failed command's stderr (or the error itself)."""
    lines = exc.evidence.stderr.strip().splitlines()
    return lines[-1][:300] if lines else str(exc)


def push_bundle(link: Link, bundle: Bundle, *, on_bytes: ByteCallback | None = None,
                timeout: float | None = 3600.0,
                python: str = DEFAULT_PYTHON) -> BundleResult:
    """Send ``bundle`` over ``link`` and verify every file's size on the host.

    Files that cannot be read locally, or whose local size differs from the list,
    are not sent (reported failed). ``python`` runs the helper on the site. Link
    faults (:class:`LinkDown`, :class:`TransientLinkError`) propagate so the caller
    can retry elsewhere.
    """
    sent: dict[str, int] = {}
    skipped: list[tuple[FileSpec, str]] = []
    tar_error = _send(link, bundle, on_bytes, timeout, sent, skipped, python)
    problems = size_problems(sent, remote_sizes(link, list(sent)), link.host)
    by_remote = {spec.remote: spec for spec in bundle.files}
    moved = [by_remote[r] for r in sent if r not in problems]
    failed = list(skipped)
    for remote, reason in problems.items():
        failed.append((by_remote[remote], f"{reason}; tar: {tar_error}" if tar_error else reason))
    # the far side stopped reading mid-file (a cut): that file and the rest never went
    accounted = {s.remote for s, _ in skipped} | set(sent)
    failed += [(spec, f"not sent ({tar_error or 'the site stopped reading'})")
               for spec in bundle.files if spec.remote not in accounted]
    return BundleResult(bundle, link.host, moved, failed,
                        bytes_moved=sum(sent[s.remote] for s in moved))
