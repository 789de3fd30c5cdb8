"""The camera stage: one ``rb_cam.py`` per exposure over its good chip results.

The list file (``lists/cam.<cam_id>.list``, in the job folder) holds one line per
chip, ``<chip image>\\t<chip stats>`` (remote paths), as rb_cam.py expects. Chip
stats paths follow the product naming: the chip image's ``.fits`` -> ``.stats.json``.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any, ClassVar

from sqlalchemy import select

from remotebridge import jobfolder
from remotebridge.config import STAGE_DEFAULTS
from remotebridge.db.pipeline import CamProcessedExp, CamRun, ChipProcessedImfile, ChipRun, RawExp
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

CAM_STATS = ["n_stars", "zero_pt", "fwhm", "bg", "dtime_script", "hostname"]


def stats_of(image_uri: str) -> str:
    """The stats file written next to an image (``X.fits`` -> ``X.stats.json``)."""
    stem = image_uri[:-5] if image_uri.endswith(".fits") else image_uri
    return stem + ".stats.json"


class CamStage(StageBase):
    """Camera stage plugin."""

    name: ClassVar[str] = "cam"
    description: ClassVar[str] = "per-exposure astrometry/photometry over all chips (rb_cam.py)"
    defaults: ClassVar[dict[str, Any]] = STAGE_DEFAULTS["cam"]
    result_table = CamProcessedExp
    dbinfo_schema: ClassVar[DbinfoSchema] = {
        "camProcessedExp": {
            "key": {"cam_id": int},
            "values": {"uri": str, "fault": int, "n_stars": int, "zero_pt": float,
                       "fwhm": float, "bg": float, "dtime_script": float, "hostname": str},
        }
    }

    def build_plan(self, ctx: StageContext) -> Plan:
        """One rb_cam.py command per camRun."""
        runs, chips = self._rows(ctx)
        b = PlanBuilder(ctx, self.name)
        prog = b.program("rb_cam.py")
        cost = float(ctx.options.get("cost", 0.0))
        for cam_id, chip_id, workdir, exp_name in runs:
            if not chips.get(chip_id):
                raise PrepareError("camera run has no good chip results", component=cam_id,
                                   fault=FAULT_NO_COMPONENTS)
            lines = [f"{b.input(u, cam_id)}\t{b.input(stats_of(u), cam_id)}\n"
                     for u in chips[chip_id]]
            lst = b.job_file(jobfolder.LIST.path(stage="cam", id=cam_id),
                             LIST_HEADER + "".join(lines))
            base = product_base(workdir, exp_name, f"{exp_name}.cm")
            out, stats = b.output(base + ".fits", cam_id), b.output(base + ".stats.json", cam_id)
            argv = [b.python, prog, "--list", lst, "--out", out, "--stats", stats]
            b.command(cam_id, argv, threads=ctx.stage_config.threads, cost=cost,
                      log=b.output(base + ".log", cam_id))
            b.home(cam_id, HomeRecord("camProcessedExp", {"cam_id": cam_id},
                                      {"uri": base + ".fits", "fault": 0}, stats, CAM_STATS))
        return b.finish()

    @staticmethod
    def _rows(ctx: StageContext) -> tuple[list[Any], dict[int, list[str]]]:
        runs = ctx.session.execute(
            select(CamRun.cam_id, CamRun.chip_id, CamRun.workdir, RawExp.exp_name)
            .join(ChipRun, ChipRun.chip_id == CamRun.chip_id)
            .join(RawExp, RawExp.exp_id == ChipRun.exp_id)
            .where(CamRun.cam_id.in_(ctx.components())).order_by(CamRun.cam_id)).all()
        chip_ids = select(CamRun.chip_id).where(CamRun.cam_id.in_(ctx.components()))
        chips: dict[int, list[str]] = defaultdict(list)
        for chip_id, uri in ctx.session.execute(
                select(ChipProcessedImfile.chip_id, ChipProcessedImfile.uri)
                .where(ChipProcessedImfile.chip_id.in_(chip_ids), ChipProcessedImfile.fault == 0)
                .order_by(ChipProcessedImfile.chip_id, ChipProcessedImfile.class_id)):
            chips[chip_id].append(uri)
        return list(runs), chips
