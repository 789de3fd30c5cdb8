#!/usr/bin/env python3
"""rb_cam: combine the chip results of one exposure (the demo pipeline's camera stage).

Usage::

    rb_cam.py --list LIST --out OUT.fits --stats OUT.stats.json [--refcat REFCAT] [--bin B]

LIST is a text file with one line per chip: ``<chip image path>\\t<chip stats path>``
(the outputs of rb_chip; blank lines and lines starting with ``#`` are ignored).

OUT.fits: primary HDU = a binned (B x B, default 4) mosaic of the detrended chips placed
by their WCS reference pixels; extension ``CATALOG`` = every chip's detections with
sky coordinates (ra, dec from the chip WCS), instrumental magnitude
``-2.5 log10(flux / EXPTIME)``, fwhm and chip name.
OUT.stats.json: {"n_stars", "zero_pt", "fwhm", "bg", "dtime_script", "hostname"}.

About ``zero_pt`` (honestly): with ``--refcat`` (the demo survey's ``refcat/refcat.fits``)
the detections are matched to the fake reference catalogue within 1.5 arcsec and the
zero point is the median of ``mag_ref - mag_inst``: a real, if crude, photometric
calibration (no colour terms, no aperture correction beyond the 13x13 box). Without
``--refcat`` there is nothing to calibrate against, so ``zero_pt`` is simply the camera's
nominal zero point for the filter (header ``ZPNOM``); it does not know about extinction.

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
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from astropy.io import fits
from astropy.wcs import WCS

PROG = "rb_cam"
MATCH_ARCSEC = 1.5
PASS_KEYS = ("EXPNAME", "CAMERA", "EXPTIME", "FILTER", "DATE-OBS", "MJD-OBS", "AIRMASS", "ZPNOM")


class InputError(Exception):
    """Bad input: reported on stderr with exit status 1."""


@dataclass
class Chip:
    """One chip's detrended image, detections and stats."""

    path: Path
    image: np.ndarray
    header: fits.Header
    stars: Any  # FITS_rec of the STARS extension
    stats: dict[str, Any]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """The command line (see the module docstring)."""
    p = argparse.ArgumentParser(prog=PROG, description="Combine one exposure's chips.")
    p.add_argument("--list", required=True, type=Path)
    p.add_argument("--out", required=True, type=Path)
    p.add_argument("--stats", required=True, type=Path)
    p.add_argument("--refcat", type=Path, default=None)
    p.add_argument("--bin", type=int, default=4)
    return p.parse_args(argv)


def read_list(path: Path, fields: int) -> list[list[str]]:
    """Tab-separated lines of a list file (blank and # lines skipped)."""
    if not path.is_file():
        raise InputError(f"list file not found: {path}")
    rows = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip() or line.startswith("#"):
            continue
        parts = line.split("\t")
        if len(parts) != fields:
            raise InputError(f"{path}:{n}: expected {fields} tab-separated fields")
        rows.append(parts)
    if not rows:
        raise InputError(f"list file {path} is empty")
    return rows


