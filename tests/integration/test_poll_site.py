"""A demo chip run through the DMZ and the test site's real Slurm: exec, then poll to full.

Needs root and the network-namespace site (the ``test_site`` fixture brings it up).
Masters to the three front ends cost one token each; exec pushes through them, the
job runs under Slurm on the compute nodes (which cannot reach home), and poll brings
the products home over every front end and replays the dbinfo records.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, select

from remotebridge import config as cfgmod
from remotebridge.db.bridge import RemoteRun
from remotebridge.db.engine import read_session
from remotebridge.db.pipeline import ChipProcessedImfile, ChipRun
from remotebridge.define import define_by_query
from remotebridge.demo.generate import init_survey
from remotebridge.exec import exec_runs
from remotebridge.poll import poll_runs, poll_until
from remotebridge.prepare import prepare_run
from remotebridge.ssh import links_for
from tests.support.sitecfg import open_masters, site_values

pytestmark = pytest.mark.site


def site_raw(test_site: Any, control: Path) -> dict[str, Any]:
    values = site_values(test_site, control)
    del values["identity"], values["permanent_root"]
    values.update(partition="batch", bundle_bytes=200_000, poll_interval=60)
    return {"site": {"testsite": values}}


@pytest.fixture()
def site_cfg(test_site: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
             control_dir: Path) -> Iterator[cfgmod.Config]:
    """The test site's config with masters open to every front end (stopped afterwards)."""
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    cfg = cfgmod.build(site_raw(test_site, control_dir))
    with open_masters(links_for(cfg.site()), test_site.askpass):
        yield cfg


def test_demo_chip_run_through_slurm_polled_to_full(engine: Engine, site_cfg: cfgmod.Config,
                                                    tmp_path: Path) -> None:
    init_survey(engine, tmp_path / "survey", exposures=2, chips=2, size=64)
    res = define_by_query(engine, site_cfg, label="demo", stage="chip",
                          path_base=str(tmp_path / "jobs"))
    rid = res.remote_id
    assert rid is not None
    prepare_run(engine, site_cfg, rid)
    job_dir = json.loads((tmp_path / "jobs" / f"remote_{rid}" / "job.json").read_text())["job_dir"]
    link = links_for(site_cfg.site())[0]
    try:
        out = exec_runs(engine, site_cfg, remote_id=rid)
        assert [o.result for o in out] == ["run"], out
        # right after the submission the job is queued or running: only last_poll moves
        first = poll_runs(engine, site_cfg, force=True)
        assert len(first) == 1 and first[0].action in ("waiting", "full"), first
        done = poll_until(engine, site_cfg, wait=400, remote_id=rid, pause=3)
        assert done[-1].action == "full" and done[-1].full == [1, 2], done[-1]
        assert done[-1].files == 4 * 3 + 2  # fits, stats, log per chip; a dbinfo per exposure
        with read_session(engine) as s:
            run = s.get(RemoteRun, rid)
            assert run is not None and run.state == "full" and run.fault == 0
            chips = dict(s.execute(select(ChipRun.chip_id, ChipRun.state)).all())
            rows = list(s.execute(select(ChipProcessedImfile)).scalars())
        assert chips == {1: "full", 2: "full"}
        assert len(rows) == 4
        for row in rows:
            stats = json.loads(Path(row.uri.replace(".fits", ".stats.json")).read_text())
            assert row.fault == 0 and row.bg == pytest.approx(stats["bg"])
            assert row.hostname == stats["hostname"]
            assert os.path.getsize(row.uri) > 0
        assert poll_runs(engine, site_cfg, force=True) == []
    finally:
        link.run(["rm", "-rf", "--", job_dir], check=False)
