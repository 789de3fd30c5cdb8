"""What moves: files (a local path, a remote path, a size) grouped into tar bundles.

Small files transfer badly one at a time (a channel, a process and a round trip
each); a stream of ~100 MB tar bundles keeps every front end busy. A bundle is a
list of whole files: a file is never split, and a file larger than the target size
travels alone. Planning is deterministic: the same list gives the same bundles.

Remote paths are the member names of the tar (without the leading ``/``, extracted
with ``-C /``), so they must be absolute and normalized: no ``.`` or ``..``
components, no empty components, no NUL. Anything else is refused before a byte
moves (:class:`~remotebridge.errors.TransferError`).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from remotebridge.errors import TransferError

DEFAULT_BUNDLE_BYTES = 100_000_000
"""Target size of one bundle (the field log: 100 MB bundles beat 10 MB ones)."""

DEFAULT_MAX_FILES = 20_000
"""Most files in one bundle, however small they are (bounds per-bundle lists)."""

TAR_HEADER_BYTES = 512
"""What a member costs in a tar beyond its data (one header block, at least)."""

UNKNOWN_SIZE = -1
"""``FileSpec.size`` when the size is not known in advance (pull of a new product)."""


@dataclass(frozen=True)
class FileSpec:
    """One file to move: ``local`` path at home, absolute ``remote`` path on the site.

    ``size`` is the expected size in bytes, or :data:`UNKNOWN_SIZE` (-1); ``sha256`` the
    expected content digest, or "" (not checked).
    """

    local: str
    remote: str
    size: int = UNKNOWN_SIZE
    sha256: str = ""

    @property
    def known_size(self) -> bool:
        """True when ``size`` is a real byte count (not -1)."""
        return self.size >= 0

    @property
    def member(self) -> str:
        """The tar member name: the remote path without its leading ``/`` (validated)."""
        return member_name(self.remote)


@dataclass(frozen=True)
class Bundle:
    """Files that travel in one tar stream; ``index`` is its place in the plan."""

    index: int
    files: tuple[FileSpec, ...]

    @property
    def bytes(self) -> int:
        """Sum of the known sizes of its files."""
        return sum(max(f.size, 0) for f in self.files)

    def __len__(self) -> int:
        return len(self.files)


def member_name(remote: str) -> str:
    """The tar member name of an absolute remote path; raise TransferError if unsafe.

    >>> member_name("/scratch/u/a b.fits")
    'scratch/u/a b.fits'
    """
    if not remote.startswith("/"):
        raise TransferError(f"remote path is not absolute: {remote!r}")
    if "\0" in remote:
        raise TransferError(f"remote path holds a NUL byte: {remote!r}")
    parts = remote[1:].split("/")
    if not parts or any(p in ("", ".", "..") for p in parts):
        raise TransferError(
            f"remote path must be normalized (no '.', '..', '//' or trailing '/'): {remote!r}")
    return remote[1:]


def _cost(spec: FileSpec) -> int:
    """Bytes a file adds to a bundle (its data and a header; unknown sizes count 0)."""
    return max(spec.size, 0) + TAR_HEADER_BYTES


def plan_bundles(files: Iterable[FileSpec], bundle_bytes: int = DEFAULT_BUNDLE_BYTES, *,
                 max_files: int = DEFAULT_MAX_FILES) -> list[Bundle]:
    """Group ``files`` (in the given order) into bundles of about ``bundle_bytes``.

    A bundle is closed when the next file would take it past ``bundle_bytes`` (data
    plus 512 bytes of header per file) or past ``max_files`` files; a file larger
    than ``bundle_bytes`` is a bundle of its own. Every file lands in exactly one
    bundle and the order of files is kept. Remote paths are validated here.
    """
    if bundle_bytes < 1:
        raise ValueError("bundle_bytes must be positive")
    if max_files < 1:
        raise ValueError("max_files must be positive")
    bundles: list[Bundle] = []
    current: list[FileSpec] = []
    used = 0
    for spec in files:
        member_name(spec.remote)
        cost = _cost(spec)
        if current and (used + cost > bundle_bytes or len(current) >= max_files):
            bundles.append(Bundle(len(bundles), tuple(current)))
            current, used = [], 0
        current.append(spec)
        used += cost
    if current:
        bundles.append(Bundle(len(bundles), tuple(current)))
    return bundles


def check_unique(files: Sequence[FileSpec], key: str) -> None:
    """Refuse two files with the same ``key`` (``"local"`` or ``"remote"``) destination."""
    seen: set[str] = set()
    for spec in files:
        value = getattr(spec, key)
        if value in seen:
            raise TransferError(f"{key} path listed twice: {value!r}")
        seen.add(value)


@dataclass
class BundleResult:
    """What became of one bundle: files moved and verified, files that failed and why."""

    bundle: Bundle
    host: str
    moved: list[FileSpec]
    failed: list[tuple[FileSpec, str]]
    bytes_moved: int = 0
    """Bytes of the files that arrived and were verified (their real sizes)."""
