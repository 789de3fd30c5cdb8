"""Slurm answers parsed from captured outputs (no Slurm needed here).

The real sbatch/squeue/scancel run in tests/integration/test_slurm_site.py.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from remotebridge.config import SchedulerKind, SiteConfig
from remotebridge.errors import SchedulerError
from remotebridge.schedulers import JobState, SlurmScheduler, make_scheduler
from remotebridge.schedulers.slurm import (
    parse_sacct,
    parse_scontrol,
    parse_squeue,
    split_sections,
)
from remotebridge.ssh import LocalLink, Result

SQUEUE = """\
101|RUNNING|None|chip_remote_1.tok1|rb:tok1
102|PENDING|Resources|warp_remote_2.tok2|rb:tok2
103|PENDING|JobHeldUser|stack.tok3|rb:tok3
104|COMPLETED|None|cam.tok4|rb:tok4
105|CANCELLED|None|other|(null)
106_3|RUNNING|None|arr.tok6|rb:tok6
107|FAILED|NonZeroExitCode|name|with|pipes|rb:a|b
"""

SACCT = """\
90|COMPLETED
91|FAILED
92|CANCELLED by 1000
93|TIMEOUT
94|NODE_FAIL
"""

SCONTROL = (
    "JobId=95 JobName=chip.t95 UserId=rbremote(1001) GroupId=rbremote(1001) MCS_label=N/A "
    "Priority=4294901757 Nice=0 Account=(null) QOS=(null) JobState=COMPLETED Reason=None "
    "Dependency=(null) Requeue=1 Restarts=0 BatchFlag=1 Reboot=0 ExitCode=0:0 "
    "Comment=rb:t95\n"
    "JobId=96 JobName=chip.t96 JobState=PENDING Reason=JobHeldAdmin Dependency=(null)\n"
)


@pytest.fixture()
def sched(tmp_path: Path) -> SlurmScheduler:
    site = SiteConfig(scheduler=SchedulerKind.SLURM, partition="batch", account="ps1")
    s = make_scheduler(LocalLink(tmp_path), site)
    assert isinstance(s, SlurmScheduler)
    return s


def test_parse_squeue() -> None:
    rows = parse_squeue(SQUEUE)
    assert rows["101"] == (JobState.RUNNING, "chip_remote_1.tok1", "rb:tok1")
    assert rows["102"][0] is JobState.QUEUED
    assert rows["103"][0] is JobState.HELD
    assert rows["104"][0] is JobState.COMPLETED
    assert rows["106_3"][0] is JobState.RUNNING
    assert rows["107"][0] is JobState.FAILED  # '|' in the name does not shift the state


def test_parse_sacct_and_scontrol() -> None:
    assert parse_sacct(SACCT) == {"90": JobState.COMPLETED, "91": JobState.FAILED,
                                  "92": JobState.CANCELLED, "93": JobState.TIMEOUT,
                                  "94": JobState.FAILED}
    assert parse_scontrol(SCONTROL) == {"95": JobState.COMPLETED, "96": JobState.HELD}


def test_submit_argv_carries_token_partition_account(sched: SlurmScheduler) -> None:
    argv = sched.submit_argv("/scratch/remote_7/job.sh", "chip remote 7", "abc123")
    assert argv[:2] == ["sbatch", "--parsable"]
    assert "--job-name=chip_remote_7.abc123" in argv
    assert "--comment=rb:abc123" in argv
    assert "--partition=batch" in argv and "--account=ps1" in argv
    assert "--chdir=/scratch/remote_7" in argv
    assert argv[-2:] == ["--", "/scratch/remote_7/job.sh"]


@pytest.mark.parametrize("out, want", [("4242\n", "4242"), ("4243;cluster1\n", "4243"),
                                        ("\n4244\n", "4244")])
def test_parse_submit(sched: SlurmScheduler, out: str, want: str) -> None:
    assert sched.parse_submit(Result(0, out.encode())) == want


def test_parse_submit_garbage(sched: SlurmScheduler) -> None:
    with pytest.raises(SchedulerError):
        sched.parse_submit(Result(0, b"sbatch: error: something\n"))


def test_status_argv_never_uses_dash_j(sched: SlurmScheduler) -> None:
    argv = sched.status_argv(["1", "2"])
    assert "-j" not in argv and "--me" in argv and "all" in argv


def test_parse_status_and_finished(sched: SlurmScheduler) -> None:
    ids = ["101", "102", "90", "95", "999"]
    live = sched.parse_status(Result(0, SQUEUE.encode()), ids)
    assert live == {"101": JobState.RUNNING, "102": JobState.QUEUED}
    assert sched.finished_argv(["90", "95"])[-1] == "90,95"
    text = "@@scontrol\n" + SCONTROL
    assert sched.parse_finished(Result(0, text.encode()), ["95", "999"]) == {
        "95": JobState.COMPLETED}
    text = "@@sacct\n" + SACCT
    assert sched.parse_finished(Result(0, text.encode()), ["90", "92"]) == {
        "90": JobState.COMPLETED, "92": JobState.CANCELLED}


def test_parse_find(sched: SlurmScheduler) -> None:
    text = SQUEUE + "@@sacct\n80|chip.tok2\n81|other\n"
    assert sched.parse_find(Result(0, text.encode()), "tok2") == ["80", "102"]
    assert sched.parse_find(Result(0, text.encode()), "nothing") == []


def test_split_sections() -> None:
    assert split_sections("a\n@@x\nb\nc\n@@y\n") == {"": "a", "x": "b\nc", "y": ""}


def test_cancel_gone(sched: SlurmScheduler) -> None:
    assert sched.cancel_gone(Result(1, b"", b"scancel: error: Kill job error on job id 5: "
                                            b"Invalid job id specified\n"))
    assert not sched.cancel_gone(Result(1, b"", b"scancel: error: Access/permission denied\n"))


# --- real-site fidelity: new states, find across users, one batched query -----------------

FAKE_SLURM = {
    # squeue honours --me and --name like the real one: rbremote's job, and one of olduser
    "squeue": r"""#!/bin/sh
