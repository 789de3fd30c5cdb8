"""Defining the next stage's runs: the demo's version of IPP's "advance".

In IPP, when a stage run finishes, an ``advance`` task defines the runs of the next
stage for it (if the run's ``end_stage`` says the processing goes further). These
helpers do the same on the reference pipeline tables. They are pure database logic
(no files), take an open session (the caller owns the transaction, e.g.
``write_session``) and are idempotent: calling them again returns the existing runs.

* :func:`queue_cam` - a ``camRun`` for a finished ``chipRun``.
* :func:`queue_warp` - a ``warpRun`` and its ``warpSkyCellMap`` for a finished ``camRun``:
  every skycell of the run's tessellation that the exposure's footprint overlaps.
* :func:`queue_stack` - ``stackRun`` + ``stackInputSkyfile`` rows for each (tessellation,
  skycell, filter) of a label with at least two good warps and no stackRun yet.
* :func:`advance_label` - all three for every run of a label that is ready.

New runs inherit ``label``, ``workdir``, ``data_group`` and ``end_stage`` and start in
state ``new``.
"""

from __future__ import annotations

import zlib
from collections import defaultdict
from dataclasses import dataclass, field

from sqlalchemy import select, text
from sqlalchemy.orm import Session

from remotebridge.db.pipeline import (
    STAGE_FULL,
    STAGE_NEW,
    CamRun,
    ChipRun,
    RawExp,
    Skycell,
    StackInputSkyfile,
    StackRun,
    WarpRun,
    WarpSkyCellMap,
    WarpSkyfile,
)
from remotebridge.demo.camera import Camera, rect_overlap

STAGE_ORDER = ("chip", "cam", "warp", "stack")
#: half size (deg) of the footprint assumed for cameras other than the demo's
DEFAULT_HALF_FOOTPRINT = (0.5, 0.5)
MIN_STACK_INPUTS = 2


def goes_beyond(end_stage: str, stage: str) -> bool:
    """True when a run ending at ``end_stage`` continues past ``stage``."""
    if end_stage not in STAGE_ORDER:
        return False
    return STAGE_ORDER.index(end_stage) > STAGE_ORDER.index(stage)


def _require_full(run: ChipRun | CamRun, what: str, ident: int) -> None:
    if run.state != STAGE_FULL:
        raise ValueError(f"{what} {ident} is in state {run.state!r}, not {STAGE_FULL!r}")


def queue_cam(session: Session, chip_run: ChipRun) -> CamRun | None:
    """Define the camRun of a finished chipRun.

    Returns the new (or already existing) camRun; None when the chipRun's ``end_stage``
    is ``chip``. Raises ValueError if the chipRun is not ``full``.
    """
    _require_full(chip_run, "chipRun", chip_run.chip_id)
    if not goes_beyond(chip_run.end_stage, "chip"):
        return None
    existing = session.scalars(select(CamRun).where(CamRun.chip_id == chip_run.chip_id)).first()
    if existing is not None:
        return existing
    cam = CamRun(chip_id=chip_run.chip_id, label=chip_run.label, state=STAGE_NEW,
                 workdir=chip_run.workdir, data_group=chip_run.data_group,
                 end_stage=chip_run.end_stage, tess_id=chip_run.tess_id)
    session.add(cam)
    session.flush()
    return cam


def exposure_footprint(exp: RawExp) -> tuple[float, float]:
    """Half width and height (deg) of an exposure on the sky, from its camera name."""
    camera = Camera.from_name(exp.camera)
    return camera.half_extent_deg() if camera is not None else DEFAULT_HALF_FOOTPRINT


def overlapping_skycells(session: Session, exp: RawExp, tess_id: str) -> list[Skycell]:
    """Skycells of ``tess_id`` whose area overlaps the exposure's footprint."""
    half_exp = exposure_footprint(exp)
    cells = session.scalars(
        select(Skycell).where(Skycell.tess_id == tess_id).order_by(Skycell.skycell_id)
    ).all()
    out = []
    for cell in cells:
        half_cell = (cell.naxis1 * cell.pixel_scale / 7200.0,
                     cell.naxis2 * cell.pixel_scale / 7200.0)
        if rect_overlap((exp.ra, exp.decl), half_exp, (cell.ra, cell.decl), half_cell) > 0:
            out.append(cell)
    return out


def queue_warp(session: Session, cam_run: CamRun) -> WarpRun | None:
    """Define the warpRun of a finished camRun, with one warpSkyCellMap row per skycell.

    The tessellation is the camRun's ``tess_id`` (else its chipRun's). Returns None when
    the run ends at ``cam``, or when no skycell overlaps the exposure; raises ValueError
    if the camRun is not ``full`` or has no tessellation.
    """
    _require_full(cam_run, "camRun", cam_run.cam_id)
    if not goes_beyond(cam_run.end_stage, "cam"):
        return None
    existing = session.scalars(select(WarpRun).where(WarpRun.cam_id == cam_run.cam_id)).first()
    if existing is not None:
        return existing
    chip = session.get(ChipRun, cam_run.chip_id)
    exp = session.get(RawExp, chip.exp_id) if chip is not None else None
    tess_id = cam_run.tess_id or (chip.tess_id if chip is not None else "")
    if exp is None or not tess_id:
        raise ValueError(f"camRun {cam_run.cam_id} has no exposure or no tessellation")
    cells = overlapping_skycells(session, exp, tess_id)
    if not cells:
        return None
    warp = WarpRun(cam_id=cam_run.cam_id, tess_id=tess_id, label=cam_run.label,
                   state=STAGE_NEW, workdir=cam_run.workdir, data_group=cam_run.data_group,
                   end_stage=cam_run.end_stage)
    session.add(warp)
    session.flush()
    session.add_all(WarpSkyCellMap(warp_id=warp.warp_id, skycell_id=c.skycell_id) for c in cells)
    session.flush()
    return warp


