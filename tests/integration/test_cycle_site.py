"""The whole chip cycle on the test site: definebyquery -> prepare -> exec -> poll -> full,
through the DMZ and the real Slurm, with the results replayed into the pipeline DB."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from remotebridge import config as cfgmod
from remotebridge import control
from remotebridge.db.engine import make_engine, read_session
from remotebridge.db.migrate import upgrade
from remotebridge.db.pipeline import ChipProcessedImfile, ChipRun
from remotebridge.demo.generate import init_survey
from tests.support.sitecfg import write_config

pytestmark = pytest.mark.site

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


def test_chip_cycle_through_the_dmz(setup: dict[str, Any]) -> None:
    s = setup
    rid = int(rt(s, "definebyquery", "--label", "demo", "--stage", "chip",
                 "--path-base", str(s["tmp"] / "jobs")).stdout)
    rt(s, "prepare", "--label", "demo")
    (out,) = json.loads(rt(s, "--json", "exec", "--label", "demo").stdout)
    assert out["result"] == "run" and out["remote_id"] == rid
    rt(s, "poll", "--label", "demo", "--force", "--wait", "300")
    (run,) = json.loads(rt(s, "--json", "list", "--label", "demo").stdout)
    assert run["state"] == "full", run
    with read_session(s["engine"]) as sess:
        n = sess.execute(select(func.count()).select_from(ChipProcessedImfile)
                         .where(ChipProcessedImfile.fault == 0)).scalar_one()
        states = set(sess.execute(select(ChipRun.state)).scalars())
    assert n == 4 and states == {"full"}
    products = list((s["tmp"] / "jobs").rglob("*.fits")) + list(s["tmp"].rglob("*.ch.fits"))
    assert products, "the chip images came home"
