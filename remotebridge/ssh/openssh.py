"""The OpenSSH link: every command rides an existing ControlMaster connection.

The key-card holder opens one master per front end (:func:`start_master`: the only
place that may prompt). Every other call runs ``ssh`` with::

    -o BatchMode=yes -o ControlMaster=no -o ControlPath=<dir>/%C -o ProxyCommand=false
    -o StrictHostKeyChecking=yes [-o UserKnownHostsFile=...] [-F ssh_config]

so nothing ever prompts, and if the master is missing ssh cannot fall back to a new
login: the ``ProxyCommand=false`` override only matters when the multiplexed session
could not be opened, and then it fails at once instead of dialling the DMZ.

Sockets live in a directory only the user can write (refused otherwise, see
:func:`control_dir`); the socket name is ssh's ``%C`` hash (local host, remote host,
port, user), resolved with ``ssh -G``. All local processes together open at most
``sessions_per_master`` channels on one master (:class:`~remotebridge.ssh.slots.SessionSlots`),
because past sshd's MaxSessions the client silently makes a new connection.
"""

from __future__ import annotations

import contextlib
import os
import re
import shlex
import stat
import subprocess
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path

from remotebridge.config import SiteConfig, site_user
from remotebridge.errors import (
    CommandEvidence,
    HostKeyMismatch,
    LinkDown,
    LinkError,
    RemoteCommandFailed,
    TransientLinkError,
    UnsafeConfiguration,
)
from remotebridge.ssh.base import Link
from remotebridge.ssh.slots import SessionSlots

SOCKET_PATH_MAX = 90
"""Longest control socket path we accept: ssh adds a 17-byte temporary suffix while it
binds the socket, and a Unix socket path holds at most 107 bytes (+ NUL)."""

_CONTROL_PERSIST_OPTS = ("-o", "ServerAliveInterval=30", "-o", "ServerAliveCountMax=4")

# ssh's own messages (exit 255), most decisive first
_HOSTKEY = re.compile(
    r"REMOTE HOST IDENTIFICATION HAS CHANGED|Host key verification failed|"
    r"host key for .* has changed|No \S+ host key is known for", re.I)
_DOWN = re.compile(
    r"Master refused session|Permission denied|Control socket connect|mux_client_hello|"
    r"master is not running|"
    r"Too many authentication failures|Authentication failed|"
    r"Connection closed by UNKNOWN port 65535|kex_exchange_identification|"
    r"ControlSocket .* already exists", re.I)
_TRANSIENT = re.compile(
    r"Connection timed out|Operation timed out|No route to host|Connection reset|"
    r"Broken pipe|Connection refused|Network is unreachable|Temporary failure in name|"
    r"Could not resolve hostname|Connection closed by|closed by remote host|"
    r"Timeout, server|session request failed|Session open refused|"
    r"client_loop: send disconnect|ssh_exchange_identification", re.I)


def classify_ssh_failure(stderr: str) -> type[LinkError] | None:
    """The error class for ssh's exit 255 with this stderr; None if it is not ssh's."""
    if _HOSTKEY.search(stderr):
        return HostKeyMismatch
    if _DOWN.search(stderr):
        return LinkDown
    if _TRANSIENT.search(stderr):
        return TransientLinkError
    return None


def default_control_dir() -> Path:
    """``$XDG_RUNTIME_DIR/remotebridge`` when that is set, else ``~/.ssh/rb``."""
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    if runtime:
        return Path(runtime) / "remotebridge"
    return Path.home() / ".ssh" / "rb"


