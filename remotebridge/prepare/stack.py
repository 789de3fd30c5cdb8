"""The stack stage: combine the good warps of one skycell (one ``rb_stack.py`` per stackRun).

List file ``lists/stack.<stack_id>.list`` holds the warp images (remote paths).
Products: ``<workdir>/<tess_id>.<skycell_id>.<stack_id>.stk.*``.
"""

from __future__ import annotations

import posixpath
from collections import defaultdict
from typing import Any, ClassVar

from sqlalchemy import select

from remotebridge import jobfolder
from remotebridge.config import STAGE_DEFAULTS
from remotebridge.db.pipeline import StackInputSkyfile, StackRun, StackSumSkyfile, WarpSkyfile
from remotebridge.errors import PrepareError
from remotebridge.prepare.base import (
    FAULT_NO_COMPONENTS,
    LIST_HEADER,
    DbinfoSchema,
    PlanBuilder,
    StageBase,
    StageContext,
)
from remotebridge.prepare.plan import HomeRecord, Plan

STACK_STATS = ["n_inputs", "good_frac", "bg", "dtime_script", "hostname"]


class StackStage(StageBase):
    """Stack stage plugin."""

    name: ClassVar[str] = "stack"
    description: ClassVar[str] = "combine the warps of one skycell (rb_stack.py)"
    defaults: ClassVar[dict[str, Any]] = STAGE_DEFAULTS["stack"]
    result_table = StackSumSkyfile
    dbinfo_schema: ClassVar[DbinfoSchema] = {
        "stackSumSkyfile": {
            "key": {"stack_id": int},
            "values": {"uri": str, "fault": int, "n_inputs": int, "good_frac": float,
                       "bg": float, "dtime_script": float, "hostname": str},
        }
    }

    def build_plan(self, ctx: StageContext) -> Plan:
        """One rb_stack.py command per stackRun."""
        runs, warps = self._rows(ctx)
        b = PlanBuilder(ctx, self.name)
        prog = b.program("rb_stack.py")
        cost = float(ctx.options.get("cost", 0.0))
        for stack_id, workdir, tess_id, sky_id in runs:
            if not warps.get(stack_id):
                raise PrepareError("stack run has no good warp inputs", component=stack_id,
                                   fault=FAULT_NO_COMPONENTS)
            lines = "".join(b.input(u, stack_id) + "\n" for u in warps[stack_id])
            lst = b.job_file(jobfolder.LIST.path(stage="stack", id=stack_id), LIST_HEADER + lines)
            base = posixpath.join(workdir, f"{tess_id}.{sky_id}.{stack_id}.stk")
            out = b.output(base + ".fits", stack_id)
            stats = b.output(base + ".stats.json", stack_id)
            argv = [b.python, prog, "--list", lst, "--out", out, "--stats", stats]
            b.command(stack_id, argv, threads=ctx.stage_config.threads, cost=cost,
                      log=b.output(base + ".log", stack_id))
            b.home(stack_id, HomeRecord("stackSumSkyfile", {"stack_id": stack_id},
                                        {"uri": base + ".fits", "fault": 0}, stats, STACK_STATS))
        return b.finish()

    @staticmethod
    def _rows(ctx: StageContext) -> tuple[list[Any], dict[int, list[str]]]:
        s = ctx.session
        runs = s.execute(
            select(StackRun.stack_id, StackRun.workdir, StackRun.tess_id, StackRun.skycell_id)
            .where(StackRun.stack_id.in_(ctx.components())).order_by(StackRun.stack_id)).all()
        warps: dict[int, list[str]] = defaultdict(list)
        for stack_id, uri in s.execute(
                select(StackInputSkyfile.stack_id, WarpSkyfile.uri)
                .join(StackRun, StackRun.stack_id == StackInputSkyfile.stack_id)
                .join(WarpSkyfile, (WarpSkyfile.warp_id == StackInputSkyfile.warp_id)
                      & (WarpSkyfile.skycell_id == StackRun.skycell_id))
                .where(StackInputSkyfile.stack_id.in_(ctx.components()),
                       WarpSkyfile.fault == 0)
                .order_by(StackInputSkyfile.stack_id, WarpSkyfile.warp_id)):
            warps[stack_id].append(uri)
        return list(runs), warps
