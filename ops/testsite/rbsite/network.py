"""The network: namespaces, bridges, veth pairs, tc rate limits, the front ends' firewall
and the /etc/hosts block."""

import contextlib
import json
import os
import re

from . import texts
from .config import BR_CLU, BR_PUB, CFG, HOME_ADDR, HOSTS, HOSTS_BEGIN, SSH_HOSTS, P
from .proc import ok, read, run


def pub_if(h):
    """Home-side name of H's public veth."""
    return "rbp-" + h


def clu_if(h):
    """Home-side name of H's cluster veth."""
    return "rbc-" + h


def netns_list():
    """Names of the network namespaces that exist."""
    r = run(["ip", "netns", "list"], check=False)
    return {line.split()[0] for line in (r.stdout or "").splitlines() if line.strip()}


def ns_pids(ns):
    """Pids running inside namespace NS."""
    r = run(["ip", "netns", "pids", ns], check=False)
    return [int(x) for x in (r.stdout or "").split() if x.isdigit()]


def link_exists(name, ns=None):
    """True when link NAME exists (in namespace NS)."""
    return ok(["ip", "link", "show", name], ns=ns)


def link_up(name, ns=None):
    """True when link NAME exists and is administratively up."""
    r = run(["ip", "-o", "link", "show", name], check=False, ns=ns)
    if r.returncode != 0:
        return False
    m = re.search(r"<([^>]*)>", r.stdout)
    return bool(m and "UP" in m.group(1).split(","))


def ensure_bridge(name, addr=None):
    """Bridge NAME, up, with ADDR/24 if given."""
    if not link_exists(name):
        run(["ip", "link", "add", name, "type", "bridge"])
    if addr and addr not in run(["ip", "-o", "-4", "addr", "show", "dev", name]).stdout:
        run(["ip", "addr", "add", addr + "/24", "dev", name])
    run(["ip", "link", "set", name, "up"])


def ensure_veth(h, outer, inner, bridge, addr):
    """A veth pair from BRIDGE into H's namespace, INNER holding ADDR; a cut link stays down."""
    ns = HOSTS[h]["ns"]
    if not link_exists(outer):
        if link_exists(inner, ns=ns):
            run(["ip", "link", "del", inner], ns=ns)
        run(["ip", "link", "add", outer, "type", "veth", "peer", "name", inner, "netns", ns])
    run(["ip", "link", "set", outer, "master", bridge])
    if not os.path.exists(P.cut(h)):
        run(["ip", "link", "set", outer, "up"])
    if addr not in run(["ip", "-o", "-4", "addr", "show", "dev", inner], ns=ns).stdout:
        run(["ip", "addr", "add", addr + "/24", "dev", inner], ns=ns)
    run(["ip", "link", "set", inner, "up"], ns=ns)


def rate_bits(rate):
    """Bits per second of a tc rate such as 200mbit or 10MBps."""
    m = re.fullmatch(r"\s*([\d.]+)\s*([kmgt]?)(bit|bps)?\s*", rate.lower())
    if not m:
        raise SystemExit(f"site: bad rate {rate!r} (use e.g. 200mbit)")
    v = float(m.group(1)) * {"": 1, "k": 1e3, "m": 1e6, "g": 1e9, "t": 1e12}[m.group(2)]
    if m.group(3) == "bps":
        v *= 8
    return int(v)


def tbf_argv(dev, rate):
    """The tc command that limits DEV to RATE (token bucket, 10 ms of burst)."""
    burst = max(32 * 1024, rate_bits(rate) // 8 // 100)
    return ["tc", "qdisc", "replace", "dev", dev, "root", "tbf", "rate", rate,
            "burst", str(burst), "latency", "50ms"]


def current_rates():
    """The configured rates with those set by `site shape` on top."""
    rates = dict(CFG["rates"])
    with contextlib.suppress(ValueError):
        rates.update(json.loads(read(P.rates, "{}")))
    return rates


def shape(h, rate):
    """Limit H's public link to RATE in both directions."""
    run(tbf_argv(pub_if(h), rate))                       # towards the host
    run(tbf_argv("pub0", rate), ns=HOSTS[h]["ns"])       # from the host


def firewall_rules():
    """iptables rules of a front end: only the dmz may reach it on the public side."""
    dmz = HOSTS["dmz"]["pub"]
    return [
        ["-F", "INPUT"],
        ["-A", "INPUT", "-i", "lo", "-j", "ACCEPT"],
        ["-A", "INPUT", "-i", "pub0", "-s", dmz, "-j", "ACCEPT"],
        ["-A", "INPUT", "-i", "pub0", "-p", "tcp", "-j", "REJECT", "--reject-with", "tcp-reset"],
        ["-A", "INPUT", "-i", "pub0", "-j", "REJECT", "--reject-with", "icmp-admin-prohibited"],
    ]


def firewall(h):
    """Apply the front-end firewall inside H's namespace."""
    for r in firewall_rules():
        run(["iptables", "-w"] + r, ns=HOSTS[h]["ns"])


def ensure_network():
    """Bridges, namespaces, links, rates and firewalls; repairs whatever is missing."""
    ensure_bridge(BR_PUB, HOME_ADDR)
    ensure_bridge(BR_CLU)
    have = netns_list()
    rates = current_rates()
    for h, v in HOSTS.items():
        ns = v["ns"]
        if ns not in have:
            run(["ip", "netns", "add", ns])
        run(["ip", "link", "set", "lo", "up"], ns=ns)
        if v["pub"]:
            ensure_veth(h, pub_if(h), "pub0", BR_PUB, v["pub"])
        if v["clu"]:
            ensure_veth(h, clu_if(h), "clu0", BR_CLU, v["clu"])
        if h in SSH_HOSTS:
            shape(h, rates[h])
        if v["role"] == "fe":
            firewall(h)


def remove_network(have):
    """Delete the namespaces in HAVE that are the site's, its veths and its bridges."""
    for h, v in HOSTS.items():
        if v["ns"] in have:
            run(["ip", "netns", "del", v["ns"]], check=False)
        for i in (pub_if(h), clu_if(h)):
            if link_exists(i):
                run(["ip", "link", "del", i], check=False)
    for b in (BR_PUB, BR_CLU):
        if link_exists(b):
            run(["ip", "link", "del", b], check=False)


def ensure_etc_hosts():
    """Put the site's block into /etc/hosts (replacing an older one)."""
    text = read("/etc/hosts", "")
    new = texts.strip_hosts_block(text) + texts.hosts_block()
    if new != text:
        # rewrite in place: /etc/hosts may be a bind mount
        with open("/etc/hosts", "w") as f:
            f.write(new)


def remove_etc_hosts():
    """Take the site's block out of /etc/hosts."""
    text = read("/etc/hosts", "")
    if HOSTS_BEGIN in text:
        with open("/etc/hosts", "w") as f:
            f.write(texts.strip_hosts_block(text))
