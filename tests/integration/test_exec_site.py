"""control-tool and exec against the real test site: DMZ with one-time passwords, 3 front
ends, Slurm on compute nodes that cannot reach home.

Counts dmz logins, so it takes the site alone (``site_alone``).
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest

from remotebridge import config as cfgmod
from remotebridge.demo.generate import init_survey
from remotebridge.schedulers import JobState
from tests.support.demo_runs import define_and_prepare as prepared_run
from tests.support.demo_runs import run_row
from tests.support.exec_site import (  # noqa: F401 - helpers and fixtures moved to tests/support
    BIN,
    env,
    tool,
    wait_job,
)
from tests.support.sitecfg import write_config

pytestmark = pytest.mark.site


def test_control_tool_and_exec_through_the_dmz(site_alone: Any, env: dict[str, Any]) -> None:
    site = site_alone
    tmp, engine = env["tmp"], env["engine"]
    cfg_file = write_config(tmp / "config.toml", site, env["control"])
    cfg = cfgmod.load(str(cfg_file))
    init_survey(engine, tmp / "survey", exposures=3, chips=2, size=64)

    # start: the dmz master (one token), then one master per front end through it
    before = site.auth_count()
    r = tool("control-tool", env, cfg_file, "--json", "start", "--askpass", site.askpass)
    assert r.returncode == 0, r.stderr
    assert [m["action"] for m in json.loads(r.stdout)["masters"]] == ["started"] * 3
    assert site.auth_count() == before + 1
    r = tool("control-tool", env, cfg_file, "--json", "status")
    masters = json.loads(r.stdout)["masters"]
    assert r.returncode == 0 and [m["alive"] for m in masters] == [True] * 3
    assert all(m["socket"].startswith(str(env["control"])) for m in masters)
    r = tool("control-tool", env, cfg_file, "switch-user", "someone")
    assert r.returncode == 3 and "stop" in r.stderr  # refused while masters live

    # exec: push through the dmz, submit to the real Slurm, the job runs on a node
    rid = prepared_run(engine, cfg, tmp, limit=2)
    r = tool("remotetool", env, cfg_file, "--json", "exec")
    assert r.returncode == 0, r.stderr
    (out,) = json.loads(r.stdout)
    assert out["result"] == "run" and out["job_id"].isdigit()
    # everything but the shared program, which earlier runs may have left on the site
    assert out["pushed_files"] == out["missing"] >= out["inputs"] - 1 > 0, json.dumps(out)
    assert sorted(out["hosts"]) == ["fe1", "fe2", "fe3"]
    assert site.auth_count() == before + 1  # exec logged in nowhere
    run = run_row(engine, rid)
    assert (run.state, run.job_id, run.attempt) == ("run", out["job_id"], 1)
    assert wait_job(cfg, out["job_id"]) is JobState.COMPLETED
    job_dir = Path(site.user_scratch) / f"remote_{rid}"
    head = json.loads((job_dir / "job_summary.jsonl").read_text().splitlines()[0])
    assert head["tasks"] == head["ok"] == 7 and head["failed"] == 0
    r = tool("remotetool", env, cfg_file, "--json", "exec")
    assert (r.returncode, json.loads(r.stdout)) == (0, [])  # nothing twice

    # stop: masters closed; status says down (75)
    r = tool("control-tool", env, cfg_file, "--json", "stop")
    assert r.returncode == 0
    assert {m["action"] for m in json.loads(r.stdout)["masters"]} == {"stopped"}
    assert tool("control-tool", env, cfg_file, "status").returncode == 75

    # the 12-hour cut: masters die; exec sends the run to auth (75), nothing submitted
    r = tool("control-tool", env, cfg_file, "start", "--askpass", site.askpass)
    assert r.returncode == 0, r.stderr
    site.expire()
    time.sleep(0.5)
    rid2 = prepared_run(engine, cfg, tmp, limit=1)
    r = tool("remotetool", env, cfg_file, "exec")
    assert r.returncode == 75 and "control-tool start" in r.stderr
    run2 = run_row(engine, rid2)
    assert (run2.state, run2.job_id) == ("auth", None)
    # the key-card holder logs in again; revertauth; exec succeeds
    r = tool("control-tool", env, cfg_file, "start", "--askpass", site.askpass)
    assert r.returncode == 0, r.stderr
    assert tool("remotetool", env, cfg_file, "revertauth").returncode == 0
    r = tool("remotetool", env, cfg_file, "--json", "exec")
    assert r.returncode == 0 and json.loads(r.stdout)[0]["result"] == "run"
    assert wait_job(cfg, run_row(engine, rid2).job_id or "") is JobState.COMPLETED
    tool("control-tool", env, cfg_file, "stop")
