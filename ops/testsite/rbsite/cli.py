"""`site VERB ...`: the parser and a table from verb to handler."""

import argparse
import json
import os

from . import __doc__ as PACKAGE_DOC
from . import dropsubmit, lifecycle, sshd, switches
from .config import HOSTS
from .proc import log, need_root, site_lock


def cmd_up(a):
    with site_lock():
        lifecycle.up()


def cmd_down(a):
    with site_lock():
        lifecycle.down()


def status_lines(st):
    """The human-readable `status`."""
    out = ["state: {}   root: {}   user: {}   auth_count: {}   otp_counter: {}".format(
        st["state"], st["site_root"], st["login_user"], st["auth_count"], st["otp_counter"])]
    for h, d in st["hosts"].items():
        extra = " ".join(f"{k}={d[k]}" for k in ("rate", "sshd", "slurmd", "slurmctld")
                         if k in d)
        pub, clu = d["address"] or "-", d["cluster_address"] or "-"
        out.append(f"  {h:<4} {d['netns']:<7} pub={pub:<11} clu={clu:<11} "
                   f"link={d.get('link')!s:<6} {extra}")
    out.append(f"ssh_config: {st['ssh_config']}")
    out.append(f"try: SSH_ASKPASS={st['askpass']} SSH_ASKPASS_REQUIRE=force "
               f"ssh -F {st['ssh_config']} fe1 hostname")
    return out


def cmd_status(a):
    st = lifecycle.status()
    if a.json:
        print(json.dumps(st, indent=2, sort_keys=True))
    else:
        print("\n".join(status_lines(st)))
    return 0 if st["state"] == "up" else 3


def cmd_expire(a):
    need_root()
    log(f"expired: killed {switches.expire()} dmz session processes")


def cmd_link(a):
    need_root()
    for h in (list(HOSTS) if a.host == "all" else [a.host]):
        switches.set_link(h, "down" if a.cmd == "cut" else "up")


def cmd_purge(a):
    log(f"purged {switches.purge(a.older_than)} files")


def cmd_stop_slurm(a):
    need_root()
    switches.stop_slurm(a.all)


def cmd_start_slurm(a):
    need_root()
    with site_lock():
        switches.start_slurm()


def cmd_kill_slurmd(a):
    need_root()
    log(f"killed slurmd {a.node} (pid {switches.kill_slurmd(a.node)})")


def cmd_drop_submit(a):
    need_root()
    before = dropsubmit.arm(a.n)
    log(f"the next {a.n} submit answers are dropped (was {before})")


def cmd_dropped(a):
    lines = dropsubmit.dropped()
    if a.json:
        print(json.dumps({"dropped": len(lines), "armed": dropsubmit.armed(),
                          "answers": lines}))
    else:
        print(len(lines))


def cmd_token(a):
    print(sshd.token(reserve=a.next))


def cmd_auth_count(a):
    print(sshd.auth_count())


def cmd_shape(a):
    need_root()
    switches.set_rate(a.host, a.rate)


def cmd_maxsessions(a):
    need_root()
    switches.parse_max_sessions(a.n)          # refuse a bad N before taking the lock
    with site_lock():
        switches.set_max_sessions(a.n)


def cmd_exec(a):
    need_root()
    if a.host not in HOSTS and a.host != "home":
        raise SystemExit(f"site: unknown host {a.host}")
    cmd = a.command[1:] if a.command[:1] == ["--"] else a.command
    if not cmd:
        cmd = ["bash"]
    if a.host != "home":
        cmd = ["ip", "netns", "exec", HOSTS[a.host]["ns"]] + cmd
    os.execvp(cmd[0], cmd)


# verb -> (handler, help, arguments as (name-or-flags, keyword arguments))
VERBS = {
    "up": (cmd_up, "install what is missing, bring the site up (idempotent)", []),
    "down": (cmd_down, "remove every namespace, process and file the site made", []),
    "status": (cmd_status, "show the site; --json for programs",
               [(("--json",), {"action": "store_true"})]),
    "expire": (cmd_expire, "kill every live dmz session (like the 12-hour cut)", []),
    "cut": (cmd_link, "link of HOST (or `all`) down", [(("host",), {})]),
    "heal": (cmd_link, "link of HOST (or `all`) up", [(("host",), {})]),
    "purge": (cmd_purge, "delete scratch files (older than SECONDS)",
              [(("--older-than",), {"type": float, "default": 0.0, "metavar": "SECONDS"})]),
    "stop-slurm": (cmd_stop_slurm, "stop slurmctld (--all: slurmd too)",
                   [(("--all",), {"action": "store_true"})]),
    "start-slurm": (cmd_start_slurm, "start the slurm daemons again", []),
    "kill-slurmd": (cmd_kill_slurmd, "kill -9 the slurmd of compute NODE (start-slurm"
                    " starts it again)", [(("node",), {})]),
    "drop-submit": (cmd_drop_submit, "the next N sbatch calls on a front end submit, then "
                    "their connection dies before the answer is sent (0 disarms)",
                    [(("n",), {"type": int, "metavar": "N"})]),
    "dropped": (cmd_dropped, "how many submit answers were dropped (--json: also the "
                "count still armed and each lost answer)",
                [(("--json",), {"action": "store_true"})]),
    "token": (cmd_token, "print the next valid one-time password",
              [(("--next",), {"action": "store_true", "help": "hand out a fresh token never "
                              "handed out before (for concurrent logins)"})]),
    "auth-count": (cmd_auth_count, "successful dmz logins (each consumed one token)", []),
    "shape": (cmd_shape, "set the rate of HOST's link, e.g. `shape fe3 80mbit`"
              " (`default` restores the configured rate)", [(("host",), {}), (("rate",), {})]),
    "maxsessions": (cmd_maxsessions, "set MaxSessions N of the front ends' sshd and restart"
                    " them (`default`: OpenSSH's 10)", [(("n",), {"metavar": "N"})]),
    "exec": (cmd_exec, "run a command inside HOST's namespace",
             [(("host",), {}), (("command",), {"nargs": argparse.REMAINDER})]),
}


def parser():
    """The argument parser of every verb in VERBS."""
    ap = argparse.ArgumentParser(prog="site", description=PACKAGE_DOC,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    for verb, (_handler, help_text, args) in VERBS.items():
        s = sub.add_parser(verb, help=help_text)
        for names, kwargs in args:
            s.add_argument(*names, **kwargs)
    return ap


def main(argv=None):
    """Run one verb; its exit code (status: 0 only when the site is up)."""
    a = parser().parse_args(argv)
    return VERBS[a.cmd][0](a) or 0
