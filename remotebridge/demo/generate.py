"""The demo survey generator: a small but real survey (FITS files + pipeline rows).

``init_survey`` writes, under ``directory``::

    raw/<exp_name>/<exp_name>.<class_id>.fits     raw chip images (int32 ADU, TAN WCS)
    detrend/bias/bias.p<period>.<class_id>.fits   master bias, two validity periods
    detrend/dark/dark.<class_id>.fits             dark current (e-/s)
    detrend/flat/flat.<filter>.<class_id>.fits    flat field per filter
    detrend/mask/mask.<class_id>.fits             bad-pixel mask (uint8, 1 = bad)
    refcat/refcat.fits                            the fake star catalogue (ra, dec, mag_g, mag_r)

and the matching rows: ``rawExp``, ``rawImfile``, ``detrendFile``, ``skycell`` and one
``chipRun`` (state ``new``) per exposure for ``label``. The bias changed on
``BIAS_CHANGE`` (an "electronics change" adding ``BIAS_STEP`` ADU), so the right bias
must be chosen by the exposure's time. Re-running is idempotent: exposures, detrends,
skycells and chipRuns that already exist are counted, not duplicated.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
from astropy.io import fits
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from remotebridge.db.engine import write_session
from remotebridge.db.pipeline import ChipRun, DetrendFile, RawExp, RawImfile, Skycell
from remotebridge.demo import images
from remotebridge.demo.camera import Camera, rect_overlap, tan_inverse
from remotebridge.demo.images import Exposure

FIELD_RA, FIELD_DEC = 150.1, 2.2
SURVEY_START = datetime(2024, 3, 1, 5, 0, 0)
CADENCE_DAYS = 1.5
BIAS_CHANGE = SURVEY_START + timedelta(days=2.25)
VALID_FROM, VALID_TO = datetime(2024, 1, 1), datetime(2030, 1, 1)
FILTERS = ("g", "r")
EXPTIME = 30.0
STARS_PER_128_PIXELS = 30  # stars per chip, scaled linearly with chip size
MIN_CELL_OVERLAP = 0.10  # an exposure "covers" a skycell above this fraction of its area
_MJD0 = datetime(1858, 11, 17)


@dataclass
class SurveySummary:
    """What ``init_survey`` did (``*_existing`` counts rows found from an earlier run)."""

    directory: str
    label: str
    tess_id: str
    camera: str
    exposures: int = 0
    exposures_created: int = 0
    exposures_existing: int = 0
    chips: int = 0
    files_written: int = 0
    bytes_written: int = 0
    detrends_created: int = 0
    detrends_existing: int = 0
    skycells_created: int = 0
    skycells_existing: int = 0
    chip_runs_created: int = 0
    chip_runs_existing: int = 0
    seconds: float = 0.0
    exp_names: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """Plain data for ``--json``."""
        return asdict(self)


@dataclass(frozen=True)
class DetrendSpec:
    """One detrend file to make."""

    det_type: str
    class_id: str
    filter: str
    period: int
    begin: datetime
    end: datetime
    path: Path


@dataclass(frozen=True)
class CellSpec:
    """One skycell of the demo tessellation."""

    skycell_id: str
    ra: float
    dec: float
    naxis: int
    scale: float


# --- planning (no I/O) ------------------------------------------------------------


def mjd(when: datetime) -> float:
    """Modified Julian Date of a naive UTC datetime."""
    return (when - _MJD0).total_seconds() / 86400.0


def plan_exposures(n: int, camera: Camera, seed: int) -> list[Exposure]:
    """``n`` dithered exposures alternating between the filters, ``CADENCE_DAYS`` apart."""
    rng = np.random.default_rng([seed, 31])
    dither = 0.15 * camera.size * camera.scale / 3600.0
    out = []
    for i in range(n):
        filt = FILTERS[i % len(FILTERS)]
        dx, dy = (0.0, 0.0) if i == 0 else tuple(rng.uniform(-dither, dither, 2))
        ra, dec = tan_inverse(dx, dy, FIELD_RA, FIELD_DEC)
        when = exposure_time(i)
        out.append(
            Exposure(
                index=i,
                name=f"o{int(mjd(when))}{filt}{i + 1:04d}o",
                filter=filt,
                ra=ra,
                dec=dec,
                exptime=EXPTIME,
                airmass=float(1.0 + 0.4 * rng.uniform()),
                fwhm=float(2.6 + 0.8 * rng.uniform()),
                sky_rate=float(images.SKY_RATES[filt] * (0.9 + 0.2 * rng.uniform())),
            )
        )
    return out


def exposure_time(index: int) -> datetime:
    """DATE-OBS of exposure ``index``."""
    return SURVEY_START + timedelta(days=CADENCE_DAYS * index)


def bias_period(when: datetime) -> int:
    """Which bias validity period (1 or 2) covers ``when``."""
    return 1 if when < BIAS_CHANGE else 2


def plan_detrends(directory: Path, class_ids: list[str], filters: list[str]) -> list[DetrendSpec]:
    """Bias (two periods), dark, flat per filter and mask for every chip."""
    det = directory / "detrend"
    specs: list[DetrendSpec] = []
    for cid in class_ids:
        specs.append(DetrendSpec("bias", cid, "", 1, VALID_FROM, BIAS_CHANGE,
                                 det / "bias" / f"bias.p1.{cid}.fits"))
        specs.append(DetrendSpec("bias", cid, "", 2, BIAS_CHANGE, VALID_TO,
                                 det / "bias" / f"bias.p2.{cid}.fits"))
        specs.append(DetrendSpec("dark", cid, "", 1, VALID_FROM, VALID_TO,
                                 det / "dark" / f"dark.{cid}.fits"))
        specs.append(DetrendSpec("mask", cid, "", 1, VALID_FROM, VALID_TO,
                                 det / "mask" / f"mask.{cid}.fits"))
        for filt in filters:
            specs.append(DetrendSpec("flat", cid, filt, 1, VALID_FROM, VALID_TO,
                                     det / "flat" / f"flat.{filt}.{cid}.fits"))
    return specs


def plan_skycells(exposures: list[Exposure], camera: Camera) -> list[CellSpec]:
    """A grid of skycells (chip-sized, same scale) covering the dithered footprint.

    A cell is kept when at least ``min(2, exposures per filter)`` exposures of one filter
    each cover more than ``MIN_CELL_OVERLAP`` of it, so every stack has several inputs.
    """
    cell_deg = camera.size * camera.scale / 3600.0
    dither = 0.15 * cell_deg
    span_x = camera.width * camera.scale / 3600.0 + 2 * dither
    span_y = camera.height * camera.scale / 3600.0 + 2 * dither
    nx, ny = math.ceil(span_x / cell_deg), math.ceil(span_y / cell_deg)
    half_cam = camera.half_extent_deg()
    half_cell = (cell_deg / 2, cell_deg / 2)
    cells = []
    for row in range(ny):
        for col in range(nx):
            xi = (col - (nx - 1) / 2) * cell_deg
            eta = (row - (ny - 1) / 2) * cell_deg
            ra, dec = tan_inverse(xi, eta, FIELD_RA, FIELD_DEC)
            cell = CellSpec(f"skycell.{row}.{col}", ra, dec, camera.size, camera.scale)
            if _covered_enough(cell, exposures, half_cam, half_cell):
                cells.append(cell)
    return cells


def _covered_enough(
    cell: CellSpec,
    exposures: list[Exposure],
    half_cam: tuple[float, float],
    half_cell: tuple[float, float],
) -> bool:
    area = 4 * half_cell[0] * half_cell[1]
    for filt in {e.filter for e in exposures}:
        same = [e for e in exposures if e.filter == filt]
        need = min(2, len(same))
        hits = sum(
            rect_overlap((e.ra, e.dec), half_cam, (cell.ra, cell.dec), half_cell)
            > MIN_CELL_OVERLAP * area
            for e in same
        )
        if hits >= need:
            return True
    return False


def catalogue_for(exposures: list[Exposure], camera: Camera, seed: int) -> dict[str, np.ndarray]:
    """The fake star catalogue covering every exposure (plus a margin)."""
    margin = 60.0 / 3600.0 + 0.15 * camera.size * camera.scale / 3600.0
    half_x, half_y = camera.half_extent_deg()
    stars_per_chip = STARS_PER_128_PIXELS * camera.size / 128.0
    density = stars_per_chip / (camera.size * camera.scale / 3600.0) ** 2
    return images.make_catalogue(
        FIELD_RA, FIELD_DEC, (half_x + margin, half_y + margin), density, seed
    )


# --- writing files ------------------------------------------------------------------


def _write(path: Path, hdus: fits.HDUList) -> int:
    """Write atomically (temp file + rename); returns the size in bytes."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    hdus.writeto(tmp, overwrite=True)
    tmp.replace(path)
    return path.stat().st_size


