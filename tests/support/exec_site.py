"""Helpers and fixtures shared by several test modules (first written in
tests/integration/test_exec_site.py)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from remotebridge import config as cfgmod
from remotebridge.db.engine import make_engine
from remotebridge.db.migrate import upgrade
from remotebridge.schedulers import JobState, make_scheduler
from remotebridge.ssh import links_for
from tests.support.demo_runs import wait_job_end

BIN = Path(sys.executable).parent


@pytest.fixture()
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        control_dir: Path) -> Iterator[dict[str, Any]]:
    """A short socket dir, a private state dir, a SQLite database and the config file."""
    control = control_dir
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    monkeypatch.delenv("SSH_ASKPASS", raising=False)
    url = f"sqlite:///{tmp_path / 'rb.db'}"
    engine = make_engine(url)
    upgrade(engine)
    yield {"tmp": tmp_path, "control": control, "url": url, "engine": engine}
    engine.dispose()


def tool(name: str, env: dict[str, Any], cfg: Path, *args: str,
         timeout: float = 300) -> subprocess.CompletedProcess[str]:
    argv = [str(BIN / name), "--config", str(cfg)]
    if name == "remotetool":
        argv += ["--db", env["url"]]
    return subprocess.run([*argv, *args], capture_output=True, text=True, timeout=timeout,
                          env=dict(os.environ))


def wait_job(cfg: cfgmod.Config, job_id: str, timeout: float = 240) -> JobState:
    site = cfg.site()
    return wait_job_end(make_scheduler(links_for(site)[0], site), job_id, timeout, 2)
