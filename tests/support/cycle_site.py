"""Helpers and fixtures shared by several test modules (first written in
tests/integration/test_cycle_site.py)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from remotebridge import config as cfgmod
from remotebridge import control
from remotebridge.db.engine import make_engine
from remotebridge.db.migrate import upgrade
from remotebridge.demo.generate import init_survey
from tests.support.sitecfg import write_config

BIN = Path(sys.executable).parent


@pytest.fixture()
def setup(test_site: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
          control_dir: Path) -> Iterator[dict[str, Any]]:
    """Config, database, demo survey, and masters to the three front ends."""
    ctl = control_dir
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    cfg_file = write_config(tmp_path / "config.toml", test_site, ctl)
    site = cfgmod.load(str(cfg_file)).site()
    url = f"sqlite:///{tmp_path / 'rb.db'}"
    engine = make_engine(url)
    upgrade(engine)
    init_survey(engine, tmp_path / "survey", exposures=2, chips=2, size=64)
    states = control.start(site, askpass=test_site.askpass)
    assert not control.failed(states), states
    yield {"cfg": cfg_file, "url": url, "engine": engine, "tmp": tmp_path}
    control.stop(site)
    engine.dispose()


def rt(s: dict[str, Any], *args: str, timeout: float = 400) -> subprocess.CompletedProcess[str]:
    argv = [str(BIN / "remotetool"), "--config", str(s["cfg"]), "--db", s["url"], *args]
    r = subprocess.run(argv, capture_output=True, text=True, timeout=timeout,
                       env=dict(os.environ))
    assert r.returncode == 0, f"{args}: {r.returncode}\n{r.stdout}\n{r.stderr}"
    return r
