"""The narrow interface every link to a site offers, and what all links share.

A :class:`Link` talks to ONE host (a front end). It runs an argv list there
(never a shell string: the argv is quoted for the remote shell by the
implementation, so a file name is always data), streams bytes in or out of a
remote command, and copies single files with ``cat`` streams over the same
channel (no scp, so the OpenSSH link always uses its master connection).

Errors (from :mod:`remotebridge.errors`):

* :class:`~remotebridge.errors.LinkDown`: no live master or it needs a new login;
* :class:`~remotebridge.errors.TransientLinkError`: a network fault worth retrying;
* :class:`~remotebridge.errors.HostKeyMismatch`: refused, never retried;
* :class:`~remotebridge.errors.UnsafeConfiguration`: a setting that would leak the login;
* :class:`~remotebridge.errors.RemoteCommandFailed`: the command ran and exited non-zero.

Only :meth:`Link.run` retries, and only on ``TransientLinkError`` (bounded in attempts
and in time, with tenacity); streams are never retried because their input is consumed.
"""

from __future__ import annotations

import abc
import contextlib
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import tenacity

from remotebridge.errors import (
    CommandEvidence,
    LinkError,
    RemoteCommandFailed,
    TransientLinkError,
)

DEFAULT_TIMEOUT = 120.0
"""Seconds one remote command may take before it counts as a transient fault."""

_COPY_CHUNK = 1 << 20

# put: write to a temp name beside the target, then rename (atomic on the remote side)
_PUT_SCRIPT = (
    'd=$(dirname -- "$1") && mkdir -p -- "$d" && '
    'cat > "$1.rbpart" && mv -f -- "$1.rbpart" "$1"'
)


@dataclass(frozen=True)
class Result:
    """What one remote command answered. ``stdout``/``stderr`` are raw bytes."""

    rc: int
    stdout: bytes = b""
    stderr: bytes = b""

    @property
    def out(self) -> str:
        """stdout decoded as UTF-8 (undecodable bytes replaced)."""
        return self.stdout.decode("utf-8", "replace")

    @property
    def err(self) -> str:
        """stderr decoded as UTF-8 (undecodable bytes replaced)."""
        return self.stderr.decode("utf-8", "replace")

    @property
    def ok(self) -> bool:
        """True when the command exited 0."""
        return self.rc == 0


@dataclass(frozen=True)
class RetryPolicy:
    """How :meth:`Link.run` retries transient faults: bounded in count and in time."""

    attempts: int = 4
    """Most tries in all (1 = no retry)."""
    deadline: float = 60.0
    """No new try starts after this many seconds since the first."""
    wait_initial: float = 0.5
    """First pause between tries (doubles each time)."""
    wait_max: float = 8.0
    """Longest pause between tries."""


def _evidence(host: str, argv: Sequence[str], rc: int | None, out: bytes, err: bytes,
              **extra: str) -> CommandEvidence:
    return CommandEvidence(
        argv=list(argv), rc=rc, host=host,
        stdout=out[-4000:].decode("utf-8", "replace"),
        stderr=err[-4000:].decode("utf-8", "replace"),
        extra=dict(extra),
    )


