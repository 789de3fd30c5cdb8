"""The ssh side: host and client keys, the sshd of each ssh host, the client bundle, the
one-time passwords of the dmz and the front ends' MaxSessions."""

import contextlib
import fcntl
import hashlib
import hmac
import os
import re
import secrets
import struct
import time

from . import texts
from .config import ASKPASS, CFG, DMZ_PAM, DMZ_SSHD, FRONT_ENDS, HOSTS, SSH_HOSTS, P
from .proc import kill_pids, pidfile_pid, read, run, wait_for, write

# --------------------------------------------------------------------------- HOTP


def hotp(secret_hex, counter, digits=6):
    """RFC 4226 HOTP-SHA1 of SECRET_HEX at COUNTER."""
    key = bytes.fromhex(secret_hex)
    mac = hmac.new(key, struct.pack(">Q", counter), hashlib.sha1).digest()
    off = mac[-1] & 0x0F
    code = (struct.unpack(">I", mac[off:off + 4])[0] & 0x7FFFFFFF) % (10 ** digits)
    return str(code).zfill(digits)


def otp_state_of(text, user):
    """(next valid counter, tokens used) from the text of pam_oath's usersfile, or None.

    A fresh line is `HOTP user - SECRET`; after a successful login pam_oath
    writes `HOTP user - SECRET COUNTER TIMESTAMP` where COUNTER is the counter
    of the token that was accepted, so the next valid one is COUNTER+1."""
    for line in text.splitlines():
        f = line.split()
        if len(f) >= 4 and f[1] == user:
            if len(f) >= 5:
                c = int(f[4])
                return c + 1, c + 1
            return 0, 0
    return None


def otp_state():
    """(next valid counter, tokens used) of the site's login user."""
    state = otp_state_of(read(P.usersfile, ""), CFG["user"])
    if state is None:
        raise SystemExit("site: no OTP usersfile (is the site up?)")
    return state


def token(reserve=False, wait=10.0):
    """The next valid token.  reserve=True hands out a token never handed out before
    and, so that racing logins do not spend tokens out of order (a later counter
    used first makes an earlier one invalid), waits up to `wait` seconds until the
    previously handed token has been consumed by the dmz."""
    secret = read(P.secret)
    if not secret:
        raise SystemExit("site: no OTP secret (is the site up?)")
    secret = secret.strip()
    os.makedirs(P.oath, exist_ok=True)
    deadline = time.time() + wait
    while True:
        with open(P.tokenlock, "a+") as lf:
            fcntl.flock(lf, fcntl.LOCK_EX)
            nxt, _ = otp_state()
            if not reserve:
                return hotp(secret, nxt)
            try:
                handed = int(read(P.handed, "-1").strip())
            except ValueError:
                handed = -1
            if handed < nxt or time.time() >= deadline:
                c = max(nxt, handed + 1)
                write(P.handed, f"{c}\n", 0o600)
                return hotp(secret, c)
        time.sleep(0.05)


def auth_count():
    """Successful DMZ logins (publickey + one-time password) since `site up`."""
    text = read(P.sshd_log("dmz"), "")
    return len(re.findall(r"Accepted keyboard-interactive/pam for ", text))


# --------------------------------------------------------------------------- keys


def ensure_keys():
    """Client key, authorized_keys, host keys, the HOTP secret and pam_oath's usersfile."""
    os.makedirs(P.client, exist_ok=True)
    os.chmod(P.client, 0o755)
    if not os.path.exists(P.identity):
        run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "rbsite-client",
             "-f", P.identity])
    os.chmod(P.identity, 0o600)
    pub = read(P.identity + ".pub").strip()
    write(P.authorized_keys, pub + "\n", 0o644)
    for h in SSH_HOSTS:
        k = P.host_key(h)
        if not os.path.exists(k):
            os.makedirs(os.path.dirname(k), exist_ok=True)
            run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "rbsite-" + h, "-f", k])
    if not os.path.exists(P.secret):
        os.makedirs(P.oath, exist_ok=True)
        os.chmod(P.oath, 0o700)
        write(P.secret, secrets.token_hex(20) + "\n", 0o600)
    if not os.path.exists(P.usersfile):
        write(P.usersfile, "HOTP {} - {}\n".format(CFG["user"], read(P.secret).strip()), 0o600)


def write_client_bundle():
    """known_hosts and ssh_config for clients at home."""
    keys = {h: read(P.host_key(h) + ".pub") for h in SSH_HOSTS}
    write(P.known_hosts, texts.known_hosts_text(keys))
    write(P.ssh_config, texts.client_ssh_config_text(P, CFG["user"], ASKPASS))


# --------------------------------------------------------------------------- sshd


def max_sessions():
    """MaxSessions set by `site maxsessions` (None: OpenSSH's default)."""
    text = (read(P.maxsessions) or "").strip()
    return int(text) if text.isdigit() else None


def set_max_sessions(n):
    """Remember N as the front ends' MaxSessions (None: back to OpenSSH's default)."""
    if n is None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(P.maxsessions)
    else:
        write(P.maxsessions, f"{n}\n")


def write_sshd_config(h):
    """Write the sshd_config of ssh host H; True when its text changed."""
    limit = max_sessions() if h in FRONT_ENDS else None
    text = texts.sshd_config_text(h, P, CFG["user"], limit)
    if read(P.sshd_config(h)) == text:
        return False
    write(P.sshd_config(h), text)
    return True


def ensure_ssh_files():
    """sshd configs, the dmz's sshd name (its PAM service) and its PAM file; the hosts
    whose config changed (a running sshd of theirs must be restarted to read it)."""
    os.makedirs("/run/sshd", exist_ok=True)
    os.chmod("/run/sshd", 0o755)
    changed = [h for h in SSH_HOSTS if write_sshd_config(h)]
    if not os.path.islink(DMZ_SSHD):
        os.makedirs(os.path.dirname(DMZ_SSHD), exist_ok=True)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(DMZ_SSHD)
        os.symlink("/usr/sbin/sshd", DMZ_SSHD)
    write(DMZ_PAM, texts.dmz_pam_text(P))
    return changed


def start_sshd(h):
    """Start the sshd of H in its namespace unless it runs."""
    if pidfile_pid(P.sshd_pid(h)):
        return
    binary = DMZ_SSHD if h == "dmz" else "/usr/sbin/sshd"
    run([binary, "-t", "-f", P.sshd_config(h)])
    run([binary, "-f", P.sshd_config(h), "-E", P.sshd_log(h)], ns=HOSTS[h]["ns"])
    if not wait_for(lambda: pidfile_pid(P.sshd_pid(h)), 10):
        raise SystemExit(f"site: sshd for {h} did not start; see {P.sshd_log(h)}")


def restart_sshd(h):
    """Restart the listening sshd of H with its current config; open sessions live on."""
    binary = DMZ_SSHD if h == "dmz" else "/usr/sbin/sshd"
    run([binary, "-t", "-f", P.sshd_config(h)])     # a bad config must not stop the old one
    pid = pidfile_pid(P.sshd_pid(h))
    if pid:
        kill_pids([pid], grace=5)
    start_sshd(h)
