"""Real-site behaviours the test site reproduces (docs/site-assumptions.md).

* WaitTime: the site's slurm.conf gets ``WaitTime`` from site.ini ``slurm_wait_time``
  (default 3, written by ``site up``). The job exports that value as ``SLURM_WAIT``
  (srun's environment name for the same default), so the test does not depend on the
  daemons having re-read slurm.conf. A chunk's slow task survives only with our
  ``--wait=0``; a control srun without it shows that the site kills it.
* MaxSessions: ``site maxsessions 2`` on the front ends; more sessions than that on
  one master are refused, which must read as a transient fault, never as a link down.
* A master that dies mid-command: its client exits 255 silently; that is a link down.
* A job submitted under another login user (``control-tool switch-user``) whose submit
  answer was lost: found by name across users. The site has one login user, so root
  submits the "previous user's" job as ``nobody`` (``sbatch --uid``), as slurmctld
  would have recorded it.
"""

from __future__ import annotations

import io
import os
import re
import signal
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from remotebridge.errors import LinkDown, LinkError, TransientLinkError
from remotebridge.schedulers import JobState, SlurmScheduler, make_scheduler
from remotebridge.ssh import OpenSSHLink
from tests.site.fixtures import site_cmd
from tests.support.demo_runs import short_dir
from tests.support.sitecfg import open_masters, site_config

pytestmark = pytest.mark.site


@pytest.fixture()
def fe1(test_site: Any) -> Iterator[OpenSSHLink]:
    """One master to fe1 (one dmz token)."""
    with short_dir("rbf") as control:
        site = site_config(test_site, control, frontends=["fe1"])
        with open_masters([OpenSSHLink(site, "fe1")], test_site.askpass,
                          patience=0) as (link,):
            yield link


def put_text(link: OpenSSHLink, path: str, text: str) -> None:
    link.run_stream_in(["sh", "-c", 'mkdir -p -- "$(dirname -- "$1")" && cat > "$1"',
                        "w", path], io.BytesIO(text.encode()))


def wait_terminal(sched: SlurmScheduler, job_id: str, timeout: float = 120) -> JobState:
    deadline = time.monotonic() + timeout
    while True:
        state = sched.status([job_id])[job_id]
        if state.terminal or time.monotonic() > deadline:
            return state
        time.sleep(2)


def live_wait_time(link: OpenSSHLink) -> int:
    """WaitTime as srun reads it: from slurm.conf itself, on every call (slurmctld's
    ``scontrol show config`` only changes when the daemons restart)."""
    out = link.run(["sh", "-c", 'cat -- "$SLURM_CONF"']).out
    m = re.search(r"^\s*WaitTime\s*=\s*(\d+)", out, re.M | re.I)
    return int(m.group(1)) if m else 0


def test_srun_wait_zero_outlives_the_sites_wait_time(fe1: OpenSSHLink) -> None:
    """srun without --wait kills a chunk's other tasks WaitTime s after the first ends."""
    wait = live_wait_time(fe1)
    assert wait > 0, ("the site's Slurm has WaitTime=0: bring it up with the testsite "
                      "package (site.ini slurm_wait_time, default 3) to test this")
    sched = make_scheduler(fe1, fe1.site)
    assert isinstance(sched, SlurmScheduler)
    folder = f"{fe1.site.remote_root}/rb wait test/{uuid.uuid4().hex[:8]}"
    slow = wait + 6
    for name in ("bare", "ours"):
        put_text(fe1, f"{folder}/{name}.conf",
                 f"0 true\n1 sh -c 'sleep {slow} && touch {name}.survived'\n")
    opts = "--kill-on-bad-exit=0 --ntasks=2 --cpus-per-task=1"
    # SLURM_WAIT is srun's own name for the WaitTime default (srun(1) INPUT ENVIRONMENT
    # VARIABLES); exported here so that the test holds even while the running daemons
    # have not re-read slurm.conf. A command-line --wait overrides both.
    put_text(fe1, f"{folder}/job.sh",
             "#!/bin/bash\n#SBATCH --output=job.out\n#SBATCH --time=5\n"
             f"#SBATCH --nodes=1 --ntasks=2\nexport SLURM_WAIT={wait}\n"
             f"srun {opts} --multi-prog bare.conf || echo bare rc=$?\n"
             f"srun {opts} --wait=0 --multi-prog ours.conf || echo ours rc=$?\n")
    job = sched.submit(f"{folder}/job.sh", "waittest", "w" + uuid.uuid4().hex[:8])
    try:
        assert wait_terminal(sched, job, timeout=4 * slow + 60).terminal
        listing = fe1.run(["ls", "--", folder]).out.split()
        assert "ours.survived" in listing  # --wait=0: the slow task ran to its end
        assert "bare.survived" not in listing  # the site does kill without it
    finally:
        fe1.run(["rm", "-rf", "--", f"{fe1.site.remote_root}/rb wait test"])


