"""A link to a folder on this machine that plays the remote side (``kind = "local"``).

No shell is involved: the argv runs directly (``subprocess`` with a list), with the
site's ``local_root`` as working directory, so relative "remote" paths land there.
A command that cannot be found exits 127, as a shell would say.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from remotebridge.errors import CommandEvidence, LinkError, RemoteCommandFailed
from remotebridge.ssh.base import Link, Result


class LocalLink(Link):
    """Runs argv lists as local processes in ``root``."""

    def __init__(self, root: str | os.PathLike[str], *, host: str = "localhost",
                 env: dict[str, str] | None = None) -> None:
        """``root`` is made if missing; ``env`` replaces the environment when given."""
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.host = host
        self.env = env

    def _local_argv(self, argv: Sequence[str]) -> list[str]:
        return [str(a) for a in argv]

    def _popen_kwargs(self) -> dict[str, Any]:
        return {"cwd": str(self.root), "env": self.env}

    def _classify(self, argv: Sequence[str], rc: int, out: bytes, err: bytes) -> LinkError:
        evidence = CommandEvidence(
            argv=list(argv), rc=rc, host=self.host,
            stdout=out[-4000:].decode("utf-8", "replace"),
            stderr=err[-4000:].decode("utf-8", "replace"),
        )
        return RemoteCommandFailed(f"'{argv[0]}' exited {rc}", evidence=evidence)

    def _run_once(self, argv: Sequence[str], stdin: bytes | None, timeout: float,
                  check: bool) -> Result:
        try:
            return super()._run_once(argv, stdin, timeout, check)
        except (FileNotFoundError, PermissionError) as exc:
            if not self.root.is_dir():
                raise
            msg = f"{argv[0]}: {exc.strerror}\n".encode()
            return self._finish(argv, 127 if isinstance(exc, FileNotFoundError) else 126,
                                b"", msg, check)

    def check(self) -> bool:
        """True when the root folder exists and a trivial command runs there."""
        if not self.root.is_dir():
            return False
        return subprocess.run(["true"], cwd=self.root, check=False).returncode == 0
