#!/usr/bin/env python3
# ruff: noqa: UP006, UP007, UP017, UP035, UP045
# (pyupgrade targets our own 3.11; this file must stay Python 3.6 code, like rbhelper.py)
"""rbtransfer: the site side of transfers (python3 standard library only, 3.6+).

Sent inline (``python -c SOURCE``) by every push and pull, so a transfer never
depends on a helper copy an older exec left on the site:

  rbtransfer.py sizes                for NUL-separated ``A<anchor>``, ``R<root>`` and
                                     ``P<path>`` records on stdin, print ``<type> <size>
                                     <i|o|-> <path>\0`` per path: lstat type, size, real
                                     path inside a root or not
  rbtransfer.py unpack [--stale S]   extract a plain tar from stdin, each file written in
                                     a staging folder beside it, then renamed into place

See docs/transfer.md, "Rules for what a pull may read and what it leaves".
"""

import argparse
import os
import shutil
import signal
import socket
import stat
import sys
import tarfile
import tempfile
import time
from typing import Optional

# --- sizes: what a pull may read ------------------------------------------------------

FILE_TYPES = ((stat.S_ISREG, "reg"), (stat.S_ISLNK, "link"), (stat.S_ISDIR, "dir"),
              (stat.S_ISFIFO, "fifo"), (stat.S_ISSOCK, "sock"), (stat.S_ISCHR, "chr"),
              (stat.S_ISBLK, "blk"))


def file_type(mode: int) -> str:
    """The short name of the file type in an lstat mode (``reg``, ``link``, ``sock``...)."""
    for test, name in FILE_TYPES:
        if test(mode):
            return name
    return "other"


def real_roots(roots: list, anchors: list) -> set:
    """The real paths of the roots reached without a link below their anchor.

    An anchor is a folder whose own path the site owns (the configured scratch and
    permanent roots; else the common folder of the run's folders): links above it are
    the site's layout and followed. A root counts only when its real path is its
    anchor's real path plus the rest of its own path: a root (or a folder between it
    and its anchor) replaced by a link lends nothing, its target is not the run's."""
    out = set()
    for root in roots:
        covering = [a for a in anchors if root == a or root.startswith(a.rstrip("/") + "/")]
        if not covering:
            continue
        anchor = max(covering, key=len)
        rest = root[len(anchor.rstrip("/")):].lstrip("/")
        expected = os.path.join(os.path.realpath(anchor), rest)
        try:
            is_dir = stat.S_ISDIR(os.lstat(root).st_mode)
        except OSError:
            continue
        real = os.path.realpath(root)
        if is_dir and real == os.path.normpath(expected):
            out.add(real)
    return out


def is_inside(real: str, roots: set) -> bool:
    """True when the real path ``real`` lies in one of the (real) ``roots``."""
    folder = os.path.dirname(real)
    while True:
        if folder in roots:
            return True
        parent = os.path.dirname(folder)
        if parent == folder:
            return False
        folder = parent


def describe(path: str, roots: set) -> str:
    """``<type> <size> <i|o|-> <path>``: never follows the last component (lstat)."""
    try:
        st = os.lstat(path)
    except OSError:
        return "missing -1 - " + path
    flag = "i" if is_inside(os.path.realpath(path), roots) else "o"
    return f"{file_type(st.st_mode)} {st.st_size} {flag} {path}"


def cmd_sizes(args: argparse.Namespace) -> int:
    """Describe every ``P`` path of stdin against the ``R`` roots (see the module doc)."""
    records = [os.fsdecode(r) for r in sys.stdin.buffer.read().split(b"\0") if r]
    roots = real_roots([r[1:] for r in records if r[:1] == "R"],
                       [r[1:] for r in records if r[:1] == "A"])
    out = sys.stdout.buffer
    for rec in records:
        if rec[:1] == "P":
            out.write(os.fsencode(describe(rec[1:], roots)) + b"\0")
    out.flush()
    return 0


# --- unpack: pushes that are atomic per file -----------------------------------------

STAGING_PUSH = ".rb-push-"
STALE_SECONDS = 1800


def owner_tag() -> str:
    """``<pid>@<host>`` of this process, for the names of its staging folders."""
    host = "".join(c if c.isalnum() or c in ".-" else "_" for c in socket.gethostname())
    return "{}@{}".format(os.getpid(), host or "unknown")


