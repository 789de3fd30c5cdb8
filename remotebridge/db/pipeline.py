"""The reference pipeline's tables, modelled on the Pan-STARRS IPP's.

Four stages (chip, cam, warp, stack) each have a ``*Run`` table (label, state,
workdir, data_group) and a result table that the remote run's dbinfo records
fill in. ``remotetool definebyquery`` selects ready stage runs (state ``new``) by
label; ``poll`` replays results into the result tables and marks runs ``full``.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import DateTime, Float, ForeignKey, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from remotebridge.db.base import Base, utcnow

# Stage-run states in the pipeline (distinct from the bridge's RunState).
STAGE_NEW = "new"  # ready to be processed
STAGE_FULL = "full"  # processed
STAGE_DROP = "drop"  # abandoned


class _StageRunMixin:
    label: Mapped[str] = mapped_column(String(64), index=True)
    state: Mapped[str] = mapped_column(String(16), default=STAGE_NEW, index=True)
    workdir: Mapped[str] = mapped_column(String(255))
    data_group: Mapped[str] = mapped_column(String(64), default="")
    fault: Mapped[int] = mapped_column(Integer, default=0)
    registered: Mapped[datetime] = mapped_column(DateTime, default=utcnow)


class RawExp(Base):
    """One exposure as it came off the telescope."""

    __tablename__ = "rawExp"
    exp_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    exp_name: Mapped[str] = mapped_column(String(64), unique=True)
    camera: Mapped[str] = mapped_column(String(32), default="DEMOCAM")
    dateobs: Mapped[datetime] = mapped_column(DateTime, index=True)
    filter: Mapped[str] = mapped_column(String(16))
    exp_time: Mapped[float] = mapped_column(Float)
    airmass: Mapped[float] = mapped_column(Float, default=1.0)
    ra: Mapped[float] = mapped_column(Float)
    decl: Mapped[float] = mapped_column(Float)
    obs_mode: Mapped[str] = mapped_column(String(32), default="SURVEY")


class RawImfile(Base):
    """One chip image of an exposure (``class_id`` names the chip)."""

    __tablename__ = "rawImfile"
    exp_id: Mapped[int] = mapped_column(ForeignKey("rawExp.exp_id"), primary_key=True)
    class_id: Mapped[str] = mapped_column(String(16), primary_key=True)
    uri: Mapped[str] = mapped_column(String(255))
    bytes: Mapped[int] = mapped_column(Integer, default=0)


class DetrendFile(Base):
    """A detrend (bias/dark/flat/mask) for one chip, filter and validity range.

    ``filter`` is empty for detrends valid in every filter (bias, dark, mask).
    """

    __tablename__ = "detrendFile"
    det_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    det_type: Mapped[str] = mapped_column(String(16), index=True)
    class_id: Mapped[str] = mapped_column(String(16))
    filter: Mapped[str] = mapped_column(String(16), default="")
    time_begin: Mapped[datetime] = mapped_column(DateTime)
    time_end: Mapped[datetime] = mapped_column(DateTime)
    uri: Mapped[str] = mapped_column(String(255))
    bytes: Mapped[int] = mapped_column(Integer, default=0)
    registered: Mapped[datetime] = mapped_column(DateTime, default=utcnow)


class Skycell(Base):
    """One skycell of a tessellation (a small fixed tangent-plane image)."""

    __tablename__ = "skycell"
    tess_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    skycell_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    ra: Mapped[float] = mapped_column(Float)
    decl: Mapped[float] = mapped_column(Float)
    naxis1: Mapped[int] = mapped_column(Integer)
    naxis2: Mapped[int] = mapped_column(Integer)
    pixel_scale: Mapped[float] = mapped_column(Float)  # arcsec / pixel


class ChipRun(_StageRunMixin, Base):
    """Chip-stage processing of one exposure."""

    __tablename__ = "chipRun"
    chip_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    exp_id: Mapped[int] = mapped_column(ForeignKey("rawExp.exp_id"), index=True)
    end_stage: Mapped[str] = mapped_column(String(16), default="chip")
    tess_id: Mapped[str] = mapped_column(String(32), default="")


class ChipProcessedImfile(Base):
    """The chip stage's result for one chip image."""

    __tablename__ = "chipProcessedImfile"
    chip_id: Mapped[int] = mapped_column(ForeignKey("chipRun.chip_id"), primary_key=True)
    class_id: Mapped[str] = mapped_column(String(16), primary_key=True)
    uri: Mapped[str] = mapped_column(String(255))
    fault: Mapped[int] = mapped_column(Integer, default=0)
    bg: Mapped[float | None] = mapped_column(Float)
    bg_stdev: Mapped[float | None] = mapped_column(Float)
    n_stars: Mapped[int | None] = mapped_column(Integer)
    fwhm: Mapped[float | None] = mapped_column(Float)
    dtime_script: Mapped[float | None] = mapped_column(Float)
    hostname: Mapped[str] = mapped_column(String(64), default="")


