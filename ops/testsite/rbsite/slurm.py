"""munge and Slurm: slurmctld in ctl, slurmd in each compute node (network namespace only)."""

import os
import socket

from . import texts
from .config import CFG, COMPUTE, HOSTS, P
from .proc import kill_pids, pidfile_pid, run, wait_for, write


def slurm_conf():
    """The slurm.conf text of this site."""
    return texts.slurm_conf_text(P, CFG["partition"], CFG["slurm_wait_time"],
                                 socket.gethostname().split(".")[0])


def write_slurm_conf():
    """Write slurm.conf."""
    write(P.slurm_conf, slurm_conf())


def ensure_munge():
    """The munge key and a running munged on the site's own socket."""
    os.makedirs(P.munge, exist_ok=True)
    run(["chown", "munge:munge", P.munge])
    os.chmod(P.munge, 0o755)
    if not os.path.exists(P.munge_key):
        run(["mungekey", "--create", "--keyfile=" + P.munge_key])
    run(["chown", "munge:munge", P.munge_key])
    os.chmod(P.munge_key, 0o600)
    if pidfile_pid(P.munge_pid) and os.path.exists(P.munge_socket):
        return
    run(["runuser", "-u", "munge", "--", "/usr/sbin/munged", "--force",
         "--socket=" + P.munge_socket, "--key-file=" + P.munge_key,
         "--log-file=" + os.path.join(P.munge, "munged.log"),
         "--pid-file=" + P.munge_pid, "--seed-file=" + os.path.join(P.munge, "munged.seed")])
    if not wait_for(lambda: os.path.exists(P.munge_socket), 10):
        raise SystemExit("site: munged did not start")


def slurm_env():
    """Environment for Slurm's commands."""
    return {"SLURM_CONF": P.slurm_conf}


def start_slurm():
    """slurm.conf, munged, slurmctld and every slurmd (those not running)."""
    write_slurm_conf()
    os.makedirs(os.path.join(P.slurm, "ctld"), exist_ok=True)
    ensure_munge()
    if not pidfile_pid(P.slurmctld_pid):
        run(["slurmctld", "-f", P.slurm_conf], ns=HOSTS["ctl"]["ns"], netonly=True)
    for c in COMPUTE:
        os.makedirs(os.path.join(P.slurm, "spool-" + c), exist_ok=True)
        if not pidfile_pid(P.slurmd_pid(c)):
            run(["slurmd", "-f", P.slurm_conf, "-N", c], ns=HOSTS[c]["ns"], netonly=True)


def slurm_cmd(args, check=False, timeout=30):
    """Run a Slurm command inside ctl."""
    return run(args, check=check, ns=HOSTS["ctl"]["ns"], env=slurm_env(), timeout=timeout)


def nodes_ready():
    """True when every compute node is idle, mixed or allocated."""
    r = slurm_cmd(["sinfo", "-h", "-N", "-o", "%N %t"])
    if r.returncode != 0:
        return False
    states = dict(line.split() for line in r.stdout.splitlines() if line.strip())
    return all(states.get(c, "").rstrip("*") in ("idle", "mix", "alloc") for c in COMPUTE)


def wait_slurm(timeout=60):
    """Wait for the compute nodes; resume nodes left down or drained by an earlier run."""
    if not wait_for(nodes_ready, timeout, 0.5):
        slurm_cmd(["scontrol", "update", "nodename=" + ",".join(COMPUTE), "state=resume"])
        if not wait_for(nodes_ready, 20, 0.5):
            nodes = slurm_cmd(["sinfo", "-N"]).stdout
            raise SystemExit(f"site: slurm nodes not ready: {nodes}")


def stop_slurm(all_daemons=False):
    """Stop slurmctld (and every slurmd with ALL_DAEMONS)."""
    pf = [P.slurmctld_pid]
    if all_daemons:
        pf += [P.slurmd_pid(c) for c in COMPUTE]
    kill_pids([p for p in (pidfile_pid(f) for f in pf) if p], grace=10)