def control_dir(site: SiteConfig) -> Path:
    """The site's control socket directory: made 0700 if missing, refused if unsafe.

    Refused (:class:`UnsafeConfiguration`) when another user owns it or group/others
    may write to it, or when socket paths in it would be too long for a Unix socket.
    """
    path = Path(site.control_dir).expanduser() if site.control_dir else default_control_dir()
    path = path.absolute()
    if not path.exists():
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        with contextlib.suppress(FileExistsError):
            path.mkdir(mode=0o700)
    st = path.stat()
    if not stat.S_ISDIR(st.st_mode):
        raise UnsafeConfiguration(f"control_dir {path} is not a directory")
    if st.st_uid != os.getuid():
        raise UnsafeConfiguration(
            f"control_dir {path} belongs to uid {st.st_uid}, not to us ({os.getuid()})",
            hint="use a directory of your own, mode 0700")
    if st.st_mode & 0o022:
        raise UnsafeConfiguration(
            f"control_dir {path} is writable by group or others "
            f"(mode {stat.S_IMODE(st.st_mode):04o}): another user could hijack the login",
            hint=f"chmod 700 {shlex.quote(str(path))}")
    longest = len(os.fsencode(path)) + 1 + 40  # "/" + the %C hash
    if longest > SOCKET_PATH_MAX:
        raise UnsafeConfiguration(
            f"control_dir {path} is too long: socket paths would be {longest} bytes, "
            f"at most {SOCKET_PATH_MAX} work (Unix sockets hold ~104 bytes)",
            hint="set control_dir to a short path such as ~/.ssh/rb")
    return path


