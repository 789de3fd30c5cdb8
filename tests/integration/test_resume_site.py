"""Runs in ``auth`` resume by themselves on the real test site: after the 12-hour cut
every exec and poll exits 75; after ``control-tool start`` the next exec resumes the
run and submits it, with no ``revertauth`` typed.

Expires the logins, so it takes the site alone (``site_alone``).
"""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
from sqlalchemy import select

from remotebridge import config as cfgmod
from remotebridge.db.bridge import RemoteEvent
from remotebridge.db.engine import read_session
from remotebridge.demo.generate import init_survey
from remotebridge.linkback import RESUMED_NOTE
from remotebridge.schedulers import JobState
from tests.support.demo_runs import define_and_prepare as prepared_run
from tests.support.demo_runs import run_row
from tests.support.exec_site import env, tool, wait_job
from tests.support.sitecfg import write_config

pytestmark = pytest.mark.site
_env = env


def test_expire_then_75_until_start_then_exec_resumes(site_alone: Any,
                                                      env: dict[str, Any]) -> None:
    site = site_alone
    tmp, engine = env["tmp"], env["engine"]
    cfg_file = write_config(tmp / "config.toml", site, env["control"])
    cfg = cfgmod.load(str(cfg_file))
    init_survey(engine, tmp / "survey", exposures=1, chips=2, size=64)
    assert tool("control-tool", env, cfg_file, "start", "--askpass",
                site.askpass).returncode == 0
    try:
        site.expire()
        time.sleep(0.5)
        rid = prepared_run(engine, cfg, tmp, limit=1)
        assert tool("remotetool", env, cfg_file, "exec").returncode == 75
        assert run_row(engine, rid).state == "auth"
        r = tool("remotetool", env, cfg_file, "exec")  # today's main: 0, silent
        assert r.returncode == 75 and "still in auth" in r.stderr, r.stderr
        assert tool("remotetool", env, cfg_file, "poll").returncode == 75
        assert run_row(engine, rid).state == "auth"
        r = tool("control-tool", env, cfg_file, "start", "--askpass", site.askpass)
        assert r.returncode == 0, r.stderr
        r = tool("remotetool", env, cfg_file, "--json", "exec")  # no revertauth typed
        assert r.returncode == 0, r.stderr
        assert [o["result"] for o in json.loads(r.stdout)] == ["run"]
        with read_session(engine) as s:
            notes = s.execute(select(RemoteEvent.note)
                              .where(RemoteEvent.remote_id == rid)).scalars().all()
        assert RESUMED_NOTE in notes and "revertauth" not in notes
        assert wait_job(cfg, run_row(engine, rid).job_id or "") is JobState.COMPLETED
    finally:
        tool("control-tool", env, cfg_file, "stop")
