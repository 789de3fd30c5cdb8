"""The error hierarchy of remotebridge.

Every error carries the evidence needed to act on it (the argv that ran, its exit
code and stderr, the file and key that were wrong, the run and state involved).
The library raises these; only the CLI layer turns them into one-line messages and
exit codes (see ``remotebridge.cli.exitcodes``), so library code never prints or
exits.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field


class BridgeError(Exception):
    """Base of every error remotebridge raises on purpose.

    ``hint`` says what to do next; the CLI prints it after the message.
    """

    hint: str = ""

    def __init__(self, message: str, *, hint: str = "") -> None:
        super().__init__(message)
        self.message = message
        if hint:
            self.hint = hint

    def __str__(self) -> str:
        return self.message


# --- configuration and usage -------------------------------------------------


class ConfigError(BridgeError):
    """The configuration file (or an environment override) is malformed."""

    def __init__(self, message: str, *, path: str = "", key: str = "", hint: str = "") -> None:
        where = f"{path}: " if path else ""
        what = f"[{key}] " if key else ""
        super().__init__(f"{where}{what}{message}", hint=hint or "fix the configuration file")
        self.path = path
        self.key = key


class UsageError(BridgeError):
    """The caller asked for something that makes no sense (bad stage name, bad option)."""


# --- the database and the state machine ---------------------------------------


class NotFoundError(BridgeError):
    """A run, label, stage or file that was named does not exist."""


class IllegalTransition(BridgeError):
    """A state change that the state machine does not allow from the run's current state."""

    def __init__(self, remote_id: int, current: str, wanted: str, *, hint: str = "") -> None:
        super().__init__(
            f"remote run {remote_id} is in state '{current}'; cannot move it to '{wanted}'",
            hint=hint or "see 'remotetool show ID' for its history",
        )
        self.remote_id = remote_id
        self.current = current
        self.wanted = wanted


class Refused(BridgeError):
    """A request that cannot be done in the current state (e.g. switch-user with live masters)."""


class SeveralFailed(BridgeError):
    """Some items of a many-item command failed (each already reported); the exit code
    is that of the first failure, kept as ``first``."""

    def __init__(self, message: str, first: BridgeError) -> None:
        super().__init__(message, hint=first.hint or "run the same command again when the "
                                                     "cause is fixed")
        self.first = first


class ConcurrentUpdate(BridgeError):
    """Another process moved the run first (the guarded UPDATE touched no row)."""

    def __init__(self, remote_id: int, expected: str) -> None:
        super().__init__(
            f"remote run {remote_id} left state '{expected}' while we worked on it "
            "(another process took it)",
            hint="nothing to do: the other process owns it now",
        )
        self.remote_id = remote_id
        self.expected = expected


class DatabaseUnavailable(BridgeError):
    """The database cannot be reached or is locked; worth retrying later."""


class SchemaOutdated(BridgeError):
    """The database schema is older (or newer) than this version of the code."""

    def __init__(self, current: str | None, wanted: str) -> None:
        super().__init__(
            f"database schema is at revision {current or 'none'}, the code needs {wanted}",
            hint="run 'remotetool db upgrade'",
        )
        self.current = current
        self.wanted = wanted


# --- preparing a job ------------------------------------------------------------


class PrepareError(BridgeError):
    """A run could not be prepared; names the component and the file at fault."""

    def __init__(
        self,
        message: str,
        *,
        component: int | None = None,
        path: str = "",
        fault: int = 0,
        hint: str = "",
    ) -> None:
        parts = [message]
        if component is not None:
            parts.append(f"component stage_id={component}")
        if path:
            parts.append(f"file {path!r}")
        super().__init__("; ".join(parts), hint=hint)
        self.component = component
        self.path = path
        self.fault = fault


class JobFolderError(BridgeError):
    """A file of a local job folder is missing, unreadable, of another format or version,
    or holds a bad line; the message names the file (and the line, when there is one)."""

    hint = ("prepare the run again ('remotetool revert --to new ID' then "
            "'remotetool prepare')")

    def __init__(self, message: str, *, path: str = "", line: int = 0, hint: str = "") -> None:
        where = f"{path}:{line}: " if path and line else (f"{path}: " if path else "")
        super().__init__(f"{where}{message}", hint=hint)
        self.path = path
        self.line = line


# --- the link to the remote site --------------------------------------------------


@dataclass
class CommandEvidence:
    """What ran and what it answered: kept on every link and scheduler error."""

    argv: Sequence[str] = ()
    rc: int | None = None
    stdout: str = ""
    stderr: str = ""
    host: str = ""
    extra: dict[str, str] = field(default_factory=dict)

    def summary(self) -> str:
        """One line: host, exit code and the last line of stderr."""
        tail = self.stderr.strip().splitlines()[-1:] if self.stderr else []
        bits = []
        if self.host:
            bits.append(f"host {self.host}")
        if self.rc is not None:
            bits.append(f"exit {self.rc}")
        if tail:
            bits.append(f"stderr: {tail[0][:300]}")
        return ", ".join(bits)


class EvidenceError(BridgeError):
    """An error about a command that ran (or tried to): carries its CommandEvidence."""

    def __init__(
        self, message: str, *, evidence: CommandEvidence | None = None, hint: str = ""
    ) -> None:
        self.evidence = evidence or CommandEvidence()
        detail = self.evidence.summary()
        super().__init__(f"{message} ({detail})" if detail else message, hint=hint)


class LinkError(EvidenceError):
    """Base of every failure to talk to the remote side."""


class LinkDown(LinkError):
    """No live master connection, or it needs a new login: the caller sets state ``auth``."""

    hint = "the key-card holder runs 'control-tool start'; the next exec/poll resumes the runs"


class TransientLinkError(LinkError):
    """A network fault worth retrying (timeout, connection reset, host unreachable)."""

    hint = "retry later; the command is safe to run again"


class HostKeyMismatch(LinkError):
    """The remote host key does not match known_hosts: refused, never retried."""

    hint = "verify the new host key out of band, then update the site's known_hosts"


class UnsafeConfiguration(LinkError):
    """A link setting that would leak or share the login (e.g. a world-writable socket dir)."""


class RemoteCommandFailed(LinkError):
    """The remote command ran and exited non-zero; its rc and stderr are in ``evidence``."""


class SchedulerError(EvidenceError):
    """The remote scheduler refused a request or answered in a form we cannot read."""


class TransferError(BridgeError):
    """A bundle could not be moved, verified or safely extracted."""


class ContentMismatch(TransferError):
    """A file that came over is not the size or sha256 recorded for it."""


class UnsafeArchive(TransferError):
    """A tar bundle from the remote side holds an absolute path, '..', or a link out."""
