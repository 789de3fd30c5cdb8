"""A scratch purge between two stages on the test site: chip runs full, the site purges
every scratch file, cam still runs full. The products cam needs came home with chip and
exec pushes them again from home (inputs.manifest names the home copies).

Purges all of scratch, so it takes the site alone (``site_alone``).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from remotebridge import config as cfgmod
from remotebridge import control
from remotebridge.db.engine import make_engine
from remotebridge.db.migrate import upgrade
from remotebridge.demo.generate import init_survey
from tests.support.cycle_site import rt
from tests.support.sitecfg import write_config

pytestmark = pytest.mark.site


@pytest.fixture()
def alone(site_alone: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
          control_dir: Path) -> Iterator[dict[str, Any]]:
    """Config, database, demo survey, and masters to the three front ends."""
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    cfg_file = write_config(tmp_path / "config.toml", site_alone, control_dir)
    site = cfgmod.load(str(cfg_file)).site()
    url = f"sqlite:///{tmp_path / 'rb.db'}"
    engine = make_engine(url)
    upgrade(engine)
    init_survey(engine, tmp_path / "survey", exposures=1, chips=2, size=64)
    assert not control.failed(control.start(site, askpass=site_alone.askpass))
    yield {"cfg": cfg_file, "url": url, "engine": engine, "tmp": tmp_path,
           "site": site_alone}
    control.stop(site)
    engine.dispose()


def stage_to_full(s: dict[str, Any], stage: str) -> dict[str, Any]:
    rt(s, "definebyquery", "--label", "demo", "--stage", stage,
       "--path-base", str(s["tmp"] / "jobs"))
    rt(s, "prepare", "--label", "demo")
    (out,) = json.loads(rt(s, "--json", "exec", "--label", "demo").stdout)
    assert out["result"] == "run", out
    rt(s, "poll", "--label", "demo", "--force", "--wait", "300")
    runs = json.loads(rt(s, "--json", "list", "--label", "demo", "--stage", stage).stdout)
    assert [r["state"] for r in runs] == ["full"], runs
    return dict(out)


def test_purge_between_chip_and_cam(alone: dict[str, Any]) -> None:
    s = alone
    stage_to_full(s, "chip")
    rt(s, "demo", "advance", "--label", "demo")
    s["site"].purge()  # the site deletes every scratch file: chip's products too
    cam = stage_to_full(s, "cam")
    # every cam input came from home again, none was left on the site
    assert cam["inputs"] > 0 and cam["missing"] == cam["pushed_files"] >= cam["inputs"] - 1
