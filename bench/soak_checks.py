"""The soak's end checks, against the pipeline database, the home folders and the site.

:func:`check` returns a :class:`Report`: runs by state (each error with its fault),
stage results expected vs present, duplicates, lost products, stale staging and half
files at home and on the site, and scheduler submissions counted by token.
Submissions come from two sources on the test site (it has no ``sacct``): every
``_slurm_rpc_submit_batch_job: JobId=N`` line slurmctld logged during the soak, and the
name (which ends in the submit token) of every job :class:`JobSampler` saw in
``squeue -t all`` (finished jobs stay listed for Slurm's ``MinJobAge``, 300 s).
"""

from __future__ import annotations

import re
import subprocess
import threading
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, func, select

from remotebridge.db.bridge import RemoteComponent, RemoteEvent, RemoteRun
from remotebridge.db.engine import read_session
from remotebridge.db.pipeline import (
    CamProcessedExp,
    CamRun,
    ChipProcessedImfile,
    ChipRun,
    StackRun,
    StackSumSkyfile,
    WarpRun,
    WarpSkyfile,
)

#: per stage: the pipeline run table, its id column name, the result table
STAGE_TABLES: dict[str, tuple[Any, str, Any]] = {
    "chip": (ChipRun, "chip_id", ChipProcessedImfile),
    "cam": (CamRun, "cam_id", CamProcessedExp),
    "warp": (WarpRun, "warp_id", WarpSkyfile),
    "stack": (StackRun, "stack_id", StackSumSkyfile),
}
STALE_PREFIXES = (".rb-staging-", ".rb-push-", ".tmp-")
_SUBMIT_RE = re.compile(r"_slurm_rpc_submit_batch_job: JobId=(\d+)")
_NOTE_JOB_RE = re.compile(r"exec: (?:submitted|adopted by token) job (\d+) \(token ([^)]+)\)")


