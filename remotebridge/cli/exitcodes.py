"""Exit codes of remotetool and control-tool: the only place errors become numbers.

These values are documented in the README ("Exit codes"); a test checks that every
code here is listed there.
"""

from __future__ import annotations

import enum

from remotebridge import errors


class ExitCode(enum.IntEnum):
    """Process exit codes (75 and 78 follow BSD sysexits: EX_TEMPFAIL, EX_CONFIG)."""

    OK = 0
    """Success, including 'nothing to do'."""

    FAILURE = 1
    """The command ran and failed (a remote command, a scheduler, a transfer, prepare)."""

    USAGE = 2
    """Bad command-line usage (click's own code)."""

    NOT_FOUND = 3
    """A named run/label/stage does not exist, or the state machine refused the move."""

    TEMPORARY = 75
    """Try again later: the link is down, the database is locked or unreachable."""

    CONFIG = 78
    """The configuration file or the database schema is not usable as it is."""


_MAP: list[tuple[type[errors.BridgeError], ExitCode]] = [
    (errors.ConfigError, ExitCode.CONFIG),
    (errors.SchemaOutdated, ExitCode.CONFIG),
    (errors.UnsafeConfiguration, ExitCode.CONFIG),
    (errors.UsageError, ExitCode.USAGE),
    (errors.NotFoundError, ExitCode.NOT_FOUND),
    (errors.IllegalTransition, ExitCode.NOT_FOUND),
    (errors.Refused, ExitCode.NOT_FOUND),
    (errors.ConcurrentUpdate, ExitCode.TEMPORARY),
    (errors.DatabaseUnavailable, ExitCode.TEMPORARY),
    (errors.LinkDown, ExitCode.TEMPORARY),
    (errors.TransientLinkError, ExitCode.TEMPORARY),
]


def exit_code_for(exc: errors.BridgeError) -> ExitCode:
    """The exit code for one of our errors (most specific class first)."""
    if isinstance(exc, errors.SeveralFailed):
        return exit_code_for(exc.first)
    for cls, code in _MAP:
        if isinstance(exc, cls):
            return code
    return ExitCode.FAILURE