class OpenSSHLink(Link):
    """A link to one front end over its ControlMaster connection."""

    ssh_binary: str = "ssh"

    def __init__(self, site: SiteConfig, host: str, *, ssh_binary: str | None = None,
                 slot_timeout: float = 120.0) -> None:
        """Check the control directory and resolve the socket path of ``host``."""
        self.site = site
        self.host = host
        if ssh_binary:
            self.ssh_binary = ssh_binary
        self.control_dir = control_dir(site)
        self.socket_path = self._resolve_socket()
        self.slots = SessionSlots(self.socket_path, max(1, site.sessions_per_master),
                                  timeout=slot_timeout)

    # --- ssh command lines -----------------------------------------------------------

    def base_options(self) -> list[str]:
        """Options every ssh call of this site uses (config, socket, host keys)."""
        opts: list[str] = []
        if self.site.ssh_config:
            opts += ["-F", str(Path(self.site.ssh_config).expanduser())]
        opts += ["-o", f"ControlPath={self.control_dir}/%C", "-o", "StrictHostKeyChecking=yes"]
        if user := site_user(self.site):  # control-tool switch-user, else [site] user
            opts += ["-l", user]
        if self.site.known_hosts:
            kh = Path(self.site.known_hosts).expanduser()
            opts += ["-o", f"UserKnownHostsFile={kh}"]
        if self.site.identity:
            ident = Path(self.site.identity).expanduser()
            opts += ["-o", f"IdentityFile={ident}", "-o", "IdentitiesOnly=yes"]
        return opts

    def client_options(self) -> list[str]:
        """Options of a non-master call: batch mode, existing master only."""
        return [*self.base_options(), "-o", "BatchMode=yes", "-o", "ControlMaster=no",
                "-o", "ProxyCommand=false", "-T"]

    def _resolve_socket(self) -> Path:
        cmd = [self.ssh_binary, *self.base_options(), "-G", "--", self.host]
        proc = subprocess.run(cmd, capture_output=True, timeout=30, check=False)
        for line in proc.stdout.decode("utf-8", "replace").splitlines():
            key, _, value = line.partition(" ")
            if key.lower() == "controlpath" and value:
                path = Path(value)
                if len(os.fsencode(path)) > SOCKET_PATH_MAX:
                    raise UnsafeConfiguration(f"control socket path too long: {path}")
                return path
        raise UnsafeConfiguration(
            f"cannot resolve the control socket of {self.host} with 'ssh -G'",
            evidence=CommandEvidence(argv=cmd, rc=proc.returncode, host=self.host,
                                     stderr=proc.stderr.decode("utf-8", "replace")))

    def _local_argv(self, argv: Sequence[str]) -> list[str]:
        return [self.ssh_binary, *self.client_options(), "--", self.host,
                shlex.join([str(a) for a in argv])]

    # --- hooks of Link --------------------------------------------------------------

    def _preflight(self) -> None:
        if not self.socket_path.exists():
            raise LinkDown(f"no master connection to {self.host} "
                           f"(no control socket {self.socket_path})",
                           evidence=CommandEvidence(host=self.host))

    @contextlib.contextmanager
    def _session(self) -> Iterator[None]:
        with self.slots.acquire():
            yield

    def _classify(self, argv: Sequence[str], rc: int, out: bytes, err: bytes) -> LinkError:
        text = err.decode("utf-8", "replace")
        evidence = CommandEvidence(argv=list(argv), rc=rc, host=self.host,
                                   stdout=out[-4000:].decode("utf-8", "replace"),
                                   stderr=text[-4000:])
        cls = classify_ssh_failure(text) if rc == 255 else None
        if cls is None:
            return RemoteCommandFailed(f"'{argv[0]}' exited {rc} on {self.host}",
                                       evidence=evidence)
        messages = {
            HostKeyMismatch: f"host key of {self.host} does not match known_hosts",
            LinkDown: f"link to {self.host} is down (master gone or login needed)",
            TransientLinkError: f"network fault talking to {self.host}",
        }
        return cls(messages.get(cls, f"ssh to {self.host} failed"), evidence=evidence)

    def check(self) -> bool:
        """True when the master is alive and a trivial command runs through it."""
        if not self.master_alive():
            return False
        try:
            self.run(["true"], timeout=15, retry=False)
        except LinkError:
            return False
        return True

    # --- the master connection -----------------------------------------------------

    def _control(self, op: str, timeout: float = 15) -> subprocess.CompletedProcess[bytes]:
        cmd = [self.ssh_binary, *self.base_options(), "-o", "BatchMode=yes", "-O", op,
               "--", self.host]
        return subprocess.run(cmd, capture_output=True, timeout=timeout, check=False,
                              stdin=subprocess.DEVNULL)

    def master_alive(self) -> bool:
        """``ssh -O check``: is a master process answering on the socket?"""
        if not self.socket_path.exists():
            return False
        try:
            return self._control("check").returncode == 0
        except subprocess.TimeoutExpired:
            return False

    def stop_master(self) -> bool:
        """``ssh -O exit``: close the master (True if one was running)."""
        if not self.socket_path.exists():
            return False
        done = self._control("exit").returncode == 0
        with contextlib.suppress(FileNotFoundError):
            if not done:
                self.socket_path.unlink()  # stale socket of a dead master
        return done

    def start_master(self, *, askpass: str | None = None, timeout: float = 300.0) -> bool:
        """Open the master connection (may prompt: the key-card holder, or ``askpass``).

        Returns False when a live master already exists (no new login is made),
        True when a new one was started. Raises :class:`HostKeyMismatch` or
        :class:`LinkDown` (refused login) or :class:`TransientLinkError`.
        """
        if self.master_alive():
            return False
        with contextlib.suppress(FileNotFoundError):
            self.socket_path.unlink()  # stale: ssh would refuse to bind and not multiplex
        # no "-M": together with ControlMaster=yes it would mean "ask" (sessions refused)
        cmd = [self.ssh_binary, *self.base_options(), "-o", "ControlMaster=yes",
               "-o", "ControlPersist=yes", *_CONTROL_PERSIST_OPTS, "-N", "-f",
               "--", self.host]
        env = dict(os.environ)
        if askpass:
            env.update(SSH_ASKPASS=askpass, SSH_ASKPASS_REQUIRE="force",
                       DISPLAY=env.get("DISPLAY", ":0"))
        with tempfile.TemporaryFile() as errf:
            proc = subprocess.run(cmd, stdin=subprocess.DEVNULL if askpass else None,
                                  stdout=subprocess.DEVNULL, stderr=errf, env=env,
                                  timeout=timeout, check=False)
            errf.seek(0)
            err = errf.read()
        if proc.returncode != 0:
            exc = self._classify(["ssh", "-M", self.host], 255, b"", err)
            if isinstance(exc, RemoteCommandFailed):
                exc = LinkDown(f"could not open the master connection to {self.host}",
                               evidence=exc.evidence)
            raise exc
        return True


def start_master(site: SiteConfig, host: str, *, askpass: str | None = None) -> bool:
    """Open the master connection of ``host`` (see :meth:`OpenSSHLink.start_master`)."""
    return OpenSSHLink(site, host).start_master(askpass=askpass)


def stop_master(site: SiteConfig, host: str) -> bool:
    """Close the master connection of ``host``; True if one was running."""
    return OpenSSHLink(site, host).stop_master()


def master_alive(site: SiteConfig, host: str) -> bool:
    """True when the master connection of ``host`` answers ``ssh -O check``."""
    return OpenSSHLink(site, host).master_alive()