@dataclass
class JobSampler:
    """Samples ``squeue -t all`` on the site every few seconds: job id -> job name."""

    site: str
    slurm_conf: str
    every: float = 3.0
    names: dict[str, str] = field(default_factory=dict)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> None:
        """Sample in a daemon thread until :meth:`stop`."""
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """One last sample, then stop."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
        self.sample()

    def _loop(self) -> None:
        while not self._stop.wait(self.every):
            self.sample()

    def sample(self) -> None:
        """Record every job squeue lists now (nothing while slurmctld is down)."""
        argv = [self.site, "exec", "fe1", "--", "env", f"SLURM_CONF={self.slurm_conf}",
                "squeue", "-h", "-a", "-t", "all", "-o", "%i|%j"]
        try:
            r = subprocess.run(argv, capture_output=True, text=True, timeout=20, check=False)
        except subprocess.TimeoutExpired:
            return
        for line in r.stdout.splitlines():
            job_id, _, name = line.strip().partition("|")
            if job_id.isdigit():
                self.names[job_id] = name


@dataclass
class Report:
    """Everything the soak found; :meth:`failures` lists the targets missed."""

    runs: dict[str, int] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    not_full: list[str] = field(default_factory=list)
    components: dict[str, int] = field(default_factory=dict)
    stages: dict[str, dict[str, int]] = field(default_factory=dict)
    duplicates: int = 0
    lost: list[str] = field(default_factory=list)
    stale_home: list[str] = field(default_factory=list)
    stale_site: list[str] = field(default_factory=list)
    submissions: int = 0
    double_submissions: list[str] = field(default_factory=list)
    untracked_jobs: list[str] = field(default_factory=list)
    poisoned_abandoned: int = 0
    poisoned: int = 0
    stages_missing: list[str] = field(default_factory=list)

    def failures(self, manual: int) -> list[str]:
        """The targets this report misses (empty: the soak passed)."""
        out = []
        for name, bad in (("stages never run (campaign unfinished)", self.stages_missing),
                          ("lost products", self.lost), ("double submissions",
                          self.double_submissions), ("runs not full", self.not_full),
                          ("stale files at home", self.stale_home),
                          ("stale files on the site", self.stale_site)):
            if bad:
                out.append(f"{name}: {len(bad)}: {'; '.join(bad[:5])}")
        if self.duplicates:
            out.append(f"duplicated result rows: {self.duplicates}")
        if manual:
            out.append(f"manual commands other than control-tool start: {manual}")
        if self.poisoned_abandoned < self.poisoned:
            out.append(f"poisoned inputs abandoned: {self.poisoned_abandoned} of "
                       f"{self.poisoned}")
        return out


def check(engine: Engine, home: Path, site_dirs: list[Path], slurm_log: Path,
          log_offset: int, sampler: JobSampler, poisoned: set[int]) -> Report:
    """Every end check of the soak (``poisoned``: the chip_ids whose input is bad)."""
    rep = Report(poisoned=len(poisoned))
    _check_runs(engine, rep, poisoned)
    _check_stages(engine, rep)
    _check_submissions(engine, rep, slurm_log, log_offset, sampler)
    rep.stale_home = _stale(home)
    for d in site_dirs:
        rep.stale_site += _stale(d)
    return rep


def _check_runs(engine: Engine, rep: Report, poisoned: set[int]) -> None:
    with read_session(engine) as s:
        runs = s.execute(select(RemoteRun)).scalars().all()
        comps = list(s.execute(select(RemoteComponent)).scalars().all())
    rep.runs = dict(Counter(r.state for r in runs))
    # a stage without any run: the campaign did not get there (the checks on runs
    # below would not see that)
    rep.stages_missing = [st for st in STAGE_TABLES if not any(r.stage == st for r in runs)]
    rep.components = dict(Counter(c.state for c in comps))
    for r in runs:
        if r.state == "error":
            rep.errors.append(f"run {r.remote_id} {r.stage}: fault {r.fault}: {r.note[:160]}")
        if r.state != "full" and not _only_poison_failed(r.remote_id, comps, poisoned):
            rep.not_full.append(f"run {r.remote_id} {r.stage} {r.state}")
    rep.poisoned_abandoned = sum(1 for c in comps if c.stage == "chip"
                                 and c.stage_id in poisoned and c.state == "abandoned")


def _only_poison_failed(rid: int, comps: list[Any], poisoned: set[int]) -> bool:
    """A run holding a poisoned input may end short of ``full``, but only when every
    component of it is full except the poisoned ones, which are abandoned."""
    mine = [c for c in comps if c.remote_id == rid]
    bad = [c for c in mine if c.stage == "chip" and c.stage_id in poisoned]
    return bool(bad) and all(c.state == "abandoned" for c in bad) and \
        all(c.state == "full" for c in mine if c not in bad)


def _check_stages(engine: Engine, rep: Report) -> None:
    """Per stage: pipeline runs, how many full, result rows, and the lost ones: a full
    component with no good result row, or a good result whose file is not at home."""
    with read_session(engine) as s:
        comps = s.execute(select(RemoteComponent.stage, RemoteComponent.stage_id,
                                 RemoteComponent.state)).all()
        for stage, (run_t, id_name, res_t) in STAGE_TABLES.items():
            id_col = getattr(res_t, id_name)
            rows = s.execute(select(id_col, res_t.uri, res_t.fault)).all()
            dup = s.execute(select(func.count()).select_from(
                select(res_t.uri).group_by(res_t.uri).having(func.count() > 1).subquery()
            )).scalar_one()
            rep.duplicates += int(dup)
            states = Counter(s.execute(select(run_t.state)).scalars())
            good = {i for i, _, fault in rows if fault == 0}
            full = [sid for st, sid, cst in comps if st == stage and cst == "full"]
            rep.lost += [f"{stage} {sid}: full, no result" for sid in full if sid not in good]
            rep.lost += [f"{stage} {i}: {uri} not at home" for i, uri, fault in rows
                         if fault == 0 and not Path(uri).exists()]
            rep.stages[stage] = {"runs": sum(states.values()), "full": states.get("full", 0),
                                 "components": sum(1 for st, _, _ in comps if st == stage),
                                 "results": len(rows), "good": len(good)}


def _check_submissions(engine: Engine, rep: Report, slurm_log: Path, offset: int,
                       sampler: JobSampler) -> None:
    with slurm_log.open("rb") as f:
        f.seek(offset)
        text = f.read().decode(errors="replace")
    submitted = _SUBMIT_RE.findall(text)
    rep.submissions = len(submitted)
    with read_session(engine) as s:
        notes = s.execute(select(RemoteEvent.note)).scalars().all()
    tracked = {m.group(1): m.group(2) for n in notes for m in [_NOTE_JOB_RE.search(n)] if m}
    by_token: dict[str, list[str]] = defaultdict(list)
    for job_id in submitted:
        name = sampler.names.get(job_id, "")
        token = name.rsplit(".", 1)[-1] if "." in name else tracked.get(job_id, "?")
        by_token[token].append(job_id)
        if job_id not in tracked:
            rep.untracked_jobs.append(f"job {job_id} ({name or 'never seen in squeue'})")
    rep.double_submissions = [f"token {t}: jobs {', '.join(j)}" for t, j in by_token.items()
                              if len(j) > 1 and t != "?"]


def _stale(root: Path) -> list[str]:
    """Leftover staging folders and temporary files under ``root``."""
    if not root.exists():
        return []
    return sorted(str(p) for p in root.rglob("*") if p.name.startswith(STALE_PREFIXES))
