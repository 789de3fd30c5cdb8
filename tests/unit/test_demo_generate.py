"""The demo survey generator: files, headers, rows, detrend periods, idempotence, speed."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits
from sqlalchemy import Engine, func, select

from remotebridge.db.base import Base
from remotebridge.db.engine import make_engine, read_session
from remotebridge.db.pipeline import ChipRun, DetrendFile, RawExp, RawImfile, Skycell
from remotebridge.demo.camera import Camera, rect_overlap
from remotebridge.demo.generate import BIAS_CHANGE, SurveySummary, init_survey


@dataclass
class Survey:
    engine: Engine
    directory: Path
    summary: SurveySummary


def _engine(path: Path) -> Engine:
    engine = make_engine(f"sqlite:///{path}")
    Base.metadata.create_all(engine)
    return engine


@pytest.fixture(scope="module")
def survey(tmp_path_factory: pytest.TempPathFactory) -> Survey:
    root = tmp_path_factory.mktemp("gen")
    engine = _engine(root / "db.sqlite")
    summary = init_survey(engine, root / "survey")
    return Survey(engine, root / "survey", summary)


def test_defaults_are_counted(survey: Survey) -> None:
    s = survey.summary
    assert (s.exposures_created, s.exposures_existing, s.chips) == (4, 0, 4)
    assert s.chip_runs_created == 4
    assert s.detrends_created == 4 * (2 + 1 + 1 + 2)  # bias x2 periods, dark, mask, flat g/r
    assert 4 <= s.skycells_created <= 9
    assert s.files_written == 16 + 24 + 1  # raws, detrends, refcat
    assert s.bytes_written == sum(p.stat().st_size for p in survey.directory.rglob("*.fits"))


def test_raw_files_are_fits_with_headers_and_rows(survey: Survey) -> None:
    with read_session(survey.engine) as s:
        exps = {e.exp_id: e for e in s.scalars(select(RawExp))}
        imfiles = s.scalars(select(RawImfile)).all()
    assert len(imfiles) == 16
    for im in imfiles:
        path = Path(im.uri)
        exp = exps[im.exp_id]
        assert path.is_absolute() and path.is_file()
        expected = survey.directory / "raw" / exp.exp_name / f"{exp.exp_name}.{im.class_id}.fits"
        assert path == expected
        assert im.bytes == path.stat().st_size
        with fits.open(path) as hdul:
            hdr, data = hdul[0].header, hdul[0].data
        assert data.shape == (128, 128)
        assert hdr["EXPTIME"] == exp.exp_time and hdr["FILTER"] == exp.filter
        assert hdr["DATE-OBS"] == exp.dateobs.isoformat(timespec="seconds")
        assert hdr["CTYPE1"] == "RA---TAN" and hdr["CTYPE2"] == "DEC--TAN"
        for key in ("CRVAL1", "CRVAL2", "CRPIX1", "CRPIX2", "CD1_1", "CD2_2", "RA", "DEC"):
            assert key in hdr
        assert abs(hdr["RA"] - exp.ra) < 0.05 and abs(hdr["DEC"] - exp.decl) < 0.05
        assert np.median(data) > 1000  # bias level present


def test_exposures_alternate_filters_and_spread_over_days(survey: Survey) -> None:
    with read_session(survey.engine) as s:
        exps = s.scalars(select(RawExp).order_by(RawExp.dateobs)).all()
    assert [e.filter for e in exps] == ["g", "r", "g", "r"]
    assert (exps[-1].dateobs - exps[0].dateobs).days >= 3
    assert len({(round(e.ra, 5), round(e.decl, 5)) for e in exps}) == 4  # dithered


def test_chip_runs(survey: Survey) -> None:
    with read_session(survey.engine) as s:
        runs = s.scalars(select(ChipRun)).all()
    assert len(runs) == 4
    for run in runs:
        assert (run.label, run.state, run.data_group, run.end_stage, run.tess_id) == (
            "demo", "new", "demo", "stack", "DEMO.V1")
        assert Path(run.workdir) == survey.directory / "work" / "demo"
        assert Path(run.workdir).is_absolute() and Path(run.workdir).is_dir()


def test_detrends_have_validity_periods_that_matter(survey: Survey) -> None:
    with read_session(survey.engine) as s:
        dets = s.scalars(select(DetrendFile)).all()
        exps = s.scalars(select(RawExp).order_by(RawExp.dateobs)).all()
    biases = [d for d in dets if d.det_type == "bias" and d.class_id == "xy00"]
    assert len(biases) == 2
    for exp in exps:
        valid = [d for d in biases if d.time_begin <= exp.dateobs < d.time_end]
        assert len(valid) == 1, exp.exp_name
    before = [e for e in exps if e.dateobs < BIAS_CHANGE]
    after = [e for e in exps if e.dateobs >= BIAS_CHANGE]
    assert before and after
    p1, p2 = sorted(biases, key=lambda d: d.time_begin)
    diff = fits.getdata(p2.uri).astype(float) - fits.getdata(p1.uri).astype(float)
    assert np.allclose(diff, 50.0, atol=0.01)
    flats = Counter(d.filter for d in dets if d.det_type == "flat")
    assert flats == {"g": 4, "r": 4}
    assert {d.filter for d in dets if d.det_type in ("bias", "dark", "mask")} == {""}
    for d in dets:
        assert Path(d.uri).is_file() and d.bytes == Path(d.uri).stat().st_size
        assert fits.getheader(d.uri)["DETTYPE"] == d.det_type
    mask = fits.getdata(next(d.uri for d in dets if d.det_type == "mask"))
    assert mask.dtype == np.uint8 and mask.sum() == 2 * 128  # two bad columns


def test_every_skycell_has_two_exposures_of_one_filter(survey: Survey) -> None:
    camera = Camera.for_chips(4, 128)
    with read_session(survey.engine) as s:
        cells = s.scalars(select(Skycell)).all()
        exps = s.scalars(select(RawExp)).all()
    assert {c.tess_id for c in cells} == {"DEMO.V1"}
    for cell in cells:
        half = (cell.naxis1 * cell.pixel_scale / 7200, cell.naxis2 * cell.pixel_scale / 7200)
        covering = Counter(
            e.filter for e in exps
            if rect_overlap((e.ra, e.decl), camera.half_extent_deg(), (cell.ra, cell.decl), half)
            > 0.1 * 4 * half[0] * half[1]
        )
        assert max(covering.values()) >= 2, cell.skycell_id


def test_init_twice_is_idempotent(survey: Survey) -> None:
    with read_session(survey.engine) as s:
        before = {t: s.scalar(select(func.count()).select_from(t))
                  for t in (RawExp, RawImfile, DetrendFile, Skycell, ChipRun)}
    again = init_survey(survey.engine, survey.directory)
    assert (again.exposures_created, again.exposures_existing) == (0, 4)
    assert (again.chip_runs_created, again.chip_runs_existing) == (0, 4)
    assert (again.detrends_created, again.detrends_existing) == (0, 24)
    assert again.skycells_created == 0 and again.files_written == 0
    with read_session(survey.engine) as s:
        after = {t: s.scalar(select(func.count()).select_from(t)) for t in before}
    assert after == before


def test_new_label_adds_chip_runs_only(tmp_path: Path) -> None:
    engine = _engine(tmp_path / "db.sqlite")
    init_survey(engine, tmp_path / "s", exposures=2, chips=2, size=64)
    other = init_survey(engine, tmp_path / "s", exposures=2, chips=2, size=64, label="other")
    assert other.exposures_existing == 2 and other.chip_runs_created == 2


def test_output_is_deterministic(tmp_path: Path) -> None:
    a = init_survey(_engine(tmp_path / "a.sqlite"), tmp_path / "a", exposures=1, chips=1, size=64)
    b = init_survey(_engine(tmp_path / "b.sqlite"), tmp_path / "b", exposures=1, chips=1, size=64)
    name = a.exp_names[0]
    da = fits.getdata(tmp_path / "a" / "raw" / name / f"{name}.xy00.fits")
    db = fits.getdata(tmp_path / "b" / "raw" / name / f"{name}.xy00.fits")
    assert b.exp_names == a.exp_names and np.array_equal(da, db)


def test_bad_arguments(tmp_path: Path) -> None:
    engine = _engine(tmp_path / "db.sqlite")
    with pytest.raises(ValueError):
        init_survey(engine, tmp_path / "s", exposures=0)
    with pytest.raises(ValueError):
        init_survey(engine, tmp_path / "s", size=8)