def test_sessions_over_max_sessions_are_transient_not_link_down(
        site_alone: Any) -> None:
    """MaxSessions 2 and sessions_per_master 8: the refusals must not send runs to auth."""
    site_cmd("maxsessions", "2")
    try:
        with short_dir("rbm") as control:
            site = site_config(site_alone, control, frontends=["fe2"], sessions_per_master=8)
            with open_masters([OpenSSHLink(site, "fe2")], site_alone.askpass,
                              patience=0) as (link,):
                before = site_alone.auth_count()
                errors = run_concurrently(link, 6)
                assert errors, "no session was refused: is MaxSessions 2 in effect?"
                assert all(isinstance(e, TransientLinkError) for e in errors), errors
                assert site_alone.auth_count() == before  # no fallback login either
                assert link.run(["true"]).ok  # the master itself is fine
    finally:
        site_cmd("maxsessions", "default")


def run_concurrently(link: OpenSSHLink, n: int) -> list[LinkError]:
    errors: list[LinkError] = []

    def work() -> None:
        try:
            link.run(["sleep", "3"], retry=False)
        except LinkError as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    return errors


def test_master_dying_mid_command_is_link_down(test_site: Any) -> None:
    with short_dir("rbd") as control:
        site = site_config(test_site, control, frontends=["fe3"])
        with open_masters([OpenSSHLink(site, "fe3")], test_site.askpass,
                          patience=0) as (link,):
            pid = master_pid(link)
            caught: list[BaseException] = []

            def work() -> None:
                try:
                    link.run(["sleep", "30"], retry=False)
                except BaseException as exc:  # noqa: BLE001 - checked below
                    caught.append(exc)

            t = threading.Thread(target=work)
            t.start()
            time.sleep(2)
            os.kill(pid, signal.SIGKILL)
            t.join(30)
            assert len(caught) == 1 and isinstance(caught[0], LinkDown), caught


def master_pid(link: OpenSSHLink) -> int:
    r = subprocess.run([link.ssh_binary, *link.base_options(), "-O", "check", "--",
                        link.host], capture_output=True, text=True, check=True)
    m = re.search(r"pid=(\d+)", r.stderr + r.stdout)
    assert m, r.stderr
    return int(m.group(1))


def test_job_of_the_previous_login_user_is_found_by_name(fe1: OpenSSHLink,
                                                         test_site: Any) -> None:
    """After switch-user, squeue --me would not show it and exec would submit again."""
    sched = make_scheduler(fe1, fe1.site)
    assert isinstance(sched, SlurmScheduler)
    token = "prev" + uuid.uuid4().hex[:8]
    name = "rb9"
    conf = test_site.status()["slurm_conf"]
    ns = test_site.hosts["fe1"]["netns"]
    r = subprocess.run(
        ["ip", "netns", "exec", ns, "env", f"SLURM_CONF={conf}",
         "sbatch", "--parsable", "--uid=nobody", "--gid=nogroup", "--chdir=/tmp",
         "--output=/dev/null", "--hold", f"--job-name={name}.{token}",
         f"--partition={fe1.site.partition}", "--wrap=sleep 60"],
        capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    job_id = r.stdout.strip().split(";")[0]
    try:
        assert sched.find(token, name) == [job_id]
    finally:
        subprocess.run(["ip", "netns", "exec", ns, "env",
                        f"SLURM_CONF={conf}", "scancel", job_id], timeout=60, check=False)