def read_chip(image_path: str, stats_path: str) -> Chip:
    """Load one rb_chip output and its stats."""
    path = Path(image_path)
    if not path.is_file():
        raise InputError(f"chip image not found: {path}")
    try:
        with fits.open(path, memmap=False) as hdul:
            image = np.asarray(hdul[0].data, dtype=np.float64)
            header = hdul[0].header.copy()
            stars = hdul["STARS"].data.copy()
    except (OSError, KeyError, TypeError) as exc:
        raise InputError(f"{path} is not an rb_chip output: {exc}") from exc
    try:
        stats = json.loads(Path(stats_path).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise InputError(f"chip stats {stats_path} unreadable: {exc}") from exc
    return Chip(path, image, header, stars, stats)


def bin_image(image: np.ndarray, factor: int) -> np.ndarray:
    """Block nan-mean by ``factor`` (edges cropped)."""
    ny, nx = (s // factor * factor for s in image.shape)
    blocks = image[:ny, :nx].reshape(ny // factor, factor, nx // factor, factor)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN blocks stay NaN
        return np.asarray(np.nanmean(blocks, axis=(1, 3)))


def mosaic(chips: list[Chip], factor: int) -> np.ndarray:
    """Place binned chips by their CRPIX (the boresight is common to all chips)."""
    crpix = np.array([[c.header["CRPIX1"], c.header["CRPIX2"]] for c in chips])
    origin = np.round((crpix.max(axis=0) - crpix) / factor).astype(int)
    binned = [bin_image(c.image, factor) for c in chips]
    height = max(o[1] + b.shape[0] for o, b in zip(origin, binned, strict=True))
    width = max(o[0] + b.shape[1] for o, b in zip(origin, binned, strict=True))
    out = np.full((height, width), np.nan)
    for (x0, y0), b in zip(origin, binned, strict=True):
        out[y0:y0 + b.shape[0], x0:x0 + b.shape[1]] = b
    return out


def catalogue(chips: list[Chip]) -> dict[str, np.ndarray]:
    """All detections with sky coordinates and instrumental magnitudes."""
    parts: dict[str, list[np.ndarray]] = {k: [] for k in ("ra", "dec", "mag_inst", "fwhm",
                                                          "flux", "chip")}
    for c in chips:
        s = c.stars
        ra, dec = WCS(c.header).all_pix2world(s["x"], s["y"], 0)
        with np.errstate(divide="ignore", invalid="ignore"):
            mag = -2.5 * np.log10(s["flux"] / float(c.header["EXPTIME"]))
        parts["ra"].append(ra)
        parts["dec"].append(dec)
        parts["mag_inst"].append(mag)
        parts["fwhm"].append(np.asarray(s["fwhm"], dtype=float))
        parts["flux"].append(np.asarray(s["flux"], dtype=float))
        parts["chip"].append(np.full(len(s), str(c.header.get("CLASS_ID", c.path.stem))))
    return {k: np.concatenate(v) for k, v in parts.items()}


def zero_point(cat: dict[str, np.ndarray], header: fits.Header, refcat: Path | None) -> float:
    """Median (mag_ref - mag_inst) of matched stars, or the nominal ZPNOM (see docstring)."""
    nominal = float(header.get("ZPNOM", 25.0))
    if refcat is None:
        return nominal
    try:
        ref = fits.getdata(refcat, "REFCAT")
    except (OSError, KeyError) as exc:
        raise InputError(f"reference catalogue {refcat} unreadable: {exc}") from exc
    column = f"mag_{header.get('FILTER', '')}"
    if column not in ref.columns.names:
        raise InputError(f"reference catalogue has no {column} column")
    cosd = np.cos(np.radians(np.nanmedian(cat["dec"]))) if cat["dec"].size else 1.0
    diffs = []
    for ra, dec, mag in zip(cat["ra"], cat["dec"], cat["mag_inst"], strict=True):
        dist = np.hypot((ref["ra"] - ra) * cosd, ref["dec"] - dec) * 3600.0
        best = int(np.argmin(dist))
        if dist[best] < MATCH_ARCSEC and np.isfinite(mag):
            diffs.append(float(ref[column][best]) - mag)
    if len(diffs) < 3:
        print(f"{PROG}: warning: {len(diffs)} matches; using nominal zero point", file=sys.stderr)
        return nominal
    return float(np.median(diffs))


def catalog_hdu(cat: dict[str, np.ndarray]) -> fits.BinTableHDU:
    """The CATALOG extension."""
    cols = [fits.Column(name="ra", format="D", unit="deg", array=cat["ra"]),
            fits.Column(name="dec", format="D", unit="deg", array=cat["dec"]),
            fits.Column(name="mag_inst", format="E", array=cat["mag_inst"]),
            fits.Column(name="flux", format="E", array=cat["flux"]),
            fits.Column(name="fwhm", format="E", array=cat["fwhm"]),
            fits.Column(name="chip", format="16A", array=cat["chip"])]
    return fits.BinTableHDU.from_columns(cols, name="CATALOG")


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
    if args.bin < 1:
        raise InputError("--bin must be >= 1")
    chips = [read_chip(img, st) for img, st in read_list(args.list, 2)]
    first = chips[0].header
    cat = catalogue(chips)
    zp = zero_point(cat, first, args.refcat)
    good = np.isfinite(cat["fwhm"])
    fwhm = float(np.median(cat["fwhm"][good])) if good.any() else None
    bg = float(np.median([float(c.stats["bg"]) for c in chips]))
    header = fits.Header()
    for key in PASS_KEYS:
        if key in first:
            header[key] = first[key]
    header["NCHIPS"], header["BINNING"], header["ZEROPT"] = len(chips), args.bin, zp
    primary = fits.PrimaryHDU(mosaic(chips, args.bin).astype(np.float32), header=header)
    stats = {
        "n_stars": int(cat["ra"].size),
        "zero_pt": zp,
        "fwhm": fwhm,
        "bg": bg,
        "dtime_script": round(time.perf_counter() - started, 4),
        "hostname": socket.gethostname(),
    }
    write_outputs(args, fits.HDUList([primary, catalog_hdu(cat)]), stats)


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
