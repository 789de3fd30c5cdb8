"""The demo-run test environment keeps every file the bridge writes under the test's tmp
folder."""

from __future__ import annotations

from pathlib import Path

from remotebridge import config as cfgmod
from remotebridge.digests import default_cache
from tests.support.demo_runs import demo_env

_env = demo_env


def test_data_and_state_dirs_are_under_tmp(tmp_path: Path) -> None:
    """The input-digest cache and the state dir are private to the test."""
    assert default_cache().is_relative_to(tmp_path)
    assert cfgmod.data_dir().is_relative_to(tmp_path)
    assert cfgmod.xdg_state_home().is_relative_to(tmp_path)