def write_detrend(spec: DetrendSpec, camera: Camera, seed: int) -> int:
    """Write one detrend file; returns its size."""
    if spec.det_type == "bias":
        data: np.ndarray = images.bias_frame(camera, spec.class_id, spec.period).astype(np.float32)
    elif spec.det_type == "dark":
        data = images.dark_frame(camera, spec.class_id).astype(np.float32)
    elif spec.det_type == "flat":
        data = images.flat_frame(camera, spec.class_id, spec.filter).astype(np.float32)
    else:
        data = images.mask_frame(camera, spec.class_id, seed)
    hdu = fits.PrimaryHDU(data)
    hdr = hdu.header
    hdr["DETTYPE"], hdr["CLASS_ID"], hdr["FILTER"] = spec.det_type, spec.class_id, spec.filter
    hdr["TBEGIN"], hdr["TEND"] = spec.begin.isoformat(), spec.end.isoformat()
    hdr["CAMERA"] = camera.name
    hdr["BUNIT"] = {"bias": "ADU", "dark": "e-/s", "flat": "", "mask": "1=bad"}[spec.det_type]
    return _write(spec.path, fits.HDUList([hdu]))


def raw_path(directory: Path, exp_name: str, class_id: str) -> Path:
    """Where the raw chip image of (exposure, chip) lives."""
    return directory / "raw" / exp_name / f"{exp_name}.{class_id}.fits"


