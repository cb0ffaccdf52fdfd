"""Is the alert on the uploaded image? Judged from the header alone, before any pixel is read."""

from __future__ import annotations

import math

import numpy as np
from astropy.coordinates import SkyCoord
from astropy.units import deg

from cpcs.errors import InputError
from cpcs.science.imaging.header import ImageHeader

# Header WCSs may be off by an arcminute or so; the alert may also sit just off the edge.
MARGIN_ARCMIN = 2.0


def check_image_covers(header: ImageHeader, shape: tuple[int, int], ra_deg: float, dec_deg: float) -> None:
    """Raise ``InputError`` unless astrometry can start and the alert falls on (or next to) the image."""
    ny, nx = shape
    if header.wcs is not None:
        x, y = header.wcs.world_to_pixel(SkyCoord(ra_deg * deg, dec_deg * deg))
        scale = header.pixel_scale_arcsec or _wcs_scale_arcsec(header)
        margin = MARGIN_ARCMIN * 60 / scale if scale else 0.0
        if not (np.isfinite(x) and np.isfinite(y)) or not (
            -margin <= float(x) <= nx - 1 + margin and -margin <= float(y) <= ny - 1 + margin
        ):
            raise InputError(
                f"The alert ({ra_deg:.5f}, {dec_deg:+.5f}) is not on this image according to its WCS "
                f"(it falls at pixel {float(x):.0f}, {float(y):.0f} of a {nx}x{ny} frame). Check the EventID "
                "or the image's WCS.",
                code="image_not_near_target",
            )
        return
    if header.ra_deg is None or header.dec_deg is None or not header.pixel_scale_arcsec:
        raise InputError(
            "The image has no WCS and no pointing with a pixel scale, so its astrometry cannot be solved: "
            "add a WCS, or RA/DEC and PIXSCALE cards (or record the instrument's pixel scale).",
            code="no_astrometry",
        )
    half_diagonal_deg = math.hypot(nx, ny) / 2 * header.pixel_scale_arcsec / 3600
    pointing = SkyCoord(header.ra_deg * deg, header.dec_deg * deg)
    distance = float(pointing.separation(SkyCoord(ra_deg * deg, dec_deg * deg)).deg)
    if distance > half_diagonal_deg + MARGIN_ARCMIN / 60:
        raise InputError(
            f"The image points {distance * 60:.1f} arcmin from the alert, more than its half-diagonal "
            f"({half_diagonal_deg * 60:.1f} arcmin): check the EventID or the RA/DEC cards.",
            code="image_not_near_target",
        )


def _wcs_scale_arcsec(header: ImageHeader) -> float | None:
    if header.wcs is None:
        return None
    from astropy.wcs.utils import proj_plane_pixel_scales

    return float(np.mean(proj_plane_pixel_scales(header.wcs.celestial))) * 3600
