"""Inputs purged between exec's check and the job's start: the job's precheck ends it
early (exit 79, a summary saying ``inputs_missing``) and poll sends the run back to
``pending`` without spending an attempt; the next exec pushes the input again."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import pytest
from sqlalchemy import Engine

from remotebridge.config import SiteConfig
from remotebridge.exec import exec_runs
from remotebridge.poll import poll_runs
from remotebridge.poll.purged import InputsPurged, raise_if_purged
from remotebridge.remote import helper_path
from remotebridge.remote.rbhelper import EXIT_INPUTS_MISSING, INPUTS_HEADER
from remotebridge.ssh import Link, LocalLink, Result
from tests.support.demo_runs import demo_env
from tests.support.demo_runs import run_row as get
from tests.support.poll_runs import components, config, prepared_run, wait_job

_env = demo_env


def precheck(folder: Path, rows: Sequence[tuple[Path, int, str]]) -> int:
    names = "# local\tremote\tsize\tarea\tshared\tsha256"
    lines = [INPUTS_HEADER, names] + [f"/home/x\t{p}\t{size}\tscratch\t0\t{d}"
                                      for p, size, d in rows]
    (folder / "inputs.manifest").write_text("\n".join(lines) + "\n")
    return subprocess.run([sys.executable, str(helper_path()), "precheck"], cwd=folder,
                          capture_output=True, timeout=60).returncode


def header(folder: Path) -> dict[str, object]:
    return json.loads((folder / "job_summary.jsonl").read_text().splitlines()[0])


def test_precheck_sizes_and_digests_when_present(tmp_path: Path) -> None:
    data = tmp_path / "a.fits"
    data.write_bytes(b"x" * 10)
    good = "sha256:" + hashlib.sha256(b"x" * 10).hexdigest()
    assert precheck(tmp_path, [(data, 10, "")]) == 0
    assert precheck(tmp_path, [(data, 10, good)]) == 0
    assert precheck(tmp_path, [(data, 10, hashlib.sha256(b"x" * 10).hexdigest())]) == 0
    assert precheck(tmp_path, [(data, 10, "not-a-digest")]) == 0  # unreadable: size decides
    assert not (tmp_path / "job_summary.jsonl").exists()
    # today's manifest has no digest column: the 4th column (area) is no digest
    (tmp_path / "inputs.manifest").write_text(
        f"{INPUTS_HEADER}\n# local\tremote\tsize\tarea\tshared\n/h/a\t{data}\t10\tscratch\t0\n")
    assert subprocess.run([sys.executable, str(helper_path()), "precheck"], cwd=tmp_path,
                          timeout=60).returncode == 0
    assert precheck(tmp_path, [(data, 10, "sha256:" + "0" * 64)]) == EXIT_INPUTS_MISSING
    assert precheck(tmp_path, [(data, 11, "")]) == EXIT_INPUTS_MISSING
    gone = tmp_path / "gone.fits"
    assert precheck(tmp_path, [(data, 10, ""), (gone, 3, "")]) == EXIT_INPUTS_MISSING
    head = header(tmp_path)
    assert (head["tasks"], head["inputs_missing"], head["inputs_missing_paths"]) == \
        (0, 1, [str(gone)])


def test_summary_marker_is_read_as_untrusted_data() -> None:
    raise_if_purged(None)
    raise_if_purged(b"not json\n")
    raise_if_purged(b'{"format": "remotebridge.job_summary", "inputs_missing": "3"}\n')
    raise_if_purged(b'{"format": "other", "inputs_missing": 3}\n')
    with pytest.raises(InputsPurged, match="2 inputs gone.*first /s/a"):
        raise_if_purged(b'{"format": "remotebridge.job_summary", "inputs_missing": 2, '
                        b'"inputs_missing_paths": ["/s/a", 7]}\n')


class PurgingLink(LocalLink):
    """A link double: the site purges one input just before the job is submitted
    (after exec's check-inputs found it present)."""

    victim = ""

    def run(self, argv: Sequence[str], **kw: object) -> Result:
        if "rb-local-submit" in argv and PurgingLink.victim:
            os.unlink(PurgingLink.victim)
            PurgingLink.victim = ""
        return super().run(argv, **kw)  # type: ignore[arg-type]


def purging(site: SiteConfig) -> list[Link]:
    return [PurgingLink(site.local_root)]


def test_purge_before_start_goes_back_to_pending_without_an_attempt(engine: Engine,
                                                                    tmp_path: Path) -> None:
    rid = prepared_run(engine, tmp_path, exposures=1)
    cfg = config(tmp_path)
    manifest = (tmp_path / "jobs" / f"remote_{rid}" / "inputs.manifest").read_text()
    victim = PurgingLink.victim = manifest.splitlines()[2].split("\t")[1]
    (first,) = exec_runs(engine, cfg, link_factory=purging)
    assert first.result == "run" and not Path(victim).exists() and not PurgingLink.victim
    wait_job(tmp_path, first.job_id or "")
    before = components(engine, rid)
    (out,) = poll_runs(engine, cfg, force=True)
    assert (out.action, out.state) == ("retry", "pending"), out.note
    assert "inputs gone" in out.note and "re-push" in out.note
    assert components(engine, rid) == before  # no attempt spent on any component
    run = get(engine, rid)
    assert (run.state, run.fault, run.attempt) == ("pending", 0, 1)
    (again,) = exec_runs(engine, cfg)
    assert again.result == "run" and (again.missing, again.pushed_files) == (1, 1)
    wait_job(tmp_path, again.job_id or "")
    (done,) = poll_runs(engine, cfg, force=True)
    assert (done.action, done.state) == ("full", "full"), done.note


def test_exec_records_the_first_push_and_list_warns_near_the_purge_age(
        engine: Engine, db_url: str, tmp_path: Path) -> None:
    from datetime import timedelta

    from click.testing import CliRunner

    from remotebridge.cli.context import AppContext
    from remotebridge.cli.remotetool import list_cmd
    from remotebridge.db import statemachine
    from remotebridge.db.base import utcnow
    from remotebridge.db.bridge import RemoteRun
    from remotebridge.db.engine import write_session
    from remotebridge.purgeage import aging_inputs
    from remotebridge.states import RunState
    from tests.support.poll_runs import raw_config, toml_site

    rid = prepared_run(engine, tmp_path, exposures=1)
    assert get(engine, rid).inputs_pushed is None
    t0 = utcnow()
    (first,) = exec_runs(engine, config(tmp_path))
    pushed = get(engine, rid).inputs_pushed
    assert pushed is not None and pushed >= t0 - timedelta(seconds=1)
    wait_job(tmp_path, first.job_id or "")
    with write_session(engine) as s:  # a resubmission keeps the first push's time
        statemachine.transition(s, rid, RunState.RUN, RunState.PENDING, note="retry")
        run = s.get(RemoteRun, rid)
        assert run is not None
        run.inputs_pushed = pushed - timedelta(days=6)
    (again,) = exec_runs(engine, config(tmp_path))
    assert again.result == "run" and get(engine, rid).inputs_pushed == pushed - timedelta(days=6)
    assert aging_inputs(engine, config(tmp_path)) == []  # no purge_days: nothing known
    assert aging_inputs(engine, config(tmp_path, purge_days=30)) == []
    (aging,) = aging_inputs(engine, config(tmp_path, purge_days=7))  # 6 days > 7 - 1
    assert (aging.remote_id, aging.state) == (rid, "run") and "purges after 7" in aging.warning()
    cfg_file = tmp_path / "purge.toml"
    cfg_file.write_text(toml_site({**raw_config(tmp_path)["site"]["demo"], "purge_days": 7}))
    r = CliRunner().invoke(list_cmd, [], obj=AppContext(config_path=str(cfg_file),
                                                          db_url=db_url))
    assert r.exit_code == 0, r.output
    assert f"warning: run {rid} (run): inputs pushed 6.0 days" in r.output


def test_a_job_folder_purged_after_the_job_goes_back_to_pending_without_an_attempt(
        engine: Engine, tmp_path: Path) -> None:
    import shutil

    rid = prepared_run(engine, tmp_path, exposures=1)
    cfg = config(tmp_path)
    (first,) = exec_runs(engine, cfg)
    assert first.result == "run"
    wait_job(tmp_path, first.job_id or "")
    remote = Path(cfg.site().local_root) / f"remote_{rid}"
    assert remote.is_dir()
    shutil.rmtree(remote)  # the site purges scratch: the job folder with everything in it
    before = components(engine, rid)
    (out,) = poll_runs(engine, cfg, force=True)
    assert (out.action, out.state) == ("retry", "pending"), out.note
    assert "is gone" in out.note and "re-push" in out.note
    assert components(engine, rid) == before
    assert (get(engine, rid).state, get(engine, rid).fault) == ("pending", 0)
    (again,) = exec_runs(engine, cfg)
    assert again.result == "run", again.note
    wait_job(tmp_path, again.job_id or "")
    (done,) = poll_runs(engine, cfg, force=True)
    assert (done.action, done.state) == ("full", "full"), done.note


def test_job_folder_files_purged_folder_kept_goes_back_to_pending(engine: Engine,
                                                                  tmp_path: Path) -> None:
    rid = prepared_run(engine, tmp_path, exposures=1)
    cfg = config(tmp_path)
    (first,) = exec_runs(engine, cfg)
    wait_job(tmp_path, first.job_id or "")
    remote = Path(cfg.site().local_root) / f"remote_{rid}"
    for f in [p for p in remote.rglob("*") if p.is_file()]:
        f.unlink()  # a purge by age deletes files and keeps a recently touched folder
    (out,) = poll_runs(engine, cfg, force=True)
    assert (out.action, out.state) == ("retry", "pending"), out.note
    assert "is gone" in out.note
    (again,) = exec_runs(engine, cfg)
    wait_job(tmp_path, again.job_id or "")
    (done,) = poll_runs(engine, cfg, force=True)
    assert (done.action, done.state) == ("full", "full"), done.note
