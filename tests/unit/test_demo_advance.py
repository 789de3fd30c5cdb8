"""The demo's "advance" helpers define the right downstream rows."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from sqlalchemy import Engine, func, select, update

from remotebridge.db.base import Base
from remotebridge.db.engine import make_engine, read_session, write_session
from remotebridge.db.pipeline import (
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
from remotebridge.demo.advance import (
    advance_label,
    goes_beyond,
    overlapping_skycells,
    queue_cam,
    queue_stack,
    queue_warp,
)
from remotebridge.demo.generate import init_survey


@pytest.fixture()
def engine(tmp_path: Path) -> Engine:
    eng = make_engine(f"sqlite:///{tmp_path}/db.sqlite")
    Base.metadata.create_all(eng)
    init_survey(eng, tmp_path / "survey", exposures=4, chips=4, size=64)
    return eng


def _finish(engine: Engine, table: type) -> None:
    with write_session(engine) as s:
        s.execute(update(table).values(state="full"))


def test_goes_beyond() -> None:
    assert goes_beyond("stack", "chip") and goes_beyond("cam", "chip")
    assert not goes_beyond("chip", "chip") and not goes_beyond("nonsense", "chip")


def test_queue_cam(engine: Engine) -> None:
    with write_session(engine) as s:
        chip = s.scalars(select(ChipRun)).first()
        assert chip is not None
        with pytest.raises(ValueError, match="not 'full'"):
            queue_cam(s, chip)
        chip.state = "full"
        cam = queue_cam(s, chip)
        assert cam is not None and queue_cam(s, chip) is cam
        assert (cam.chip_id, cam.label, cam.state, cam.workdir, cam.data_group, cam.end_stage,
                cam.tess_id) == (chip.chip_id, "demo", "new", chip.workdir, "demo", "stack",
                                 "DEMO.V1")
        chip.end_stage, chip2 = "chip", s.scalars(select(ChipRun).offset(1)).first()
        assert chip2 is not None
        chip2.state, chip2.end_stage = "full", "chip"
        assert queue_cam(s, chip2) is None
        assert s.scalar(select(func.count()).select_from(CamRun)) == 1


def test_queue_warp_maps_overlapping_skycells(engine: Engine) -> None:
    _finish(engine, ChipRun)
    with write_session(engine) as s:
        cams = [queue_cam(s, c) for c in s.scalars(select(ChipRun))]
        for cam in cams:
            assert cam is not None
            cam.state = "full"
        warps = [queue_warp(s, c) for c in cams if c is not None]
        n_cells = s.scalar(select(func.count()).select_from(Skycell)) or 0
        for cam, warp in zip(cams, warps, strict=True):
            assert warp is not None and cam is not None
            assert queue_warp(s, cam) is warp
            assert (warp.tess_id, warp.label, warp.state) == ("DEMO.V1", "demo", "new")
            mapped = set(s.scalars(select(WarpSkyCellMap.skycell_id)
                                   .where(WarpSkyCellMap.warp_id == warp.warp_id)))
            assert "skycell.1.1" in mapped and 4 <= len(mapped) <= n_cells
            chip = s.get(ChipRun, cam.chip_id)
            assert chip is not None
            exp = s.get(RawExp, chip.exp_id)
            assert exp is not None
            assert mapped == {c.skycell_id for c in overlapping_skycells(s, exp, "DEMO.V1")}


def _warps_done(engine: Engine, fault_one: bool = False) -> None:
    _finish(engine, ChipRun)
    with write_session(engine) as s:
        for chip in s.scalars(select(ChipRun)).all():
            cam = queue_cam(s, chip)
            assert cam is not None
            cam.state = "full"
            warp = queue_warp(s, cam)
            assert warp is not None
            warp.state = "full"
            for cell in s.scalars(select(WarpSkyCellMap.skycell_id)
                                  .where(WarpSkyCellMap.warp_id == warp.warp_id)).all():
                s.add(WarpSkyfile(warp_id=warp.warp_id, skycell_id=cell, uri=f"/x/{cell}",
                                  fault=0, good_frac=0.5))
        if fault_one:
            first = s.scalars(select(WarpSkyfile).where(
                WarpSkyfile.skycell_id == "skycell.1.1").order_by(WarpSkyfile.warp_id)).first()
            assert first is not None
            first.fault = 3


def test_queue_stack(engine: Engine) -> None:
    _warps_done(engine)
    with write_session(engine) as s:
        stacks = queue_stack(s, "demo")
        assert queue_stack(s, "demo") == []  # not yet stacked -> only once
        assert queue_stack(s, "other") == []
        keys = {(st.tess_id, st.skycell_id, st.filter) for st in stacks}
        assert ("DEMO.V1", "skycell.1.1", "g") in keys and ("DEMO.V1", "skycell.1.1", "r") in keys
        for st in stacks:
            inputs = s.scalars(select(StackInputSkyfile.warp_id)
                               .where(StackInputSkyfile.stack_id == st.stack_id)).all()
            assert len(inputs) >= 2
            filters = {s.scalar(select(RawExp.filter).join(ChipRun).join(CamRun)
                                .join(WarpRun, WarpRun.cam_id == CamRun.cam_id)
                                .where(WarpRun.warp_id == w)) for w in inputs}
            assert filters == {st.filter}
            assert (st.label, st.state) == ("demo", "new")


def test_queue_stack_skips_faulted_warps(engine: Engine) -> None:
    _warps_done(engine, fault_one=True)
    with write_session(engine) as s:
        stacks = queue_stack(s, "demo")
    keys = {(st.skycell_id, st.filter) for st in stacks}
    # one of the two g warps of the centre cell faulted: no g stack there yet
    assert ("skycell.1.1", "r") in keys
    faulted_filter = "g"  # the first exposure is g
    assert ("skycell.1.1", faulted_filter) not in keys


def test_advance_label_chains_everything(engine: Engine) -> None:
    _finish(engine, ChipRun)
    with write_session(engine) as s:
        first = advance_label(s, "demo")
    assert len(first.cam_runs) == 4 and first.warp_runs == [] and first.stack_runs == []
    _finish(engine, CamRun)
    with write_session(engine) as s:
        second = advance_label(s, "demo")
    assert second.cam_runs == [] and len(second.warp_runs) == 4
    with read_session(engine) as s:
        assert s.scalar(select(func.count()).select_from(StackRun)) == 0


def test_two_hosts_advancing_at_once_queue_each_run_once(db_url: str, tmp_path: Path) -> None:
    """Two cron hosts run ``demo advance`` at the same moment: each finished chipRun gets
    one camRun, not one per host (on PostgreSQL, READ COMMITTED lets both see "no camRun
    yet" unless the label is locked; a duplicated camRun lists its products twice)."""
    eng = make_engine(db_url)
    init_survey(eng, tmp_path / "survey", exposures=4, chips=4, size=64)
    _finish(eng, ChipRun)
    found: dict[str, list[int]] = {}

    def other_host() -> None:
        with write_session(eng) as b:
            found["cams"] = advance_label(b, "demo").cam_runs

    with write_session(eng) as a:
        assert len(advance_label(a, "demo").cam_runs) == 4
        host = threading.Thread(target=other_host)
        host.start()
        host.join(1.0)  # the other host's transaction runs while ours is still open
    host.join(30)
    with read_session(eng) as s:
        per_chip = s.execute(select(CamRun.chip_id, func.count()).group_by(CamRun.chip_id)).all()
    eng.dispose()
    assert found["cams"] == [] and sorted(n for _, n in per_chip) == [1, 1, 1, 1]
