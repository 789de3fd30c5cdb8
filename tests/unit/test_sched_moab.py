"""The Moab adapter: documented sample outputs, and the fake Moab commands run for
real through the LocalLink (PATH points at tests/fixtures/moab/bin)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from remotebridge.config import SchedulerKind, SiteConfig, record_former_user
from remotebridge.errors import SchedulerError, TransientLinkError
from remotebridge.schedulers import JobState, MoabScheduler, make_scheduler
from remotebridge.schedulers.moab import iter_jobs, short_id, states_by_id
from remotebridge.ssh import LocalLink, Result

FIX = Path(__file__).resolve().parents[1] / "fixtures" / "moab"
BIN = FIX / "bin"


def read(name: str) -> str:
    return (FIX / name).read_text()


# --- documented samples ------------------------------------------------------------

def test_parse_showq_queue_sample() -> None:
    ids = ["1201", "1202", "1203", "1204", "1205", "1999"]
    assert states_by_id(read("showq_queue.xml"), ids) == {
        "1201": JobState.RUNNING, "1202": JobState.RUNNING, "1203": JobState.QUEUED,
        "1204": JobState.HELD, "1205": JobState.HELD}


def test_parse_showq_completed_sample() -> None:
    both = read("showq_queue.xml") + read("showq_completed.xml")
    got = states_by_id(both, ["1190", "1191", "1192", "1193", "1201"])
    assert got == {"1190": JobState.COMPLETED, "1191": JobState.FAILED,
                   "1192": JobState.CANCELLED, "1193": JobState.CANCELLED,
                   "1201": JobState.RUNNING}


def test_parse_checkjob_sample() -> None:
    assert states_by_id(read("checkjob_completed.xml"), ["Moab.1190"]) == {
        "Moab.1190": JobState.COMPLETED}


def test_unknown_state_sample_warns() -> None:
    with pytest.warns(RuntimeWarning, match="Reticulating"):
        assert states_by_id(read("showq_unknown_state.xml"), ["1300"]) == {
            "1300": JobState.LISTED}


def test_bad_xml_is_scheduler_error() -> None:
    with pytest.raises(SchedulerError):
        list(iter_jobs("<Data><queue>"))


@pytest.mark.parametrize("name, want", [("msub_answer.txt", "4761849"),
                                        ("msub_answer_moabid.txt", "Moab.1207")])
def test_parse_msub_answer(tmp_path: Path, name: str, want: str) -> None:
    sched = MoabScheduler(LocalLink(tmp_path), SiteConfig(scheduler=SchedulerKind.MOAB))
    assert sched.parse_submit(Result(0, read(name).encode())) == want


def test_canceljob_answers(tmp_path: Path) -> None:
    sched = MoabScheduler(LocalLink(tmp_path), SiteConfig(scheduler=SchedulerKind.MOAB))
    assert sched.cancel_gone(Result(1, b"", read("canceljob_invalid.txt").encode()))
    assert not sched.cancel_gone(Result(1, b"", b"ERROR:  cannot connect to server\n"))


def test_short_id() -> None:
    assert short_id("Moab.123") == short_id("123") == "123"


# --- the fake commands through the LocalLink ----------------------------------------

@pytest.fixture(params=["plain", "moab"])
def moab(request: pytest.FixtureRequest, tmp_path: Path,
         monkeypatch: pytest.MonkeyPatch) -> MoabScheduler:
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))  # switch-user history
    env = dict(os.environ, PATH=f"{BIN}:{os.environ['PATH']}",
               RB_FAKE_MOAB_DIR=str(tmp_path / "moabstate"), RB_FAKE_MOAB_IDFORM=request.param)
    link = LocalLink(tmp_path / "site", env=env)
    (link.root / "job dir").mkdir()
    (link.root / "job dir" / "job.sh").write_text("#!/bin/sh\necho hi\n")
    site = SiteConfig(scheduler=SchedulerKind.MOAB, partition="batch", account="ps1")
    sched = make_scheduler(link, site)
    assert isinstance(sched, MoabScheduler)
    return sched


def fakemoab(sched: MoabScheduler, *args: str) -> None:
    assert isinstance(sched.link, LocalLink)
    subprocess.run([str(BIN / "fakemoab"), *args], env=sched.link.env, check=True)


def test_fake_submit_status_cancel(moab: MoabScheduler) -> None:
    a = moab.submit("job dir/job.sh", "chip remote 1", "tokA")
    b = moab.submit("job dir/job.sh", "chip remote 2", "tokB")
    c = moab.submit("job dir/job.sh", "chip remote 3", "tokC")
    assert a != b != c
    assert moab.status([a, b, c]) == {a: JobState.QUEUED, b: JobState.QUEUED,
                                      c: JobState.QUEUED}
    fakemoab(moab, "set", a, "Running")
    fakemoab(moab, "set", b, "Completed", "0")
    fakemoab(moab, "set", c, "Completed", "2")
    assert moab.status([a, b, c, "999999"]) == {
        a: JobState.RUNNING, b: JobState.COMPLETED, c: JobState.FAILED,
        "999999": JobState.UNKNOWN}
    moab.cancel(a)
    assert moab.status([a])[a] is JobState.CANCELLED
    moab.cancel(a)  # already gone: not an error


def test_fake_purged_job_found_by_checkjob_or_unknown(moab: MoabScheduler) -> None:
    a = moab.submit("job dir/job.sh", "x", "tokP")
    fakemoab(moab, "set", a, "UserHold")
    assert moab.status([a])[a] is JobState.HELD
    fakemoab(moab, "purge", a)
    assert moab.status([a])[a] is JobState.UNKNOWN


def test_fake_find_by_token(moab: MoabScheduler) -> None:
    a = moab.submit("job dir/job.sh", "chip", "lost1")
    moab.submit("job dir/job.sh", "chip", "other")
    assert moab.find("lost1") == [a]
    assert moab.find("nope") == []


def test_fake_refused_submission(moab: MoabScheduler) -> None:
    assert isinstance(moab.link, LocalLink) and moab.link.env is not None
    moab.link.env["RB_FAKE_MOAB_FAIL"] = "msub"
    with pytest.raises(SchedulerError, match="submission failed") as info:
        moab.submit("job dir/job.sh", "x", "tokF")
    assert "violates policy" in info.value.evidence.stderr


def test_probe(moab: MoabScheduler) -> None:
    assert "<Data>" in moab.probe().out


def test_submit_argv_sets_the_working_directory(tmp_path: Path) -> None:
    sched = MoabScheduler(LocalLink(tmp_path), SiteConfig(scheduler=SchedulerKind.MOAB))
    argv = sched.submit_argv("/scratch/rb/remote_7/job.sh", "rb7", "tokW")
    assert argv[argv.index("-d") + 1] == "/scratch/rb/remote_7"
    assert argv[-1] == "/scratch/rb/remote_7/job.sh"
    assert "-d" not in sched.submit_argv("job.sh", "rb7", "tokW")


def test_fake_submit_runs_in_the_job_folder(moab: MoabScheduler) -> None:
    a = moab.submit("job dir/job.sh", "x", "tokD")
    out = moab.link.run(["checkjob", "--format=XML", a]).out
    (job,) = list(iter_jobs(out))
    assert isinstance(moab.link, LocalLink)
    assert job["IWD"] == str((moab.link.root / "job dir").resolve())


# --- the stand-in as real sites behave (see tests/fixtures/moab/README.md) ---------------

def fake_env(sched: MoabScheduler) -> dict[str, str]:
    assert isinstance(sched.link, LocalLink) and sched.link.env is not None
    return sched.link.env


def foreign(sched: MoabScheduler, user: str, name: str, drmjid: str, state: str) -> str:
    assert isinstance(sched.link, LocalLink)
    return subprocess.run([str(BIN / "fakemoab"), "foreign", user, name, drmjid, state],
                          env=sched.link.env, check=True, capture_output=True,
                          text=True).stdout.strip()


def test_another_users_drmjid_never_stands_for_our_job(moab: MoabScheduler) -> None:
    """showq lists every user's jobs; DRMJID is the resource manager's number."""
    ours = moab.submit("job dir/job.sh", "x", "tokD")
    fakemoab(moab, "purge", ours)
    foreign(moab, "mallory", "theirs", f"{short_id(ours)}.rm.example.org", "Running")
    assert moab.status([ours])[ours] is JobState.UNKNOWN


def test_another_users_job_with_our_token_is_not_adopted(moab: MoabScheduler) -> None:
    foreign(moab, "mallory", "copy.tokM", "77.rm.example.org", "Idle")
    assert moab.find("tokM") == []


def test_jobs_of_a_former_login_user_are_still_ours(moab: MoabScheduler) -> None:
    """After control-tool switch-user, the previous user's job is found by token."""
    env = fake_env(moab)
    env["RB_FAKE_MOAB_USER"] = "olduser"
    job = moab.submit("job dir/job.sh", "x", "tokU")
    del env["RB_FAKE_MOAB_USER"]
    assert moab.find("tokU") == []  # not a user of ours (yet)
    record_former_user(moab.site.name, "olduser")
    assert moab.find("tokU") == [job]
    assert moab.status([job])[job] is JobState.QUEUED


