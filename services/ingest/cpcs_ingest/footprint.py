"""Is the alert on the uploaded image? Judged from the header alone, before any pixel is read."""

from __future__ import annotations

import math
import re

import numpy as np
from astropy.coordinates import SkyCoord
from astropy.units import deg

from cpcs.errors import InputError
from cpcs.science.imaging.header import MIN_PIXEL_SCALE_ARCSEC, ImageHeader

# Header WCSs may be off by an arcminute or so; the alert may also sit just off the edge.
MARGIN_ARCMIN = 2.0
#: Coarsest pixel scale taken: CPCS calibrates telescope and telephoto frames, not all-sky cameras
#: (a scale in degrees per pixel is also what CDELT in arcsec instead of degrees looks like).
MAX_PIXEL_SCALE_ARCSEC = 60.0
#: Widest field taken: reduce asks for the reference stars within 2 degrees of the alert (twice
#: that for a frame without a WCS).
MAX_FIELD_RADIUS_DEG = 2.0
#: A frame with only a pointing (no WCS) may point this far beyond its half-diagonal from the alert:
#: the mount position of a crop from a wide-field camera lies degrees from the crop's centre
#: (PANOPTES: 2.3 degrees), and reduce solves such a frame blindly around the alert anyway.
MAX_POINTING_ERROR_DEG = 5.0
_WCSLIB_LOCATION = re.compile(r"ERROR \d+ in \w+\(\) at line \d+ of file [^:]*:\s*")


def check_image_covers(header: ImageHeader, shape: tuple[int, int], ra_deg: float, dec_deg: float) -> None:
    """Raise ``InputError`` unless astrometry can start and the alert falls on (or next to) the image."""
    ny, nx = shape
    _check_scale(header, nx, ny)
    if header.wcs is not None:
        x, y = header.wcs.world_to_pixel(SkyCoord(ra_deg * deg, dec_deg * deg))
        scale = header.pixel_scale_arcsec or _wcs_scale_arcsec(header)
        margin = MARGIN_ARCMIN * 60 / scale if scale else 0.0
        if not (np.isfinite(x) and np.isfinite(y)) or not (
            -margin <= float(x) <= nx - 1 + margin and -margin <= float(y) <= ny - 1 + margin
        ):
            where = (
                f"it falls at pixel {float(x):.0f}, {float(y):.0f} of a {nx}x{ny} frame"
                if np.isfinite(x) and np.isfinite(y)
                else "it is on the other side of the sky"
            )
            raise InputError(
                f"The alert ({ra_deg:.5f}, {dec_deg:+.5f}) is not on this image according to its WCS "
                f"({where}). Check the EventID or the image's WCS.",
                code="image_not_near_target",
            )
        return
    if header.ra_deg is None or header.dec_deg is None or not header.pixel_scale_arcsec:
        rejected = next((note for note in header.notes if note.startswith("WCS rejected")), None)
        if rejected is not None:
            raise InputError(
                f"The image's WCS cannot be used ({_reason(rejected)}) and the header "
                "has no RA/DEC with a pixel scale to solve from instead: fix the WCS cards (CRVAL, CD or "
                "CDELT and PC, in degrees), or remove them and add RA, DEC and PIXSCALE cards.",
                code="invalid_wcs",
            )
        raise InputError(
            "The image has no WCS and no pointing with a pixel scale, so its astrometry cannot be solved: "
            "add a WCS, or RA/DEC and PIXSCALE cards (or record the instrument's pixel scale).",
            code="no_astrometry",
        )
    half_diagonal_deg = math.hypot(nx, ny) / 2 * header.pixel_scale_arcsec / 3600
    pointing = SkyCoord(header.ra_deg * deg, header.dec_deg * deg)
    distance = float(pointing.separation(SkyCoord(ra_deg * deg, dec_deg * deg)).deg)
    if distance > half_diagonal_deg + MAX_POINTING_ERROR_DEG:
        raise InputError(
            f"The image points {distance:.1f} degrees from the alert, more than its half-diagonal "
            f"({half_diagonal_deg * 60:.1f} arcmin) plus {MAX_POINTING_ERROR_DEG:g} degrees for a "
            "wrong pointing: check the EventID or the RA/DEC cards.",
            code="image_not_near_target",
        )


def _reason(note: str) -> str:
    """A header note's reason for rejecting the WCS, without wcslib's source locations."""
    reason = _WCSLIB_LOCATION.sub("", note.removeprefix("WCS rejected: "))
    return reason.strip().splitlines()[0] if reason.strip() else "rejected"


def _check_scale(header: ImageHeader, nx: int, ny: int) -> None:
    """Refuse a pixel scale no telescope has, and a field wider than the reference cone."""
    scale = header.pixel_scale_arcsec
    if scale is None:
        return
    if not (math.isfinite(scale) and MIN_PIXEL_SCALE_ARCSEC <= scale <= MAX_PIXEL_SCALE_ARCSEC):
        raise InputError(
            f"The image's pixel scale is {scale:.3g} arcsec ({scale / 3600:.3g} degrees) per pixel; CPCS "
            f"takes {MIN_PIXEL_SCALE_ARCSEC:g} to {MAX_PIXEL_SCALE_ARCSEC:g} arcsec per pixel. Check the "
            "CDELT or CD cards (degrees per pixel) or the PIXSCALE card (arcsec per pixel).",
            code="absurd_pixel_scale",
        )
    radius_deg = math.hypot(nx, ny) / 2 * scale / 3600
    if radius_deg > MAX_FIELD_RADIUS_DEG:
        raise InputError(
            f"The image spans {2 * radius_deg:.1f} degrees corner to corner; CPCS calibrates fields up to "
            f"{2 * MAX_FIELD_RADIUS_DEG:g} degrees across. Upload a cut-out around the alert.",
            code="field_too_large",
        )


def _wcs_scale_arcsec(header: ImageHeader) -> float | None:
    if header.wcs is None:
        return None
    from astropy.wcs.utils import proj_plane_pixel_scales

    return float(np.mean(proj_plane_pixel_scales(header.wcs.celestial))) * 3600
