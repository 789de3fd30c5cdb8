"""The site's life: `up` (install, build, start; idempotent), `down` and `status`."""

import contextlib
import json
import os
import shutil
import time

from . import dropsubmit, network, slurm, sshd, texts
from .config import (
    ASKPASS,
    CFG,
    COMPUTE,
    DMZ_PAM,
    DMZ_SSHD,
    FRONT_ENDS,
    HOME_ADDR,
    HOSTS,
    LOCKFILE,
    PACKAGES,
    SITE_COMMAND,
    SSH_HOSTS,
    P,
)
from .proc import kill_pids, log, need_root, ok, pidfile_pid, read, run, tcp_open, wait_for, write

POLICY_RC = "/usr/sbin/policy-rc.d"


def ensure_packages():
    """apt-get install what is missing, without starting any system service."""
    missing = []
    for p in PACKAGES:
        r = run(["dpkg-query", "-W", "-f=${Status}", p], check=False)
        if "install ok installed" not in (r.stdout or ""):
            missing.append(p)
    if not missing:
        return
    log("installing " + " ".join(missing))
    env = {"DEBIAN_FRONTEND": "noninteractive"}
    made_prc = False
    if not os.path.exists(POLICY_RC):
        write(POLICY_RC, "#!/bin/sh\n# rbsite: do not start services while installing\nexit 101\n",
              0o755)
        made_prc = True
    try:
        run(["apt-get", "update", "-qq"], env=env, timeout=600)
        run(["apt-get", "install", "-y", "-qq", "--no-install-recommends"] + missing,
            env=env, timeout=900)
    finally:
        if made_prc:
            with contextlib.suppress(OSError):
                os.unlink(POLICY_RC)


def ensure_user():
    """The login user (no password, not locked), its home and storage folders."""
    u = CFG["user"]
    home = os.path.join(P.home, u)
    if not ok(["id", "-u", u]):
        run(["useradd", "-M", "-d", home, "-s", "/bin/bash", "-c", "rbsite remote login", u])
        write(os.path.join(P.state, "created_user"), u + "\n")
    # '*' = no password but not "locked" (sshd refuses locked accounts with UsePAM no)
    run(["usermod", "-p", "*", u])
    os.makedirs(home, exist_ok=True)
    run(["chown", f"{u}:{u}", home])
    os.chmod(home, 0o755)
    for base in (P.scratch, P.permanent):
        os.makedirs(base, exist_ok=True)
        os.chmod(base, 0o1777)
        d = os.path.join(base, u)
        os.makedirs(d, exist_ok=True)
        run(["chown", f"{u}:{u}", d])


def ensure_slurm():
    """Start Slurm, unless `site stop-slurm` stopped it: like a cut, `up` leaves that so."""
    if os.path.exists(P.slurm_stopped):
        slurm.write_slurm_conf()
        slurm.ensure_munge()
    else:
        slurm.start_slurm()
        slurm.wait_slurm()


def wait_sshd_reachable():
    """Wait until every ssh host not cut answers on port 22 (front ends seen from the dmz)."""
    for h in SSH_HOSTS:
        if os.path.exists(P.cut(h)):
            continue
        ns = None if h == "dmz" else HOSTS["dmz"]["ns"]
        if not wait_for(lambda h=h, ns=ns: tcp_open(HOSTS[h]["pub"], 22, ns=ns), 10):
            raise SystemExit(f"site: sshd on {h} not reachable")


def up():
    """Install what is missing and bring every part up; quick when the site is up."""
    need_root()
    t0 = time.time()
    ensure_packages()
    for d in (P.root, P.state, P.run, P.log, P.slurm):
        os.makedirs(d, exist_ok=True)
    os.chmod(P.root, 0o755)
    write(P.marker, "remotebridge test site root; `ops/testsite/site down` deletes it\n")
    ensure_user()
    sshd.ensure_keys()
    network.ensure_network()
    network.ensure_etc_hosts()
    dropsubmit.ensure_wrapper()
    changed = sshd.ensure_ssh_files()
    for h in SSH_HOSTS:
        if h in changed and pidfile_pid(P.sshd_pid(h)):
            sshd.restart_sshd(h)      # open sessions live on; new ones get the new config
        sshd.start_sshd(h)
    sshd.write_client_bundle()
    ensure_slurm()
    wait_sshd_reachable()
    write(P.statefile, json.dumps({"state": "up", "since": time.time()}) + "\n")
    log("up in %.1fs" % (time.time() - t0))


