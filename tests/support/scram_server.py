"""A private PostgreSQL server that checks passwords (scram-sha-256), for the tests of
database passwords: the shared server on 127.0.0.1:5432 trusts every login, so only a
server of our own can show that a password is sent, checked and refused.

It runs from a folder under /tmp on a free port for one test module (as the postgres
user when the tests run as root: initdb refuses root) and is removed afterwards.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import psycopg2

MARKER = "Mk7rQz9pw"
"""The password of the role ``rbsecret``: it must never appear in anything we print or
write."""

ROLE = "rbsecret"


@dataclass(frozen=True)
class ScramServer:
    """Where the private server listens, and how to reach it as its superuser."""

    port: int
    socket_dir: Path

    def url(self, database: str, *, password: str | None = MARKER, user: str = ROLE) -> str:
        """A TCP URL (password-checked) for ``user`` on ``database``."""
        secret = f":{password}" if password is not None else ""
        return f"postgresql://{user}{secret}@127.0.0.1:{self.port}/{database}"

    def admin(self, sql: str) -> None:
        """Run ``sql`` as the superuser over the (trusted) unix socket."""
        conn = psycopg2.connect(host=str(self.socket_dir), port=self.port, user="postgres",
                                dbname="postgres")
        conn.autocommit = True
        try:
            with conn.cursor() as cur:
                cur.execute(sql)
        finally:
            conn.close()

    def new_database(self, name: str) -> str:
        """A fresh, empty database owned by ``rbsecret``; returns its name."""
        self.admin(f'CREATE DATABASE "{name}" OWNER {ROLE}')
        return name


def _pg_bin(name: str) -> str:
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    path = found[-1] if found else shutil.which(name)
    assert path, f"{name} (PostgreSQL server binaries) is needed for the password tests"
    return path


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def scram_server() -> Iterator[ScramServer]:
    """Start the private server with a role ``rbsecret`` whose password is MARKER."""
    root = Path(tempfile.mkdtemp(prefix="rb-scram-", dir="/tmp"))
    as_pg: list[str] = []
    if os.geteuid() == 0:
        pg = pwd.getpwnam("postgres")
        os.chown(root, pg.pw_uid, pg.pw_gid)
        as_pg = ["runuser", "-u", "postgres", "--"]
    data, port = root / "data", _free_port()
    try:
        subprocess.run([*as_pg, _pg_bin("initdb"), "-D", str(data), "-U", "postgres",
                        "--auth-local=trust", "--auth-host=scram-sha-256", "-E", "UTF8"],
                       check=True, capture_output=True)
        subprocess.run([*as_pg, _pg_bin("pg_ctl"), "-D", str(data), "-l", str(root / "log"),
                        "-w", "-o", f"-p {port} -k {root} -c listen_addresses=127.0.0.1",
                        "start"], check=True, capture_output=True)
        server = ScramServer(port, root)
        server.admin(f"CREATE ROLE {ROLE} LOGIN PASSWORD '{MARKER}'")
        yield server
    finally:
        subprocess.run([*as_pg, _pg_bin("pg_ctl"), "-D", str(data), "-m", "immediate", "stop"],
                       check=False, capture_output=True)
        shutil.rmtree(root, ignore_errors=True)
