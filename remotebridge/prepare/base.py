"""What every stage plugin shares: the context it builds from, the plan builder, dbinfo schemas.

A stage class (see :mod:`remotebridge.prepare.chip`) declares ``name``,
``description``, ``defaults``, ``dbinfo_schema`` and implements
``build_plan(ctx) -> Plan``. It adds inputs, outputs and science commands through
:class:`PlanBuilder`, which translates paths, checks files exist at home (each
shared file stat'ed once), and adds the generic pre (mkdirs) and post (dbinfo) tasks.
"""

from __future__ import annotations

import os
import posixpath
import statistics
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

from sqlalchemy import Select, select
from sqlalchemy.orm import Session

from remotebridge import digests, jobfolder
from remotebridge.config import SiteConfig, StageConfig
from remotebridge.db.bridge import RemoteComponent
from remotebridge.errors import PrepareError
from remotebridge.prepare.chunking import Limits, check_command
from remotebridge.prepare.paths import PathTranslator, check_name, resolve_uri
from remotebridge.prepare.plan import (
    Area,
    HomeRecord,
    InputFile,
    OutputFile,
    Phase,
    Plan,
    Task,
)

FAULT_MISSING_INPUT = 11
FAULT_NO_DETREND = 12
FAULT_NO_COMPONENTS = 16
FAULT_PRODUCT_TWICE = 18
HELPER = jobfolder.HELPER
LIST_HEADER = jobfolder.LIST.comment + "\n"
"""First line of list files (the demo programs skip lines starting with #)."""

#: table -> {"key": {column: type}, "values": {column: type}}
DbinfoSchema = dict[str, dict[str, dict[str, type]]]


@dataclass
class StageContext:
    """What a stage needs to build its plan (no SSH, no scheduler)."""

    session: Session
    remote_id: int
    site: SiteConfig
    stage_config: StageConfig
    job_dir: str
    """Remote job folder."""
    local_job_dir: str
    paths: PathTranslator
    limits: Limits
    program: Callable[[str], str]
    """Demo program name -> local path of the script."""
    options: dict[str, Any] = field(default_factory=dict)

    def components(self) -> Select[Any]:
        """A sub-select of this run's component stage_ids."""
        return select(RemoteComponent.stage_id).where(RemoteComponent.remote_id ==
                                                      self.remote_id)


class StageBase:
    """Base of the stage plugins."""

    name: ClassVar[str] = ""
    description: ClassVar[str] = ""
    defaults: ClassVar[dict[str, Any]] = {}
    dbinfo_schema: ClassVar[DbinfoSchema] = {}
    result_table: ClassVar[Any] = None
    """Mapped result table whose ``dtime_script`` history gives the cost per command."""
    independent_tasks: ClassVar[bool] = False
    """The cmd tasks of one component need nothing of each other (chip: one per chip), so
    a retry runs only the failed ones (and the component's post tasks), not them all."""

    def build_plan(self, ctx: StageContext) -> Plan:  # pragma: no cover - abstract
        """Turn the run's components into a plan."""
        raise NotImplementedError

    def measured_cost(self, session: Session, history_runs: int) -> float | None:
        """Median measured seconds per command (all phases, from the dynamic runner's
        records) of the stage's last ``history_runs`` full components."""
        if history_runs < 1:
            return None
        comp = RemoteComponent
        rows = session.execute(
            select(comp.elapsed).where(comp.stage == self.name, comp.elapsed.is_not(None),
                                       comp.elapsed > 0)
            .order_by(comp.remote_id.desc(), comp.stage_id.desc()).limit(history_runs)
        ).scalars().all()
        return float(statistics.median([r for r in rows if r is not None])) if rows else None

    def history_cost(self, session: Session, history_runs: int) -> float | None:
        """Median ``dtime_script`` of the stage's last ``history_runs`` good results."""
        table = self.result_table
        if table is None or history_runs < 1:
            return None
        pk = list(table.__table__.primary_key.columns)
        rows = session.execute(
            select(table.dtime_script).where(table.dtime_script.is_not(None), table.fault == 0)
            .order_by(*[c.desc() for c in pk]).limit(history_runs)).scalars().all()
        return float(statistics.median(rows)) if rows else None