def write_raw(
    directory: Path,
    camera: Camera,
    class_id: str,
    exposure: Exposure,
    catalogue: dict[str, np.ndarray],
    seed: int,
) -> tuple[Path, int]:
    """Write one raw chip image; returns (path, size)."""
    when = exposure_time(exposure.index)
    hdr = images.chip_header(camera, class_id, exposure.ra, exposure.dec)
    data = images.raw_chip(camera, class_id, exposure, hdr, catalogue,
                           bias_period=bias_period(when), seed=seed)
    hdr["EXPNAME"], hdr["CLASS_ID"], hdr["CAMERA"] = exposure.name, class_id, camera.name
    hdr["EXPTIME"] = (exposure.exptime, "seconds")
    hdr["FILTER"] = exposure.filter
    hdr["DATE-OBS"] = when.isoformat(timespec="seconds")
    hdr["MJD-OBS"] = mjd(when)
    hdr["AIRMASS"] = round(exposure.airmass, 4)
    hdr["GAIN"], hdr["RDNOISE"] = (1.0, "e-/ADU"), (images.READ_NOISE, "e-")
    hdr["ZPNOM"] = (images.ZERO_POINTS[exposure.filter], "nominal zero point, no extinction")
    hdr["BUNIT"] = "ADU"
    hdu = fits.PrimaryHDU(data.astype(np.int32), header=hdr)
    path = raw_path(directory, exposure.name, class_id)
    return path, _write(path, fits.HDUList([hdu]))


def write_refcat(path: Path, catalogue: dict[str, np.ndarray]) -> int:
    """The fake catalogue as a FITS binary table (extension REFCAT)."""
    cols = [
        fits.Column(name="id", format="J", array=catalogue["id"]),
        fits.Column(name="ra", format="D", unit="deg", array=catalogue["ra"]),
        fits.Column(name="dec", format="D", unit="deg", array=catalogue["dec"]),
        fits.Column(name="mag_g", format="E", array=catalogue["mag_g"]),
        fits.Column(name="mag_r", format="E", array=catalogue["mag_r"]),
    ]
    table = fits.BinTableHDU.from_columns(cols, name="REFCAT")
    return _write(path, fits.HDUList([fits.PrimaryHDU(), table]))


# --- the database ---------------------------------------------------------------------


def _add_detrends(
    session: Session, specs: list[DetrendSpec], camera: Camera, seed: int, out: SurveySummary
) -> None:
    known = set(session.scalars(select(DetrendFile.uri)))
    for spec in specs:
        uri = str(spec.path)
        if uri in known and spec.path.exists():
            out.detrends_existing += 1
            continue
        size = write_detrend(spec, camera, seed)
        out.files_written += 1
        out.bytes_written += size
        if uri in known:
            out.detrends_existing += 1
            continue
        session.add(DetrendFile(det_type=spec.det_type, class_id=spec.class_id,
                                filter=spec.filter, time_begin=spec.begin, time_end=spec.end,
                                uri=uri, bytes=size))
        out.detrends_created += 1


