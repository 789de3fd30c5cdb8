#!/usr/bin/env python3
"""rb_chip: detrend one raw chip image and measure it (the demo pipeline's chip stage).

Usage::

    rb_chip.py --raw RAW --bias BIAS --dark DARK --flat FLAT --mask MASK
               --out OUT.fits --stats OUT.stats.json [--threads N]

Computes ``(raw - bias - dark * EXPTIME) / flat``; pixels flagged in the mask (non-zero),
and pixels with a non-positive flat, become NaN. Then measures the background (median),
its robust standard deviation (1.4826 * MAD), detects stars (pixels above 5 sigma that
are the maximum of their 5x5 neighbourhood) and the FWHM: a fit of ln(I) against r^2
over each star's pixels above 20% of its peak within 4 pixels; the median over isolated
stars (no brighter pixel in their 13x13 box) brighter than 30 sigma.

OUT.fits: primary HDU = the detrended float32 image with the raw header (WCS included)
plus BG, BGSTDEV, NSTARS, FWHM and the detrend file names; extension ``STARS`` = a table
of detections (x, y: 0-based pixel; flux: e- in an 13x13 box; peak; fwhm).
OUT.stats.json: {"bg", "bg_stdev", "n_stars", "fwhm", "dtime_script", "hostname"}.

Runs on the remote compute nodes: imports only numpy, astropy and the standard library.
Exit status: 0 done, 1 bad input (message on stderr), 2 usage error.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
from astropy.io import fits

PROG = "rb_chip"
DETECT_SIGMA = 5.0
FWHM_SIGMA = 30.0
BOX = 6  # half-size of the measurement box
CORE_RADIUS = 4  # pixels used for the FWHM fit


class InputError(Exception):
    """Bad input: reported on stderr with exit status 1."""


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """The command line (see the module docstring)."""
    p = argparse.ArgumentParser(prog=PROG, description="Detrend and measure one chip image.")
    for name in ("raw", "bias", "dark", "flat", "mask", "out", "stats"):
        p.add_argument(f"--{name}", required=True, type=Path)
    p.add_argument("--threads", type=int, default=1, help="accepted for the plan; unused")
    return p.parse_args(argv)


def read_image(path: Path, what: str) -> tuple[np.ndarray, fits.Header]:
    """The primary image of a FITS file as float64, with its header."""
    if not path.is_file():
        raise InputError(f"{what} file not found: {path}")
    try:
        with fits.open(path, memmap=False) as hdul:
            data, header = hdul[0].data, hdul[0].header.copy()
    except (OSError, ValueError) as exc:
        raise InputError(f"{what} file {path} is not valid FITS: {exc}") from exc
    if data is None or data.ndim != 2:
        raise InputError(f"{what} file {path} has no 2-D image")
    return np.asarray(data, dtype=np.float64), header


def robust_stats(values: np.ndarray) -> tuple[float, float]:
    """(median, 1.4826 * median absolute deviation) of the finite values."""
    good = values[np.isfinite(values)]
    if good.size == 0:
        raise InputError("no valid pixels left after masking")
    med = float(np.median(good))
    return med, float(1.4826 * np.median(np.abs(good - med)))


def detrend(
    raw: np.ndarray, bias: np.ndarray, dark: np.ndarray, flat: np.ndarray, mask: np.ndarray,
    exptime: float,
) -> np.ndarray:
    """Bias, dark and flat correction; masked and unflattenable pixels become NaN."""
    for name, arr in (("bias", bias), ("dark", dark), ("flat", flat), ("mask", mask)):
        if arr.shape != raw.shape:
            raise InputError(f"{name} shape {arr.shape} does not match raw {raw.shape}")
    bad = (mask != 0) | ~(flat > 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        image = (raw - bias - dark * exptime) / np.where(bad, 1.0, flat)
    image[bad] = np.nan
    return image


def local_maxima(sub: np.ndarray, threshold: float) -> tuple[np.ndarray, np.ndarray]:
    """(y, x) of pixels above ``threshold`` that are the maximum of their 5x5 box."""
    filled = np.where(np.isfinite(sub), sub, -np.inf)
    padded = np.pad(filled, 2, constant_values=-np.inf)
    windows = np.lib.stride_tricks.sliding_window_view(padded, (5, 5))
    peaks = (filled >= windows.max(axis=(2, 3))) & (filled > threshold)
    ny, nx = sub.shape
    peaks[:BOX, :] = peaks[-BOX:, :] = False
    peaks[:, :BOX] = peaks[:, -BOX:] = False
    ys, xs = np.nonzero(peaks)
    return ys, xs


def measure(sub: np.ndarray, ys: np.ndarray, xs: np.ndarray) -> dict[str, np.ndarray]:
    """Box flux, centroid and FWHM of each detection (vectorised over stars)."""
    off = np.arange(-BOX, BOX + 1)
    dy, dx = np.meshgrid(off, off, indexing="ij")
    stamps = np.nan_to_num(sub[ys[:, None, None] + dy, xs[:, None, None] + dx])
    peak = stamps[:, BOX, BOX]
    near = dx**2 + dy**2 <= CORE_RADIUS**2
    core = np.where((stamps > 0.2 * peak[:, None, None]) & near, stamps, 0.0)
    isolated = stamps.max(axis=(1, 2)) <= peak  # no brighter neighbour in the box
    total = np.maximum(core.sum(axis=(1, 2)), 1e-12)
    cx = (core * dx).sum(axis=(1, 2)) / total
    cy = (core * dy).sum(axis=(1, 2)) / total
    r2 = (dx - cx[:, None, None]) ** 2 + (dy - cy[:, None, None]) ** 2
    return {
        "x": xs + cx,
        "y": ys + cy,
        "flux": stamps.sum(axis=(1, 2)),
        "peak": peak,
        "fwhm": np.where(isolated, gaussian_fwhm(core, r2), np.nan),
    }


def gaussian_fwhm(core: np.ndarray, r2: np.ndarray) -> np.ndarray:
    """FWHM from a straight-line fit of ln(I) against r^2 over each star's core pixels.

    For a Gaussian, ln I = a - r^2 / (2 sigma^2); NaN when the fit is degenerate.
    """
    use = core > 0
    n = use.sum(axis=(1, 2)).astype(float)
    logi = np.log(np.where(use, core, 1.0))
    rr = np.where(use, r2, 0.0)
    s_r, s_l = rr.sum(axis=(1, 2)), np.where(use, logi, 0.0).sum(axis=(1, 2))
    s_rr, s_rl = (rr * rr).sum(axis=(1, 2)), (rr * np.where(use, logi, 0.0)).sum(axis=(1, 2))
    with np.errstate(divide="ignore", invalid="ignore"):
        slope = (n * s_rl - s_r * s_l) / (n * s_rr - s_r**2)
        sigma2 = np.where(slope < 0, -0.5 / slope, np.nan)
    return np.asarray(2.3548 * np.sqrt(sigma2))


def find_stars(image: np.ndarray, bg: float, bg_stdev: float) -> dict[str, np.ndarray]:
    """Detections above DETECT_SIGMA and their measurements."""
    sub = image - bg
    ys, xs = local_maxima(sub, DETECT_SIGMA * max(bg_stdev, 1e-12))
    return measure(sub, ys, xs)


def stars_table(stars: dict[str, np.ndarray]) -> fits.BinTableHDU:
    """The STARS extension."""
    cols = [fits.Column(name=k, format="E", array=stars[k].astype(np.float32))
            for k in ("x", "y", "flux", "peak", "fwhm")]
    return fits.BinTableHDU.from_columns(cols, name="STARS")


def write_fits(path: Path, hdul: fits.HDUList) -> None:
    """Write atomically (temp file + rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    hdul.writeto(tmp, overwrite=True)
    os.replace(tmp, path)


def write_json(path: Path, data: dict[str, Any]) -> None:
    """Write JSON atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data, indent=1) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def run(args: argparse.Namespace, started: float) -> dict[str, Any]:
    """Do the work; returns the stats."""
    raw, header = read_image(args.raw, "raw")
    bias, _ = read_image(args.bias, "bias")
    dark, _ = read_image(args.dark, "dark")
    flat, _ = read_image(args.flat, "flat")
    mask, _ = read_image(args.mask, "mask")
    if "EXPTIME" not in header:
        raise InputError(f"raw file {args.raw} has no EXPTIME")
    image = detrend(raw, bias, dark, flat, mask, float(header["EXPTIME"]))
    bg, bg_stdev = robust_stats(image)
    stars = find_stars(image, bg, bg_stdev)
    bright = stars["peak"] > FWHM_SIGMA * bg_stdev
    good = bright & np.isfinite(stars["fwhm"])
    fwhm = float(np.median(stars["fwhm"][good])) if good.any() else None
    for key in ("BZERO", "BSCALE", "BLANK"):
        header.remove(key, ignore_missing=True)
    header["BG"], header["BGSTDEV"] = bg, bg_stdev
    header["NSTARS"], header["FWHM"] = int(stars["x"].size), fwhm if fwhm is not None else -1.0
    for name in ("bias", "dark", "flat", "mask"):
        header[f"DET_{name.upper()}"] = Path(getattr(args, name)).name[-68:]
    primary = fits.PrimaryHDU(image.astype(np.float32), header=header)
    write_fits(args.out, fits.HDUList([primary, stars_table(stars)]))
    return {
        "bg": bg,
        "bg_stdev": bg_stdev,
        "n_stars": int(stars["x"].size),
        "fwhm": fwhm,
        "dtime_script": round(time.perf_counter() - started, 4),
        "hostname": socket.gethostname(),
    }


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit status."""
    started = time.perf_counter()
    args = parse_args(argv)
    try:
        stats = run(args, started)
        write_json(args.stats, stats)
    except (InputError, OSError, ValueError, KeyError) as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