def down():
    """Remove every namespace, process, link and file the site made."""
    need_root()
    have = network.netns_list()
    for v in HOSTS.values():
        if v["ns"] in have:
            kill_pids(network.ns_pids(v["ns"]), grace=5)
    mp = pidfile_pid(P.munge_pid)
    if mp:
        kill_pids([mp])
    network.remove_network(have)
    network.remove_etc_hosts()
    for f in (DMZ_PAM, DMZ_SSHD):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(f)
    created = (read(os.path.join(P.state, "created_user")) or "").strip()
    if created and ok(["id", "-u", created]):
        run(["userdel", created], check=False)
    if os.path.exists(P.marker):
        shutil.rmtree(P.root, ignore_errors=True)
    elif os.path.exists(P.root):
        log(f"{P.root} has no .rbsite marker; not deleting it")
    with contextlib.suppress(FileNotFoundError):
        os.unlink(LOCKFILE)
    log("down")


def host_status(h, rates):
    """What `status` says of host H (whose namespace exists)."""
    v = HOSTS[h]
    d = {"role": v["role"], "netns": v["ns"], "address": v["pub"], "cluster_address": v["clu"]}
    if v["pub"]:
        d["link"] = "up" if network.link_up(network.pub_if(h)) else "down"
    elif v["clu"]:
        d["link"] = "up" if network.link_up(network.clu_if(h)) else "down"
    if h in SSH_HOSTS:
        d["rate"] = rates[h]
        d["sshd"] = bool(pidfile_pid(P.sshd_pid(h)))
    if v["role"] == "cn":
        d["slurmd"] = bool(pidfile_pid(P.slurmd_pid(h)))
    if v["role"] == "ctl":
        d["slurmctld"] = bool(pidfile_pid(P.slurmctld_pid))
    return d


def absent_host(h):
    """What `status` says of host H whose namespace does not exist."""
    v = HOSTS[h]
    return {"role": v["role"], "netns": v["ns"], "address": v["pub"],
            "cluster_address": v["clu"], "link": "absent"}


def site_state(hosts, have):
    """up, degraded or down."""
    up_marker = os.path.exists(P.statefile)
    healthy = up_marker and all(HOSTS[h]["ns"] in have for h in HOSTS) and \
        all(hosts[h].get("sshd") for h in SSH_HOSTS) and bool(pidfile_pid(P.munge_pid))
    if not up_marker and not (have & {v["ns"] for v in HOSTS.values()}):
        return "down"
    return "up" if healthy else "degraded"


def status():
    """The site as a dict (what `status --json` prints)."""
    have = network.netns_list()
    rates = network.current_rates()
    hosts = {h: host_status(h, rates) if HOSTS[h]["ns"] in have else absent_host(h)
             for h in HOSTS}
    try:
        nxt, used = sshd.otp_state()
    except SystemExit:
        nxt = used = None
    return {
        "state": site_state(hosts, have),
        "site_root": P.root,
        "state_dir": P.state,
        "login_user": CFG["user"],
        "home_address": HOME_ADDR,
        "hosts": hosts,
        "front_ends": FRONT_ENDS,
        "compute_nodes": COMPUTE,
        "ssh_hosts": SSH_HOSTS,
        "ssh_config": P.ssh_config,
        "identity_file": P.identity,
        "known_hosts": P.known_hosts,
        "askpass": ASKPASS,
        "site_command": SITE_COMMAND,
        "scratch_root": P.scratch,
        "permanent_root": P.permanent,
        "user_scratch": os.path.join(P.scratch, CFG["user"]),
        "user_permanent": os.path.join(P.permanent, CFG["user"]),
        "slurm_partition": CFG["partition"],
        "slurm_conf": P.slurm_conf,
        "slurm_up": bool(pidfile_pid(P.slurmctld_pid)),
        "auth_count": sshd.auth_count(),
        "otp_counter": nxt,
        "otp_used": used,
        "dmz_log": P.sshd_log("dmz"),
        "max_sessions": sshd.max_sessions() or texts.OPENSSH_MAX_SESSIONS,
    }
