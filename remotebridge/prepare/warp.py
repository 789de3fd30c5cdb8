"""The warp stage: resample each exposure onto every skycell its warpRun covers.

One ``rb_warp.py`` per (warp_id, skycell_id); the list of the exposure's good chip
images is written once per warpRun (``lists/warp.<warp_id>.list``) and shared by its
skycells. Products: ``<workdir>/<exp_name>/<exp_name>.<skycell_id>.wrp.*``.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any, ClassVar

from sqlalchemy import select

from remotebridge import jobfolder
from remotebridge.config import STAGE_DEFAULTS
from remotebridge.db.pipeline import (
    CamRun,
    ChipProcessedImfile,
    ChipRun,
    RawExp,
    Skycell,
    WarpRun,
    WarpSkyCellMap,
    WarpSkyfile,
)
from remotebridge.errors import PrepareError
from remotebridge.prepare.base import (
    FAULT_NO_COMPONENTS,
    LIST_HEADER,
    DbinfoSchema,
    PlanBuilder,
    StageBase,
    StageContext,
)
from remotebridge.prepare.chip import product_base
from remotebridge.prepare.plan import HomeRecord, Plan

WARP_STATS = ["good_frac", "bg", "dtime_script", "hostname"]


class WarpStage(StageBase):
    """Warp stage plugin."""

    name: ClassVar[str] = "warp"
    description: ClassVar[str] = "resample exposures onto skycells (rb_warp.py)"
    defaults: ClassVar[dict[str, Any]] = STAGE_DEFAULTS["warp"]
    result_table = WarpSkyfile
    dbinfo_schema: ClassVar[DbinfoSchema] = {
        "warpSkyfile": {
            "key": {"warp_id": int, "skycell_id": str},
            "values": {"uri": str, "fault": int, "good_frac": float, "bg": float,
                       "dtime_script": float, "hostname": str},
        }
    }

    def build_plan(self, ctx: StageContext) -> Plan:
        """One rb_warp.py command per skycell of every warpRun."""
        runs, cells, chips = self._rows(ctx)
        b = PlanBuilder(ctx, self.name)
        prog = b.program("rb_warp.py")
        cost = float(ctx.options.get("cost", 0.0))
        for warp_id, chip_id, workdir, exp_name in runs:
            if not chips.get(chip_id) or not cells.get(warp_id):
                raise PrepareError("warp run has no good chip results or no skycells",
                                   component=warp_id, fault=FAULT_NO_COMPONENTS)
            lines = "".join(b.input(u, warp_id) + "\n" for u in chips[chip_id])
            lst = b.job_file(jobfolder.LIST.path(stage="warp", id=warp_id), LIST_HEADER + lines)
            for sky_id, ra, dec, n1, n2, scale in cells[warp_id]:
                base = product_base(workdir, exp_name, f"{exp_name}.{sky_id}.wrp")
                out = b.output(base + ".fits", warp_id)
                stats = b.output(base + ".stats.json", warp_id)
                argv = [b.python, prog, "--list", lst, "--ra", repr(ra), "--dec", repr(dec),
                        "--naxis1", str(n1), "--naxis2", str(n2), "--scale", repr(scale),
                        "--out", out, "--stats", stats]
                b.command(warp_id, argv, threads=ctx.stage_config.threads, cost=cost,
                          log=b.output(base + ".log", warp_id))
                b.home(warp_id, HomeRecord("warpSkyfile",
                                           {"warp_id": warp_id, "skycell_id": sky_id},
                                           {"uri": base + ".fits", "fault": 0}, stats,
                                           WARP_STATS))
        return b.finish()

    @staticmethod
    def _rows(ctx: StageContext) -> tuple[list[Any], dict[int, list[Any]], dict[int, list[str]]]:
        s = ctx.session
        runs = s.execute(
            select(WarpRun.warp_id, CamRun.chip_id, WarpRun.workdir, RawExp.exp_name)
            .join(CamRun, CamRun.cam_id == WarpRun.cam_id)
            .join(ChipRun, ChipRun.chip_id == CamRun.chip_id)
            .join(RawExp, RawExp.exp_id == ChipRun.exp_id)
            .where(WarpRun.warp_id.in_(ctx.components())).order_by(WarpRun.warp_id)).all()
        cells: dict[int, list[Any]] = defaultdict(list)
        for row in s.execute(
                select(WarpSkyCellMap.warp_id, Skycell.skycell_id, Skycell.ra, Skycell.decl,
                       Skycell.naxis1, Skycell.naxis2, Skycell.pixel_scale)
                .join(WarpRun, WarpRun.warp_id == WarpSkyCellMap.warp_id)
                .join(Skycell, (Skycell.tess_id == WarpRun.tess_id)
                      & (Skycell.skycell_id == WarpSkyCellMap.skycell_id))
                .where(WarpSkyCellMap.warp_id.in_(ctx.components()))
                .order_by(WarpSkyCellMap.warp_id, Skycell.skycell_id)):
            cells[row[0]].append(tuple(row[1:]))
        chip_ids = (select(CamRun.chip_id).join(WarpRun, WarpRun.cam_id == CamRun.cam_id)
                    .where(WarpRun.warp_id.in_(ctx.components())))
        chips: dict[int, list[str]] = defaultdict(list)
        for chip_id, uri in s.execute(
                select(ChipProcessedImfile.chip_id, ChipProcessedImfile.uri)
                .where(ChipProcessedImfile.chip_id.in_(chip_ids), ChipProcessedImfile.fault == 0)
                .order_by(ChipProcessedImfile.chip_id, ChipProcessedImfile.class_id)):
            chips[chip_id].append(uri)
        return list(runs), cells, chips
