"""`site down` removes everything it made; `site up` brings it all back (and is idempotent).

This module takes the site down and up again.  It first waits until no other
pytest session (which holds the shared lock of tests/site/fixtures.py) uses the
site, and fails with that reason if one still does after 300 s.  It sorts before
test_site.py, so the other tests then run against a freshly created site.
"""

import json
import os
import subprocess
import time
from pathlib import Path

import pytest


def sh(*argv):
    return subprocess.run(list(argv), capture_output=True, text=True, timeout=300)


def leftovers(site):
    """Everything of the site that still exists (empty when it is down)."""
    found = []
    ns = sh("ip", "netns", "list").stdout
    found += ["netns " + h["netns"] for h in site.hosts.values() if h["netns"] in ns]
    links = sh("ip", "-o", "link", "show").stdout
    found += [
        "link " + w.rstrip(":").split("@")[0]
        for w in links.split()
        if w.startswith(("rbp-", "rbc-", "rbbr-"))
    ]
    if "rbsite" in Path("/etc/hosts").read_text():
        found.append("/etc/hosts entries")
    for f in ("/etc/pam.d/sshd-rbdmz", "/usr/local/sbin/sshd-rbdmz", site.site_root):
        if os.path.lexists(f):
            found.append(f)
    if sh("id", "-u", site.login_user).returncode == 0:
        found.append("user " + site.login_user)
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            try:
                cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
            except OSError:
                continue
            if site.site_root + "/" in cmd:
                found.append(f"process {pid} {cmd[:80]}")
            elif sh("ip", "netns", "identify", pid).stdout.strip().startswith("rb-"):
                found.append(f"process in site netns {pid} {cmd[:80]}")
    return found


def test_down_removes_everything_and_up_restores(test_site, site_alone):
    r = sh(test_site.site_command, "down")
    assert r.returncode == 0, r.stderr
    assert leftovers(test_site) == []
    st = json.loads(sh(test_site.site_command, "status", "--json").stdout)
    assert st["state"] == "down"
    # second down is harmless
    assert sh(test_site.site_command, "down").returncode == 0

    t0 = time.time()
    r = sh(test_site.site_command, "up")
    took = time.time() - t0
    assert r.returncode == 0, r.stderr
    assert took < 120
    st = json.loads(sh(test_site.site_command, "status", "--json").stdout)
    assert st["state"] == "up"
    assert st["auth_count"] == 0 and st["otp_counter"] == 0
    # everything the fixture handed out is valid again (same paths)
    for k in ("ssh_config", "identity_file", "known_hosts"):
        assert os.path.exists(getattr(test_site, k))

    # up again while up: verify/repair, quick
    t0 = time.time()
    assert sh(test_site.site_command, "up").returncode == 0
    assert time.time() - t0 < 15


def test_up_repairs_a_killed_daemon(test_site, site_alone):
    pid = int(Path(test_site.raw["state_dir"], "run", "sshd-fe2.pid").read_text())
    os.kill(pid, 15)
    assert test_site.wait_until(
        lambda: (
            not os.path.exists(f"/proc/{pid}/status")
            or "Z" in Path(f"/proc/{pid}/stat").read_text().split()[2]
        ),
        5,
    )
    assert json.loads(sh(test_site.site_command, "status", "--json").stdout)["state"] == "degraded"
    r = sh(test_site.site_command, "up")
    assert r.returncode == 0, r.stderr
    st = json.loads(sh(test_site.site_command, "status", "--json").stdout)
    assert st["state"] == "up" and st["hosts"]["fe2"]["sshd"]


def test_status_exit_code_and_text(test_site):
    r = sh(test_site.site_command, "status")
    assert r.returncode == 0
    assert "state: up" in r.stdout and "fe1" in r.stdout


def test_fixture_fails_instead_of_skipping_without_root(monkeypatch):
    """bring_up() must fail the test (not skip) when the site cannot be made."""
    from tests.site import fixtures as fx

    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    with pytest.raises(pytest.fail.Exception, match="needs root"):
        fx.bring_up()
