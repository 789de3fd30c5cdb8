"""A cross-process semaphore: at most N sessions open on one ControlMaster at a time.

sshd allows 10 sessions per connection by default; past that the OpenSSH client
silently opens a *new* connection (a new login, a new one-time token). Every
remotebridge process on this host takes one of N slot files beside the socket
(``<socket>.slot.<i>``) with ``flock(LOCK_EX | LOCK_NB)`` before it opens a
channel, and gives it back when the command ends. The kernel drops a lock when
its process dies, so a killed process never leaks a slot.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import random
import time
from collections.abc import Iterator
from pathlib import Path

from remotebridge.errors import TransientLinkError


class SessionSlots:
    """N lock files beside ``socket_path``; :meth:`acquire` holds one of them."""

    def __init__(self, socket_path: str | os.PathLike[str], count: int, *,
                 timeout: float = 120.0, poll: float = 0.02) -> None:
        """``timeout``: seconds to wait for a free slot before giving up (transient)."""
        if count < 1:
            raise ValueError("count must be at least 1")
        self.base = Path(socket_path)
        self.count = count
        self.timeout = timeout
        self.poll = poll

    def path(self, index: int) -> Path:
        """The lock file of slot ``index``."""
        return self.base.with_name(f"{self.base.name}.slot.{index}")

    def _try_all(self) -> tuple[int, int] | None:
        start = random.randrange(self.count)  # spread waiters over the slots
        for k in range(self.count):
            index = (start + k) % self.count
            fd = os.open(self.path(index), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                continue
            return index, fd
        return None

    @contextlib.contextmanager
    def acquire(self) -> Iterator[int]:
        """Hold one slot for the block; yields its index.

        Raises :class:`TransientLinkError` when none frees up within ``timeout``.
        """
        deadline = time.monotonic() + self.timeout
        delay = self.poll
        while True:
            got = self._try_all()
            if got is not None:
                break
            if time.monotonic() >= deadline:
                raise TransientLinkError(
                    f"all {self.count} sessions of {self.base.name} stayed busy for "
                    f"{self.timeout:g} s")
            time.sleep(delay * (0.5 + random.random()))
            delay = min(delay * 1.5, 0.25)
        index, fd = got
        try:
            yield index
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)

    def busy(self) -> int:
        """How many slots are held right now (by any process)."""
        held = 0
        for index in range(self.count):
            try:
                fd = os.open(self.path(index), os.O_RDWR | os.O_CLOEXEC)
            except FileNotFoundError:
                continue
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                fcntl.flock(fd, fcntl.LOCK_UN)
            except BlockingIOError:
                held += 1
            finally:
                os.close(fd)
        return held
