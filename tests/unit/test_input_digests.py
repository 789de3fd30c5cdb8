"""Inputs are compared by content (sha256), not only by size (issue: same-size edits).

The digests at home are cached per (path, size, mtime): a repeated prepare or exec of
unchanged files hashes nothing. The site's helper compares the manifest's digest in
the same single round trip (``rbhelper.py check-inputs``).
"""

from __future__ import annotations

import hashlib
import os
import sqlite3
import subprocess
import sys
import time
from contextlib import closing
from pathlib import Path

import pytest
from sqlalchemy import Engine

from remotebridge import digests
from remotebridge import jobfolder as jf
from remotebridge.db import statemachine
from remotebridge.db.engine import write_session
from remotebridge.demo.generate import init_survey
from remotebridge.exec import exec_runs
from remotebridge.remote import helper_path, rbhelper
from remotebridge.states import RunState
from tests.support.demo_runs import define_and_prepare, demo_env
from tests.support.demo_runs import run_row as get
from tests.support.exec_run import local_config, wait_done

_env = demo_env
HOUR = 3600


@pytest.fixture(autouse=True)
def _own_cache(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """The digest cache of this test alone (under its own data folder)."""
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def age(paths: list[Path], seconds: int = HOUR) -> None:
    """Move mtimes into the past (files just written are not cached: same mtime tick)."""
    past = time.time() - seconds
    for p in paths:
        os.utime(p, (past, past))


# --- the cache ------------------------------------------------------------------------


@pytest.fixture
def counted(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every path hashed at home."""
    calls: list[str] = []
    real = digests.file_sha256

    def counting(path: str) -> str:
        calls.append(path)
        return real(path)
    monkeypatch.setattr(digests, "file_sha256", counting)
    return calls


def test_cache_hashes_each_file_once(tmp_path: Path, counted: list[str]) -> None:
    files = [tmp_path / f"f{i}" for i in range(3)]
    for i, f in enumerate(files):
        f.write_bytes(b"x" * i)
    age(files)
    cache = tmp_path / "c.sqlite"
    first = digests.digests([str(f) for f in files], cache)
    assert first == {str(f): sha(b"x" * i) for i, f in enumerate(files)}
    assert len(counted) == 3
    assert digests.digests([str(f) for f in files], cache) == first
    assert len(counted) == 3, "unchanged files are not hashed again"


@pytest.mark.parametrize("how", ["same-size", "other-size"])
def test_cache_rehashes_a_changed_file(tmp_path: Path, counted: list[str], how: str) -> None:
    f = tmp_path / "prog.py"
    f.write_bytes(b"print(1)\n")
    age([f], 2 * HOUR)
    cache = tmp_path / "c.sqlite"
    digests.digests([str(f)], cache)
    f.write_bytes(b"print(2)\n" if how == "same-size" else b"print(22)\n")
    age([f])
    assert digests.digests([str(f)], cache) == {str(f): sha(f.read_bytes())}
    assert counted == [str(f)] * 2


def test_fresh_file_is_not_cached(tmp_path: Path, counted: list[str]) -> None:
    """A file modified within the last seconds may change again in the same mtime tick."""
    f = tmp_path / "new"
    f.write_bytes(b"a")
    cache = tmp_path / "c.sqlite"
    digests.digests([str(f)], cache)
    digests.digests([str(f)], cache)
    assert len(counted) == 2


def test_unusable_cache_is_skipped(tmp_path: Path) -> None:
    f = tmp_path / "a"
    f.write_bytes(b"a")
    (tmp_path / "dir.sqlite").mkdir()
    assert digests.digests([str(f)], tmp_path / "dir.sqlite") == {str(f): sha(b"a")}


# --- the site's check (rbhelper check-inputs) ----------------------------------------


def test_check_inputs_compares_content(tmp_path: Path) -> None:
    same, other, gone = (tmp_path / n for n in ("same", "other", "gone"))
    same.write_bytes(b"abc")
    other.write_bytes(b"abd")
    rows = [jf.InputLine(f"/h/{p.name}", str(p), 3, jf.Area.SCRATCH, False, sha(b"abc"))
            for p in (same, other, gone)]
    rows.append(jf.InputLine("/h/v1", str(other), 3))  # no digest: size alone
    jf.write_files(tmp_path, {jf.INPUTS.name: jf.INPUTS.text(rows)})
    out = subprocess.run([sys.executable, str(helper_path()), "check-inputs",
                          str(tmp_path / jf.INPUTS.name)], capture_output=True, text=True,
                         check=True).stdout
    assert out.splitlines() == [str(other), str(gone)]


@pytest.fixture
def site_hashed(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every path the site's helper hashes (its check run in this process)."""
    calls: list[str] = []
    real = rbhelper.digest_matches

    def counting(path: str, spec: str) -> bool:
        calls.append(path)
        return real(path, spec)

    monkeypatch.setattr(rbhelper, "digest_matches", counting)
    return calls


def _site_inputs(tmp: Path, n: int = 3) -> tuple[list[Path], str]:
    files = [tmp / f"in{i}" for i in range(n)]
    for f in files:
        f.write_bytes(b"abc")
    rows = [jf.InputLine(f"/h/{p.name}", str(p), 3, jf.Area.SCRATCH, False, sha(b"abc"))
            for p in files]
    job = tmp / "job"
    job.mkdir()
    jf.write_files(job, {jf.INPUTS.name: jf.INPUTS.text(rows)})
    return files, str(job / jf.INPUTS.name)


def test_site_check_hashes_an_unchanged_input_once(tmp_path: Path,
                                                   site_hashed: list[str]) -> None:
    """exec's check, a repeated exec's check and the job's precheck: one hash per file."""
    files, manifest = _site_inputs(tmp_path)
    assert rbhelper.failing_inputs(manifest) == []
    assert sorted(site_hashed) == sorted(map(str, files))
    assert rbhelper.failing_inputs(manifest) == []
    assert rbhelper.main(["precheck", "--manifest", manifest,
                          "--out", str(tmp_path / "summary")]) == 0
    assert len(site_hashed) == len(files), "nothing hashed again"
    assert (tmp_path / "job" / jf.VERIFIED.name).is_file()


@pytest.mark.parametrize("how", ["edit-keep-mtime", "replace-keep-mtime", "truncate"])
def test_site_check_hashes_a_changed_input_again(tmp_path: Path, site_hashed: list[str],
                                                 how: str) -> None:
    files, manifest = _site_inputs(tmp_path)
    rbhelper.failing_inputs(manifest)
    st = files[1].stat()
    if how == "edit-keep-mtime":  # same size, mtime put back: the ctime still moves
        time.sleep(0.01)
        files[1].write_bytes(b"abd")
    elif how == "replace-keep-mtime":  # a push renames a new file into place
        (tmp_path / "new").write_bytes(b"abd")
        os.replace(tmp_path / "new", files[1])
    else:
        files[1].write_bytes(b"ab")
    os.utime(files[1], ns=(st.st_atime_ns, st.st_mtime_ns))
    del site_hashed[:]
    assert rbhelper.failing_inputs(manifest) == [str(files[1])]
    assert site_hashed == ([] if how == "truncate" else [str(files[1])])


@pytest.mark.parametrize("damage", ["garbage\n", "", '{"format": "x", "version": 1}\n',
                                    '{"format": "remotebridge.verified", "version": 1}\n{"a":1}\n'])
def test_site_check_with_a_damaged_record_hashes_everything(tmp_path: Path,
                                                            site_hashed: list[str],
                                                            damage: str) -> None:
    files, manifest = _site_inputs(tmp_path)
    rbhelper.failing_inputs(manifest)
    (tmp_path / "job" / jf.VERIFIED.name).write_text(damage)
    del site_hashed[:]
    assert rbhelper.failing_inputs(manifest) == []
    assert sorted(site_hashed) == sorted(map(str, files))


def test_site_check_trusts_a_record_only_for_the_listed_digest(tmp_path: Path,
                                                               site_hashed: list[str]) -> None:
    """A new prepare lists another digest for the same file: the record does not count."""
    files, manifest = _site_inputs(tmp_path, 1)
    rbhelper.failing_inputs(manifest)
    rows = [jf.InputLine("/h/in0", str(files[0]), 3, jf.Area.SCRATCH, False, sha(b"abd"))]
    jf.write_files(tmp_path / "job", {jf.INPUTS.name: jf.INPUTS.text(rows)})
    del site_hashed[:]
    assert rbhelper.failing_inputs(manifest) == [str(files[0])]
    assert site_hashed == [str(files[0])]


# --- exec: same-size edits reach the site ----------------------------------------------


def prepared(engine: Engine, tmp: Path) -> tuple[int, list[jf.InputLine]]:
    init_survey(engine, tmp / "survey", exposures=2, chips=2, size=64)
    rid = define_and_prepare(engine, local_config(tmp), tmp, limit=1)
    return rid, jf.read_inputs(tmp / "jobs" / f"remote_{rid}")


def pick(inputs: list[jf.InputLine], kind: str) -> jf.InputLine:
    if kind == "program":
        return next(i for i in inputs if i.local.endswith("rb_chip.py"))
    return next(i for i in inputs if not i.shared)


@pytest.mark.parametrize("kind", ["program", "data"])
def test_same_size_stale_copy_on_the_site_is_pushed(engine: Engine, tmp_path: Path,
                                                    kind: str) -> None:
    """The site holds an older copy of the same size (an earlier push): it is replaced."""
    rid, inputs = prepared(engine, tmp_path)
    line = pick(inputs, kind)
    home = Path(line.local).read_bytes()
    stale = bytes(b ^ 1 for b in home[:8]) + home[8:]
    assert len(stale) == len(home) and line.sha256 == sha(home)
    Path(line.remote).parent.mkdir(parents=True, exist_ok=True)
    Path(line.remote).write_bytes(stale)
    (out,) = exec_runs(engine, local_config(tmp_path))
    assert out.result == "run", out
    assert Path(line.remote).read_bytes() == home
    assert get(engine, rid).state == "run"


def test_same_size_program_edit_reaches_the_next_run(engine: Engine, tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """Run 1 pushed the program; it is edited at home (same size); run 2 runs the edit."""
    from remotebridge.demo import programs

    copy = tmp_path / "programs" / "rb_chip.py"
    copy.parent.mkdir()
    copy.write_bytes(programs.program_path("rb_chip.py").read_bytes())
    age([copy])
    monkeypatch.setattr(programs, "program_path", lambda name: copy)
    rid, inputs = prepared(engine, tmp_path)
    prog = pick(inputs, "program")
    assert prog.local == str(copy)
    cfg = local_config(tmp_path)
    (first,) = exec_runs(engine, cfg)
    wait_done(tmp_path, str(first.job_id))
    edited = copy.read_bytes().replace(b"#!", b"#!", 1) + b""
    edited = edited[:-2] + b"#\n" if not edited.endswith(b"#\n") else edited[:-2] + b" \n"
    assert len(edited) == copy.stat().st_size and edited != copy.read_bytes()
    copy.write_bytes(edited)
    rid2 = define_and_prepare(engine, cfg, tmp_path, limit=1)
    assert rid2 != rid
    (second,) = exec_runs(engine, cfg, remote_id=rid2)
    assert second.result == "run", second
    assert Path(prog.remote).read_bytes() == edited
    assert second.missing >= 1


def test_same_size_edit_after_prepare_is_refused(engine: Engine, tmp_path: Path) -> None:
    """A data file edited at home after prepare (same size) would run with content the
    manifest does not describe: exec refuses it (fault 21) rather than push it."""
    rid, inputs = prepared(engine, tmp_path)
    line = pick(inputs, "data")
    data = Path(line.local).read_bytes()
    Path(line.local).write_bytes(bytes(b ^ 1 for b in data[:8]) + data[8:])
    (out,) = exec_runs(engine, local_config(tmp_path))
    assert out.result == "error" and "changed at home" in out.message
    assert "sha256" in out.message
    assert (get(engine, rid).state, get(engine, rid).fault) == ("error", 21)


def test_repeated_exec_hashes_nothing_unchanged(engine: Engine, tmp_path: Path,
                                                counted: list[str]) -> None:
    """Prepare hashes each input once; exec and a resubmission of the unchanged folder
    (one input purged on the site meanwhile) hash nothing again."""
    init_survey(engine, tmp_path / "survey", exposures=2, chips=2, size=64)
    age(list((tmp_path / "survey").rglob("*.fits")))
    cfg = local_config(tmp_path)
    rid = define_and_prepare(engine, cfg, tmp_path, limit=1)
    inputs = jf.read_inputs(tmp_path / "jobs" / f"remote_{rid}")
    assert sorted(counted) == sorted(i.local for i in inputs)
    counted.clear()
    (first,) = exec_runs(engine, cfg)
    assert first.result == "run" and first.missing == len(inputs)
    wait_done(tmp_path, str(first.job_id))
    with write_session(engine) as s:
        statemachine.transition(s, rid, RunState.RUN, RunState.PENDING, note="retry")
    os.unlink(next(i.remote for i in inputs if not i.shared))
    (second,) = exec_runs(engine, cfg)
    assert second.result == "run" and second.missing == 1
    assert counted == [], "unchanged inputs were hashed again"


@pytest.mark.parametrize("size", [0, 1, digests.FIRST_READ - 1, digests.FIRST_READ,
                                  digests.FIRST_READ + 1, digests.BLOCK + digests.FIRST_READ + 3])
def test_file_sha256_reads_every_byte(tmp_path: Path, size: int) -> None:
    """One read for a small file; a file of FIRST_READ bytes or more is read to its end."""
    data = os.urandom(size)
    f = tmp_path / "f"
    f.write_bytes(data)
    assert digests.file_sha256(str(f)) == sha(data)


def test_prepare_stamps_are_the_cache_key(tmp_path: Path, counted: list[str]) -> None:
    """stamped_digests (prepare's stat reused) and digests (own stat) share entries."""
    f = tmp_path / "in.fits"
    f.write_bytes(b"abc")
    age([f])
    st = f.stat()
    cache = tmp_path / "c.sqlite"
    assert digests.stamped_digests([(str(f), (st.st_size, st.st_mtime_ns))], cache) == {
        str(f): sha(b"abc")}
    assert digests.digests([str(f)], cache) == {str(f): sha(b"abc")}
    assert counted == [str(f)]


# --- pruning the cache ------------------------------------------------------------------


def cached(cache: Path) -> set[str]:
    with closing(sqlite3.connect(str(cache))) as conn:
        return {p for (p,) in conn.execute("SELECT path FROM digest")}


def set_pruned_at(cache: Path, when: float) -> None:
    with closing(sqlite3.connect(str(cache))) as conn, conn:
        conn.execute("INSERT OR REPLACE INTO meta VALUES ('pruned_at', ?)", (when,))


def three_files(tmp_path: Path) -> tuple[list[Path], Path]:
    files = [tmp_path / n for n in ("keep", "gone", "edited")]
    for f in files:
        f.write_bytes(b"data")
    age(files, 2 * HOUR)
    cache = tmp_path / "c.sqlite"
    digests.digests([str(f) for f in files], cache)
    files[1].unlink()
    files[2].write_bytes(b"DATA")  # same size, new mtime: its entry can never match again
    age([files[2]])
    return files, cache


def test_prune_drops_entries_of_gone_and_changed_files(tmp_path: Path) -> None:
    files, cache = three_files(tmp_path)
    set_pruned_at(cache, time.time() - digests.PRUNE_EVERY_S - 1)
    digests.digests([str(files[0])], cache)  # any use of the cache runs the day's pass
    assert cached(cache) == {str(files[0])}


def test_prune_runs_at_most_once_a_day(tmp_path: Path) -> None:
    files, cache = three_files(tmp_path)  # a new cache counts as pruned now
    digests.digests([str(files[0])], cache)
    assert len(cached(cache)) == 3, "no pass within a day of the last"
    with closing(sqlite3.connect(str(cache))) as conn:
        assert digests.prune(conn, now=time.time() + 60) == 0
        assert digests.prune(conn, now=time.time() + digests.PRUNE_EVERY_S + 1) == 2
        assert digests.prune(conn, now=time.time() + digests.PRUNE_EVERY_S + 2) == 0
    assert cached(cache) == {str(files[0])}


def test_prune_pass_is_bounded_and_goes_on_where_it_stopped(tmp_path: Path) -> None:
    files = [tmp_path / f"f{i}" for i in range(5)]
    for f in files:
        f.write_bytes(b"x")
    age(files)
    cache = tmp_path / "c.sqlite"
    digests.digests([str(f) for f in files], cache)
    for f in files:
        f.unlink()
    with closing(sqlite3.connect(str(cache))) as conn:
        dropped = [digests.prune(conn, force=True, batch=2) for _ in range(4)]
    assert dropped == [2, 2, 1, 0]
    assert cached(cache) == set()


def test_prune_survives_a_damaged_meta_row(tmp_path: Path) -> None:
    files, cache = three_files(tmp_path)
    with closing(sqlite3.connect(str(cache))) as conn, conn:
        conn.execute("UPDATE meta SET value = 'soon' WHERE key = 'pruned_at'")
    assert digests.digests([str(files[0])], cache) == {str(files[0]): sha(b"data")}
    with closing(sqlite3.connect(str(cache))) as conn:
        (when,) = conn.execute("SELECT value FROM meta WHERE key = 'pruned_at'").fetchone()
        assert abs(when - time.time()) < 60, "rewritten: the next day's pass runs again"
        assert digests.prune(conn, now=time.time() + digests.PRUNE_EVERY_S + 1) == 2
