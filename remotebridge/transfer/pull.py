"""Pull one bundle site -> home: a remote tar stream, extracted safely, then installed.

The front end runs ``tar -c`` over the requested paths (read NUL-separated from
stdin, so no argv limit and newlines in names are safe). Symbolic links are NOT
followed (no ``--dereference``): a product that is a link on the site arrives as a
link member and is refused here, even one swapped in after the caller's check on
the site (``rbtransfer.py sizes``, see poll). Hard links arrive as regular files.
The stream is **untrusted**: every member must be a regular file whose name is one
of the requested paths, with no absolute name, no ``..``, not a link, not a
device or fifo, passing :func:`tarfile.data_filter`, not larger than expected.
Anything else raises :class:`~remotebridge.errors.UnsafeArchive` naming the member,
and nothing of that bundle is installed.

Members are never extracted by name: each one's bytes are copied into a staging
file we name ourselves, in a hidden ``.rb-staging-*`` folder beside its destination
(same filesystem, so the final :func:`os.replace` is atomic). Only when the whole
stream has been read, the remote tar has exited, and every size checks out, are the
files renamed into place; the staging folders are always removed. A process killed
mid-pull leaves its folder (named ``.rb-staging-<pid>@<host>-*``):
:func:`sweep_staging` removes such folders once stale, at the start of every pull.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import tarfile
import tempfile
from collections.abc import Iterable
from pathlib import Path, PurePosixPath
from typing import IO

from remotebridge.digests import file_sha256
from remotebridge.errors import ContentMismatch, RemoteCommandFailed, TransferError, UnsafeArchive
from remotebridge.remote import rbtransfer
from remotebridge.ssh.base import Link
from remotebridge.transfer.bundles import Bundle, BundleResult, FileSpec
from remotebridge.transfer.push import STREAM_BUFSIZE, ByteCallback, last_line

CREATE_ARGV = ["tar", "-c", "-f", "-", "-C", "/", "--hard-dereference",
               "--no-recursion", "--null", "--no-unquote", "--verbatim-files-from", "-T", "-"]
"""The remote side of a pull: archive the NUL-separated names read from stdin. No
``--dereference``: a symbolic link travels as a link member, which is refused."""

STAGING_PREFIX = ".rb-staging-"
STALE_STAGING_SECONDS = 1800.0
"""A staging folder older than this (the poll lease) whose owner is gone is swept."""

_FILTER_ROOT = "/nonexistent/rb-staging"
_CHUNK = 1 << 20


class Staging:
    """Hidden staging folders, one per destination folder; :meth:`cleanup` removes them."""

    def __init__(self) -> None:
        self.dirs: dict[Path, Path] = {}
        self._count = 0

    def new_file(self, dest: str) -> Path:
        """A fresh staging path on the filesystem of ``dest`` (its parent is made)."""
        parent = Path(dest).absolute().parent
        if parent not in self.dirs:
            parent.mkdir(parents=True, exist_ok=True)
            self.dirs[parent] = Path(tempfile.mkdtemp(
                prefix=f"{STAGING_PREFIX}{rbtransfer.owner_tag()}-", dir=parent))
        self._count += 1
        return self.dirs[parent] / f"{self._count:06d}"

    def cleanup(self) -> None:
        """Remove every staging folder and whatever is left in it."""
        for d in self.dirs.values():
            shutil.rmtree(d, ignore_errors=True)
        self.dirs.clear()


def sweep_staging(locals_: Iterable[str], stale_after: float = STALE_STAGING_SECONDS) -> int:
    """Remove the stale staging folders beside the local paths ``locals_`` (older than
    ``stale_after`` seconds, owner not a live process of this host); returns how many.

    A pull killed mid-way (a poll's lease lost, a crash, ``kill -9``) leaves its
    ``.rb-staging-<pid>@<host>-*`` folder with partial copies; the next pull into the
    same folder takes it away."""
    parents = {os.path.dirname(os.path.abspath(p)) for p in locals_}
    return sum(rbtransfer.sweep_stale(d, STAGING_PREFIX, stale_after) for d in sorted(parents))


def check_member(member: tarfile.TarInfo, wanted: dict[str, FileSpec],
                 seen: set[str]) -> FileSpec:
    """The requested file ``member`` carries; raise UnsafeArchive if it is not safe."""
    name = member.name
    if name.startswith("/") or os.path.isabs(name):
        raise UnsafeArchive(f"archive member {name!r} has an absolute path")
    if ".." in PurePosixPath(name).parts:
        raise UnsafeArchive(f"archive member {name!r} climbs out with '..'")
    if member.issym() or member.islnk():
        raise UnsafeArchive(f"archive member {name!r} is a link (to {member.linkname!r})")
    if not member.isreg():
        kind = "a directory" if member.isdir() else f"a special file (type {member.type!r})"
        raise UnsafeArchive(f"archive member {name!r} is {kind}, not a regular file")
    try:
        tarfile.data_filter(member, _FILTER_ROOT)
    except tarfile.FilterError as exc:
        raise UnsafeArchive(f"archive member {name!r} refused by the data filter: {exc}") from exc
    spec = wanted.get(name)
    if spec is None:
        raise UnsafeArchive(f"archive member {name!r} was not requested")
    if name in seen:
        raise UnsafeArchive(f"archive member {name!r} appears twice")
    if spec.known_size and member.size > spec.size:
        raise UnsafeArchive(
            f"archive member {name!r} is {member.size} bytes, larger than the {spec.size} "
            "expected")
    if spec.known_size and member.size != spec.size:
        raise ContentMismatch(
            f"{spec.remote} is {member.size} bytes on the site, expected {spec.size}")
    return spec


def _stage(tf: tarfile.TarFile, member: tarfile.TarInfo, target: Path,
           on_bytes: ByteCallback | None) -> None:
    src = tf.extractfile(member)
    assert src is not None
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o666)
    with os.fdopen(fd, "wb") as out:
        while chunk := src.read(_CHUNK):
            out.write(chunk)
            if on_bytes is not None:
                on_bytes(len(chunk))


def read_stream(stream: IO[bytes], wanted: dict[str, FileSpec], staging: Staging,
                on_bytes: ByteCallback | None = None) -> dict[str, tuple[Path, int]]:
    """Check and stage every member of the tar ``stream``: ``{member: (staged, size)}``."""
    received: dict[str, tuple[Path, int]] = {}
    with tarfile.open(fileobj=stream, mode="r|", bufsize=STREAM_BUFSIZE) as tf:
        for member in tf:
            spec = check_member(member, wanted, set(received))
            target = staging.new_file(spec.local)
            _stage(tf, member, target, on_bytes)
            received[member.name] = (target, member.size)
    return received


def _names_file(names: list[str]) -> IO[bytes]:
    f = tempfile.TemporaryFile()  # noqa: SIM115 - returned open, closed by the caller
    f.write(b"".join(os.fsencode(n) + b"\0" for n in names))
    f.seek(0)
    return f


def _receive(link: Link, wanted: dict[str, FileSpec], staging: Staging,
             on_bytes: ByteCallback | None, timeout: float | None,
             ) -> tuple[dict[str, tuple[Path, int]], str]:
    """Run the remote tar and stage its stream; returns (received, tar's complaint)."""
    received: dict[str, tuple[Path, int]] = {}
    broken = ""
    try:
        with _names_file(list(wanted)) as names, link.open_process(
                CREATE_ARGV, stdin=names, stdout=subprocess.PIPE, timeout=timeout) as proc:
            assert proc.stdout is not None
            try:
                received = read_stream(proc.stdout, wanted, staging, on_bytes)
            except (tarfile.ReadError, EOFError) as exc:
                broken = str(exc) or type(exc).__name__
            while proc.stdout.read(_CHUNK):
                pass  # end-of-archive padding (or the rest of a broken stream)
    except RemoteCommandFailed as exc:
        if broken:
            raise TransferError(f"the tar stream from {link.host} broke off ({broken}): "
                                f"{last_line(exc)}") from exc
        return received, last_line(exc)
    if broken:
        raise TransferError(f"the tar stream from {link.host} is damaged: {broken}")
    return received, ""


def _install(bundle: Bundle, host: str, received: dict[str, tuple[Path, int]],
             tar_error: str) -> BundleResult:
    """Rename every verified staged file into place; the rest are failures."""
    moved: list[FileSpec] = []
    failed: list[tuple[FileSpec, str]] = []
    nbytes = 0
    for spec in bundle.files:
        got = received.get(spec.member)
        if got is None:
            failed.append((spec, f"not received from {host}: {tar_error or 'absent'}"))
            continue
        if tar_error and not spec.known_size:
            failed.append((spec, f"cannot be verified (tar on {host} failed: {tar_error})"))
            continue
        try:
            os.replace(got[0], spec.local)
        except OSError as exc:
            failed.append((spec, f"cannot install {spec.local}: {exc.strerror}"))
            continue
        moved.append(spec)
        nbytes += got[1]
    return BundleResult(bundle, host, moved, failed, bytes_moved=nbytes)


def check_digests(wanted: dict[str, FileSpec], received: dict[str, tuple[Path, int]]) -> None:
    """Refuse the bundle (nothing installed) when a staged file is not the sha256 its
    spec expects (:class:`ContentMismatch`)."""
    for name, (staged, _size) in received.items():
        spec = wanted[name]
        if spec.sha256:
            got = file_sha256(str(staged))
            if got != spec.sha256:
                raise ContentMismatch(f"{spec.remote} has sha256 {got[:16]}... on arrival, "
                                      f"the job recorded {spec.sha256[:16]}...")


def pull_bundle(link: Link, bundle: Bundle, *, on_bytes: ByteCallback | None = None,
                timeout: float | None = 3600.0) -> BundleResult:
    """Fetch ``bundle`` over ``link`` and install its files atomically, each in place.

    Raises :class:`UnsafeArchive` (nothing installed) for a hostile stream,
    :class:`TransferError` for a damaged one or a size mismatch, and link faults as
    they come (for the caller to retry). Files the remote tar could not read are
    reported failed; the others are installed.
    """
    wanted: dict[str, FileSpec] = {}
    for spec in bundle.files:
        if spec.member in wanted:
            raise TransferError(f"remote path listed twice: {spec.remote!r}")
        wanted[spec.member] = spec
    staging = Staging()
    try:
        received, tar_error = _receive(link, wanted, staging, on_bytes, timeout)
        check_digests(wanted, received)
        return _install(bundle, link.host, received, tar_error)
    finally:
        with contextlib.suppress(Exception):
            staging.cleanup()
