"""Synthetic star fields for the astrometry tests (Gaia-like references seen through a known WCS).

:func:`make_field` projects random stars through a known TAN(-SIP) WCS (the distortion mostly a radial
cubic, as in most optics, plus random quadratic and cubic terms), adds centroid noise, drops a fraction
of the stars, adds spurious detections and makes the instrumental fluxes only loosely follow the
reference magnitudes. :func:`wcs_difference` measures a solved WCS against the truth on a grid.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pytest
from astropy.wcs import WCS, Sip


@dataclass
class SyntheticField:
    true_wcs: WCS
    header_wcs: WCS
    shape: tuple[int, int]
    x: np.ndarray
    y: np.ndarray
    flux: np.ndarray
    star_of_source: np.ndarray  # index into the references, -1 for spurious detections
    ref_ra: np.ndarray
    ref_dec: np.ndarray
    ref_mag: np.ndarray
    pixel_scale_arcsec: float
    centre: tuple[float, float]


def _cd(scale_arcsec: float, rotation_deg: float, flipped: bool) -> np.ndarray:
    """CD matrix (deg/px) with the image +y axis at position angle ``rotation_deg`` (N through E)."""
    theta = np.radians(rotation_deg)
    x_axis = (
        np.array([np.cos(theta), -np.sin(theta)]) if flipped else np.array([-np.cos(theta), np.sin(theta)])
    )
    y_axis = np.array([np.sin(theta), np.cos(theta)])
    return scale_arcsec / 3600.0 * np.column_stack((x_axis, y_axis))


def _sip(
    rng: np.random.Generator,
    shape: tuple[int, int],
    amplitude_px: float,
    crpix: np.ndarray,
    radial_fraction: float,
) -> Sip:
    """Order-3 SIP whose largest displacement over the image is ``amplitude_px``: ``radial_fraction`` of
    it a radial cubic (pincushion or barrel), the rest random quadratic and cubic terms."""
    ny, nx = shape
    half = max(nx, ny) / 2.0
    gx, gy = np.meshgrid(np.linspace(0, nx - 1, 30), np.linspace(0, ny - 1, 30))
    u, v = gx.ravel() + 1 - crpix[0], gy.ravel() + 1 - crpix[1]

    def size(a: np.ndarray, b: np.ndarray) -> float:
        da = sum(a[p, q] * u**p * v**q for p in range(4) for q in range(4))
        db = sum(b[p, q] * u**p * v**q for p in range(4) for q in range(4))
        return float(np.max(np.hypot(da, db)))

    radial_a, radial_b = np.zeros((4, 4)), np.zeros((4, 4))
    radial_a[3, 0] = radial_a[1, 2] = radial_b[2, 1] = radial_b[0, 3] = rng.choice([-1.0, 1.0])
    random_a, random_b = np.zeros((4, 4)), np.zeros((4, 4))
    for p in range(4):
        for q in range(4):
            if 2 <= p + q <= 3:
                random_a[p, q] = rng.normal(0.0, 1.0) / half ** (p + q)
                random_b[p, q] = rng.normal(0.0, 1.0) / half ** (p + q)
    a = radial_fraction * radial_a / size(radial_a, radial_b)
    b = radial_fraction * radial_b / size(radial_a, radial_b)
    if radial_fraction < 1.0:
        scale = (1.0 - radial_fraction) / size(random_a, random_b)
        a, b = a + scale * random_a, b + scale * random_b
    total = size(a, b)
    return Sip(a * amplitude_px / total, b * amplitude_px / total, None, None, crpix)


def make_field(
    seed: int,
    *,
    shape: tuple[int, int] = (2048, 2048),
    scale_arcsec: float = 0.6,
    centre: tuple[float, float] = (150.0, 30.0),
    rotation_deg: float = 0.0,
    flipped: bool = False,
    distortion_px: float = 0.0,
    radial_fraction: float = 0.7,
    n_stars_on_image: int = 1200,
    margin_arcmin: float = 7.0,
    noise_px: float = 0.05,
    drop_fraction: float = 0.2,
    spurious_fraction: float = 0.2,
    mag_scatter: float = 0.4,
    detection_limit: float = 20.0,
    header_offset_arcsec: tuple[float, float] = (0.0, 0.0),
    header_rotation_deg: float = 0.0,
    header_scale_error: float = 0.0,
) -> SyntheticField:
    rng = np.random.default_rng(seed)
    ny, nx = shape
    crpix = np.array([(nx + 1) / 2.0, (ny + 1) / 2.0])
    true = WCS(naxis=2)
    true.wcs.crpix = crpix
    true.wcs.crval = list(centre)
    true.wcs.cd = _cd(scale_arcsec, rotation_deg, flipped)
    true.wcs.radesys = "ICRS"
    if distortion_px > 0:
        true.wcs.ctype = ["RA---TAN-SIP", "DEC--TAN-SIP"]
        true.sip = _sip(rng, shape, distortion_px, crpix, radial_fraction)
    else:
        true.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    true.pixel_shape = (nx, ny)
    true.wcs.set()

    # Stars uniform in pixels over the image and a margin, mapped to the sky by the true WCS.
    margin = margin_arcmin * 60.0 / scale_arcsec
    area_ratio = (nx + 2 * margin) * (ny + 2 * margin) / (nx * ny)
    n_total = int(n_stars_on_image * area_ratio)
    px = rng.uniform(-margin, nx - 1 + margin, n_total)
    py = rng.uniform(-margin, ny - 1 + margin, n_total)
    ra, dec = true.all_pix2world(px, py, 0)
    # Magnitudes: counts rising by 10**0.35 per magnitude between G = 11 and 20.5.
    slope = 0.35
    lo, hi = 10 ** (slope * 11.0), 10 ** (slope * 20.5)
    mag = np.log10(rng.uniform(lo, hi, n_total)) / slope

    on_image = (px >= 0) & (px <= nx - 1) & (py >= 0) & (py <= ny - 1)
    detected = np.flatnonzero(
        on_image & (mag < detection_limit) & (rng.uniform(size=n_total) > drop_fraction)
    )
    x = px[detected] + rng.normal(0.0, noise_px, detected.size)
    y = py[detected] + rng.normal(0.0, noise_px, detected.size)
    flux = 10 ** (-0.4 * (mag[detected] + rng.normal(0.0, mag_scatter, detected.size) - 25.0))
    n_spurious = int(spurious_fraction * detected.size)
    x = np.concatenate((x, rng.uniform(0, nx - 1, n_spurious)))
    y = np.concatenate((y, rng.uniform(0, ny - 1, n_spurious)))
    flux = np.concatenate((flux, rng.choice(flux, n_spurious) * rng.lognormal(0.0, 0.5, n_spurious)))
    star = np.concatenate((detected, np.full(n_spurious, -1)))
    order = rng.permutation(x.size)

    header = WCS(naxis=2)
    header.wcs.crpix = crpix
    offset_ra = header_offset_arcsec[0] / 3600.0 / np.cos(np.radians(centre[1]))
    header.wcs.crval = [centre[0] + offset_ra, centre[1] + header_offset_arcsec[1] / 3600.0]
    delta = np.radians(header_rotation_deg)
    sky_rotation = np.array([[np.cos(delta), np.sin(delta)], [-np.sin(delta), np.cos(delta)]])
    header.wcs.cd = (1.0 + header_scale_error) * sky_rotation @ true.wcs.cd
    header.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    header.pixel_shape = (nx, ny)
    header.wcs.set()

    return SyntheticField(
        true_wcs=true,
        header_wcs=header,
        shape=shape,
        x=x[order],
        y=y[order],
        flux=flux[order],
        star_of_source=star[order],
        ref_ra=np.asarray(ra),
        ref_dec=np.asarray(dec),
        ref_mag=mag,
        pixel_scale_arcsec=scale_arcsec,
        centre=centre,
    )


def wcs_difference(solved: WCS, true: WCS, shape: tuple[int, int], n: int = 25) -> tuple[float, float]:
    """Largest and rms angular difference (arcsec) between two WCS over an ``n`` x ``n`` pixel grid."""
    ny, nx = shape
    gx, gy = np.meshgrid(np.linspace(0, nx - 1, n), np.linspace(0, ny - 1, n))
    ra1, dec1 = solved.all_pix2world(gx.ravel(), gy.ravel(), 0)
    ra2, dec2 = true.all_pix2world(gx.ravel(), gy.ravel(), 0)

    def vectors(ra: np.ndarray, dec: np.ndarray) -> np.ndarray:
        r, d = np.radians(ra), np.radians(dec)
        return np.column_stack((np.cos(d) * np.cos(r), np.cos(d) * np.sin(r), np.sin(d)))

    chord = np.linalg.norm(vectors(ra1, dec1) - vectors(ra2, dec2), axis=1)
    sep = np.degrees(2 * np.arcsin(chord / 2)) * 3600.0
    return float(sep.max()), float(np.sqrt(np.mean(sep**2)))


@pytest.fixture
def field_factory() -> Callable[..., SyntheticField]:
    """:func:`make_field`."""
    return make_field


@pytest.fixture(name="wcs_difference")
def wcs_difference_fixture() -> Callable[..., tuple[float, float]]:
    """:func:`wcs_difference`."""
    return wcs_difference
