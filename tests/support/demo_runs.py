"""Builders for tests that take a run of the demo survey through prepare, exec and poll.

The local site ``demo`` (its "remote side" a folder under the test's tmp dir, the real
local scheduler), the same site over ssh to front ends without a master (the link is
down), short socket directories, prepared runs, and waiting for a job to end.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine

from remotebridge import config as cfgmod
from remotebridge.db.bridge import RemoteRun
from remotebridge.db.engine import read_session
from remotebridge.define import define_by_query
from remotebridge.prepare import prepare_run
from remotebridge.schedulers import JobState, Scheduler

VENV_BIN = str(Path(sys.executable).parent)
"""The venv's bin: its python3 (with numpy/astropy) plays the site's for the demo programs."""


def local_site(tmp: Path, **extra: Any) -> dict[str, Any]:
    """The keys of the local site ``demo``, its remote side in ``tmp / "remote side"``."""
    return {"kind": "local", "scheduler": "local", "local_root": str(tmp / "remote side"),
            "cores_per_node": 4, "bundle_bytes": 100_000, **extra}


def down_config(tmp: Path, control: Path, frontends: Sequence[str] = ("fe-a",)
                ) -> cfgmod.Config:
    """The same site name, but over ssh to front ends that have no master: the link is
    down."""
    ssh_config = tmp / "ssh_config"
    ssh_config.write_text(f"Host {' '.join(frontends)}\n  HostName 127.0.0.1\n  Port 9\n")
    return cfgmod.build({"site": {"demo": {
        "kind": "ssh", "scheduler": "slurm", "frontends": list(frontends),
        "ssh_config": str(ssh_config), "control_dir": str(control),
        "remote_root": str(tmp / "remote side")}}})


@pytest.fixture(autouse=True)
def demo_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """The venv's python3 first on PATH (the demo programs need numpy/astropy) and
    private state and data dirs (runs write the input-digest cache under the data dir;
    it must not land in the real home). Autouse where a test module binds it to a name."""
    monkeypatch.setenv("PATH", VENV_BIN + os.pathsep + os.environ["PATH"])
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))


@contextmanager
def short_dir(prefix: str) -> Iterator[Path]:
    """A short private directory under /tmp (unix socket paths are limited), removed
    afterwards."""
    d = Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))
    try:
        yield d
    finally:
        shutil.rmtree(d, ignore_errors=True)


def control_fixture(prefix: str) -> Any:
    """A fixture giving a short socket directory (``short_dir(prefix)``) for one test."""

    @pytest.fixture
    def control() -> Iterator[Path]:
        with short_dir(prefix) as d:
            yield d

    return control


def define_run(engine: Engine, cfg: cfgmod.Config, tmp: Path, *, limit: int | None = None
               ) -> int:
    """Define a chip run of label ``demo`` (job folders under ``tmp / "jobs"``)."""
    res = define_by_query(engine, cfg, label="demo", stage="chip", limit=limit,
                          path_base=str(tmp / "jobs"))
    assert res.remote_id is not None
    return res.remote_id


def define_and_prepare(engine: Engine, cfg: cfgmod.Config, tmp: Path, *,
                       limit: int | None = None) -> int:
    """A chip run defined and prepared (state pending)."""
    rid = define_run(engine, cfg, tmp, limit=limit)
    prepare_run(engine, cfg, rid)
    return rid


def run_row(engine: Engine, rid: int) -> RemoteRun:
    """The ``remoteRun`` row of ``rid``."""
    with read_session(engine) as s:
        run = s.get(RemoteRun, rid)
        assert run is not None
        return run


def wait_job_end(sched: Scheduler, job_id: str, timeout: float, step: float) -> JobState:
    """Ask the scheduler every ``step`` s until the job ends; AssertionError after
    ``timeout`` s."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        state = sched.status([job_id])[job_id]
        if state.terminal:
            return state
        time.sleep(step)
    raise AssertionError(f"job {job_id} did not end in {timeout} s")
