"""Settings (site.ini plus environment), the hosts of the site and the paths under its root."""

import configparser
import hashlib
import os

HERE = os.path.dirname(os.path.dirname(os.path.realpath(__file__)))   # ops/testsite
INI = os.path.join(HERE, "site.ini")
SITE_COMMAND = os.path.join(HERE, "site")
ASKPASS = os.path.join(HERE, "askpass")

PUB_NET = "10.77.0"
CLU_NET = "10.77.1"
HOME_ADDR = PUB_NET + ".1"
BR_PUB = "rbbr-pub"
BR_CLU = "rbbr-clu"
DMZ_SSHD = "/usr/local/sbin/sshd-rbdmz"   # symlink to sshd -> PAM service name
DMZ_PAM = "/etc/pam.d/sshd-rbdmz"
HOSTS_BEGIN = "# BEGIN rbsite (remotebridge test site, managed by ops/testsite/site)"
HOSTS_END = "# END rbsite"
PACKAGES = ["openssh-server", "openssh-client", "munge", "slurm-wlm", "libpam-oath",
            "oathtool", "iproute2", "iptables", "procps", "netcat-openbsd", "parallel",
            "python3-numpy", "python3-astropy",
            "rsync"]  # bench/bench_transfer.py's rsync baseline runs it on the front end
DEFAULTS = {"site": {"root": "/srv/rbsite", "user": "rbremote", "partition": "batch",
                     "slurm_wait_time": "3"},
            "links": {"dmz_rate": "1gbit", "fe_rate": "200mbit"}}

# name -> role, namespace, public address, cluster address
HOSTS = {
    "dmz": {"role": "dmz", "ns": "rb-dmz", "pub": PUB_NET + ".2", "clu": None},
    "fe1": {"role": "fe", "ns": "rb-fe1", "pub": PUB_NET + ".11", "clu": CLU_NET + ".11"},
    "fe2": {"role": "fe", "ns": "rb-fe2", "pub": PUB_NET + ".12", "clu": CLU_NET + ".12"},
    "fe3": {"role": "fe", "ns": "rb-fe3", "pub": PUB_NET + ".13", "clu": CLU_NET + ".13"},
    "ctl": {"role": "ctl", "ns": "rb-ctl", "pub": None, "clu": CLU_NET + ".5"},
    "cn1": {"role": "cn", "ns": "rb-cn1", "pub": None, "clu": CLU_NET + ".21"},
    "cn2": {"role": "cn", "ns": "rb-cn2", "pub": None, "clu": CLU_NET + ".22"},
}
FRONT_ENDS = [h for h, v in HOSTS.items() if v["role"] == "fe"]
COMPUTE = [h for h, v in HOSTS.items() if v["role"] == "cn"]
SSH_HOSTS = ["dmz"] + FRONT_ENDS


def load_config(ini=INI, environ=None):
    """The site settings: site.ini over the defaults, the environment over both."""
    env = os.environ if environ is None else environ
    cp = configparser.ConfigParser()
    cp.read_dict(DEFAULTS)
    cp.read(ini)
    wait = env.get("RB_SITE_SLURM_WAIT_TIME") or cp.get("site", "slurm_wait_time")
    if not wait.strip().isdigit():
        raise SystemExit(f"site: slurm_wait_time must be whole seconds, not {wait!r}")
    cfg = {
        "root": os.path.abspath(env.get("RB_SITE_ROOT") or cp.get("site", "root")),
        "user": cp.get("site", "user"),
        "partition": cp.get("site", "partition"),
        "slurm_wait_time": int(wait),
        "rates": {},
    }
    dmz_rate = env.get("RB_SITE_DMZ_RATE") or cp.get("links", "dmz_rate")
    fe_rate = env.get("RB_SITE_FE_RATE") or cp.get("links", "fe_rate")
    for h in SSH_HOSTS:
        r = cp.get("links", "rate_" + h, fallback=dmz_rate if h == "dmz" else fe_rate)
        cfg["rates"][h] = env.get("RB_SITE_RATE_" + h.upper()) or r
    return cfg


class Paths:
    """Every file and folder of the site under its root."""

    def __init__(self, root):
        self.root = root
        self.marker = os.path.join(root, ".rbsite")
        self.state = os.path.join(root, "state")
        self.statefile = os.path.join(self.state, "site.json")
        self.run = os.path.join(self.state, "run")
        self.log = os.path.join(self.state, "log")
        self.client = os.path.join(self.state, "client")
        self.identity = os.path.join(self.client, "id_ed25519")
        self.known_hosts = os.path.join(self.client, "known_hosts")
        self.ssh_config = os.path.join(self.client, "ssh_config")
        self.sshdir = os.path.join(self.state, "ssh")
        self.authorized_keys = os.path.join(self.sshdir, "authorized_keys")
        self.oath = os.path.join(self.state, "oath")
        self.usersfile = os.path.join(self.oath, "users.oath")
        self.secret = os.path.join(self.oath, "secret")
        self.handed = os.path.join(self.oath, "handed")
        self.tokenlock = os.path.join(self.oath, "token.lock")
        self.munge = os.path.join(self.state, "munge")
        self.munge_socket = os.path.join(self.munge, "munge.socket.2")
        self.munge_key = os.path.join(self.munge, "munge.key")
        self.munge_pid = os.path.join(self.munge, "munged.pid")
        self.slurm = os.path.join(self.state, "slurm")
        self.slurm_conf = os.path.join(self.slurm, "slurm.conf")
        self.scratch = os.path.join(root, "scratch")
        self.permanent = os.path.join(root, "permanent")
        self.home = os.path.join(root, "home")
        # switches that survive `up`: rates set by `shape`, MaxSessions set by `maxsessions`
        self.rates = os.path.join(self.run, "rates.json")
        self.maxsessions = os.path.join(self.run, "maxsessions")
        self.slurm_stopped = os.path.join(self.run, "slurm-stopped")
        self.slurmctld_pid = os.path.join(self.run, "slurmctld.pid")
        # the front ends' PATH starts here (the sbatch wrapper); its switch folder
        self.bin = os.path.join(self.state, "bin")
        self.drop = os.path.join(self.run, "drop-submit")

    def sshd_config(self, h):
        return os.path.join(self.sshdir, h, "sshd_config")

    def host_key(self, h):
        return os.path.join(self.sshdir, h, "ssh_host_ed25519_key")

    def sshd_pid(self, h):
        return os.path.join(self.run, f"sshd-{h}.pid")

    def sshd_log(self, h):
        return os.path.join(self.log, f"sshd-{h}.log")

    def slurmd_pid(self, c):
        return os.path.join(self.run, f"slurmd-{c}.pid")

    def cut(self, h):
        return os.path.join(self.run, "cut-" + h)


CFG = load_config()
P = Paths(CFG["root"])
LOCKFILE = f"/run/lock/rbsite-{hashlib.sha1(P.root.encode()).hexdigest()[:12]}.lock"
VERBOSE = bool(os.environ.get("RB_SITE_VERBOSE"))