def owner_alive(name: str, prefix: str) -> bool:
    """Whether the process named in a staging folder's name may still be running.

    Only a process of this host can be asked; one of another host (or a name with no
    owner) counts as gone, the age rule alone decides then."""
    tag = name[len(prefix):].rsplit("-", 1)[0]
    pid, _, host = tag.partition("@")
    if not pid.isdigit() or host != owner_tag().partition("@")[2]:
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True  # alive, another user's
    return True


def newest_mtime(path: str) -> float:
    """The latest mtime of a folder and its direct entries."""
    times = [os.lstat(path).st_mtime]
    for entry in os.scandir(path):
        try:
            times.append(entry.stat(follow_symlinks=False).st_mtime)
        except OSError:
            continue
    return max(times)


def sweep_stale(parent: str, prefix: str, stale_after: float) -> int:
    """Remove the staging folders ``parent/<prefix>*`` left by dead processes (older
    than ``stale_after`` seconds, owner not alive); returns how many were removed.

    Each is first renamed to a name of ours (atomic: of two sweepers one wins, and
    one killed while removing leaves a folder the next sweep takes)."""
    swept = 0
    try:
        entries = [e for e in os.scandir(parent) if e.name.startswith(prefix)]
    except OSError:
        return 0
    for entry in entries:
        try:
            if not entry.is_dir(follow_symlinks=False) or owner_alive(entry.name, prefix) \
                    or time.time() - newest_mtime(entry.path) < stale_after:
                continue
            claimed = os.path.join(parent, f"{prefix}{owner_tag()}-swept")
            os.rename(entry.path, claimed)
        except OSError:
            continue
        shutil.rmtree(claimed, ignore_errors=True)
        swept += 1
    return swept


def exit_on_signals() -> None:
    """Hang-up and termination raise SystemExit, so ``finally`` blocks clean up."""
    def stop(signum: int, _frame: object) -> None:
        raise SystemExit(128 + signum)
    for sig in (signal.SIGHUP, signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, stop)


def unpack_member(tf: tarfile.TarFile, member: tarfile.TarInfo, stages: dict,
                  stale_after: float) -> bool:
    """Write one regular member beside its final path, then rename it into place."""
    name = member.name
    if name.startswith("/") or not member.isreg() \
            or any(p in ("", ".", "..") for p in name.split("/")):
        sys.stderr.write(f"rbhelper: unpack: member {name!r} refused\n")
        return False
    dest = "/" + name
    parent = os.path.dirname(dest)
    try:
        if parent not in stages:
            os.makedirs(parent, exist_ok=True)
            sweep_stale(parent, STAGING_PUSH, stale_after)
            stages[parent] = tempfile.mkdtemp(prefix=STAGING_PUSH + owner_tag() + "-",
                                              dir=parent)
        tmp = os.path.join(stages[parent], str(member.offset))
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, (member.mode & 0o777) | 0o600)
        src = tf.extractfile(member)
        with os.fdopen(fd, "wb") as out:
            if src is not None:
                shutil.copyfileobj(src, out, 1 << 20)
        os.replace(tmp, dest)
    except OSError as exc:
        sys.stderr.write(f"rbhelper: unpack: {dest}: {exc.strerror}\n")
        return False
    return True


def cmd_unpack(args: argparse.Namespace) -> int:
    """Extract the tar on stdin (names relative to /); exit 1 if a member failed."""
    exit_on_signals()
    stages = {}  # type: dict
    ok = True
    try:
        with tarfile.open(fileobj=sys.stdin.buffer, mode="r|") as tf:
            for member in tf:
                ok = unpack_member(tf, member, stages, args.stale) and ok
    except (tarfile.TarError, EOFError) as exc:
        sys.stderr.write(f"rbhelper: unpack: the stream broke off: {exc}\n")
        ok = False
    finally:
        for folder in stages.values():
            shutil.rmtree(folder, ignore_errors=True)
    return 0 if ok else 1


def parser() -> argparse.ArgumentParser:
    """The command-line parser."""
    p = argparse.ArgumentParser(prog="rbtransfer.py", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="cmd")
    sub.required = True  # the keyword needs 3.7
    sub.add_parser("sizes")
    sub.add_parser("unpack").add_argument("--stale", type=float, default=STALE_SECONDS)
    return p


def main(argv: Optional[list] = None) -> int:
    """Entry point."""
    args = parser().parse_args(argv)
    return {"sizes": cmd_sizes, "unpack": cmd_unpack}[args.cmd](args)


if __name__ == "__main__":
    sys.exit(main())
