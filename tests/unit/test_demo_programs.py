"""The demo science programs, run in-process on a generated survey (and once as scripts)."""

from __future__ import annotations

import ast
import importlib.util
import json
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pytest
from astropy.io import fits
from astropy.wcs import WCS
from sqlalchemy import select

from remotebridge.db.base import Base
from remotebridge.db.engine import make_engine, read_session
from remotebridge.db.pipeline import DetrendFile, RawExp, RawImfile, Skycell
from remotebridge.demo import images
from remotebridge.demo.programs import PROGRAMS, STATS_KEYS, program_path


def load(stage: str) -> ModuleType:
    """Import a program script as a module (they are not a package's modules)."""
    spec = importlib.util.spec_from_file_location(f"_demo_{stage}", program_path(stage))
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


CHIP, CAM, WARP, STACK = (load(s) for s in ("chip", "cam", "warp", "stack"))


@dataclass
class World:
    root: Path
    exps: list[RawExp]
    imfiles: list[RawImfile]
    detrends: list[DetrendFile]
    cells: list[Skycell]
    chip_out: dict[tuple[str, str], tuple[Path, Path]] = field(default_factory=dict)

    def exp(self, exp_id: int) -> RawExp:
        return next(e for e in self.exps if e.exp_id == exp_id)

    def detrend(self, det_type: str, class_id: str, exp: RawExp) -> str:
        found = [d.uri for d in self.detrends if d.det_type == det_type
                 and d.class_id == class_id and d.filter in ("", exp.filter)
                 and d.time_begin <= exp.dateobs < d.time_end]
        assert len(found) == 1
        return found[0]

    def chip_args(self, im: RawImfile, out: Path, stats: Path) -> list[str]:
        exp = self.exp(im.exp_id)
        args = ["--raw", im.uri]
        for det in ("bias", "dark", "flat", "mask"):
            args += [f"--{det}", self.detrend(det, im.class_id, exp)]
        return [*args, "--out", str(out), "--stats", str(stats)]


def run(module: ModuleType, args: list[Any]) -> int:
    return int(module.main([str(a) for a in args]))


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> World:
    from remotebridge.demo.generate import init_survey

    root = tmp_path_factory.mktemp("prog")
    engine = make_engine(f"sqlite:///{root}/db.sqlite")
    Base.metadata.create_all(engine)
    init_survey(engine, root / "survey")
    with read_session(engine) as s:
        w = World(root, list(s.scalars(select(RawExp).order_by(RawExp.exp_id))),
                  list(s.scalars(select(RawImfile))), list(s.scalars(select(DetrendFile))),
                  list(s.scalars(select(Skycell).order_by(Skycell.skycell_id))))
    for im in w.imfiles:
        name = w.exp(im.exp_id).exp_name
        out, stats = root / "chip" / f"{name}.{im.class_id}.fits", root / "chip" / f"{name}.json"
        stats = stats.with_name(f"{name}.{im.class_id}.stats.json")
        assert run(CHIP, w.chip_args(im, out, stats)) == 0
        w.chip_out[(name, im.class_id)] = (out, stats)
    return w


def _smooth_std(image: np.ndarray, block: int = 32) -> float:
    n = image.shape[0] // block
    blocks = image[: n * block, : n * block].reshape(n, block, n, block)
    return float(np.std(np.nanmedian(blocks, axis=(1, 3))))


def _injected(header: fits.Header, filt: str, world: World, min_snr: float) -> int:
    ref = fits.getdata(world.root / "survey" / "refcat" / "refcat.fits", "REFCAT")
    x, y = WCS(header).all_world2pix(ref["ra"], ref["dec"], 0)
    flux = 30.0 * 10 ** (-0.4 * (ref[f"mag_{filt}"] - 25.0))
    peak = flux / (2 * np.pi * (3.0 / 2.3548) ** 2)
    inside = (x > 6) & (x < 121) & (y > 6) & (y < 121)
    return int((inside & (peak > min_snr * 15.0)).sum())


# --- rb_chip ---------------------------------------------------------------------


