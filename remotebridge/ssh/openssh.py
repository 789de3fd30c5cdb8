"""The OpenSSH link: every command rides an existing ControlMaster connection.

The key-card holder opens one master per front end (:func:`start_master`: the only
place that may prompt). Every other call runs ``ssh`` with::

    -o BatchMode=yes -o ControlMaster=no -o ControlPath=<dir>/<hash> -o ProxyCommand=false
    -o StrictHostKeyChecking=yes [-o UserKnownHostsFile=...] [-F ssh_config]

so nothing ever prompts, and if the master is missing ssh cannot fall back to a new
login: the ``ProxyCommand=false`` override only matters when the multiplexed session
could not be opened, and then it fails at once instead of dialling the DMZ.

Sockets live in a directory only the user can write (refused otherwise, see
:func:`control_dir`). The socket name is computed here, once, and passed literally to
every call, the master's included (no ``%`` token in any ControlPath we pass): since
OpenSSH 9.6 ``%C`` also hashes ``%j`` (the ProxyJump), which ``ProxyCommand=false``
blanks out, so a ``%C`` of a client call would name another socket than the master's.
The name is the SHA-1 of local host, remote host name, port, user and ProxyJump as
``ssh -G`` resolves them (modelled on OpenSSH 9.6+'s ``%C``; it only has to be the
same for all our calls, which it is, since they all pass it literally).
All local processes together open at most ``sessions_per_master`` channels on one
master (:class:`~remotebridge.ssh.slots.SessionSlots`), because past sshd's MaxSessions
the client silently makes a new connection.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import shlex
import socket
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

SOCKET_PATH_MAX = 86
"""Longest control socket path we accept: ssh adds a 17-byte temporary suffix while it
binds the socket, and a Unix socket path holds 107 bytes (+ NUL) on Linux (90 for us)
but only 103 on macOS/BSD (86 for us): we take the smaller, so a config works anywhere."""

_CONTROL_PERSIST_OPTS = ("-o", "ServerAliveInterval=30", "-o", "ServerAliveCountMax=4")

# ssh's own messages (exit 255), most decisive first. A session the master refuses
# (sshd MaxSessions) comes first: the fallback login ssh then tries prints
# "kex_exchange_identification", which would otherwise read as a link down.
_REFUSED = re.compile(r"session request failed|Session open refused", re.I)
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
    if _REFUSED.search(stderr):
        return TransientLinkError
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
    if "%" in str(path):
        raise UnsafeConfiguration(f"control_dir {path} contains '%', which ssh would "
                                  "expand in a ControlPath", hint="use a path without '%'")
    longest = len(os.fsencode(path)) + 1 + 40  # "/" + the hash
    if longest > SOCKET_PATH_MAX:
        raise UnsafeConfiguration(
            f"control_dir {path} is too long: socket paths would be {longest} bytes, "
            f"at most {SOCKET_PATH_MAX} work anywhere (Unix sockets hold 104-108 bytes)",
            hint="set control_dir to a short path such as ~/.ssh/rb")
    return path


def parse_ssh_g(text: str) -> dict[str, str]:
    """``ssh -G``'s ``key value`` lines (keys lower case, first value wins)."""
    conf: dict[str, str] = {}
    for line in text.splitlines():
        key, _, value = line.strip().partition(" ")
        conf.setdefault(key.lower(), value.strip())
    return conf


