"""The local scheduler for real: detached jobs that outlive their submitter."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from remotebridge.config import SchedulerKind, SiteConfig
from remotebridge.schedulers import JobState, LocalScheduler, make_scheduler
from remotebridge.ssh import LocalLink


@pytest.fixture()
def sched(tmp_path: Path) -> LocalScheduler:
    site = SiteConfig(scheduler=SchedulerKind.LOCAL, local_root=str(tmp_path / "site"))
    s = make_scheduler(LocalLink(site.local_root), site)
    assert isinstance(s, LocalScheduler)
    return s


def script(sched: LocalScheduler, name: str, body: str) -> str:
    folder = Path(sched.site.local_root) / "job dir"
    folder.mkdir(exist_ok=True)
    (folder / name).write_text(body)
    return f"job dir/{name}"


def wait_for(sched: LocalScheduler, job_id: str, timeout: float = 10) -> JobState:
    deadline = time.monotonic() + timeout
    while True:
        state = sched.status([job_id])[job_id]
        if state.terminal or time.monotonic() > deadline:
            return state
        time.sleep(0.05)


def test_submit_status_completed_and_failed(sched: LocalScheduler) -> None:
    ok = sched.submit(script(sched, "ok.sh", "echo hello; echo oops >&2\n"), "demo", "t-ok")
    bad = sched.submit(script(sched, "bad.sh", "exit 3\n"), "demo", "t-bad")
    assert ok.startswith("local.") and ok.endswith(".t-ok")
    assert wait_for(sched, ok) is JobState.COMPLETED
    assert wait_for(sched, bad) is JobState.FAILED
    folder = Path(sched.site.local_root) / "job dir"
    assert (folder / "rb_local.t-ok.out").read_text() == "hello\n"
    assert (folder / "rb_local.t-ok.err").read_text() == "oops\n"


def test_status_of_many_in_one_call(sched: LocalScheduler) -> None:
    path = script(sched, "s.sh", "sleep 5\n")  # written once: bash reads it as it runs
    ids = [sched.submit(path, "d", f"m{i}") for i in range(5)]
    states = sched.status([*ids, "local.1.never"])
    assert {j: states[j] for j in ids} == dict.fromkeys(ids, JobState.RUNNING)
    assert states["local.1.never"] is JobState.UNKNOWN
    for j in ids:
        sched.cancel(j)


def test_cancel_kills_the_process_group(sched: LocalScheduler) -> None:
    body = "sleep 300 &\nchild=$!\necho $child > child.pid\nwait\n"
    job = sched.submit(script(sched, "long.sh", body), "demo", "t-cancel")
    pidfile = Path(sched.site.local_root) / "job dir" / "child.pid"
    deadline = time.monotonic() + 5
    while not pidfile.exists() and time.monotonic() < deadline:
        time.sleep(0.02)
    child = int(pidfile.read_text())
    assert sched.status([job])[job] is JobState.RUNNING
    sched.cancel(job)
    assert wait_for(sched, job) is JobState.CANCELLED
    deadline = time.monotonic() + 5
    while Path(f"/proc/{child}").exists() and time.monotonic() < deadline:
        stat = Path(f"/proc/{child}/stat").read_text() if Path(f"/proc/{child}").exists() else ""
        if ") Z " in stat:
            break
        time.sleep(0.02)
    alive = Path(f"/proc/{child}/stat")
    assert not alive.exists() or ") Z " in alive.read_text()


def test_job_survives_the_submitting_process(sched: LocalScheduler, tmp_path: Path) -> None:
    body = "sleep 1; echo done > marker\n"
    path = script(sched, "survive.sh", body)
    code = (
        "from remotebridge.config import SiteConfig, SchedulerKind\n"
        "from remotebridge.ssh import LocalLink\n"
        "from remotebridge.schedulers import make_scheduler\n"
        f"site = SiteConfig(scheduler=SchedulerKind.LOCAL, local_root={sched.site.local_root!r})\n"
        "s = make_scheduler(LocalLink(site.local_root), site)\n"
        f"print(s.submit({path!r}, 'demo', 't-survive'))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, timeout=30)
    job = out.stdout.strip()
    assert sched.find("t-survive") == [job]
    assert wait_for(sched, job) is JobState.COMPLETED
    assert (Path(sched.site.local_root) / "job dir" / "marker").read_text() == "done\n"


def test_vanished_process_is_failed(sched: LocalScheduler) -> None:
    job = sched.submit(script(sched, "victim.sh", "sleep 300\n"), "demo", "t-kill")
    pid = int(job.split(".")[1])
    os.killpg(pid, 9)
    assert wait_for(sched, job) is JobState.FAILED


def test_find_by_token(sched: LocalScheduler) -> None:
    path = script(sched, "f.sh", "true\n")
    a = sched.submit(path, "demo", "tokX")
    sched.submit(path, "demo", "tokY")
    assert sched.find("tokX") == [a]
    assert sched.find("zzz") == []


def test_probe(sched: LocalScheduler) -> None:
    assert "setsid" in sched.probe().out