echo "squeue $*" >> "$SLURM_LOG"
rows='301|PENDING|Priority|rb7.tokA|rb:tokA|rbremote
302|PENDING|Priority|rb9.tokOld|rb:tokOld|olduser'
case " $* " in *" --me "*) rows=$(printf '%s\n' "$rows" | grep '|rbremote$') ;; esac
for a; do case $a in --name=*) n=${a#--name=}
  rows=$(printf '%s\n' "$rows" | awk -F'|' -v n="$n" '$4 == n') ;; esac; done
printf '%s\n' "$rows" | cut -d'|' -f1-5 | grep . || true
""",
    "sacct": "#!/bin/sh\necho \"sacct $*\" >> \"$SLURM_LOG\"\nexit 1\n",
    "scontrol": "#!/bin/sh\necho \"scontrol $*\" >> \"$SLURM_LOG\"\n"
                "echo 'JobId=401 JobName=a.t1 JobState=COMPLETED Reason=None'\n"
                "echo 'JobId=402 JobName=b.t2 JobState=SPECIAL_EXIT Reason=None'\n",
}


@pytest.fixture()
def fake_slurm(tmp_path: Path) -> SlurmScheduler:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name, text in FAKE_SLURM.items():
        (bin_dir / name).write_text(text)
        (bin_dir / name).chmod(0o755)
    env = dict(os.environ, PATH=f"{bin_dir}:{os.environ['PATH']}",
               SLURM_LOG=str(tmp_path / "calls"))
    s = make_scheduler(LocalLink(tmp_path / "site", env=env),
                       SiteConfig(scheduler=SchedulerKind.SLURM))
    assert isinstance(s, SlurmScheduler)
    return s


def calls(sched: SlurmScheduler) -> list[str]:
    assert isinstance(sched.link, LocalLink) and sched.link.env is not None
    return Path(sched.link.env["SLURM_LOG"]).read_text().splitlines()


def test_find_sees_the_job_of_the_previous_login_user(fake_slurm: SlurmScheduler) -> None:
    """After control-tool switch-user, --me would hide the job: search by name, all users."""
    assert fake_slurm.find("tokOld", "rb9") == ["302"]
    squeue, sacct = calls(fake_slurm)
    assert "--me" not in squeue and "--name=rb9.tokOld" in squeue
    assert " -a " in sacct and "--name=rb9.tokOld" in sacct


def test_status_is_one_squeue_and_one_batched_scontrol(fake_slurm: SlurmScheduler) -> None:
    """squeue(1) PERFORMANCE: never one scontrol call per job."""
    states = fake_slurm.status(["301", "401", "402", "403"])
    assert states == {"301": JobState.QUEUED, "401": JobState.COMPLETED,
                      "402": JobState.HELD, "403": JobState.UNKNOWN}
    log = calls(fake_slurm)
    assert [c.split()[0] for c in log] == ["squeue", "sacct", "scontrol"]
    assert "-a" in log[1].split() and log[2] == "scontrol show job -o"
