"""The Slurm adapter against the real Slurm of the test site, through a real master."""

from __future__ import annotations

import io
import json
import time
import uuid
from collections.abc import Iterator

import pytest

from remotebridge.errors import LinkError
from remotebridge.schedulers import JobState, SlurmScheduler, make_scheduler
from remotebridge.ssh import OpenSSHLink, Result
from tests.site.fixtures import site_cmd
from tests.support.demo_runs import short_dir
from tests.support.sitecfg import open_masters, site_config, start_master

pytestmark = pytest.mark.site


class CountingLink(OpenSSHLink):
    """The real link, counting remote calls (to prove 'many jobs in one call')."""

    calls = 0

    def run(self, argv, **kw):  # type: ignore[no-untyped-def,override]
        type(self).calls += 1
        return super().run(argv, **kw)


@pytest.fixture(scope="module")
def slurm(test_site) -> Iterator[SlurmScheduler]:  # type: ignore[no-untyped-def]
    with short_dir("rbs") as control:
        site = site_config(test_site, control, frontends=["fe1"])
        if not test_site.status().get("slurm_up", True):
            test_site.start_slurm()
        with open_masters([CountingLink(site, "fe1")], test_site.askpass,
                          patience=0) as (link,):
            sched = make_scheduler(link, site)
            assert isinstance(sched, SlurmScheduler)
            yield sched


def job_script(sched: SlurmScheduler, body: str) -> str:
    folder = f"{sched.site.remote_root}/rb slurm test/{uuid.uuid4().hex[:8]}"
    path = f"{folder}/job.sh"
    sched.link.run(["mkdir", "-p", folder])
    script = f"#!/bin/bash\n#SBATCH --output=slurm.out\n#SBATCH --time=5\n{body}\n"
    sched.link.run_stream_in(["sh", "-c", 'cat > "$1"', "w", path], io.BytesIO(script.encode()))
    return path


def wait_terminal(sched: SlurmScheduler, job_id: str, timeout: float = 90) -> JobState:
    deadline = time.monotonic() + timeout
    while True:
        state = sched.status([job_id])[job_id]
        if state.terminal or time.monotonic() > deadline:
            return state
        time.sleep(1)


def test_submit_and_complete(slurm: SlurmScheduler) -> None:
    ok = slurm.submit(job_script(slurm, "echo hello"), "it ok", "ok" + uuid.uuid4().hex[:6])
    bad = slurm.submit(job_script(slurm, "exit 3"), "it bad", "bad" + uuid.uuid4().hex[:6])
    assert ok.isdigit() and bad.isdigit()
    assert slurm.status([ok, bad])[ok] in {JobState.QUEUED, JobState.RUNNING,
                                            JobState.COMPLETED}
    assert wait_terminal(slurm, ok) is JobState.COMPLETED
    assert wait_terminal(slurm, bad) is JobState.FAILED


def test_cancel(slurm: SlurmScheduler) -> None:
    job = slurm.submit(job_script(slurm, "sleep 120"), "it cancel", "c" + uuid.uuid4().hex[:6])
    slurm.cancel(job)
    assert wait_terminal(slurm, job, 30) is JobState.CANCELLED
    slurm.cancel(job)  # again: already gone is fine


def test_status_of_many_jobs_in_one_call(slurm: SlurmScheduler) -> None:
    path = job_script(slurm, "sleep 60")
    ids = []
    for i in range(20):
        argv = slurm.submit_argv(path, f"many {i}", f"m{i}x{uuid.uuid4().hex[:4]}")
        argv.insert(2, "--hold")
        ids.append(slurm.parse_submit(slurm.link.run(argv)))
    try:
        before = CountingLink.calls
        states = slurm.status([*ids, "999999"])
        assert CountingLink.calls - before <= 2  # squeue, plus one history call for 999999
        assert all(states[j] is JobState.HELD for j in ids), states
        assert states["999999"] is JobState.UNKNOWN  # never assumed done
        before = CountingLink.calls
        assert set(slurm.status(ids).values()) == {JobState.HELD}
        assert CountingLink.calls - before == 1
    finally:
        slurm.link.run(["scancel", *ids], check=False)


def test_lost_submission_answer_is_found_by_token(slurm: SlurmScheduler) -> None:
    token = "lost" + uuid.uuid4().hex[:8]
    argv = slurm.submit_argv(job_script(slurm, "sleep 30"), "it lost", token)
    accepted: Result = slurm.link.run(argv)  # the answer "gets lost": we drop it
    job_id = accepted.out.strip().split(";")[0]
    try:
        assert slurm.find(token) == [job_id]
        assert slurm.find("never" + uuid.uuid4().hex[:6]) == []
    finally:
        slurm.cancel(job_id)


def dropped_answers() -> list[str]:
    """The submit answers the site's sbatch wrapper has dropped (``site dropped``)."""
    return list(json.loads(site_cmd("dropped", "--json").stdout)["answers"])


def test_dropped_submit_answer_raises_then_the_job_is_adopted_by_token(test_site) -> None:  # type: ignore[no-untyped-def]
    """The site submits the job and kills the connection before sbatch's answer goes
    back: submit_job must not claim a job id it never heard, and once the master is
    open again the job (the only one with the token) is found by its token."""
    with short_dir("rbd") as control:  # its own master: the drop kills that connection
        site = site_config(test_site, control, frontends=["fe2"])
        with open_masters([OpenSSHLink(site, "fe2")], test_site.askpass,
                          patience=30) as (link,):
            sched = make_scheduler(link, site)
            assert isinstance(sched, SlurmScheduler)
            script = job_script(sched, "sleep 30")
            token = "drop" + uuid.uuid4().hex[:8]
            before = len(dropped_answers())
            site_cmd("drop-submit", "1")
            try:
                with pytest.raises(LinkError):
                    sched.submit_job(script, "it drop", token)
            finally:
                site_cmd("drop-submit", "0")
            answers = dropped_answers()
            assert len(answers) == before + 1
            job_id = answers[-1].split()[-1].split(";")[0]
            assert job_id.isdigit(), answers[-1]  # sbatch did accept the job
            start_master(link, test_site.askpass, 30)  # the key-card holder's start
            try:
                assert sched.find(token, "it drop") == [job_id]
            finally:
                sched.cancel(job_id)


def test_probe(slurm: SlurmScheduler) -> None:
    assert "batch" in slurm.probe().out