def test_chip_removes_bias_and_flat_signature(world: World) -> None:
    im = world.imfiles[0]
    raw = fits.getdata(im.uri).astype(float)
    mask = fits.getdata(world.detrend("mask", im.class_id, world.exp(im.exp_id))) != 0
    raw[mask] = np.nan
    out, stats_path = world.chip_out[(world.exp(im.exp_id).exp_name, im.class_id)]
    detrended = fits.getdata(out)
    assert np.isnan(detrended[mask]).all()
    assert _smooth_std(raw) > 5 * _smooth_std(detrended)


def test_chip_stats_and_stars(world: World) -> None:
    from remotebridge.demo.camera import Camera
    from remotebridge.demo.generate import plan_exposures

    truth = {e.name: e for e in plan_exposures(4, Camera.for_chips(4, 128), 1)}
    detected = injected = 0
    for (name, _cid), (out, stats_path) in world.chip_out.items():
        stats = json.loads(stats_path.read_text())
        assert tuple(stats) == STATS_KEYS["chip"]
        exp = next(e for e in world.exps if e.exp_name == name)
        sky = images.SKY_RATES[exp.filter] * exp.exp_time
        assert abs(stats["bg"] - sky) < 0.15 * sky
        assert 10 < stats["bg_stdev"] < 25
        assert abs(stats["fwhm"] - truth[name].fwhm) < 0.25
        with fits.open(out) as hdul:
            hdr = hdul[0].header
            assert hdr["CTYPE1"] == "RA---TAN" and hdr["EXPTIME"] == exp.exp_time
            assert len(hdul["STARS"].data) == stats["n_stars"]
        detected += stats["n_stars"]
        injected += _injected(hdr, exp.filter, world, 10.0)
    assert abs(detected - injected) <= 0.15 * injected


def test_chip_wrong_bias_period_leaves_an_offset(world: World, tmp_path: Path) -> None:
    im = world.imfiles[0]
    exp = world.exp(im.exp_id)
    right = world.detrend("bias", im.class_id, exp)
    wrong = next(d.uri for d in world.detrends
                 if d.det_type == "bias" and d.class_id == im.class_id and d.uri != right)
    args = world.chip_args(im, tmp_path / "w.fits", tmp_path / "w.json")
    args[args.index(right)] = wrong
    assert run(CHIP, args) == 0
    good = json.loads(world.chip_out[(exp.exp_name, im.class_id)][1].read_text())
    bad = json.loads((tmp_path / "w.json").read_text())
    assert abs(abs(bad["bg"] - good["bg"]) - images.BIAS_STEP) < 5


