"""cancel and logs against the test site's real Slurm, through the DMZ: a running job
is cancelled by scancel and confirmed by Slurm; its output file is read back in one
call."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine

from remotebridge import config as cfgmod
from remotebridge.cancel import cancel_run
from remotebridge.db.bridge import RemoteRun
from remotebridge.db.engine import read_session
from remotebridge.define import define_by_query
from remotebridge.demo.generate import init_survey
from remotebridge.exec import exec_runs
from remotebridge.prepare import prepare_run
from remotebridge.schedulers import JobState, make_scheduler
from remotebridge.ssh import links_for
from remotebridge.tasklogs import LogRequest, run_logs
from tests.support.sitecfg import open_masters, site_values

pytestmark = pytest.mark.site


@pytest.fixture()
def site_cfg(test_site: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
             control_dir: Path) -> Iterator[cfgmod.Config]:
    """The test site's config with masters open (stopped afterwards)."""
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    values = site_values(test_site, control_dir)
    del values["identity"], values["permanent_root"]
    values.update(partition="batch", bundle_bytes=200_000, poll_interval=60,
                  # a remote_root of its own: remote ids restart in every database
                  remote_root=f"{values['remote_root']}/{tmp_path.name}")
    cfg = cfgmod.build({"site": {"testsite": values}})
    with open_masters(links_for(cfg.site()), test_site.askpass):
        yield cfg


def _slow(script: Path, seconds: int) -> None:
    """Make job.sh sleep right after its #SBATCH header (so it is seen running)."""
    lines = script.read_text().splitlines(keepends=True)
    at = next(i for i, ln in enumerate(lines) if ln.strip() and not ln.startswith("#"))
    script.write_text("".join(lines[:at]) + f"echo rb-test-start; sleep {seconds}\n"
                      + "".join(lines[at:]))


def test_cancel_a_running_slurm_job_and_read_its_output(
        engine: Engine, site_cfg: cfgmod.Config, tmp_path: Path) -> None:
    init_survey(engine, tmp_path / "survey", exposures=1, chips=1, size=32)
    rid = define_by_query(engine, site_cfg, label="demo", stage="chip",
                          path_base=str(tmp_path / "jobs")).remote_id
    assert rid is not None
    prep = prepare_run(engine, site_cfg, rid)
    _slow(Path(prep.folder) / "job.sh", 300)
    out = exec_runs(engine, site_cfg, remote_id=rid)
    assert [o.result for o in out] == ["run"], out
    with read_session(engine) as s:
        run = s.get(RemoteRun, rid)
        assert run is not None
        job_id = run.job_id or ""
    site = site_cfg.site()
    sched = make_scheduler(links_for(site)[0], site)
    deadline = time.monotonic() + 120
    while sched.status([job_id])[job_id] is not JobState.RUNNING:
        assert time.monotonic() < deadline, "the job never started"
        time.sleep(2)
    try:
        outcome = cancel_run(engine, site_cfg, rid)
    finally:
        sched.cancel(job_id)  # never leave a job behind on the shared site
    assert outcome.jobs == [job_id]
    assert sched.status([job_id])[job_id].terminal, "Slurm confirmed the cancel"
    with read_session(engine) as s:
        run = s.get(RemoteRun, rid)
        assert run is not None and run.state == "cancelled"
    answer = run_logs(engine, site_cfg, rid, LogRequest(tasks=False, job=True))
    outputs = {f.path: f for f in answer.files if f.label == "job"}
    assert f"job.{job_id}.out" in outputs, answer
    assert "rb-test-start" in outputs[f"job.{job_id}.out"].text
