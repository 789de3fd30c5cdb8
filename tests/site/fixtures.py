"""pytest plugin: the remotebridge test site (ops/testsite/site) as a fixture.

Use it from any conftest.py:

    pytest_plugins = ["tests.site.fixtures"]          # top-level conftest

or load it by path (what tests/site/conftest.py does).  It provides the
session-scoped fixture ``test_site`` -> :class:`RemoteSite`.

The fixture runs ``site up`` once per session (idempotent: quick when the site
is already up) and does NOT tear the site down afterwards, so the next run
starts in about a second.  Set RB_SITE_TEARDOWN=1 to run ``site down`` at the
end of the session.  If the site cannot be brought up (not root, no network
namespaces, ...) the fixture fails the test with the reason; it never skips.
"""

from __future__ import annotations

import dataclasses
import fcntl
import json
import os
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
SITE = REPO / "ops" / "testsite" / "site"
ASKPASS = REPO / "ops" / "testsite" / "askpass"


def site_cmd(*args: str, check: bool = True, timeout: float = 300) -> subprocess.CompletedProcess:
    """Run ``ops/testsite/site ARGS`` and return the completed process."""
    r = subprocess.run([str(SITE), *args], capture_output=True, text=True, timeout=timeout)
    if check and r.returncode != 0:
        raise RuntimeError(f"site {' '.join(args)} failed ({r.returncode}):\n{r.stdout}{r.stderr}")
    return r


def site_status() -> dict[str, Any]:
    r = site_cmd("status", "--json", check=False)
    return json.loads(r.stdout)


@dataclasses.dataclass
class RemoteSite:
    """What a test needs to know about the running site (mirrors ``site status --json``)."""

    state: str
    site_root: str
    login_user: str
    home_address: str
    hosts: dict[str, dict[str, Any]]
    front_ends: list[str]
    compute_nodes: list[str]
    ssh_config: str
    identity_file: str
    known_hosts: str
    askpass: str
    site_command: str
    scratch_root: str
    permanent_root: str
    user_scratch: str
    user_permanent: str
    slurm_partition: str
    slurm_conf: str
    dmz_log: str
    raw: dict[str, Any] = dataclasses.field(default_factory=dict, repr=False)

    @classmethod
    def from_status(cls, st: dict[str, Any]) -> RemoteSite:
        names = {f.name for f in dataclasses.fields(cls)} - {"raw"}
        return cls(**{k: st[k] for k in names}, raw=st)

    # ------------------------------------------------------------- state / switches
    def status(self) -> dict[str, Any]:
        """Fresh ``site status --json``."""
        return site_status()

    def token(self, fresh: bool = False) -> str:
        """Next valid one-time password for the dmz.

        fresh=False: the token the dmz accepts next (same answer until it is used).
        fresh=True: a token never handed out before (``site token --next``), safe when
        several logins may race; this is what the askpass script uses."""
        args = ["token", "--next"] if fresh else ["token"]
        return site_cmd(*args).stdout.strip()

    def auth_count(self) -> int:
        """Successful dmz logins (each consumed one one-time password) since ``site up``."""
        return int(site_cmd("auth-count").stdout.strip())

    def expire(self) -> None:
        """Kill every live dmz session (like the site's 12-hour cut)."""
        site_cmd("expire")

    def cut(self, host: str) -> None:
        site_cmd("cut", host)

    def heal(self, host: str) -> None:
        site_cmd("heal", host)

    def purge(self, older_than: float = 0) -> None:
        site_cmd("purge", "--older-than", str(older_than))

    def stop_slurm(self) -> None:
        site_cmd("stop-slurm")

    def start_slurm(self) -> None:
        site_cmd("start-slurm")

    def shape(self, host: str, rate: str) -> None:
        """Change the link rate of dmz/fe1..3 (tc syntax, e.g. "80mbit"; "default" restores)."""
        site_cmd("shape", host, rate)

    # ------------------------------------------------------------- ssh helpers
    def ssh_base_argv(self, host: str) -> list[str]:
        """["ssh", "-F", <ssh_config>, host]: add your own -o ControlMaster/ControlPath."""
        return ["ssh", "-F", self.ssh_config, host]

    def ssh_env(self, with_token: bool = True) -> dict[str, str]:
        """Environment for ssh: with_token=True lets the askpass script answer the OTP
        prompt; False removes any askpass so the OTP prompt cannot be answered."""
        env = dict(os.environ)
        env.pop("DISPLAY", None)
        if with_token:
            env["SSH_ASKPASS"] = self.askpass
            env["SSH_ASKPASS_REQUIRE"] = "force"
            env.setdefault("DISPLAY", ":0")  # harmless; older clients want it
        else:
            env.pop("SSH_ASKPASS", None)
            env["SSH_ASKPASS_REQUIRE"] = "never"
        return env

    def ssh(
        self,
        host: str,
        command: str,
        *opts: str,
        with_token: bool = True,
        timeout: float = 60,
        input: bytes | None = None,
        check: bool = False,
    ) -> subprocess.CompletedProcess:
        """Run `command` on `host` (a new connection unless opts name a ControlPath)."""
        argv = ["ssh", "-F", self.ssh_config, *opts, host, command]
        r = subprocess.run(
            argv, input=input, capture_output=True, timeout=timeout, env=self.ssh_env(with_token)
        )
        if check and r.returncode != 0:
            raise RuntimeError(
                f"ssh {host} {command!r} failed ({r.returncode}): "
                f"{r.stderr.decode(errors='replace')}"
            )
        return r

    def netns_argv(self, host: str) -> list[str]:
        """Prefix that runs a command inside `host`'s namespace (as root)."""
        return ["ip", "netns", "exec", self.hosts[host]["netns"]]

    def wait_until(self, pred, timeout: float = 10, step: float = 0.1) -> bool:
        deadline = time.time() + timeout
        while time.time() < deadline:
            if pred():
                return True
            time.sleep(step)
        return pred()