@dataclass
class _Group:
    warp_ids: list[int] = field(default_factory=list)
    template: WarpRun | None = None


def _stackable_warps(session: Session, label: str) -> dict[tuple[str, str, str], _Group]:
    """(tess_id, skycell_id, filter) -> good warps of ``label`` that continue to stack."""
    rows = session.execute(
        select(WarpRun, WarpSkyfile.skycell_id, RawExp.filter)
        .join(WarpSkyfile, WarpSkyfile.warp_id == WarpRun.warp_id)
        .join(CamRun, CamRun.cam_id == WarpRun.cam_id)
        .join(ChipRun, ChipRun.chip_id == CamRun.chip_id)
        .join(RawExp, RawExp.exp_id == ChipRun.exp_id)
        .where(WarpRun.label == label, WarpRun.state == STAGE_FULL, WarpSkyfile.fault == 0)
        .where((WarpSkyfile.good_frac.is_(None)) | (WarpSkyfile.good_frac > 0))
        .order_by(WarpRun.warp_id)
    ).all()
    groups: dict[tuple[str, str, str], _Group] = defaultdict(_Group)
    for warp, skycell_id, filt in rows:
        if not goes_beyond(warp.end_stage, "warp"):
            continue
        group = groups[(warp.tess_id, skycell_id, filt)]
        group.warp_ids.append(warp.warp_id)
        group.template = group.template or warp
    return groups


def queue_stack(session: Session, label: str) -> list[StackRun]:
    """Define stackRuns for every (tess_id, skycell, filter) of ``label`` ready to stack.

    Ready: at least ``MIN_STACK_INPUTS`` warpSkyfiles with fault 0 (and some coverage)
    from ``full`` warpRuns of the label whose end_stage is ``stack``, and no stackRun of
    the label for that (tess_id, skycell, filter) yet. Returns only the new stackRuns.
    """
    done = {(t, c, f) for t, c, f in session.execute(
        select(StackRun.tess_id, StackRun.skycell_id, StackRun.filter)
        .where(StackRun.label == label)
    )}
    created = []
    for key, group in sorted(_stackable_warps(session, label).items()):
        if key in done or len(group.warp_ids) < MIN_STACK_INPUTS or group.template is None:
            continue
        tess_id, skycell_id, filt = key
        tpl = group.template
        stack = StackRun(tess_id=tess_id, skycell_id=skycell_id, filter=filt, label=label,
                         state=STAGE_NEW, workdir=tpl.workdir, data_group=tpl.data_group)
        session.add(stack)
        session.flush()
        session.add_all(StackInputSkyfile(stack_id=stack.stack_id, warp_id=w)
                        for w in group.warp_ids)
        created.append(stack)
    session.flush()
    return created


@dataclass
class AdvanceSummary:
    """What :func:`advance_label` defined."""

    cam_runs: list[int] = field(default_factory=list)
    warp_runs: list[int] = field(default_factory=list)
    stack_runs: list[int] = field(default_factory=list)


def _lock_label(session: Session, label: str) -> None:
    """Serialise advances of one label until the transaction ends. Two hosts' cron
    lines advance at the same minute; under PostgreSQL's READ COMMITTED both would see
    "no camRun yet" and queue one each (SQLite's write transactions are serial already)."""
    if session.get_bind().dialect.name == "postgresql":
        key = zlib.crc32(f"demo-advance:{label}".encode())
        session.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": key})


def advance_label(session: Session, label: str) -> AdvanceSummary:
    """Queue cam, warp and stack runs for everything of ``label`` that is ready."""
    _lock_label(session, label)
    out = AdvanceSummary()
    have_cam = select(CamRun.chip_id)
    chips = session.scalars(select(ChipRun).where(
        ChipRun.label == label, ChipRun.state == STAGE_FULL, ChipRun.chip_id.not_in(have_cam)
    )).all()
    for chip in chips:
        cam = queue_cam(session, chip)
        if cam is not None:
            out.cam_runs.append(cam.cam_id)
    have_warp = select(WarpRun.cam_id)
    cams = session.scalars(select(CamRun).where(
        CamRun.label == label, CamRun.state == STAGE_FULL, CamRun.cam_id.not_in(have_warp)
    )).all()
    for cam in cams:
        warp = queue_warp(session, cam)
        if warp is not None:
            out.warp_runs.append(warp.warp_id)
    out.stack_runs = [s.stack_id for s in queue_stack(session, label)]
    return out