def test_job_cancelled_while_running_is_cancelled_not_failed(moab: MoabScheduler) -> None:
    """showq -c reports CompletionCode="CNCLD" for a cancelled job."""
    job = moab.submit("job dir/job.sh", "x", "tokK")
    fakemoab(moab, "set", job, "Running")
    moab.cancel(job)
    assert moab.status([job])[job] is JobState.CANCELLED


def test_client_timeout_is_a_transient_fault(moab: MoabScheduler) -> None:
    job = moab.submit("job dir/job.sh", "x", "tokT")
    fake_env(moab)["RB_FAKE_MOAB_TIMEOUT"] = "showq"
    with pytest.raises(TransientLinkError) as info:
        moab.status([job])
    assert "client timed out after 30 seconds" in info.value.evidence.stderr


def test_msub_timing_out_after_accepting_is_adopted(moab: MoabScheduler) -> None:
    fake_env(moab)["RB_FAKE_MOAB_TIMEOUT"] = "msub-after"
    answer = moab.submit_job("job dir/job.sh", "x", "tokA2")
    assert answer.adopted and moab.find("tokA2") == [answer.job_id]


def test_msub_timing_out_before_accepting_is_transient(moab: MoabScheduler) -> None:
    fake_env(moab)["RB_FAKE_MOAB_TIMEOUT"] = "msub"
    with pytest.raises(TransientLinkError):
        moab.submit_job("job dir/job.sh", "x", "tokA3")


def test_cancel_of_another_users_job_is_refused(moab: MoabScheduler) -> None:
    theirs = foreign(moab, "mallory", "theirs", "99.rm.example.org", "Idle")
    with pytest.raises(SchedulerError) as info:
        moab.cancel(theirs)
    assert "not authorized" in info.value.evidence.stderr


def test_checkjob_of_an_unknown_job_says_invalid(moab: MoabScheduler) -> None:
    assert isinstance(moab.link, LocalLink)
    r = moab.link.run(["checkjob", "--format=XML", "424242"], check=False)
    assert r.rc == 1 and r.err == "ERROR:  invalid job specified: 424242\n"