def test_chip_bad_input(world: World, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    im = world.imfiles[0]
    args = world.chip_args(im, tmp_path / "o.fits", tmp_path / "o.json")
    missing = list(args)
    missing[missing.index("--bias") + 1] = str(tmp_path / "nope.fits")
    assert run(CHIP, missing) == 1
    assert "bias file not found" in capsys.readouterr().err
    small = tmp_path / "small.fits"
    fits.PrimaryHDU(np.zeros((10, 10), np.float32)).writeto(small)
    args[args.index("--flat") + 1] = str(small)
    assert run(CHIP, args) == 1
    assert "shape" in capsys.readouterr().err
    assert not (tmp_path / "o.fits").exists()


# --- rb_cam ----------------------------------------------------------------------


def _cam_list(world: World, exp: RawExp, path: Path) -> Path:
    lines = [f"{o}\t{s}" for (n, _), (o, s) in world.chip_out.items() if n == exp.exp_name]
    path.write_text("# chips\n" + "\n".join(lines) + "\n")
    return path


def test_cam_mosaic_catalogue_and_zero_point(world: World, tmp_path: Path) -> None:
    refcat = world.root / "survey" / "refcat" / "refcat.fits"
    for exp in world.exps[:2]:
        lst = _cam_list(world, exp, tmp_path / f"{exp.exp_name}.list")
        out, st = tmp_path / f"{exp.exp_name}.cam.fits", tmp_path / f"{exp.exp_name}.json"
        assert run(CAM, ["--list", lst, "--out", out, "--stats", st, "--refcat", refcat]) == 0
        stats = json.loads(st.read_text())
        assert tuple(stats) == STATS_KEYS["cam"]
        assert abs(stats["zero_pt"] - images.true_zero_point(exp.filter, exp.airmass)) < 0.05
        with fits.open(out) as hdul:
            assert hdul[0].data.shape == (66, 66)  # (2*128 + 8) / 4
            assert len(hdul["CATALOG"].data) == stats["n_stars"] > 60
            assert hdul[0].header["EXPNAME"] == exp.exp_name
        assert run(CAM, ["--list", lst, "--out", out, "--stats", st]) == 0
        assert json.loads(st.read_text())["zero_pt"] == images.ZERO_POINTS[exp.filter]


def test_cam_bad_list(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    lst = tmp_path / "l.txt"
    lst.write_text("only-one-field\n")
    assert run(CAM, ["--list", lst, "--out", tmp_path / "o.fits", "--stats", tmp_path / "s"]) == 1
    assert "tab-separated" in capsys.readouterr().err


# --- rb_warp ---------------------------------------------------------------------


def _warp(world: World, exp: RawExp, cell: Skycell, tmp: Path) -> tuple[Path, dict[str, Any]]:
    lst = tmp / f"{exp.exp_name}.warp.list"
    lst.write_text("\n".join(str(o) for (n, _), (o, _s) in world.chip_out.items()
                             if n == exp.exp_name) + "\n")
    out, st = tmp / f"{exp.exp_name}.{cell.skycell_id}.fits", tmp / f"{exp.exp_name}.w.json"
    args = ["--list", lst, "--ra", cell.ra, "--dec", cell.decl, "--naxis1", cell.naxis1,
            "--naxis2", cell.naxis2, "--scale", cell.pixel_scale, "--out", out, "--stats", st]
    assert run(WARP, args) == 0
    return out, json.loads(st.read_text())


def _centre_cell(world: World) -> Skycell:
    return next(c for c in world.cells if c.skycell_id == "skycell.1.1")


def test_warp_puts_stars_where_the_sky_says(world: World, tmp_path: Path) -> None:
    cell = _centre_cell(world)
    exp = world.exps[0]
    out, stats = _warp(world, exp, cell, tmp_path)
    assert tuple(stats) == STATS_KEYS["warp"] and 0.6 < stats["good_frac"] < 1.0
    image, header = fits.getdata(out), fits.getheader(out)
    assert header["EXPNAME"] == exp.exp_name
    ref = fits.getdata(world.root / "survey" / "refcat" / "refcat.fits", "REFCAT")
    x, y = WCS(header).all_world2pix(ref["ra"], ref["dec"], 0)
    checked = 0
    for i in np.argsort(ref["mag_g"]):
        sep = np.hypot(x - x[i], y - y[i])
        if not (8 < x[i] < 119 and 8 < y[i] < 119) or np.sort(sep)[1] < 10:
            continue
        ix, iy = int(round(x[i])), int(round(y[i]))
        box = image[iy - 4: iy + 5, ix - 4: ix + 5] - stats["bg"]
        if not np.isfinite(box).all():
            continue
        w = np.clip(box, 0, None)
        dy, dx = np.mgrid[-4:5, -4:5]
        cx, cy = ix + (w * dx).sum() / w.sum(), iy + (w * dy).sum() / w.sum()
        assert np.hypot(cx - x[i], cy - y[i]) < 1.0, (ref["id"][i], cx, cy, x[i], y[i])
        checked += 1
        if checked == 5:
            break
    assert checked >= 3


def test_warp_outside_is_nan(world: World, tmp_path: Path) -> None:
    cell = _centre_cell(world)
    far = Skycell(tess_id="X", skycell_id="far", ra=cell.ra + 1.0, decl=cell.decl,
                  naxis1=32, naxis2=32, pixel_scale=1.0)
    out, stats = _warp(world, world.exps[0], far, tmp_path)
    assert stats["good_frac"] == 0.0 and stats["bg"] is None
    assert np.isnan(fits.getdata(out)).all()


# --- rb_stack --------------------------------------------------------------------


def _noise_warps(tmp: Path, n: int, sigma: float = 10.0) -> Path:
    rng = np.random.default_rng(5)
    w = WARP.skycell_wcs(150.0, 2.0, 100, 100, 1.0)
    paths = []
    for i in range(n):
        data = 100.0 + 5 * i + rng.normal(scale=sigma, size=(100, 100))
        data[:, :10] = np.nan  # an uncovered strip
        path = tmp / f"noise{n}.{i}.fits"
        fits.PrimaryHDU(data.astype(np.float32), header=w.to_header()).writeto(path)
        paths.append(path)
    lst = tmp / f"noise{n}.list"
    lst.write_text("\n".join(map(str, paths)) + "\n")
    return lst


@pytest.mark.parametrize("n", [2, 4, 8])
def test_stack_noise_drops_as_one_over_sqrt_n(tmp_path: Path, n: int) -> None:
    lst = _noise_warps(tmp_path, n)
    out, st = tmp_path / "s.fits", tmp_path / "s.json"
    assert run(STACK, ["--list", lst, "--out", out, "--stats", st]) == 0
    stack = fits.getdata(out)
    stats = json.loads(st.read_text())
    assert tuple(stats) == STATS_KEYS["stack"] and stats["n_inputs"] == n
    assert abs(stats["good_frac"] - 0.9) < 1e-6
    ratio = np.nanstd(stack[:, 10:]) / 10.0
    assert abs(ratio * np.sqrt(n) - 1.0) < 0.1, ratio
    assert np.all(fits.getdata(out, "EXPNUM")[:, 10:] >= n - 1)


def test_stack_of_real_warps_is_less_noisy(world: World, tmp_path: Path) -> None:
    cell = _centre_cell(world)
    warps = [_warp(world, e, cell, tmp_path)[0] for e in world.exps if e.filter == "g"]
    lst = tmp_path / "g.list"
    lst.write_text("\n".join(map(str, warps)) + "\n")
    out, st = tmp_path / "g.fits", tmp_path / "g.json"
    assert run(STACK, ["--list", lst, "--out", out, "--stats", st]) == 0
    both = fits.getdata(out, "EXPNUM") == 2
    single, stack = fits.getdata(warps[0]), fits.getdata(out)

    def mad(a: np.ndarray) -> float:
        return float(np.median(np.abs(a - np.median(a))))

    assert mad(stack[both]) < 0.85 * mad(single[both])
    assert json.loads(st.read_text())["good_frac"] > 0.9


def test_stack_shape_mismatch(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    a, b = tmp_path / "a.fits", tmp_path / "b.fits"
    fits.PrimaryHDU(np.zeros((5, 5))).writeto(a)
    fits.PrimaryHDU(np.zeros((6, 5))).writeto(b)
    lst = tmp_path / "l"
    lst.write_text(f"{a}\n{b}\n")
    assert run(STACK, ["--list", lst, "--out", tmp_path / "o", "--stats", tmp_path / "s"]) == 1
    assert "differs" in capsys.readouterr().err


# --- the scripts as scripts -------------------------------------------------------


def test_programs_import_only_numpy_astropy_stdlib() -> None:
    allowed = set(sys.stdlib_module_names) | {"numpy", "astropy"}
    for stage in PROGRAMS:
        tree = ast.parse(program_path(stage).read_text())
        for node in ast.walk(tree):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            for name in names:
                assert name.split(".")[0] in allowed, (stage, name)


def test_script_exit_status_and_usage(tmp_path: Path) -> None:
    script = program_path("stack")
    missing = subprocess.run([sys.executable, str(script), "--list", str(tmp_path / "none"),
                              "--out", str(tmp_path / "o"), "--stats", str(tmp_path / "s")],
                             capture_output=True, text=True, check=False)
    assert missing.returncode == 1 and "rb_stack: error: list file not found" in missing.stderr
    usage = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                           check=False)
    assert usage.returncode == 2


def test_program_path() -> None:
    assert program_path("chip").name == "rb_chip.py"
    assert program_path("rb_warp.py") == program_path("warp") == program_path("rb_warp")
    with pytest.raises(KeyError):
        program_path("rb_nothing")