USERS_LOCK = "/run/lock/rbsite-users.lock"
_users_fd = None


def hold_shared() -> None:
    """Every pytest session that uses the site holds a shared lock on USERS_LOCK for
    its whole life, so a destructive test (site down/up) can tell whether another
    session is using the site at the same time."""
    global _users_fd
    if _users_fd is None:
        os.makedirs(os.path.dirname(USERS_LOCK), exist_ok=True)
        _users_fd = open(USERS_LOCK, "a+")  # noqa: SIM115 - held for the session
        fcntl.flock(_users_fd, fcntl.LOCK_SH)


def exclusive_use(timeout: float = 60) -> bool:
    """Try, for up to `timeout` s, to become the site's only user (no other pytest
    session holds the shared lock).  Call release_exclusive() afterwards."""
    hold_shared()
    deadline = time.time() + timeout
    while True:
        try:
            fcntl.flock(_users_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            if time.time() >= deadline:
                return False
            time.sleep(0.5)


def release_exclusive() -> None:
    if _users_fd is not None:
        fcntl.flock(_users_fd, fcntl.LOCK_SH)


def bring_up() -> RemoteSite:
    if os.geteuid() != 0:
        pytest.fail(
            "the remotebridge test site needs root (network namespaces, sshd, slurm); "
            "run the site tests as root",
            pytrace=False,
        )
    hold_shared()
    try:
        r = site_cmd("up", check=False, timeout=600)
    except Exception as e:  # noqa: BLE001
        pytest.fail(f"`{SITE} up` could not run: {e}", pytrace=False)
    if r.returncode != 0:
        pytest.fail(
            f"`{SITE} up` failed (rc={r.returncode}); the site (network namespaces etc.) "
            f"could not be created:\n{r.stdout}{r.stderr}",
            pytrace=False,
        )
    st = site_status()
    if st.get("state") != "up":
        pytest.fail(
            "test site is {} after `site up`:\n{}".format(
                st.get("state"), json.dumps(st, indent=2)
            ),
            pytrace=False,
        )
    return RemoteSite.from_status(st)


@pytest.fixture(scope="session")
def test_site():
    site = bring_up()
    yield site
    if os.environ.get("RB_SITE_TEARDOWN") == "1":
        site_cmd("down", check=False)


@pytest.fixture
def site_alone(test_site):
    """For tests that count dmz logins or flip switches (expire, cut, shape): wait until
    no other pytest session uses the site (each holds a shared lock for its life) and
    keep others from starting meanwhile.  Fails, saying why, if another session still
    uses the site after 300 s: a count taken while someone else logs in proves nothing,
    and a skipped test would hide that nothing was proven."""
    if not exclusive_use(300):
        pytest.fail("another pytest session has been using the test site for 300 s; "
                    "run the suite alone (see docs/testsite.md)", pytrace=False)
    yield test_site
    release_exclusive()