class Link(abc.ABC):
    """One host of a site: run argv lists there, stream bytes, copy files.

    Subclasses say how an argv becomes a local process (:meth:`_local_argv`,
    :meth:`_popen_kwargs`), how a failed process is classified (:meth:`_classify`),
    and may hold a session slot while a process runs (:meth:`_session`).
    """

    host: str
    retry: RetryPolicy = RetryPolicy()

    # --- hooks ------------------------------------------------------------------

    @abc.abstractmethod
    def _local_argv(self, argv: Sequence[str]) -> list[str]:
        """The local process that runs ``argv`` on the host."""

    def _popen_kwargs(self) -> dict[str, Any]:
        """Extra keyword arguments for ``subprocess.Popen`` (cwd, env)."""
        return {}

    @abc.abstractmethod
    def _classify(self, argv: Sequence[str], rc: int, out: bytes, err: bytes) -> LinkError:
        """The error for a process that exited ``rc != 0``."""

    def _preflight(self) -> None:  # noqa: B027 - optional hook, default does nothing
        """Raise before starting a process if the link is known to be unusable."""

    @contextlib.contextmanager
    def _session(self) -> Iterator[None]:
        """Held while one process runs (OpenSSH: one of the master's session slots)."""
        yield

    @abc.abstractmethod
    def check(self) -> bool:
        """True when a command can run on the host right now (never raises LinkError)."""

    # --- running ------------------------------------------------------------------

    def run(
        self,
        argv: Sequence[str],
        *,
        stdin: bytes | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        check: bool = True,
        retry: bool = True,
    ) -> Result:
        """Run ``argv`` on the host and return its :class:`Result`.

        With ``check`` a non-zero exit raises :class:`RemoteCommandFailed`; link
        faults always raise. ``retry=False`` for commands that must not run twice
        (e.g. a submission: the caller looks for the job by token instead).
        """
        if not argv:
            raise ValueError("empty argv")
        policy = self.retry if retry else RetryPolicy(attempts=1)
        retrying = tenacity.Retrying(
            retry=tenacity.retry_if_exception_type(TransientLinkError),
            stop=(tenacity.stop_after_attempt(max(1, policy.attempts))
                  | tenacity.stop_after_delay(policy.deadline)),
            wait=tenacity.wait_exponential(multiplier=policy.wait_initial,
                                           max=policy.wait_max),
            reraise=True,
        )
        return retrying(self._run_once, argv, stdin, timeout, check)

    def _run_once(self, argv: Sequence[str], stdin: bytes | None, timeout: float,
                  check: bool) -> Result:
        self._preflight()
        local = self._local_argv(argv)
        with self._session():
            proc = subprocess.Popen(
                local, stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL,
                stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True,
                **self._popen_kwargs(),
            )
            try:
                out, err = proc.communicate(stdin, timeout=timeout)
            except subprocess.TimeoutExpired:
                # do not wait for EOF: an ssh mux client hands its pipes to the master,
                # which keeps them open as long as the (stalled) session lives
                _kill(proc)
                out, err = _close_pipes(proc)
                raise TransientLinkError(
                    f"command timed out after {timeout:g} s",
                    evidence=_evidence(self.host, argv, None, out, err),
                ) from None
        return self._finish(argv, proc.returncode, out, err, check)

    def _finish(self, argv: Sequence[str], rc: int, out: bytes, err: bytes,
                check: bool) -> Result:
        if rc != 0:
            exc = self._classify(argv, rc, out, err)
            if not isinstance(exc, RemoteCommandFailed) or check:
                raise exc
        return Result(rc, out, err)

    @contextlib.contextmanager
    def open_process(
        self, argv: Sequence[str], *, stdin: IO[bytes] | int | None = None,
        stdout: IO[bytes] | int | None = None, timeout: float | None = None,
    ) -> Iterator[subprocess.Popen[bytes]]:
        """A running ``argv`` on the host, for large streams (tar in or out).

        ``stdin``/``stdout`` are file objects or ``subprocess.PIPE``; stderr is
        collected. On leaving the block the process is waited for (``timeout``
        seconds) and a failure raises like :meth:`run` (never retried).
        """
        self._preflight()
        local = self._local_argv(argv)
        with self._session(), tempfile.TemporaryFile() as errf:
            proc = subprocess.Popen(
                local, stdin=subprocess.DEVNULL if stdin is None else stdin,
                stdout=subprocess.DEVNULL if stdout is None else stdout, stderr=errf,
                start_new_session=True, **self._popen_kwargs(),
            )
            try:
                yield proc
            except BaseException:
                _kill(proc)
                raise
            finally:
                for pipe in (proc.stdin, proc.stdout):
                    if pipe is not None:
                        with contextlib.suppress(OSError):
                            pipe.close()
            try:
                rc = proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                _kill(proc)
                raise TransientLinkError(
                    f"stream timed out after {timeout:g} s",
                    evidence=_evidence(self.host, argv, None, b"", _read_all(errf)),
                ) from None
            self._finish(argv, rc, b"", _read_all(errf), True)

    def run_stream_in(self, argv: Sequence[str], source: IO[bytes], *,
                      timeout: float | None = None) -> Result:
        """Run ``argv`` with the bytes of ``source`` as its stdin."""
        with self.open_process(argv, stdin=subprocess.PIPE, timeout=timeout) as proc:
            assert proc.stdin is not None
            # if the remote side stops reading, its exit code tells why
            with contextlib.suppress(BrokenPipeError):
                shutil.copyfileobj(source, proc.stdin, _COPY_CHUNK)
        return Result(0)

    def run_stream_out(self, argv: Sequence[str], sink: IO[bytes], *,
                       timeout: float | None = None) -> Result:
        """Run ``argv`` and write its stdout into ``sink``."""
        with self.open_process(argv, stdout=subprocess.PIPE, timeout=timeout) as proc:
            assert proc.stdout is not None
            shutil.copyfileobj(proc.stdout, sink, _COPY_CHUNK)
        return Result(0)

    # --- files --------------------------------------------------------------------

    def put(self, local_path: str | os.PathLike[str], remote_path: str) -> None:
        """Copy one local file to ``remote_path`` (parent made; replaced atomically)."""
        with open(local_path, "rb") as src:
            self.run_stream_in(["sh", "-c", _PUT_SCRIPT, "rb-put", remote_path], src)

    def get(self, remote_path: str, local_path: str | os.PathLike[str]) -> None:
        """Copy one remote file to ``local_path`` (written to a temp name, then renamed)."""
        target = Path(local_path)
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
        try:
            with os.fdopen(fd, "wb") as sink:
                self.run_stream_out(["cat", "--", remote_path], sink)
            os.replace(tmp, target)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.host}>"


def _kill(proc: subprocess.Popen[bytes]) -> None:
    """Kill the process group of ``proc`` (it was started in its own session)."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, 9)
    with contextlib.suppress(Exception):
        proc.wait(timeout=5)


def _close_pipes(proc: subprocess.Popen[bytes]) -> tuple[bytes, bytes]:
    """Close our ends of the pipes of a killed process; nothing more is read."""
    for pipe in (proc.stdin, proc.stdout, proc.stderr):
        if pipe is not None:
            with contextlib.suppress(OSError):
                pipe.close()
    return b"", b""


def _read_all(f: IO[bytes]) -> bytes:
    f.seek(0)
    return f.read()
