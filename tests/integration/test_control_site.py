"""control-tool against the real test site: one token (one dmz login) opens all three
front ends; check's exit codes; a wrong token is named and leaves nothing half-open.

Counts dmz logins and expires them, so it takes the site alone (``site_alone``).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from remotebridge.db.engine import make_engine
from remotebridge.db.migrate import upgrade
from tests.support.sitecfg import write_config

pytestmark = pytest.mark.site

BIN = Path(sys.executable).parent


def tool(cfg: Path, url: str, *args: str, askpass: str | None = None
         ) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    env.pop("SSH_ASKPASS", None)
    argv = [str(BIN / "control-tool"), "--config", str(cfg), "--db", url, *args]
    if askpass:
        argv += ["--askpass", askpass]
    return subprocess.run(argv, capture_output=True, text=True, timeout=180, env=env)


def test_one_token_opens_every_front_end_and_check_tells_the_cut(
        site_alone: Any, control_dir: Path, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    site = site_alone
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    cfg = write_config(tmp_path / "config.toml", site, control_dir)
    url = f"sqlite:///{tmp_path / 'rb.db'}"
    engine = make_engine(url)
    upgrade(engine)
    engine.dispose()
    wrong = tmp_path / "wrong-askpass"
    wrong.write_text("#!/bin/sh\necho 000000\n")
    wrong.chmod(0o755)
    try:
        # a wrong token: the dmz is named, exit 75, no socket left behind
        before = site.auth_count()
        r = tool(cfg, url, "--json", "start", askpass=str(wrong))
        assert r.returncode == 75, r.stdout + r.stderr
        data = json.loads(r.stdout)
        assert data["jump"]["host"] == "dmz" and data["jump"]["action"] == "failed"
        assert "dmz refused" in data["jump"]["error"] and "dmz" in r.stderr
        assert list(control_dir.iterdir()) == []
        assert site.auth_count() == before

        # one token: the dmz master, then the three front ends through it
        r = tool(cfg, url, "--json", "start", askpass=site.askpass)
        assert r.returncode == 0, r.stdout + r.stderr
        data = json.loads(r.stdout)
        assert data["mode"] == "one login via the jump host"
        assert [m["action"] for m in data["masters"]] == ["started"] * 3
        assert [m["alive"] for m in data["masters"]] == [True] * 3
        assert site.auth_count() == before + 1
        r = tool(cfg, url, "start", askpass=site.askpass)  # all up: no new login
        assert r.returncode == 0 and site.auth_count() == before + 1

        # check: fine (0, quiet), then "cut soon" when warn_before exceeds what is left
        r = tool(cfg, url, "--quiet", "check")
        assert (r.returncode, r.stdout) == (0, ""), r.stderr
        r = tool(cfg, url, "--json", "check")
        (report,) = json.loads(r.stdout)
        assert 43000 < report["seconds_left"] <= 43200 and report["verdict"] == "fine"
        cfg.write_text(cfg.read_text().replace("[site.testsite]",
                                               "[site.testsite]\nwarn_before = 50000"))
        r = tool(cfg, url, "check")
        assert r.returncode == 1 and "cut soon" in r.stdout

        # the cut: every login dies; check says down (75)
        site.expire()
        time.sleep(1.0)
        r = tool(cfg, url, "check")
        assert r.returncode == 75 and "down" in r.stdout
    finally:
        tool(cfg, url, "stop")