def _add_exposure(
    session: Session,
    directory: Path,
    camera: Camera,
    class_ids: list[str],
    exposure: Exposure,
    catalogue: dict[str, np.ndarray],
    seed: int,
    out: SurveySummary,
) -> RawExp:
    row = session.scalars(select(RawExp).where(RawExp.exp_name == exposure.name)).first()
    if row is not None:
        out.exposures_existing += 1
        return row
    row = RawExp(exp_name=exposure.name, camera=camera.name, dateobs=exposure_time(exposure.index),
                 filter=exposure.filter, exp_time=exposure.exptime,
                 airmass=round(exposure.airmass, 4), ra=exposure.ra, decl=exposure.dec)
    session.add(row)
    session.flush()
    for cid in class_ids:
        path, size = write_raw(directory, camera, cid, exposure, catalogue, seed)
        session.add(RawImfile(exp_id=row.exp_id, class_id=cid, uri=str(path), bytes=size))
        out.files_written += 1
        out.bytes_written += size
    out.exposures_created += 1
    return row


def _add_skycells(
    session: Session, cells: list[CellSpec], tess_id: str, out: SurveySummary
) -> None:
    for cell in cells:
        if session.get(Skycell, (tess_id, cell.skycell_id)) is not None:
            out.skycells_existing += 1
            continue
        session.add(Skycell(tess_id=tess_id, skycell_id=cell.skycell_id, ra=cell.ra,
                            decl=cell.dec, naxis1=cell.naxis, naxis2=cell.naxis,
                            pixel_scale=cell.scale))
        out.skycells_created += 1


def _add_chip_run(
    session: Session, exp: RawExp, label: str, workdir: Path, tess_id: str, out: SurveySummary
) -> None:
    query = select(ChipRun).where(ChipRun.exp_id == exp.exp_id, ChipRun.label == label)
    if session.scalars(query).first() is not None:
        out.chip_runs_existing += 1
        return
    session.add(ChipRun(exp_id=exp.exp_id, label=label, state="new", workdir=str(workdir),
                        data_group=label, end_stage="stack", tess_id=tess_id))
    out.chip_runs_created += 1


def init_survey(
    engine: Engine,
    directory: Path,
    exposures: int = 4,
    chips: int = 4,
    size: int = 128,
    seed: int = 1,
    label: str = "demo",
    tess_id: str = "DEMO.V1",
) -> SurveySummary:
    """Create (or complete) the demo survey in ``directory`` and its rows in ``engine``.

    The schema must already exist. Files of exposures and detrends already registered
    are not rewritten; everything is deterministic for a given ``seed``.
    """
    if exposures < 1:
        raise ValueError(f"exposures must be >= 1, not {exposures}")
    if size < 32:
        raise ValueError(f"size must be >= 32 pixels, not {size}")
    started = time.perf_counter()
    directory = Path(directory).expanduser().resolve()
    camera = Camera.for_chips(chips, size)
    class_ids = camera.class_ids(chips)
    plan = plan_exposures(exposures, camera, seed)
    filters = sorted({e.filter for e in plan})
    catalogue = catalogue_for(plan, camera, seed)
    out = SurveySummary(directory=str(directory), label=label, tess_id=tess_id,
                        camera=camera.name, exposures=exposures, chips=chips,
                        exp_names=[e.name for e in plan])
    refcat = directory / "refcat" / "refcat.fits"
    if not refcat.exists():
        out.bytes_written += write_refcat(refcat, catalogue)
        out.files_written += 1
    workdir = directory / "work" / label
    workdir.mkdir(parents=True, exist_ok=True)
    with write_session(engine) as session:
        _add_detrends(session, plan_detrends(directory, class_ids, filters), camera, seed, out)
        for exposure in plan:
            row = _add_exposure(session, directory, camera, class_ids, exposure, catalogue,
                                seed, out)
            _add_chip_run(session, row, label, workdir, tess_id, out)
        _add_skycells(session, plan_skycells(plan, camera), tess_id, out)
    out.seconds = round(time.perf_counter() - started, 3)
    return out
