"""Switches a test flips on the running site: expire, cut/heal, purge, stop/start Slurm,
shape, maxsessions."""

import contextlib
import json
import os
import signal
import time

from . import network, slurm, sshd
from .config import CFG, FRONT_ENDS, HOSTS, SSH_HOSTS, P
from .proc import descendants, kill_pids, pidfile_pid, read, run, unlink_quietly, write


def expire():
    """Kill the server side of every live dmz session (the 12-hour cut); how many processes."""
    pid = pidfile_pid(P.sshd_pid("dmz"))
    if not pid:
        raise SystemExit("site: dmz sshd is not running")
    victims = descendants(pid)
    kill_pids(victims, grace=2)
    return len(victims)


def set_link(h, state):
    """Link of H "down" (remembered, so `up` keeps it cut) or "up"."""
    if h not in HOSTS:
        raise SystemExit("site: unknown host {} (one of {})".format(h, ", ".join(HOSTS)))
    ifs = [network.pub_if(h)] if HOSTS[h]["pub"] else [network.clu_if(h)]
    for i in ifs:
        run(["ip", "link", "set", i, state])
    if state == "down":
        write(P.cut(h), "cut\n")
    else:
        unlink_quietly(P.cut(h))


def purge(older_than=0.0):
    """Delete scratch files older than OLDER_THAN seconds; how many files."""
    now = time.time()
    n = 0
    for dirpath, _dirnames, filenames in os.walk(P.scratch, topdown=False):
        for f in filenames:
            p = os.path.join(dirpath, f)
            try:
                if now - os.lstat(p).st_mtime >= older_than:
                    os.unlink(p)
                    n += 1
            except FileNotFoundError:
                pass
        depth = os.path.relpath(dirpath, P.scratch).count(os.sep)
        # keep scratch/ and scratch/<user>/, drop emptied subfolders below those
        if dirpath != P.scratch and depth >= 1:
            try:
                if now - os.lstat(dirpath).st_mtime >= older_than or not os.listdir(dirpath):
                    os.rmdir(dirpath)
            except OSError:
                pass
    return n


def stop_slurm(all_daemons):
    """Stop Slurm and remember it, so `up` leaves it stopped."""
    write(P.slurm_stopped, "stopped by site stop-slurm\n")
    slurm.stop_slurm(all_daemons)


def kill_slurmd(node):
    """kill -9 the slurmd of compute node NODE (a crashed node daemon); its pid, or 0.

    Not remembered: `start-slurm` (or `up`) starts it again."""
    if node not in slurm.COMPUTE:
        raise SystemExit("site: unknown compute node {} (one of {})".format(
            node, ", ".join(slurm.COMPUTE)))
    pid = pidfile_pid(P.slurmd_pid(node))
    if pid:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    return pid or 0


def start_slurm():
    """Start Slurm again and wait for the nodes."""
    unlink_quietly(P.slurm_stopped)
    slurm.start_slurm()
    slurm.wait_slurm()


def set_rate(h, rate):
    """Shape H's link to RATE ("default": the configured rate); remembered across `up`."""
    if h not in SSH_HOSTS:
        raise SystemExit("site: shape works on {}".format(", ".join(SSH_HOSTS)))
    try:
        rates = json.loads(read(P.rates, "{}"))
    except ValueError:
        rates = {}
    if rate == "default":
        rates.pop(h, None)
        rate = CFG["rates"][h]
    else:
        network.rate_bits(rate)
        rates[h] = rate
    write(P.rates, json.dumps(rates) + "\n")
    network.shape(h, rate)


def parse_max_sessions(word):
    """N (a positive whole number) or None for `default`."""
    if word == "default":
        return None
    if not word.isdigit() or int(word) < 1:
        raise SystemExit(f"site: maxsessions takes a positive number or `default`, not {word!r}")
    return int(word)


def set_max_sessions(word):
    """MaxSessions of every front end's sshd (remembered across `up`), then restart them.

    Open sessions survive the restart; the limit applies to connections made after it."""
    n = parse_max_sessions(word)
    sshd.set_max_sessions(n)
    for h in FRONT_ENDS:
        sshd.write_sshd_config(h)
        sshd.restart_sshd(h)
    return n
