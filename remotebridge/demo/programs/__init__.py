"""The demo pipeline's science programs: standalone scripts shipped to the compute nodes.

They import only numpy, astropy and the standard library (remotebridge is NOT installed
remotely) and are run as ``python3 <script> ARGS``. This package is never imported on
the remote side; :func:`program_path` tells the ``prepare`` stages which file to ship.

Common rules: every program writes a real FITS product (``--out``) and a stats JSON file
(``--stats``), both atomically (temp file + rename; parent folders are created); exit
status 0 = done, 1 = bad input (one line ``<prog>: error: ...`` on stderr), 2 = usage
error (argparse). Stats always carry ``dtime_script`` (seconds) and ``hostname``; a value
that cannot be measured is ``null``. Many-input programs read a list file so that an
``srun --multi-prog`` line stays far below 128 arguments; list files ignore blank lines
and lines starting with ``#``.

Contracts (exact; the ``prepare`` stage modules rely on them)::

    rb_chip.py --raw RAW --bias BIAS --dark DARK --flat FLAT --mask MASK
               --out OUT.fits --stats OUT.stats.json [--threads N]
        (raw - bias - dark*EXPTIME) / flat, mask != 0 -> NaN.
        OUT.fits: detrended image + raw header/WCS; extension STARS (x, y, flux, peak, fwhm).
        stats: {"bg", "bg_stdev", "n_stars", "fwhm", "dtime_script", "hostname"}

    rb_cam.py --list LIST --out OUT.fits --stats OUT.stats.json [--refcat REFCAT] [--bin B]
        LIST: one line per chip, "<chip image path>\\t<chip stats path>" (rb_chip outputs).
        OUT.fits: binned mosaic; extension CATALOG (ra, dec, mag_inst, flux, fwhm, chip).
        stats: {"n_stars", "zero_pt", "fwhm", "bg", "dtime_script", "hostname"}
        zero_pt is measured against REFCAT when given, else the nominal header ZPNOM.

    rb_warp.py --list LIST --ra RA --dec DEC --naxis1 N1 --naxis2 N2 --scale ARCSEC
               --out OUT.fits --stats OUT.stats.json [--interp bilinear|nearest]
        LIST: one rb_chip image path per line (one exposure). Skycell = TAN at (RA, DEC),
        N1 x N2 pixels of ARCSEC, CRPIX at the centre, north up, east left.
        OUT.fits: the warped image (NaN where not covered) with the skycell WCS.
        stats: {"good_frac", "bg", "dtime_script", "hostname"}

    rb_stack.py --list LIST --out OUT.fits --stats OUT.stats.json
        LIST: one rb_warp image path per line (one skycell, same shape).
        OUT.fits: inverse-variance weighted, clipped (>= 3 inputs) mean; extension EXPNUM.
        stats: {"n_inputs", "good_frac", "bg", "dtime_script", "hostname"}

Stats keys map one to one onto the result columns of ``remotebridge.db.pipeline``
(chipProcessedImfile, camProcessedExp, warpSkyfile, stackSumSkyfile).
"""

from __future__ import annotations

from pathlib import Path

PROGRAMS: dict[str, str] = {
    "chip": "rb_chip.py",
    "cam": "rb_cam.py",
    "warp": "rb_warp.py",
    "stack": "rb_stack.py",
}
"""Stage name -> script file name."""

STATS_KEYS: dict[str, tuple[str, ...]] = {
    "chip": ("bg", "bg_stdev", "n_stars", "fwhm", "dtime_script", "hostname"),
    "cam": ("n_stars", "zero_pt", "fwhm", "bg", "dtime_script", "hostname"),
    "warp": ("good_frac", "bg", "dtime_script", "hostname"),
    "stack": ("n_inputs", "good_frac", "bg", "dtime_script", "hostname"),
}
"""Stage name -> the keys of the program's stats JSON."""


def program_path(name: str) -> Path:
    """The script for a stage (``chip``) or script name (``rb_chip`` / ``rb_chip.py``).

    Raises KeyError for an unknown program.
    """
    stem = name.removesuffix(".py")
    file = PROGRAMS.get(stem) or (f"{stem}.py" if f"{stem}.py" in PROGRAMS.values() else None)
    if file is None:
        known = ", ".join(sorted(PROGRAMS))
        raise KeyError(f"unknown demo program {name!r} (known: {known})")
    return Path(__file__).with_name(file)
