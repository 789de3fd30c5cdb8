"""Commands, files and processes: the small tools every other module uses."""

import contextlib
import fcntl
import os
import re
import signal
import socket
import subprocess
import sys
import time

from . import config


def log(msg):
    """One line on stderr, prefixed so it reads well inside test output."""
    print("site: " + msg, file=sys.stderr, flush=True)


def run(cmd, check=True, ns=None, capture=True, env=None, timeout=120, input=None, netonly=False):
    """Run CMD (argv, or a string for sh -c), optionally inside namespace NS; exit on failure."""
    if isinstance(cmd, str):
        cmd = ["sh", "-c", cmd]
    if ns and netonly:
        # only the network namespace: `ip netns exec` also remounts /sys, which hides
        # /sys/fs/cgroup (slurmd needs it)
        cmd = ["nsenter", "--net=/run/netns/" + ns, "--"] + cmd
    elif ns:
        cmd = ["ip", "netns", "exec", ns] + cmd
    if config.VERBOSE:
        log("+ " + " ".join(cmd))
    e = None
    if env:
        e = dict(os.environ)
        e.update(env)
    r = subprocess.run(cmd, stdout=subprocess.PIPE if capture else None,
                       stderr=subprocess.PIPE if capture else None, text=True, env=e,
                       timeout=timeout, input=input)
    if check and r.returncode != 0:
        raise SystemExit(f"site: command failed ({r.returncode}): {' '.join(cmd)}\n"
                         f"{r.stdout or ''}{r.stderr or ''}")
    return r


def ok(cmd, ns=None):
    """True when CMD exits 0."""
    return run(cmd, check=False, ns=ns).returncode == 0


def write(path, text, mode=0o644):
    """Write PATH atomically (temporary file, then rename) with MODE."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "w") as f:
        f.write(text)
    os.chmod(tmp, mode)
    os.replace(tmp, path)


def read(path, default=None):
    """The text of PATH, or DEFAULT when it cannot be read."""
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return default


def unlink_quietly(path):
    """Remove PATH if it is there."""
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)


def need_root():
    """Exit unless running as root."""
    if os.geteuid() != 0:
        raise SystemExit("site: must run as root (it creates network namespaces and daemons)")


@contextlib.contextmanager
def site_lock():
    """Serialise the verbs that build or take apart the site."""
    os.makedirs(os.path.dirname(config.LOCKFILE), exist_ok=True)
    with open(config.LOCKFILE, "a+") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def pid_alive(pid):
    """True when PID runs and is not a zombie."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    st = read(f"/proc/{pid}/stat", "")
    m = re.match(r"\d+ \(.*\) (\S)", st)
    return not (m and m.group(1) in "ZX")


def pidfile_pid(path):
    """The live pid written in PATH, or None."""
    s = read(path)
    try:
        pid = int((s or "").strip())
    except (TypeError, ValueError):
        return None
    return pid if pid_alive(pid) else None


def children_of(ppid):
    """Pids whose parent is PPID."""
    out = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        st = read(f"/proc/{d}/stat", "")
        m = re.match(r"\d+ \(.*\) \S (\d+)", st)
        if m and int(m.group(1)) == ppid:
            out.append(int(d))
    return out


def descendants(pid):
    """Every pid below PID in the process tree."""
    res, todo = [], [pid]
    while todo:
        p = todo.pop()
        for c in children_of(p):
            res.append(c)
            todo.append(c)
    return res


def kill_pids(pids, grace=3.0):
    """SIGTERM, then SIGKILL after GRACE seconds for whatever still runs."""
    pids = [p for p in pids if p != os.getpid() and pid_alive(p)]
    for p in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(p, signal.SIGTERM)
    deadline = time.time() + grace
    while time.time() < deadline and any(pid_alive(p) for p in pids):
        time.sleep(0.05)
    for p in pids:
        if pid_alive(p):
            with contextlib.suppress(ProcessLookupError):
                os.kill(p, signal.SIGKILL)


def tcp_open(addr, port, timeout=1.0, ns=None):
    """True when ADDR:PORT accepts a TCP connection (from namespace NS if given)."""
    if ns:
        return ok(["nc", "-z", "-w", str(max(1, int(timeout))), addr, str(port)], ns=ns)
    try:
        with socket.create_connection((addr, port), timeout=timeout):
            return True
    except OSError:
        return False


def wait_for(pred, timeout, step=0.2):
    """Poll PRED until it is true or TIMEOUT seconds passed; its last value."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        if pred():
            return True
        time.sleep(step)
    return pred()
