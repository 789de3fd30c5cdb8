"""Serving the status page with uvicorn, and the rule on where it may listen.

Loopback addresses (127.0.0.0/8, ::1, ``localhost``) need no token; any other
address does, since anyone who reaches it would otherwise read every run.
"""

from __future__ import annotations

import ipaddress
from pathlib import Path

from sqlalchemy import Engine

from remotebridge.config import Config
from remotebridge.errors import UsageError


def is_loopback(host: str) -> bool:
    """True for an address only this machine can reach."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def read_token(token: str | None, token_file: str | None) -> str | None:
    """The token from ``--token`` or ``--token-file`` (its first line); None if neither."""
    if token is not None and token_file is not None:
        raise UsageError("give --token or --token-file, not both")
    if token_file is not None:
        try:
            lines = Path(token_file).read_text(encoding="utf-8").splitlines()
        except OSError as exc:
            raise UsageError(f"cannot read the token file {token_file}: "
                             f"{exc.strerror or exc}") from exc
        token = lines[0].strip() if lines else ""
    if token is not None and not token.strip():
        raise UsageError("the token is empty")
    return token.strip() if token is not None else None


def check_bind(host: str, token: str | None) -> None:
    """Refuse a non-loopback address without a token (UsageError, one line)."""
    if token is None and not is_loopback(host):
        raise UsageError(f"serving on {host} needs --token or --token-file "
                         "(only 127.0.0.1/localhost may go without)")


def serve(engine: Engine, config: Config, *, host: str, port: int,
          token: str | None) -> None:
    """Run the page until interrupted (uvicorn, one process, access log off)."""
    import uvicorn

    from remotebridge.web.app import create_app

    check_bind(host, token)
    uvicorn.run(create_app(engine, config, token=token), host=host, port=port,
                log_level="warning", access_log=False, server_header=False)
