"""The job-folder module: strict reads, atomic writes, paths, and rbhelper's literals."""

from __future__ import annotations

import json
import os
import re
import stat
from dataclasses import dataclass
from pathlib import Path

import pytest

from remotebridge import jobfolder as jf
from remotebridge.config import SchedulerKind, SiteConfig
from remotebridge.errors import JobFolderError, PrepareError
from remotebridge.exec.folder import output_locals
from remotebridge.poll.faults import FAULT_JOB_UNREADABLE, PollFault
from remotebridge.poll.finish import read_plan_tasks
from remotebridge.poll.products import read_outputs
from remotebridge.prepare.allocation import AllocationInput, compute
from remotebridge.prepare.job import assemble
from remotebridge.prepare.plan import Area, HomeRecord, InputFile, OutputFile, Phase, Plan, Task
from remotebridge.prepare.retry import retry_subset
from remotebridge.prepare.review import review_folder
from remotebridge.remote import rbhelper


def write(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


INPUTS_OK = ("# remotebridge.inputs v1\n# local\tremote\tsize\tarea\tshared\n"
             "/d/a.fits\t/s/a.fits\t64\tscratch\t0\n/d/f.fits\t/p/f.fits\t128\tpermanent\t1\n")


# --- strict reads -----------------------------------------------------------------------


def test_inputs_manifest_round_trips(tmp_path: Path) -> None:
    write(tmp_path, "inputs.manifest", INPUTS_OK)
    rows = jf.read_inputs(tmp_path)
    assert rows == [jf.InputLine("/d/a.fits", "/s/a.fits", 64, "scratch", False),
                    jf.InputLine("/d/f.fits", "/p/f.fits", 128, "permanent", True)]
    v2 = jf.INPUTS.text(rows)
    assert v2 == (INPUTS_OK.replace(" v1", " v2").replace("shared\n", "shared\tsha256\n")
                  .replace("\t0\n", "\t0\t\n").replace("\t1\n", "\t1\t\n"))
    write(tmp_path, "inputs.manifest", v2)
    assert jf.read_inputs(tmp_path) == rows


def test_inputs_manifest_v2_carries_the_digest(tmp_path: Path) -> None:
    """v2 adds the sha256 column; a v1 manifest still reads (digest "")."""
    row = jf.InputLine("/d/a", "/s/a", 3, jf.Area.SCRATCH, False, "ab" * 32)
    write(tmp_path, "inputs.manifest", jf.INPUTS.text([row]))
    assert (tmp_path / "inputs.manifest").read_text().startswith("# remotebridge.inputs v2\n")
    assert jf.read_inputs(tmp_path) == [row]


@pytest.mark.parametrize(("text", "where", "what"), [
    ("# remotebridge.outputs v1\n", ":1:", "not a remotebridge.inputs file"),
    ("/d/a\t/s/a\t1\n", ":1:", "not a remotebridge.inputs file"),
    ("", ":1:", "not a remotebridge.inputs file"),
    ("# remotebridge.inputs v3\n", ":1:", "version 3 is not supported"),
    (INPUTS_OK + "/d/b\t/s/b\tbig\tscratch\t0\n", ":5:", "column size: 'big'"),
    (INPUTS_OK + "/d/b\t/s/b\t1\tscratch\tyes\n", ":5:", "column shared: 'yes' is not 0 or 1"),
    (INPUTS_OK + "/d/b\n", ":5:", "1 columns, expected 6"),
    (INPUTS_OK + "/d/b\t/s/b\t1\tattic\t0\n", ":5:", "column area: 'attic' is not one of"),
    (INPUTS_OK + "/d/b\t/s/b\t1\tscratch\t0\tx\ty\n", ":5:", "7 columns, expected 6"),
])
def test_inputs_manifest_refused_naming_file_and_line(tmp_path: Path, text: str, where: str,
                                                      what: str) -> None:
    path = write(tmp_path, "inputs.manifest", text)
    with pytest.raises(JobFolderError, match=what) as err:
        jf.read_inputs(tmp_path)
    assert str(err.value).startswith(f"{path}{where} ")
    assert err.value.path == str(path)


def test_missing_file_names_the_file(tmp_path: Path) -> None:
    with pytest.raises(JobFolderError, match="cannot be read") as err:
        jf.read_outputs(tmp_path)
    assert err.value.path == str(tmp_path / "outputs.manifest")


def plan_text(*records: str, version: int = 1, fmt: str = "remotebridge.plan") -> str:
    head = json.dumps({"format": fmt, "version": version, "remote_id": 7})
    return "\n".join([head, *records]) + "\n"


TASK = json.dumps({"task_id": 1, "stage_id": 100, "phase": "cmd", "argv": ["x"]})


def test_plan_read_keeps_header_records_and_lines(tmp_path: Path) -> None:
    write(tmp_path, "plan.jsonl", plan_text(TASK, ""))
    got = jf.read_jsonl(tmp_path, jf.PLAN)
    assert got.header["remote_id"] == 7
    assert got.records == [json.loads(TASK)] and got.lines == [TASK]


@pytest.mark.parametrize(("text", "line", "what"), [
    (plan_text(TASK, fmt="remotebridge.tasks"), 1, "not a remotebridge.plan file"),
    (plan_text(TASK, version=2), 1, "remotebridge.plan version 2 is not supported"),
    ("not json\n", 1, "not valid JSON"),
    (plan_text(TASK, "{oops"), 3, "not valid JSON"),
    (plan_text(TASK, "[1, 2]"), 3, "not a JSON object"),
    (plan_text(TASK, json.dumps({"task_id": "2", "stage_id": 1, "phase": "cmd"})), 3,
     "bad or missing field.s. task_id"),
    (plan_text(json.dumps({"task_id": 2, "phase": "cmd"})), 2, "stage_id"),
])
def test_plan_refused_naming_file_and_line(tmp_path: Path, text: str, line: int,
                                           what: str) -> None:
    path = write(tmp_path, "plan.jsonl", text)
    with pytest.raises(JobFolderError, match=what) as err:
        jf.read_jsonl(tmp_path, jf.PLAN)
    assert str(err.value).startswith(f"{path}:{line}: ")
    assert err.value.line == line


def test_json_doc_round_trips_and_is_checked(tmp_path: Path) -> None:
    write(tmp_path, "job.json", jf.json_doc(jf.JOB, {"job_dir": "/s/remote_7/"}))
    assert jf.read_doc(tmp_path, jf.JOB)["job_dir"] == "/s/remote_7/"
    assert jf.remote_job_dir(tmp_path) == "/s/remote_7"
    write(tmp_path, "job.json", jf.json_doc(jf.ALLOCATION, {"job_dir": "/s"}))
    with pytest.raises(JobFolderError, match=r"job.json:1: not a remotebridge.job file"):
        jf.read_doc(tmp_path, jf.JOB)
    write(tmp_path, "job.json", '{"format": "remotebridge.job",\n "version": 1,\n oops}\n')
    with pytest.raises(JobFolderError, match=r"job.json:3: not valid JSON"):
        jf.read_doc(tmp_path, jf.JOB)
    write(tmp_path, "job.json", jf.json_doc(jf.JOB, {"job_dir": "relative/dir"}))
    with pytest.raises(JobFolderError, match="names no absolute job_dir"):
        jf.remote_job_dir(tmp_path)


def test_lines_file_is_checked(tmp_path: Path) -> None:
    write(tmp_path, "outdirs.list", jf.lines_text(jf.OUTDIRS, ["/o/a", "/o/b"]))
    assert jf.read_lines(tmp_path, jf.OUTDIRS) == ["/o/a", "/o/b"]
    write(tmp_path, "outdirs.list", "# remotebridge.list v1\n/o/a\n")
    with pytest.raises(JobFolderError, match="outdirs.list:1: not a remotebridge.dirs file"):
        jf.read_lines(tmp_path, jf.OUTDIRS)


def test_a_new_column_is_one_field(tmp_path: Path) -> None:
    """A v2 column: one field on the row dataclass (and the version), nothing else."""

    @dataclass(frozen=True)
    class OutputLineV2:
        remote: str
        local: str
        permanent: bool
        stage_id: int
        checksum: str = ""

    v2 = jf.TsvFormat(name="outputs.manifest", format="remotebridge.outputs", version=2,
                      row=OutputLineV2)
    rows = [OutputLineV2("/s/a", "/d/a", True, 3, "abc")]
    write(tmp_path, "outputs.manifest", v2.text(rows))
    assert jf.read_rows(tmp_path, v2) == rows
    assert (tmp_path / "outputs.manifest").read_text().splitlines()[:2] == [
        "# remotebridge.outputs v2", "# remote\tlocal\tpermanent\tstage_id\tchecksum"]
    with pytest.raises(JobFolderError, match="version 2 is not supported"):
        jf.read_outputs(tmp_path)  # the v1 reader refuses it rather than misreading it


# --- one outputs.manifest reader for exec and poll -----------------------------------------


def test_exec_and_poll_read_outputs_alike(tmp_path: Path) -> None:
    rows = [jf.OutputLine("/s/a.fits", "/d/a.fits", True, 1),
            jf.OutputLine("/s/b.tmp", "/d/b.tmp", False, 2)]
    write(tmp_path, "outputs.manifest", jf.OUTPUTS.text(rows))
    assert read_outputs(tmp_path) == rows
    assert output_locals(tmp_path) == ["/d/a.fits", "/d/b.tmp"]


def test_exec_refuses_an_outputs_manifest_of_another_format(tmp_path: Path) -> None:
    write(tmp_path, "outputs.manifest", "# remotebridge.inputs v1\n/s/a\t/d/a\t1\t1\n")
    with pytest.raises(JobFolderError, match="outputs.manifest:1: not a remotebridge.outputs"):
        output_locals(tmp_path)
    with pytest.raises(PollFault, match="outputs.manifest:1: not a remotebridge.outputs") as err:
        read_outputs(tmp_path)
    assert err.value.fault == FAULT_JOB_UNREADABLE


def test_exec_without_outputs_manifest_pushes_everything(tmp_path: Path) -> None:
    assert output_locals(tmp_path) == []


def test_poll_plan_reader_names_file_and_line(tmp_path: Path) -> None:
    path = write(tmp_path, "plan.jsonl", plan_text(TASK, '{"task_id": 2}'))
    with pytest.raises(PollFault, match=f"{path}:3: bad or missing field") as err:
        read_plan_tasks(tmp_path)
    assert err.value.fault == FAULT_JOB_UNREADABLE


def test_retry_refuses_a_plan_of_another_version(tmp_path: Path) -> None:
    path = write(tmp_path, "plan.jsonl", plan_text(TASK, version=3))
    with pytest.raises(PrepareError, match=f"{path}:1: remotebridge.plan version 3"):
        retry_subset(tmp_path, [1], 2, site=None)  # type: ignore[arg-type]


def test_review_refuses_a_job_json_of_another_version(tmp_path: Path) -> None:
    write(tmp_path, "job.json", '{"format": "remotebridge.job", "version": 9}\n')
    with pytest.raises(JobFolderError, match="job.json:1: remotebridge.job version 9"):
        review_folder(tmp_path)


# --- atomic writes ------------------------------------------------------------------------


def test_atomic_write_replaces_and_sets_the_mode(tmp_path: Path) -> None:
    path = tmp_path / "job.sh"
    path.write_text("old")
    jf.atomic_write(path, "new", 0o755)
    assert path.read_text() == "new"
    assert stat.S_IMODE(path.stat().st_mode) == 0o755
    assert os.listdir(tmp_path) == ["job.sh"]


def test_atomic_write_failing_keeps_the_old_file(tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "job.json"
    path.write_text("old")

    def broken(src: str, dst: str) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(jf.os, "replace", broken)
    with pytest.raises(OSError, match="disk full"):
        jf.atomic_write(path, "new")
    assert path.read_text() == "old"
    assert os.listdir(tmp_path) == ["job.json"]  # the temporary file is gone


def test_write_folder_publishes_the_whole_folder(tmp_path: Path) -> None:
    target = tmp_path / "remote_7"
    jf.write_folder(target, {"a.txt": "1", "job.sh": "#!/bin/sh\n", "chunks/x.conf": "c"})
    jf.write_folder(target, {"b.txt": "2"})
    assert sorted(p.name for p in target.rglob("*")) == ["b.txt"]  # nothing of the old one
    assert os.listdir(tmp_path) == ["remote_7"]  # no staging or old folder left


# --- paths --------------------------------------------------------------------------------


def test_paths_of_a_run() -> None:
    assert jf.folder_name(7) == "remote_7"
    assert jf.local_folder("/data/jobs", 7) == Path("/data/jobs/remote_7")
    assert jf.local_folder("file:///data/jobs", 7) == Path("/data/jobs/remote_7")
    assert jf.remote_folder("/scratch/rb", 7) == "/scratch/rb/remote_7"


# --- what prepare writes is what the readers read -----------------------------------------


def prepared_files() -> dict[str, str]:
    plan = Plan(stage="chip", remote_id=42, job_dir="/scratch/rb/remote_42")
    plan.tasks += [Task(0, 0, Phase.PRE, ["python3", "rbhelper.py", "mkdirs", "outdirs.list"]),
                   Task(1, 100, Phase.CMD, ["python3", "/p/rb_chip.py"], 2, 150.0, "/o/1.log"),
                   Task(2, 100, Phase.POST, ["python3", "rbhelper.py", "dbinfo"])]
    plan.home[100] = [HomeRecord("chipProcessedImfile", {"chip_id": 100}, {"fault": 0},
                                 "/o/x.stats.json", ["bg"])]
    plan.inputs["/s/a"] = InputFile("/d/a", "/s/a", 64, Area.PERMANENT, True)
    plan.outputs.append(OutputFile("/s/o.fits", "/d/o.fits", True, 100))
    plan.out_dirs.add("/o")
    site = SiteConfig(name="g", scheduler=SchedulerKind.SLURM, remote_root="/scratch/rb",
                      cores_per_node=4)
    return assemble(plan, compute(AllocationInput(1, 2, 150.0, 4, 0.8, 10, 600, 43200)),
                    site).files


def test_prepared_files_pass_the_strict_readers(tmp_path: Path) -> None:
    files = prepared_files()
    jf.write_files(tmp_path, files)
    assert jf.read_doc(tmp_path, jf.JOB)["remote_id"] == 42
    assert jf.walltime_seconds(tmp_path) == 3600
    assert len(jf.read_jsonl(tmp_path, jf.PLAN).records) == 3
    assert jf.read_inputs(tmp_path) == [jf.InputLine("/d/a", "/s/a", 64, "permanent", True)]
    assert read_outputs(tmp_path) == [jf.OutputLine("/s/o.fits", "/d/o.fits", True, 100)]
    assert jf.read_lines(tmp_path, jf.OUTDIRS) == ["/o"]
    assert jf.read_jsonl(tmp_path, jf.HOME, stage_id=100).header["stage"] == "chip"
    chunk = next(n for n in files if n.endswith(".tasks.jsonl"))
    assert jf.read_jsonl(tmp_path, jf.TASKS, chunk=chunk[len("chunks/"):-len(".tasks.jsonl")])
    assert files["job.sh"].splitlines()[1].startswith(jf.SCRIPT.comment + " remote_id=42 ")


# --- the helper's literals ----------------------------------------------------------------


def test_rbhelper_literals_equal_the_job_folder_constants() -> None:
    """rbhelper.py is shipped alone, so it repeats names and headers; they must agree."""
    wanted = {"VERSION": jf.VERSION, "PLAN_FILE": jf.PLAN.name, "PLAN_FORMAT": jf.PLAN.format,
              "TASKS_FILE": jf.TASKS.name, "TASKS_FORMAT": jf.TASKS.format,
              "HOME_FORMAT": jf.HOME.format, "DBINFO_FORMAT": jf.DBINFO.format,
              "SUMMARY_FILE": jf.SUMMARY.name, "SUMMARY_FORMAT": jf.SUMMARY.format,
              "STATUS_FILE": jf.STATUS, "DIRS_HEADER": jf.OUTDIRS.comment,
              "INPUTS_HEADER": jf.INPUTS.comment, "STARTED_FILE": jf.STARTED,
              "OUTPUTS_FILE": jf.OUTPUTS.name, "OUTPUTS_HEADER": jf.OUTPUTS.comment,
              "SUMMARY_VERSION": jf.SUMMARY.version, "VERIFIED_FILE": jf.VERIFIED.name,
              "VERIFIED_FORMAT": jf.VERIFIED.format}
    assert {name: getattr(rbhelper, name, None) for name in wanted} == wanted
    every = {f.version for f in (jf.PLAN, jf.TASKS, jf.HOME, jf.DBINFO)}
    assert every == {rbhelper.VERSION}, "rbhelper reads and writes one version of each"


def test_rbrunner_literals_equal_the_job_folder_constants() -> None:
    """rbrunner.py ships alone too: its runner/ file names and formats must agree."""
    from remotebridge.remote import rbrunner

    wanted = {"VERSION": jf.VERSION, "RUNNER_DIR": jf.RUNNER_DIR,
              "LEADER_FILE": jf.LEADER.name, "LEADER_FORMAT": jf.LEADER.format,
              "RECORDS_FILE": jf.RECORDS.name, "RECORDS_FORMAT": jf.RECORDS.format,
              "PROGRESS_FILE": jf.PROGRESS.name, "PROGRESS_FORMAT": jf.PROGRESS.format}
    assert {name: getattr(rbrunner, name, None) for name in wanted} == wanted
    assert {f.version for f in (jf.LEADER, jf.RECORDS, jf.PROGRESS)} == {rbrunner.VERSION}


def test_runner_files_are_shipped_and_runner_folder_is_job_made() -> None:
    """runner = "dynamic" (the default) ships rbrunner.py and rbdispatch.py beside the
    helper; runner/ is the job's own folder, never pushed."""
    files = prepared_files()
    assert {jf.HELPER, jf.RUNNER, jf.DISPATCH} <= set(files)
    assert jf.RUNNER in jf.EXECUTABLE
    assert jf.RUNNER_DIR in jf.REMOTE_MADE_DIRS


def test_poll_shell_scripts_use_the_job_folder_names() -> None:
    """The small sh scripts poll runs on the site name files literally, like rbhelper."""
    from remotebridge.poll.finish import CLEAN_SCRIPT
    from remotebridge.poll.remote_files import FETCH_SCRIPT, SUMMARY_EXISTS_SCRIPT

    for name in (jf.SUMMARY.name, jf.PLAN.name, jf.HELPER):
        assert name in FETCH_SCRIPT
    assert f"$d/{jf.SUMMARY.name}" in SUMMARY_EXISTS_SCRIPT
    assert jf.SUMMARY.name in CLEAN_SCRIPT
    assert jf.STATUS.format(task_id="$t") in CLEAN_SCRIPT


def test_header_strings_live_only_in_their_owner() -> None:
    """Every format name is spelled out only in jobfolder.py and the shipped scripts."""
    root = Path(jf.__file__).resolve().parent
    owners = {root / "jobfolder.py", root / "remote" / "rbhelper.py",
              root / "remote" / "rbrunner.py"}
    names = {f.format for f in jf.FORMATS}
    found = [f"{path.relative_to(root)}: {name}"
             for path in root.rglob("*") if path.is_file() and path not in owners
             and path.suffix in (".py", ".j2")
             for name in names if _mentions(path.read_text(encoding="utf-8"), name)]
    assert found == []


def _mentions(text: str, name: str) -> bool:
    """``name`` as a whole word (``remotebridge.job`` is not ``remotebridge.job_summary``)."""
    return re.search(re.escape(name) + r"(?![\w])", text) is not None