def validate_dbinfo(schema: DbinfoSchema, record: dict[str, Any]) -> list[str]:
    """Problems of one dbinfo record against a stage's schema ([] when valid)."""
    table = record.get("table")
    if table not in schema:
        return [f"table {table!r} is not allowed"]
    problems = []
    for part in ("key", "values"):
        allowed = schema[table][part]
        given = record.get(part) or {}
        for col, value in given.items():
            if col not in allowed:
                problems.append(f"{part} column {table}.{col} is not allowed")
            elif value is not None and not _type_ok(value, allowed[col]):
                problems.append(f"{table}.{col} must be {allowed[col].__name__}")
        if part == "key" and set(given) != set(allowed):
            problems.append(f"key of {table} must be exactly {sorted(allowed)}")
    return problems


def _type_ok(value: Any, wanted: type) -> bool:
    if wanted is float:
        return isinstance(value, int | float) and not isinstance(value, bool)
    return isinstance(value, wanted) and not (wanted is int and isinstance(value, bool))


class PlanBuilder:
    """Accumulates a plan: inputs, outputs, commands, home records."""

    def __init__(self, ctx: StageContext, stage: str) -> None:
        self.ctx = ctx
        self.plan = Plan(stage=stage, remote_id=ctx.remote_id, job_dir=ctx.job_dir)
        self._sizes: dict[str, int] = {}
        self._stamps: dict[str, tuple[int, int]] = {}
        """(size, mtime_ns) of every input from the stat that gave its size (the digest
        cache's key: a second stat would cost as much as reading a small input)."""
        self._shared: dict[str, str] = {}
        self._next_id = 1

    @property
    def python(self) -> str:
        """The site's ``remote_python``: runs the helper and the (python) programs."""
        return self.ctx.site.remote_python or "python3"

    def input(self, uri: str, component: int | None, *, shared: bool = False) -> str:
        """Register a file the job needs; returns its remote path."""
        if shared and uri in self._shared:
            return self._shared[uri]
        local = check_name(resolve_uri(uri), component)
        remote, area = self.ctx.paths.to_remote(local)
        inputs = self.plan.inputs
        key = inputs.key(remote)
        if not inputs.has_key(key):
            size = self._size(local, component) if shared else self._stat(local, component)
            inputs.add(key, InputFile(local, remote, size, area, shared))
        if shared:
            self._shared[uri] = remote
        return remote

    def _size(self, local: str, component: int | None) -> int:
        size = self._sizes.get(local)
        if size is None:
            size = self._sizes[local] = self._stat(local, component)
        return size

    def _stat(self, local: str, component: int | None) -> int:
        try:
            st = os.stat(local)
        except OSError:
            raise PrepareError("input file does not exist at home", component=component,
                               path=local, fault=FAULT_MISSING_INPUT) from None
        self._stamps[local] = (st.st_size, st.st_mtime_ns)
        return st.st_size

    def program(self, name: str) -> str:
        """Ship a program (shared, once) and return its remote path."""
        return self.input(self.ctx.program(name), None, shared=True)

    def output(self, uri: str, component: int, *, permanent: bool = True) -> str:
        """Register a file the job makes; returns its remote path."""
        local = check_name(resolve_uri(uri), component)
        remote, _area = self.ctx.paths.to_remote(local)
        self.plan.outputs.add(remote, local, permanent, component)  # 3 per chip command
        self.plan.out_dirs.add(remote.rpartition("/")[0] or "/")
        return remote

    def outputs(self, base: str, suffixes: tuple[str, ...], component: int) -> list[str]:
        """``[output(base + s, component) for s in suffixes]``: a command's products, which
        differ only by their suffix (no ``/``), share one folder, translated once."""
        if "://" in base or not suffixes or any("/" in s or not s for s in suffixes):
            return [self.output(base + s, component) for s in suffixes]
        first = self.output(base + suffixes[0], component)
        remote_base = first[:len(first) - len(suffixes[0])]
        out, add = [first], self.plan.outputs.add
        for suffix in suffixes[1:]:
            remote = remote_base + suffix
            add(remote, check_name(base + suffix, component), True, component)
            out.append(remote)
        return out

    def command(self, component: int, argv: list[str], *, threads: int, cost: float,
                log: str = "") -> Task:
        """Add one science command (cmd phase)."""
        check_command(argv, self.ctx.limits, component)
        task = Task(self._next_id, component, Phase.CMD, argv, threads, cost, log)
        self._next_id += 1
        self.plan.tasks.append(task)
        return task

    def home(self, component: int, record: HomeRecord) -> None:
        """Add one dbinfo record the component's post task will build."""
        self.plan.home.setdefault(component, []).append(record)

    def job_file(self, name: str, text: str) -> str:
        """Add a file to the job folder (e.g. a list); returns its job-relative path."""
        self.plan.job_files[name] = text
        return name

    def finish(self) -> Plan:
        """Add the pre (mkdirs) and post (dbinfo) tasks and return the plan."""
        plan = self.plan
        if not plan.tasks.count(Phase.CMD):
            raise PrepareError("run has no commands to prepare", fault=FAULT_NO_COMPONENTS)
        self._refuse_shared_products()
        self._digest_inputs()
        pre = Task(0, 0, Phase.PRE, [self.python, HELPER, "mkdirs", jobfolder.OUTDIRS.name], 1, 1.0)
        plan.tasks.append(pre)  # the pre phase comes first in the plan
        for stage_id in sorted(plan.home):
            self._post_task(stage_id)
        return plan

    def _refuse_shared_products(self) -> None:
        """Refuse a plan in which one product is listed twice: the pipeline queued the
        same work twice (e.g. two stage runs for one exposure); run as it is, one copy
        would overwrite the other and poll would refuse the job's summary."""
        twice = self.plan.outputs.listed_twice()
        if twice:
            remote, ids = next(iter(twice.items()))
            who = (f"component {ids[0]} lists it {len(ids)} times" if len(set(ids)) == 1
                   else "components " + ", ".join(map(str, sorted(set(ids)))) + " all make it")
            more = f" (and {len(twice) - 1} more products)" if len(twice) > 1 else ""
            raise PrepareError(f"a product is planned twice: {who}{more}; the pipeline has "
                               "queued the same work twice", path=remote, component=ids[-1],
                               fault=FAULT_PRODUCT_TWICE,
                               hint="drop the duplicate stage run in the pipeline, then "
                                    "`remotetool cancel` this run: definebyquery takes the "
                                    "rest again")

    def _digest_inputs(self) -> None:
        """Every input's sha256 (cached per path, size and mtime: see remotebridge.digests)."""
        stamps = self._stamps
        try:  # a batch at a time: the digests of a big run are never all in memory
            with digests.batches() as lookup:
                self.plan.inputs = self.plan.inputs.with_digests(
                    lambda paths: lookup((p, stamps[p]) for p in paths))
        except OSError as exc:
            raise PrepareError(f"input file cannot be read at home: {exc.strerror}",
                               path=str(exc.filename), fault=FAULT_MISSING_INPUT) from None
        self._stamps = {}

    def _post_task(self, stage_id: int) -> None:
        home = jobfolder.HOME.path(stage_id=stage_id)
        out = jobfolder.DBINFO.path(stage_id=stage_id)
        argv = [self.python, HELPER, "dbinfo", "--home", home, "--out", out]
        self.plan.tasks.append(Task(self._next_id, stage_id, Phase.POST, argv, 1, 1.0))
        self._next_id += 1
        local = posixpath.join(self.ctx.local_job_dir, out)
        self.plan.outputs.append(OutputFile(posixpath.join(self.ctx.job_dir, out), local, True,
                                            stage_id))


__all__ = ["Area", "DbinfoSchema", "PlanBuilder", "StageBase", "StageContext",
           "validate_dbinfo"]
