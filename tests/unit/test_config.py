"""Configuration: defaults, validation errors naming key and file, overrides."""

from __future__ import annotations

from pathlib import Path

import pytest

from remotebridge import config
from remotebridge.config import SchedulerKind, SiteKind
from remotebridge.errors import ConfigError


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "rb.toml"
    path.write_text(text)
    return path


def test_no_file_means_the_embedded_demo_defaults(isolated_env: str) -> None:
    cfg = config.load()
    assert cfg.database.effective_url().startswith(f"sqlite:///{isolated_env}/data/")
    site = cfg.site()
    assert (site.name, site.kind, site.scheduler) == ("demo", SiteKind.LOCAL, SchedulerKind.LOCAL)
    assert site.local_root.endswith("remotebridge/demo-site")
    assert cfg.stage("chip").threads == 2 and cfg.stage("chip").cost_seconds == 150.0


def test_full_file_is_read(isolated_env: str, tmp_path: Path) -> None:
    path = _write(tmp_path, """
default_site = "lanl"
[database]
url = "postgresql://u@h/db"
[site.lanl]
kind = "ssh"
scheduler = "moab"
frontends = ["fe1", "fe2"]
remote_root = "/scratch/u/rb"
cores_per_node = 24
fill_factor = 1
path_rules = [{local = "/data", remote = "/scratch/u", area = "scratch"}]
[stage.warp]
threads = 3
""")
    cfg = config.load(str(path))
    site = cfg.site()
    assert site.scheduler is SchedulerKind.MOAB and site.frontends == ["fe1", "fe2"]
    assert site.fill_factor == 1.0 and site.path_rules[0].remote == "/scratch/u"
    assert cfg.stage("warp").threads == 3 and cfg.stage("warp").cost_seconds == 120.0
    assert cfg.to_dict()["sites"]["lanl"]["kind"] == "ssh"


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("[site.x]\nbogus = 1\n", "site.x.bogus"),
        ("[site.x]\ncores_per_node = 'many'\n", "site.x.cores_per_node"),
        ("[site.x]\nscheduler = 'pbs'\n", "site.x.scheduler"),
        ("[site.x]\nfrontends = 'fe1'\n", "site.x.frontends"),
        ("[site.x]\nmax_nodes = -5\n", "site.x.max_nodes"),
        ("[site.x]\ncores_per_node = true\n", "site.x.cores_per_node"),
        ("[database]\nurl = 5\n", "database.url"),
        ("colour = 'blue'\n", "colour"),
        ("[site.x]\npath_rules = [{local='/a', remote='/b', area='tape'}]\n",
         "site.x.path_rules[0]"),
        ("[site.x]\npath_rules = [{local='/a'}]\n", "site.x.path_rules[0].remote"),
        ("[site.x]\nbundle_bytes = 0\n", "site.x.bundle_bytes"),
        ("[site.x]\ncores_per_node = 0\n", "site.x.cores_per_node"),
        ("[site.x]\nfill_factor = 1.5\n", "site.x.fill_factor"),
        ("[site.x]\nwalltime_min = 7200\nwalltime_max = 3600\n", "site.x.walltime_min"),
        ("[site.x]\nkind = 'ssh'\nremote_root = '/s'\n", "site.x.frontends"),
        ("[site.x]\nkind = 'ssh'\nfrontends = ['fe1']\n", "site.x.remote_root"),
        ("[site.x]\n[stage.chip]\nsite = 'nope'\n", "stage.chip.site"),
        ("[site.x]\n[stage.chip]\nthreads = 0\n", "stage.chip.threads"),
        ("database = 'x'\n", "database"),
        # values placed in multi-prog lines and #SBATCH/#MSUB directives
        ("[site.x]\nremote_python = 'python3 %t'\n", "site.x.remote_python"),
        ("[site.x]\nremote_python = \"py'thon\"\n", "site.x.remote_python"),
        ("[site.x]\nremote_python = '/opt/my python/bin/python3'\n", "site.x.remote_python"),
        ("[site.x]\npartition = \"batch\\n#SBATCH --uid=0\"\n", "site.x.partition"),
        ("[site.x]\naccount = \"ps1\\r\"\n", "site.x.account"),
    ],
)
def test_bad_values_name_the_key_and_the_file(isolated_env: str, tmp_path: Path, text: str,
                                               key: str) -> None:
    path = _write(tmp_path, text)
    with pytest.raises(ConfigError) as err:
        config.load(str(path))
    assert f"[{key}]" in str(err.value) and str(path) in str(err.value)


def test_malformed_toml_and_missing_file(isolated_env: str, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not valid TOML"):
        config.load(str(_write(tmp_path, "[site\n")))
    with pytest.raises(ConfigError, match="does not exist"):
        config.load(str(tmp_path / "nope.toml"))


def test_environment_overrides(isolated_env: str, tmp_path: Path,
                               monkeypatch: pytest.MonkeyPatch) -> None:
    path = _write(tmp_path, "[database]\nurl = 'sqlite:///a.db'\n")
    monkeypatch.setenv("REMOTEBRIDGE_CONFIG", str(path))
    assert config.load().database.url == "sqlite:///a.db"
    monkeypatch.setenv("REMOTEBRIDGE_DB", "sqlite:///b.db")
    assert config.load().database.url == "sqlite:///b.db"
    assert config.load(db_override="sqlite:///c.db").database.url == "sqlite:///c.db"


def test_unknown_site_is_a_config_error(isolated_env: str) -> None:
    with pytest.raises(ConfigError, match="no site named 'mars'"):
        config.load().site("mars")


def test_relative_path_base_is_stored_absolute(isolated_env: str, tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    from remotebridge.db.engine import make_engine
    from remotebridge.db.migrate import upgrade
    from remotebridge.define import define_by_query
    from remotebridge.runs import list_runs
    from tests.support.db import add_chipruns

    engine = make_engine(f"sqlite:///{tmp_path / 'rb.db'}")
    upgrade(engine)
    add_chipruns(engine, "A", 2)
    monkeypatch.chdir(tmp_path)
    define_by_query(engine, config.load(), label="A", stage="chip", path_base="jobs")
    assert list_runs(engine)[0].path_base == str(tmp_path / "jobs")


def test_multiprog_line_default_is_what_srun_accepts(isolated_env: str) -> None:
    """srun's 16 KiB buffer refuses a line of 16383 bytes or more (multi_prog.c)."""
    from remotebridge.errors import PrepareError
    from remotebridge.prepare.chunking import Limits, make_chunks

    site = config.load(None).site()
    assert site.multiprog_max_line == 16382 == Limits().max_line
    base = len("0  rbhelper.py task p.0000 1\n")
    for size, ok in ((16382, True), (16383, False)):
        python = "/" + "p" * (size - base - 1)
        limits = Limits(max_bytes=10**6, max_line=site.multiprog_max_line)
        if ok:
            (chunk,) = make_chunks("p", [1], limits, python=python)
            assert len(chunk.lines[0].encode()) == size
        else:
            with pytest.raises(PrepareError):
                make_chunks("p", [1], limits, python=python)


def test_lease_seconds_defaults_to_half_an_hour_and_must_be_positive(
        isolated_env: str, tmp_path: Path) -> None:
    assert config.load().database.lease_seconds == 1800
    cfg = config.load(str(_write(tmp_path, "[database]\nlease_seconds = 20\n")))
    assert cfg.database.lease_seconds == 20
    with pytest.raises(ConfigError, match="lease_seconds"):
        config.load(str(_write(tmp_path, "[database]\nlease_seconds = 0\n")))
