"""Synthetic detector physics for the demo survey: detrend signatures, stars, noise.

Everything here is a pure function of its arguments (and of the seeded RNG passed in),
so the generator's output is deterministic. Images are ``float64`` numpy arrays indexed
``[y, x]``; FITS pixel (1, 1) is array element ``[0, 0]``.

The model of a raw chip image, in ADU (gain 1 e-/ADU)::

    raw = bias(x, y) + dark(x, y) * exptime + flat(x, y) * (sky + stars(x, y)) + noise

with Poisson-like noise ``sqrt(signal + readnoise^2)`` and a few bad columns (hot or
dead) that the chip's mask flags.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from astropy.io import fits
from astropy.wcs import WCS

from remotebridge.demo.camera import Camera

READ_NOISE = 5.0  # e-
BIAS_LEVEL = 1000.0  # ADU
BIAS_STEP = 50.0  # ADU added to the bias by the "electronics change" (validity period 2)
DARK_RATE = 0.3  # e-/s/pixel, plus an amplifier glow in one corner
ZERO_POINTS = {"g": 25.0, "r": 24.8}  # mag giving 1 e-/s at airmass 1
EXTINCTION = {"g": 0.18, "r": 0.10}  # mag / airmass
SKY_RATES = {"g": 5.0, "r": 8.0}  # e-/s/pixel
FLAT_RIPPLE = {"g": (40.0, 55.0, 0.0), "r": (33.0, 47.0, 1.0)}  # periods (px) and phase
VIGNETTING = 0.25  # fractional loss at the focal-plane corner


@dataclass(frozen=True)
class Exposure:
    """What the telescope did for one exposure (the generator's truth)."""

    index: int
    name: str
    filter: str
    ra: float
    dec: float
    exptime: float
    airmass: float
    fwhm: float  # pixels
    sky_rate: float  # e-/s/pixel

    @property
    def zero_point(self) -> float:
        """True zero point (mag for 1 e-/s) including extinction."""
        return true_zero_point(self.filter, self.airmass)


def true_zero_point(filt: str, airmass: float) -> float:
    """The zero point the generator used for ``filt`` at ``airmass``."""
    return ZERO_POINTS[filt] - EXTINCTION[filt] * (airmass - 1.0)


def chip_index(class_id: str, camera: Camera) -> int:
    """Sequential number of a chip (row by row)."""
    return int(class_id[3]) * camera.nx + int(class_id[2])


def chip_header(camera: Camera, class_id: str, ra0: float, dec0: float) -> fits.Header:
    """A simple TAN WCS for one chip of an exposure pointed at (ra0, dec0)."""
    crpix1, crpix2 = camera.chip_crpix(class_id)
    scale = camera.scale / 3600.0
    hdr = fits.Header()
    hdr["CTYPE1"], hdr["CTYPE2"] = "RA---TAN", "DEC--TAN"
    hdr["CUNIT1"], hdr["CUNIT2"] = "deg", "deg"
    hdr["CRVAL1"], hdr["CRVAL2"] = ra0, dec0
    hdr["CRPIX1"], hdr["CRPIX2"] = crpix1, crpix2
    hdr["CD1_1"], hdr["CD1_2"] = -scale, 0.0
    hdr["CD2_1"], hdr["CD2_2"] = 0.0, scale
    hdr["RADESYS"], hdr["EQUINOX"] = "ICRS", 2000.0
    centre = WCS(hdr).all_pix2world([[(camera.size - 1) / 2, (camera.size - 1) / 2]], 0)[0]
    hdr["RA"] = (float(centre[0]), "chip centre RA, deg")
    hdr["DEC"] = (float(centre[1]), "chip centre Dec, deg")
    return hdr


def _grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    y, x = np.mgrid[0:size, 0:size]
    return x.astype(float), y.astype(float)


def bias_frame(camera: Camera, class_id: str, period: int) -> np.ndarray:
    """Master bias: per-chip level, a column gradient and a row ripple; +BIAS_STEP in period 2."""
    k = chip_index(class_id, camera)
    x, y = _grid(camera.size)
    level = BIAS_LEVEL + 37.0 * k + (BIAS_STEP if period == 2 else 0.0)
    return level + 25.0 * x / camera.size + 6.0 * np.sin(2 * np.pi * y / 23.0 + k)


def dark_frame(camera: Camera, class_id: str) -> np.ndarray:
    """Dark current in e-/s: a flat rate plus amplifier glow from the chip's (0, 0) corner."""
    x, y = _grid(camera.size)
    glow = 1.5 * np.exp(-np.hypot(x, y) / (0.15 * camera.size))
    return DARK_RATE + glow


def flat_frame(camera: Camera, class_id: str, filt: str) -> np.ndarray:
    """Flat field: chip gain x focal-plane vignetting x a filter-specific ripple (mean ~1)."""
    k = chip_index(class_id, camera)
    x, y = _grid(camera.size)
    x0, y0 = camera.chip_origin(class_id)
    fx, fy = x + x0 - (camera.width - 1) / 2, y + y0 - (camera.height - 1) / 2
    rmax = np.hypot(camera.width / 2, camera.height / 2)
    vignetting = 1.0 - VIGNETTING * (np.hypot(fx, fy) / rmax) ** 2
    px, py, phase = FLAT_RIPPLE[filt]
    ripple = 1.0 + 0.03 * np.sin(2 * np.pi * x / px + phase) * np.cos(2 * np.pi * y / py)
    gain = 1.0 + 0.04 * ((k % 3) - 1)
    flat = gain * vignetting * ripple
    return flat / flat.mean() * gain


def bad_columns(camera: Camera, class_id: str, seed: int) -> list[int]:
    """Two deterministic bad columns per chip (the first hot, the second dead)."""
    rng = np.random.default_rng([seed, 7919, chip_index(class_id, camera)])
    cols = rng.choice(np.arange(8, camera.size - 8), size=2, replace=False)
    return sorted(int(c) for c in cols)


def mask_frame(camera: Camera, class_id: str, seed: int) -> np.ndarray:
    """Mask: 1 on bad columns, 0 elsewhere (uint8)."""
    mask = np.zeros((camera.size, camera.size), dtype=np.uint8)
    mask[:, bad_columns(camera, class_id, seed)] = 1
    return mask


def render_stars(
    size: int, x: np.ndarray, y: np.ndarray, flux: np.ndarray, fwhm: float
) -> np.ndarray:
    """Sum of circular Gaussians (total flux ``flux``) at 0-based pixel positions (x, y).

    Separable, so the whole image is one matrix product: ``(Gy^T * flux) @ Gx``.
    """
    sigma = fwhm / 2.3548
    pix = np.arange(size, dtype=float)
    gx = np.exp(-0.5 * ((pix[None, :] - x[:, None]) / sigma) ** 2)
    gy = np.exp(-0.5 * ((pix[None, :] - y[:, None]) / sigma) ** 2)
    norm = flux / (2 * np.pi * sigma**2)
    image: np.ndarray = (gy.T * norm) @ gx
    return image


def star_fluxes(mags: np.ndarray, exposure: Exposure) -> np.ndarray:
    """Electrons collected from stars of magnitude ``mags`` during ``exposure``."""
    return np.asarray(exposure.exptime * 10.0 ** (-0.4 * (mags - exposure.zero_point)))


def raw_chip(
    camera: Camera,
    class_id: str,
    exposure: Exposure,
    header: fits.Header,
    catalogue: dict[str, np.ndarray],
    *,
    bias_period: int,
    seed: int,
) -> np.ndarray:
    """One raw chip image (ADU, rounded) following the model in the module docstring."""
    size = camera.size
    mags = catalogue[f"mag_{exposure.filter}"]
    px, py = WCS(header).all_world2pix(catalogue["ra"], catalogue["dec"], 0)
    margin = 4 * exposure.fwhm
    near = (px > -margin) & (px < size + margin) & (py > -margin) & (py < size + margin)
    fluxes = star_fluxes(mags[near], exposure)
    stars = render_stars(size, px[near], py[near], fluxes, exposure.fwhm)
    flat = flat_frame(camera, class_id, exposure.filter)
    signal = dark_frame(camera, class_id) * exposure.exptime
    signal = signal + flat * (exposure.sky_rate * exposure.exptime + stars)
    rng = np.random.default_rng([seed, exposure.index, chip_index(class_id, camera)])
    noise = rng.normal(size=signal.shape) * np.sqrt(np.maximum(signal, 0.0) + READ_NOISE**2)
    raw = bias_frame(camera, class_id, bias_period) + signal + noise
    hot, dead = bad_columns(camera, class_id, seed)
    raw[:, hot] += 3000.0
    raw[:, dead] = bias_frame(camera, class_id, bias_period)[:, dead] + rng.normal(
        scale=READ_NOISE, size=size
    )
    return np.round(raw)


def make_catalogue(
    ra0: float, dec0: float, half_deg: tuple[float, float], density: float, seed: int
) -> dict[str, np.ndarray]:
    """A fixed fake star catalogue around (ra0, dec0).

    ``density`` is stars per square degree; g magnitudes follow rising number counts
    (dN/dm ~ 10^(0.3 m)) between 15 and 20.5; r = g - colour with colour in [0.2, 1.0].
    """
    from remotebridge.demo.camera import tan_inverse

    rng = np.random.default_rng([seed, 104729])
    area = 4 * half_deg[0] * half_deg[1]
    n = max(int(round(density * area)), 1)
    xi = rng.uniform(-half_deg[0], half_deg[0], n)
    eta = rng.uniform(-half_deg[1], half_deg[1], n)
    lo, hi = 10 ** (0.3 * 15.0), 10 ** (0.3 * 20.5)
    mag_g = np.log10(rng.uniform(lo, hi, n)) / 0.3
    mag_r = mag_g - rng.uniform(0.2, 1.0, n)
    radec = np.array([tan_inverse(a, b, ra0, dec0) for a, b in zip(xi, eta, strict=True)])
    return {
        "id": np.arange(1, n + 1),
        "ra": radec[:, 0],
        "dec": radec[:, 1],
        "mag_g": mag_g,
        "mag_r": mag_r,
    }
