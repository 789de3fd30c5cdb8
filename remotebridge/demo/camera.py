"""The demo camera's geometry and the small amount of tangent-plane maths it needs.

The demo camera is a grid of ``nx * ny`` square chips of ``size`` pixels, separated by
``gap`` pixels, at ``scale`` arcsec/pixel, with no rotation (north up, east left). Its
name encodes the layout (``DEMOCAM-2x2-128``) so that pure database code (the
``advance`` helpers) can know an exposure's footprint from ``rawExp.camera`` alone.

Chip ``xyCR`` is column ``C`` (along RA, increasing west) and row ``R`` (along Dec).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

GAP_PIXELS = 8
PIXEL_SCALE = 1.0  # arcsec / pixel
_NAME = re.compile(r"^DEMOCAM-(\d+)x(\d+)-(\d+)$")


@dataclass(frozen=True)
class Camera:
    """A mosaic camera layout."""

    nx: int
    ny: int
    size: int
    gap: int = GAP_PIXELS
    scale: float = PIXEL_SCALE

    @classmethod
    def for_chips(cls, chips: int, size: int) -> Camera:
        """The most square layout holding ``chips`` chips (the last row may be short)."""
        if chips < 1 or chips > 100:
            raise ValueError(f"chips must be 1..100, not {chips}")
        nx = math.ceil(math.sqrt(chips))
        ny = math.ceil(chips / nx)
        return cls(nx=nx, ny=ny, size=size)

    @classmethod
    def from_name(cls, name: str) -> Camera | None:
        """Parse ``DEMOCAM-NXxNY-SIZE``; None for any other camera."""
        match = _NAME.match(name)
        if not match:
            return None
        nx, ny, size = (int(g) for g in match.groups())
        return cls(nx=nx, ny=ny, size=size)

    @property
    def name(self) -> str:
        """The camera name stored in ``rawExp.camera``."""
        return f"DEMOCAM-{self.nx}x{self.ny}-{self.size}"

    @property
    def width(self) -> int:
        """Focal-plane width in pixels (chips and gaps)."""
        return self.nx * self.size + (self.nx - 1) * self.gap

    @property
    def height(self) -> int:
        """Focal-plane height in pixels."""
        return self.ny * self.size + (self.ny - 1) * self.gap

    def class_ids(self, chips: int) -> list[str]:
        """The first ``chips`` chip names, row by row."""
        ids = [f"xy{c}{r}" for r in range(self.ny) for c in range(self.nx)]
        return ids[:chips]

    def chip_origin(self, class_id: str) -> tuple[int, int]:
        """Focal-plane pixel offset (x0, y0) of the chip's first pixel (0-based)."""
        col, row = int(class_id[2]), int(class_id[3])
        return col * (self.size + self.gap), row * (self.size + self.gap)

    def chip_crpix(self, class_id: str) -> tuple[float, float]:
        """FITS CRPIX (1-based, in chip pixels) of the boresight for this chip."""
        x0, y0 = self.chip_origin(class_id)
        return (self.width + 1) / 2 - x0, (self.height + 1) / 2 - y0

    def half_extent_deg(self) -> tuple[float, float]:
        """Half width and half height of the focal plane on the sky, degrees."""
        return self.width * self.scale / 7200.0, self.height * self.scale / 7200.0


def tan_offsets(ra: float, dec: float, ra0: float, dec0: float) -> tuple[float, float]:
    """Gnomonic (TAN) standard coordinates (xi, eta) in degrees of (ra, dec) about (ra0, dec0).

    xi increases towards east (increasing RA).
    """
    a, d, a0, d0 = (math.radians(v) for v in (ra, dec, ra0, dec0))
    cosc = math.sin(d0) * math.sin(d) + math.cos(d0) * math.cos(d) * math.cos(a - a0)
    xi = math.cos(d) * math.sin(a - a0) / cosc
    eta = (math.cos(d0) * math.sin(d) - math.sin(d0) * math.cos(d) * math.cos(a - a0)) / cosc
    return math.degrees(xi), math.degrees(eta)


def tan_inverse(xi: float, eta: float, ra0: float, dec0: float) -> tuple[float, float]:
    """(ra, dec) in degrees of the standard coordinates (xi, eta) in degrees about (ra0, dec0)."""
    x, y, a0, d0 = (math.radians(v) for v in (xi, eta, ra0, dec0))
    denom = math.cos(d0) - y * math.sin(d0)
    ra = a0 + math.atan2(x, denom)
    dec = math.atan2(math.sin(d0) + y * math.cos(d0), math.hypot(x, denom))
    return math.degrees(ra) % 360.0, math.degrees(dec)


def rect_overlap(
    centre_a: tuple[float, float],
    half_a: tuple[float, float],
    centre_b: tuple[float, float],
    half_b: tuple[float, float],
) -> float:
    """Area (deg^2) of the overlap of two axis-aligned rectangles on the sky.

    Centres are (ra, dec); half sizes are (half width, half height) in degrees. The
    rectangles are compared in the tangent plane of ``centre_a`` (fine for small fields).
    """
    xi, eta = tan_offsets(centre_b[0], centre_b[1], centre_a[0], centre_a[1])
    ox = min(half_a[0], xi + half_b[0]) - max(-half_a[0], xi - half_b[0])
    oy = min(half_a[1], eta + half_b[1]) - max(-half_a[1], eta - half_b[1])
    return max(ox, 0.0) * max(oy, 0.0)