class CamRun(_StageRunMixin, Base):
    """Camera-stage (per-exposure) processing of one chipRun's results."""

    __tablename__ = "camRun"
    cam_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    chip_id: Mapped[int] = mapped_column(ForeignKey("chipRun.chip_id"), index=True)
    end_stage: Mapped[str] = mapped_column(String(16), default="cam")
    tess_id: Mapped[str] = mapped_column(String(32), default="")


class CamProcessedExp(Base):
    """The camera stage's result for one exposure."""

    __tablename__ = "camProcessedExp"
    cam_id: Mapped[int] = mapped_column(ForeignKey("camRun.cam_id"), primary_key=True)
    uri: Mapped[str] = mapped_column(String(255))
    fault: Mapped[int] = mapped_column(Integer, default=0)
    n_stars: Mapped[int | None] = mapped_column(Integer)
    zero_pt: Mapped[float | None] = mapped_column(Float)
    fwhm: Mapped[float | None] = mapped_column(Float)
    bg: Mapped[float | None] = mapped_column(Float)
    dtime_script: Mapped[float | None] = mapped_column(Float)
    hostname: Mapped[str] = mapped_column(String(64), default="")


class WarpRun(_StageRunMixin, Base):
    """Warp-stage processing of one exposure onto the skycells it overlaps."""

    __tablename__ = "warpRun"
    warp_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    cam_id: Mapped[int] = mapped_column(ForeignKey("camRun.cam_id"), index=True)
    tess_id: Mapped[str] = mapped_column(String(32))
    end_stage: Mapped[str] = mapped_column(String(16), default="warp")


class WarpSkyCellMap(Base):
    """Which skycells a warpRun covers (set when the warpRun is defined)."""

    __tablename__ = "warpSkyCellMap"
    warp_id: Mapped[int] = mapped_column(ForeignKey("warpRun.warp_id"), primary_key=True)
    skycell_id: Mapped[str] = mapped_column(String(32), primary_key=True)


class WarpSkyfile(Base):
    """The warp stage's result: one exposure resampled onto one skycell."""

    __tablename__ = "warpSkyfile"
    warp_id: Mapped[int] = mapped_column(ForeignKey("warpRun.warp_id"), primary_key=True)
    skycell_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    uri: Mapped[str] = mapped_column(String(255))
    fault: Mapped[int] = mapped_column(Integer, default=0)
    good_frac: Mapped[float | None] = mapped_column(Float)
    bg: Mapped[float | None] = mapped_column(Float)
    dtime_script: Mapped[float | None] = mapped_column(Float)
    hostname: Mapped[str] = mapped_column(String(64), default="")


class StackRun(_StageRunMixin, Base):
    """Stack-stage combination of several warps of one skycell."""

    __tablename__ = "stackRun"
    stack_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    tess_id: Mapped[str] = mapped_column(String(32))
    skycell_id: Mapped[str] = mapped_column(String(32))
    filter: Mapped[str] = mapped_column(String(16))


class StackInputSkyfile(Base):
    """One warp that feeds a stackRun."""

    __tablename__ = "stackInputSkyfile"
    stack_id: Mapped[int] = mapped_column(ForeignKey("stackRun.stack_id"), primary_key=True)
    warp_id: Mapped[int] = mapped_column(ForeignKey("warpRun.warp_id"), primary_key=True)


class StackSumSkyfile(Base):
    """The stack stage's result for one stackRun."""

    __tablename__ = "stackSumSkyfile"
    stack_id: Mapped[int] = mapped_column(ForeignKey("stackRun.stack_id"), primary_key=True)
    uri: Mapped[str] = mapped_column(String(255))
    fault: Mapped[int] = mapped_column(Integer, default=0)
    n_inputs: Mapped[int | None] = mapped_column(Integer)
    good_frac: Mapped[float | None] = mapped_column(Float)
    bg: Mapped[float | None] = mapped_column(Float)
    dtime_script: Mapped[float | None] = mapped_column(Float)
    hostname: Mapped[str] = mapped_column(String(64), default="")


#: stage name -> (run table, its primary key column name)
STAGE_RUN_TABLES: dict[str, tuple[type[Base], str]] = {
    "chip": (ChipRun, "chip_id"),
    "cam": (CamRun, "cam_id"),
    "warp": (WarpRun, "warp_id"),
    "stack": (StackRun, "stack_id"),
}
