"""prepare's test helpers: a local demo site, a new run of every chipRun, playing 'exec'."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from sqlalchemy import Engine, select

from remotebridge import config as cfgmod
from remotebridge.db.bridge import RemoteComponent, RemoteRun
from remotebridge.db.engine import write_session
from remotebridge.db.pipeline import ChipRun


def site_config(tmp: Path) -> cfgmod.Config:
    return cfgmod.build({"site": {"demo": {"kind": "local", "scheduler": "local",
                                           "local_root": str(tmp / "remote side"),
                                           "cores_per_node": 4}}})


def new_run(engine: Engine, tmp: Path, stage: str = "chip") -> int:
    with write_session(engine) as s:
        ids = list(s.execute(select(ChipRun.chip_id)).scalars())
        run = RemoteRun(stage=stage, label="demo", site="demo", state="new",
                        path_base=str(tmp / "jobs"))
        s.add(run)
        s.flush()
        for i in ids:
            s.add(RemoteComponent(remote_id=run.remote_id, stage_id=i, stage=stage))
        return run.remote_id


def stage_remote(folder: Path) -> Path:
    """Play 'exec': copy the job folder and every input to the remote side."""
    info = json.loads((folder / "job.json").read_text())
    job_dir = Path(info["job_dir"])
    shutil.copytree(folder, job_dir, dirs_exist_ok=True)
    for line in (folder / "inputs.manifest").read_text().splitlines():
        if not line.startswith("#"):
            local, remote = line.split("\t")[:2]
            Path(remote).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(local, remote)
    return job_dir