def socket_name(conf: dict[str, str]) -> str:
    """The control socket's file name: SHA-1 hex of ``%l%h%p%r%j`` (after OpenSSH's ``%C``).

    ``%l`` is this machine's host name, the rest come from ``ssh -G`` (``conf``);
    a ProxyJump of ``none`` counts as empty, as in ssh.
    """
    jump = conf.get("proxyjump", "")
    jump = "" if jump.lower() == "none" else jump
    text = (socket.gethostname() + conf.get("hostname", "") + conf.get("port", "22")
            + conf.get("user", "") + jump)
    return hashlib.sha1(text.encode("utf-8"), usedforsecurity=False).hexdigest()


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
        """Options every ssh call of this site uses (config, literal socket, host keys)."""
        opts = self._config_options()
        at = 2 if self.site.ssh_config else 0  # after "-F file"
        return [*opts[:at], "-o", f"ControlPath={self.socket_path}", *opts[at:]]

    def _config_options(self) -> list[str]:
        """``-F`` (when set), host keys, user and identity: everything but the socket."""
        opts: list[str] = []
        if self.site.ssh_config:
            opts += ["-F", str(Path(self.site.ssh_config).expanduser())]
        opts += ["-o", "StrictHostKeyChecking=yes"]
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
        """``<control_dir>/<sha1 of local host, host name, port, user, ProxyJump>``.

        The parts come from ``ssh -G`` with the site's options (ControlPath=none so no
        token is expanded); the master and every client call then name this one path.
        """
        cmd = [self.ssh_binary, *self._config_options(), "-o", "ControlPath=none",
               "-G", "--", self.host]
        proc = subprocess.run(cmd, capture_output=True, timeout=30, check=False,
                              stdin=subprocess.DEVNULL)
        conf = parse_ssh_g(proc.stdout.decode("utf-8", "replace"))
        if proc.returncode != 0 or not conf.get("hostname"):
            raise UnsafeConfiguration(
                f"cannot resolve the ssh settings of {self.host} with 'ssh -G'",
                evidence=CommandEvidence(argv=cmd, rc=proc.returncode, host=self.host,
                                         stderr=proc.stderr.decode("utf-8", "replace")))
        jump = conf.get("proxyjump", "")
        self.proxyjump = "" if jump.lower() == "none" else jump
        path = self.control_dir / socket_name(conf)
        if len(os.fsencode(path)) > SOCKET_PATH_MAX:
            raise UnsafeConfiguration(f"control socket path too long: {path}")
        return path

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
        if cls is None and rc == 255 and not text.strip() and not self.master_alive():
            # a master that dies mid-command leaves its clients exiting 255 silently
            cls = LinkDown
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

    def proxy_through(self) -> str:
        """A ProxyCommand that reaches ``%h:%p`` over this link's master (``ssh -W``).

        It is a client call (batch mode, this literal socket, no new login), so a front
        end's master opened with it costs no token: the jump host's master carries it.
        """
        return shlex.join([self.ssh_binary, *self.client_options(), "-W", "%h:%p",
                           "--", self.host])

    def start_master(self, *, askpass: str | None = None, timeout: float = 300.0,
                     via: OpenSSHLink | None = None) -> bool:
        """Open the master connection (may prompt: the key-card holder, or ``askpass``).

        Returns False when a live master already exists (no new login is made),
        True when a new one was started. Raises :class:`HostKeyMismatch` or
        :class:`LinkDown` (refused login) or :class:`TransientLinkError`. With ``via``
        the login goes through that (jump host's) live master instead of the ssh
        config's ProxyJump: a command-line ProxyCommand wins over the config's.
        A failed login leaves no socket behind.
        """
        if self.master_alive():
            return False
        with contextlib.suppress(FileNotFoundError):
            self.socket_path.unlink()  # stale: ssh would refuse to bind and not multiplex
        # no "-M": together with ControlMaster=yes it would mean "ask" (sessions refused)
        cmd = [self.ssh_binary, *self.base_options(), "-o", "ControlMaster=yes",
               "-o", "ControlPersist=yes", *_CONTROL_PERSIST_OPTS, "-N", "-f"]
        if via is not None:
            cmd += ["-o", f"ProxyCommand={via.proxy_through()}"]
        cmd += ["--", self.host]
        env = dict(os.environ)
        if askpass:
            env.update(SSH_ASKPASS=askpass, SSH_ASKPASS_REQUIRE="force",
                       DISPLAY=env.get("DISPLAY", ":0"))
        with tempfile.TemporaryFile() as errf:
            # without a controlling terminal, clients before OpenSSH 8.4 (no
            # SSH_ASKPASS_REQUIRE) fall back to SSH_ASKPASS too
            proc = subprocess.run(cmd, stdin=subprocess.DEVNULL if askpass else None,
                                  stdout=subprocess.DEVNULL, stderr=errf, env=env,
                                  timeout=timeout, check=False,
                                  start_new_session=bool(askpass))
            errf.seek(0)
            err = errf.read()
        if proc.returncode != 0:
            if not self.master_alive():
                with contextlib.suppress(FileNotFoundError):
                    self.socket_path.unlink()  # nothing half-open
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
