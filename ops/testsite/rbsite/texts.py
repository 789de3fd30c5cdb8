"""The site's configuration texts, built from templates/ with string.Template.

Every builder takes what it needs as arguments and touches nothing, so the texts can be
checked without root (tests/unit/test_testsite_texts.py).
"""

import os
import re
import string

from .config import COMPUTE, FRONT_ENDS, HOME_ADDR, HOSTS, HOSTS_BEGIN, HOSTS_END, SSH_HOSTS

TEMPLATES = os.path.join(os.path.dirname(os.path.realpath(__file__)), "templates")
OPENSSH_MAX_SESSIONS = 10   # OpenSSH's default MaxSessions
FE_PATH = "/usr/local/bin:/usr/bin:/bin"   # after P.bin (the sbatch wrapper)


def render(name, **values):
    """Template NAME (a file in templates/) with VALUES; a missing value is an error."""
    with open(os.path.join(TEMPLATES, name)) as f:
        return string.Template(f.read()).substitute(values)


def sshd_config_text(h, paths, user, max_sessions=None):
    """sshd_config of ssh host H; MAX_SESSIONS (front ends only) None keeps OpenSSH's default."""
    v = HOSTS[h]
    common = render("sshd_common.conf", host=h, addr=v["pub"], hostkey=paths.host_key(h),
                    pid=paths.sshd_pid(h), authorized_keys=paths.authorized_keys, user=user)
    if h == "dmz":
        permit = " ".join("{}:22 rbsite-{}:22".format(HOSTS[f]["pub"], f) for f in FRONT_ENDS)
        return common + render("sshd_dmz.conf", permit=permit)
    env = (f"SLURM_CONF={paths.slurm_conf} RB_SITE_HOST={h} RB_SITE_SCRATCH={paths.scratch} "
           f"RB_SITE_PERMANENT={paths.permanent} PATH={paths.bin}:{FE_PATH}")
    limit = "" if max_sessions is None else f"MaxSessions {int(max_sessions)}\n"
    return common + render("sshd_fe.conf", env=env, max_sessions=limit)


def dmz_pam_text(paths):
    """The PAM service of the dmz sshd: a HOTP one-time password from pam_oath."""
    return render("pam_dmz", usersfile=paths.usersfile)


def client_ssh_config_text(paths, user, askpass):
    """The client's ssh_config: every ssh host by name, front ends through the dmz."""
    blocks = []
    for h in SSH_HOSTS:
        block = render("ssh_config_host", host=h, addr=HOSTS[h]["pub"], user=user,
                       identity=paths.identity, known_hosts=paths.known_hosts)
        if h != "dmz":
            block += "    ProxyJump dmz\n"
        blocks.append(block)
    head = render("ssh_config_head", ssh_config=paths.ssh_config, askpass=askpass)
    return head + "\n".join(blocks)


def known_hosts_text(host_keys):
    """known_hosts lines from HOST_KEYS (ssh host -> the text of its .pub file)."""
    out = []
    for h in SSH_HOSTS:
        key = host_keys[h].split()
        names = "{},{},rbsite-{}".format(h, HOSTS[h]["pub"], h)
        out.append(f"{names} {key[0]} {key[1]}\n")
    return "".join(out)


def slurm_conf_text(paths, partition, wait_time, ctl_host):
    """slurm.conf: slurmctld on CTL_HOST (the hostname every namespace shares), one partition.

    WAIT_TIME is Slurm's WaitTime: seconds srun waits after the first task ends before it
    ends the others (0 = wait for ever)."""
    nodes = "\n".join(
        f"NodeName={c} NodeAddr={HOSTS[c]['clu']} NodeHostname={c} CPUs=4 RealMemory=4000 "
        "State=UNKNOWN" for c in COMPUTE)
    return render("slurm.conf", ctl=ctl_host, ctladdr=HOSTS["ctl"]["clu"],
                  munge_socket=paths.munge_socket, slurm=paths.slurm, run=paths.run,
                  log=paths.log, wait_time=int(wait_time), nodes=nodes, partition=partition,
                  compute=",".join(COMPUTE))


def hosts_block():
    """The marked /etc/hosts block naming every host of the site."""
    lines = [HOSTS_BEGIN, f"{HOME_ADDR} rbsite-home"]
    for h, v in HOSTS.items():
        if v["pub"]:
            lines.append("{} rbsite-{}".format(v["pub"], h))
        if v["clu"]:
            lines.append("{} rbsite-{}-ib {}".format(v["clu"], h, h if v["role"] == "cn" else ""))
    lines.append(HOSTS_END)
    return "\n".join(line.rstrip() for line in lines) + "\n"


def strip_hosts_block(text):
    """TEXT (an /etc/hosts) without the site's block."""
    return re.sub(r"\n?" + re.escape(HOSTS_BEGIN) + r".*?" + re.escape(HOSTS_END) + r"\n?",
                  "\n", text, flags=re.S).rstrip("\n") + "\n"
