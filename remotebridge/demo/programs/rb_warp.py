#!/usr/bin/env python3
"""rb_warp: resample one exposure's chips onto one skycell (the demo pipeline's warp stage).

Usage::

    rb_warp.py --list LIST --ra RA --dec DEC --naxis1 N1 --naxis2 N2 --scale ARCSEC
               --out OUT.fits --stats OUT.stats.json [--interp bilinear|nearest]

LIST is a text file with one detrended chip image path (rb_chip output) per line, all
of one exposure (blank lines and lines starting with ``#`` are ignored). The skycell is
a TAN projection centred on (RA, DEC) degrees, N1 x N2 pixels of ARCSEC arcsec, north
up and east left (CD1_1 = -scale, CD2_2 = +scale), reference pixel at its centre.

Every skycell pixel centre is mapped to sky coordinates, then into each chip with the
chip's WCS, and sampled bilinearly (default) or by nearest neighbour. A skycell pixel
that no chip covers, or whose neighbours include a masked (NaN) chip pixel, is NaN.

OUT.fits: primary HDU = the warped float32 image with the skycell WCS and the exposure
keywords (EXPNAME, FILTER, EXPTIME, DATE-OBS, MJD-OBS, AIRMASS).
OUT.stats.json: {"good_frac", "bg", "dtime_script", "hostname"}; ``bg`` is the median
of the covered pixels (null when none is covered).

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
from astropy.wcs import WCS

PROG = "rb_warp"
PASS_KEYS = ("EXPNAME", "CAMERA", "EXPTIME", "FILTER", "DATE-OBS", "MJD-OBS", "AIRMASS", "ZPNOM")


class InputError(Exception):
    """Bad input: reported on stderr with exit status 1."""


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """The command line (see the module docstring)."""
    p = argparse.ArgumentParser(prog=PROG, description="Warp one exposure onto one skycell.")
    p.add_argument("--list", required=True, type=Path)
    p.add_argument("--ra", required=True, type=float)
    p.add_argument("--dec", required=True, type=float)
    p.add_argument("--naxis1", required=True, type=int)
    p.add_argument("--naxis2", required=True, type=int)
    p.add_argument("--scale", required=True, type=float, help="arcsec per pixel")
    p.add_argument("--out", required=True, type=Path)
    p.add_argument("--stats", required=True, type=Path)
    p.add_argument("--interp", choices=("bilinear", "nearest"), default="bilinear")
    return p.parse_args(argv)


def read_list(path: Path) -> list[Path]:
    """Paths listed one per line."""
    if not path.is_file():
        raise InputError(f"list file not found: {path}")
    lines = path.read_text(encoding="utf-8").splitlines()
    paths = [Path(s.strip()) for s in lines if s.strip() and not s.startswith("#")]
    if not paths:
        raise InputError(f"list file {path} is empty")
    return paths


def skycell_wcs(ra: float, dec: float, naxis1: int, naxis2: int, scale: float) -> WCS:
    """The skycell's TAN WCS."""
    if naxis1 < 1 or naxis2 < 1 or scale <= 0 or not -90 <= dec <= 90:
        raise InputError("skycell geometry out of range (naxis >= 1, scale > 0, |dec| <= 90)")
    w = WCS(naxis=2)
    w.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    w.wcs.crval = [ra, dec]
    w.wcs.crpix = [(naxis1 + 1) / 2, (naxis2 + 1) / 2]
    w.wcs.cd = np.array([[-scale / 3600.0, 0.0], [0.0, scale / 3600.0]])
    w.wcs.radesys = "ICRS"
    return w


def sample(image: np.ndarray, x: np.ndarray, y: np.ndarray, interp: str) -> np.ndarray:
    """Values of ``image`` at 0-based positions (x, y); NaN outside."""
    ny, nx = image.shape
    out = np.full(x.shape, np.nan)
    if interp == "nearest":
        ix, iy = np.rint(x).astype(int), np.rint(y).astype(int)
        inside = (ix >= 0) & (ix < nx) & (iy >= 0) & (iy < ny)
        out[inside] = image[iy[inside], ix[inside]]
        return out
    inside = (x >= 0) & (x <= nx - 1) & (y >= 0) & (y <= ny - 1)
    xs, ys = x[inside], y[inside]
    x0 = np.minimum(np.floor(xs).astype(int), nx - 2)
    y0 = np.minimum(np.floor(ys).astype(int), ny - 2)
    fx, fy = xs - x0, ys - y0
    out[inside] = (image[y0, x0] * (1 - fx) * (1 - fy) + image[y0, x0 + 1] * fx * (1 - fy)
                   + image[y0 + 1, x0] * (1 - fx) * fy + image[y0 + 1, x0 + 1] * fx * fy)
    return out


def warp(paths: list[Path], target: WCS, shape: tuple[int, int], interp: str
         ) -> tuple[np.ndarray, fits.Header]:
    """Resample every chip onto the target grid; returns (image, first chip's header)."""
    yy, xx = np.mgrid[0:shape[0], 0:shape[1]]
    ra, dec = target.wcs_pix2world(xx.ravel(), yy.ravel(), 0)
    result = np.full(xx.size, np.nan)
    first: fits.Header | None = None
    for path in paths:
        if not path.is_file():
            raise InputError(f"chip image not found: {path}")
        try:
            with fits.open(path, memmap=False) as hdul:
                image = np.asarray(hdul[0].data, dtype=np.float64)
                header = hdul[0].header.copy()
        except OSError as exc:
            raise InputError(f"{path} is not valid FITS: {exc}") from exc
        if image.ndim != 2 or "CRVAL1" not in header:
            raise InputError(f"{path} has no 2-D image with a WCS")
        first = first if first is not None else header
        px, py = WCS(header).wcs_world2pix(ra, dec, 0)
        values = sample(image, px, py, interp)
        empty = np.isnan(result)
        result[empty] = values[empty]
    assert first is not None
    return result.reshape(shape), first


def write_outputs(args: argparse.Namespace, hdul: fits.HDUList, stats: dict[str, Any]) -> None:
    """Write the FITS product and the stats atomically."""
    for path in (args.out, args.stats):
        path.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_name(f".{args.out.name}.{os.getpid()}.tmp")
    hdul.writeto(tmp, overwrite=True)
    os.replace(tmp, args.out)
    tmp = args.stats.with_name(f".{args.stats.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(stats, indent=1) + "\n", encoding="utf-8")
    os.replace(tmp, args.stats)


def run(args: argparse.Namespace, started: float) -> None:
    """Do the work."""
    target = skycell_wcs(args.ra, args.dec, args.naxis1, args.naxis2, args.scale)
    image, first = warp(read_list(args.list), target, (args.naxis2, args.naxis1), args.interp)
    covered = np.isfinite(image)
    good_frac = float(covered.mean())
    bg = float(np.median(image[covered])) if covered.any() else None
    header = target.to_header()
    for key in PASS_KEYS:
        if key in first:
            header[key] = first[key]
    header["GOODFRAC"], header["INTERP"] = good_frac, args.interp
    primary = fits.PrimaryHDU(image.astype(np.float32), header=header)
    stats = {
        "good_frac": good_frac,
        "bg": bg,
        "dtime_script": round(time.perf_counter() - started, 4),
        "hostname": socket.gethostname(),
    }
    write_outputs(args, fits.HDUList([primary]), stats)


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit status."""
    started = time.perf_counter()
    args = parse_args(argv)
    try:
        run(args, started)
    except (InputError, OSError, ValueError, KeyError) as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
