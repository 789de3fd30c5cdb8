#!/usr/bin/env python3
"""rb_stack: combine the warps of one skycell (the demo pipeline's stack stage).

Usage::

    rb_stack.py --list LIST --out OUT.fits --stats OUT.stats.json

LIST is a text file with one warp image path (rb_warp output) per line, all of the same
skycell and shape (blank lines and lines starting with ``#`` are ignored).

Each input's background (median) is subtracted and its noise measured (1.4826 * MAD).
With three or more inputs, a pixel deviating from the per-pixel median by more than
4 sigma + 10% of the median's absolute value is rejected (cosmic rays, satellite trails;
star cores are spared by the 10% term). The survivors are averaged with inverse-variance
weights, and the mean input background is added back. NaN inputs are ignored per pixel.

OUT.fits: primary HDU = the stack (float32) with the first input's WCS, NINPUTS, and the
FILTER keyword; extension ``EXPNUM`` = how many inputs contributed to each pixel (int16).
OUT.stats.json: {"n_inputs", "good_frac", "bg", "dtime_script", "hostname"}.

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
from pathlib import Path
from typing import Any

import numpy as np
from astropy.io import fits
from astropy.wcs import WCS

PROG = "rb_stack"
CLIP_SIGMA = 4.0
CLIP_FRACTION = 0.1


class InputError(Exception):
    """Bad input: reported on stderr with exit status 1."""


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """The command line (see the module docstring)."""
    p = argparse.ArgumentParser(prog=PROG, description="Stack the warps of one skycell.")
    p.add_argument("--list", required=True, type=Path)
    p.add_argument("--out", required=True, type=Path)
    p.add_argument("--stats", required=True, type=Path)
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


def read_inputs(paths: list[Path]) -> tuple[np.ndarray, fits.Header]:
    """The warps as a cube [input, y, x] and the first input's header."""
    images, first = [], None
    for path in paths:
        if not path.is_file():
            raise InputError(f"warp image not found: {path}")
        try:
            with fits.open(path, memmap=False) as hdul:
                images.append(np.asarray(hdul[0].data, dtype=np.float64))
                first = first if first is not None else hdul[0].header.copy()
        except OSError as exc:
            raise InputError(f"{path} is not valid FITS: {exc}") from exc
        if images[-1].ndim != 2 or images[-1].shape != images[0].shape:
            raise InputError(f"{path}: shape {images[-1].shape} differs from {images[0].shape}")
    assert first is not None
    return np.stack(images), first


def robust(values: np.ndarray) -> tuple[float, float]:
    """(median, 1.4826 * MAD) of the finite values; (nan, nan) when there are none."""
    good = values[np.isfinite(values)]
    if good.size == 0:
        return float("nan"), float("nan")
    med = float(np.median(good))
    return med, float(1.4826 * np.median(np.abs(good - med)))


def combine(cube: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    """(stack, number of contributing inputs per pixel, mean input background)."""
    stats = [robust(layer) for layer in cube]
    bgs = np.array([s[0] for s in stats])
    sig = np.array([s[1] if s[1] > 0 else np.nan for s in stats])
    usable = np.isfinite(bgs) & np.isfinite(sig)
    if not usable.any():
        raise InputError("no input has any valid pixel")
    cube, bgs, sig = cube[usable], bgs[usable], sig[usable]
    work = cube - bgs[:, None, None]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN pixels stay NaN
        if len(work) >= 3:
            med = np.nanmedian(work, axis=0)
            limit = CLIP_SIGMA * sig[:, None, None] + CLIP_FRACTION * np.abs(med)[None]
            work = np.where(np.abs(work - med[None]) > limit, np.nan, work)
        weights = np.where(np.isfinite(work), 1.0 / sig[:, None, None] ** 2, 0.0)
        total = weights.sum(axis=0)
        stack = np.nansum(np.nan_to_num(work) * weights, axis=0) / np.where(total > 0, total, 1)
    count = np.isfinite(work).sum(axis=0)
    stack = np.where(count > 0, stack + float(bgs.mean()), np.nan)
    return stack, count, float(bgs.mean())


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
    paths = read_list(args.list)
    cube, first = read_inputs(paths)
    stack, count, _ = combine(cube)
    covered = np.isfinite(stack)
    header = WCS(first).to_header() if "CRVAL1" in first else fits.Header()
    if "FILTER" in first:
        header["FILTER"] = first["FILTER"]
    header["NINPUTS"] = len(paths)
    primary = fits.PrimaryHDU(stack.astype(np.float32), header=header)
    expnum = fits.ImageHDU(count.astype(np.int16), name="EXPNUM")
    stats = {
        "n_inputs": len(paths),
        "good_frac": float(covered.mean()),
        "bg": float(np.median(stack[covered])) if covered.any() else None,
        "dtime_script": round(time.perf_counter() - started, 4),
        "hostname": socket.gethostname(),
    }
    write_outputs(args, fits.HDUList([primary, expnum]), stats)


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
