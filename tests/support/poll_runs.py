"""The poll tests' demo runs: a local site, the real local scheduler, real demo programs."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, select

from remotebridge import config as cfgmod
from remotebridge.db.bridge import RemoteComponent
from remotebridge.db.engine import read_session
from remotebridge.db.pipeline import ChipProcessedImfile, ChipRun
from remotebridge.demo.generate import init_survey
from remotebridge.exec import exec_runs
from remotebridge.prepare import prepare_run
from remotebridge.schedulers import JobState, make_scheduler
from remotebridge.ssh import links_for
from tests.support.demo_runs import define_run, local_site, wait_job_end
from tests.support.demo_runs import run_row as get


def raw_config(tmp: Path, **site: Any) -> dict[str, Any]:
    return {"site": {"demo": {**local_site(tmp, max_attempts=2), **site}}}


def config(tmp: Path, **site: Any) -> cfgmod.Config:
    return cfgmod.build(raw_config(tmp, **site))


def prepared_run(engine: Engine, tmp: Path, *, exposures: int = 2,
                 corrupt: int | None = None, slow: float = 0.0) -> int:
    """A prepared chip run of a fresh demo survey (optionally one raw chip image corrupt,
    or job.sh made to sleep first so a poll finds it running)."""
    init_survey(engine, tmp / "survey", exposures=exposures, chips=2, size=64)
    cfg = config(tmp)
    rid = define_run(engine, cfg, tmp)
    if corrupt is not None:
        corrupt_raw(engine, corrupt)
    prep = prepare_run(engine, cfg, rid)
    if slow:
        script = Path(prep.folder) / "job.sh"
        lines = script.read_text().splitlines(keepends=True)
        script.write_text(lines[0] + f"sleep {slow}\n" + "".join(lines[1:]))
    return rid


def corrupt_raw(engine: Engine, chip_id: int) -> str:
    """Overwrite one raw chip image of ``chip_id`` with bytes that are not FITS."""
    from remotebridge.db.pipeline import RawImfile

    with read_session(engine) as s:
        exp = s.execute(select(ChipRun.exp_id).where(ChipRun.chip_id == chip_id)).scalar_one()
        uri = s.execute(select(RawImfile.uri).where(RawImfile.exp_id == exp)
                        .order_by(RawImfile.class_id)).scalars().first()
    assert uri is not None
    size = os.path.getsize(uri)
    Path(uri).write_bytes(b"not a fits file " * (size // 16 + 1))
    return uri


def submit(engine: Engine, tmp: Path, rid: int) -> str:
    out = exec_runs(engine, config(tmp), remote_id=rid)
    assert [o.result for o in out] == ["run"], out
    return get(engine, rid).job_id or ""


def wait_job(tmp: Path, job_id: str, timeout: float = 120) -> JobState:
    """Wait for the job to end on the site (the scheduler, not poll)."""
    site = config(tmp).site()
    return wait_job_end(make_scheduler(links_for(site)[0], site), job_id, timeout, 0.3)


def components(engine: Engine, rid: int) -> dict[int, tuple[str, int, int]]:
    with read_session(engine) as s:
        rows = s.execute(select(RemoteComponent.stage_id, RemoteComponent.state,
                                RemoteComponent.attempts, RemoteComponent.fault)
                         .where(RemoteComponent.remote_id == rid)).all()
    return {sid: (state, att, fault) for sid, state, att, fault in rows}


def chip_states(engine: Engine) -> dict[int, tuple[str, int]]:
    with read_session(engine) as s:
        return {c: (st, f) for c, st, f in s.execute(
            select(ChipRun.chip_id, ChipRun.state, ChipRun.fault)).all()}


def results(engine: Engine) -> list[ChipProcessedImfile]:
    with read_session(engine) as s:
        return list(s.execute(select(ChipProcessedImfile).order_by(
            ChipProcessedImfile.chip_id, ChipProcessedImfile.class_id)).scalars())


def toml_site(site: dict[str, Any]) -> str:
    """A config file with one site ``demo`` (values are str, int or lists of str)."""
    return "[site.demo]\n" + "".join(f"{k} = {json.dumps(v)}\n" for k, v in site.items())


def finished_job(engine: Engine, tmp: Path) -> tuple[int, Path]:
    """A one-exposure chip run whose job has ended; returns its id and remote folder."""
    rid = prepared_run(engine, tmp, exposures=1)
    job_id = submit(engine, tmp, rid)
    assert wait_job(tmp, job_id).value == "completed"
    return rid, tmp / "remote side" / f"remote_{rid}"


def resummarise(job_dir: Path) -> None:
    """Make the job's summary again (as the job's last step does), so it records the
    products as they are now on the site."""
    import subprocess
    import sys

    subprocess.run([sys.executable, "rbhelper.py", "summary"], cwd=job_dir, check=True,
                   capture_output=True)
